"""Benchmarks: each ``bench_*`` module writes a record ``bench/results/NAME.json`` (and its ``NAME.md``).

Run them as modules from the repository root (``python -m bench.bench_swap --help``);
``python -m bench.report`` renders BENCHMARKS.md from the records.
"""
