"""``longrope pipeline`` end to end on the embedded tiny model at small ratios (2x, 4x): every stage
kind, the manifest, the summary's tables, the progressive composition, the export, resume after a
kill between and inside stages (search, fine-tuning, comparison), and bad plans."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from longrope.cli import main

L = 256  # the tiny model's original context


def _plan() -> dict:
    ft = {"data": "@data", "steps": 4, "warmup_steps": 1, "learning_rate": 1e-4, "checkpoint_every": 2,
          "seq_len": "2x"}
    return {
        "format": "longrope-pipeline/1",
        "model": "tiny",
        "stages": [
            {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
            {"name": "search-2x", "run": "search", "data": "@data", "target_length": "2x", "samples": 2,
             "max_evals": 4, "report": False},
            {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
            {"name": "ft", "run": "finetune", "factors": "@search-2x", **ft},
            {"name": "ft-yarn", "run": "finetune", "factors": "@yarn-2x", **ft},
            {"name": "search-4x", "run": "search", "model": "@ft", "base_factors": "@search-2x", "data": "@data",
             "target_length": "4x", "samples": 2, "max_evals": 4, "report": False},
            {"name": "recover", "run": "search", "model": "@ft", "short": True, "base_factors": "@search-4x",
             "data": "@data", "samples": 4, "windows_per_doc": 2, "max_evals": 4, "report": False},
            {"name": "compare", "run": "compare", "data": "@data", "ratios": ["1x", "2x", "4x"],
             "samples": {"1x": 8, "2x": 2, "4x": 2}, "passkey_trials": 1, "passkey_depths": [0.5],
             "passkey_ratios": ["2x", "4x"],
             "passkey_methods": ["base_yarn", "yarn_ft", "ours_progressive", "ours_recovered"],
             "methods": {
                 "base_none": {"model": "{model}", "factors": {"1x": "none", "2x": "none", "4x": "none"}},
                 "base_yarn": {"model": "{model}", "factors": {"1x": "yarn@2x", "2x": "yarn@2x", "4x": "yarn@4x"}},
                 "yarn_ft": {"model": "@ft-yarn", "factors": {"2x": "@yarn-2x", "4x": "yarn@4x"}},
                 "ours_progressive": {"model": "@ft", "factors": {"4x": "@search-4x"}},
                 "ours_recovered": {"model": "@ft", "factors": {"1x": "@recover", "2x": "@recover",
                                                                "4x": "@recover"}},
             },
             "goals": [{"name": "recovery", "value": "heldout_ppl.1x.ours_recovered",
                        "at_most": "1.01*heldout_ppl.1x.base_none"},
                       {"name": "progressive", "value": "heldout_ppl.4x.ours_progressive",
                        "at_most": "0.9*heldout_ppl.4x.yarn_ft"}]},
            {"name": "export", "run": "export", "model": "@ft", "factors": "@recover"},
        ],
    }


def _write(tmp: Path, plan: dict) -> Path:
    path = tmp / "plan.json"
    path.write_text(json.dumps(plan))
    return path


def _pipeline(plan_file: Path, out: Path, *extra: str) -> int:
    return main(["pipeline", "--plan", str(plan_file), "-o", str(out), "--quiet", *extra])


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("pipeline")
    plan_file = _write(tmp, _plan())
    out = tmp / "out"
    assert _pipeline(plan_file, out) == 0
    return plan_file, out


def _cells(out: Path) -> dict:
    return json.loads((out / "summary.json").read_text())["heldout_ppl"]


def test_every_stage_runs_and_the_summary_holds_the_tables(reference):
    plan_file, out = reference
    manifest = json.loads((out / "pipeline.json").read_text())
    assert [s for s in manifest["stages"]] == [s["name"] for s in _plan()["stages"]]
    assert all(s["status"] == "done" and s["attempts"] == 1 for s in manifest["stages"].values())
    assert manifest["stages"]["ft"]["config"]["seq_len"] == 2 * L  # "2x" resolved
    assert manifest["stages"]["search-4x"]["inputs"] == {"ft": str(out / "stages" / "ft"),
                                                         "search-2x": str(out / "stages" / "search-2x"),
                                                         "data": str(out / "stages" / "data")}
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] and json.loads((out / "run.json").read_text())["status"] == "done"
    assert list(summary["heldout_ppl"]) == ["1x", "2x", "4x"]
    assert list(summary["heldout_ppl"]["1x"]) == ["base_none", "base_yarn", "ours_recovered"]
    assert list(summary["heldout_ppl"]["4x"]) == ["base_none", "base_yarn", "yarn_ft", "ours_progressive",
                                                  "ours_recovered"]
    assert summary["heldout_tokens"] == {"1x": 8 * (L - 1), "2x": 2 * (2 * L - 1), "4x": 2 * (4 * L - 1)}
    assert set(summary["passkey"]["2x"]) == {"base_yarn", "yarn_ft", "ours_recovered"}  # passkey_methods
    assert list(summary["passkey"]) == ["2x", "4x"]  # passkey_ratios
    cells = [json.loads(line) for line in (out / "stages" / "compare" / "cells.jsonl").read_text().splitlines()]
    rss = [c["peak_rss_mb"] for c in cells]  # the process's high-water mark: never decreasing, a model's worth
    assert rss == sorted(rss) and rss[0] > 50
    assert all(0.0 <= v <= 1.0 for r in summary["passkey"].values() for v in r.values())
    goals = {g["name"]: g for g in summary["goals"]}
    g = goals["recovery"]
    assert g["measured"] == summary["heldout_ppl"]["1x"]["ours_recovered"]
    assert g["bound"] == pytest.approx(1.01 * summary["heldout_ppl"]["1x"]["base_none"])
    assert g["met"] == (g["measured"] <= g["bound"])
    # each stage is an ordinary run folder of its command
    assert json.loads((out / "stages" / "search-4x" / "config.json").read_text())["command"] == "search"
    assert json.loads((out / "stages" / "ft" / "config.json").read_text())["command"] == "finetune"


def test_progressive_factors_compose_elementwise_within_bounds(reference):
    from longrope.rope import FactorSet

    _, out = reference
    base = FactorSet.load(out / "stages" / "search-2x" / "factors.json")
    prog = FactorSet.load(out / "stages" / "search-4x" / "factors.json")
    rel = np.asarray(prog.provenance["relative_factor"])
    np.testing.assert_allclose(prog.long_factor, base.long_factor * rel, rtol=1e-12)
    # λ' searched as an extension by s' = 4x / 2x = 2: within [1, 1.25 s']
    assert np.all(rel >= 1.0 - 1e-12) and np.all(rel <= 1.25 * 2 + 1e-12)
    assert prog.max_position_embeddings == 4 * L and prog.original_max_position_embeddings == L
    rec = FactorSet.load(out / "stages" / "recover" / "factors.json")
    np.testing.assert_array_equal(rec.long_factor, prog.long_factor)  # recovery only fills the short factors


def test_the_export_loads_in_stock_transformers_with_both_factor_sets(reference):
    import torch
    from transformers import AutoModelForCausalLM

    from longrope.models import install_factors
    from longrope.rope import FactorSet

    _, out = reference
    stock = AutoModelForCausalLM.from_pretrained(out / "stages" / "export" / "model", dtype=torch.float32).eval()
    ours = AutoModelForCausalLM.from_pretrained(out / "stages" / "ft" / "model", dtype=torch.float32).eval()
    fs = FactorSet.load(out / "stages" / "recover" / "factors.json")
    install_factors(ours, fs)
    scaling = stock.config.rope_scaling
    np.testing.assert_allclose(scaling["short_factor"], fs.short_factor)
    np.testing.assert_allclose(scaling["long_factor"], fs.long_factor)
    g = torch.Generator().manual_seed(0)
    for n in (L // 2, 2 * L):  # short factors, then long factors
        ids = torch.randint(0, 4096, (1, n), generator=g)
        with torch.no_grad():
            a, b = stock(ids).logits, ours(ids).logits
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


class Killed(BaseException):
    pass


def test_resume_after_kills_inside_and_between_stages_gives_the_same_results(reference, tmp_path, monkeypatch):
    import longrope.runs.compare as compare_mod
    import longrope.train.loop as loop_mod
    from longrope.search import objective as obj_mod

    plan_file, ref_out = reference
    out = tmp_path / "out"
    # between stages: stop after the first search
    assert _pipeline(plan_file, out, "--until", "search-2x") == 0
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["stages"]["search-2x"]["status"] == "done" and manifest["stages"]["ft"]["status"] == "pending"
    assert not json.loads((out / "summary.json").read_text())["complete"]
    # inside the fine-tuning stage: killed right after its first checkpoint
    real_save = loop_mod.save_checkpoint

    def save_then_die(*args, **kwargs):
        real_save(*args, **kwargs)
        raise Killed()

    monkeypatch.setattr(loop_mod, "save_checkpoint", save_then_die)
    with pytest.raises(Killed):
        _pipeline(plan_file, out, "--resume")
    monkeypatch.undo()
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["stages"]["ft"]["status"] == "interrupted"
    # inside the progressive search: killed after a few evaluations
    # (the searches score with the joint fitness, the default)
    real_call = obj_mod.JointObjective.__call__
    calls = {"n": 0}

    def dying(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] > 3:
            raise Killed()
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(obj_mod.JointObjective, "__call__", dying)
    with pytest.raises(Killed):
        _pipeline(plan_file, out, "--resume", "--until", "search-4x")
    monkeypatch.undo()
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["stages"]["ft"]["status"] == "done" and manifest["stages"]["ft"]["attempts"] == 2
    assert manifest["stages"]["search-4x"]["status"] == "interrupted"
    assert (out / "stages" / "search-4x" / "checkpoint.json").exists()
    # inside the comparison: killed after two measured cells
    real_append = compare_mod._append_cell
    appended = {"n": 0}

    def append_then_die(path, cell):
        real_append(path, cell)
        appended["n"] += 1
        if appended["n"] == 2:
            raise Killed()

    monkeypatch.setattr(compare_mod, "_append_cell", append_then_die)
    with pytest.raises(Killed):
        _pipeline(plan_file, out, "--resume")
    monkeypatch.undo()
    assert len((out / "stages" / "compare" / "cells.jsonl").read_text().splitlines()) == 2
    assert _pipeline(plan_file, out, "--resume") == 0
    ft_ref = [json.loads(x)["loss"] for x in (ref_out / "stages" / "ft" / "train_log.jsonl").read_text().splitlines()]
    ft_new = [json.loads(x)["loss"] for x in (out / "stages" / "ft" / "train_log.jsonl").read_text().splitlines()]
    np.testing.assert_allclose(ft_new[-len(ft_ref):], ft_ref, rtol=1e-6)
    for name in ("search-2x", "search-4x", "recover"):
        a = json.loads((ref_out / "stages" / name / "factors.json").read_text())
        b = json.loads((out / "stages" / name / "factors.json").read_text())
        assert a["long_factor"] == b["long_factor"] and a["short_factor"] == b["short_factor"], name
    ref_cells, new_cells = _cells(ref_out), _cells(out)
    assert ref_cells.keys() == new_cells.keys()
    for r in ref_cells:
        for m in ref_cells[r]:
            assert new_cells[r][m] == pytest.approx(ref_cells[r][m], rel=1e-5), (r, m)


def test_only_runs_one_stage_when_its_inputs_are_done(reference, tmp_path, capsys):
    plan_file, _ = reference
    out = tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "data") == 0
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume", "--only", "ft") == 2
    err = capsys.readouterr().err
    assert "search-2x" in err and "not done" in err and "Traceback" not in err
    assert _pipeline(plan_file, out, "--resume", "--only", "yarn-2x") == 0
    manifest = json.loads((out / "pipeline.json").read_text())
    assert manifest["stages"]["yarn-2x"]["status"] == "done"
    assert manifest["stages"]["search-2x"]["status"] == "pending"


@pytest.mark.parametrize("change, match", [
    (lambda p: p["stages"].insert(0, {"name": "x", "run": "finetune", "factors": "@search-2x"}), "later stage"),
    (lambda p: p["stages"].append({"name": "data", "run": "tokenize", "inputs": ["embedded"]}), "two stages"),
    (lambda p: p["stages"].append({"name": "z", "run": "train", "x": 1}), "known: tokenize"),
    (lambda p: p.update(format="other"), "longrope-pipeline/1"),
    (lambda p: p["stages"].append({"name": "bad name!", "run": "export"}), "letters, digits"),
    (lambda p: p["stages"].append({"name": "e2", "run": "export", "factors": "@nowhere"}), "no stage"),
    (lambda p: p["stages"][1].update(samples=0), "plan stage 'search-2x' (search): samples must be an integer in"),
    (lambda p: p["stages"][3].update(stepz=3), "plan stage 'ft' (finetune)"),
    (lambda p: p["stages"][3].update(steps=10**400), "plan stage 'ft' (finetune): steps must be an integer in"),
    (lambda p: p["stages"][7].update(passkey_trials=10**400), "passkey_trials must be an integer in"),
    (lambda p: p["stages"][7]["samples"].update({"1x": 10**400}), "samples must be an integer in"),
    (lambda p: p["stages"][7]["methods"]["base_none"]["factors"].update({"8x": "none"}), "not in ratios"),
    (lambda p: p["stages"][7]["goals"].append({"name": "g", "value": "passkey.1x.base_none", "at_least": 1}),
     "not measured"),
    (lambda p: p["stages"][7]["goals"].append({"name": "g", "value": "passkey.2x.base_none", "at_least": 1}),
     "not measured"),
    (lambda p: p["stages"][7].update(passkey_methods=["base_nope"]), "passkey_methods"),
    (lambda p: p["stages"][7].update(passkey_methods=[["base_yarn"]]), "passkey_methods"),
    (lambda p: p["stages"][2].update(method="warp"), "method must be one of pi, ntk"),
    (lambda p: p["stages"][7].update(samples="five"), "samples must be an integer"),
    (lambda p: p["stages"][7].update(passkey_depths=[2]), "passkey_depths"),
    (lambda p: p["stages"][8].update(format="gguf", dtype="int3"), "unknown dtype"),
    (lambda p: p["stages"][2].update(name="yarn\n"), "needs a \"name\" of letters"),
    (lambda p: p["stages"][8].update(factors="@recover/../../.."), "inside a stage's folder only"),
    (lambda p: p["stages"][3].update(steps=[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]),
     "nested deeper than 64 levels"),
])
def test_bad_plans_are_refused_in_one_line_before_any_work(tmp_path, capsys, change, match):
    plan = _plan()
    change(plan)
    out = tmp_path / "out"
    assert _pipeline(_write(tmp_path, plan), out) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_resume_refuses_another_plan_and_a_second_run_refuses_the_folder(reference, tmp_path, capsys):
    plan_file, _ = reference
    out = tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "data") == 0
    capsys.readouterr()
    assert _pipeline(plan_file, out) == 2
    assert "--resume" in capsys.readouterr().err
    plan = _plan()
    plan["stages"][1]["samples"] = 3
    other = tmp_path / "other.json"
    other.write_text(json.dumps(plan))
    assert _pipeline(other, out, "--resume") == 2
    err = capsys.readouterr().err
    assert "stage 'search-2x' changed" in err
    assert _pipeline(plan_file, tmp_path / "none", "--resume") == 2
    assert "nothing to resume" in capsys.readouterr().err


def test_bad_compare_methods_and_goals_are_refused(tmp_path):
    from longrope.errors import UserError
    from longrope.runs.compare import check_goals, check_methods, parse_ratio

    methods = {"a": {"model": "tiny", "factors": {"1x": "none", "8x": "yarn@8x"}}}
    check_methods(methods, ["1x", "8x"])
    with pytest.raises(UserError, match="not in ratios"):
        check_methods(methods, ["1x"])
    with pytest.raises(UserError, match="unknown baseline"):
        check_methods({"a": {"model": "tiny", "factors": {"1x": "warp@8x"}}}, ["1x"])
    with pytest.raises(UserError, match="not measured"):
        check_goals([{"name": "g", "value": "heldout_ppl.32x.a", "at_most": 1}], methods)
    with pytest.raises(UserError, match="exactly one"):
        check_goals([{"name": "g", "value": "heldout_ppl.8x.a", "at_most": 1, "at_least": 0}], methods)
    with pytest.raises(UserError, match="METRIC.RATIO.METHOD"):
        check_goals([{"name": "g", "value": "ppl.8x.a", "at_most": 1}], methods)
    assert parse_ratio("8x") == 8.0 and parse_ratio("1.5x") == 1.5
    for bad in ("8", "0.5x", "x", "eightx"):
        with pytest.raises(UserError, match="context ratio"):
            parse_ratio(bad)


def test_goals_compare_a_cell_with_a_number_or_another_cell():
    from longrope.runs.compare import evaluate_goals

    result = {"heldout_ppl": {"32x": {"ours": 9.0, "yarn": 10.0}}, "passkey": {"8x": {"ours": 0.85}}}
    goals = [{"name": "a", "value": "heldout_ppl.32x.ours", "at_most": "0.9*heldout_ppl.32x.yarn"},
             {"name": "b", "value": "passkey.8x.ours", "at_least": 0.9},
             {"name": "c", "value": "passkey.8x.missing", "at_least": 0.9}]
    a, b, c = evaluate_goals(goals, result)
    assert a["met"] is True and a["bound"] == pytest.approx(9.0) and a["ratio_to_reference"] == pytest.approx(0.9)
    assert b["met"] is False and b["measured"] == 0.85
    assert c["met"] is None


def test_the_shipped_plan_is_valid_and_names_every_method_of_the_showcase():
    from longrope.runs.compare import check_goals, check_methods
    from longrope.runs.pipeline import load_plan, shipped_plan

    plan = load_plan(shipped_plan())
    compare = next(s for s in plan["stages"] if s["run"] == "compare")
    assert compare["ratios"] == ["1x", "8x", "32x"]
    assert list(compare["methods"]) == ["base_none", "base_pi", "base_ntk", "base_yarn", "base_searched", "yarn_ft",
                                        "ours_ft", "ours_progressive", "ours_recovered"]
    check_methods(compare["methods"], compare["ratios"])
    check_goals(compare["goals"], compare["methods"])
    runs = [s["run"] for s in plan["stages"]]
    assert runs.count("finetune") == 2 and runs[-1] == "export"
    ft = [s for s in plan["stages"] if s["run"] == "finetune"]
    assert {k: v for k, v in ft[0].items() if k not in ("name", "factors")} == \
        {k: v for k, v in ft[1].items() if k not in ("name", "factors")}  # the fair baseline: same steps and data


def test_the_benchmark_record_of_a_finished_pipeline(reference, tmp_path):
    """``bench/bench_pipeline.py --from-run`` records the run's tables and goals unchanged."""
    from bench import bench_pipeline as mod

    _, out = reference
    assert mod.main(["--from-run", str(out), "--record", str(tmp_path / "pipeline.json")]) == 0
    rec = json.loads((tmp_path / "pipeline.json").read_text())
    summary = json.loads((out / "summary.json").read_text())
    assert rec["values"]["ppl_4x_ours_progressive"] == summary["heldout_ppl"]["4x"]["ours_progressive"]
    assert rec["values"]["tokens_1x"] == summary["heldout_tokens"]["1x"]
    assert [row[0] for row in rec["tables"]["results"]["rows"]] == list(summary["methods"])
    table = rec["tables"]["results"]  # every passkey accuracy with its interval, the run's own
    ratio = next(iter(summary["passkey"]))
    column = table["columns"].index(f"passkey {ratio}")
    assert table["columns"][column + 1:column + 3] == [f"{ratio} low", f"{ratio} high"]
    for row in table["rows"]:
        if row[0] in summary["passkey"][ratio]:
            assert row[column + 1:column + 3] == summary["passkey_ci95"][ratio][row[0]]
            assert row[column + 1] <= row[column] <= row[column + 2]
    assert rec["values"]["goal_0_met"] == summary["goals"][0]["met"]
    assert (tmp_path / "pipeline.md").read_text().startswith("#")
    assert mod.main(["--from-run", str(tmp_path), "--record", str(tmp_path / "x.json")]) == 2


