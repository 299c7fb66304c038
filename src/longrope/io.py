"""Atomic file writes: a reader (or a killed process) never sees a half-written file.

Everything that the commands write (factor files, checkpoints, results) goes through here:
write to a temporary file in the same folder, flush and fsync it, then ``os.replace`` it over the
target, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import hashlib
import io
import json
import math
import os
import re
import shutil
import signal
import stat
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

#: how libraries word a write the disk could not take, when they do not raise ENOSPC itself: safetensors'
#: ``SafetensorError`` ("... (os error 28)") and numpy's short ``tofile`` write (gguf's writer: "N requested and M
#: written", an OSError without errno)
_DISK_FULL = re.compile(r"No space left on device|Disk quota exceeded|\(os error (28|122)\)|\d+ requested and \d+ written")


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write that found the disk (or the quota) full, raised by us or by a library."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return bool(_DISK_FULL.search(str(exc)))


#: how a write past the process's file-size limit (``ulimit -f``) is worded: EFBIG, safetensors' "(os error 27)"
_TOO_LARGE = re.compile(r"File too large|\(os error 27\)")


def is_file_too_large(exc: BaseException) -> bool:
    """Whether ``exc`` is a write past the file-size limit (``ulimit -f``), raised by us or by a library."""
    if isinstance(exc, OSError) and exc.errno == errno.EFBIG:
        return True
    return bool(_TOO_LARGE.search(str(exc)))


#: how torch's zip writer (``torch.save``, under accelerate's ``save_state``) words a write that failed: its C++
#: stream keeps no errno, so a full disk and ``ulimit -f`` alike were "basic_ios::clear: iostream error", then, from
#: the writer's close, "unexpected pos N vs M" (a fine-tune's checkpoint: a 60-line traceback, battery 17)
_STREAM_WRITE_FAILED = re.compile(r"basic_ios::clear|iostream error|unexpected pos \d+ vs \d+|"
                                  r"PytorchStreamWriter failed writing")

#: free bytes under which a write that failed without a reason is taken for a full disk
_NEARLY_FULL = 1 << 20


def as_write_error(exc: BaseException, path: str | os.PathLike) -> OSError | None:
    """The ``OSError`` that a library's write failure without an errno (torch's zip writer) under ``path`` stands
    for, so that the one check of the CLI (:func:`is_disk_full`, :func:`is_file_too_large`) words it: ENOSPC when
    the disk holding ``path`` is (nearly) full, else EFBIG under a file-size limit (``ulimit -f``), else EIO with
    the library's words; None when ``exc`` is no such failure."""
    if not _STREAM_WRITE_FAILED.search(str(exc)):
        return None
    where = Path(path)
    while not where.exists() and where != where.parent:
        where = where.parent
    try:
        full = shutil.disk_usage(where).free < _NEARLY_FULL
    except OSError:
        full = False
    if full:
        return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(path))
    try:
        import resource

        limited = resource.getrlimit(resource.RLIMIT_FSIZE)[0] != resource.RLIM_INFINITY
    except (ImportError, AttributeError, OSError, ValueError):  # no such limit here (Windows)
        limited = False
    if limited:
        return OSError(errno.EFBIG, os.strerror(errno.EFBIG), os.fspath(path))
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    return OSError(errno.EIO, f"the write failed ({first})", os.fspath(path))


def update_hash(h: Any, path: str | os.PathLike) -> Any:
    """Feed the bytes of the file at ``path`` to the hashlib object ``h`` in 4 MiB blocks; returns ``h``."""
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h


