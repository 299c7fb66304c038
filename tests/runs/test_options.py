"""Config dataclasses → command line → config, and the JSON round trip ``rerun`` relies on."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass

import pytest

from longrope.errors import ConfigError
from longrope.options import (
    add_options,
    check_choices,
    config_from_args,
    config_from_dict,
    config_to_dict,
    field_flags,
    nested,
    option,
)


@dataclass
class Inner:
    rate: float = option(0.5, "a rate")
    stages: tuple[int, ...] = option((1,), "stages")


@dataclass
class Outer:
    name: str = option(help="a required name")
    count: int = option(3, "how many")
    limit: float | None = option(None, "optional limit")
    mode: str = option("a", "the mode", choices=("a", "b"))
    report: bool = option(True, "report at the end")
    fast: bool = option(False, "go fast")
    files: tuple[str, ...] = option((), "files", multiple=True)
    inner: Inner = nested(lambda: Inner(rate=0.25), "inner knobs")

    def __post_init__(self) -> None:
        check_choices(self)
        if self.count < 1:
            raise ConfigError("count", "{name} must be >= 1")


def _parse(argv, saved=None):
    p = argparse.ArgumentParser()
    add_options(p, Outer)
    return config_from_args(Outer, p.parse_args(argv), saved=saved)


def test_defaults_live_in_the_dataclass_and_flags_override_them():
    cfg = _parse(["--name", "x"])
    assert cfg == Outer(name="x")
    assert cfg.inner.rate == 0.25  # the nested factory's default, not Inner's
    cfg = _parse(["--name", "x", "--count", "7", "--limit", "1.5", "--mode", "b", "--no-report", "--fast",
                  "--files", "a.json", "b.json", "--rate", "0.1", "--stages", "1,3"])
    assert (cfg.count, cfg.limit, cfg.mode, cfg.report, cfg.fast) == (7, 1.5, "b", False, True)
    assert cfg.files == ("a.json", "b.json") and cfg.inner == Inner(0.1, (1, 3))


def test_saved_config_then_flags():
    saved = config_to_dict(Outer(name="x", count=5, inner=Inner(rate=0.9)))
    cfg = _parse(["--count", "6"], saved=saved)
    assert (cfg.name, cfg.count, cfg.inner.rate) == ("x", 6, 0.9)


def test_json_round_trip_is_exact():
    cfg = Outer(name="x", limit=2.0, files=("a", "b"), inner=Inner(0.3, (2, 4)))
    assert config_from_dict(Outer, json.loads(json.dumps(config_to_dict(cfg)))) == cfg


@pytest.mark.parametrize(("values", "field"), [
    ({}, "name"),
    ({"name": "x", "bogus": 1}, "bogus"),
    ({"name": "x", "count": "3"}, "count"),
    ({"name": "x", "count": True}, "count"),
    ({"name": "x", "count": 0}, "count"),
    ({"name": "x", "mode": "c"}, "mode"),
    ({"name": "x", "inner": 5}, "inner"),  # a nested config that is no JSON object (a hand-edited config.json)
    ({"name": "x", "inner": ["rate"]}, "inner"),
])
def test_bad_values_are_config_errors_naming_the_field(values, field):
    with pytest.raises(ConfigError) as err:
        config_from_dict(Outer, values)
    assert err.value.fields[0] == field
    flags = field_flags(Outer)
    assert flags.get(field, field) in err.value.render(lambda f: flags.get(f, f))


def test_every_run_config_field_is_documented_and_on_the_command_line():
    from longrope.runs import RUNS, get_run

    for command in RUNS:
        spec = get_run(command)
        p = argparse.ArgumentParser()
        add_options(p, spec.config)  # raises for a field without help
        given = {s for a in p._actions for s in a.option_strings}
        for flag in field_flags(spec.config).values():
            assert flag in given or f"--no-{flag[2:]}" in given, (command, flag)


def test_option_needs_help():
    with pytest.raises(TypeError):
        option(1)


def test_saved_token_counts_read_like_their_flags():
    # battery 4: --tokens-per-step 1k worked, "tokens_per_step": "1k" in a plan or config.json was refused
    from longrope.options import token_count

    @dataclass
    class Counts:
        tokens: int = option(512, "tokens", parse=token_count("--tokens"))
        plain: int = option(3, "a plain count")

    assert config_from_dict(Counts, {"tokens": "4k"}).tokens == 4096
    assert config_from_dict(Counts, {"tokens": 2048}).tokens == 2048
    with pytest.raises(ConfigError) as err:
        config_from_dict(Counts, {"tokens": "4q"})
    assert err.value.fields[0] == "tokens"
    with pytest.raises(ConfigError):  # a count without a token parser stays an int
        config_from_dict(Counts, {"plain": "3"})


def test_an_option_tagged_once_given_twice_with_two_values_is_refused():
    """battery 9a: export/generate --factors a.json --factors b.json used b without a word (eval --factors takes
    both); other one-value options keep argparse's last-one-counts."""

    @dataclass(kw_only=True)
    class Cfg:
        factors: str = option(help="one file", tags={"once": True})
        seed: int = option(0, "a seed")

    p = argparse.ArgumentParser(exit_on_error=False)
    add_options(p, Cfg)
    assert config_from_args(Cfg, p.parse_args(["--factors", "a", "--factors", "a"])).factors == "a"
    with pytest.raises(argparse.ArgumentError, match=r"given twice \('a', then 'b'\)"):
        p.parse_args(["--factors", "a", "--factors", "b"])
    assert config_from_args(Cfg, p.parse_args(["--factors", "a", "--seed", "1", "--seed", "2"])).seed == 2


