"""One run-folder layout for every command that does work.

::

    RUN_DIR/
      config.json   {"format": "longrope-run/1", "command": "search", "config": {...}}
                    — the resolved configuration; ``longrope rerun RUN_DIR`` repeats the run from it
      run.json      argv, library versions, device, start/end time, status ("running", "done"; "interrupted" or
                    "failed" with its one-line error when it stopped before the end; a killed run stays "running")
      summary.json  the command's result (what its ``run`` returns)
      ...           the command's own files (factors.json, ppl.csv, plots, checkpoints, ...)

Two ways a folder comes into being:

- **staged** (one-shot commands: ``eval``, ``demo``): everything is written into a hidden sibling
  ``.NAME.partial-PID`` and renamed to ``NAME`` when the run succeeds. A killed or failed run
  leaves the previous complete folder (or none); stale partial folders of dead processes are
  removed by the next run for the same target. An existing folder is replaced only when it is a
  finished run of the same command and the command allows it.
- **in place** (resumable commands: ``search``, ``finetune``, ``pipeline``; the repository's tiny-model trainer): the folder
  is the checkpoint's home; each file is written atomically, and ``run.json``'s status says whether
  the run finished. A folder that holds nothing but ``config.json`` and an unfinished ``run.json``
  (a *stub*: the run stopped during its set-up, before it wrote any work) protects nothing: a fresh
  start of the same command takes it over, unless the process that wrote it still runs (it holds the
  folder's lock; ``run.json`` records its pid and host, for a stub written on another host). A run that fails during set-up removes a folder it
  created (:meth:`RunFolder.abandon`).

**One process per in-place folder.** :meth:`RunFolder.open` takes an exclusive :class:`FolderLock`
(``fcntl.flock`` on ``RUN_DIR/.lock``) before it writes anything into an in-place folder and the
run holds it until :meth:`RunFolder.close` (or its process ends: the OS drops the lock of a killed
process, so no stale lock is ever left behind). A second process into the same folder — a second
``--resume`` while the first still trains — is refused in one line.

Every check that can fail on the target (a file where a folder is expected, a folder that is not a
run of this command, a folder that cannot be written) happens in :meth:`RunFolder.open`, before any
long work starts.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import platform
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from longrope.errors import UserError, one_line
from longrope.io import (
    aside_prefix,
    check_no_link_loop,
    check_replaceable_target,
    hold_folder,
    holds_work,
    is_atomic_temporary,
    is_system_dropping,
    os_error_fix,
    output_target,
    path_kind,
    place_new,
    read_json,
    release_folder,
    remove_dead_leftovers,
    replace_folder,
    sibling_prefix,
    unlink_copy,
    write_json,
)

RUN_FORMAT = "longrope-run/1"
CONFIG_FILE = "config.json"
RUN_FILE = "run.json"
RESULT_FILE = "summary.json"
LOCK_FILE = ".lock"

__all__ = ["RunFolder", "FolderLock", "read_run_config", "versions", "RUN_FORMAT", "CONFIG_FILE", "RUN_FILE", "RESULT_FILE",
           "nothing_to_resume", "holds_run"]


def versions(device: str | None = None) -> dict[str, Any]:
    """Library versions and the machine, for the record."""
    import numpy
    import torch
    import transformers

    import longrope

    out: dict[str, Any] = {
        "longrope": longrope.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device is not None:
        out["device"] = str(device)
        if str(device).startswith("cuda") and torch.cuda.is_available():
            out["device_name"] = torch.cuda.get_device_name(torch.device(device))
    return out


def run_folder_of(run_arg: str | os.PathLike) -> Path:
    """The run folder a ``RUN`` argument names: the folder itself, or the folder of its ``config.json``."""
    path = Path(run_arg)
    return path if path.is_dir() else path.parent


def read_run_config(run_dir: str | os.PathLike) -> tuple[str, dict]:
    """``(command, config dict)`` saved in a run folder; a one-line error when it is not one."""
    if isinstance(run_dir, str) and not run_dir.strip():  # Path('') is '.': 'rerun ""' (an unset $RUN) repeated
        raise UserError("the run folder (RUN_DIR or --config) is given as an empty text; give the folder a command "
                        "wrote (its -o)")
    path = Path(run_dir)  # whatever run the current folder held, and --config '' was read as no --config (21b)
    cfg_path = path / CONFIG_FILE if path.is_dir() else path
    if not cfg_path.exists():
        check_no_link_loop(cfg_path, "run folder")
        raise UserError(f"{path} is not a run folder (no {CONFIG_FILE}); give the folder a command wrote")
    doc = read_json(cfg_path, what="run configuration", expect=None)
    from longrope.formats.hf_config import is_model_config

    if is_model_config(doc):
        raise UserError(f"{path} is a model folder (its {CONFIG_FILE} configures a model), not a run folder; "
                        "give the folder a longrope command wrote (its -o)")
    if not isinstance(doc, dict) or not isinstance(doc.get("format"), str) or not doc["format"].startswith("longrope-run/"):
        # a pipeline's pipeline.json or a factor file given as --config was guessed 'written by an older longrope?'
        raise UserError(f"{cfg_path} is not a run configuration (the {CONFIG_FILE} a longrope command writes in its "
                        "run folder); give the run folder (its -o) or that file")
    if doc["format"] != RUN_FORMAT or not isinstance(doc.get("config"), dict):
        raise UserError(f"{cfg_path} is a run configuration this longrope cannot read (format "
                        f"{doc['format'][:80]!r}; it reads {RUN_FORMAT}); run the command again with its flags")
    return str(doc.get("command")), doc["config"]


def read_run_cwd(run_dir: str | os.PathLike) -> Path | None:
    """The folder a recorded run was started in (its config's relative paths are relative to it), when its
    ``config.json`` records one that still exists; None otherwise (older records, a run from elsewhere).

    A recorded folder that no longer exists was moved or renamed with the run inside it (``mv project
    project2``): the run folder sits at its recorded relative ``-o`` below where that folder is now, so that
    place stands for it (the inputs that moved with it are found again)."""
    path = Path(run_dir)
    try:
        doc = read_json(path / CONFIG_FILE if path.is_dir() else path, what="run configuration", expect=None)
    except UserError:
        return None
    cwd = doc.get("cwd") if isinstance(doc, dict) else None
    if not isinstance(cwd, str) or not os.path.isabs(cwd):
        return None
    if os.path.isdir(cwd):
        return Path(cwd)
    config = doc.get("config")
    output = config.get("output") if isinstance(config, dict) else None
    parts = Path(output).parts if isinstance(output, str) and output and not os.path.isabs(output) else ()
    if not parts or any(p in ("..", ".") for p in parts) or not path.is_dir():
        return None
    moved = path.resolve().parents[len(parts) - 1]
    return moved if moved.is_dir() else None


def recorded_paths_here(saved: dict, run_dir: str | os.PathLike) -> dict:
    """A recorded configuration (``--config RUN``) with its relative paths made absolute against the folder the
    run was started in, for a command started elsewhere: a value is rebased when it names something there
    (``--data shards``), so model names such as ``tiny`` and outputs yet to be written stay as recorded.
    The command's own flags are read against the folder it runs in, as always."""
    recorded = read_run_cwd(run_dir)
    if recorded is None or recorded.resolve() == Path.cwd().resolve():
        return saved

    def here(v: Any) -> Any:
        if isinstance(v, str) and v and not os.path.isabs(v) and os.path.lexists(recorded / v):
            return str(recorded / v)
        return v

    return {k: [here(x) for x in v] if isinstance(v, list) else here(v) for k, v in saved.items()}


def _as_recorded(folder: Path, command: str, config: dict) -> tuple[dict, str]:
    """``(config, cwd)`` to record for a run starting in ``folder``: a resumed run started from another folder keeps
    its record's relative paths and the folder they are relative to (the values :func:`recorded_paths_here` made
    absolute for it, ``-o`` included, name what the record names), and records its own other relative paths
    absolute. A resume from elsewhere (``--config RUN --resume``) recorded the whole configuration absolute: the
    project moved with the run inside it (``mv project project2``) could no longer be resumed or rerun, as it could
    before that resume (battery 23a)."""
    here = os.getcwd()
    if not (folder / CONFIG_FILE).is_file():
        return config, here
    try:
        previous, saved = read_run_config(folder)
    except UserError:
        return config, here
    base = read_run_cwd(folder)
    if previous != command or base is None or base.resolve() == Path(here).resolve():
        return config, here

    def same(new: Any, old: Any) -> bool:  # the new value names what the recorded relative one names
        return (isinstance(new, str) and isinstance(old, str) and bool(old) and not os.path.isabs(old)
                and os.path.lexists(base / old) and os.path.realpath(new) == os.path.realpath(base / old))

    def kept(new: Any, old: Any) -> Any:
        if same(new, old):
            return old
        if isinstance(new, str) and new and not os.path.isabs(new) and os.path.lexists(new):
            return os.path.abspath(new)  # a path of this resume's own, read against the folder it ran in
        return new

    def field(key: str, new: Any) -> Any:
        old = saved.get(key)
        if isinstance(new, list):
            olds = old if isinstance(old, list) and len(old) == len(new) else [None] * len(new)
            return [kept(n, o) for n, o in zip(new, olds)]
        return kept(new, old)

    return {k: field(k, v) for k, v in config.items()}, str(base)


class FolderLock:
    """An exclusive lock on ``FOLDER/.lock``, held while a process works in the folder.

    ``fcntl.flock`` belongs to the open file, so the OS releases it when the process dies however it
    dies (a SIGKILL included): a lock file left behind by a dead process never blocks. The holder's pid
    is written into the file, for the refusal's message only (the lock, not the pid, decides). The
    lock is per open file, so a second :meth:`acquire` on the same folder is refused even within one
    process."""

    def __init__(self, folder: Path, handle: Any) -> None:
        self.folder = folder
        self._handle = handle

    @classmethod
    def acquire(cls, folder: str | os.PathLike, command: str, *, flag: str = "--output") -> FolderLock:
        """Lock the (existing) ``folder`` or refuse in one line naming the process that holds it."""
        folder = Path(folder)
        with contextlib.suppress(OSError):  # a folder copied with cp -al shares its lock file with the original: the
            unlink_copy(folder / LOCK_FILE)  # copy was refused as "in use" while the original ran (battery 19c)
        try:  # O_NOFOLLOW: a planted symlink never makes the lock truncate the file it points to
            fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
            handle = os.fdopen(fd, "r+")
        except OSError as exc:
            raise _lock_problem(folder, flag, exc) from None
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.seek(0)
            holder = handle.read(32).strip()
            handle.close()
            who = f"pid {holder}" if holder.isdigit() else ""
            # the holder's command, where its config.json names one: a finetune refused in a folder a search held
            # said "(one finetune run per folder)", as if a fine-tuning ran there (battery 29c)
            holds = _run_command(folder)
            what = ", ".join(w for w in (who, f"{_article(holds)} {holds} run" if holds else "") if w)
            raise UserError(f"{flag} {folder} is in use by another longrope process{f' ({what})' if what else ''}; "
                            "wait for it to finish or stop it, or give another folder (one run per folder)") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"{os.getpid()}\n")
        handle.flush()
        lock = cls(folder, handle)
        hold_folder(folder, lock.check_in_place)
        return lock

    def check_in_place(self) -> None:
        """Refuse to go on writing when the folder is no longer the one locked: moved (``mv``) or removed while the
        run worked. Writers rebuilt the old path and went on there without config.json or lock, the work so far
        left behind under the new name (battery 16)."""
        if self._handle is None:
            return
        mine = os.fstat(self._handle.fileno())
        try:
            now = os.stat(self.folder / LOCK_FILE, follow_symlinks=False)
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                return
        except OSError:
            pass
        raise UserError(f"the run folder {self.folder} was moved or removed while this run worked in it; it stops "
                        "here, its work so far is where the folder went: continue it there with --resume")

    def discard(self) -> None:
        """Remove the lock file while still holding it (the folder was refused: a lock this process
        created leaves nothing behind). A process that opened it meanwhile fails to lock it and refuses."""
        if self._handle is not None:
            release_folder(self.folder)
            (self.folder / LOCK_FILE).unlink(missing_ok=True)

    def release(self) -> None:
        if self._handle is not None:
            release_folder(self.folder)
            self._handle.close()  # closing the file drops the lock
            self._handle = None

    @property
    def held(self) -> bool:
        return self._handle is not None

    def __enter__(self) -> FolderLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _lock_problem(folder: Path, flag: str, exc: OSError) -> UserError:
    """Why ``folder``'s lock file could not be opened, in one line: a lock path that is no plain file (a folder, a
    link, a pipe someone made) is named with its fix — only longrope makes it, and any process of a run holds
    it open, so removing it loses nothing — otherwise the folder cannot be written."""
    lock = folder / LOCK_FILE
    if os.path.islink(lock) or (os.path.lexists(lock) and not lock.is_file()):
        kind = "a link" if os.path.islink(lock) else "a folder" if lock.is_dir() else "a special file"
        return UserError(f"{flag} {folder}: its lock file {lock} is {kind}, not the plain file longrope makes; "
                         "remove it and run again")
    return UserError(f"{flag} {folder} cannot be written ({exc.strerror or exc}); "
                     f"{os_error_fix(exc, 'choose a writable folder')}")


