"""RULER cells in a pipeline's compare stage, on the embedded tiny model (L = 256) at 2x (512 tokens), one fast
task (niah_single_1), two samples: measured through ``eval ruler``'s code (the same samples, the same scores),
kept in cells.jsonl with the cell's perplexity, shown in the table, usable in goals, resumed by cell."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("lm_eval", reason="needs the ruler extra: pip install 'longrope[ruler]'")

from longrope.cli import main  # noqa: E402
from longrope.errors import ConfigError, UserError  # noqa: E402
from longrope.runs.compare import CompareConfig  # noqa: E402

TASK = "niah_single_1"


def _plan(ruler_methods: list[str]) -> dict:
    return {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "compare", "run": "compare", "data": "@data", "ratios": ["1x", "2x"], "samples": 1,
         "passkey_trials": 0, "ruler_ratios": ["2x"], "ruler_tasks": [TASK], "ruler_samples": 2,
         "ruler_methods": ruler_methods,
         "methods": {"none": {"model": "{model}", "factors": {"1x": "none", "2x": "none"}},
                     "yarn": {"model": "{model}", "factors": {"2x": "yarn@2x"}}},
         "goals": [{"name": "ruler kept", "value": "ruler.2x.yarn", "at_least": 0}]
         if "yarn" in ruler_methods else []}]}


def _run(tmp_path, plan: dict, *extra: str) -> int:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    return main(["pipeline", "--plan", str(path), "-o", str(tmp_path / "out"), "--quiet", *extra])


def _cells(tmp_path) -> list[dict]:
    return [json.loads(x) for x in (tmp_path / "out" / "stages" / "compare" / "cells.jsonl").read_text().splitlines()]


def test_ruler_cells_are_measured_kept_tabled_and_resumed(tmp_path, capsys):
    assert _run(tmp_path, _plan(["none"])) == 0
    first = _cells(tmp_path)
    assert [(c["method"], c["ratio"], "ruler" in c) for c in first] == \
        [("none", "1x", False), ("none", "2x", True), ("yarn", "2x", False)]
    assert first[1]["ruler_tasks"][TASK]["n"] == 2 and 0.0 <= first[1]["ruler"] <= 1.0
    assert first[1]["ruler"] == first[1]["ruler_tasks"][TASK]["accuracy"]  # one task: its accuracy
    samples = tmp_path / "out" / "stages" / "compare" / "ruler" / "samples" / f"{TASK}-512.json"
    assert "sha256" in json.loads(samples.read_text())  # stored as eval ruler stores them: reused, not remade
    made = samples.stat().st_mtime_ns

    # the edited plan asks RULER of yarn too: that cell alone is measured again
    assert _run(tmp_path, _plan(["none", "yarn"]), "--resume") == 0
    assert "yarn at 2x: its RULER is asked for" in capsys.readouterr().err
    assert samples.stat().st_mtime_ns == made  # the stored samples were reused (before: made again every time)
    cells = _cells(tmp_path)
    assert len(cells) == 4 and cells[3]["method"] == "yarn" and cells[3]["ppl"] == first[2]["ppl"]
    out = tmp_path / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ruler"] == {"2x": {"none": first[1]["ruler"], "yarn": cells[3]["ruler"]}}
    goal = summary["goals"][0]
    assert goal["measured"] == cells[3]["ruler"] and goal["met"] is True
    assert "RULER 2x" in (out / "stages" / "compare" / "compare.md").read_text()
    assert _run(tmp_path, _plan(["none", "yarn"]), "--resume") == 0
    assert len(_cells(tmp_path)) == 4  # nothing left to measure

    # the same numbers as eval ruler on the same factors
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    yarn = tmp_path / "yarn.json"
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(yarn)
    assert main(["eval", "ruler", "--model", "tiny", "--factors", str(yarn), "--skip-none", "--lengths", "512",
                 "--tasks", TASK, "--samples", "2", "-o", str(tmp_path / "ruler"), "--quiet"]) == 0
    (ref,) = json.loads((tmp_path / "ruler" / "ruler.json").read_text())["cells"]
    ours = cells[3]["ruler_tasks"][TASK]
    assert ours["samples_sha256"] == ref["samples_sha256"]
    assert ours["scores"] == ref["scores"] and ours["responses"] == ref["responses"]


def test_a_ruler_goal_on_a_cell_not_measured_is_refused_before_any_stage(tmp_path, capsys):
    plan = _plan(["none", "yarn"])
    plan["stages"][1]["goals"][0]["value"] = "ruler.1x.none"
    assert _run(tmp_path, plan) == 2
    err = capsys.readouterr().err
    assert "plan stage 'compare' (compare): compare: goal 'ruler kept' 'ruler.1x.none' names a cell that is not " \
           "measured" in err
    assert not (tmp_path / "out").exists()


def _compare(**kw) -> CompareConfig:
    methods = {"a": {"model": "tiny", "factors": {"1x": "none", "2x": "yarn@2x"}}}
    return CompareConfig(**{"data": "d", "ratios": ("1x", "2x"), "methods": methods, **kw})


@pytest.mark.parametrize("kw, match", [
    ({"ruler_ratios": ("4x",)}, "ruler_ratios must be a list of the ratios ['1x', '2x']"),
    ({"ruler_ratios": ("2x",), "ruler_methods": ("b",)}, "ruler_methods must be a list of the methods ['a']"),
    ({"ruler_tasks": ("niah_nope",)}, "ruler_tasks: unknown RULER task 'niah_nope'"),
    ({"ruler_tasks": ("qa_squad",)}, "ruler_tasks must name RULER tasks that run offline; ruler_qa_squad needs"),
    ({"ruler_samples": 0}, "ruler_samples must be an integer in [1, 500]"),
])
def test_bad_ruler_settings_are_refused_by_the_config(kw, match):
    with pytest.raises(ConfigError) as err:
        _compare(**kw)
    assert match in str(err.value)


def test_a_ruler_ratio_shorter_than_ruler_s_prompts_is_refused():
    from longrope.runs.compare_ruler import check_lengths

    with pytest.raises(UserError, match=r"ruler_ratios \['1x'\] are 128 tokens; RULER needs at least 256"):
        check_lengths(_compare(ruler_ratios=("1x",)), {"1x": 128, "2x": 256})
    check_lengths(_compare(ruler_ratios=("2x",)), {"1x": 128, "2x": 256})