def test_resume_without_plan_uses_the_manifest_and_a_search_killed_before_its_checkpoint_restarts(
        reference, tmp_path):
    plan_file, _ = reference
    out = tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "data") == 0
    # a search stage that died after writing its run records but before its first evaluation
    stage = out / "stages" / "search-2x"
    stage.mkdir(parents=True)
    (stage / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": {}}))
    plan_file.rename(tmp_path / "moved.json")  # the manifest's copy of the plan is what resumes
    try:
        assert main(["pipeline", "-o", str(out), "--quiet", "--resume", "--until", "search-2x"]) == 0
    finally:
        (tmp_path / "moved.json").rename(plan_file)
    assert (stage / "factors.json").is_file()


def test_a_second_process_on_the_same_folder_is_refused(reference, tmp_path, capsys):
    from longrope.runs.folder import FolderLock

    plan_file, _ = reference
    out = tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "data") == 0
    held = FolderLock.acquire(out, "pipeline")
    try:
        capsys.readouterr()
        assert _pipeline(plan_file, out, "--resume") == 2
        assert "in use by another" in capsys.readouterr().err
    finally:
        held.release()


def test_a_torn_cell_line_is_dropped_and_goals_read_fractional_ratios(tmp_path):
    from longrope.runs.compare import _append_cell, _read_cells, check_goals, evaluate_goals

    path = tmp_path / "cells.jsonl"
    _append_cell(path, {"method": "a", "ratio": "1x", "ppl": 2.0})
    with open(path, "a") as f:
        f.write('{"method": "b", "ra')  # killed mid-line
    assert list(_read_cells(path)[0]) == [("a", "1x")]
    _append_cell(path, {"method": "b", "ratio": "1x", "ppl": 3.0})
    assert list(_read_cells(path)[0]) == [("a", "1x"), ("b", "1x")]
    methods = {"m.v2": {"model": "tiny", "factors": {"1.5x": "none"}}}
    goals = [{"name": "g", "value": "heldout_ppl.1.5x.m.v2", "at_most": 3}]
    check_goals(goals, methods)
    assert evaluate_goals(goals, {"heldout_ppl": {"1.5x": {"m.v2": 2.5}}})[0]["met"] is True


