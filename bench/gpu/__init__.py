"""Benchmarks for a GPU device machine (``python3 -m bench.gpu.smollm2_4x``); moving files there:
:mod:`tools.stage`."""


def cuda_ready(script: str, device: str) -> bool:
    """For ``device`` "cuda": whether a CUDA device is there (else one error line naming ``script`` and
    --smoke), its peak-memory counter reset so that the script's summary reports its own peak."""
    if device != "cuda":
        return True
    import sys

    import torch

    if not torch.cuda.is_available():
        print(f"{script}: error: no CUDA device; use --smoke on a CPU", file=sys.stderr)
        return False
    torch.cuda.reset_peak_memory_stats()
    return True