def file_sha256(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (hex), read in blocks: the one file digest of the project."""
    return update_hash(hashlib.sha256(), path).hexdigest()


#: The field a sealed record keeps its own digest in (see :func:`sealed`).
SEAL = "sha256"


def record_digest(doc: dict[str, Any]) -> str:
    """SHA-256 of a JSON record's fields, all but its :data:`SEAL` (keys sorted): one changed digit shows."""
    body = {k: v for k, v in doc.items() if k != SEAL}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def sealed(doc: dict[str, Any]) -> dict[str, Any]:
    """``doc`` with its digest under :data:`SEAL`: the one way a record that is read back on resume (a
    measured cell, a checkpoint's state) is written, so that a damaged or hand-edited one is told apart."""
    return {**doc, SEAL: record_digest(doc)}


def is_record_of(doc: Any, fmt: str, version: int) -> bool:
    """Whether the JSON record ``doc`` says it is ``fmt`` at ``version``: the one test of a record's format and
    version. The version is an integer, not a number equal to it: ``"version": true`` (== 1) was taken by a
    search --resume and a shard folder (battery 19)."""
    return isinstance(doc, dict) and doc.get("format") == fmt and type(doc.get("version")) is int \
        and doc.get("version") == version


def seal_intact(doc: Any) -> bool:
    """Whether ``doc`` is a record :func:`sealed` wrote and nobody changed since (False without a seal)."""
    try:
        return isinstance(doc, dict) and doc.get(SEAL) == record_digest(doc)
    except (TypeError, ValueError):
        return False


#: folders a process works in under a lock (absolute path → a check that raises when the folder is no longer
#: the locked one: moved or removed under the run); every writer here asks :func:`check_held` first, so a run
#: whose folder went away stops with one line instead of rebuilding the old path (battery 16)
_HELD: dict[str, Callable[[], None]] = {}


def hold_folder(folder: str | os.PathLike, check: Callable[[], None]) -> None:
    """Register ``check`` for writes under ``folder`` until :func:`release_folder`."""
    _HELD[os.path.realpath(folder)] = check


def release_folder(folder: str | os.PathLike) -> None:
    _HELD.pop(os.path.realpath(folder), None)


def check_held(path: str | os.PathLike) -> None:
    """Run the checks of the held folders ``path`` lies in (see :data:`_HELD`)."""
    if not _HELD:
        return
    target = os.path.realpath(path)
    for root, check in list(_HELD.items()):
        if target == root or target.startswith(root.rstrip(os.sep) + os.sep):
            check()


def make_folder(path: str | os.PathLike) -> Path:
    """``mkdir -p`` for the writers of run folders: never rebuilds a held folder that was moved away."""
    path = Path(path)
    check_held(path)
    path.mkdir(parents=True, exist_ok=True)
    return path


def unlink_copy(path: str | os.PathLike) -> None:
    """Give ``path`` a file of its own before it is changed in place (appended to, truncated), when it is one of
    several hard links to one file: a run folder copied with ``cp -al`` (a cheap snapshot) shares every file with
    the original, and a resume of the copy appended its lines to the original's log too. Atomic files are safe
    already (each write is a new file renamed into place); this does the same for the in-place writers."""
    path = Path(path)
    try:
        shared = path.is_file() and not path.is_symlink() and path.stat().st_nlink > 1
    except OSError:
        return
    if shared:
        write_bytes(path, path.read_bytes())


def append_text(path: str | os.PathLike, text: str, *, sync: bool = False) -> None:
    """Append ``text`` to a log file (``sync``: fsync it too), its folder made if needed; for the line-by-line
    logs a resume reads back (a fine-tune's losses, a search's history, a comparison's cells)."""
    path = Path(path)
    make_folder(path.parent)
    unlink_copy(path)
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        if sync:
            os.fsync(f.fileno())


#: the suffix of :func:`atomic_write`'s temporaries (``sibling_prefix(path, "")`` + mkstemp's 8 characters + this)
_TMP_SUFFIX = ".tmp"
_TEMPORARY = re.compile(r"\..+\.[a-z0-9_]{8}" + re.escape(_TMP_SUFFIX))


def is_atomic_temporary(name: str, of: str | None = None) -> bool:
    """Whether the file name ``name`` is a temporary :func:`atomic_write` makes (of the file named ``of`` when
    given): what a writer killed before its rename leaves, for a run folder's lock holder to clean up."""
    if of is not None and not name.startswith(sibling_prefix(of, "")):
        return False
    return _TEMPORARY.fullmatch(name) is not None


def atomic_write(path: str | os.PathLike, write: Callable[[Any], None], mode: str = "w") -> Path:
    """Call ``write(fileobj)`` on a temporary file next to ``path`` and move it into place."""
    path = Path(path)
    check_writable_path(path)
    check_held(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=sibling_prefix(path, ""), suffix=_TMP_SUFFIX, dir=path.parent)
    except OSError as exc:  # the error named the hidden temporary file, with no fix (battery 11a)
        if is_disk_full(exc):
            raise
        from longrope.errors import UserError

        raise UserError(f"{path} cannot be written ({exc.strerror or exc}); "
                        f"{os_error_fix(exc, 'choose a writable folder')}") from None
    try:
        with os.fdopen(fd, mode) as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        give_default_modes(tmp)  # mkstemp makes the file 0600
        try:
            os.replace(tmp, path)
        except OSError as exc:  # named the hidden temporary, with no fix (battery 19)
            if is_disk_full(exc):
                raise
            raise _not_replaceable(path, exc) from None
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def _not_replaceable(path: Path, exc: OSError) -> Exception:
    """The one line for a finished file that could not be renamed over ``path``: the target is what to change (a
    file bind-mounted into a container, an immutable or read-only one), not the hidden temporary the OS error named."""
    from longrope.errors import UserError

    fixes = {errno.EBUSY: "it is a mount point (a file mounted into a container?), which a file cannot be renamed "
                          "over; write to a path that is not mounted",
             errno.EPERM: "it is immutable or append-only (lsattr shows it; chattr -ia removes that), or choose "
                          "another path",
             errno.EACCES: "make its folder writable or choose another path"}
    fix = os_error_fix(exc, fixes.get(exc.errno, "choose another path"))
    return UserError(f"{path} cannot be replaced by its new version ({exc.strerror or exc}); {fix}")


def path_argument(value: Any, what: str) -> Path:
    """``value``, an argument of the library that names a file or folder (``what`` says which and how it is given), as
    a Path; anything else (a number, None, a loaded model) is one :class:`~longrope.errors.UserError` naming it:
    pathlib's TypeError ('expected str, bytes or os.PathLike object, not int') named no argument, and the model
    loader turned it into text and asked the hub for a model called 'None' (battery 18)."""
    if isinstance(value, (str, os.PathLike)):
        return Path(value)
    from longrope.errors import UserError

    shown = type(value).__name__ if value is not None else "None"
    raise UserError(f"{what} is given as a str or os.PathLike, got {shown}")


def expand_user(path: str | os.PathLike) -> Path:
    """``path`` with a leading ``~`` or ``~user`` read as that home folder, as the shell does; left as it is where
    there is no such user (or no home): pathlib's RuntimeError 'Could not determine home directory.' was a traceback
    for ``--model '~nosuchuser/m'`` (battery 28a), now the path is looked for as written and said to be missing."""
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


#: what file browsers, notebooks and file systems write into any folder a user opens or copies (shell patterns):
#: no one's work, and written again as soon as it is moved away (review of battery 29: Finder's .DS_Store refused every
#: rerun into an eval folder once it was looked at, and a new -o folder or a shard folder to rebuild likewise)
SYSTEM_DROPPINGS = (".DS_Store", "._*", "Thumbs.db", "desktop.ini", ".ipynb_checkpoints", ".directory")


def is_system_dropping(name: str) -> bool:
    """Whether ``name`` (in a folder) is one of :data:`SYSTEM_DROPPINGS`: an output folder holding only such names is
    empty, and one holding a run or shards besides is still that run's or those shards' to replace."""
    import fnmatch

    return any(fnmatch.fnmatchcase(name, p) for p in SYSTEM_DROPPINGS)


def holds_work(folder: str | os.PathLike) -> bool:
    """Whether ``folder`` (an existing folder) holds anything but :data:`SYSTEM_DROPPINGS`: the one test of "an
    output that is not empty" for a new output (every writer: a folder holding only a .DS_Store is empty to it, and a
    publish into it goes through :func:`place_new`, never a swap that would replace what arrived meanwhile)."""
    return any(not is_system_dropping(p.name) for p in Path(folder).iterdir())


def _clear_droppings(folder: Path) -> None:
    """Remove the :data:`SYSTEM_DROPPINGS` of ``folder`` (what a file browser writes again anyway)."""
    for p in folder.iterdir():
        if is_system_dropping(p.name):
            with contextlib.suppress(OSError):
                shutil.rmtree(p) if p.is_dir() and not p.is_symlink() else p.unlink()


#: how a message names what is neither a regular file nor a folder (a device such as /dev/null, a named pipe, a socket)
SPECIAL_FILE = "a special file (device, pipe or socket)"


def path_kind(path: str | os.PathLike) -> str | None:
    """What ``path`` is, as a message names it: 'a folder', 'a file' (a regular one), :data:`SPECIAL_FILE`, or None
    when there is nothing there (a link followed). The one wording of what stands where something else was expected:
    /dev/null given as an output folder was 'is a file', /dev/zero or a named pipe given as a model 'no such model
    file or folder' (battery 21)."""
    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return None
    return "a folder" if stat.S_ISDIR(mode) else "a file" if stat.S_ISREG(mode) else SPECIAL_FILE


def check_writable_path(path: str | os.PathLike) -> None:
    """Refuse, in one line naming the user's path, an output that is a folder, a device, pipe or socket (the
    move into place would replace it: as root even ``/dev/null``) or one that lies under a file (the OS would
    name the temporary file, or only the part of the path that is a file), or ``-`` (a user means stdout, but
    it would be a file named '-'; a path such as /abs/- still names one)."""
    from longrope.errors import UserError

    if os.fspath(path) == "-":
        raise UserError("'-' is not an output file here (longrope writes no file to stdout); give a file path")
    text = os.fspath(path)
    if isinstance(text, str) and text.endswith(("/", os.sep)) and text.strip("/" + os.sep):  # pathlib drops the /:
        raise UserError(f"{text} ends in '/', a folder, where a file is to be written; give a file name "  # the file
                        f"(e.g. {text}out.json)")  # was written as 'runs' for 'runs/' (battery 20c)
    path = Path(path)
    # the fix fits a path the user gave (-o) and a run folder's own file someone replaced (its run.json a link to
    # /dev/null, its history.jsonl a folder: 'give the path of a file to write' named a path nobody gave; battery 19)
    away = "move it out of the way or give another path"
    if path.is_dir():
        raise UserError(f"{path} is a folder where a file is to be written; {away}")
    if path.exists() and not path.is_file():
        raise UserError(f"{path} is {SPECIAL_FILE}, not a regular file, which writing would replace; {away}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {path}: {parent} is a file, not a folder; choose another path")
            break


def check_utf8_path(path: str | os.PathLike, flag: str = "-o") -> None:
    """Refuse a path holding bytes that are not UTF-8 (read by Python as lone surrogates) where a library must write
    under it: the tokenizers library (a model export's tokenizer) cannot, and said so in a traceback after the
    weights were written."""
    from longrope.errors import UserError

    text = os.fspath(path)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        shown = text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        try:
            os.fsencode(text).decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(f"{flag} {shown}: the path holds bytes that are not UTF-8, which the model's tokenizer "
                            "cannot be written under; choose a UTF-8 name") from None
        # UTF-8 bytes read as ASCII (LC_ALL=C with PYTHONUTF8=0): the name was said not to be UTF-8 (battery 23a)
        raise UserError(f"{flag} {shown}: this Python reads file names as ASCII (an ASCII locale with PYTHONUTF8=0), "
                        "and the model's tokenizer cannot be written under a name it cannot read; run it with "
                        "PYTHONUTF8=1 or a UTF-8 locale (LC_ALL=C.UTF-8)") from None


def current_umask() -> int:
    """This process's umask, as it is now: read from /proc where Linux shows it (a Python caller may change it after
    import: the modes given were the import's, review of battery 23a), else by setting it and back (not safe
    beside threads that create files, so only where there is no /proc)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0)
    os.umask(mask)
    return mask


def give_default_modes(path: str | os.PathLike) -> None:
    """Give ``path`` (a file, or a folder and everything in it) the modes a plain ``open()``/``mkdir`` would have
    made under this process's umask: the one rule for outputs written by tools that make them private (mkstemp and
    mkdtemp, 0600/0700; safetensors' writer, 0600 whatever the umask: a fine-tune's checkpoint weights were unreadable
    to the group and others that could read the rest of the run; battery 23a). Links are left alone."""
    path, umask = Path(path), current_umask()
    if path.is_symlink():
        return
    if not path.is_dir():
        os.chmod(path, 0o666 & ~umask)
        return
    for root, _dirs, files in os.walk(path):
        os.chmod(root, 0o777 & ~umask)
        for name in files:
            if not os.path.islink(os.path.join(root, name)):
                os.chmod(os.path.join(root, name), 0o666 & ~umask)


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda f: f.write(text))


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data), mode="wb")


def write_json(path: str | os.PathLike, obj: Any, indent: int | None = 2) -> Path:
    """``obj`` as JSON at ``path`` (atomically). A value JSON cannot hold (an object a Python caller put in a record's
    config, a list holding itself) is one :class:`~longrope.errors.UserError` naming the file, nothing written: it
    was json's TypeError, after the evaluation the record was to hold (battery 20)."""
    try:
        text = json.dumps(obj, indent=indent, sort_keys=False)
    except (TypeError, ValueError) as exc:
        from longrope.errors import UserError

        raise UserError(f"{path} cannot be written: {exc} (a record holds text, numbers, true/false, null, lists and "
                        "objects of them)") from None
    return write_text(path, text + "\n")


