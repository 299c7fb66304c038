"""The accelerate config files shipped with the package, for ``accelerate launch --config_file``.

They live in ``longrope/embedded/assets/accelerate/`` (package data) and are described in
docs/finetune.md:

- ``cpu-ddp.yaml``: data parallel on CPU processes (gloo), 2 by default — what the test and the
  benchmark use. (``accelerate launch --cpu --num_processes 2`` alone starts *one* process unless
  ``mpirun`` is set up; this file goes through torchrun instead.)
- ``ddp.yaml``: data parallel over the GPUs of one machine, bf16.
- ``fsdp.yaml``: FSDP2, fully sharded per decoder layer, bf16 compute with float32 master weights,
  sharded checkpoints.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from longrope.errors import UserError

__all__ = ["ACCELERATE_CONFIGS", "accelerate_config"]

ACCELERATE_CONFIGS = ("cpu-ddp", "ddp", "fsdp")


def accelerate_config(name: str) -> Path:
    """Path of a shipped accelerate config (``name`` without ``.yaml``)."""
    if name not in ACCELERATE_CONFIGS:
        raise UserError(f"no shipped accelerate config {name!r}; choose one of {', '.join(ACCELERATE_CONFIGS)}")
    spec = importlib.util.find_spec("longrope.embedded")
    assert spec is not None and spec.submodule_search_locations
    path = Path(next(iter(spec.submodule_search_locations))) / "assets" / "accelerate" / f"{name}.yaml"
    if not path.is_file():
        raise UserError(f"the shipped accelerate config {path} is missing; reinstall longrope")
    return path