def _program() -> list[str]:
    """How the running program was typed: ``longrope`` (the console script), or ``python -m longrope`` (whose
    ``sys.argv[0]`` is the package's ``__main__.py``: run.json said "__main__.py", nothing a user can type)."""
    program = Path(sys.argv[0])
    return ["python", "-m", program.parent.name] if program.name == "__main__.py" else [program.name]


def _rerun_command(final: Path) -> str:
    """run.json's ``rerun``: the command that repeats the run, as typed (``rerun`` needs a new folder: ``-o``)."""
    import shlex

    return shlex.join(["longrope", "rerun", str(final), "-o", f"{final}-again"])


class RunFolder:
    """A command's output folder (see the module docstring). Create it with :meth:`open`."""

    def __init__(self, final: Path, work: Path, command: str, staged: bool, created: bool = False,
                 lock: FolderLock | None = None, replaces: bool = False, outputs: tuple[str, ...] = ()) -> None:
        self.final = final
        """where the results end up"""
        self.path = work
        """where files are written now (``final`` itself unless staged)"""
        self.command = command
        self.staged = staged
        self.created = created
        """whether :meth:`open` created the (in-place) folder, so that :meth:`abandon` may remove it"""
        self.replaces = replaces
        """(staged) whether something was at ``final`` when the run began, which its results replace; a folder
        new then (or empty) is placed only where nothing arrived meanwhile (:func:`~longrope.io.place_new`)"""
        self.outputs = outputs
        """(staged, replacing) the files a run of ``command`` writes besides its records (shell patterns)"""
        self.lock = lock
        """the in-place folder's :class:`FolderLock` (None for a staged folder: its work folder is this
        process's own)"""
        self._t0 = time.time()
        self._run: dict[str, Any] = {}

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    # -- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(cls, target: str | os.PathLike, command: str, *, staged: bool, resume: bool = False,
             replace: tuple[str, ...] = (), adopt: bool = False, flag: str = "--output") -> RunFolder:
        """Check ``target`` and prepare the folder to write into.

        ``resume``: the folder must hold an unfinished or finished run of ``command`` (in place only).
        ``replace``: the files a run of ``command`` writes besides its records (shell patterns, ``ppl.json``,
        ``passkey_*.png``); given, a finished run of the same command at ``target`` that holds nothing else is
        replaced on success.
        ``adopt``: an existing folder that is no run folder yet becomes one (in place only; e.g. the
        shipped assets, written before run folders existed).
        """
        final = output_target(target)  # a link's target (a staged run would swap a folder in for the link)
        if staged:  # built aside, then renamed over the target (the link's: a mount point there is refused too)
            check_replaceable_target(final, flag)
        if final.exists() and not final.is_dir():
            raise UserError(f"{flag} {final} is {path_kind(final)}, not a folder; give a folder path")
        parent = final.resolve().parent
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{flag} {final}: {parent} is a file, not a folder")
        # in place: the lock first (an existing folder is judged only by the process that holds it)
        planted = not staged and final.is_dir() and not os.path.lexists(final / LOCK_FILE)
        lock = FolderLock.acquire(final, command, flag=flag) if not staged and final.is_dir() else None
        try:
            folder = cls._open(final, parent, command, staged, resume, replace, adopt, flag, lock)
        except BaseException:
            if lock is not None:
                if planted:  # a refused folder (someone's own files, say) keeps no trace of the refusal
                    lock.discard()
                lock.release()
            raise
        return folder

    @classmethod
    def _open(cls, final: Path, parent: Path, command: str, staged: bool, resume: bool, replace: tuple[str, ...],
              adopt: bool,
              flag: str, lock: FolderLock | None) -> RunFolder:
        existing = final.is_dir() and any(not _no_ones_work(p.name) for p in final.iterdir())
        stub = existing and not staged and not resume and _is_stub(final, command, flag)
        if stub:
            existing = False
        if existing and not resume and not (adopt and not staged and _run_command(final) in (None, command)):
            prev = _run_command(final)
            if not (replace and staged and prev == command):
                what = f"holds {_article(prev)} {prev} run" if prev else "is not empty"
                hint = "add --resume to continue it, or choose" if prev == command and not staged else "choose"
                raise UserError(f"{flag} {final} already exists and {what}; {hint} a new folder")
            if (why := _not_only_a_run(final, command, replace)) is not None:
                raise UserError(f"{flag} {final} {why}; move it away, or choose a new folder")
        if resume:
            if staged:
                raise ValueError("a staged run folder cannot be resumed")
            if _run_command(final) != command:
                raise UserError(nothing_to_resume(final, command))
        created = not staged and not final.exists()
        try:
            parent.mkdir(parents=True, exist_ok=True)
            if stub:  # a fresh start: the stub's records go (its history of starts with them)
                for name in (CONFIG_FILE, RUN_FILE):
                    (final / name).unlink(missing_ok=True)
            if staged:
                cls._clean_partials(final)
                work = parent / f"{sibling_prefix(final, 'partial-')}{os.getpid()}"
                if work.exists():
                    shutil.rmtree(work)
                work.mkdir()
            else:
                final.mkdir(exist_ok=True)
                work = final
            if not staged and lock is None:  # a new folder: locked before anything is written into it
                lock = FolderLock.acquire(final, command, flag=flag)
                if _work_files(final) and not stub:  # another process ran into it since the checks above
                    lock.release()
                    raise UserError(f"{flag} {final} was just written by another process; choose a new folder")
            probe = work / f"{_PROBE}{os.getpid()}"
            probe.write_bytes(b"")
            probe.unlink()
            if not staged:  # locked: no other process writes here, so these are a killed run's
                _remove_killed_writers_leftovers(work)
        except OSError as exc:
            if lock is not None:
                lock.release()
            raise UserError(f"{flag} {final} cannot be written ({exc.strerror or exc}); "
                            f"{os_error_fix(exc, 'choose a writable folder')}") from None
        return cls(final, work, command, staged, created, lock, replaces=final.is_dir() and holds_work(final),
                   outputs=replace)

    @staticmethod
    def _clean_partials(final: Path) -> None:
        """Remove partial folders of earlier runs for the same target whose process is gone, and what an earlier
        swap into it left aside when it was interrupted (:func:`~longrope.io.replace_folder`)."""
        for prefix in (sibling_prefix(final, "partial-"), aside_prefix(final)):
            remove_dead_leftovers(final.resolve().parent, prefix)

    # -- writing ----------------------------------------------------------------------------------
    def start(self, config: dict[str, Any], *, device: str | None = None, extra: dict | None = None) -> None:
        """Write ``config.json`` and ``run.json`` (status "running")."""
        config, cwd = _as_recorded(self.path, self.command, config)
        write_json(self.path / CONFIG_FILE, {"format": RUN_FORMAT, "command": self.command, "config": config,
                                             "cwd": cwd})  # what its relative paths are relative to
        prev = _read_run(self.path) if (self.path / RUN_FILE).exists() else {}  # a resumed run keeps its starts
        starts = prev.get("previous_starts")
        starts = [x for x in starts if isinstance(x, str)] if isinstance(starts, list) else []
        self._run = {
            "command": self.command,
            "argv": [*_program(), *sys.argv[1:]],
            "rerun": _rerun_command(self.final),
            "versions": versions(device),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._t0)),
            "status": "running",
            "pid": os.getpid(),
            "host": platform.node(),
            "previous_starts": [*starts, prev["started"]] if isinstance(prev.get("started"), str) else starts,
            **(extra or {}),
        }
        write_json(self.path / RUN_FILE, self._run)

    def finish(self, result: dict[str, Any]) -> Path:
        """Write ``summary.json``, mark the run done, (staged) move the folder into place and (in place) let go of
        its lock: the run is over, whether or not its caller closes it (an ``eval ruler`` run never did, and
        only the garbage collector freed its lock)."""
        write_json(self.path / RESULT_FILE, result)
        self._run.update(status="done", finished=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         seconds=round(time.time() - self._t0, 3))
        write_json(self.path / RUN_FILE, self._run)
        if self.staged:
            self._swap_into_place()
        self.close()
        return self.final

    def close(self) -> None:
        """Release the folder's lock (the run is over, finished or not). Idempotent."""
        if self.lock is not None:
            self.lock.release()

    def abandon(self) -> None:
        """After a failure: remove a staged folder; remove an in-place folder that :meth:`open`
        created while it holds no work yet (nothing but config.json and run.json), so that a run
        refused during its set-up leaves nothing behind. Other in-place folders keep their checkpoints."""
        if self.staged:  # the work folder only: an interrupt just after the swap found it renamed to the results
            if self.path != self.final and self.path.exists():
                shutil.rmtree(self.path, ignore_errors=True)
        elif (self.created and self.path.is_dir() and _work_files(self.path) <= {CONFIG_FILE, RUN_FILE}
              and _run_pid(self.path) in (None, os.getpid())):  # never another process's records
            shutil.rmtree(self.path, ignore_errors=True)
        else:
            self._record_stop()
        self.close()

    def _record_stop(self) -> None:
        """run.json of a run that stopped before its end (called while its exception is handled): "interrupted"
        (Ctrl-C, SIGTERM, SIGHUP) or "failed" with the error's line, and when. It said "running" for good, with
        the pid of a process long gone (battery 20); only a kill leaves it so now."""
        exc = sys.exc_info()[1]
        if not self._run or self._run.get("status") != "running" or exc is None:
            return
        failed = isinstance(exc, Exception)
        self._run.update(status="failed" if failed else "interrupted",
                         stopped=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                         seconds=round(time.time() - self._t0, 3))
        if failed:
            self._run["error"] = one_line(str(exc) or type(exc).__name__)[:2000]
        with contextlib.suppress(OSError, UserError):  # the run's own error is what the user is told
            write_json(self.path / RUN_FILE, self._run)

    def _swap_into_place(self) -> None:
        # a finished run found at open is replaced; into a new folder, another run's results that arrived
        # meanwhile are not (two reruns into one new -o: the second replaced the first's without a word)
        self.path = (replace_folder(self.path, self.final, problem=self._not_a_run_to_replace) if self.replaces
                     else place_new(self.path, self.final))

    def _not_a_run_to_replace(self, final: Path) -> str | None:
        """Why what is at ``final`` now is not the finished run of this command that :meth:`open` found there (what
        arrived while this one worked: another command's run, the user's files), or None (battery 23b)."""
        if not final.is_dir():
            return "is not a folder"
        if not any(not _no_ones_work(p.name) for p in final.iterdir()):
            return None
        prev = _run_command(final)
        if prev != self.command:
            return f"holds {_article(prev)} {prev} run" if prev else "is not empty"
        return _not_only_a_run(final, self.command, self.outputs)


