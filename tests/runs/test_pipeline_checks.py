"""Every stage of a plan is checked before the first one runs, with the checks of the command the
stage runs, in messages that name the stage and the plan key (not a command-line flag). No stage
runs in these tests: a stage that started would fail them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from longrope.cli import main
from longrope.runs import pipeline


def _plan(*stages: dict, **top) -> dict:
    return {"format": "longrope-pipeline/1", "model": "tiny", **top,
            "stages": [{"name": "data", "run": "tokenize", "inputs": ["embedded"]},
                       {"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
                       *stages]}


@pytest.fixture
def no_stage_runs(monkeypatch):
    def ran(*args, **kwargs):
        raise AssertionError("a stage ran before the plan was checked")

    import dataclasses

    for run, stage in pipeline.STAGES.items():
        monkeypatch.setitem(pipeline.STAGES, run, dataclasses.replace(stage, run=ran))


def _refused(tmp_path, capsys, plan: dict) -> str:
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(tmp_path / "plan.json"), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()
    return err


def test_an_export_dtype_gguf_cannot_write_is_refused_before_any_stage(tmp_path, capsys, no_stage_runs):
    plan = _plan({"name": "search", "run": "search", "data": "@data", "target_length": "2x", "samples": 2},
                 {"name": "export", "run": "export", "factors": "@search", "format": "gguf", "dtype": "bfloat16"})
    err = _refused(tmp_path, capsys, plan)
    assert "plan stage 'export' (export): 'dtype' bfloat16 does not fit 'format' gguf" in err
    assert "float16 or float32" in err and "--" not in err


@pytest.mark.parametrize("key, value, match", [
    ("beta_fast", -5, "plan stage 'yarn' (baseline): beta_fast must be a finite number > 0, got -5"),
    ("target_length", "four", "plan stage 'yarn' (baseline): target_length: a length is a whole number of tokens "
                              "(e.g. 2048, 4k or 8x), got 'four'"),
    ("target_length", 8, "plan stage 'yarn' (baseline): target_length 8 is shorter than original_length 256"),
    ("method", 3, "plan stage 'yarn' (baseline): method must be str, got 3"),
    ("method", "bogus", "plan stage 'yarn' (baseline): method must be one of pi, ntk, dynamic-ntk, yarn, llama3"),
    ("length", 512, "plan stage 'yarn' (baseline): length does not apply to method yarn"),
    ("output", "elsewhere.json", "plan stage 'yarn' (baseline): a baseline stage cannot set 'output'"),
])
def test_a_bad_baseline_value_in_a_later_stage_is_refused_before_the_first(tmp_path, capsys, no_stage_runs,
                                                                           key, value, match):
    plan = _plan()
    plan["stages"][1][key] = value
    assert match in _refused(tmp_path, capsys, plan)


def test_a_baseline_stage_reads_and_bounds_its_lengths_as_longrope_baseline_does(tmp_path, capsys, no_stage_runs):
    """A plan's baseline stage took 2^30 tokens that longrope baseline refuses (make_baseline's bound is the factor
    file's 2^40) and refused "2k", which the command and a search stage read as 2048 (battery 19)."""
    from longrope.errors import ConfigError
    from longrope.tools import BaselineConfig

    with pytest.raises(ConfigError, match="target_length must be an integer in"):
        BaselineConfig(model="tiny", method="yarn", target_length=1 << 30, output="f.json")
    for key, value in (("target_length", 1 << 30), ("target_length", 10**50)):
        plan = _plan()
        plan["stages"][1][key] = value
        assert "plan stage 'yarn' (baseline): target_length must be an integer in [2, 16,777,216]" in \
            _refused(tmp_path, capsys, plan)
    plan = _plan({"name": "dyn", "run": "baseline", "method": "dynamic-ntk", "target_length": "8x",
                  "length": 1 << 30})
    assert "plan stage 'dyn' (baseline): length must be an integer in [1, 16,777,216]" in _refused(tmp_path, capsys,
                                                                                                     plan)
    from longrope.options import config_from_dict

    both = {"model": "tiny", "output": "f.json"}
    assert config_from_dict(BaselineConfig, {**both, "method": "yarn", "target_length": "2k"}).target_length == 2048
    # dynamic-ntk's current length is read as longrope baseline --length reads it: 16k, or a ratio 4x of L (a plan
    # refused both, battery 19b open item)
    assert config_from_dict(BaselineConfig, {**both, "method": "dynamic-ntk", "target_length": "8k",
                                               "length": "2k"}).length == 2048
    from longrope.runs.pipeline.plan import Resolver

    plan = _plan({"name": "dyn", "run": "baseline", "method": "dynamic-ntk", "target_length": "8x", "length": "4x"})
    resolver = Resolver(plan, tmp_path / "p")
    settings = resolver.stage(resolver.entries["dyn"])
    assert settings["length"] == 4 * resolver.original_length() and settings["target_length"] == \
        8 * resolver.original_length()


