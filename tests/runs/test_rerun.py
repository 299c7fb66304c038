"""Every run type: ``longrope rerun RUN_DIR`` repeats the recorded run from its config.json and,
the commands being deterministic, gives the same numbers."""

from __future__ import annotations

import json

from longrope.cli import main


def _summary(folder):
    return json.loads((folder / "summary.json").read_text())


def _rerun(capsys, first, second):
    assert main(["rerun", str(first), "-o", str(second)]) == 0, capsys.readouterr().err
    a, b = (json.loads((f / "config.json").read_text())["config"] for f in (first, second))
    assert b.pop("output") == str(second) and {**a, "output": None} == {**b, "output": None}


def test_search_reruns_to_the_same_factors(tiny, tmp_path, capsys):
    first = tmp_path / "a"
    assert main(["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "-o", str(first),
                 "--target-length", "256", "--population", "6", "--parents", "3", "--mutations", "2",
                 "--crossovers", "2", "--iterations", "2", "--samples", "2", "--heldout-samples", "2",
                 "--quiet"]) == 0
    _rerun(capsys, first, tmp_path / "b")
    a, b = _summary(first), _summary(tmp_path / "b")
    assert a["search"]["best_ppl"] == b["search"]["best_ppl"] and a["heldout"]["ppl"] == b["heldout"]["ppl"]
    assert (first / "factors.json").read_text() == (tmp_path / "b" / "factors.json").read_text()


def test_eval_ppl_and_passkey_rerun_to_the_same_numbers(tiny, tmp_path, capsys):
    ppl = tmp_path / "ppl"
    assert main(["eval", "ppl", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--lengths", "32,64",
                 "--samples", "2", "--quiet", "-o", str(ppl)]) == 0
    _rerun(capsys, ppl, tmp_path / "ppl2")
    assert _summary(ppl)["results"] == _summary(tmp_path / "ppl2")["results"]
    pk = tmp_path / "pk"
    assert main(["eval", "passkey", "--model", str(tiny / "model"), "--lengths", "160", "--trials", "2",
                 "--depths", "0.5", "--quiet", "-o", str(pk)]) == 0
    _rerun(capsys, pk, tmp_path / "pk2")
    assert _summary(pk)["cells"] == _summary(tmp_path / "pk2")["cells"]


def test_config_flag_starts_from_a_recorded_run(tiny, tmp_path, capsys):
    ppl = tmp_path / "ppl"
    assert main(["eval", "ppl", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--lengths", "32",
                 "--samples", "2", "--quiet", "-o", str(ppl)]) == 0
    assert main(["eval", "ppl", "--config", str(ppl), "--lengths", "64", "-o", str(tmp_path / "b")]) == 0
    cfg = json.loads((tmp_path / "b" / "config.json").read_text())["config"]
    assert cfg["lengths"] == [64] and cfg["samples"] == 2
    capsys.readouterr()
    assert main(["search", "--config", str(ppl), "-o", str(tmp_path / "c")]) == 2
    assert "recorded by 'eval ppl'" in capsys.readouterr().err


def test_demo_reruns_to_the_same_numbers(demo_model_dir, tmp_path, capsys):
    first = tmp_path / "demo"
    assert main(["demo", "--model", str(demo_model_dir), "--target-length", "256", "--lengths", "128,256",
                 "--samples", "1", "--search-samples", "2", "--max-evals", "3", "--budget-seconds", "0",
                 "--passkey-trials", "1", "--passkey-depths", "0.5", "--device", "cpu", "--domains", "books",
                 "--quiet", "--out", str(first)]) == 0
    _rerun(capsys, first, tmp_path / "again")
    a, b = _summary(first), _summary(tmp_path / "again")
    assert a["ppl_vs_length"] == b["ppl_vs_length"] and a["passkey_accuracy"] == b["passkey_accuracy"]
    assert a["search"]["best_search_score"] == b["search"]["best_search_score"]


def _record(folder, command, config):
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": command,
                                                    "config": config}))