def test_a_recorded_value_that_follows_another_field_is_resolved_again_when_that_field_changes():
    """battery 10: ``search --config RUN --fitness joint`` of a constrained run kept the constrained fitness's
    resolved retrieval weight (1, 33 times joint's default) without a word; a field tagged ``follows`` is dropped
    from the record when its leader is given another value and it is not given itself."""
    from longrope.runs.search import SearchConfig

    p = argparse.ArgumentParser()
    add_options(p, SearchConfig)
    saved = config_to_dict(SearchConfig(model="tiny", data="d", output="o", target_length=512,
                                        fitness="constrained"))
    assert saved["retrieval_weight"] == 1.0

    def weight(*argv):
        return config_from_args(SearchConfig, p.parse_args(["-o", "new", *argv]), saved=saved).retrieval_weight

    assert weight("--fitness", "joint") == 0.03
    assert weight("--fitness", "joint", "--retrieval-weight", "0.5") == 0.5
    assert weight("--fitness", "constrained") == weight("--seed", "3") == 1.0
    # the fitness follows the strategy the same way (battery 10's note): another strategy, no fitness given, is
    # that strategy's default fitness, and the weight follows the fitness in turn
    joint = config_to_dict(SearchConfig(model="tiny", data="d", output="o", target_length=512))
    again = config_from_args(SearchConfig, p.parse_args(["-o", "new", "--strategy", "longrope2"]), saved=joint)
    assert (again.fitness, again.retrieval_weight) == ("needle", None)
    kept = config_from_args(SearchConfig, p.parse_args(["-o", "new", "--strategy", "longrope2", "--fitness", "joint"]),
                            saved=saved)
    assert (kept.fitness, kept.retrieval_weight) == ("joint", 0.03)


