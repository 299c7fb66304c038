"""Settings several commands share (``longrope.settings``): one default each, one check each."""

from __future__ import annotations

import dataclasses
import inspect

import numpy as np
import pytest

from longrope.errors import ConfigError, UserError
from longrope.settings import PASSKEY_DEPTHS, check_heldout_fraction, check_passkey_depths


def _default(cls, name):
    return {f.name: f for f in dataclasses.fields(cls)}[name].default


def test_heldout_fraction_check():
    assert check_heldout_fraction(0) == 0.0 and check_heldout_fraction(1) == 1.0
    assert check_heldout_fraction(np.float32(0.25)) == 0.25
    for bad, shown in ((1.5, "1.5"), (-0.1, "-0.1"), (float("nan"), "nan"), (True, "True"), ("0.5", "'0.5'"),
                       (None, "None")):
        with pytest.raises(ConfigError) as err:
            check_heldout_fraction(bad)
        assert str(err.value) == f"heldout_fraction must be in [0, 1], got {shown}"
    with pytest.raises(ConfigError) as err:
        check_heldout_fraction(2, "split_share")
    assert err.value.render(lambda f: "--" + f.replace("_", "-")) == "--split-share must be in [0, 1], got 2"


def test_passkey_depths_check():
    assert check_passkey_depths([0, 0.5, 1]) == (0.0, 0.5, 1.0)
    assert check_passkey_depths(np.array([0.25])) == (0.25,)
    for bad, shown in (((), "[]"), ([0.5, 1.5], "[0.5, 1.5]"), ([True], "[True]"), ("0.5", "'0.5'"),
                       (0.5, "0.5"), ({"a": 1}, "{'a': 1}"), ([float("nan")], "[nan]")):
        with pytest.raises(ConfigError) as err:
            check_passkey_depths(bad)
        assert str(err.value) == f"depths must be numbers in [0, 1], got {shown}"


def test_every_passkey_depth_default_is_the_shared_one():
    from longrope.evaluate.passkey import passkey_accuracy
    from longrope.runs.compare import CompareConfig
    from longrope.runs.demo import DemoConfig
    from longrope.runs.evaluate import PasskeyConfig

    assert _default(PasskeyConfig, "depths") == PASSKEY_DEPTHS
    assert _default(DemoConfig, "passkey_depths") == PASSKEY_DEPTHS
    assert DemoConfig().passkey_depths == PASSKEY_DEPTHS
    assert _default(CompareConfig, "passkey_depths") == PASSKEY_DEPTHS
    assert inspect.signature(passkey_accuracy).parameters["depths"].default == PASSKEY_DEPTHS


def test_every_passkey_depth_check_is_the_shared_one():
    """Each front end refuses the same depths with the same message, naming the field as its user gave it."""
    from longrope.evaluate.passkey import passkey_accuracy
    from longrope.runs.compare import CompareConfig
    from longrope.runs.demo import DemoConfig
    from longrope.runs.evaluate import PasskeyConfig

    bad = (0.5, 1.5)
    with pytest.raises(ConfigError) as err:
        PasskeyConfig(model="m", lengths=(64,), output="o", depths=bad)
    assert str(err.value) == "depths must be numbers in [0, 1], got [0.5, 1.5]"
    with pytest.raises(ConfigError) as err:
        DemoConfig(passkey_depths=bad)
    assert str(err.value) == "passkey_depths must be numbers in [0, 1], got [0.5, 1.5]"
    with pytest.raises(ConfigError) as err:
        CompareConfig(data="d", ratios=("1x",), methods={"m": {"model": "m", "factors": {}}}, passkey_depths=bad)
    assert str(err.value) == "passkey_depths must be numbers in [0, 1], got [0.5, 1.5]"
    with pytest.raises(UserError) as err:  # checked before the model or the tokenizer is touched
        passkey_accuracy(None, None, [64], depths=bad, bos_id=None)
    assert str(err.value) == "depths must be numbers in [0, 1], got [0.5, 1.5]"
    for ok in ([0.0], [1]):
        assert PasskeyConfig(model="m", lengths=(64,), output="o", depths=tuple(ok)).depths == tuple(ok)


def test_a_repeated_passkey_depth_is_refused_by_every_command(capsys):
    """Two keys under one (length, depth, trial) would make the per-depth cells and the paired comparison of
    sets ambiguous: a repeated depth is refused by the one check, so eval passkey, the demo and plans agree."""
    from longrope.cli import main

    with pytest.raises(ConfigError, match="must be distinct depths"):
        check_passkey_depths([0.5, 0.25, 0.5])
    for argv in (["eval", "passkey", "--model", "tiny", "--lengths", "256", "--depths", "0.5,0.5", "-o", "x"],
                 ["demo", "--passkey-depths", "0,1,1.0", "-o", "x"]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert "distinct depths" in err and len(err.splitlines()) == 1, err


def test_a_passkey_trial_count_past_the_bound_is_refused_at_once(tmp_path, capsys):
    """Every key's prompt is built before the model loads, so --trials 2,000,000,000 ran for days without a word:
    the count is bounded by the one passkey setting, alike for eval passkey, the demo and a plan's compare stage."""
    import json

    from longrope.cli import main
    from longrope.settings import PASSKEY_MAX_TRIALS

    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "data", "run": "tokenize", "inputs": ["embedded"]},
        {"name": "c", "run": "compare", "data": "@data", "ratios": ["1x"], "passkey_trials": PASSKEY_MAX_TRIALS + 1,
         "methods": {"none": {"model": "{model}", "factors": {"1x": "none"}}}}]}))
    big = str(PASSKEY_MAX_TRIALS + 1)
    for argv in (["eval", "passkey", "--model", "tiny", "--lengths", "256", "--trials", big, "-o", str(tmp_path / "x")],
                 ["demo", "--passkey-trials", big, "-o", str(tmp_path / "x")],
                 ["pipeline", "--plan", str(plan), "-o", str(tmp_path / "x")]):
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert f"[0, {PASSKEY_MAX_TRIALS:,}]" in err or f"[1, {PASSKEY_MAX_TRIALS:,}]" in err, err
        assert len(err.splitlines()) == 1 and not (tmp_path / "x").exists()