def test_a_missing_baseline_setting_is_named(tmp_path, capsys, no_stage_runs):
    plan = _plan()
    del plan["stages"][1]["target_length"]
    assert "plan stage 'yarn' (baseline): a baseline stage needs 'target_length'" in _refused(tmp_path, capsys, plan)


@pytest.mark.parametrize("stage, match", [
    ({"name": "tok", "run": "tokenize", "inputs": "embedded"},
     "plan stage 'tok' (tokenize): 'inputs' must be a non-empty list of role=PATH or \"embedded\", got 'embedded'"),
    # refused only when the stage ran, after the stages before it, without the stage's name (and by longrope
    # tokenize only after its tokenizer loaded, naming tokenize_corpus's argument)
    ({"name": "tok", "run": "tokenize", "inputs": ["embedded"], "text_field": " "},
     "plan stage 'tok' (tokenize): text_field must be a non-empty string, got ' '"),
    ({"name": "tok", "run": "tokenize", "input": ["embedded"]},
     "plan stage 'tok' (tokenize): a tokenize stage takes its documents as 'inputs'"),
    ({"name": "e", "run": "export", "factors": "@yarn", "target_length": 4096},
     "plan stage 'e' (export): target_length gives the L' of reference CSV factors; factors @yarn are an earlier"),
    ({"name": "e", "run": "export", "factors": "@yarn", "format": "onnx"},
     "plan stage 'e' (export): format must be one of hf, gguf, got 'onnx'"),
    ({"name": "e", "run": "export", "factors": 3}, "plan stage 'e' (export): factors must be str, got 3"),
    ({"name": "e", "run": "export", "factors": "@yarn", "overwrite": False},
     "plan stage 'e' (export): an export stage cannot set 'overwrite': the pipeline sets it"),
    ({"name": "s", "run": "search", "data": "@data", "target_length": "four"},
     "plan stage 's' (search): target_length: a length is a whole number of tokens (e.g. 2048, 4k or 8x), got 'four'"),
    ({"name": "ft", "run": "finetune", "factors": "@yarn", "data": "@data", "steps": 2, "warmup_steps": 5},
     "plan stage 'ft' (finetune): warmup_steps must be in [0, steps], got 5"),
    # the keys the pipeline sets were dropped unsaid (the manifest recorded an output the stage never wrote to)
    ({"name": "ft", "run": "finetune", "factors": "@yarn", "data": "@data", "steps": 2, "output": "/elsewhere"},
     "plan stage 'ft' (finetune): a finetune stage cannot set 'output': the pipeline sets it"),
    ({"name": "s", "run": "search", "data": "@data", "target_length": "2x", "resume": True},
     "plan stage 's' (search): a search stage cannot set 'resume': the pipeline sets it"),
])
def test_wrong_values_name_the_stage_the_key_and_what_it_takes(tmp_path, capsys, no_stage_runs, stage, match):
    assert match in _refused(tmp_path, capsys, _plan(stage))


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_search_stage_on_a_device_this_machine_lacks_is_refused_before_any_stage(tmp_path, capsys, no_stage_runs):
    err = _refused(tmp_path, capsys, _plan({"name": "s", "run": "search", "data": "@data", "target_length": "2x",
                                            "device": "cuda"}))
    assert "plan stage 's' (search): device cuda: " in err and "CUDA is not available" in err


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_compare_stage_on_a_device_this_machine_lacks_is_refused_before_any_stage(tmp_path, capsys,
                                                                                     no_stage_runs):
    stage = {"name": "c", "run": "compare", "data": "@data", "ratios": ["1x"], "device": "cuda",
             "methods": {"none": {"model": "{model}", "factors": {"1x": "none"}}}}
    err = _refused(tmp_path, capsys, _plan(stage))
    assert "plan stage 'c' (compare): a compare stage's device 'cuda' requested but CUDA is not available; give auto, cpu or a device this machine has" in err and "--" not in err


def test_an_unknown_top_level_key_is_refused_with_the_allowed_ones(tmp_path, capsys, no_stage_runs):
    err = _refused(tmp_path, capsys, _plan(colour="red"))
    assert "unknown key 'colour'" in err and "format, description, model, stages" in err


def test_a_plan_recorded_in_a_manifest_may_hold_keys_unknown_today():
    plan = _plan(colour="red")
    with pytest.raises(Exception, match="unknown key 'colour'"):
        pipeline.check_plan(plan)
    assert pipeline.check_plan(plan, strict=False)["colour"] == "red"