def test_a_record_written_before_the_joint_fitness_reruns_with_the_fitness_it_ran(tmp_path, monkeypatch, capsys):
    """An unset fitness in a record older than the joint default meant ppl (needle for longrope2): ``rerun`` and
    ``--config`` repeat that, never today's default; flags on top of ``--config`` still change it."""
    import dataclasses

    import longrope.runs.demo as demo_mod
    import longrope.runs.search as search_mod

    seen = []
    for mod in (search_mod, demo_mod):
        monkeypatch.setattr(mod, "SPEC", dataclasses.replace(mod.SPEC, run=lambda c: seen.append(c) or {},
                                                             render=lambda r: ""))
    old = {"model": "tiny", "data": "shards", "output": "x", "target_length": 512, "fitness": None}
    _record(tmp_path / "steady", "search", old)
    _record(tmp_path / "lr2", "search", {**old, "strategy": "longrope2"})
    _record(tmp_path / "demo", "demo", {"strategy": "steady"})  # the demo had no fitness field then
    for run_dir in ("steady", "lr2", "demo"):
        assert main(["rerun", str(tmp_path / run_dir), "-o", str(tmp_path / "again")]) == 0, capsys.readouterr().err
    assert [(c.fitness, c.retrieval_weight) for c in seen] == [("ppl", None), ("needle", None), ("ppl", None)]
    seen.clear()
    assert main(["search", "--config", str(tmp_path / "steady"), "-o", str(tmp_path / "b")]) == 0
    assert main(["search", "--config", str(tmp_path / "steady"), "--fitness", "joint", "-o", str(tmp_path / "c")]) == 0
    assert [c.fitness for c in seen] == ["ppl", "joint"]


def test_a_run_started_with_relative_paths_reruns_from_another_folder(tiny, tmp_path, capsys, monkeypatch):
    """``cd work && longrope eval ppl --data shards ...``, later ``longrope rerun work/ppl -o ...`` from elsewhere:
    the recorded relative paths were read against the new folder ("--data shards is not a shard folder",
    battery 5). config.json records where the run started; rerun reads its inputs from there."""
    import os

    work = tmp_path / "work"
    work.mkdir()
    os.symlink(tiny / "data", work / "shards")
    monkeypatch.chdir(work)
    assert main(["eval", "ppl", "--model", str(tiny / "model"), "--data", "shards", "--lengths", "32",
                 "--samples", "2", "--quiet", "-o", "ppl"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["rerun", "../work/ppl", "-o", "again"]) == 0, capsys.readouterr().err
    again = elsewhere / "again"  # -o means what it means where rerun was typed
    assert _summary(again)["results"] == _summary(work / "ppl")["results"]
    assert json.loads((again / "config.json").read_text())["config"]["data"] == "shards"


def test_config_resume_continues_the_folder_it_names_when_copied_or_moved(tiny, tmp_path, capsys):
    """``COMMAND --config RUN --resume`` (the hint rerun gives) continues RUN: it resumed the output RUN's
    config.json records, so a copied folder resumed the original and a moved one had 'nothing to resume'
    (battery 6)."""
    import shutil

    first = tmp_path / "s"
    argv = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--target-length", "128",
            "--fitness", "ppl", "--quiet", "--samples", "2", "--heldout-samples", "2", "--population", "4", "--parents", "2", "--max-evals", "4"]
    assert main([*argv, "-o", str(first)]) == 0
    copy = tmp_path / "copy"
    shutil.copytree(first, copy)
    before = (first / "checkpoint.json").read_bytes()
    assert main(["search", "--config", str(copy), "--resume", "--max-evals", "6"]) == 0, capsys.readouterr().err
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(copy)
    assert (first / "checkpoint.json").read_bytes() == before  # the original is left alone
    assert json.loads((copy / "summary.json").read_text())["search"]["full_evals"] == 6
    moved = tmp_path / "moved"
    copy.rename(moved)
    assert main(["search", "--config", str(moved / "config.json"), "--resume", "--max-evals", "7"]) == 0
    assert json.loads((moved / "summary.json").read_text())["search"]["full_evals"] == 7


def test_config_of_a_resumed_run_starts_a_new_one(tiny, tmp_path, capsys):
    """A resumed run records resume: true; ``--config RUN -o NEW`` took it over and said 'nothing to resume in
    NEW ... run without --resume', a flag the user had not given (battery 6)."""
    first = tmp_path / "s"
    argv = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--target-length", "128",
            "--fitness", "ppl", "--quiet", "--samples", "2", "--heldout-samples", "2", "--population", "4",
            "--parents", "2", "--max-evals", "4", "-o", str(first)]
    assert main(argv) == 0 and main([*argv, "--resume", "--max-evals", "5"]) == 0
    assert json.loads((first / "config.json").read_text())["config"]["resume"] is True
    assert main(["search", "--config", str(first), "-o", str(tmp_path / "new")]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "new" / "config.json").read_text())["config"]["resume"] is False