def _not_only_a_run(folder: Path, command: str, outputs: tuple[str, ...]) -> str | None:
    """Why the finished run of ``command`` in ``folder``, which a new run replaces as a whole, holds more than that
    run (its records and ``outputs``), or None: a file or folder put there since (notes, a search run made inside
    it) went with the old results without a word (battery 29c). Hidden names count too (a ``.git`` or ``.notes``
    went, battery 29e); only what a writer of the run's own files leaves (lock, probe, temporaries) and
    :func:`~longrope.io.is_system_dropping` (a Finder's .DS_Store, a notebook's checkpoints) do not."""
    import fnmatch

    own = (CONFIG_FILE, RUN_FILE, RESULT_FILE, *outputs)
    for name in sorted(p.name for p in folder.iterdir()):  # hidden names too: a .git or .notes of the user's
        if is_system_dropping(name):
            continue
        if (folder / name).is_dir() or not (any(fnmatch.fnmatchcase(name, p) for p in own)
                                            or _set_up_leftover(name) or _temporary_of(name, own)):
            return f"holds {name!r}, which is not part of {_article(command)} {command} run (a new run replaces it as a whole)"
    return None


def _temporary_of(name: str, patterns: tuple[str, ...]) -> bool:
    """Whether ``name`` is the temporary :func:`~longrope.io.atomic_write` makes of a file named by one of
    ``patterns`` (shell patterns): what a writer of those files left when it was killed before its rename."""
    import fnmatch

    return is_atomic_temporary(name) and any(fnmatch.fnmatchcase(name, f"{sibling_prefix(p, '')}*") for p in patterns)