def test_a_finetune_stage_without_warmup_fits_a_short_run(tmp_path, no_stage_runs):
    """The default warm-up is clamped to the steps: such a plan passes its checks (and reaches the
    first stage, which the fixture stops)."""
    plan = _plan({"name": "ft", "run": "finetune", "factors": "@yarn", "data": "@data", "steps": 1})
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    with pytest.raises(AssertionError, match="a stage ran"):
        main(["pipeline", "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "out"), "--quiet"])


def test_the_shipped_plan_passes_the_checks(tmp_path, no_stage_runs):
    with pytest.raises(AssertionError, match="a stage ran"):
        main(["pipeline", "--model", "tiny", "-o", str(tmp_path / "out"), "--quiet"])


def test_devices_are_checked_only_for_the_stages_that_will_run_here():
    import torch

    if torch.cuda.is_available():
        pytest.skip("needs a machine without CUDA")
    plan = _plan()
    search = {"data": "shards", "target_length": 512, "device": "cuda"}
    with pytest.raises(Exception, match="cuda"):
        pipeline.check_stage("search", search, plan)
    # finished elsewhere, or left out by --only / --until: its settings are checked, not this machine
    pipeline.check_stage("search", search, plan, machine=False)
    with pytest.raises(Exception, match="samples"):
        pipeline.check_stage("search", {**search, "samples": 0}, plan, machine=False)


def test_a_tokenize_stage_may_spell_the_model_s_tokenizer_as_null():
    pipeline.check_stage("tokenize", {"inputs": ["embedded"], "tokenizer": None}, _plan())
    with pytest.raises(Exception, match="tokenizer"):
        pipeline.check_stage("tokenize", {"inputs": ["embedded"], "tokenizer": 3}, _plan())


def test_a_resume_on_a_model_rebuilt_at_the_same_path_is_refused(tmp_path, capsys):
    """The pipeline is bound to its model's content: other weights written into the plan's model folder between a
    kill and --resume are refused in one line (the finished stages came from the old weights); the same model
    resumes."""
    import shutil

    from safetensors.torch import load_file, save_file

    from longrope.embedded import TINY_MODEL_DIR

    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, model)
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "longrope-pipeline/1", "model": str(model), "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi-2x", "run": "baseline", "method": "pi", "target_length": "2x"}]}))
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--until", "yarn-2x"]) == 0
    weights = model / "model.safetensors"
    original = weights.read_bytes()
    save_file({k: (0.5 * v).contiguous() for k, v in load_file(weights).items()}, weights, metadata={"format": "pt"})
    capsys.readouterr()
    assert main(["pipeline", "-o", str(out), "--resume"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds other files" in err and len(err.splitlines()) == 1
    assert json.loads((out / "pipeline.json").read_text())["stages"]["pi-2x"]["status"] == "pending"
    weights.write_bytes(original)
    assert main(["pipeline", "-o", str(out), "--resume"]) == 0


def test_a_search_stage_started_before_the_joint_default_resumes_with_its_fitness(tmp_path, capsys):
    """A plan that leaves a search stage's fitness unset resolved it to ppl before the joint default: a pipeline
    killed inside such a stage resumes it with the fitness it ran (recorded in the stage), not today's default."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "s", "run": "search", "data": "@data", "target_length": "2x", "samples": 1, "max_evals": 1,
         "report": False}]}))
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    stage = out / "stages" / "s"
    manifest = json.loads((out / "pipeline.json").read_text())
    manifest["stages"]["s"]["status"] = "running"  # killed inside the stage
    (out / "pipeline.json").write_text(json.dumps(manifest))
    for name, key in (("config.json", None), ("checkpoint.json", "fingerprint")):  # as the older version wrote it
        doc = json.loads((stage / name).read_text())
        cfg = doc[key]["config"] if key else doc["config"]
        cfg["fitness"] = None
        del cfg["retrieval_weight"]
        if key:
            del doc[key]["answer"]  # fingerprints of that version did not record the answer text
        (stage / name).write_text(json.dumps(doc))
    capsys.readouterr()
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    assert json.loads((stage / "summary.json").read_text())["search"]["fitness"] == "ppl"


def test_a_search_stage_its_model_cannot_run_is_refused_before_the_first_stage(tmp_path, capsys, no_stage_runs):
    """What the search checks from the RoPE facts and the tokenizer (a target not above L, a joint fitness on a
    model without tokenizer files) is checked for every stage before the first one runs, not after the earlier
    stages (a fine-tune of many minutes) have spent their time."""
    import shutil

    from longrope.embedded import TINY_MODEL_DIR

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(TINY_MODEL_DIR / name, bare / name)
    for model, target, match in (("tiny", "1x", "must exceed the model's original context"),
                                 (str(bare), "2x", "has no tokenizer files")):
        plan = tmp_path / "plan.json"
        plan.write_text(json.dumps(_plan({"name": "s", "run": "search", "data": "@data", "target_length": target,
                                          "model": model})))
        assert main(["pipeline", "--plan", str(plan), "-o", str(tmp_path / "out")]) == 2
        err = capsys.readouterr().err.strip()
        assert "plan stage 's' (search)" in err and match in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("stage, match", [
    ({"name": "cmp", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1,
      "methods": {"y": {"model": "{model}", "factors": {"2x": "@data"}}}},
     "stage 'cmp' gives @data as 'factors', but @data is the output of a tokenize stage, not factors"),
    ({"name": "cmp", "run": "compare", "data": "@data", "ratios": ["2x"], "samples": 1,
      "methods": {"y": {"model": "@yarn", "factors": {"2x": "@yarn"}}}},
     "stage 'cmp' gives @yarn as 'model', but @yarn is the output of a baseline stage, not model"),
    ({"name": "s", "run": "search", "data": "@yarn", "target_length": "2x", "samples": 1},
     "stage 's' gives @yarn as 'data', but @yarn is the output of a baseline stage, not data"),
])
def test_a_reference_to_an_output_of_the_wrong_kind_is_refused_before_any_stage(tmp_path, capsys, no_stage_runs,
                                                                                stage, match):
    # battery 4: "@data" given as factors (or factors as a model) failed only when the compare stage ran,
    # after every stage before it
    assert match in _refused(tmp_path, capsys, _plan(stage))


def test_a_search_reuses_an_earlier_search_stage_by_its_name(tmp_path, capsys, no_stage_runs):
    """Battery 8: "reuse": "@s0" resolved to s0's factors.json and failed when the stage started ("not a search run
    folder"), after the stages before it; "@data" (a tokenize stage) the same. @NAME is the search's run folder,
    and a stage of another command is refused at the plan check."""
    from longrope.runs.pipeline.plan import Resolver

    search = {"run": "search", "data": "@data", "target_length": "2x", "samples": 1}
    plan = _plan({"name": "s0", **search}, {"name": "s", **search, "reuse": "@s0"})
    assert Resolver(plan, tmp_path / "out").value("@s0", "reuse") == str(tmp_path / "out" / "stages" / "s0")
    for other in ("data", "yarn"):
        err = _refused(tmp_path, capsys, _plan({"name": "s", **search, "reuse": f"@{other}"}))
        assert f"stage 's' gives @{other} as 'reuse', but @{other} is a" in err and "not a search stage" in err


def _compare(**methods) -> dict:
    return {"name": "cmp", "run": "compare", "data": "@data", "ratios": ["1x"], "samples": 1, "passkey_trials": 0,
            "methods": {"a": {"model": "{model}", "factors": {"1x": "none"}}, **methods}}


@pytest.mark.parametrize("stage, match", [
    ({"name": "t2", "run": "tokenize", "inputs": ["search=/nowhere/books"]}, "plan stage 't2' (tokenize): /nowhere/books"),
    ({"name": "t2", "run": "tokenize", "inputs": ["embedded"], "tokenizer": "/nowhere/tok"},
     "plan stage 't2' (tokenize): no such model file or folder: /nowhere/tok"),
    ({"name": "s", "run": "search", "data": "/nowhere/shards", "target_length": "2x", "samples": 2},
     "plan stage 's' (search): /nowhere/shards: no such shard folder"),
    ({"name": "s", "run": "search", "data": "@data", "target_length": "2x", "samples": 2, "reuse": "/nowhere/run"},
     "plan stage 's' (search): reuse /nowhere/run is not a search run folder"),  # battery 8: read at stage start
    ({"name": "ft", "run": "finetune", "factors": "/nowhere/f.json", "data": "@data", "steps": 1},
     "plan stage 'ft' (finetune): cannot read factor file /nowhere/f.json"),
    (_compare(b={"model": "/nowhere/model", "factors": {"1x": "none"}}),
     "plan stage 'cmp' (compare): no such model file or folder: /nowhere/model"),
    (_compare(b={"model": "{model}", "factors": {"1x": "/nowhere/f.json"}}),
     "plan stage 'cmp' (compare): method 'b' at 1x: cannot read factor file /nowhere/f.json"),
    (_compare(b={"model": "{model}", "factors": {"1x": "yarn@0.5x"}}),
     "plan stage 'cmp' (compare): compare: method 'b' at 1x: 'yarn@0.5x' extends to less than the original context"),
    (_compare(b={"model": "{model}", "factors": {"1x": "yarn@99999999999x"}}),
     "plan stage 'cmp' (compare): compare: method 'b' at 1x: 'yarn@99999999999x' extends to less than the original context "
     "or past any length"),
    ({**_compare(), "ratios": ["1x", "99999999x"], "samples": 1}, "ratio 99999999x is 25,599,999,744 tokens"),
    # battery 6 #65: a RULER task too long for a ratio's length was found when the stage made its samples
    ({**_compare(), "ratios": ["1x", "2x"], "ruler_ratios": ["2x"], "ruler_tasks": ["niah_single_1", "vt"]},
     "plan stage 'cmp' (compare): ruler_ratios 2x is 512 tokens, too short for RULER task ruler_vt (its smallest "
     "prompt and answer take about"),
])
def test_inputs_a_stage_names_itself_are_read_before_the_first_stage(tmp_path, capsys, no_stage_runs, stage, match):
    """A model, shard folder, factor file, document or closed form the plan names itself (not an earlier stage's
    output) was read only when its stage started, after the stages before it had run (battery 6)."""
    assert match in _refused(tmp_path, capsys, _plan(stage))


def test_a_ruler_method_whose_model_has_no_tokenizer_is_refused_before_the_first_stage(tmp_path, capsys,
                                                                                      no_stage_runs):
    """A compare stage measuring RULER for a method whose model folder has no tokenizer files was refused when
    the stage reached that method, after the stages before it and the other methods' cells (battery 10)."""
    import shutil

    from longrope.embedded import TINY_MODEL_DIR

    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(TINY_MODEL_DIR / name, bare / name)
    stage = {**_compare(b={"model": str(bare), "factors": {"1x": "none", "2x": "yarn@2x"}}), "ratios": ["1x", "2x"],
             "ruler_ratios": ["2x"]}
    stage["methods"]["a"]["factors"]["2x"] = "yarn@2x"
    err = _refused(tmp_path, capsys, _plan(stage))
    assert f"plan stage 'cmp' (compare): {bare} has no tokenizer files" in err and "method(s) b" in err
    assert "list only the other methods in ruler_methods" in err


def test_a_search_stage_reusing_a_run_folder_scored_otherwise_is_refused_before_the_first_stage(tmp_path, capsys,
                                                                                                no_stage_runs):
    """A search stage whose plan names a search run folder as ``reuse`` under another fitness (or length, seed
    ...) was refused when the stage started, after the stages before it; an earlier stage's was refused at the
    plan check (battery 9b). What its checkpoint says the scores were computed under decides (battery 10)."""
    from longrope.options import config_to_dict
    from longrope.runs.search import SearchConfig
    from longrope.search.loop import CHECKPOINT_FORMAT

    run = tmp_path / "ppl-run"
    run.mkdir()
    recorded = config_to_dict(SearchConfig(model="tiny", data="d", output=str(run), target_length=512,
                                           fitness="ppl", samples=2))
    (run / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search",
                                                 "config": {**recorded, "fitness": "joint"}}))  # edited by hand
    by_content = ("model", "data", "base_factors")  # a fingerprint holds these by content, not in its config
    (run / "checkpoint.json").write_text(json.dumps({"format": CHECKPOINT_FORMAT, "fingerprint": {
        "config": {**{k: v for k, v in recorded.items() if k not in by_content}, "space": {}}}, "cache": []}))
    stage = {"name": "s", "run": "search", "data": "@data", "target_length": "2x", "samples": 2,
             "reuse": str(run)}
    err = _refused(tmp_path, capsys, _plan(stage))
    assert f"plan stage 's' (search): reuse {run}: its window scores mean something else here: fitness: 'ppl' -> " \
           "'joint'" in err and "drop reuse" in err


