"""Resumable checkpoints on accelerate's ``save_state`` / ``load_state``, made atomic.

``OUT/checkpoints/step-00000050/`` holds what ``Accelerator.save_state`` writes (model weights as
safetensors, optimizer, scheduler, gradient scaler, every process's RNG states) plus our
``train_state.json``: the step, the data :class:`~longrope.train.data.Cursor`, tokens and time so
far, and the resolved configuration the run was started with.

Integrity: ``train_state.json`` also records the SHA-256 of every file accelerate wrote (``files``)
and of its own fields (``sha256``), computed at save; :func:`intact_checkpoint` checks them, and the
fields' ranges, before anything is loaded. :func:`newest_intact_checkpoint` resumes from the newest checkpoint that passes and says
which damaged ones it skipped; none intact is refused in one line.

Atomicity: every process saves into ``.step-00000050.partial`` (FSDP and DeepSpeed save shards from
every rank), then the main process writes ``train_state.json`` last and renames the folder. A run
killed at any moment leaves either a complete ``step-*`` folder or a partial one that is ignored
and cleaned up; only complete folders are resumed from.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import pickle
import shutil
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError, shown
from longrope.io import (
    SEAL,
    as_write_error,
    file_sha256,
    give_default_modes,
    make_folder,
    path_argument,
    read_json,
    replace_folder,
    seal_intact,
    sealed,
    write_json,
    write_text,
)
from longrope.train.data import Cursor

__all__ = ["TrainState", "CHECKPOINTS", "STATE_FILE", "RUN_ID_FILE", "checkpoint_dirs", "latest_checkpoint",
           "intact_checkpoint", "newest_intact_checkpoint", "save_checkpoint", "load_checkpoint", "check_same_run",
           "run_id_of", "take_run_id"]

CHECKPOINTS = "checkpoints"
STATE_FILE = "train_state.json"
#: ``checkpoints/run-id``: the id of the run whose checkpoints the folder keeps (each checkpoint records it too)
RUN_ID_FILE = "run-id"
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
    def from_dict(cls, d: Any) -> TrainState:
        """The state from ``train_state.json``; a field of the wrong kind or out of range raises
        ``ValueError`` naming it (the caller names the file)."""
        from longrope.options import int_problem

        def count(v: Any, what: str) -> int:
            problem = int_problem(v, 0, 2**62)
            if problem:
                raise ValueError(f"{what} {problem}")
            return v

        if not isinstance(d, dict):
            raise ValueError("not a JSON object")
        cur = d.get("cursor")
        if not isinstance(cur, dict):
            raise ValueError(f"cursor must be an object, got {cur!r}")
        seconds = d.get("seconds")
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not math.isfinite(seconds) \
                or seconds < 0:
            raise ValueError(f"seconds must be a number >= 0, got {seconds!r}")
        if not isinstance(d.get("run"), dict):
            raise ValueError("run must be an object")
        cursor = Cursor(*(count(cur.get(k), f"cursor.{k}") for k in ("epoch", "index", "offset")))
        return cls(count(d.get("step"), "step"), cursor, count(d.get("tokens"), "tokens"), float(seconds),
                   dict(d["run"]))


def _name(step: int) -> str:
    return f"{_PREFIX}{step:08d}"


def checkpoint_dirs(out: Path) -> list[Path]:
    """Complete checkpoints under ``out``, oldest first."""
    root = Path(out) / CHECKPOINTS
    if os.path.lexists(root) and not root.is_dir():  # a file (or a dead link) where the checkpoints go
        raise UserError(f"{root} is not a folder (the run folder keeps its checkpoints there); move it away, or "
                        "choose another output folder")
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
        make_folder(root)
        shutil.rmtree(partial, ignore_errors=True)
    accelerator.wait_for_everyone()
    try:
        with _quiet_shared_tensor_notice():
            accelerator.save_state(str(partial))
    except BaseException as exc:
        # half a checkpoint, never resumed from, holding the space: gone whatever stopped the save (a full disk, a
        # Ctrl-C or SIGTERM: it stayed behind, a hidden copy of the weights, until a later save of the run; battery 18)
        shutil.rmtree(partial, ignore_errors=True)
        failed = as_write_error(exc, partial) if isinstance(exc, RuntimeError) else None  # torch's writer on a full
        if failed is None:  # disk or past ulimit -f: a traceback without an errno
            raise
        raise failed from None
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        give_default_modes(partial)  # safetensors wrote the weights 0600, whatever the umask
        doc = {**state.to_dict(), "files": _file_digests(partial)}
        write_json(partial / STATE_FILE, sealed(doc))
        if final.is_symlink() or final.is_file():  # not a checkpoint this run wrote (it was refused as damaged)
            final.unlink()
        # the same step may be there, saved by an earlier, killed run of this same trajectory
        replace_folder(partial, final)
        for old in checkpoint_dirs(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in root.glob(f".{_PREFIX}*{_PARTIAL}"):
            shutil.rmtree(stale, ignore_errors=True)
    accelerator.wait_for_everyone()
    return final


@contextlib.contextmanager
def _quiet_shared_tensor_notice():
    """Hide accelerate's "Removed shared tensor ... while saving" warning, logged on every save of a
    model with tied weights (the embeddings and the LM head): the tie is restored by ``load_state``
    into the same model, so there is nothing for a user to check or do."""
    logger = logging.getLogger("accelerate.utils.other")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)




def _file_digests(folder: Path, *, hash_files: bool = True) -> dict[str, str]:
    """``{path relative to folder: SHA-256}`` of every file under ``folder`` but ``train_state.json``
    (``hash_files=False``: the names only, with empty digests)."""
    return {p.relative_to(folder).as_posix(): file_sha256(p) if hash_files else "" for p in sorted(folder.rglob("*"))
            if (p.is_file() or p.is_symlink()) and p.relative_to(folder).as_posix() != STATE_FILE}


def intact_checkpoint(path: Path) -> TrainState:
    """The state of checkpoint ``path`` once its files match their digests and its fields are in range
    (without loading anything into a model); a ``UserError`` naming the problem otherwise (a checkpoint
    without digests, written before they were recorded, cannot be verified and is refused too)."""
    path = Path(path_argument(path, "intact_checkpoint's path (a checkpoint folder)"))
    if path.is_symlink():  # save_checkpoint makes folders: a link is another run's checkpoint (a confusing
        # "--seed is 0 but the checkpoint was made with 1" when that run's settings differed, a silent resume when not)
        raise UserError(f"{path} is a link to {os.readlink(path)}, not a checkpoint this run saved; remove the link "
                        "(to resume that run, resume its own folder)")
    doc = read_json(path / STATE_FILE, what="checkpoint state")
    try:
        state = TrainState.from_dict(doc)
    except ValueError as exc:
        raise UserError(f"{path / STATE_FILE}: {exc}") from None
    if doc.get(SEAL) is not None and not seal_intact(doc):
        raise UserError(f"{path / STATE_FILE} is damaged or edited (its fields do not match their SHA-256)")
    if path.name != _name(state.step):
        raise UserError(f"{path / STATE_FILE}: step {state.step} does not match its folder {path.name}")
    files = doc.get("files")
    if files is None or doc.get("sha256") is None:  # nothing proves it is what was saved: never loaded unverified
        raise UserError(f"{path / STATE_FILE} records no file digests (written by an older longrope, or edited), so "
                        "the checkpoint cannot be verified")
    if not isinstance(files, dict) or not files or not all(isinstance(v, str) for v in files.values()):
        raise UserError(f"{path / STATE_FILE}: malformed 'files' (the digests of the checkpoint's files)")
    extra = sorted(set(_file_digests(path, hash_files=False)) - set(files))
    if extra:  # accelerate loads what it finds (a pytorch_model.bin beside the weights, say): nothing unlisted
        raise UserError(f"{path}: {extra[0]} was not saved with the checkpoint (it is not among its digests)")
    for rel, digest in files.items():
        f = path / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute() or not f.is_file():
            raise UserError(f"{path}: {rel} is missing")
        if file_sha256(f) != digest:
            raise UserError(f"{path}: {rel} is damaged (its SHA-256 differs from the one recorded at save)")
    return state


def newest_intact_checkpoint(out: Path, say: Callable[[str], None]) -> tuple[Path, TrainState] | None:
    """The newest checkpoint under ``out`` that :func:`intact_checkpoint` accepts and that this run saved (its
    run id), and its state; the damaged or foreign newer ones are skipped with a message saying so. None when there is no checkpoint; a
    ``UserError`` when there are some and none is intact."""
    damaged: list[str] = []
    dirs = checkpoint_dirs(out)
    mine = run_id_of(out)
    for path in reversed(dirs):
        try:
            state = intact_checkpoint(path)
            _refuse_foreign(path, state, mine)
        except UserError as exc:
            damaged.append(str(exc))
            continue
        if damaged:
            say(f"skipped {len(damaged)} damaged checkpoint(s) ({'; '.join(damaged)}); resuming from "
                f"the previous intact one, {path.name}")
        return path, state
    if damaged:
        raise UserError(f"no intact checkpoint to resume from: {damaged[0]}" + (f" (and {len(damaged) - 1} more)"
                        if len(damaged) > 1 else "") + f"; delete {Path(out) / CHECKPOINTS} to start over")
    return None


def run_id_of(out: Path) -> str | None:
    """The id of the run whose checkpoints ``out`` keeps, drawn when it started (None: a folder of a run from before
    run ids, or of none yet)."""
    path = Path(out) / CHECKPOINTS / RUN_ID_FILE
    try:
        text = path.read_text(encoding="ascii").strip()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read {path} ({type(exc).__name__}), the id of the run the checkpoints belong to; "
                        "restore it, or delete it to resume whatever checkpoints the folder holds") from None
    if not (len(text) == 32 and all(c in "0123456789abcdef" for c in text)):
        raise UserError(f"{path} is not a run id (32 hex digits; edited?), the id of the run the checkpoints belong "
                        "to; restore it, or delete it to resume whatever checkpoints the folder holds")
    return text


def take_run_id(out: Path, state: TrainState, *, main: bool, resumed: bool) -> None:
    """Bind ``out``'s checkpoints to the run in ``state``: a fresh start draws a new id; a resume keeps the
    checkpoint's (:func:`newest_intact_checkpoint` found it the folder's), or the folder's (a checkpoint from before run
    ids). Every checkpoint saved from ``state`` records it. Only the main process writes the file (it alone writes
    checkpoints' states)."""
    from uuid import uuid4

    if not main:
        return
    run_id = state.run.get("run_id") if isinstance(state.run.get("run_id"), str) else None
    run_id = run_id or (run_id_of(out) if resumed else None) or uuid4().hex
    state.run["run_id"] = run_id
    if run_id_of(out) != run_id:
        make_folder(Path(out) / CHECKPOINTS)
        write_text(Path(out) / CHECKPOINTS / RUN_ID_FILE, run_id + "\n")


def _refuse_foreign(path: Path, state: TrainState, mine: str | None) -> None:
    """Refuse a checkpoint another run saved (a copy of another run folder's ``step-N``; ``mine``: the folder's run
    id): taken as this run's newest, it continued that run in this folder (its log and records mixing both), or,
    when the runs' settings differed, the refusal asked to resume "with the same value" of that other run's seed or
    learning rate (battery 20). A checkpoint or folder from before run ids cannot tell and is taken."""
    theirs = state.run.get("run_id")
    if mine is not None and theirs is not None and theirs != mine:
        raise UserError(f"{path} was saved by another fine-tuning run (copied from another run folder?), not a "
                        "checkpoint this run saved; remove it (to continue that run, resume its own folder)")


def load_checkpoint(accelerator: Any, path: Path, state: TrainState | None = None) -> TrainState:
    """Restore model, optimizer, scheduler and RNG states from ``path``; returns our state (``state``:
    the one :func:`intact_checkpoint` already read and checked)."""
    if state is None:
        state = intact_checkpoint(path)
    try:
        with warnings.catch_warnings():  # torch's remark on a foreign pickle protocol: the error below says it
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            accelerator.load_state(str(path))
    except (OSError, RuntimeError, ValueError, KeyError, TypeError, EOFError, pickle.UnpicklingError) as exc:
        # a file accelerate or torch refuses (torch's weights-only unpickler included): one line
        raise UserError(f"cannot load the checkpoint {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
                        f"); delete that folder to resume from the one before") from None
    return state


#: Content digests in a run record, the setting each one stands for (the CLI spells it as its flag) and
#: what a mismatch means. A record that has the digest is compared by content, not by its path: a
#: file moved elsewhere resumes, a file rewritten in place does not.
CONTENT_KEYS = {
    "model_sha256": ("model", "now holds another model (weights, config or tokenizer) than the checkpoint was "
                              "trained from"),
    "factors_sha256": ("factors", "now holds other factors than the checkpoint was trained with"),
    "data_sha256": ("data", "now holds other documents or tokens than the checkpoint was trained on (rebuilt?)"),
    "train_docs_sha256": ("exclude", "selects other training documents than the checkpoint's (the held-out "
                                     "split or the excluded folders changed)"),
}


def check_same_run(saved: dict[str, Any], current: dict[str, Any], *, tokens_per_step_given: bool = False) -> None:
    """Refuse to resume when a setting that shapes the trajectory changed (names the first one): the
    content of the factor file and the shard folder, the resolved precision (not the ``--dtype`` that names it:
    a run started with ``auto`` on a CPU resumes on a GPU with ``--dtype float32``), and every setting in
    ``current`` that ``saved`` also records. ``tokens_per_step_given``: the user set the tokens per step
    themselves (then they are the setting named, not the accumulation behind them)."""
    by_content = {CONTENT_KEYS[k][0] for k in CONTENT_KEYS if k in saved}
    if "mixed_precision" in saved:  # the precision --dtype resolves to is compared, not its spelling: 'auto'
        by_content.add("dtype")  # from a CPU run is 'float32' on a GPU, where 'auto' would resolve to bf16
    for key, (field_name, meaning) in CONTENT_KEYS.items():
        if key in saved and key in current and saved[key] != current[key]:
            value, before = current.get(field_name), saved.get(field_name)
            said = f" {value}" if isinstance(value, str) else ""
            if isinstance(before, str) and isinstance(value, str) and before != value:  # another file given
                what = meaning.replace("now holds", "holds").replace("now selects", "selects")
                raise ConfigError(field_name, "{name}" + f"{said} {what}; give the checkpoint's ({before}), "
                                  "or start a new run folder")
            raise ConfigError(field_name, "{name}" + f"{said} {meaning}; restore it, or start a new run folder")
    for key, value in current.items():
        if key in CONTENT_KEYS or key in by_content or key not in saved or saved[key] == value:
            continue
        if key == "mixed_precision":
            raise ConfigError("dtype", "{name} " + f"resolves to mixed precision {shown(value)} here but the checkpoint "
                              f"was trained with {shown(saved[key])}; give the checkpoint's precision with " + "{name}")
        if key == "tokens_per_step" and not tokens_per_step_given:  # grad-accum x processes changed (battery 15)
            raise ConfigError(("tokens_per_step", "grad_accum"), "the tokens per step (batch size x seq-len x "
                              f"{{name1}} x processes) are {shown(value)} here but the checkpoint was made with "
                              f"{shown(saved[key])}; resume with {{name0}} {shown(saved[key])} instead of "
                              "{name1} (it sets the accumulation for this number of processes), or start a new run "
                              "folder")
        raise ConfigError(key, "{name} is " + f"{shown(value)} but the checkpoint was made with {shown(saved[key])}; "
                          "resume with the same value, or start a new run folder")