def json_safe(obj: Any) -> Any:
    """A copy that strict JSON can hold: non-finite floats become None, numpy scalars Python ones, paths their text."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, os.PathLike):
        return json_safe(os.fspath(obj))
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "shape", None) == ():
        return json_safe(obj.item())
    return obj


def csv_text(rows: Sequence[dict], fields: Sequence[str]) -> str:
    """Rows (dicts) as CSV text with a header; keys not in ``fields`` are left out."""
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def write_csv(path: str | os.PathLike, rows: Sequence[dict], fields: Sequence[str]) -> Path:
    return write_text(path, csv_text(rows, fields))


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` runs (owned by anyone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, owned by someone else
        return True
    return True


def _writes(pid: int, path: Path) -> bool:
    """Whether process ``pid`` may still be writing ``path`` (a leftover named after it): it runs, and it started no
    later than ``path`` was last written. A process that started after that is another one that took the pid of
    the dead writer (pids are reused): a killed export's hidden folder of weights stayed for as long as it lived
    (battery 25b)."""
    if not pid_alive(pid):
        return False
    started = _process_start(pid)
    try:
        written = path.lstat().st_mtime
    except OSError:
        return True
    return started is None or started <= written + 2.0  # (a clock tick of rounding, and a file system's)


def _process_start(pid: int) -> float | None:
    """When process ``pid`` started (seconds since the epoch), from /proc; None where that cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            ticks = int(f.read().rsplit(") ", 1)[1].split()[19])  # field 22, starttime, in clock ticks since boot
        with open("/proc/stat") as f:
            boot = next(int(line.split()[1]) for line in f if line.startswith("btime "))
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return None


