"""The registry of stage kinds is the one place a stage is declared: every entry holds its settings type,
main output and run; a kind registered here alone is checked, run, recorded, referred to and resumed by
the driver like the shipped ones. And the compare stage's settings are one typed config, checked once."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from longrope.cli import main
from longrope.errors import ConfigError, UserError
from longrope.options import option
from longrope.runs import pipeline
from longrope.runs.compare import CompareConfig
from longrope.runs.pipeline.stages import STAGES, Outcome, Stage


def test_every_stage_kind_is_one_complete_entry():
    assert pipeline.STAGE_RUNS == tuple(STAGES) == ("tokenize", "baseline", "search", "finetune", "compare",
                                                    "export")
    for run, stage in STAGES.items():
        assert dataclasses.is_dataclass(stage.config), run
        assert all(f.metadata.get("help") for f in dataclasses.fields(stage.config)), run
        assert callable(stage.run) and callable(stage.output) and callable(stage.check), run
        assert isinstance(pipeline.main_output(run, Path("f"), {}), Path), run
    assert pipeline.main_output("export", Path("f"), {"format": "gguf"}) == Path("f/model.gguf")
    assert STAGES["compare"].editable == pipeline.COMPARE_EDITABLE == ("methods", "passkey_methods", "ruler_methods",
                                                                           "goals")
    assert all(not s.editable for r, s in STAGES.items() if r != "compare")


@dataclasses.dataclass
class NoteSettings:
    """A stage kind that exists only in this test: writes ``text`` ``times`` times, and the size of ``source``."""

    text: str = option(help="what to write")
    source: str | None = option(None, "a file whose size is noted")
    times: int = option(1, "how many times")

    def __post_init__(self) -> None:
        if self.times < 1:
            raise ConfigError("times", "{name} must be at least 1, got " + str(self.times))


def _run_note(config: NoteSettings, ctx) -> Outcome:
    ctx.folder.mkdir(parents=True, exist_ok=True)
    size = Path(config.source).stat().st_size if config.source else None
    (ctx.folder / "note.txt").write_text(config.text * config.times + f"\n{size}\n")
    return Outcome({"note": str(ctx.folder / "note.txt")}, {"size": size}, {"ran_with": config.text})


@pytest.fixture
def note_stage(monkeypatch):
    runs = []

    def run(config, ctx):
        runs.append(ctx.name)
        return _run_note(config, ctx)

    stage = Stage(NoteSettings, lambda folder, entry: folder / "note.txt", run, editable=("text",))
    monkeypatch.setitem(STAGES, "note", stage)
    return runs


def _write_plan(tmp_path: Path, stages: list[dict]) -> Path:
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": stages}))
    return path


def _stages(text: str = "hi") -> list[dict]:
    return [{"name": "yarn", "run": "baseline", "method": "yarn", "target_length": "2x"},
            {"name": "n1", "run": "note", "text": text, "source": "@yarn", "times": 2},
            {"name": "n2", "run": "note", "text": "again", "source": "@n1"}]


def test_a_stage_kind_registered_alone_runs_through_the_driver(tmp_path, capsys, note_stage):
    out = tmp_path / "out"
    plan = _write_plan(tmp_path, _stages())
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    assert note_stage == ["n1", "n2"]
    n1 = out / "stages" / "n1" / "note.txt"
    size = (out / "stages" / "yarn" / "factors.json").stat().st_size
    assert n1.read_text() == f"hihi\n{size}\n"  # "@yarn": the baseline's main output
    assert (out / "stages" / "n2" / "note.txt").read_text() == f"again\n{n1.stat().st_size}\n"  # "@n1": its own
    manifest = json.loads((out / "pipeline.json").read_text())
    st = manifest["stages"]["n1"]
    assert st["status"] == "done" and st["run"] == "note" and st["ran_with"] == "hi"
    assert st["config"] == {"text": "hi", "source": str(out / "stages" / "yarn" / "factors.json"), "times": 2}
    assert st["inputs"] == {"yarn": str(out / "stages" / "yarn")} and st["metrics"] == {"size": size}
    assert json.loads((out / "summary.json").read_text())["complete"]

    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume"]) == 0
    assert note_stage == ["n1", "n2"]  # done: skipped
    capsys.readouterr()
    plan = _write_plan(tmp_path, _stages("ho"))  # the kind lets a resume change "text": that stage runs again
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume"]) == 0
    assert note_stage == ["n1", "n2", "n1", "n2"] and n1.read_text().startswith("hoho")  # n2 read n1: again too
    assert "n1: its text edited since it ran" in capsys.readouterr().err
    stages = _stages("ho")
    stages[1]["times"] = 3  # not editable: refused, naming what may change
    plan = _write_plan(tmp_path, stages)
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume"]) == 2
    err = capsys.readouterr().err
    assert "stage 'n1' changed" in err and "a note stage may change only its text" in err
    assert "a compare stage may change only its methods, passkey_methods, ruler_methods, goals" in err


def test_a_stage_made_from_an_output_made_again_since_runs_again_from_the_start(tmp_path, capsys, note_stage):
    """battery 20: an earlier stage made again with other output (its folder deleted and the documents it reads
    changed, its compare methods edited ...) left every later stage made from the old output "done, skipped": the
    summary, complete, reported the numbers of data or factors the pipeline no longer held. A stage now records the
    digests of the outputs it read; one whose inputs changed is made again from the start (its folder cleared),
    and one whose inputs were made again identical is kept."""
    out = tmp_path / "out"
    plan = _write_plan(tmp_path, _stages())
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    n2 = out / "stages" / "n2"
    (n2 / "left-by-the-old-run").write_text("x")
    shutil.rmtree(out / "stages" / "yarn")  # made again: the same factors, so nothing after it runs again
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume"]) == 0
    assert note_stage == ["n1", "n2"]
    capsys.readouterr()
    plan = _write_plan(tmp_path, _stages("hello"))  # n1 made again with other output: n2, made from it, too
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume", "--until", "n1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert not summary["complete"] and summary["stages"]["n2"]["status"] == "stale"
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet", "--resume"]) == 0
    assert note_stage == ["n1", "n2", "n1", "n2"]
    assert "n2: n1 made again since it ran, with other output; making it again from the start" in capsys.readouterr().err
    n1 = out / "stages" / "n1" / "note.txt"
    assert (n2 / "note.txt").read_text() == f"again\n{n1.stat().st_size}\n"
    assert not (n2 / "left-by-the-old-run").exists()
    assert json.loads((out / "summary.json").read_text())["complete"]


@pytest.mark.parametrize("change, match", [
    ({"times": 0}, "plan stage 'n1' (note): times must be at least 1, got 0"),
    ({"times": "two"}, "plan stage 'n1' (note): times must be int, got 'two'"),
    ({"colour": "red"}, "plan stage 'n1' (note): a note stage has no setting 'colour'; it takes text, source, times"),
    ({"text": None}, "plan stage 'n1' (note): text must not be empty"),
])
def test_a_registered_kind_s_settings_are_checked_before_any_stage_runs(tmp_path, capsys, note_stage, change,
                                                                        match):
    stages = _stages()
    stages[1].update(change)
    out = tmp_path / "out"
    assert main(["pipeline", "--plan", str(_write_plan(tmp_path, stages)), "-o", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert match in err and len(err.splitlines()) == 1
    assert not out.exists() and note_stage == []


def test_a_missing_setting_is_named_with_its_help(tmp_path, capsys, note_stage):
    stages = _stages()
    del stages[1]["text"]
    assert main(["pipeline", "--plan", str(_write_plan(tmp_path, stages)), "-o", str(tmp_path / "o")]) == 2
    assert "plan stage 'n1' (note): a note stage needs 'text' (what to write)" in capsys.readouterr().err


def test_an_unregistered_kind_is_refused_with_the_registered_ones(tmp_path, capsys):
    plan = _write_plan(tmp_path, [{"name": "n", "run": "note", "text": "x"}])
    assert main(["pipeline", "--plan", str(plan), "-o", str(tmp_path / "o")]) == 2
    assert "known: tokenize, baseline, search, finetune, compare, export" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------------
# the compare stage's config


def _compare(**kw) -> CompareConfig:
    methods = {"a": {"model": "tiny", "factors": {"1x": "none", "2x": "yarn@2x"}},
               "b": {"model": "tiny", "factors": {"2x": "pi@2x"}}}
    return CompareConfig(**{"data": "d", "ratios": ("1x", "2x"), "methods": methods, **kw})


def test_the_compare_config_holds_the_defaults_and_answers_what_a_cell_measures():
    c = _compare(passkey_ratios=("2x",), passkey_methods=("b",), samples={"1x": 3, "2x": 1})
    assert c.measures_passkey("b", "2x") and not c.measures_passkey("a", "2x") and not c.measures_passkey("b", "1x")
    assert c.samples_at("1x") == 3 and _compare().samples_at("2x") == 5
    assert not _compare(passkey_trials=0).measures_passkey("a", "1x")
    assert _compare().passkey_mode == "both" and _compare().device == "auto"  # the shared groups' defaults


@pytest.mark.parametrize("kw, error, match", [
    ({"ratios": ()}, ConfigError, "ratios must be a list like"),
    ({"ratios": ("1x", "half")}, UserError, "not a context ratio"),
    ({"ratios": ("1x", "2x", "2.0x")}, ConfigError, "ratios must give each ratio once, got ['1x', '2x', '2.0x']"),
    ({"samples": {"1x": 2}}, ConfigError, "samples must give a window count for each ratio ['1x', '2x']"),
    ({"samples": 0}, ConfigError, "samples must be an integer in [1, "),
    ({"seed": -1}, ConfigError, "seed must be an integer in [0, "),
    ({"passkey_mode": "guess"}, ConfigError, "passkey_mode must be one of generate, needle, both, got 'guess'"),
    ({"passkey_ratios": ("4x",)}, ConfigError, "passkey_ratios must be a list of the ratios ['1x', '2x']"),
    ({"passkey_methods": ("c",)}, ConfigError, "passkey_methods must be a list of the methods ['a', 'b']"),
    ({"goals": ({"name": "g", "value": "passkey.1x.b", "at_least": 1},)}, UserError, "not measured"),
    ({"passkey_trials": 0, "goals": ({"name": "g", "value": "passkey.2x.a", "at_least": 1},)}, ConfigError,
     "passkey_trials 0 measures no passkey"),
])
def test_the_compare_config_refuses_bad_settings_once(kw, error, match):
    with pytest.raises(error) as err:
        _compare(**kw)
    assert match in str(err.value)


def test_a_baseline_stage_writes_the_factors_longrope_baseline_writes(tmp_path, capsys):
    """A baseline stage had a settings type of its own beside longrope baseline's config: a plan could not give the
    command's start_tokens, attention_factor or original_length ("baseline 'pi' has no option(s) start_tokens"), and
    the two made their factor sets in two places (battery 19 open item). The stage is now the command's config and
    recipe (BaselineConfig.factor_set): the same settings give the same factors."""
    settings = {"method": "pi", "target_length": "4x", "start_tokens": 4, "attention_factor": 1.25}
    out = tmp_path / "out"
    plan = _write_plan(tmp_path, [{"name": "pi", "run": "baseline", **settings}])
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "4x", "--start-tokens", "4",
                 "--attention-factor", "1.25", "-o", str(tmp_path / "pi.json")]) == 0
    capsys.readouterr()
    staged = json.loads((out / "stages" / "pi" / "factors.json").read_text())
    command = json.loads((tmp_path / "pi.json").read_text())
    assert staged.pop("provenance")["command"].startswith("longrope baseline --model tiny --method pi")
    command.pop("provenance")
    assert staged == command and staged["start_tokens"] == 4


def test_a_baseline_stage_reads_a_ratio_of_its_own_original_length_as_the_command_does(tmp_path, capsys):
    """longrope baseline --original-length 1000 --target-length 4x makes L' = 4000; the plan resolved every ratio of
    the pipeline model's L (256 for tiny) first, so the same stage made L' = 1024."""
    out = tmp_path / "out"
    plan = _write_plan(tmp_path, [{"name": "pi", "run": "baseline", "method": "pi", "target_length": "4x",
                                   "original_length": 1000}])
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    capsys.readouterr()
    staged = json.loads((out / "stages" / "pi" / "factors.json").read_text())
    assert (staged["original_max_position_embeddings"], staged["max_position_embeddings"]) == (1000, 4000)


def test_a_tokenize_stage_takes_longrope_tokenize_s_settings_and_says_what_it_skipped(tmp_path, capsys):
    """A tokenize stage had a settings type of its own (inputs, tokenizer): a plan could not name a .jsonl's text
    field, a split or the shard size ("a tokenize stage has no setting 'text_field'"), and files it skipped were only
    counted in the manifest, where longrope tokenize names each one. The stage is now the command's config and its
    run (TokenizeConfig.tokenize)."""
    docs = tmp_path / "docs"
    docs.mkdir()
    rows = [json.dumps({"content": f"document {i} " + "words and more words " * 40, "key": f"d{i}"}) for i in range(6)]
    (docs / "a.jsonl").write_text("\n".join(rows) + "\n")
    (docs / "bad.txt").write_bytes(b"\xff\xfe\x00not text\xff" * 10)
    out = tmp_path / "out"
    plan = _write_plan(tmp_path, [{"name": "data", "run": "tokenize", "inputs": [str(docs)], "text_field": "content",
                                   "id_field": "key", "shard_tokens": 256}])
    assert main(["pipeline", "--plan", str(plan), "-o", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "tokenize: warning: skipped " in err and "bad.txt" in err
    meta = json.loads((out / "stages" / "data" / "meta.json").read_text())
    assert meta["n_docs"] == 6 and len(meta["shards"]) > 1
    assert json.loads((out / "pipeline.json").read_text())["stages"]["data"]["metrics"]["skipped"] == 1


def test_an_export_stage_takes_longrope_export_s_settings(tmp_path, capsys, tiny_model_dir):
    """An export stage had a settings type of its own (factors, model, format, dtype): reference CSV factors, which
    longrope export takes with --target-length, could not be exported by a plan ("an export stage has no setting
    'target_length'"). The stage is now the command's config."""
    import numpy as np

    csv = tmp_path / "factors.csv"
    csv.write_text("".join(f"{float(x)!r}\n" for x in np.linspace(1.0, 3.5, 8)))
    out = tmp_path / "out"
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({"format": "longrope-pipeline/1", "model": str(tiny_model_dir), "stages": [
        {"name": "e", "run": "export", "factors": str(csv), "target_length": 256, "original_length": 64}]}))
    assert main(["pipeline", "--plan", str(path), "-o", str(out), "--quiet"]) == 0, capsys.readouterr().err
    config = json.loads((out / "stages" / "e" / "model" / "config.json").read_text())
    assert config["rope_scaling"]["long_factor"] == list(np.linspace(1.0, 3.5, 8))
    assert (config["original_max_position_embeddings"], config["max_position_embeddings"]) == (64, 256)