def test_a_hand_edited_cell_is_measured_again_not_reported(tmp_path, capsys):
    """A measured cell's line edited by hand (a better perplexity typed in) was accepted on --resume and
    reported as measured (battery 4); every line now carries its digest, and one that does not match
    is said and measured again."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "compare", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1, "passkey_trials": 0,
         "methods": {"ntk": {"model": "{model}", "factors": {"2x": "ntk@2x"}},
                     "pi": {"model": "{model}", "factors": {"2x": "pi@2x"}}}}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    cells = out / "stages" / "compare" / "cells.jsonl"
    first = [json.loads(x) for x in cells.read_text().splitlines()]
    edited = [{**first[0], "ppl": 1.01}, first[1]]
    cells.write_text("".join(json.dumps(c) + "\n" for c in edited))
    plan["stages"][1]["methods"]["yarn"] = {"model": "{model}", "factors": {"2x": "yarn@2x"}}  # re-enters the stage
    plan_file = _write(tmp_path, plan)
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0
    assert "1 line(s)" in capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_ppl"]["2x"][first[0]["method"]] == first[0]["ppl"] != 1.01


def test_a_done_comparison_measures_again_the_cells_whose_factor_file_changed(tmp_path, capsys):
    """A comparison of a factor file that later changes (a search resumed with a larger budget):
    --resume re-enters the done stage and measures only the cells of that file again."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    file = tmp_path / "searched.json"

    def save(method: str) -> None:
        make_baseline(method, rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                      original_length=L, target_length=2 * L).save(file)

    save("yarn")
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "compare", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1, "passkey_trials": 0,
         "methods": {"base": {"model": "{model}", "factors": {"2x": "ntk@2x"}},
                     "file": {"model": "{model}", "factors": {"2x": str(file)}}}}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    cells = out / "stages" / "compare" / "cells.jsonl"
    first = [json.loads(x) for x in cells.read_text().splitlines()]
    assert _pipeline(plan_file, out, "--resume") == 0  # nothing changed: nothing measured
    assert len(cells.read_text().splitlines()) == 2
    doc = json.loads(file.read_text())  # rewritten with the same factors (a resumed search, no new best)
    doc["provenance"] = {"note": "written again"}
    file.write_text(json.dumps(doc))
    assert _pipeline(plan_file, out, "--resume") == 0
    assert len(cells.read_text().splitlines()) == 2
    save("pi")
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0
    assert "factor files changed" in capsys.readouterr().err
    again = [json.loads(x) for x in cells.read_text().splitlines()]
    assert len(again) == 3 and again[2]["method"] == "file" and again[2]["ppl"] != first[1]["ppl"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_ppl"]["2x"]["file"] == again[2]["ppl"]
    assert summary["heldout_ppl"]["2x"]["base"] == first[0]["ppl"]


def test_a_done_comparison_measures_again_the_cells_whose_own_model_folder_changed(tmp_path, capsys):
    """A compare method may name a model folder of its own (no stage made it, so no stage digest covers it):
    its weights rewritten at the same path before --resume made the done comparison keep the old cells,
    and a resume that re-entered it for a plan edit kept them too (the model was compared by path only).
    The cells record the model's digest: its cells are measured again, the others kept."""
    import shutil

    from longrope.models.loading import resolve_source

    own = tmp_path / "own-model"
    shutil.copytree(resolve_source("tiny").location, own)
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "compare", "run": "compare", "data": "@data", "ratios": ["1x"], "samples": 1, "passkey_trials": 0,
         "methods": {"base": {"model": "{model}", "factors": {"1x": "none"}},
                     "own": {"model": str(own), "factors": {"1x": "none"}}}}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    cells = out / "stages" / "compare" / "cells.jsonl"
    first = {c["method"]: c for c in map(json.loads, cells.read_text().splitlines())}
    from safetensors.numpy import load_file, save_file

    weights = load_file(own / "model.safetensors")
    name = sorted(k for k in weights if k.endswith("mlp.gate_proj.weight"))[0]
    weights[name] = weights[name] * 3
    save_file(weights, own / "model.safetensors", metadata={"format": "pt"})
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0
    assert "models changed since it ran" in capsys.readouterr().err
    again = [json.loads(x) for x in cells.read_text().splitlines()]
    assert len(again) == 3 and again[2]["method"] == "own" and again[2]["ppl"] != first["own"]["ppl"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["heldout_ppl"]["1x"] == {"base": first["base"]["ppl"], "own": again[2]["ppl"]}
    assert _pipeline(plan_file, out, "--resume") == 0  # nothing changed since: nothing measured
    assert len(cells.read_text().splitlines()) == 3


def test_a_resumed_comparison_measures_only_the_methods_added_or_changed_in_its_plan(tmp_path, capsys):
    """A compare stage may gain a method (a second search), a passkey or a goal between runs: --resume
    with the edited plan measures those cells alone; a change of its windows is still refused."""
    compare = {"name": "compare", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1,
               "passkey_trials": 1, "passkey_depths": [0.5], "passkey_methods": [],
               "methods": {"ntk": {"model": "{model}", "factors": {"2x": "ntk@2x"}},
                           "pi": {"model": "{model}", "factors": {"2x": "pi@2x"}}}}
    plan = {"format": "longrope-pipeline/1", "model": "tiny",
            "stages": [{"name": "data", "run": "tokenize", "inputs": ["embedded"]}, compare]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    cells = out / "stages" / "compare" / "cells.jsonl"
    assert _pipeline(plan_file, out) == 0
    first = {c["method"]: c for c in map(json.loads, cells.read_text().splitlines())}
    capsys.readouterr()

    compare["methods"]["yarn"] = {"model": "{model}", "factors": {"2x": "yarn@2x"}}
    compare["passkey_methods"] = ["yarn", "ntk"]
    compare["goals"] = [{"name": "g", "value": "passkey.2x.yarn", "at_least": "passkey.2x.ntk"}]
    compare["methods"]["pi"]["factors"]["2x"] = "pi@4x"
    plan_file = _write(tmp_path, plan)
    assert _pipeline(plan_file, out, "--resume") == 0
    err = capsys.readouterr().err
    assert "edited since it ran" in err and "ntk at 2x: its passkey is asked for" in err
    assert "pi at 2x: the method names other factors" in err
    lines = [json.loads(x) for x in cells.read_text().splitlines()]
    assert [c["method"] for c in lines[2:]] == ["ntk", "pi", "yarn"]  # each measured again or anew, once
    assert lines[2]["ppl"] == first["ntk"]["ppl"] and "passkey" in lines[2]
    assert lines[3]["factors"] == "pi@4x" and lines[3]["ppl"] != first["pi"]["ppl"]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["passkey"]["2x"]) == {"ntk", "yarn"} and summary["goals"][0]["met"] is not None
    manifest = json.loads((out / "pipeline.json").read_text())
    assert "yarn" in manifest["plan"]["stages"][1]["methods"]  # a plain --resume now runs the edited plan
    assert _pipeline(plan_file, out, "--resume") == 0
    assert len(cells.read_text().splitlines()) == 5  # nothing left to measure

    compare["samples"] = 2  # other windows: every cell would mean something else
    capsys.readouterr()
    assert _pipeline(_write(tmp_path, plan), out, "--resume") == 2
    err = capsys.readouterr().err
    assert "stage 'compare' changed" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("manifest", [
    "[]",
    "[" * 200_000 + "]" * 200_000,
    '{"format": "longrope-pipeline-manifest/1", "plan": {}, "stages": 5}',
    '{"format": "longrope-pipeline-manifest/1", "plan": {}, "stages": {"a": {"outputs": 3}}}',
    "\xff\xfe",
])
def test_a_damaged_manifest_is_one_line(tmp_path, capsys, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "pipeline.json").write_text(manifest, encoding="latin-1")
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pipeline.json" in err[0] and "Traceback" not in err[0], err


def _two_baselines_done(tmp_path: Path) -> tuple[Path, Path, dict]:
    """A finished two-stage plan (YaRN and PI at 2x, seconds): its plan file, folder and manifest."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi-2x", "run": "baseline", "method": "pi", "target_length": "2x"}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    return plan_file, out, json.loads((out / "pipeline.json").read_text())


@pytest.mark.parametrize("edit", [lambda stages: stages.pop("yarn-2x"),
                                  lambda stages: stages.update(evil={"run": "search", "status": "done"})])
def test_a_stage_record_removed_or_added_by_hand_is_one_line(tmp_path, capsys, edit):
    """The manifest's stage records are its plan's stages: one removed was a KeyError traceback on --resume,
    one added was kept and summarised as a finished stage."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    edit(manifest["stages"])
    (out / "pipeline.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "are not its plan's stages" in err[0], err


@pytest.mark.parametrize("path", ["/etc/passwd", "{out}/stages/pi-2x/factors.json", "{out}/stages/yarn-2x/../x"])
def test_a_stage_output_edited_to_lie_outside_its_stage_folder_is_one_line(tmp_path, capsys, path):
    """An edited output path was kept (rc 0): the manifest kept the false path and the summary read it."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    manifest["stages"]["yarn-2x"]["outputs"]["factors"] = path.format(out=out)
    (out / "pipeline.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is not inside its stage folder stages/yarn-2x/" in err[0], err


@pytest.mark.parametrize("edit", [lambda m: m["plan"]["stages"].append(5),
                                  lambda m: m["plan"].update(stages="ab"),
                                  lambda m: m["plan"]["stages"][0].update(name=7)])
def test_a_manifest_plan_whose_stages_are_not_stage_objects_is_one_line(tmp_path, capsys, edit):
    """The plan recorded in the manifest was trusted to hold stage objects: a number or a string among them was
    a TypeError traceback on --resume (battery 9b)."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    edit(manifest)
    (out / "pipeline.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its plan's stages must be a list of stage objects" in err[0], err


@pytest.mark.parametrize("edit", [lambda rec: rec.pop("outputs"), lambda rec: rec.update(outputs={})],
                         ids=["no-outputs", "empty-outputs"])
def test_a_done_stage_that_records_no_outputs_runs_again(tmp_path, capsys, edit):
    """Every finished stage records its outputs; a "done" record without them (edited) was skipped, and a
    later stage failed on the output it did not have (battery 9b). ``"outputs": {}`` passed too (no output
    missing among none), and a compare stage's summary was a KeyError traceback (battery 11b)."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    edit(manifest["stages"]["yarn-2x"])
    (out / "pipeline.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0
    again = json.loads((out / "pipeline.json").read_text())["stages"]["yarn-2x"]
    assert again["status"] == "done" and again["attempts"] == 2 and "factors" in again["outputs"]


def test_a_stage_description_edited_after_it_ran_resumes(tmp_path, capsys):
    """A stage's "description" documents it (the plan's own may change): editing it was "--resume refused: ...
    stage 'yarn-2x' changed", naming nothing that changed a result (battery 9b). It resumes, skipping the
    finished stages; a setting edited beside it is still refused."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    plan = {**manifest["plan"], "stages": [dict(s) for s in manifest["plan"]["stages"]]}
    plan["stages"][0]["description"] = "the YaRN baseline at twice the trained length"
    capsys.readouterr()
    assert _pipeline(_write(tmp_path, plan), out, "--resume") == 0
    assert "yarn-2x (baseline): done, skipped" in capsys.readouterr().err
    plan["stages"][0]["target_length"] = "4x"
    assert _pipeline(_write(tmp_path, plan), out, "--resume") == 2
    assert "stage 'yarn-2x' changed" in capsys.readouterr().err


def test_only_a_stage_whose_inputs_never_ran_leaves_no_folder(tmp_path, capsys):
    """--only of a stage whose inputs have not run, in a new folder, was refused after the folder, its records
    and its manifest were written: the next plain start was told to add --resume (battery 9b)."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "export", "run": "export", "factors": "@yarn-2x"}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out, "--only", "export") == 2
    err = capsys.readouterr().err.strip()
    assert "stage 'export' needs the outputs of yarn-2x" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
    assert _pipeline(plan_file, out, "--only", "yarn-2x") == 0  # a plain start, as if nothing had happened
    # an input that ran but whose output was edited since is said to be so, not only 'not done' (battery 24a)
    factors = out / "stages" / "yarn-2x" / "factors.json"
    factors.write_text(factors.read_text().replace("[", "[1.5, ", 1))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume", "--only", "export") == 2
    err = capsys.readouterr().err.strip()
    assert ("needs the outputs of yarn-2x, which is not done (yarn-2x: ran, but its output was changed or removed "
            "since)") in err and len(err.splitlines()) == 1, err


@pytest.mark.parametrize("other, said", [({"seed": 1}, "seed: 0 -> 1"), ({"target_length": "4x"}, "target_length: 512 -> 1024"),
                                         ({"fitness": "ppl"}, "fitness: 'joint' -> 'ppl'")])
def test_a_search_reusing_an_earlier_stage_under_other_settings_is_refused_at_the_plan_check(tmp_path, capsys, other,
                                                                                            said):
    """A search stage reusing @s under another seed, length or fitness was refused when it started, after every
    stage before it had run (battery 9b); it is refused before the first stage."""
    first = {"name": "s", "run": "search", "data": "@data", "target_length": "2x", "samples": 1, "max_evals": 1}
    stages = [{"name": "data", "run": "tokenize", "inputs": ["embedded"]}, first,
              {**first, "name": "p", "reuse": "@s", **other}]
    plan_file, out = _write(tmp_path, {"format": "longrope-pipeline/1", "model": "tiny", "stages": stages}), tmp_path / "o"
    assert _pipeline(plan_file, out) == 2
    err = capsys.readouterr().err.strip()
    assert "plan stage 'p' (search): reuse @s: its window scores mean something else here" in err and said in err \
        and len(err.splitlines()) == 1, err
    assert not out.exists()


def test_a_moved_pipeline_folder_keeps_its_finished_stages(tmp_path, capsys):
    """Outputs were recorded by absolute path: a moved or copied folder ran every stage again."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    moved = tmp_path / "moved"
    out.rename(moved)
    capsys.readouterr()
    assert _pipeline(plan_file, moved, "--resume") == 0
    said = capsys.readouterr()
    manifest = json.loads((moved / "pipeline.json").read_text())
    assert manifest["stages"]["yarn-2x"]["outputs"]["factors"] == str(moved / "stages" / "yarn-2x" / "factors.json")
    assert manifest["stages"]["yarn-2x"].get("attempts") == 1, said


def test_a_file_or_looping_link_where_a_stage_folder_goes_is_refused_before_any_stage_runs(tmp_path, capsys):
    """Found only when its stage came (after the work of the stages before it), it was 'File exists' or a
    refusal naming --output, which the user never gave."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi-2x", "run": "baseline", "method": "pi", "target_length": "2x"}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "yarn-2x") == 0
    (out / "stages" / "pi-2x").symlink_to("pi-2x")  # a link to itself
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pi-2x is not a folder" in err[0] and "move it away" in err[0], err


def test_rerun_repeats_the_plan_the_folder_ran_not_the_plan_file_as_it_reads_now(tmp_path, capsys):
    # battery 4: rerun read --plan FILE again, so an edited plan ran silently and a removed one was refused
    plan = {"format": "longrope-pipeline/1", "model": "tiny",
            "stages": [{"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"}]}
    plan_file = _write(tmp_path, plan)
    assert _pipeline(plan_file, tmp_path / "first") == 0
    plan["stages"][0]["target_length"] = "4x"
    plan_file.write_text(json.dumps(plan))
    assert main(["rerun", str(tmp_path / "first"), "-o", str(tmp_path / "again")]) == 0
    factors = json.loads((tmp_path / "again" / "stages" / "yarn" / "factors.json").read_text())
    assert factors["max_position_embeddings"] == 512
    plan_file.unlink()
    assert main(["rerun", str(tmp_path / "first"), "-o", str(tmp_path / "third")]) == 0
    capsys.readouterr()
    assert main(["pipeline", "--plan", str(tmp_path), "-o", str(tmp_path / "x")]) == 2
    assert "is a folder without a pipeline.json" in capsys.readouterr().err


def test_a_pipeline_run_before_the_joint_default_searches_with_the_fitness_it_meant(tmp_path, capsys):
    """battery 14a: a pipeline whose search stages left the fitness unset ran them with ppl before the joint
    fitness became the default. Resumed after a kill between two search stages, the next one searched with the
    joint fitness (the old pipeline's 4x comparison cell: 99.55 by the old longrope, 117.23 resumed), and
    ``rerun`` / ``--config`` of such a folder searched every stage so. Its unset fitness now means what it meant."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        *({"name": name, "run": "search", "data": "@data", "target_length": "2x", "samples": 1, "max_evals": 1,
           "report": False} for name in ("s1", "s2"))]}
    out = tmp_path / "old"
    assert _pipeline(_write(tmp_path, plan), out, "--until", "s1") == 0
    recorded = out / "stages" / "s1" / "config.json"  # as the older longrope wrote it: the fitness unset
    doc = json.loads(recorded.read_text())
    doc["config"]["fitness"] = None
    del doc["config"]["retrieval_weight"]
    recorded.write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 0, capsys.readouterr().err

    def fitness(run, stage):
        return json.loads((run / "stages" / stage / "summary.json").read_text())["search"]["fitness"]

    assert fitness(out, "s2") == "ppl"
    assert main(["rerun", str(out), "-o", str(tmp_path / "again")]) == 0
    assert [fitness(tmp_path / "again", s) for s in ("s1", "s2")] == ["ppl", "ppl"]


