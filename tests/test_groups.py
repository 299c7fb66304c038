"""The shared setting groups (``longrope.groups``): one declaration, one default and one check per field, in
every command that takes it; lengths read as 16k or 8x through one parser; one meaning of a budget of 0."""

from __future__ import annotations

import dataclasses

import pytest

from longrope.errors import ConfigError, UserError
from longrope.groups import GROUPS, group_fields
from longrope.options import config_from_dict, field_flags, parse_length, parse_lengths, token_count
from longrope.settings import (
    DEVICE,
    HELDOUT_FRACTION,
    PASSKEY_DEPTHS,
    PASSKEY_MODE,
    PASSKEY_TRIALS,
    SEED,
    SPLIT,
    WINDOW_SAMPLES,
    WINDOWS_PER_DOC,
    check_budget,
)

#: Every concept's one default (``data`` has none: it is required, or None where optional).
DEFAULTS = {"samples": WINDOW_SAMPLES, "seed": SEED, "split": SPLIT, "heldout_fraction": HELDOUT_FRACTION,
            "windows_per_doc": WINDOWS_PER_DOC, "bos": True, "trials": PASSKEY_TRIALS, "depths": PASSKEY_DEPTHS,
            "mode": PASSKEY_MODE, "device": DEVICE, "dtype": "float32"}


def _configs() -> dict:
    from longrope.runs import RUNS, get_run
    from longrope.tools import BaselineConfig, ExportConfig, GenerateConfig, InspectConfig, TokenizeConfig

    out = {command: get_run(command).config for command in RUNS}
    out.update(baseline=BaselineConfig, export=ExportConfig, generate=GenerateConfig, inspect=InspectConfig,
               tokenize=TokenizeConfig)
    return out


def _field(cls, name):
    return {f.name: f for f in dataclasses.fields(cls)}[name]


def test_every_concept_has_one_default_everywhere():
    from longrope.runs.demo import DEMO_SAMPLES, DemoConfig

    seen = {concept: [] for group in GROUPS.values() for concept in group}
    for command, cls in _configs().items():
        for concept in seen:
            for f in group_fields(cls, concept):
                seen[concept].append(command)
                if concept == "data":
                    assert f.default in (dataclasses.MISSING, None), (command, f.name)
                elif (cls, concept) == (DemoConfig, "samples"):  # the demo's declared sizing, for 2 CPU cores
                    assert f.default == DEMO_SAMPLES
                elif concept == "seed" and f.default is None:  # generate's: given with --sample only, else the one
                    assert f.metadata["default_text"] == str(DEFAULTS[concept]), (command, f.name)
                else:
                    assert f.default == DEFAULTS[concept], (command, f.name)
    # the groups are used by the commands the issue names
    for concept, commands in {"heldout_fraction": ["search", "eval ppl", "eval passkey", "finetune"],
                              "seed": ["search", "eval ppl", "eval passkey", "eval ruler", "finetune", "demo",
                                       "generate"],
                              "windows_per_doc": ["search", "eval ppl"], "trials": ["eval passkey", "demo"],
                              "depths": ["eval passkey", "demo"],
                              "device": ["search", "eval ppl", "eval passkey", "eval ruler", "finetune", "demo",
                                         "generate"]}.items():
        assert set(commands) <= set(seen[concept]), (concept, seen[concept])


@pytest.mark.parametrize("name", ["seed", "heldout_fraction", "windows_per_doc", "split", "device", "depths",
                                  "trials"])
def test_no_command_declares_a_shared_setting_by_hand(name):
    """A field with a shared setting's name is the group's field (its default and check), in every command."""
    other_concepts = {("tokenize", "split")}  # a hub dataset's split (train, validation), not the document split
    for command, cls in _configs().items():
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if name in fields and (command, name) not in other_concepts:
            assert fields[name].metadata.get("concept") == name, (command, name)