#: the longest file name most file systems take (bytes), and the room a hidden sibling's name leaves after the
#: prefix :func:`sibling_prefix` gives it (a pid, random letters, a suffix)
NAME_MAX = 255
_SIBLING_TAIL = 48


#: the fix of an OS error whose own words ('File name too long', 'Too many levels of symbolic links') give none
_OS_ERROR_FIXES = {
    errno.ENAMETOOLONG: f"a name in the path is longer than the file system takes ({NAME_MAX} bytes; a whole path "
                        "4,096): give a shorter one",
    errno.ELOOP: "a symbolic link on the path loops (or links go more than 40 deep): remove it or give the path it "
                 "should lead to",
}


def os_error_fix(exc: BaseException, default: str | None = None) -> str | None:
    """What to do about the OS error ``exc``: the fix its errno calls for, where its own words give none (a name
    too long, a looping link: every writer said 'choose a writable folder', the command line no fix at all, battery
    18), else ``default`` (the call site's fix for the rest: a read-only folder, a missing one). A permission refused
    under a umask that takes the owner's own read or write permission (``umask 377``) is the umask's doing: the
    folder a command had just made was said not writable, 'choose a writable folder' (battery 23a); only where the
    entry refused (or its folder) is this user's and lacks what the umask takes: a file of another user's that
    cannot be read is not the umask's doing (the review)."""
    code = getattr(exc, "errno", None)
    if code in (errno.EACCES, errno.EPERM) and (umask := current_umask()) & 0o600 and _umask_took(exc, umask):
        return (f"this process's umask ({umask:03o}) takes the owner's own permission on the files and folders it "
                "makes: set a usual one (umask 022, or 077) and run again")
    return _OS_ERROR_FIXES.get(code, default)


def _umask_took(exc: BaseException, umask: int) -> bool:
    """Whether the entry an OS error names, or the folder it is in, is this user's and lacks an owner's permission
    ``umask`` takes (read or write; search too for a folder)."""
    name = getattr(exc, "filename", None)
    if not isinstance(name, (str, bytes, os.PathLike)):
        return False
    for entry in (name, os.path.dirname(os.fsdecode(name)) or "."):
        try:
            st = os.stat(entry)
        except (OSError, ValueError):
            continue
        owner_bits = 0o700 if stat.S_ISDIR(st.st_mode) else 0o600
        if st.st_uid == os.geteuid() and ~st.st_mode & umask & owner_bits:
            return True
    return False


