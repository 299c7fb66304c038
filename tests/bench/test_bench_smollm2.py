"""bench/bench_smollm2.py records a search run and its evaluation pipeline (here: the embedded model
at 2x with tiny budgets and the benchmark's own plan scaled down; the SmolLM2 benchmark runs at 16k)."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_smollm2
from longrope.cli import main as cli
from tests.bench.bench_helpers import factor_folders, run_plan

EXPERIMENT = Path(__file__).resolve().parents[2] / "experiments" / "smollm2_2x"


def test_records_the_search_the_perplexities_and_the_passkey(tmp_path):
    from longrope.embedded import CORPUS_DIR

    shards, first, search = tmp_path / "shards", tmp_path / "first", tmp_path / "search"
    assert cli(["tokenize", "--tokenizer", "tiny", "--input", f"search={CORPUS_DIR / 'search'}",
                f"heldout={CORPUS_DIR / 'heldout'}", "-o", str(shards), "--quiet"]) == 0
    common = ["search", "--model", "tiny", "--data", str(shards), "--target-length", "512", "--samples", "2",
              "--max-evals", "2", "--no-report", "--quiet"]
    assert cli([*common, "-o", str(first)]) == 0  # like the benchmark: a first search, then one reusing its scores
    assert cli([*common, "--race-rank", "1", "--reuse", str(first), "-o", str(search)]) == 0
    needle_search = tmp_path / "needle-search"  # the second search: the answer NLL of planted keys
    assert cli([*common, "--fitness", "needle", "--race-rank", "1", "-o", str(needle_search)]) == 0
    plan = json.loads((EXPERIMENT / "plan.json").read_text())  # the benchmark's plan, scaled down
    stage = plan["stages"][0]
    stage.update(data=str(shards), samples={"1x": 2, "2x": 2}, passkey_trials=1, passkey_depths=[0.5])
    for m in stage["methods"].values():
        m["factors"] = {r: (str(search / "factors.json") if "smollm2-2x-search2" in f
                            else str(needle_search / "factors.json") if "smollm2-2x-needle-search" in f else f)
                        for r, f in m["factors"].items()}
    run_plan(plan, tmp_path / "eval")
    needle_factors = tmp_path / "needle-factors"
    factor_folders(needle_factors, {"searched": search / "factors.json"}, yarn_target=512)
    assert cli(["eval", "passkey", "--model", "tiny", "--lengths", "512", "--skip-none", "--mode", "needle",
                "--depths", "0.25,0.75", "--trials", "1", "--seed", "1", "--quiet", "-o", str(tmp_path / "needle"),
                "--factors", str(needle_factors / "searched"), str(needle_factors / "yarn")]) == 0
    factor_folders(needle_factors, {"searched-needle": needle_search / "factors.json"})  # a run of its own, same keys
    assert cli(["eval", "passkey", "--model", "tiny", "--lengths", "512", "--skip-none", "--mode", "needle",
                "--depths", "0.25,0.75", "--trials", "1", "--seed", "1", "--quiet", "-o", str(tmp_path / "needle2"),
                "--factors", str(needle_factors / "searched-needle")]) == 0
    rec_path = tmp_path / "rec" / "smollm2-2x.json"
    assert bench_smollm2.main(["--search", str(search), "--eval", str(tmp_path / "eval"), "--record", str(rec_path),
                               "--needle", str(tmp_path / "needle"), str(tmp_path / "needle2"),
                               "--needle-search", str(needle_search)]) == 0
    rec = json.loads(rec_path.read_text())
    ppl = json.loads((tmp_path / "eval" / "summary.json").read_text())["heldout_ppl"]["2x"]
    closed = {m: v for m, v in ppl.items() if m not in ("none", "searched", "searched-needle")}
    best = min(closed, key=closed.get)
    assert rec["values"]["best_closed_form"] == best and set(closed) == {"pi", "ntk", "dynamic-ntk", "yarn"}
    assert rec["values"]["ratio_to_best"] == ppl["searched"] / closed[best]
    assert rec["values"]["ratio_to_best_searched-needle"] == ppl["searched-needle"] / closed[best]
    assert rec["values"]["tokens_512"] == 2 * 511 and rec["values"]["tokens_256"] == 2 * 255
    assert [r[0] for r in rec["tables"]["ppl"]["rows"]] == ["none", "pi", "ntk", "dynamic-ntk", "yarn", "searched",
                                                           "searched-needle"]
    assert (rec_path.parent / "smollm2-2x" / "factors.json").is_file()
    from longrope.rope import FactorSet

    saved, found = (FactorSet.load(f) for f in (rec_path.parent / "smollm2-2x" / "factors-needle.json",
                                                 needle_search / "factors.json"))
    assert saved.long_factor.tolist() == found.long_factor.tolist()
    summary = json.loads((needle_search / "summary.json").read_text())["search"]
    assert rec["values"]["needle_search_candidates"] == summary["candidates"]
    assert rec["values"]["needle_search_attention_factor"] == summary["attention_factor"]
    assert rec["values"]["needle_search_best_answer_nll"] <= rec["values"]["needle_search_best_seed_answer_nll"]
    assert rec["values"]["needle_keys_searched-needle"] == rec["values"]["needle_searched-needle_shared_keys"] == 2
    assert "passkey_goal_met_searched-needle" in rec["values"]
    assert 0 <= rec["values"]["needle_search_seed_hotter_better"] <= rec["values"]["needle_search_seed_temperature_pairs"]
    crit = rec["values"]["critical_dim"]  # the tiny model: rope base 1e4, 64 rotary dims, L = 256
    assert crit == 13 and rec["values"]["min_lambda_from_critical_yarn"] == 2.0  # YaRN interpolates those fully
    assert rec["values"]["min_lambda_from_critical_searched-needle"] == min(found.long_factor[crit:])
    assert rec["values"]["needle_search_race_window_evals"] == sum(
        len(json.loads(x)["doc_nll"]) for x in (needle_search / "history.jsonl").read_text().splitlines())
    history = [json.loads(line) for line in (search / "history.jsonl").read_text().splitlines()]
    assert rec["values"]["eval_peak_rss_mib"] > 50
    assert rec["values"]["race_window_evals"] == sum(len(r["doc_nll"]) for r in history)
    assert rec["values"]["needle_keys_searched"] == rec["values"]["needle_shared_keys"] == 2
    assert 0 <= rec["values"]["needle_searched_lower_nll"] <= 2 and rec["values"]["needle_answer_nll_yarn"] > 0
    assert rec["source"]["needle_command"].startswith("longrope")  # in-process here: run.json has pytest's argv
    assert bench_smollm2.main(["--search", str(tmp_path / "nowhere"), "--eval", str(tmp_path / "eval"),
                               "--record", str(tmp_path / "x.json")]) == 2


def test_needle_analysis_pairs_the_two_sets_key_by_key():
    needle_analysis = bench_smollm2.needle_analysis

    def trials(nlls, correct):
        return [{"length": 16, "depth": d, "trial": 0, "key": 10 + i, "answer_nll": v, "correct": c}
                for i, (d, v, c) in enumerate(zip((0.0, 0.5, 1.0), nlls, correct))]

    run = {"results": [{"factors": "searched", "mode": "needle", "trials": trials([0.5, 2.0, 0.1], [True, False, True])},
                       {"factors": "yarn", "mode": "needle", "trials": trials([0.7, 1.0, 0.2], [True, True, False])}]}
    got = needle_analysis(run, "searched", "yarn")
    assert got["searched_lower_nll"] == 2 and got["shared_keys"] == 3
    assert got["accuracy_searched"] == got["accuracy_yarn"] == 2 / 3
    assert abs(got["answer_nll_searched"] - 2.6 / 3) < 1e-12 and got["keys_yarn"] == 3
    try:
        needle_analysis(run, "searched", "ntk")
    except KeyError as exc:
        assert "'ntk'" in exc.args[0]
    else:
        raise AssertionError("a missing set must be named")
    run["results"][1]["mode"] = "generate"  # a generated answer has no NLL to compare
    try:
        needle_analysis(run, "searched", "yarn")
    except ValueError as exc:
        assert "--mode needle" in str(exc)
    else:
        raise AssertionError("a run in generate mode must be refused")


def test_needle_runs_merge_sets_on_the_same_keys_and_pool_other_seeds():
    merge, needle_analysis = bench_smollm2.merge_needle_runs, bench_smollm2.needle_analysis
    cfg = {"model": "smollm2", "seed": 1, "lengths": [16384], "depths": [0.0, 0.5], "trials": 1, "mode": "needle"}

    def result(name, nlls, key0):
        return {"factors": name, "mode": "needle", "seconds": 1.0,
                "trials": [{"length": 16384, "depth": d, "trial": 0, "key": key0 + i, "answer_nll": v,
                            "correct": v < 1.0} for i, (d, v) in enumerate(zip((0.0, 0.5), nlls))]}

    a = {"config": cfg, "results": [result("searched", [0.5, 2.0], 10), result("yarn", [0.7, 1.5], 10)]}
    b = {"config": dict(cfg), "results": [result("searched-needle", [0.4, 0.6], 10)]}
    c = {"config": {**cfg, "seed": 2}, "results": [result(n, v, 20) for n, v in
                                                   (("searched", [0.9, 0.3]), ("yarn", [0.8, 0.2]),
                                                    ("searched-needle", [0.1, 0.1]))]}
    merged = merge([a, b, c])
    assert [r["factors"] for r in merged["results"]] == ["searched", "yarn", "searched-needle"]
    assert merged["config"]["seed"] == [1, 2]
    assert all(len(r["trials"]) == 4 for r in merged["results"])
    got = needle_analysis(merged, "searched-needle", "yarn")
    assert got["shared_keys"] == 4 and got["searched-needle_lower_nll"] == 4
    assert abs(got["searched-needle_lower_nll_sign_p"] - 2 / 16) < 1e-12  # 4 of 4: 2 · 0.5^4
    assert got["accuracy_searched-needle"] == 1.0 and abs(got["answer_nll_yarn"] - 3.2 / 4) < 1e-12
    by_depth = bench_smollm2.needle_by_depth(merged, ["yarn", "searched-needle"])
    assert by_depth[0][:2] == [0.0, 2] and by_depth[0][2] == 2 and abs(by_depth[0][3] - 0.75) < 1e-12
    assert by_depth[1][4:] == [2, (0.6 + 0.1) / 2]
    # the same key numbers under two seeds are two keys, told apart by the seed each trial carries
    same_keys = {"config": {**cfg, "seed": 3}, "results": [result(n, [0.5, 0.5], 10) for n in ("searched", "yarn",
                                                                                            "searched-needle")]}
    assert needle_analysis(merge([a, b, same_keys]), "searched", "yarn")["shared_keys"] == 4
    for bad, match in (({"config": {**cfg, "depths": [0.5]}, "results": [result("x", [1.0], 1)]}, "only --seed"),
                       ({"config": cfg, "results": [result("yarn", [1.0, 1.0], 10)]}, "twice"),
                       ({"config": {**cfg, "seed": 4}, "results": [result("yarn", [1.0, 1.0], 30)]},
                        "same factor sets")):
        try:
            merge([a, b, bad])
            raise AssertionError("merged")
        except ValueError as exc:
            assert match in str(exc)


def test_sign_test_p_is_the_two_sided_binomial_tail():
    p = bench_smollm2.sign_test_p
    assert p(0, 0) == 1.0 and p(3, 3) == 1.0
    assert abs(p(4, 1) - 2 * 6 / 32) < 1e-12 and abs(p(1, 4) - p(4, 1)) < 1e-12
    assert abs(p(10, 0) - 2 / 1024) < 1e-12


def test_race_analysis_counts_what_racing_against_the_incumbent_would_cost():
    race_analysis = bench_smollm2.race_analysis

    def rec(kind, g, nll, cached=False):
        docs = [0, 1, 2] if len(nll) == 3 else [0] if len(nll) == 1 else [1, 2]
        return {"kind": kind, "factors": [g], "start_tokens": 0, "attention_factor": 1.0, "docs": docs,
                "doc_nll": nll, "scored": [] if cached else docs}

    history = [rec("seed", 1, [3.0, 3.2, 3.4]),            # incumbent (mean 3.2)
               rec("seed", 2, [3.1]), rec("promotion", 2, [3.3, 3.5]),  # behind on window 0, worse in full
               rec("mutation", 3, [2.9]), rec("promotion", 3, [3.0, 3.1]),  # ahead on window 0: new best
               rec("mutation", 4, [3.05]), rec("promotion", 4, [2.9, 2.9]),  # behind 2.9, yet a new best: a miss
               rec("mutation", 5, [3.5]),                  # raced out by the default too
               rec("seed", 2, [3.1], cached=True)]         # a later search reusing the scores: free
    a = race_analysis(history, 3)
    assert a["full_candidates"] == 4 and a["rank_pairs"] == 6 and a["rank_concordant"] == 4  # 4 passes 1 and 3
    assert a["raced"] == 4 and a["raced_promoted"] == 3 and a["incumbent_would_promote"] == 1
    assert a["window_evals"] == 3 + 3 + 3 + 3 + 1
    assert a["window_evals_incumbent_race"] == 13 - 2 - 2  # candidates 2 and 4 stop after window 0
    assert a["incumbent_race_misses"] == 1 and a["best_kind"] == "mutation"  # genome 4
