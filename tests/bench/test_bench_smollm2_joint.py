"""bench/bench_smollm2_joint.py judges a retrieval-seeing search (joint or constrained fitness) against YaRN:
held-out perplexity on the plan's windows and the same pass keys for both sets (here: the embedded model at
2x with tiny budgets and the experiment's plan scaled down; the SmolLM2 benchmark runs at 16k)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_smollm2_joint
from longrope.cli import main as cli
from tests.bench.bench_helpers import factor_folders, run_plan

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "smollm2_2x"


def _earlier_record(path: Path, yarn_ppl: float, tokens: int) -> None:
    """A stand-in for bench/results/smollm2-2x.json: its YaRN cell equals this run's, as the script demands."""
    path.write_text(json.dumps({
        "format": "longrope-bench/1", "name": "smollm2-2x", "title": "t", "command": "c", "utc": "2026-12-07T00:00:00Z",
        "machine": {}, "settings": {}, "tables": {},
        "values": {"tokens_16384": tokens, "ppl_16384_yarn": yarn_ppl, "ppl_16384_pi": yarn_ppl * 1.5,
                   "ppl_16384_ntk": yarn_ppl * 1.1}}))


def test_judges_a_constrained_search_by_the_default_searchs_goals(tmp_path):
    from longrope.embedded import CORPUS_DIR
    from longrope.rope import FactorSet

    shards, search = tmp_path / "shards", tmp_path / "search"
    assert cli(["tokenize", "--tokenizer", "tiny", "--input", f"search={CORPUS_DIR / 'search'}",
                f"heldout={CORPUS_DIR / 'heldout'}", "-o", str(shards), "--quiet"]) == 0
    assert cli(["search", "--model", "tiny", "--data", str(shards), "--target-length", "512", "--samples", "2",
                "--max-evals", "2", "--no-report", "--quiet", "--fitness", "constrained", "--race-rank", "1",
                "-o", str(search)]) == 0
    kept = search / "yarn_reference.json"  # YaRN's bound per window, kept for a resume
    assert len(json.loads(kept.read_text())["answer_nll"]) == 2
    before = kept.stat().st_mtime_ns
    assert cli(["search", "--model", "tiny", "--data", str(shards), "--target-length", "512", "--samples", "2",
                "--max-evals", "3", "--no-report", "--quiet", "--fitness", "constrained", "--race-rank", "1",
                "-o", str(search), "--resume"]) == 0
    assert kept.stat().st_mtime_ns == before  # read back, not measured and written again
    plan = json.loads((EXPERIMENT / "constrained.plan.json").read_text())  # the experiment's plan, scaled down
    stage = plan["stages"][0]
    stage.update(data=str(shards), samples={"2x": 2})
    stage["methods"]["searched-constrained"]["factors"] = {"2x": str(search / "factors.json")}
    run_plan(plan, tmp_path / "eval")
    keys = factor_folders(tmp_path / "keys", {"searched-constrained": search / "factors.json"}, yarn_target=512)
    assert cli(["eval", "passkey", "--model", "tiny", "--lengths", "512", "--skip-none", "--mode", "both",
                "--depths", "0.25,0.75", "--trials", "1", "--seed", "1", "--quiet", "-o", str(tmp_path / "pk"),
                "--factors", str(keys["yarn"]), str(keys["searched-constrained"])]) == 0
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    ppl, tokens = summary["heldout_ppl"]["2x"], summary["heldout_tokens"]["2x"]
    earlier = tmp_path / "earlier.json"
    _earlier_record(earlier, ppl["yarn"], tokens)
    rec_path = tmp_path / "rec" / "smollm2-2x-constrained.json"
    args = ["--search", str(search), "--eval", str(tmp_path / "eval"), "--keys", str(tmp_path / "pk"),
            "--earlier", str(earlier), "--record", str(rec_path)]
    assert bench_smollm2_joint.main(["--fitness", "constrained", *args]) == 0
    rec = json.loads(rec_path.read_text())
    assert rec["name"] == "smollm2-2x-constrained" and "constrained" in rec["description"]
    values = rec["values"]
    assert values["ppl_16384_searched-constrained"] == ppl["searched-constrained"]
    best = min(ppl["yarn"], ppl["yarn"] * 1.1)
    assert values["ratio_to_best"] == ppl["searched-constrained"] / best
    assert values["goal_ppl_met"] == (values["ratio_to_best"] <= 1.0)
    assert values["keys_yarn"] == values["keys_searched-constrained"] == values["shared_keys"] == 2
    assert values["lower_nll_than_yarn"] + values["higher_nll_than_yarn"] <= 2
    saved = FactorSet.load(rec_path.parent / "smollm2-2x" / "factors-constrained.json")  # beside the record
    assert saved.long_factor.tolist() == FactorSet.load(search / "factors.json").long_factor.tolist()
    # the default judges the default fitness: a constrained search is refused, naming the flag that fits it
    assert bench_smollm2_joint.main(args) == 2