def os_error_words(exc: BaseException) -> str:
    """An OS error as a user reads it: its own words, then the fix where they give none (:func:`os_error_fix`)."""
    return "; ".join(filter(None, (getattr(exc, "strerror", None) or str(exc), os_error_fix(exc))))


def check_no_link_loop(path: str | os.PathLike, what: str) -> None:
    """Refuse ``path`` when it leads through a symbolic link that loops: ``exists()`` is False for it, so an input
    given that way was said to be missing ('no such shard folder', 'no such file or folder') or, as a model, asked
    of the hub (battery 18). ``what`` names the argument (``--data``, ``the model``)."""
    try:
        os.stat(path)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            from longrope.errors import UserError

            raise UserError(f"{what} {os.fspath(path)}: {exc.strerror}; {os_error_fix(exc)}") from None
    except ValueError:  # a NUL byte: the caller's own check says so
        pass


def sibling_prefix(path: str | os.PathLike, tag: str) -> str:
    """The start of the name of a hidden entry next to ``path`` (``.{name}.{tag}``): the temporary file or folder
    an output is built in, a folder moved aside, a run's partial folder; the one place these names are made, so
    that the writer and the clean-up of a killed writer's leftovers agree. A name too long to take the prefix and
    a tail within :data:`NAME_MAX` bytes is shortened to its start and a digest of the whole: an -o of a legal
    250-character name failed 'File name too long' in every writer (battery 11a)."""
    name = Path(path).name
    room = NAME_MAX - _SIBLING_TAIL - len(tag.encode()) - 2

    def size(text: str) -> int:
        return len(text.encode("utf-8", "surrogateescape"))

    if size(name) > room:
        digest = hashlib.sha256(name.encode("utf-8", "surrogateescape")).hexdigest()[:12]
        head = name
        while size(head) > room - len(digest) - 1:
            head = head[:-1]
        name = f"{head}~{digest}"
    return f".{name}.{tag}"


def aside_prefix(dest: Path) -> str:
    """The name prefix of the folder :func:`replace_folder` moves aside (``.{name}.old-``), for
    :func:`remove_dead_leftovers` after a kill between its two renames."""
    return sibling_prefix(dest, "old-")


def output_target(path: str | os.PathLike) -> Path:
    """The folder or file a writer of a whole output (a staged run, tokenize, export, baseline's factors.json, a
    GGUF file) judges, writes and replaces for the output ``path`` the user gave: a link names its target (``ln -s
    /big/disk/out out`` keeps putting the output there), never the link itself; any other path is itself. (export
    swapped its folder in for the link, and over a link to an empty folder failed 'Not a directory' after all the
    work, battery 19; baseline and a GGUF export with --overwrite replaced a link to a file with their file, the
    target left as it was, and a GGUF export to a dangling link said after all its work that another process had
    written it, battery 23a.) A run folder's own files are never read through this: a link planted there is
    replaced, not written through."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_mount_point(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a mount point, a bind mount within one file system included (``os.path.ismount`` sees only
    a change of device: ``docker -v host/out:/out`` and ``mount --bind`` are read from /proc/self/mountinfo)."""
    if os.path.ismount(path):
        return True
    try:
        with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as f:
            points = {re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), line.split()[4])
                      for line in f if len(line.split()) > 4}
    except OSError:  # no /proc (macOS): what ismount says
        return False
    return os.path.realpath(path) in points


def check_replaceable_target(dest: str | os.PathLike, flag: str = "-o") -> None:
    """Refuse, before any work, a ``dest`` that :func:`replace_folder` cannot swap: the current folder or one
    above it ('.', '..', '/'), or a mount point. (``-o .`` failed with a ValueError traceback, "PosixPath('.') has an empty
    name"; ``-o .. --overwrite`` said "Device or resource busy", and would have replaced the folder the user
    works in.)"""
    from longrope.errors import UserError

    here, target = Path.cwd().resolve(), Path(os.path.abspath(dest))
    if here == target or here.is_relative_to(target):
        raise UserError(f"{flag} {dest} is the current folder or holds it; this command replaces its output "
                        "folder as a whole: give a new folder's name")
    if not target.is_symlink() and is_mount_point(target):  # (writers judge a link by its target: output_target)
        # the swap's rename failed 'Device or resource busy' after all the work, worded three ways (battery 19)
        raise UserError(f"{flag} {dest} is a mount point (a folder mounted into a container?); this command replaces "
                        f"its output folder as a whole, which a mounted one cannot be: give a folder inside it "
                        f"({flag} {os.path.join(str(dest), 'NAME')})")


def place_new(new: str | os.PathLike, dest: str | os.PathLike, *, flag: str = "-o") -> Path:
    """Rename the finished file or folder ``new`` (a sibling of ``dest``) to ``dest``, which must not exist: the
    publish step of every writer of an output that was new when it started. Two such writers of one output (two
    exports, two reruns into one new folder) both checked it was free before their work; the second's rename then
    replaced the first's result without a word. The rename here is exclusive (``renameat2(RENAME_NOREPLACE)``;
    where the kernel or file system lacks it, a claimed name: ``mkdir`` or ``link``, which fail on an existing
    entry); the second writer gets a :class:`~longrope.errors.UserError` and ``new`` is kept beside ``dest``
    (:func:`kept_beside`). An empty folder at ``dest`` (left by the user, or a link to one), or one holding only
    what a file browser writes (:func:`holds_work`), counts as free."""
    from longrope.errors import UserError

    new, dest = Path(new), Path(dest)
    if dest.is_dir() and not dest.is_symlink():
        with contextlib.suppress(OSError):
            if not holds_work(dest):  # a .DS_Store alone does not make it taken
                _clear_droppings(dest)
            dest.rmdir()  # only an empty one goes
    try:
        _rename_exclusive(new, dest)
    except OSError as exc:
        taken = exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or (
            isinstance(exc, (IsADirectoryError, NotADirectoryError)) and os.path.lexists(dest))
        if not taken:
            raise
        raise UserError(f"{flag} {dest} was written by another process while this one worked (two runs into one "
                        f"new output); this result was not written over it: {kept_beside(new, dest, flag)}") from None
    return dest


