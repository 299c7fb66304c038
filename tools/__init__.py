"""Repository tools that are neither the library nor a benchmark: :mod:`tools.stage` moves a file
too large for one device call to a GPU device machine in parts."""
