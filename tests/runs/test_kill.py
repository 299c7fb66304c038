"""A killed one-shot run leaves the previous complete folder (or none); the next run cleans up."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

from longrope.cli import main


def _eval_argv(tiny, out, lengths):
    return ["eval", "ppl", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--lengths", lengths,
            "--samples", "2", "--quiet", "-o", str(out)]


def test_sigkill_during_eval_keeps_the_previous_folder_and_the_next_run_cleans_up(tiny, tmp_path):
    out = tmp_path / "ppl"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    assert main(_eval_argv(tiny, out, "32")) == 0
    before = (out / "summary.json").read_text()
    # a long evaluation (many lengths) killed once its partial folder exists
    proc = subprocess.Popen([sys.executable, "-m", "longrope",
                             *_eval_argv(tiny, out, ",".join(str(n) for n in range(32, 300, 4)))], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and not list(tmp_path.glob(".ppl.partial-*/run.json")):
        time.sleep(0.05)
    assert list(tmp_path.glob(".ppl.partial-*")), "the run never started writing"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert (out / "summary.json").read_text() == before  # the previous complete result, untouched
    assert json.loads((out / "run.json").read_text())["status"] == "done"
    # the next run removes the dead run's partial folder and replaces the result
    assert main(_eval_argv(tiny, out, "32,64")) == 0
    assert not list(tmp_path.glob(".ppl.partial-*"))
    assert [r["length"] for r in json.loads((out / "summary.json").read_text())["results"]] == [32, 64]