_PROBE = ".write-test-"


def _no_ones_work(name: str) -> bool:
    """Whether ``name`` in an output folder is no one's work: a set-up leftover, or what a file browser or notebook
    wrote there (:func:`~longrope.io.is_system_dropping`). A folder holding nothing else is empty to a new run."""
    return _set_up_leftover(name) or is_system_dropping(name)


def _set_up_leftover(name: str) -> bool:
    """Whether ``name`` in a run folder is what a run killed during its set-up left besides (or before) its
    records: the lock, the write probe, or the temporary of config.json or run.json written but not yet renamed
    (``io.atomic_write``). Such a folder is no one's work: a kill while config.json was written left a folder
    that a fresh start refused as not empty and --resume as holding no run (battery 14c)."""
    if name == LOCK_FILE or name.startswith(_PROBE):
        return True
    return any(is_atomic_temporary(name, of=record) for record in (CONFIG_FILE, RUN_FILE))


def _killed_writer_leftover(name: str) -> bool:
    """Whether ``name``, in a run folder this process holds the lock of, is what a killed writer left: a set-up
    leftover, or the temporary of any file written atomically there (checkpoint.json, cells.json ...). Only the
    lock holder writes into the folder, so no live process owns one; a search killed while it wrote its
    checkpoint kept a copy of it (MBs with a long fitness cache) for good, one more after each such kill
    (battery 14c)."""
    return _set_up_leftover(name) or is_atomic_temporary(name)