def test_a_finished_stage_s_named_inputs_are_not_read_again(tmp_path):
    """Only a stage that runs now reads its inputs: a done tokenize stage whose documents were removed since
    does not stop the pipeline's resume."""
    pipeline.check_stage("tokenize", {"inputs": ["search=/nowhere/books"]}, _plan(),
                         {"name": "t2", "inputs": ["search=/nowhere/books"]}, machine=False)


def test_a_search_stage_takes_its_knobs_by_their_flag_names(tmp_path):
    """``"population": 4`` as ``--population 4``: a search stage refused the strategy's knobs by their flag names
    ("its settings are those of longrope search", which has those flags; battery 6)."""
    from longrope.runs.pipeline.stages import STAGES, StageContext

    def config(**settings):
        ctx = StageContext(name="s", run="search", plan=_plan(), entry={}, folder=tmp_path / "s",
                           settings={"data": "shards", "target_length": 512, **settings})
        return STAGES["search"].settings(ctx)

    knobs = config(population=4, parents=2, knobs={"crossovers": 3}).knobs
    assert (knobs.population, knobs.parents, knobs.crossovers) == (4, 2, 3)
    with pytest.raises(Exception, match="'parents' is given twice"):
        config(parents=2, knobs={"parents": 3})


def test_a_stage_name_too_long_for_its_folder_is_refused_before_any_stage(tmp_path, capsys, no_stage_runs):
    """A 300-character name failed when its stage started ('cannot create .../stages/.aaa...tokenize-PID': the
    name passed the 255-byte file-name limit), after the stages before it (battery 6)."""
    err = _refused(tmp_path, capsys, _plan({"name": "a" * 101, "run": "baseline", "method": "pi",
                                            "target_length": "2x"}))
    assert "stage 3 needs a \"name\" of letters, digits, '_', '-', '.' (at most 100)" in err
    pipeline.check_plan(_plan({"name": "a" * 100, "run": "baseline", "method": "pi", "target_length": "2x"}))


