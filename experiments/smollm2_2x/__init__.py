"""SmolLM2-135M at 2× (16k) on a CPU: the runs recorded by ``bench.bench_smollm2`` (see README.md)."""