def _remove_killed_writers_leftovers(folder: Path) -> None:
    """Remove what killed writers left in the locked run folder ``folder`` and its subfolders (samples/, a pipeline's
    stage folders), never entering a subfolder that has a lock of its own: another run's folder, which another
    process may be writing now (a search stage resumed by itself)."""
    for p in list(folder.iterdir()):
        if p.is_dir() and not p.is_symlink():
            if not os.path.lexists(p / LOCK_FILE):
                _remove_killed_writers_leftovers(p)
        elif p.name != LOCK_FILE and _killed_writer_leftover(p.name):
            p.unlink(missing_ok=True)


def _work_files(folder: Path) -> set[str]:
    """The names in ``folder`` that may be work (hidden files — locks, write probes, temporaries — aside)."""
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def _read_run(folder: Path) -> dict:
    """``run.json`` of ``folder`` as a dict; an unreadable or malformed one counts as empty (it is a
    record of the run, rewritten at the next start, never an input to the work)."""
    try:
        return read_json(folder / RUN_FILE, what="run record")
    except UserError:
        return {}


def _run_pid(folder: Path) -> int | None:
    """The pid ``run.json`` records (the process that started the run), or None."""
    pid = _read_run(folder).get("pid")
    return pid if isinstance(pid, int) and not isinstance(pid, bool) else None


