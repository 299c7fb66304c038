"""bench/bench_search.py keeps working: the synthetic protocol end to end, in a second."""

from __future__ import annotations

import json

from bench import bench_search as bench


def test_bench_script_runs_the_whole_protocol_on_the_synthetic_objective(tmp_path):
    out = tmp_path / "search.json"
    argv = ["--synthetic", "--synthetic-dims", "16", "--population", "8", "--parents", "4", "--mutations", "4",
            "--crossovers", "4", "--iterations", "3", "--out", str(out), "--quiet"]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["format"] == "longrope-bench/1" and record["name"] == "search"
    assert record["command"].endswith("-m bench.bench_search " + " ".join(argv))
    assert set(record["data"]["heldout"]["ppl"]) == {"ours", "ours-fixed-m", "paper", "pi", "ntk", "yarn"}
    assert record["values"]["paper_doc_evals"] == 5 * (8 + 3 * 8)  # every paper candidate on all 5 docs
    assert record["values"]["budget"] == 8 + 3 * (4 + 4)
    heldout = record["tables"]["heldout"]
    assert [row[0] for row in heldout["rows"]] == ["ours", "ours-fixed-m", "paper", "pi", "ntk", "yarn"]
    best = min(record["values"][f"heldout_ppl_{m}"] for m in ("pi", "ntk", "yarn"))
    assert abs(heldout["rows"][0][2] - record["values"]["heldout_ppl_ours"] / best) < 1e-12
    text = (tmp_path / "search.md").read_text()
    assert "(a) cost to reach" in text and "(b) held-out perplexity" in text