def test_a_finetune_stage_on_shards_without_training_documents_is_refused_before_the_first_stage(
        tmp_path, capsys, no_stage_runs):
    """Battery 16: found when the finetune stage started, after every stage before it had run."""
    from pathlib import Path

    import longrope.embedded

    search = Path(longrope.embedded.__file__).parent / "assets" / "corpus" / "search"
    shards = tmp_path / "sh"
    assert main(["tokenize", "--tokenizer", "tiny", "--input", f"search={search}", "-o", str(shards)]) == 0
    capsys.readouterr()
    plan = _plan({"name": "ft", "run": "finetune", "factors": "@yarn", "data": str(shards), "steps": 2})
    err = _refused(tmp_path, capsys, plan)
    assert "plan stage 'ft' (finetune): " in err and "has no training documents" in err


def test_a_finetune_stage_without_bos_on_one_token_training_documents_is_refused_before_the_first_stage(
        tmp_path, capsys, no_stage_runs):
    """Review of battery 29: a plan with "bos": false on training documents of one token each (no target without
    BOS) passed the plan check and was refused only when the finetune stage started, after the stages before it."""
    import numpy as np

    from tests.train.train_helpers import pattern_doc, write_corpus

    docs = [(f"train/{k}.txt", np.array([5 + k]), "train") for k in range(3)]
    shards = write_corpus(tmp_path / "sh", [*docs, ("search/a.txt", pattern_doc(2, 200), "search")])
    stage = {"name": "ft", "run": "finetune", "factors": "@yarn", "data": str(shards), "steps": 2}
    err = _refused(tmp_path, capsys, _plan({**stage, "bos": False}))
    assert err.endswith("every training document has one token, which has no target when segments begin without "
                        "BOS (set by bos): nothing to train on; begin them with BOS, or tokenize longer training "
                        "documents")
    assert "plan stage 'ft' (finetune): " in err
    pipeline.check_plan(_plan(stage))  # with BOS each one is a target