def _is_stub(folder: Path, command: str, flag: str) -> bool:
    """Whether ``folder`` holds a run of ``command`` that stopped during its set-up: nothing but
    config.json and a run.json whose status is not "done" (no checkpoint, no result). Called with the folder's
    lock held: a run in its set-up holds that lock from before it writes its records, so on this host the
    stub's process is gone, whatever process now has its pid (a pid is reused: a stub of a killed run was
    refused as "in use ... (pid 1)" for ever). A stub written on another host is refused in one line."""
    if _work_files(folder) - {CONFIG_FILE, RUN_FILE} or _run_command(folder) != command:
        return False
    if (folder / RUN_FILE).exists():
        try:
            run = read_json(folder / RUN_FILE, what="run record")
        except UserError:
            return False  # unreadable records: not ours to judge, the caller refuses the folder
    else:
        run = {}
    if run.get("status") == "done":
        return False
    pid, host = run.get("pid"), run.get("host")
    if isinstance(pid, int) and pid != os.getpid():
        if host != platform.node():
            raise UserError(f"{flag} {folder} holds {_article(command)} {command} run started on host {host} (pid {pid}) that has "
                            f"not written any work yet; if it no longer runs, delete the folder, or choose a new one")
    return True


def _run_command(folder: Path) -> str | None:
    """The command that wrote ``folder`` (from its config.json), or None."""
    try:
        return read_run_config(folder)[0]
    except UserError:
        return None


