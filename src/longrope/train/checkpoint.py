"""Resumable checkpoints on accelerate's ``save_state`` / ``load_state``, made atomic.

``OUT/checkpoints/step-00000050/`` holds what ``Accelerator.save_state`` writes (model weights as
safetensors, optimizer, scheduler, gradient scaler, every process's RNG states) plus our
``train_state.json``: the step, the data :class:`~longrope.train.data.Cursor`, tokens and time so
far, and the resolved configuration the run was started with.

Atomicity: every process saves into ``.step-00000050.partial`` (FSDP and DeepSpeed save shards from
every rank), then the main process writes ``train_state.json`` last and renames the folder. A run
killed at any moment leaves either a complete ``step-*`` folder or a partial one that is ignored
and cleaned up; only complete folders are resumed from.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError
from longrope.io import write_json
from longrope.train.data import Cursor

__all__ = ["TrainState", "CHECKPOINTS", "STATE_FILE", "checkpoint_dirs", "latest_checkpoint",
           "save_checkpoint", "load_checkpoint", "check_same_run"]

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.json"
_PREFIX = "step-"
_PARTIAL = ".partial"


@dataclass
class TrainState:
    """What the loop needs besides accelerate's state to continue exactly where it stopped."""

    step: int = 0
    """Optimizer steps completed."""
    cursor: Cursor = field(default_factory=Cursor)
    """Where the next step's windows start in the document stream."""
    tokens: int = 0
    """Input tokens trained on so far (all processes)."""
    seconds: float = 0.0
    """Training time so far (earlier runs of a resumed run included)."""
    run: dict[str, Any] = field(default_factory=dict)
    """The resolved configuration (see :func:`check_same_run`)."""

    def to_dict(self) -> dict[str, Any]:
        return {"step": self.step, "cursor": self.cursor.to_dict(), "tokens": self.tokens,
                "seconds": self.seconds, "run": self.run}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(int(d["step"]), Cursor.from_dict(d["cursor"]), int(d["tokens"]), float(d["seconds"]),
                   dict(d["run"]))


def _name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints under ``out``, oldest first."""
    root = Path(out) / CHECKPOINTS
    if not root.is_dir():
        return []
    found = []
    for p in root.iterdir():
        if p.name.startswith(_PREFIX) and p.name[len(_PREFIX):].isdigit() and (p / STATE_FILE).is_file():
            found.append((int(p.name[len(_PREFIX):]), p))
    return [p for _, p in sorted(found)]


def latest_checkpoint(out: Path) -> Path | None:
    dirs = checkpoint_dirs(out)
    return dirs[-1] if dirs else None


def save_checkpoint(accelerator: Any, out: Path, state: TrainState, *, keep: int) -> Path:
    """Save everything (collective: every process calls it); returns the checkpoint folder."""
    root = Path(out) / CHECKPOINTS
    final = root / _name(state.step)
    partial = root / f".{_name(state.step)}{_PARTIAL}"
    if accelerator.is_main_process:
        root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(partial))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_json(partial / STATE_FILE, state.to_dict())
        if final.exists():  # the same step saved by an earlier, killed run of this same trajectory
            shutil.rmtree(final)
        os.replace(partial, final)
        for old in checkpoint_dirs(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(f".{_PREFIX}*{_PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


def load_checkpoint(accelerator: Any, path: Path) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states from ``path``; returns our state."""
    try:
        state = TrainState.from_dict(json.loads((Path(path) / STATE_FILE).read_text(encoding="utf-8")))
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise UserError(f"{path}/{STATE_FILE} is unreadable ({e}); delete that checkpoint folder to resume "
                        "from the one before") from None
    accelerator.load_state(str(path))
    return state


def check_same_run(saved: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse to resume when a setting that shapes the trajectory changed (names the first one)."""
    for key, value in current.items():
        if key in saved and saved[key] != value:
            raise ConfigError(key, "{name} is " + f"{value!r} but the checkpoint was made with {saved[key]!r}; "
                              "resume with the same value, or start a new run folder")
