"""The application layer: every command that does work is a typed run with one run folder.

A run is a config dataclass (the only home of its defaults, every field documented, see
:mod:`longrope.options`) and ``run(config) -> result``, writing through
:class:`~longrope.runs.folder.RunFolder` (``config.json``, ``run.json``, ``summary.json`` and the
command's files). The CLI builds each command's options from its config's fields; ``longrope rerun
RUN_DIR`` rebuilds the config from ``config.json`` and runs it again.

- :mod:`.search` — ``longrope search``;
- :mod:`.evaluate` — ``longrope eval ppl`` and ``longrope eval passkey``;
- :mod:`.ruler` — ``longrope eval ruler`` (RULER through lm-evaluation-harness, resumable by cell);
- :mod:`.demo` — ``longrope demo`` (the main job);
- :mod:`.finetune` — ``longrope finetune`` (long-context fine-tuning, :mod:`longrope.train`);
- :mod:`.pipeline` — ``longrope pipeline`` (declared stages: search, fine-tune, progressive search,
  recovery, :mod:`.compare`, export; a manifest; resumable);
- :mod:`.folder` — the run-folder layout; :mod:`.progress` — progress lines and bars.

Runs compose the library packages (``rope``, ``models``, ``data``, ``evaluate``, ``search``); no
run re-implements what one of them does.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["MOVED", "RunSpec", "RUNS", "get_run"]


@dataclass(frozen=True)
class RunSpec:
    """How a run is offered as a command."""

    command: str
    """e.g. "search" or "eval ppl" (the name ``config.json`` records)"""
    help: str
    description: str
    example: str
    config: type
    run: Callable[..., dict]
    render: Callable[[dict], str]
    """what the command prints on stdout for a result"""
    output_field: str = "output"
    """the config field naming the run folder"""
    upgrade: Callable[[dict], dict] | None = None
    """a recorded configuration (``config.json``, read by ``rerun`` and ``--config``) in today's terms: a
    setting whose default changed since it was written keeps the meaning it had then"""

    recorded_in: Callable[[dict, Path], dict] | None = None
    """a recorded configuration as read from its run folder RUN_DIR, by ``longrope rerun RUN_DIR`` and by
    ``--config RUN_DIR`` alike (a pipeline's plan is the one RUN_DIR ran, not the plan file as it reads now);
    default: as recorded"""

    def recorded(self, saved: dict, run_dir: Path | None = None) -> dict:
        """``saved`` (a recorded configuration of this command) as today's fields must read it; ``run_dir``: the
        run folder it was read from."""
        saved = self.upgrade(saved) if self.upgrade is not None else saved
        return self.recorded_in(saved, run_dir) if self.recorded_in is not None and run_dir is not None else saved


#: command → "module:attribute" of its RunSpec (imported on use, so ``--help`` stays light).
RUNS = {
    "search": "longrope.runs.search:SPEC",
    "eval ppl": "longrope.runs.evaluate:PPL_SPEC",
    "eval passkey": "longrope.runs.evaluate:PASSKEY_SPEC",
    "eval ruler": "longrope.runs.ruler:SPEC",
    "demo": "longrope.runs.demo:SPEC",
    "finetune": "longrope.runs.finetune:SPEC",
    "pipeline": "longrope.runs.pipeline:SPEC",
}


#: commands that left the installed package → the one line that says where they went (``longrope COMMAND``,
#: ``longrope rerun`` and ``--config`` of their run folders all say it).
MOVED = {
    "train-tiny": "train-tiny moved out of the installed package into the repository's maintainer tools (it "
                  "rebuilds the embedded model's assets): from a checkout of the repository run `python -m "
                  "tools.train_tiny` with the same flags, or `python -m tools.train_tiny --config RUN_DIR -o NEW_DIR "
                  "--no-resume` to repeat a recorded run",
}


def get_run(command: str) -> RunSpec:
    """The :class:`RunSpec` of ``command``."""
    from longrope.errors import UserError

    if not isinstance(command, str):  # a list was "unhashable type: 'list'" (battery 19)
        raise UserError(f"a run command is a name such as 'search' or 'eval ppl', got {type(command).__name__}")
    if command in MOVED:
        raise UserError(MOVED[command])
    if command not in RUNS:
        raise UserError(f"unknown run command {command!r}; known: {', '.join(RUNS)}")
    module, attr = RUNS[command].split(":")
    return getattr(importlib.import_module(module), attr)

