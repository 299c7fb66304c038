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
``WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``) describe a launched group this process can join;
:func:`launcher_stopped`: whether the launcher that started this process is gone.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from longrope.errors import UserError, shown

__all__ = ["ACCELERATE_CONFIGS", "accelerate_config", "launch_problem", "launcher_pid", "launcher_stopped"]

ACCELERATE_CONFIGS = ("cpu-ddp", "ddp", "fsdp")


def accelerate_config(name: str) -> Path:
    """Path of a shipped accelerate config (``name`` without ``.yaml``)."""
    if name not in ACCELERATE_CONFIGS:
        raise UserError(f"no shipped accelerate config {shown(name)}; choose one of {', '.join(ACCELERATE_CONFIGS)}")
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


def launch_problem(environ: dict | None = None, *, training: bool = False) -> str | None:
    """Why the launcher variables of ``environ`` (the process's) are no launch this process can act on, or None.

    Every command reads ``LOCAL_RANK`` (the machine's first process tells a group's refusals): one set with no group
    that could hold it (``LOCAL_RANK=3`` left in a shell by another job) silenced every command's one-line errors.
    A fine-tuning (``training``) also reads ``RANK`` and ``WORLD_SIZE`` (the group, and the process that writes the
    run record): ``RANK=1`` alone made finetune write its results with no run record, ``WORLD_SIZE=2`` alone was
    accelerate's traceback, and a set without ``MASTER_PORT`` waited for peers that never came. Sets that only part
    of the launchers write (a Kubeflow pod's, with no ``LOCAL_RANK``; a batch script's exported ``WORLD_SIZE`` and
    ``MASTER_*`` for the launcher it starts later) are no business of the commands that do not train."""
    env = os.environ if environ is None else environ

    def number(name: str) -> int | None:
        text = str(env.get(name, "")).strip()
        return int(text) if text.isdigit() else None

    local = str(env.get("LOCAL_RANK", "")).strip()
    if local:
        if number("LOCAL_RANK") is None:
            return (f"the environment's LOCAL_RANK is {local!r}, not a number >= 0; unset LOCAL_RANK (left from "
                    "another job), or start the command with a launcher (accelerate launch, torchrun)")
        world = number("WORLD_SIZE")
        if int(local) > 0 and (world is None or int(local) >= world):
            return (f"the environment's LOCAL_RANK={local} names a process of no launched group (WORLD_SIZE "
                    f"{env.get('WORLD_SIZE') or 'unset'}), so this process would say nothing of what it refuses; "
                    "unset LOCAL_RANK (left from another job), or start the command with a launcher "
                    "(accelerate launch, torchrun)")
    if not training or not any(str(env.get(name, "")).strip() for name in _PLACE):
        return None
    names = (*_PLACE, *_MEETING)
    fix = (f"unset {', '.join(names[:-1])} and {names[-1]} (left from another job), or start the command with "
           "accelerate launch or torchrun, which set them all")
    needed = ("RANK", "WORLD_SIZE", *_MEETING)
    if missing := [name for name in needed if not str(env.get(name, "")).strip()]:
        shown = ", ".join(f"{name}={env[name]}" for name in names if str(env.get(name, "")).strip())
        return f"the environment holds {shown} but not {', '.join(missing)}: no launcher's group; {fix}"
    for name in ("RANK", "WORLD_SIZE"):
        if number(name) is None:
            return f"the environment's {name} is {str(env[name]).strip()!r}, not a number >= 0; {fix}"
    world, rank, local_rank = number("WORLD_SIZE"), number("RANK"), number("LOCAL_RANK")
    if world < 1 or rank >= world or (local_rank is not None and local_rank > rank):
        return (f"the environment's RANK={rank}, LOCAL_RANK={env.get('LOCAL_RANK') or 'unset'}, WORLD_SIZE={world} "
                f"describe no process of a group (0 <= LOCAL_RANK <= RANK < WORLD_SIZE); {fix}")
    return None


_UNREAD = -1
_launcher = _UNREAD


def launcher_pid() -> int | None:
    """The pid of the launcher (torchrun, ``accelerate launch``: what sets ``TORCHELASTIC_RUN_ID``) that started this
    process, None when none did: its parent when first asked, so asked as the command starts (the command line's
    ``main``, :func:`~longrope.train.finetune`). Read when training began, a launcher killed while its processes set
    up (loaded the model) was gone already, their parent was init, and they trained to the end unseen (battery 27a)."""
    global _launcher
    if _launcher == _UNREAD:
        _launcher = os.getppid() if os.environ.get("TORCHELASTIC_RUN_ID") is not None else None
    return _launcher


def launcher_stopped() -> bool:
    """Whether the launcher that started this process is gone (killed: torch starts each process of a group in a
    session of its own, so they outlive it; its parent is then another process)."""
    pid = launcher_pid()
    return pid is not None and os.getppid() != pid