def test_a_recorded_value_the_run_chose_does_not_follow_its_leader():
    """battery 11b: ``--config RUN --strategy paper`` of a ``--fitness ppl`` (or constrained) run searched the joint
    fitness without a word: only a fitness the recorded strategy resolved follows a new strategy; a chosen one is
    kept (and checked with the new strategy). A recorded space setting the new strategy ignores (--min-factor under
    longrope2) is dropped rather than refused, since no flag unsets it."""
    from longrope.runs.search import SearchConfig

    p = argparse.ArgumentParser()
    add_options(p, SearchConfig)

    def again(saved, *argv):
        return config_from_args(SearchConfig, p.parse_args(["-o", "new", *argv]), saved=saved)

    ppl = config_to_dict(SearchConfig(model="tiny", data="d", output="o", target_length=512, fitness="ppl"))
    assert again(ppl, "--strategy", "paper").fitness == "ppl"
    constrained = config_to_dict(SearchConfig(model="tiny", data="d", output="o", target_length=512,
                                              fitness="constrained"))
    assert (again(constrained, "--strategy", "paper").fitness, again(constrained, "--strategy", "paper")
            .retrieval_weight) == ("constrained", 1.0)
    bounded = config_to_dict(SearchConfig(model="tiny", data="d", output="o", target_length=512, min_factor=1.1))
    assert again(bounded, "--strategy", "paper").min_factor == 1.1
    assert again(bounded, "--strategy", "longrope2").min_factor is None


def test_a_python_caller_s_values_of_another_type_are_refused_or_read_as_the_command_line_reads_them(tmp_path):
    """battery 11b: SearchConfig(output=Path(...)) was a JSON TypeError once the run had started, knobs={...} an
    AttributeError after the model loaded, base_factors=Path(...) an AttributeError, min_factor="1.1" a TypeError;
    step=True searched a grid of 1 and start_tokens=(0.5,) a fractional n̂. A path object is its text; another
    type is a ConfigError naming the field."""
    from pathlib import Path

    from longrope.errors import ConfigError
    from longrope.runs.search import SearchConfig

    base = {"model": "tiny", "data": "shards", "output": "o", "target_length": 512}
    cfg = SearchConfig(**{**base, "output": Path("o"), "data": Path("shards")}, reuse=tmp_path)
    assert (cfg.output, cfg.data, cfg.reuse) == ("o", "shards", str(tmp_path))
    assert SearchConfig(**base, seed=__import__("numpy").int64(3)).seed == 3
    for change, field in (({"knobs": {"population": 2}}, "knobs"), ({"min_factor": "1.1"}, "min_factor"),
                          ({"step": True}, "step"), ({"start_tokens": (0.5,)}, "start_tokens"),
                          ({"strategy": 5}, "strategy")):
        with pytest.raises(ConfigError, match=f"^{field} must be"):
            SearchConfig(**base, **change)
    # the same reading in every run config: finetune said 'factors is required' for a path object, the pipeline
    # took plan={...} and only=[...] as given
    from longrope.runs.pipeline import PipelineConfig
    from longrope.train.config import FinetuneConfig

    assert FinetuneConfig(model="tiny", factors=Path("f.json"), data="d", output="o").factors == "f.json"
    for change, field in (({"plan": {"stages": []}}, "plan"), ({"only": ["a"]}, "only")):
        with pytest.raises(ConfigError, match=f"^{field} must be text"):
            PipelineConfig(output="o", **change)


def test_a_numpy_integer_is_an_integer_for_every_check_and_is_recorded_as_one(tmp_path):
    """np.int64(1) was refused by some checks ("trials must be a positive integer, got np.int64(1)", batch_size,
    chunk_size, needle n, a config's samples, generate's max_new_tokens) and taken by others (lengths, seeds of the
    sample) (battery 11a). Now one test (options.is_integer) takes it everywhere; a config records a plain int."""
    import numpy as np

    from longrope.errors import UserError
    from longrope.evaluate.lm import check_chunk_size
    from longrope.models.generation import check_generation_counts
    from longrope.options import check_seed
    from longrope.runs.evaluate import PasskeyConfig, PplConfig
    from longrope.settings import check_decoding

    config = PplConfig(model="tiny", data="shards", lengths=[512], output=str(tmp_path / "e"), samples=np.int64(2),
                       seed=np.uint32(3))
    assert (type(config.samples), type(config.seed)) == (int, int)
    assert json.loads(json.dumps(config_to_dict(config)))["samples"] == 2
    assert type(PasskeyConfig(model="tiny", lengths=[512], output="p", trials=np.int16(1)).trials) is int
    check_seed(np.int64(1))
    check_chunk_size(np.int32(16))
    check_generation_counts(np.int64(3), np.int64(0))
    check_decoding(True, np.float32(0.7), np.float32(0.9), np.int64(4), "switch", None)
    for bad in (True, 1.0, np.float64(2.0), "2"):
        with pytest.raises((UserError, ConfigError)):
            PplConfig(model="tiny", data="shards", lengths=[512], output="e", samples=bad)