@pytest.mark.parametrize("settings, says", [
    ({"dtype": "float16", "device": "cpu"}, "dtype float16 (mixed precision with a gradient scaler) needs a GPU"),
    ({"seq_len": 256, "short_share": 0.5, "short_length": 512}, "short_length (512) must not exceed seq_len (256)"),
    ({"seq_len": 256, "tokens_per_step": 100}, "tokens_per_step (100) must be a multiple of batch_size x seq_len"),
    ({"seq_len": 256, "tokens_per_step": 256, "grad_accum": 2}, "grad_accum 2 contradicts tokens_per_step 256"),
    # LoRA settings against the model's layers, from its config (battery 24b's open item)
    ({"lora": True, "lora_rank": 4096}, "lora_rank 4096 exceeds the size of"),
    ({"lora": True, "lora_targets": ["qkv_proj", "attn_proj"]}, "lora_targets ['qkv_proj', 'attn_proj'] match no"),
    ({"lora": True, "lora_trainable": ["nothing_named_so"]}, "match no parameter of this model"),
])
def test_a_finetune_stage_s_own_settings_are_refused_before_the_first_stage(tmp_path, capsys, no_stage_runs,
                                                                            settings, says):
    """Battery 24b: precision, lengths and tokens per step, which need no earlier stage's output, were
    refused only when the finetune stage started (after a search of hours, say), not with the plan."""
    plan = _plan({"name": "ft", "run": "finetune", "factors": "@yarn", "data": "@data", "steps": 2, **settings})
    err = _refused(tmp_path, capsys, plan)
    assert err.startswith("longrope pipeline: error: plan stage 'ft' (finetune): ") and says in err