def test_config_of_a_pipeline_folder_takes_the_plan_it_ran_as_rerun_does(tmp_path, capsys):
    """battery 11b: ``pipeline --config RUN -o NEW`` read the plan file RUN recorded by its path (edited since: it
    ran another plan than ``rerun RUN`` runs), and ``--config RUN --resume`` was refused as "the plan differs from
    the one this pipeline ran" though no plan was given. Both take the plan RUN ran; --plan still overrides it."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny",
            "stages": [{"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"}]}
    plan_file = _write(tmp_path, plan)
    first = tmp_path / "first"
    assert _pipeline(plan_file, first) == 0
    plan["stages"][0]["target_length"] = "4x"
    plan_file.write_text(json.dumps(plan))

    def length(out):
        return json.loads((out / "stages" / "yarn" / "factors.json").read_text())["max_position_embeddings"]

    assert main(["pipeline", "--config", str(first), "-o", str(tmp_path / "again"), "--quiet"]) == 0
    assert length(tmp_path / "again") == 512
    assert main(["pipeline", "--config", str(first), "--resume", "--quiet"]) == 0
    assert main(["pipeline", "--config", str(first), "--plan", str(plan_file), "-o", str(tmp_path / "edited"),
                 "--quiet"]) == 0
    assert length(tmp_path / "edited") == 1024


def test_rerun_and_config_of_a_pipeline_run_with_only_or_until_run_the_whole_plan(tmp_path, capsys):
    """battery 12a: config.json kept the last invocation's --only/--until, so after `--resume --only pi-2x` the
    documented `longrope rerun OUT -o NEW` (the whole pipeline) ran pi-2x alone in an empty folder: refused
    ("needs the outputs of yarn-2x, which are not done"); `--config OUT -o NEW` the same."""
    plan_file, out, _ = _two_baselines_done(tmp_path)
    assert _pipeline(plan_file, out, "--resume", "--only", "pi-2x") == 0
    assert json.loads((out / "config.json").read_text())["config"]["only"] == "pi-2x"
    capsys.readouterr()
    assert main(["rerun", str(out), "-o", str(tmp_path / "again")]) == 0, capsys.readouterr().err
    assert main(["pipeline", "--config", str(out), "-o", str(tmp_path / "again2"), "--quiet"]) == 0
    for new in ("again", "again2"):
        stages = json.loads((tmp_path / new / "pipeline.json").read_text())["stages"]
        assert all(s["status"] == "done" for s in stages.values()), stages
    assert main(["pipeline", "--config", str(out), "-o", str(tmp_path / "until"), "--until", "yarn-2x"]) == 0
    assert json.loads((tmp_path / "until" / "pipeline.json").read_text())["stages"]["pi-2x"]["status"] == "pending"


def test_a_resume_of_a_pipeline_whose_manifest_was_deleted_names_the_lost_manifest(tmp_path, capsys):
    """battery 11b: pipeline.json deleted beside the stages: --resume said "run without --resume", and that said
    "add --resume"; the refusal names the lost manifest."""
    plan_file, out, _ = _two_baselines_done(tmp_path)
    (out / "pipeline.json").unlink()
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its pipeline.json, the record of the stages it ran, is missing" in err[0], err


def test_a_finished_stages_factor_file_edited_before_resume_is_written_again(reference, tmp_path):
    """A done stage's factors.json edited (or damaged) between a kill and --resume was read as it was by every
    later stage, while the summary reported the stage's own numbers (battery 19): the stage runs again (its search
    continues its own finished run) and writes what it found."""
    plan_file, _ = reference
    out = tmp_path / "out"
    assert _pipeline(plan_file, out, "--until", "search-2x") == 0
    factors = out / "stages" / "search-2x" / "factors.json"
    written = factors.read_text()
    edited = json.loads(written)
    edited["long_factor"][0] = 1.5
    factors.write_text(json.dumps(edited))
    assert _pipeline(plan_file, out, "--resume", "--until", "search-2x") == 0
    assert json.loads(factors.read_text()) == json.loads(written)


def test_a_done_stage_made_again_for_an_edited_or_removed_output_says_which(tmp_path, capsys):
    """A done stage whose output was edited or removed before --resume was made again with only "— resuming"
    (battery 24a): the hand edit was written over without a word. The resume names the output and says why."""
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi", "run": "baseline", "method": "pi", "target_length": "2x"}]}
    plan_file, out = _write(tmp_path, plan), tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    factors = out / "stages" / "yarn" / "factors.json"
    written = json.loads(factors.read_text())
    factors.write_text(json.dumps({**written, "long_factor": [1.5] * len(written["long_factor"])}))
    (out / "stages" / "pi" / "factors.json").unlink()
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0
    err = capsys.readouterr().err
    assert f"pipeline: yarn: {factors} removed or changed since it ran; making it again" in err
    assert f"pipeline: pi: {out / 'stages' / 'pi' / 'factors.json'} removed or changed since it ran" in err
    assert json.loads(factors.read_text()) == written
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 0  # nothing changed since: nothing said
    assert "removed or changed" not in capsys.readouterr().err


def test_a_finished_stages_model_folder_replaced_before_resume_is_made_again(tmp_path):
    """A done fine-tuning stage's model folder replaced (or edited: its config, its weights) between a kill and
    --resume was loaded by every later stage while the summary named it the stage's own model (battery 19c; only
    single-file outputs were checked): the stage runs again (its fine-tuning resumes its finished run and exports
    the model again). The same for a data stage's shard folder rebuilt from other documents."""
    plan = _plan()
    plan["stages"] = [s for s in plan["stages"] if s["name"] in ("data", "yarn-2x", "ft-yarn")]
    plan_file = _write(tmp_path, plan)
    out = tmp_path / "out"
    assert _pipeline(plan_file, out) == 0
    config = out / "stages" / "ft-yarn" / "model" / "config.json"
    written = json.loads(config.read_text())
    config.write_text(json.dumps({**written, "rope_theta": 500000.0}))
    assert _pipeline(plan_file, out, "--resume") == 0
    assert json.loads(config.read_text()) == written
    meta = out / "stages" / "data" / "meta.json"  # the shard folder rebuilt from other documents: made again too
    documents = json.loads(meta.read_text())["n_docs"]
    from longrope.embedded import document_paths

    assert main(["tokenize", "--tokenizer", "tiny", "--input", f"train={document_paths('train')[0]}", "-o",
                 str(meta.parent)]) == 0
    assert json.loads(meta.read_text())["n_docs"] != documents
    assert _pipeline(plan_file, out, "--resume") == 0
    assert json.loads(meta.read_text())["n_docs"] == documents


