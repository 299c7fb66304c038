"""What every benchmark writes under its table: the command that produced it, and when."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def command_line(script: str) -> str:
    """The benchmark's command as a user would type it from the repository root, with a UTC timestamp."""
    threads = os.environ.get("OMP_NUM_THREADS")
    env = [f"OMP_NUM_THREADS={threads}"] if threads else []
    rel = os.path.relpath(script, Path(script).resolve().parent.parent)
    cmd = " ".join([*env, ".venv/bin/python", rel, *sys.argv[1:]])
    return f"Command: `{cmd}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())})"
