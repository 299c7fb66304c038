"""Benchmarks for a GPU device machine (``python3 -m bench.gpu.smollm2_4x``); moving files there:
:mod:`tools.stage`."""
