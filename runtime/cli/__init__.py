"""The command lines: mdhr-run, mdhr-batch and the options, messages and exit codes they share."""