def test_a_path_object_where_a_path_goes_is_read_as_its_string(tmp_path):
    """PplConfig(output=Path(..)) / factors=(Path(..),) / model=Path(..) passed the checks, then the run failed
    writing config.json ("Object of type PosixPath is not JSON serializable") after the model was loaded;
    data=Path(..) was refused as naming no shard folder (battery 11a)."""
    from pathlib import Path

    from longrope.runs.evaluate import PplConfig
    from longrope.tools import ExportConfig

    config = PplConfig(model=Path("tiny"), data=tmp_path / "shards", lengths=[512], output=tmp_path / "e",
                       factors=(Path("yarn.json"), "pi.json"))
    assert (config.model, config.data, config.output) == ("tiny", str(tmp_path / "shards"), str(tmp_path / "e"))
    assert config.factors == ("yarn.json", "pi.json")
    assert json.loads(json.dumps(config_to_dict(config)))["factors"] == ["yarn.json", "pi.json"]
    assert ExportConfig(model="tiny", factors=Path("f.json"), output=tmp_path / "x").output == str(tmp_path / "x")


def test_a_numpy_bool_or_float_is_read_as_the_plain_value_by_every_later_check():
    """np.True_ (a numpy comparison's) was refused as "quiet must be True or False, got np.True_", and np.float32
    passed the shape check then was refused by a field's own check ("learning_rate must be a finite number > 0,
    got np.float32(0.0001)") (battery 12b). check_shapes reads both as the plain bool / float the command line
    gives; another type is still refused."""
    import numpy as np

    from longrope.runs.evaluate import PplConfig
    from longrope.runs.finetune import FinetuneConfig

    config = FinetuneConfig(model="tiny", data="trs", factors="f.json", output="o", lora=np.bool_(True),
                            learning_rate=np.float32(1e-4), short_share=np.float32(0.25))
    assert (config.lora, type(config.lora), type(config.learning_rate), config.short_share) == (True, bool, float, 0.25)
    assert PplConfig(model="tiny", data="s", lengths=[512], output="e", quiet=np.bool_(False)).quiet is False
    with pytest.raises(ConfigError):
        PplConfig(model="tiny", data="s", lengths=[512], output="e", quiet=np.int64(1))


def test_an_on_off_argument_of_the_api_is_a_bool(tmp_path):
    """A string is truthy whatever it says: export_hf(overwrite='no') replaced an existing export,
    generate(do_sample='false') sampled, load_model(require_rope='no') skipped the check (battery 19). Every
    on/off argument goes through options.check_flag; a numpy bool is a bool."""
    import numpy as np

    from longrope.errors import UserError
    from longrope.models import export_hf, generate, load_model
    from longrope.models.export import check_output_folder
    from longrope.options import check_flag
    from longrope.rope import make_baseline

    assert check_flag(np.bool_(True), "x") is True and check_flag(False, "x") is False
    with pytest.raises(UserError, match="overwrite must be True or False, got 'no'"):
        check_output_folder(tmp_path / "out", "no")
    model, tok = load_model("tiny")
    factors = make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512)
    (tmp_path / "out").mkdir()
    for call in (lambda: export_hf(model, tok, factors, tmp_path / "out", overwrite="no"),
                 lambda: generate(model, tok, "Once", 2, factor_set=factors, do_sample="false"),
                 lambda: make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512,
                                       truncate="no"),
                 lambda: load_model("tiny", require_rope="no")):
        with pytest.raises(UserError, match="must be True or False"):
            call()
    assert list((tmp_path / "out").iterdir()) == []