def arrived_meanwhile(new: Path, dest: Path, why: str) -> Exception:
    """The refusal of a writer that finds at ``dest``, when its output ``new`` is done, what it may not replace and
    was not there when it began (``why``: "is not a folder", "holds a search run"); ``new`` is kept beside it."""
    from longrope.errors import UserError

    return UserError(f"{dest} changed while this run worked: it now {why}; it was left as it is and this run's "
                     f"output was not written over it: {kept_beside(new, dest)}")


def kept_beside(new: Path, dest: Path, flag: str = "-o") -> str:
    """Keep the finished output ``new`` that may not go to ``dest`` (something arrived there while it was made):
    renamed to the first free visible sibling, ``{name}.kept-{k}`` (a file keeps its suffix last:
    ``model.kept-1.gguf``), and the words saying where. It was removed with the writer's temporary files, so
    hours of evaluation were lost to a folder made at ``-o`` meanwhile (battery 23's review). Where no such name
    can be had (a name at the length limit, a read-only parent), it goes as before and the words say to run again."""
    stem, suffix = (dest.stem, dest.suffix) if new.is_file() and dest.suffix else (dest.name, "")
    for k in range(1, 100):
        try:
            _rename_exclusive(new, kept := dest.with_name(f"{stem}.kept-{k}{suffix}"))
        except OSError as exc:
            if exc.errno in (errno.EEXIST, errno.ENOTEMPTY) or os.path.lexists(kept):
                continue
            break
        return f"it is kept at {kept}; move it where you want it, or run again with another {flag}"
    return f"run again with another {flag}"


def _rename_exclusive(src: Path, dst: Path) -> None:
    """``rename(src, dst)`` that fails with ``EEXIST`` when ``dst`` exists (see :func:`place_new`)."""
    import ctypes

    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not glibc/Linux
        renameat2 = None
    if renameat2 is not None:
        at_fdcwd, rename_noreplace = -100, 1
        if renameat2(at_fdcwd, os.fsencode(src), at_fdcwd, os.fsencode(dst), rename_noreplace) == 0:
            return
        err = ctypes.get_errno()
        if err not in (errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP):  # unsupported there: claim the name instead
            raise OSError(err, os.strerror(err), str(dst))
    if src.is_dir() and not src.is_symlink():
        os.mkdir(dst)  # the claim: EEXIST for the second writer
        os.replace(src, dst)  # a folder renamed onto the empty folder just made
    else:
        os.link(src, dst)
        os.unlink(src)


def replace_folder(new: str | os.PathLike, dest: str | os.PathLike, *,
                   problem: Callable[[Path], str | None] | None = None) -> Path:
    """Put the finished folder ``new`` (a sibling of ``dest``) at ``dest``: the build-aside-then-swap of
    every writer of a whole folder. A folder already at ``dest`` is moved aside (``.{name}.old-{pid}-…``),
    ``new`` renamed into place, then the old one removed; when the rename fails the old folder is put
    back and the ``OSError`` raised. A reader sees the old folder or the new one, never a mix.

    The two renames are one step for Ctrl-C, SIGTERM and SIGHUP (:func:`interrupts_deferred`): an interrupt
    between them left no folder at ``dest`` at all. An interrupt while the old folder is removed leaves the rest of
    it aside; the next swap into ``dest`` removes such leftovers of dead processes first (an evaluation's run
    folder, replaced by a later run, kept a hidden copy of the previous one for good; battery 19).

    ``problem(dest)``: why what is at ``dest`` now may not be replaced, or None; the writer's own check of its output
    made when it began, made again here: what arrived there while it worked (a folder of the user's files, a
    file) was moved aside and removed without a word (battery 23b). A problem is a
    :class:`~longrope.errors.UserError`, ``dest`` left as it is."""
    new, dest = Path(new), Path(dest)
    remove_dead_leftovers(dest.parent, aside_prefix(dest))
    old = None
    with interrupts_deferred():
        if dest.exists() or dest.is_symlink():  # a dangling link too: renaming a folder onto it is ENOTDIR
            if problem is not None and (why := problem(dest)) is not None:
                raise arrived_meanwhile(new, dest, why)
            old = dest.with_name(f"{aside_prefix(dest)}{os.getpid()}-{os.urandom(3).hex()}")
            # dated now first: a rename keeps the old output's date, which a second writer's remove_dead_leftovers
            # read as written before this process started (a dead writer's, its pid reused), and removed this live
            # swap's aside folder before the put-back below could need it (the review of battery 25b)
            with contextlib.suppress(OSError):
                os.utime(dest, follow_symlinks=False)
            os.replace(dest, old)
        try:
            os.replace(new, dest)
        except OSError:
            if old is not None and not dest.exists():
                os.replace(old, dest)
            raise
    if old is not None and old.is_symlink():  # a link given as dest: rmtree refuses links, so it stayed behind
        old.unlink(missing_ok=True)
    elif old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