def test_a_resume_naming_the_same_model_folder_another_way_continues(tmp_path, capsys, monkeypatch):
    """A pipeline started in proj/ with --model m, resumed from proj's parent with --model proj/m (or with
    --model ./m in proj/), names the same folder: it was refused as a plan whose model differs ('m' ->
    '/.../proj/m'). Another folder is still a difference."""
    import shutil

    from longrope.embedded import TINY_MODEL_DIR

    proj = tmp_path / "proj"
    proj.mkdir()
    shutil.copytree(TINY_MODEL_DIR, proj / "m")
    shutil.copytree(TINY_MODEL_DIR, tmp_path / "other")
    (proj / "plan.json").write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "yarn-2x", "run": "baseline", "method": "yarn", "target_length": "2x"},
        {"name": "pi-2x", "run": "baseline", "method": "pi", "target_length": "2x"}]}))
    monkeypatch.chdir(proj)
    assert main(["pipeline", "--plan", "plan.json", "--model", "m", "-o", "out", "--until", "yarn-2x"]) == 0
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["pipeline", "-o", "proj/out", "--resume", "--model", "other", "--until", "yarn-2x"]) == 2
    assert "model 'm' -> " in capsys.readouterr().err
    assert main(["pipeline", "-o", "proj/out", "--resume", "--model", "proj/m", "--until", "yarn-2x"]) == 0
    monkeypatch.chdir(proj)
    assert main(["pipeline", "-o", "out", "--resume", "--model", "./m"]) == 0
    manifest = json.loads((proj / "out" / "pipeline.json").read_text())
    assert manifest["plan"]["model"] == "m" and manifest["stages"]["pi-2x"]["status"] == "done"


def _one_of_two_exports_then_factors_rewritten(tmp_path, factors: Path, named: str) -> tuple[Path, bytes]:
    """A pipeline in ``tmp_path/out`` of two export stages naming ``named`` as their factors (yarn, written at
    ``factors``), run until its first; then ``factors`` rewritten with pi. Returns the folder and the yarn bytes."""
    factors.parent.mkdir(parents=True, exist_ok=True)

    def baseline(method: str) -> None:
        factors.unlink(missing_ok=True)
        assert main(["baseline", "--model", "tiny", "--method", method, "--target-length", "512",
                     "-o", str(factors)]) == 0

    baseline("yarn")
    original = factors.read_bytes()
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "one", "run": "export", "factors": named}, {"name": "two", "run": "export", "factors": named}]}))
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--until", "one", "--quiet"]) == 0
    baseline("pi")
    return out, original


def _refused_resume(capsys, out) -> str:
    capsys.readouterr()
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_resume_where_a_finished_stage_s_named_input_holds_other_content_is_refused(tmp_path, capsys):
    """A factor file (or shard folder) a finished stage named by path, rewritten before --resume, was read by the
    stages still to run while the finished one kept what it made from the old one: two export stages of one
    pipeline exported two factor sets, without a word. Refused, as a model rebuilt at its path is; restored, the
    pipeline continues."""
    factors = tmp_path / "f.json"
    out, original = _one_of_two_exports_then_factors_rewritten(tmp_path, factors, str(factors))
    err = _refused_resume(capsys, out)
    assert f"{factors} (read by 'one') holds other content" in err
    assert f"delete {out / 'stages' / 'one'} to make it again from the new content" in err  # keeps the others
    assert json.loads((out / "pipeline.json").read_text())["stages"]["two"]["status"] == "pending"
    factors.write_bytes(original)
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 0


def test_a_resume_where_a_finished_stage_s_factor_folder_holds_other_factors_is_refused(tmp_path, capsys):
    """A folder holding factors.json named as a stage's factors (which the factor readers accept) was recorded with
    no digest, read as an output is (a file, a model folder, a shard folder): rewritten before --resume, the stage
    still to run exported other factors than the finished one, without a word. Its digest is that of the file the
    factor reader picks; refused as a factor file rewritten is."""
    folder = tmp_path / "F"
    out, _ = _one_of_two_exports_then_factors_rewritten(tmp_path, folder / "factors.json", str(folder))
    named = json.loads((out / "pipeline.json").read_text())["stages"]["one"]["named_sha256"]
    assert named["factors"]["path"] == str(folder) and isinstance(named["factors"]["sha256"], str)
    assert f"{folder} (read by 'one') holds other content" in _refused_resume(capsys, out)