def test_every_run_function_takes_its_own_config_and_nothing_else():
    """run_ppl(None), a dict or another command's config was an AttributeError deep in the run, get_run(['x']) a
    TypeError (battery 19): every run refuses anything but its config dataclass before any work."""
    from longrope.errors import UserError
    from longrope.runs import RUNS, get_run

    with pytest.raises(UserError, match="a run command is a name"):
        get_run(["search"])
    specs = [get_run(c) for c in RUNS]
    for spec, other in zip(specs, specs[1:] + specs[:1]):
        for wrong in (None, {"model": "tiny"}, object.__new__(other.config)):
            with pytest.raises(UserError, match=f"takes a {spec.config.__name__}, got"):
                spec.run(wrong)
    from longrope.train import finetune

    with pytest.raises(UserError, match="takes a FinetuneConfig, got dict"):
        finetune({"model": "tiny"})


def test_an_empty_required_text_is_refused_in_every_command(tmp_path, capsys):
    """-o "" was read as the current folder ('--output . is the current folder or holds it', 'baseline: . is a
    folder where a file is to be written'): an empty required setting is refused by its name (battery 20c)."""
    from longrope.cli import main

    for argv in (["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", ""],
                 ["eval", "ppl", "--model", "tiny", "--data", str(tmp_path), "--lengths", "256", "-o", ""],
                 ["export", "--model", " ", "--factors", "f.json", "-o", str(tmp_path / "x")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is required, got an empty text" in err[0], err


def test_a_config_changed_after_it_was_built_is_checked_again_by_its_run(tmp_path):
    """A config reused from an earlier run and edited (cfg.steps = -1) skipped the constructor's checks: finetune ran
    0 steps into a new run folder, a NaN learning rate was torch's ValueError, an unknown dtype a KeyError
    (battery 20d). Every run checks its config's fields again before any work."""
    from longrope.runs import get_run
    from longrope.runs.evaluate import PplConfig
    from longrope.train import FinetuneConfig

    finetune = get_run("finetune").run
    for name, value, words in (("steps", -1, "steps must be an integer"), ("learning_rate", float("nan"), "finite"),
                               ("dtype", "fp16x", "dtype must be one of")):
        cfg = FinetuneConfig(model="tiny", factors=str(tmp_path / "f.json"), data=str(tmp_path), output=str(tmp_path / "run"))
        setattr(cfg, name, value)
        with pytest.raises(ConfigError, match=words):
            finetune(cfg)
        assert not (tmp_path / "run").exists()
    ppl = PplConfig(model="tiny", data=str(tmp_path), lengths=(64,), output=str(tmp_path / "ppl"))
    ppl.samples = 0
    with pytest.raises(ConfigError, match="samples"):
        get_run("eval ppl").run(ppl)
    assert not (tmp_path / "ppl").exists()


def test_an_output_name_with_a_control_character_is_refused_in_every_command(tmp_path, capsys):
    """-o $'runs/x\\n' (a line copied with its end) or a name ending in '\\r' (a script saved with CRLF ends) made a
    file or run folder whose name no later command line or printed path showed as one line (battery 20 open item).
    Every command's output is refused by one check (options.check_shapes), before any work."""
    from longrope.cli import main

    for name in ("x\ny.json", "y.json\r", "a\tb"):
        for argv in (["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o"],
                     ["eval", "ppl", "--model", "tiny", "--data", str(tmp_path), "--lengths", "256", "-o"],
                     ["tokenize", "--tokenizer", "tiny", "--input", str(tmp_path), "-o"]):
            assert main([*argv, str(tmp_path / name)]) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "holds a control character" in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []
