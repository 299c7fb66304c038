"""The accelerate config files shipped with the package, for ``accelerate launch --config_file``.

They live in ``longrope/embedded/assets/accelerate/`` (package data) and are described in
docs/finetune.md:

- ``cpu-ddp.yaml``: data parallel on CPU processes (gloo), 2 by default — what the test and the
  benchmark use. (``accelerate launch --cpu --num_processes 2`` alone starts *one* process unless
  ``mpirun`` is set up; this file goes through torchrun instead.)
- ``ddp.yaml``: data parallel over the GPUs of one machine, bf16.
- ``fsdp.yaml``: FSDP2, fully sharded per decoder layer, bf16 compute with float32 master weights,
  sharded checkpoints.

And :func:`launch_problem`: whether the environment's launcher variables (``RANK``, ``LOCAL_RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) describe a launched group this process can join.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from longrope.errors import UserError

__all__ = ["ACCELERATE_CONFIGS", "accelerate_config", "launch_problem"]

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


#: what a launcher (torchrun, ``accelerate launch``, deepspeed) sets in each process it starts: the process's place in
#: its group, and where the group meets
_PLACE = ("RANK", "LOCAL_RANK", "WORLD_SIZE")
_MEETING = ("MASTER_ADDR", "MASTER_PORT")


def launch_problem(environ: dict | None = None) -> str | None:
    """Why the launcher variables of ``environ`` (the process's) describe no group this process can be part of, or
    None (none set, or a launcher's whole consistent set). Left in a shell or a job's environment by another job,
    ``RANK=1`` alone made ``finetune`` write its results with no run record, ``LOCAL_RANK=3`` silenced every
    command's one-line errors (exit 2, nothing said), ``WORLD_SIZE=2`` was accelerate's traceback, and a set without
    ``MASTER_PORT`` waited for peers that never came."""
    env = os.environ if environ is None else environ
    given = [name for name in (*_PLACE, *_MEETING) if env.get(name, "") != ""]
    if not any(name in given for name in _PLACE):
        return None
    names = (*_PLACE, *_MEETING)
    fix = (f"unset {', '.join(names[:-1])} and {names[-1]} (left from another job), or start the command with "
           "accelerate launch or torchrun, which set them all")
    if missing := [name for name in (*_PLACE, *_MEETING) if name not in given]:
        shown = ", ".join(f"{name}={env[name]}" for name in given)
        return f"the environment holds {shown} but not {', '.join(missing)}: no launcher's group; {fix}"
    values = {}
    for name in _PLACE:
        text = str(env[name]).strip()
        if not text.isdigit():
            return f"the environment's {name} is {text!r}, not a number >= 0; {fix}"
        values[name] = int(text)
    world, rank, local = values["WORLD_SIZE"], values["RANK"], values["LOCAL_RANK"]
    if world < 1 or rank >= world or local > rank:
        return (f"the environment's RANK={rank}, LOCAL_RANK={local}, WORLD_SIZE={world} describe no process of a "
                f"group (0 <= LOCAL_RANK <= RANK < WORLD_SIZE); {fix}")
    return None