#: the signals a command answers by stopping (Ctrl-C, ``kill``, a closed terminal)
_STOPPING_SIGNALS = tuple(getattr(signal, n) for n in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, n))


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold Ctrl-C, SIGTERM and SIGHUP while a few file-system calls that must happen together run (two renames of a
    swap): a signal sent meanwhile is recorded, and raised again when they are done, to the handler that was in
    place (a disposition that ignores it stays). Done with Python handlers, not a signal mask: the kernel hands a
    process's signal to any thread that does not block it (torch's, a reader thread), and Python runs the handler in
    the main thread at once. Only the main thread can set handlers; elsewhere the block runs as it is."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    held = {}
    for signum in _STOPPING_SIGNALS:
        handler = signal.getsignal(signum)
        if handler in (signal.SIG_IGN, None):  # ignored (nohup), or set outside Python: left as it is
            continue
        held[signum] = handler
        signal.signal(signum, lambda n, _frame: caught.append(n))
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)
        for signum in dict.fromkeys(caught):
            signal.raise_signal(signum)


@contextlib.contextmanager
def signal_handlers_kept() -> Iterator[None]:
    """Put back this process's handlers of Ctrl-C, SIGTERM and SIGHUP after a library call that replaces them (only
    the main thread can; elsewhere the block runs as it is). ``ray.init`` sets its own SIGTERM handler and Ray's core
    worker a native one: a search on a local Ray given SIGTERM printed Ray's stack dump and aborted (status 134),
    without the command's line or its clean-up (battery 27a)."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        yield
        return
    kept = {signum: signal.getsignal(signum) for signum in _STOPPING_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in kept.items():
            if handler is not None:  # None: set outside Python, nothing to put back
                signal.signal(signum, handler)


def remove_dead_leftovers(parent: Path, prefix: str) -> list[Path]:
    """Delete the entries ``{prefix}{pid}…`` of ``parent`` that a killed process left behind.

    Writers that build an output aside name their temporary ``{prefix}{pid}…``; an entry whose pid
    no longer runs (or that carries no pid) is removed, one of a live process (another run writing
    the same output now, or this one) is kept. Returns what was removed.
    """
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for path in parent.iterdir():
        if not path.name.startswith(prefix):
            continue
        m = re.match(r"\d+", path.name[len(prefix):])
        if m and (int(m.group()) == os.getpid() or _writes(int(m.group()), path)):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path)
    return removed


# ------------------------------------------------------------------------------------------------
# Reading the project's JSON records.

#: Bounds of a JSON record longrope reads (plans, run records, manifests, shard metadata, checkpoint
#: states): no record it writes comes near them (a search checkpoint with a long fitness cache is a few
#: MB; a shard folder's meta.json ~13 KB per 100M tokens), and a hostile file stops at them in one line
#: instead of filling memory or the parser's stack (a file nested 200,000 deep is a RecursionError).
MAX_JSON_BYTES = 256 << 20
MAX_JSON_DEPTH = 64

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"', re.DOTALL)
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def json_depth(text: str, limit: int) -> int:
    """The nesting depth of the JSON ``text`` (brackets inside strings aside), counted up to ``limit + 1``."""
    depth = deepest = 0
    for m in _JSON_BRACKET.finditer(_JSON_STRING.sub('""', text)):
        depth += 1 if m.group() in "[{" else -1
        if depth > deepest:
            deepest = depth
            if deepest > limit:
                break
    return deepest


def json_object(pairs: list[tuple[str, Any]]) -> dict:
    """``object_pairs_hook`` of every JSON file longrope reads: a key given twice in one object is a
    ``ValueError`` (an edit gone wrong; parsers disagree on which value counts, so none is taken)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        dup = next(k for k, _ in pairs if k in seen or seen.add(k))
        raise ValueError(f"the key {dup!r} appears twice in one object")
    return obj


#: the most digits of an integer a JSON record may hold: Python's own limit on turning text into an int is 4,300
#: digits, past which it said "use sys.set_int_max_str_digits() to increase the limit" (battery 19), a fix for
#: a programmer, not for a hand-edited record; every bound of a record is far below this
_MAX_JSON_DIGITS = 4000


def _json_int(text: str) -> int:
    if len(text.lstrip("-")) > _MAX_JSON_DIGITS:
        raise ValueError(f"it holds an integer of {len(text.lstrip('-')):,} digits, past any value a record takes")
    return int(text)


def loads_record(text: str) -> Any:
    """A JSON record's text parsed as every record longrope reads is: a key given twice refused (:func:`json_object`),
    an integer of thousands of digits refused in words a user can act on; NaN/Infinity parse (to floats), so that
    a field's check names the key they sit in. ``ValueError``/``RecursionError`` otherwise, as :func:`json.loads`."""
    return json.loads(text, object_pairs_hook=json_object, parse_int=_json_int)