_MINIMAL = {"search": {"model": "m", "data": "d", "output": "o", "target_length": 64},
            "eval ppl": {"model": "m", "data": "d", "output": "o", "lengths": [64]},
            "eval passkey": {"model": "m", "data": "d", "output": "o", "lengths": [64]},
            "finetune": {"model": "m", "factors": "f", "data": "d", "output": "o"},
            "demo": {},
            "generate": {"model": "m", "factors": "f", "prompt": "hi", "max_new_tokens": 2}}


@pytest.mark.parametrize(("concept", "bad", "message"), [
    ("seed", -1, "must be an integer in [0, 4,294,967,295], got -1"),
    ("heldout_fraction", 1.5, "must be in [0, 1], got 1.5"),
    ("windows_per_doc", 0, "must be an integer in [1, 2,147,483,647], got 0"),
    ("samples", 0, "must be an integer in [1, 2,147,483,647], got 0"),
    ("depths", [0.5, 1.5], "must be numbers in [0, 1], got [0.5, 1.5]"),
    ("split", "train", "must be one of heldout, search, all, got 'train'"),
    ("dtype", "float64", "must be one of float32, bfloat16, float16, got 'float64'"),
])
def test_every_command_refuses_a_bad_value_with_the_one_check(concept, bad, message):
    checked = 0
    for command, values in _MINIMAL.items():
        cls = _configs()[command]
        for f in group_fields(cls, concept):
            with pytest.raises(ConfigError) as err:
                config_from_dict(cls, {**values, f.name: bad})
            assert str(err.value) == f"{f.name} {message}", command
            flag = field_flags(cls)[f.name]
            assert err.value.render(field_flags(cls).get).startswith(flag + " "), command
            checked += 1
    assert checked >= 2, concept


def test_a_dtype_alias_is_kept_as_given():
    """Recorded configurations with another name of a dtype (bf16) still load, with that name (a search's resume
    identity holds it)."""
    from longrope.runs.search import SearchConfig

    assert SearchConfig(model="m", data="d", output="o", target_length=64, dtype="bf16").dtype == "bf16"


def test_passkey_trials_bounds():
    from longrope.runs.demo import DemoConfig
    from longrope.runs.evaluate import PasskeyConfig

    assert DemoConfig(passkey_trials=0).passkey_trials == 0  # the demo skips the passkey test
    with pytest.raises(ConfigError, match=r"^trials must be an integer in \[1, "):
        PasskeyConfig(model="m", lengths=(64,), output="o", trials=0)
    with pytest.raises(ConfigError, match=r"^passkey_trials must be an integer in \[0, .*\(0 skips"):
        DemoConfig(passkey_trials=-1)


# -- lengths ------------------------------------------------------------------------------------------


def test_one_length_parser():
    assert parse_lengths("2048,4k,8K") == [2048, 4096, 8192]
    assert parse_lengths("4k,2x,1.5x", ratios=True) == [4096, "2x", "1.5x"]
    assert parse_length("8x", "--target-length", ratios=True) == "8x"
    with pytest.raises(UserError, match=r"^--lengths: a length is a whole number of tokens \(e.g. 2048 or 4k\), got '8x'$"):
        parse_lengths("8x")  # a ratio only where the model is known
    for bad in ("0.5x", "x", "-2x", "nanx", "1000000000000x"):
        with pytest.raises(UserError, match="a context ratio is a number from 1 to 16,777,216 before 'x'"):
            parse_length(bad, "--target-length", ratios=True)
    # a count of tokens where no ratio applies (a stride, a chunk, L itself): 2048 or 2k
    assert token_count("--stride")("1k") == 1024 and token_count("--stride")("1") == 1
    with pytest.raises(UserError, match=r"^--stride must be a number of tokens \(e.g. 2048 or 2k\), got '1x'$"):
        token_count("--stride")("1x")