def test_the_api_arguments_of_shared_settings_pass_their_one_check(tmp_path):
    """build_passkey_prompt took depth '0.5' and True, key '12345' and 12345.7, bos_id 1.5 (as id 1), and gave
    'x' to float()/int() (ValueError tracebacks); evaluate_perplexity took bos_id 1.5 and True; needle_prompts'
    depths 'x' was a ValueError; sample_documents took heldout_fraction 2.0 when every document's role was pinned;
    passkey_accuracy(lengths=[]) measured nothing (battery 19)."""
    from longrope.data import sample_documents
    from longrope.evaluate import build_passkey_prompt, evaluate_perplexity, needle_prompts, passkey_accuracy
    from tests.data.test_doc_sampling import make_corpus
    from tests.evaluate.eval_helpers import make_tokenizer, tiny_llama

    tok, model = make_tokenizer(), tiny_llama()
    ok = {"depth": 0.5, "key": 12345, "bos_id": 1}
    for bad in ({"depth": "0.5"}, {"depth": True}, {"depth": "x"}, {"key": "12345"}, {"key": 12345.7},
                {"key": "abc"}, {"bos_id": 1.5}, {"bos_id": "x"}, {"joiner": 5}):
        kw = ok | bad
        with pytest.raises(UserError, match=next(iter(bad)).replace("key", "pass key")):
            build_passkey_prompt(tok, 200, kw.pop("key"), kw.pop("depth"), **kw)
    docs = [np.arange(3, 90)]
    for bos in (1.5, True):
        with pytest.raises(UserError, match="bos_id must be an integer"):
            evaluate_perplexity(model, docs, 32, bos_id=bos)
    with pytest.raises(ConfigError, match="depths must be numbers"):
        needle_prompts(tok, 200, 2, seed=0, bos_id=1, depths="x")
    with pytest.raises(UserError, match="lengths is empty"):
        passkey_accuracy(model, tok, [], bos_id=1)
    corpus = make_corpus(tmp_path / "c", [50] * 2, roles=["heldout", "search"])
    with pytest.raises(ConfigError, match="heldout_fraction must be in"):
        sample_documents(corpus, 10, 1, seed=0, heldout_fraction=2.0)


def test_the_decoding_rule_is_one_for_the_generate_config_and_generate():
    """longrope generate's config checked only which sampling settings apply together; the bounds (a temperature
    > 0, top-p in (0, 1]) were a second check in the command's run, and generate() had a third copy of the first
    rule: GenerateConfig(sample=True, temperature=-1) was taken by a Python caller or a rerun's config until the
    command ran (battery 19 open item). Both now make settings.check_decoding, each naming its own settings."""
    from longrope.models.generation import generate
    from longrope.tools import GenerateConfig

    base = {"model": "tiny", "factors": "f.json", "prompt": "hi", "max_new_tokens": 2}
    cases = (({"sample": True, "temperature": -1.0}, "temperature must be a number > 0"),
             ({"sample": True, "temperature": 1e-9}, "is below 1e-06"),
             ({"sample": True, "top_p": 1.5}, r"top_p must be in \(0, 1\]"),
             ({"temperature": 0.5}, "temperature applies to sampling: set sample"),
             ({"seed": 5}, "seed applies to sampling: set sample"),  # ignored without a word before (battery 20)
             ({"mode": "long", "cache_policy": "keep"}, "cache_policy applies to mode 'switch'"))
    api_names = {"sample": "do_sample"}
    for given, match in cases:
        with pytest.raises(ConfigError, match=match):
            GenerateConfig(**base, **given)
        kwargs = {api_names.get(k, k): v for k, v in given.items()}
        with pytest.raises(ConfigError, match=match.replace("set sample", "set do_sample")):
            generate(object(), None, [1], 2, **kwargs)  # refused before the model is looked at
    assert GenerateConfig(**base, sample=True, temperature=0.5, top_p=0.9).temperature == 0.5
    assert GenerateConfig(**base, sample=True, seed=0).seed == 0 and GenerateConfig(**base).seed is None


def test_numpy_float_bounds_are_checked_without_numpy_warnings():
    """A budget, a compare ratio or goal bound and a search-space bound given as a numpy float are checked by the
    one finiteness test (options.is_finite_number): np.float32 compared with sys.float_info.max warned "overflow
    encountered in cast", a warning nobody can act on (battery 21b); 10**400 and NaN stay refused."""
    import warnings

    import numpy as np
    import pytest

    from longrope.errors import UserError
    from longrope.options import is_finite_number
    from longrope.runs.compare import _parse_operand
    from longrope.search.loop import StopRules
    from longrope.settings import check_budget

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert check_budget(np.float32(5.0), "max_seconds") == 5.0
        assert StopRules(max_evals=np.float32(3.0)).max_evals == 3.0
        assert _parse_operand(np.float32(0.5)) == (0.5, None)
    assert not any(map(is_finite_number, (10**400, float("nan"), np.float32("inf"), True, "1")))
    assert all(map(is_finite_number, (10**300, np.int64(3), np.float16(2.0), 0.5)))
    with pytest.raises(UserError):
        check_budget(10**400, "max_seconds")
