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
    so ``bench`` imports wherever the parent was started."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])])
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=env,
                          check=check)