def test_a_length_past_the_largest_names_its_flag():
    """A length past MAX_TOKENS given as tokens, 16k or a ratio of the model's L was refused by a later check as
    "length must be at most 16,777,216 tokens" without naming the flag it came from (battery 25c)."""
    from longrope.runs.evaluate import PplConfig

    for text in ("20000000", "16385k"):
        with pytest.raises(UserError, match=r"^--lengths: a length is at most 16,777,216 tokens, got "):
            parse_lengths(f"256,{text}")
    with pytest.raises(UserError, match=r"^--lengths: 65537x of the model's 256 tokens is 16,777,472 tokens, more"):
        config_from_dict(PplConfig, {"model": "tiny", "data": "d", "output": "o", "lengths": "1x,65537x"})
    assert parse_lengths("16384k") == [16_777_216]
    with pytest.raises(ConfigError, match=r"^lengths must be integers in \[2, 16,777,216\] tokens, got \[256, 20000000\]"):
        PplConfig(model="tiny", data="d", output="o", lengths=(256, 20_000_000))  # a recorded config's, a plan's


def test_every_length_takes_16k_and_8x_from_the_model(tmp_path):
    """Every length a command takes is read by one parser: tokens, 16k, or a ratio of the model's L (resolved
    from the model's config when the config is built: config.json records tokens)."""
    from longrope.models import read_rope_info
    from longrope.runs.demo import DemoConfig
    from longrope.runs.evaluate import PplConfig
    from longrope.runs.search import SearchConfig
    from longrope.tools import BaselineConfig, ExportConfig

    model = "tiny"  # the embedded model: its config is read, no weights
    L = read_rope_info(model).original_max_position_embeddings
    search = config_from_dict(SearchConfig, {"model": model, "data": "d", "output": "o", "target_length": "8x"})
    assert search.target_length == 8 * L
    assert SearchConfig(model=model, data="d", output="o", target_length="2k").target_length == 2048
    ppl = config_from_dict(PplConfig, {"model": model, "data": "d", "output": "o", "lengths": "1x,4x,1k"})
    assert ppl.lengths == tuple(sorted({L, 4 * L, 1024}))
    assert DemoConfig(model=model, target_length="4x", lengths=("1x", "2x")).lengths == (L, 2 * L)
    assert BaselineConfig(model=model, method="pi", target_length="2x", output="o").target_length == 2 * L
    # a ratio in a baseline is of the L the factors are made for: --original-length when given
    assert BaselineConfig(model=model, method="pi", target_length="2x", output="o", original_length=100
                          ).target_length == 200
    assert ExportConfig(model=model, factors="f", output="o", target_length="16k").target_length == 16384
    with pytest.raises(ConfigError, match="target_length is a ratio of the model's original context, which cannot "
                                          "be read from"):
        SearchConfig(model=str(tmp_path / "nowhere"), data="d", output="o", target_length="8x")
    with pytest.raises(ConfigError, match=r"^lengths: a length is a whole number of tokens"):
        config_from_dict(PplConfig, {"model": model, "data": "d", "output": "o", "lengths": "abc"})


# -- budgets -----------------------------------------------------------------------------------------


def test_a_budget_of_zero_means_no_limit_in_every_command():
    from longrope.runs.demo import DemoConfig
    from longrope.runs.search import SearchConfig
    from longrope.search.loop import StopRules

    assert check_budget(0, "max_seconds") is None and check_budget(None, "x") is None
    assert check_budget(2, "max_seconds") == 2.0
    search = SearchConfig(model="m", data="d", output="o", target_length=64, max_evals=0, max_seconds=0)
    assert (search.max_evals, search.max_seconds) == (None, None)
    demo = DemoConfig(max_evals=0, max_seconds=0)
    assert (demo.max_evals, demo.max_seconds) == (None, None)
    assert StopRules(0, 0) == StopRules()
    for bad in (-1, float("inf"), "10"):
        for make in (lambda v: SearchConfig(model="m", data="d", output="o", target_length=64, max_seconds=v),
                     lambda v: DemoConfig(max_seconds=v)):
            with pytest.raises(ConfigError, match=r"^max_seconds must be a number >= 0 \(0 or unset: no limit\)"):
                make(bad)
    # one spelling: the demo's time budget is the search's --max-seconds
    assert field_flags(DemoConfig)["max_seconds"] == field_flags(SearchConfig)["max_seconds"] == "--max-seconds"