@pytest.mark.parametrize("field, value", [("seconds", "x"), ("metrics", [1]), ("output_sha256", [1]),
                                          ("config", 5), ("ended", 5)])
def test_a_stage_record_field_of_the_wrong_kind_is_one_line(tmp_path, capsys, field, value):
    """A done stage's "seconds": "x" edited into the manifest resumed, then the summary table failed with a
    ValueError traceback (rc 1); other fields of the wrong kind passed unsaid. Each field the readers use is
    checked with the manifest (battery 19c)."""
    plan_file, out, manifest = _two_baselines_done(tmp_path)
    manifest["stages"]["pi-2x"][field] = value
    (out / "pipeline.json").write_text(json.dumps(manifest))
    capsys.readouterr()
    assert _pipeline(plan_file, out, "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"stage 'pi-2x''s {field} must be" in err[0], err


def test_a_comparison_cell_that_is_not_finite_is_written_as_null_and_said_in_words(tmp_path, capsys, monkeypatch):
    """A 16-bit overflow in a comparison's perplexity printed 'ppl nan' as a number and wrote NaN into cells.jsonl,
    which strict JSON readers refuse (battery 20c open item): the cell holds null and the line says it in words."""
    from longrope.runs import compare

    real = compare._measure_cell

    def overflowing(*args, **kwargs):
        return {**real(*args, **kwargs), "ppl": float("nan")}

    monkeypatch.setattr(compare, "_measure_cell", overflowing)
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "compare", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1, "passkey_trials": 0,
         "methods": {"pi": {"model": "{model}", "factors": {"2x": "pi@2x"}}}}]}
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(_write(tmp_path, plan)), "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "ppl not finite" in err and "ppl nan" not in err
    line = (out / "stages" / "compare" / "cells.jsonl").read_text()
    assert "NaN" not in line and json.loads(line.splitlines()[0])["ppl"] is None


