"""bench/bench_demo.py: runs a (very small) demo or reads a finished run folder, and records it."""

from __future__ import annotations

import json
import shlex

from bench import bench_demo

SMALL = ["--target-length", "512", "--lengths", "256,512", "--max-evals", "2", "--budget-seconds", "0",
         "--samples", "1", "--search-samples", "1", "--passkey-trials", "1", "--passkey-depths", "0.5",
         "--domains", "books", "--quiet"]


def test_records_a_demo_it_runs_and_the_same_run_folder_read_back(tmp_path, capsys):
    run_dir, rec_path = tmp_path / "run", tmp_path / "rec" / "demo.json"
    assert bench_demo.main([*SMALL, "--out", str(run_dir), "--record", str(rec_path)]) == 0
    rec = json.loads(rec_path.read_text())
    summary = json.loads((run_dir / "summary.json").read_text())
    assert rec["source"]["command"] == "longrope demo " + " ".join([*SMALL, "--out", str(run_dir)])
    assert rec["values"]["ratio"] == summary["longrope_vs_best_baseline"]
    assert rec["values"]["books_ppl_longrope"] == summary["heldout_ppl"]["longrope"]
    books = rec["tables"]["books"]
    assert books["columns"] == ["method", "256", "512 (target)", "passkey@512"]
    assert [r[0] for r in books["rows"]] == list(summary["ppl_vs_length"])
    assert rec["values"]["passkey_keys"] == 1 and rec["settings"]["max_evals"] == 2
    assert rec["machine"]["torch"] == json.loads((run_dir / "run.json").read_text())["versions"]["torch"]
    assert (rec_path.with_suffix(".md")).read_text().startswith("# `longrope demo`")

    again = tmp_path / "again.json"
    assert bench_demo.main(["--from-run", str(run_dir), "--record", str(again)]) == 0
    rec2 = json.loads(again.read_text())
    assert rec2["values"] == rec["values"] and rec2["tables"] == rec["tables"]
    argv = json.loads((run_dir / "run.json").read_text())["argv"]
    assert rec2["source"]["command"] == shlex.join(argv)  # what the run folder says ran it
    capsys.readouterr()

    assert bench_demo.main(["--from-run", str(run_dir), "--samples", "2", "--record", str(again)]) == 2
    assert "--samples cannot be combined with --from-run" in capsys.readouterr().err
    assert bench_demo.main(["--from-run", str(tmp_path / "rec"), "--record", str(again)]) == 2
    err = capsys.readouterr().err
    assert "not a finished demo run folder" in err and err.count("\n") == 1