def test_a_python_caller_s_values_of_another_shape_are_refused_naming_the_field():
    """battery 9a: PplConfig(factors="yarn.json") looked for a factor file 'y', RulerConfig(tasks="vt") for a task
    'v', lengths=512 was a TypeError, output=None one after the config was accepted, quiet="no" was on."""
    from longrope.runs.evaluate import PplConfig
    from longrope.runs.ruler import RulerConfig
    from longrope.tools import TokenizeConfig

    base = {"model": "tiny", "data": "shards", "lengths": (512,), "output": "out"}
    for change, field in (({"factors": "yarn.json"}, "factors"), ({"lengths": 512}, "lengths"),
                          ({"output": None}, "output"), ({"quiet": "no"}, "quiet")):
        with pytest.raises(ConfigError, match=field):
            PplConfig(**{**base, **change})
    with pytest.raises(ConfigError, match=r"tasks must be a list or tuple of values, got 'vt' \(write \['vt'\]"):
        RulerConfig(model="tiny", lengths=(512,), output="out", tasks="vt")
    with pytest.raises(ConfigError, match="input"):
        TokenizeConfig(tokenizer="tiny", input="books", output="out")
    assert PplConfig(**{**base, "factors": ["yarn.json"], "lengths": "512,1k"}).lengths == (512, 1024)


def test_a_ratio_is_of_the_original_length_a_command_is_given_in_every_command():
    """longrope baseline read --target-length 4x of --original-length, export and generate of the model's L (so
    `export --factors ref.csv --original-length 64 --target-length 4x` wrote L' = 4 × the model's L over L = 64):
    resolve_lengths now reads every ratio of the L the factors are for."""
    from longrope.tools import BaselineConfig, ExportConfig, GenerateConfig

    both = {"model": "tiny", "original_length": 64, "target_length": "4x"}
    assert BaselineConfig(method="pi", output="f.json", **both).target_length == 256
    assert ExportConfig(factors="f.csv", output="o", **both).target_length == 256
    assert GenerateConfig(factors="f.csv", prompt="hi", max_new_tokens=1, **both).target_length == 256
    assert ExportConfig(factors="f.csv", output="o", model="tiny", target_length="4x").target_length == 4 * 256


def test_an_empty_text_in_a_python_caller_s_list_of_names_is_refused_as_the_command_line_drops_it():
    """Battery 24b: FinetuneConfig(lora=True, lora_trainable=["", "embed"]) trained every weight of the model
    fully beside the adapters ('' is in every parameter name), exclude=[""] read the current folder; the
    command line's "embed," is ("embed",)."""
    from longrope.cli import build_parser
    from longrope.options import config_from_args
    from longrope.train import FinetuneConfig

    req = {"model": "tiny", "factors": "f.json", "data": "d", "output": "o"}
    with pytest.raises(ConfigError, match=r"lora_trainable holds an empty text in \['', 'embed'\]"):
        FinetuneConfig(**req, lora=True, lora_trainable=["", "embed"])
    with pytest.raises(ConfigError, match="exclude holds an empty text"):
        FinetuneConfig(**req, exclude=[" "])
    args = build_parser().parse_args(["finetune", "--model", "tiny", "--factors", "f.json", "--data", "d", "-o", "o",
                                      "--lora", "--lora-trainable", "embed,"])
    assert config_from_args(FinetuneConfig, args).lora_trainable == ("embed",)


def test_split_all_is_said_to_include_the_training_documents_wherever_it_is_offered():
    """Battery 28b's open item: `eval ppl --split all` measured the train= documents too, and --help did not say so."""
    import dataclasses

    from longrope.runs.evaluate import PasskeyConfig, PplConfig

    for cls in (PplConfig, PasskeyConfig):
        split = next(f for f in dataclasses.fields(cls) if f.name == "split")
        assert "all (every document, train= ones included)" in split.metadata["help"], cls
