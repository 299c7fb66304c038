"""``bench.bench_ruler``: the seed's table from ``eval ruler`` run folders (their ``ruler.json`` written by the
command's own writer), one row per set, one column per length, the goal on the average at one length."""

from __future__ import annotations

import json

from bench import bench_ruler
from longrope.evaluate.ruler import Cell, write_ruler_outputs


def _run(folder, cells, sets, lengths):
    write_ruler_outputs(folder, cells, sets=sets, lengths=lengths, tasks=["niah_single_1", "vt"],
                        record={"model": "tiny", "lm_eval": "0.4.13"}, plot=False)
    (folder / "run.json").write_text(json.dumps({"argv": ["longrope", "eval", "ruler", "--model", "tiny"]}))


def _cell(s, n, task, scores):
    return Cell(s, n, task, len(scores), float(sum(scores)), 2.0 * len(scores), "x", scores, ["r"] * len(scores))


def test_two_runs_give_the_table_and_the_goal(tmp_path):
    base, ext = tmp_path / "base", tmp_path / "ext"
    base.mkdir(), ext.mkdir()
    _run(base, [_cell("none", 256, t, [1.0, 1.0]) for t in ("niah_single_1", "vt")], ["none"], [256])
    _run(ext, [_cell("yarn", 512, "niah_single_1", [1.0, 0.0]), _cell("yarn", 512, "vt", [0.0, 0.0]),
               _cell("ours", 512, "niah_single_1", [1.0, 1.0]), _cell("ours", 512, "vt", [0.5, 0.0])],
         ["yarn", "ours"], [512])
    out = tmp_path / "rec.json"
    assert bench_ruler.main(["--runs", str(base), str(ext), "--goal-set", "ours", "--goal-reference", "yarn",
                             "--goal-length", "512", "--record", str(out)]) == 0
    rec = json.loads(out.read_text())
    rows = {r[0]: r[1:] for r in rec["tables"]["ruler"]["rows"]}
    assert rows["none"] == [1.0, None, 1.0] and rows["yarn"] == [None, 0.25, 0.25] and rows["ours"][1] == 0.625
    assert rec["values"]["goal_met"] is True and abs(rec["values"]["goal_gap"] - 0.375) < 1e-12
    # sample by sample: ours scores higher on one sample of each task, lower on none
    assert [rec["values"][f"goal_samples{k}"] for k in ("", "_better", "_worse")] == [4, 2, 0]
    assert rec["values"]["goal_sign_p"] == 0.5
    assert rec["values"]["samples_per_cell"] == 2 and len(rec["tables"]["cells"]["rows"]) == 6


def test_a_cell_in_two_runs_or_an_unfinished_run_is_one_line(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for f in (a, b):
        f.mkdir()
        _run(f, [_cell("none", 256, "niah_single_1", [1.0])], ["none"], [256])
    assert bench_ruler.main(["--runs", str(a), str(b), "--record", str(tmp_path / "r.json")]) == 2
    assert "measured in another run too" in capsys.readouterr().err
    assert bench_ruler.main(["--runs", str(tmp_path / "none"), "--record", str(tmp_path / "r.json")]) == 2
    assert "finish the run first" in capsys.readouterr().err


def test_a_length_column_averages_the_tasks_measured_at_that_length(tmp_path):
    """A task too long for the trained length (niah_multikey_1's essay haystack at 256) is left out of that
    column for every set; at the long length a set missing a task measured there has no number."""
    base, ext = tmp_path / "base", tmp_path / "ext"
    base.mkdir(), ext.mkdir()
    _run(base, [_cell("none", 256, "vt", [1.0, 0.0])], ["none"], [256])
    _run(ext, [_cell("yarn", 512, "niah_single_1", [1.0, 1.0]), _cell("yarn", 512, "vt", [0.0, 0.0]),
               _cell("ours", 512, "niah_single_1", [1.0, 0.0])], ["yarn", "ours"], [512])
    out = tmp_path / "rec.json"
    assert bench_ruler.main(["--runs", str(base), str(ext), "--record", str(out)]) == 0
    rec = json.loads(out.read_text())
    rows = {r[0]: r[1:] for r in rec["tables"]["ruler"]["rows"]}
    assert rows["none"] == [0.5, None, 0.5] and rows["yarn"] == [None, 0.5, 0.5] and rows["ours"] == [None, None, None]
    assert rec["values"]["tasks_256"] == "vt" and set(rec["values"]["tasks_512"].split(",")) == {"niah_single_1", "vt"}


def test_damaged_runs_and_runs_of_two_models_are_one_line(tmp_path, capsys):
    """A hand-edited cell (no task) was a KeyError traceback, a ruler.json holding a list an AttributeError, one
    nested 100,000 deep a RecursionError; runs of two models were merged into one table under the first's name
    (battery 25c)."""
    a, b = tmp_path / "a", tmp_path / "b"
    for f, n in ((a, 256), (b, 512)):
        f.mkdir()
        _run(f, [_cell("none", n, "niah_single_1", [1.0])], ["none"], [n])
    doc = json.loads((b / "ruler.json").read_text())
    argv = ["--runs", str(a), str(b), "--record", str(tmp_path / "r.json")]
    for damaged, said in (({**doc, "config": {**doc["config"], "model": "smollm2"}}, "measured another model"),
                          ({**doc, "cells": [{k: v for k, v in doc["cells"][0].items() if k != "task"}]},
                           "cell 0 is not one eval ruler writes"),
                          ([1], "not a JSON object"), ("[" * 100_000 + "]" * 100_000, "nested deeper")):
        (b / "ruler.json").write_text(damaged if isinstance(damaged, str) else json.dumps(damaged))
        assert bench_ruler.main(argv) == 2
        err = capsys.readouterr().err
        assert said in err and err.count("\n") == 1 and "Traceback" not in err
