"""bench/bench_search.py keeps working: the synthetic protocol end to end, in a second."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_search.py"


def test_bench_script_runs_the_whole_protocol_on_the_synthetic_objective(tmp_path):
    spec = importlib.util.spec_from_file_location("bench_search", BENCH)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "search.md"
    argv = ["--synthetic", "--synthetic-dims", "16", "--population", "8", "--parents", "4", "--mutations", "4",
            "--crossovers", "4", "--iterations", "3", "--out", str(out), "--json", str(tmp_path / "r.json"), "--quiet"]
    assert bench.main(argv) == 0
    record = json.loads((tmp_path / "r.json").read_text())
    assert set(record["heldout"]["ppl"]) == {"ours", "ours-fixed-m", "paper", "pi", "ntk", "yarn"}
    assert record["speed"]["paper_doc_evals"] == 5 * (8 + 3 * 8)  # every paper candidate on all 5 docs
    assert "--synthetic" in record["command"]
    text = out.read_text()
    assert "(a) cost to reach" in text and "(b) held-out perplexity" in text