def test_a_recorded_relative_path_checked_when_the_configuration_is_built_reruns_from_another_folder(
        tmp_path, monkeypatch, capsys):
    """``cd work && longrope eval ruler --haystack hay.txt ...``, later ``longrope rerun work/r -o ...`` from
    elsewhere: the configuration (whose check finds the haystack) was built before rerun entered the folder the run
    started in, so it said "--haystack hay.txt: no such file or folder" (battery 12b); --config already read it."""
    import dataclasses

    import longrope.runs.ruler as ruler_mod

    seen = []
    monkeypatch.setattr(ruler_mod, "SPEC", dataclasses.replace(ruler_mod.SPEC, run=lambda c: seen.append(c) or {},
                                                                 render=lambda r: ""))
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    elsewhere.mkdir()
    _record(work, "eval ruler", {"model": "tiny", "output": "r", "lengths": [512], "haystack": "hay.txt"})
    (work / "hay.txt").write_text("words " * 50)
    doc = json.loads((work / "config.json").read_text())
    (work / "config.json").write_text(json.dumps({**doc, "cwd": str(work)}))
    monkeypatch.chdir(elsewhere)
    assert main(["rerun", str(work), "-o", "again"]) == 0, capsys.readouterr().err
    assert seen[0].haystack == "hay.txt" and seen[0].output == str(elsewhere / "again")


def test_a_recorded_search_setting_of_another_type_is_refused_in_one_line(tmp_path, capsys):
    """A hand-edited config.json's strategy or start_tokens of another type (or an unknown strategy) is the field's
    own one-line refusal (exit 2): the upgrade of older records read them first and died of 'unhashable type: list',
    a '<' between a text and a number or "unknown strategy ''", with a traceback (battery 21b)."""
    base = {"model": "tiny", "data": "shards", "output": "x", "target_length": 512}
    cases = [("strategy", ["steady"]), ("strategy", "frob"), ("start_tokens", [[1]]), ("start_tokens", ["a", 1])]
    for i, (field, value) in enumerate(cases):
        _record(tmp_path / f"r{i}", "search", {**base, field: value})
        assert main(["rerun", str(tmp_path / f"r{i}"), "-o", str(tmp_path / f"o{i}")]) == 2
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert f"--{field.replace('_', '-')} must be" in err, err


def test_an_empty_run_folder_argument_is_refused_not_read_as_the_current_folder(tmp_path, capsys, monkeypatch):
    """'rerun ""' (an unset $RUN) repeated whatever run the current folder held, and '--config ""' was read as no
    --config at all ("--model is required"): both are refused in one line (battery 21b)."""
    _record(tmp_path / "here", "eval ppl", {"model": "tiny", "data": "shards", "output": "x", "lengths": [64]})
    monkeypatch.chdir(tmp_path / "here")
    for argv in (["rerun", "", "-o", "again"], ["eval", "ppl", "--config", "", "-o", "again"]):
        assert main(argv) == 2
        assert "run folder (RUN_DIR or --config) is given as an empty text" in capsys.readouterr().err
    assert not (tmp_path / "here" / "again").exists()


def test_a_resume_from_another_folder_keeps_the_record_relative(tiny, tmp_path, capsys, monkeypatch):
    """``cd work && longrope search --data shards -o s``, then ``longrope search --config work/s --resume`` from
    elsewhere: that resume recorded the whole configuration absolute, so once the project moved (``mv work work2``)
    the run could no longer be resumed or rerun, as it could before that resume (battery 23a)."""
    import os

    work = tmp_path / "work"
    work.mkdir()
    os.symlink(tiny / "model", work / "model")
    os.symlink(tiny / "data", work / "shards")
    monkeypatch.chdir(work)
    assert main(["search", "--model", "model", "--data", "shards", "--target-length", "128", "--fitness", "ppl",
                 "--quiet", "--samples", "2", "--heldout-samples", "2", "--population", "4", "--parents", "2",
                 "--max-evals", "4", "-o", "s"]) == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["search", "--config", "../work/s", "--resume", "--max-evals", "5"]) == 0, capsys.readouterr().err
    record = json.loads((work / "s" / "config.json").read_text())
    assert [record["config"][k] for k in ("model", "data", "output")] == ["model", "shards", "s"]
    assert record["cwd"] == str(work)
    (tmp_path / "work").rename(tmp_path / "work2")
    assert main(["search", "--config", "../work2/s", "--resume", "--max-evals", "6"]) == 0, capsys.readouterr().err
    assert _summary(tmp_path / "work2" / "s")["search"]["full_evals"] == 6