def _plan_reading_docs_in_two_folders(tmp_path: Path) -> dict:
    """A plan whose tokenize stage reads docs/ relative to where it runs, and two folders holding a docs/:
    a/work/ (the pipeline starts there; thousands of tokens) and other/ (a few words)."""
    from longrope.embedded import search_texts

    texts = list(search_texts().values())
    for folder, text in (("a/work", texts[0][:20000]), ("other", "A few words only.\n")):
        (tmp_path / folder / "docs").mkdir(parents=True)
        (tmp_path / folder / "docs" / "a.txt").write_text(text)
        (tmp_path / folder / "docs" / "b.txt").write_text(text[::-1])
    return {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "data", "run": "tokenize", "inputs": ["search=docs/a.txt", "heldout=docs/b.txt"]}]}


def test_a_resume_from_another_folder_reads_the_recorded_plan_where_it_was_started(tmp_path, capsys, monkeypatch):
    """A plan's relative paths (``inputs: [search=docs/a.txt]``) are read against the folder the pipeline was
    started in, by a resume that runs the recorded plan from another folder as by ``rerun``: the resume read them
    there, and tokenized that folder's docs/ when it had one, without a word (battery 23a)."""
    plan = _plan_reading_docs_in_two_folders(tmp_path)
    monkeypatch.chdir(tmp_path / "a" / "work")
    assert _pipeline(_write(tmp_path, plan), tmp_path / "p", "--until", "yarn") == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "other")
    assert main(["pipeline", "-o", "../p", "--resume", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "p" / "stages" / "data" / "meta.json").read_text())["n_tokens"] > 1000
    assert Path.cwd() == tmp_path / "other"
    record = json.loads((tmp_path / "p" / "config.json").read_text())  # -o as typed in other/, recorded from work/
    assert (Path(record["cwd"]) / record["config"]["output"]).resolve() == (tmp_path / "p").resolve()


