"""A benchmark module run again in a child Python (its worker mode), from any working directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

#: the repository root: the folder that holds the ``bench`` package
ROOT = Path(__file__).resolve().parents[1]


def run_module(module: str, args: list[str], *, env: dict[str, str] | None = None,
               check: bool = False) -> subprocess.CompletedProcess:
    """``python -m MODULE ARGS`` in a child process (``env``: its environment, default this one's),
    stdout and stderr captured as text. The repository root goes first on the child's ``PYTHONPATH``
    so ``bench`` imports wherever the parent was started. ``check``: a child that failed is the library's
    UserError with its last line (the child's one-line refusal; it was a CalledProcessError traceback, or the
    parent's IndexError on the empty output: battery 31)."""
    from longrope.errors import UserError

    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env)
    if check and proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or [f"exited with status {proc.returncode}"])[-1]
        raise UserError(f"the {module} worker failed: {last.split(': error: ', 1)[-1]}")
    return proc