def test_a_gguf_model_folder_or_a_run_folder_named_by_a_stage_is_bound_by_its_content(tmp_path):
    """A model folder holding one .gguf (no config.json) named as a stage's model, and a run folder (factors.json
    beside the run's config.json) named as its factors, were recorded with no digest, which bound nothing: each is
    read as the stage reads it, and other content there shows at a resume."""
    from longrope.runs.pipeline import manifest as records

    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "m.gguf").write_bytes(b"GGUF" + bytes(64))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "config.json").write_text(json.dumps({"command": "search", "config": {}}))
    (tmp_path / "run" / "factors.json").write_text("{}")
    named = {"model": str(tmp_path / "g"), "factors": str(tmp_path / "run")}
    manifest = {"stages": {"one": {"run": "export", "status": "pending"}}}
    records.start(manifest, "one", {}, {}, named)
    st = manifest["stages"]["one"]
    assert all(isinstance(rec["sha256"], str) for rec in st["named_sha256"].values())
    st["status"] = "done"
    assert records.changed_named_inputs(st) == []
    (tmp_path / "g" / "m.gguf").write_bytes(b"GGUF" + bytes(65))
    (tmp_path / "run" / "factors.json").write_text("{ }")
    assert records.changed_named_inputs(st) == [str(tmp_path / "g"), str(tmp_path / "run")]


def test_a_resume_that_makes_again_a_stage_whose_named_input_changed_reads_the_new_content(tmp_path, capsys):
    """A stage's folder deleted is the way to make it again: a resume after its factor file was rewritten was
    refused ("f.json, which stage 'one' read, holds other content"), though stage one was to be made again from
    the new file. Only stages skipped as done are asked; both stages export the new factors."""
    factors = tmp_path / "f.json"
    out, _ = _one_of_two_exports_then_factors_rewritten(tmp_path, factors, str(factors))
    shutil.rmtree(out / "stages" / "one")
    assert main(["pipeline", "-o", str(out), "--resume", "--quiet"]) == 0, capsys.readouterr().err
    made = [json.loads((out / "stages" / n / "model" / "factors.json").read_text()) for n in ("one", "two")]
    assert made[0] == made[1] == json.loads(factors.read_text())


def test_a_refused_resume_typed_in_another_folder_names_the_changed_input_where_it_is(tmp_path, capsys, monkeypatch):
    """The refusal named the factor file as the plan wrote it, read in the folder the pipeline started in
    ("f.json"): typed from another folder, it named a file that is not there. It names the file itself."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    monkeypatch.chdir(tmp_path / "a")
    out, _ = _one_of_two_exports_then_factors_rewritten(tmp_path, tmp_path / "a" / "f.json", "f.json")
    monkeypatch.chdir(tmp_path / "b")
    assert f"refused: {tmp_path / 'a' / 'f.json'} (read by 'one')" in _refused_resume(capsys, out)


def test_a_stage_model_named_with_a_tilde_is_bound_by_its_content(tmp_path, monkeypatch):
    """A stage's "model": "~/g" is read by the model loader in the home folder, but the resume check looked for
    ./~/g, found nothing and compared nothing: a model changed there since was used by the stages still to run
    (second review of battery 29)."""
    from longrope.runs.pipeline import manifest as records

    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "m.gguf").write_bytes(b"GGUF" + bytes(64))
    manifest = {"stages": {"one": {"run": "export", "status": "pending"}}}
    records.start(manifest, "one", {}, {}, {"model": "~/g"})
    st = manifest["stages"]["one"]
    st["status"] = "done"
    assert records.changed_named_inputs(st) == []
    (tmp_path / "g" / "m.gguf").write_bytes(b"GGUF" + bytes(65))
    assert records.changed_named_inputs(st) == [str(tmp_path / "g")]


def test_a_resume_refused_for_changed_inputs_names_all_of_them_at_once(tmp_path, capsys):
    """Two done stages reading two factor files, both rewritten: the refusal named the first file and its stage only,
    so the user deleted that folder, resumed, and was refused again for the second (third review of battery 29)."""
    files = {n: tmp_path / f"{n}.json" for n in ("f", "g")}
    for path in files.values():
        assert main(["baseline", "--model", "tiny", "--method", "yarn", "--target-length", "512", "-o", str(path)]) == 0
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "one", "run": "export", "factors": str(files["f"])},
        {"name": "two", "run": "export", "factors": str(files["g"])},
        {"name": "three", "run": "export", "factors": str(files["f"])}]}))
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--until", "two", "--quiet"]) == 0
    for path in files.values():
        path.unlink()
        assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", str(path)]) == 0
    err = _refused_resume(capsys, out)
    assert f"{files['f']} (read by 'one'); {files['g']} (read by 'two') hold other content" in err
    assert f"delete {out / 'stages' / 'one'} {out / 'stages' / 'two'} to make them again" in err
