"""Experiments behind the benchmark records: one folder each, with its data preparation, its plans
and its lab notes (the runs, session by session, in the folder's README.md)."""
