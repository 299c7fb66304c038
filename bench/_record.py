"""Provenance every benchmark record carries: the command as typed, the UTC time, the machine.

Used by :mod:`bench._report` (``new_record`` / ``write_record``); a benchmark script rarely needs it
directly.

- :func:`command` — the command line that reproduces the run from the repository root, e.g.
  ``OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_eval --model tiny --lengths 4096,8192``
  (the thread variables that were set, the interpreter, the module, the arguments shell-quoted);
- :func:`utc_now` — ``2026-11-30T04:40:12Z``;
- :func:`machine` — python, torch, transformers, numpy, longrope, platform, CPU count, torch
  threads, the thread variables and the load average (the machine is often shared: say so);
- :func:`load_average` — the 1/5/15-minute load averages, or None where the OS has none.
"""

from __future__ import annotations

import os
import platform
import shlex
import sys
import time
from pathlib import Path

#: environment variables that change how many threads a benchmark uses; set ones are part of the command
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "RAYON_NUM_THREADS")
#: the repository root: benchmark modules are named from it (``bench.bench_eval``)
ROOT = Path(__file__).resolve().parents[1]


def _shown_path(path: str) -> str:
    """``path`` relative to the working directory when it lies below it, else as given (symlinks
    are kept: a venv's ``python`` is one)."""
    if not os.path.isabs(path):
        return path
    cwd = os.getcwd()
    if os.path.commonpath([cwd, os.path.abspath(path)]) == cwd:
        return os.path.relpath(path, cwd)
    return path


def module_name(script: str) -> str | None:
    """``bench.bench_eval`` for the file ``bench/bench_eval.py`` of this repository; None for a file
    outside it (or not a ``.py`` file)."""
    path = Path(script).resolve()
    if path.suffix != ".py" or ROOT not in path.parents:
        return None
    return ".".join(path.relative_to(ROOT).with_suffix("").parts)


def command(script: str | None = None, argv: list[str] | None = None) -> str:
    """The command as a user types it from the repository root.

    ``script``: the benchmark's file (``__file__``), shown as ``-m MODULE`` (a file outside the
    repository: its path relative to the working directory; none: ``sys.argv[0]`` as typed).
    ``argv``: its arguments (default ``sys.argv[1:]``).
    """
    args = list(sys.argv[1:] if argv is None else argv)
    module = module_name(script) if script is not None else None
    if module is not None:
        shown = ["-m", module]
    elif script is not None:
        shown = [_shown_path(os.path.abspath(script))]
    else:
        shown = [sys.argv[0] if sys.argv else ""]
    python = _shown_path(sys.executable or "python")
    env = [f"{k}={os.environ[k]}" for k in THREAD_VARIABLES if os.environ.get(k)]
    return " ".join([*env, shlex.quote(python), *map(shlex.quote, shown), *map(shlex.quote, args)])


def utc_now() -> str:
    """The current time, UTC, to the second (ISO 8601)."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def load_average() -> list[float] | None:
    """1-, 5- and 15-minute load averages (None where the OS has none)."""
    if not hasattr(os, "getloadavg"):
        return None
    return [round(x, 2) for x in os.getloadavg()]


def machine() -> dict:
    """Facts about the machine and the libraries, for the record (imports torch and transformers)."""
    from longrope.runs.folder import versions

    out = dict(versions())
    out["processor"] = platform.processor() or platform.machine()
    out["thread_variables"] = {k: os.environ[k] for k in THREAD_VARIABLES if os.environ.get(k)}
    out["load_average"] = load_average()
    return out


def command_line(script: str) -> str:
    """``Command: `...` (YYYY-MM-DD HH:MM UTC)`` — the one-line form older scripts print under a table."""
    return f"Command: `{command(script)}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