def holds_run(folder: str | os.PathLike, command: str) -> bool:
    """Whether ``folder`` holds a run of ``command`` (its config.json says so): one that ``--resume`` continues."""
    return Path(folder).is_dir() and _run_command(Path(folder)) == command


def nothing_to_resume(folder: Path, command: str) -> str:
    """Why ``folder`` cannot be resumed as a run of ``command``: it holds another command's run or none, or its
    work lost the record that says which command wrote it (config.json deleted or damaged: "it holds no search
    run" beside an intact checkpoint, and the fresh start then refused the folder as not empty)."""
    recorded = folder / CONFIG_FILE
    if (_run_command(folder) is None and _read_run(folder).get("command") == command
            and _work_files(folder) - {CONFIG_FILE, RUN_FILE}):  # run.json says whose work it is
        state = "unreadable" if os.path.lexists(recorded) else "missing"
        return (f"nothing to resume in {folder}: its {CONFIG_FILE}, the record of the run that wrote it, is {state}; "
                f"restore it (its command line is in {RUN_FILE}'s argv), or choose a new folder")
    prev = _run_command(folder)
    if prev != command and (prev is not None or (folder.is_dir() and _work_files(folder))):
        # a fresh start refuses it too: "run without --resume" was answered "already exists and is not empty;
        # choose a new folder" (battery 12a)
        what = f"holds {_article(prev)} {prev} run" if prev else f"holds no {command} run and is not empty"
        return (f"nothing to resume in {folder}: it {what}; give the folder of the {command} run to resume, or a new "
                f"folder to start one")
    return f"nothing to resume in {folder}: it holds no {command} run; run without --resume"


def _article(word: str) -> str:
    """"an" before a command name that starts with a vowel ("an eval passkey run"), else "a"."""
    return "an" if str(word)[:1].lower() in "aeiou" else "a"