def test_a_model_path_typed_where_the_pipeline_runs_is_recorded_as_typed(tmp_path, capsys, monkeypatch):
    """Every existing --model path was recorded absolute, a resume in the folder the pipeline started in too: a
    moved project no longer resumed, and a pipeline recorded before with a relative model was refused as another
    plan on resume (review of battery 23a). Only a resume whose plan is read in another folder makes it absolute."""
    import shutil

    from longrope.embedded import TINY_MODEL_DIR

    shutil.copytree(TINY_MODEL_DIR, tmp_path / "m")
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi", "run": "baseline", "method": "pi", "target_length": "2x"}]}
    monkeypatch.chdir(tmp_path)
    assert _pipeline(_write(tmp_path, plan), Path("p"), "--model", "m", "--until", "yarn") == 0, capsys.readouterr().err
    assert main(["pipeline", "-o", "p", "--model", "m", "--resume", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "p" / "config.json").read_text())["config"]["model"] == "m"
    assert (tmp_path / "p" / "stages" / "pi" / "factors.json").is_file()


def test_a_resume_given_its_plan_file_in_another_folder_reads_the_plan_where_it_was_started(tmp_path, capsys,
                                                                                            monkeypatch):
    """``--resume --plan FILE`` typed in another folder read the plan's relative paths there (the plan is the one
    the pipeline ran, so the resume was accepted): its tokenize stage still to run tokenized that folder's docs/,
    without a word, where a resume without --plan read the folder the pipeline started in (battery 29c)."""
    plan = _plan_reading_docs_in_two_folders(tmp_path)
    plan_file = _write(tmp_path, plan)
    monkeypatch.chdir(tmp_path / "a" / "work")
    assert _pipeline(plan_file, tmp_path / "p", "--until", "yarn") == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "other")
    assert _pipeline(plan_file, Path("../p"), "--resume") == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "p" / "stages" / "data" / "meta.json").read_text())["n_tokens"] > 1000
    assert Path.cwd() == tmp_path / "other"


