"""Corpora: input lists, segments of long videos, jobs on a Ray cluster and the summary."""
