"""Repository tools that are neither the library nor a benchmark, run from a checkout (not installed):
:mod:`tools.train_tiny` rebuilds the embedded tiny model and its corpus (``python -m tools.train_tiny``);
:mod:`tools.stage` moves a file too large for one device call to a GPU device machine in parts."""