def test_a_resume_given_its_plan_file_in_another_folder_records_the_plan_file_where_it_is(tmp_path, capsys,
                                                                                          monkeypatch):
    """``--resume --plan ../../a/plan.json`` typed in another folder recorded the path as typed, in records read in the
    folder the pipeline was started in (config.json's plan, the manifest's and run.json's plan_file): they named a
    file that is not there. They name the plan file itself."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b" / "c").mkdir(parents=True)
    plan_file = _write(tmp_path / "a", {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi", "run": "baseline", "method": "pi", "target_length": "2x"}]})
    monkeypatch.chdir(tmp_path / "a")
    assert _pipeline(Path("plan.json"), Path("p"), "--until", "yarn") == 0, capsys.readouterr().err
    monkeypatch.chdir(tmp_path / "b" / "c")
    assert _pipeline(Path("../../a/plan.json"), Path("../../a/p"), "--resume") == 0, capsys.readouterr().err
    out = tmp_path / "a" / "p"
    recorded = [json.loads((out / "config.json").read_text())["config"]["plan"],
                json.loads((out / "pipeline.json").read_text())["plan_file"],
                json.loads((out / "run.json").read_text())["plan_file"]]
    assert all((tmp_path / "a" / r).resolve() == plan_file.resolve() for r in recorded), recorded
