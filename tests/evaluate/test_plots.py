"""``longrope.evaluate.plots``: PNG plots of results."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"


def test_an_unwritable_matplotlib_config_folder_costs_no_lines_on_stderr(tmp_path):
    """battery 9a: with HOME (or MPLCONFIGDIR) unwritable, every eval printed matplotlib's "mkdir -p failed" and
    "created a temporary cache directory" lines; matplotlib uses a temporary folder either way."""
    env = {**os.environ, "MPLCONFIGDIR": "/proc/longrope-no-such-folder", "PYTHONPATH": str(SRC)}
    code = ("from longrope.evaluate.plots import plot_ppl_vs_length\n"
            f"plot_ppl_vs_length({{'a': [(256, 9.0), (512, 8.0)]}}, {str(tmp_path / 'p.png')!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "p.png").stat().st_size > 0