def open_regular(path: Path) -> Any:
    """``path`` opened for reading in binary, or an ``OSError`` when it is no regular file: a folder, or a
    named pipe or device planted where a record belongs, whose read would block or never end (opened
    non-blocking, so that the check itself cannot hang)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise OSError(f"{'a folder' if stat.S_ISDIR(mode) else SPECIAL_FILE}, not a file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_regular(path: str | os.PathLike, limit: int | None = None) -> bytes:
    """The bytes of the regular file ``path``; an ``OSError`` for a folder, pipe or device (whose read would
    block, or never end, like /dev/zero): the one way longrope reads a file a user names. With ``limit``, at
    most ``limit + 1`` bytes (more than ``limit``: the file is too large for what it should be)."""
    with open_regular(Path(path)) as f:
        return f.read() if limit is None else read_at_most(f, limit + 1)


def read_at_most(f: Any, limit: int) -> bytes:
    """Up to ``limit`` bytes of the binary file ``f``, read in blocks: ``f.read(limit)`` allocates ``limit`` bytes
    before reading one, so every JSON record (a bound of 256 MiB) took 256 MiB of address space, a MemoryError
    under ``ulimit -v`` (1 GB: "out of memory ... use shorter sequences" for a 2 KB config.json; battery 17)."""
    blocks, got = [], 0
    while got < limit:
        block = f.read(min(1 << 20, limit - got))
        if not block:
            break
        blocks.append(block)
        got += len(block)
    return b"".join(blocks)


#: byte-order marks of the Unicode encodings a text file that is not UTF-8 most often is (longest first: UTF-32 LE's
#: mark starts with UTF-16 LE's)
_OTHER_UNICODE = ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"), (b"\xff\xfe", "UTF-16"),
                  (b"\xfe\xff", "UTF-16"))


def text_encoding_problem(head: bytes | str, exc: UnicodeDecodeError | None = None,
                          path: str | os.PathLike | None = None) -> str | None:
    """Why a file read as UTF-8 text is not, with the fix, from its leading bytes ``head`` (or, decoded, its leading
    text) and the decoding error when there was one; None when it reads as UTF-8 text. The one wording of every
    reader of a user's text (tokenize's documents, a prompt file, factor files, JSON records): a UTF-16 file (what
    Windows' editors and PowerShell's ``>`` save) was 'not UTF-8 text (invalid start byte at byte 0)' with no word
    of what it is or how to convert it, and one without a byte-order mark decoded as UTF-8, every other character
    a NUL: tokenize stored its NULs as the document (battery 18). ``path``: the file, named in the command given;
    ``"-"``: standard input, converted on its way in (it was told 'iconv ... FILE > FILE.utf8', battery 28a)."""
    import shlex

    file = shlex.quote(os.fspath(path)) if path is not None else "FILE"

    def convert(encoding: str) -> str:
        if file == "-":
            return f"... | iconv -f {encoding} -t UTF-8 | longrope ..."
        return f"iconv -f {encoding} -t UTF-8 {file} > {file}.utf8"
    if isinstance(head, str):
        sample = head[:4096]
        nuls = sample.count("\0")
        if sample and nuls * 4 >= len(sample):  # ASCII text in UTF-16 (or UTF-32): a NUL beside every character
            order = "UTF-16BE" if sample.startswith("\0") else "UTF-16LE"  # the NUL before each character, or after
            return ("UTF-16 (or UTF-32) text without a byte-order mark, not UTF-8: every other byte is NUL; convert "
                    f"it, e.g. {convert(order)}")
        return None
    for mark, name in _OTHER_UNICODE:
        if head.startswith(mark):
            return f"{name} text, not UTF-8; convert it, e.g. {convert(name)}"
    if exc is None:
        return None
    return (f"not UTF-8 text ({exc.reason} at byte {exc.start}); convert it to UTF-8, e.g. {convert('ITS-ENCODING')} "
            "(iconv -l lists the encodings)")


def decode_text(data: bytes, path: str | os.PathLike | None = None) -> str:
    """``data`` (the bytes of the file ``path``) as UTF-8 text, a byte-order mark dropped; a :class:`ValueError`
    saying what it is instead and how to convert it when it is not (:func:`text_encoding_problem`)."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ValueError(text_encoding_problem(data[:4], exc, path)) from None
    problem = text_encoding_problem(text, path=path)
    if problem is not None:
        raise ValueError(problem)
    return text


def read_json(path: str | os.PathLike, *, what: str = "JSON file", expect: type | None = dict,
              fix: str | None = None, max_bytes: int = MAX_JSON_BYTES, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """The JSON document in ``path``, read within the size and depth bounds, of type ``expect``
    (``dict``: a JSON object; None: any). Every failure is a one-line
    :class:`~longrope.errors.UserError` naming the file, what it should be (``what``) and ``fix``."""
    from longrope.errors import UserError

    path = Path(path)
    tail = f"; {fix}" if fix else ""

    def bad(reason: str) -> UserError:
        return UserError(f"{path} is not a readable {what} ({reason}){tail}")

    try:
        with open_regular(path) as f:
            data = read_at_most(f, max_bytes + 1)
    except FileNotFoundError:
        raise UserError(f"{path} does not exist (a {what} was expected there){tail}") from None
    except OSError as exc:
        raise bad(os_error_words(exc)) from None
    if len(data) > max_bytes:
        raise bad(f"larger than {max_bytes >> 20} MiB")
    try:
        text = decode_text(data, path)  # a BOM (Notepad's UTF-8) read as factor files read it
    except ValueError as exc:
        raise bad(str(exc)) from None
    if json_depth(text, max_depth) > max_depth:
        raise bad(f"nested deeper than {max_depth} levels")
    try:
        doc = loads_record(text)
    except (ValueError, RecursionError) as exc:
        raise bad(str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__) from None
    if expect is not None and not isinstance(doc, expect):
        kind = {dict: "a JSON object", list: "a JSON list"}.get(expect, expect.__name__)
        raise bad(f"it holds {type(doc).__name__ if doc is not None else 'null'}, not {kind}")
    return doc
