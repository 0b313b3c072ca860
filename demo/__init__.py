"""mdhr-demo: the whole job, offline, in one command (an untrained bundle on
the sample video that ships with the toolkit)."""
