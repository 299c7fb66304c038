"""Run a real llama.cpp (node-llama-cpp's prebuilt CPU build) on token ids from Python.

``available()`` says whether ``node`` and ``node_modules/node-llama-cpp`` are there (install once
from the repository root: ``npm i -E --no-save --no-package-lock node-llama-cpp@3.21.1``;
``node_modules/`` is git-ignored). ``run(job)`` writes the job as JSON, runs
``bench/llamacpp_ppl.mjs`` on it and returns its JSON answer: per window the summed NLL (natural
log) of the scored tokens and their count, and the context size llama.cpp really used.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "bench" / "llamacpp_ppl.mjs"
PACKAGE = ROOT / "node_modules" / "node-llama-cpp"


def available() -> bool:
    return shutil.which("node") is not None and PACKAGE.is_dir() and SCRIPT.is_file()


def run(job: dict, *, timeout: float = 3600) -> dict:
    """``job``: {model, contextSize, threads, windows: [[ids]], scoreFrom: [first scored index per window]}."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(job, f)
        path = f.name
    try:
        proc = subprocess.run(["node", str(SCRIPT), path], capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)
    finally:
        os.unlink(path)
    if proc.returncode != 0:
        tail = "\n".join(proc.stderr.strip().splitlines()[-5:])
        raise RuntimeError(f"llama.cpp run failed ({proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
