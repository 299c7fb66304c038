"""``python -m tools.train_tiny`` (:mod:`tools.train_tiny.run`) end to end on a microscopic synthetic corpus
(seconds, no downloads), and the checks it makes before any work."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longrope.cli import main as longrope_main
from longrope.errors import UserError
from tools.train_tiny import run as train_tiny
from tools.train_tiny.__main__ import main
from tools.train_tiny.config import TinyConfig

SMALL = ["--vocab-size", "320", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "1",
         "--intermediate-size", "64", "--context", "64", "--batch-size", "2", "--max-steps", "6",
         "--warmup-steps", "2", "--eval-every", "3", "--eval-windows", "2", "--report-passkey-trials", "0"]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran to and fro in an old green park by the river".split()
    d = tmp_path_factory.mktemp("texts")
    for name in ("alpha", "beta", "gamma", "delta"):
        (d / f"{name}.txt").write_text(" ".join(rng.choice(words, 2500)) + "\n")
    return d


def _run(text_dir, out, cache, *extra):
    args = ["--text-dir", str(text_dir), "--search-docs", "beta", "--heldout-docs", "gamma",
            "--out", str(out), "--cache-dir", str(cache), *SMALL, *extra]
    assert main(args) == 0


def test_train_tiny_end_to_end_is_loadable_and_reproducible(text_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _run(text_dir, tmp_path / "a", tmp_path / "ca")
    tiny = tmp_path / "a" / "tiny"
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny)
    assert model.config.max_position_embeddings == 64
    assert tok("the cat")["input_ids"][0] == tok.bos_token_id
    info = json.loads((tiny / "training.json").read_text())
    assert info["run"]["steps"] == 6 and info["seed"] == 0
    assert info["command"].startswith("python -m tools.train_tiny --output ")
    assert "--max-steps 6" in info["command"] and "--text-dir" in info["command"]
    assert info["report"]["target_length"] == 512
    assert len((tiny / "train_log.jsonl").read_text().splitlines()) == 2
    split = json.loads((tmp_path / "a" / "corpus" / "split.json").read_text())
    assert split["roles"] == {"train": ["alpha", "delta"], "search": ["beta"], "heldout": ["gamma"]}
    assert (tmp_path / "a" / "corpus" / "heldout" / "gamma.txt").exists()
    assert not (tmp_path / "a" / "corpus" / "train").exists()
    # same seed, fresh cache: bit-identical weights
    _run(text_dir, tmp_path / "b", tmp_path / "cb")
    wa, wb = load_file(tiny / "model.safetensors"), load_file(tmp_path / "b" / "tiny" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    # a different seed gives different weights
    _run(text_dir, tmp_path / "c", tmp_path / "cc", "--seed", "1")
    wc = load_file(tmp_path / "c" / "tiny" / "model.safetensors")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_bad_flags_are_user_errors(text_dir, tmp_path, capsys):
    args = ["--text-dir", str(text_dir), "--out", str(tmp_path), "--cache-dir", str(tmp_path)]
    assert main(args) == 2  # --text-dir without naming search/held-out docs
    assert "--search-docs" in capsys.readouterr().err
    assert main([*args, "--search-docs", "beta", "--heldout-docs", "nope"]) == 2
    assert "not in the corpus" in capsys.readouterr().err
    assert main([*args, "--search-docs", "beta", "--heldout-docs", "gamma", "--hidden-size", "30",
                 "--num-heads", "4"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m tools.train_tiny: error: --hidden-size") and err.count("\n") == 1
    # the installed command line says where it went, in one line
    assert longrope_main(["train-tiny", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("longrope train-tiny: error: train-tiny moved") and err.count("\n") == 1


def test_copy_and_periodic_passkey_flags_are_recorded(text_dir, tmp_path):
    _run(text_dir, tmp_path / "o", tmp_path / "c", "--copy-fraction", "0.2", "--eval-passkey-trials", "2",
         "--no-resume")
    info = json.loads((tmp_path / "o" / "tiny" / "training.json").read_text())
    assert info["config"]["copy_fraction"] == 0.2 and info["config"]["eval_passkey_trials"] == 2
    assert "--copy-fraction 0.2" in info["command"] and "--eval-passkey-trials 2" in info["command"]


def test_config_of_a_run_retrains_to_the_same_weights_and_report_only_recomputes_the_report(text_dir, tmp_path,
                                                                                              capsys):
    from safetensors.torch import load_file

    first, again = tmp_path / "a", tmp_path / "b"
    _run(text_dir, first, tmp_path / "ca")
    capsys.readouterr()
    # the installed command line no longer runs it: its rerun says in one line how to repeat it now
    assert longrope_main(["rerun", str(first), "-o", str(again)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "moved out of the installed package" in err
    assert "python -m tools.train_tiny --config RUN_DIR -o NEW_DIR --no-resume" in err
    assert not again.exists()
    assert main(["--config", str(first), "-o", str(again), "--no-resume"]) == 0
    wa, wb = (load_file(f / "tiny" / "model.safetensors") for f in (first, again))
    assert all((wa[k] == wb[k]).all() for k in wa)
    ra, rb = (json.loads((f / "summary.json").read_text()) for f in (first, again))
    assert {k: v for k, v in ra.items() if k.startswith("ppl_")} == {k: v for k, v in rb.items() if k.startswith("ppl_")}
    # --report-only: the report again, from the model and held-out texts in the folder
    info = json.loads((first / "tiny" / "training.json").read_text())
    assert main(["--out", str(first), "--report-only", "--report-passkey-trials", "0"]) == 0
    new = json.loads((first / "tiny" / "training.json").read_text())
    assert new["run"] == info["run"] and new["command"] == info["command"]
    assert {k: v for k, v in new["report"].items() if k.startswith("ppl_")} == \
        {k: v for k, v in info["report"].items() if k.startswith("ppl_")}


def test_help_shows_the_runs_options_and_hides_the_old_spelling(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert text.startswith("usage: python -m tools.train_tiny ") and "--config RUN_DIR" in text
    assert "-o" in text and "--output" in text and "--out " not in text and "--max-steps" in text

def _config(tmp_path, **model):
    return train_tiny.TrainTinyConfig(output=str(tmp_path / "out"), cache_dir=str(tmp_path / "cache"),
                                      text_dir=str(tmp_path / "nowhere"), search_docs=("a",), heldout_docs=("b",),
                                      model=TinyConfig(**model))


def test_run_refuses_an_old_pt_checkpoint_of_the_run_before_any_work(tmp_path):
    import dataclasses

    import torch

    config = _config(tmp_path)
    cfg = config.model
    legacy = tmp_path / "cache" / "checkpoints" / f"train-tiny-{cfg.fingerprint()}.pt"
    legacy.parent.mkdir(parents=True)
    torch.save({"fingerprint": cfg.fingerprint()}, legacy)
    with pytest.raises(UserError, match="no-resume") as e:
        train_tiny.run(config)  # the text dir does not even exist: the checkpoint is checked first
    assert "\n" not in str(e.value) and legacy.exists()
    path = train_tiny._checkpoint_path(dataclasses.replace(config, resume=False))
    assert path.suffix == ".safetensors" and not legacy.exists()


def test_run_checks_init_from_before_any_work(tmp_path):
    import torch

    bad = tmp_path / "stage.pt"
    torch.save({"model": {}}, bad)
    with pytest.raises(UserError, match="--init-from .*old pickle-format"):
        train_tiny.run(_config(tmp_path, init_from=str(bad)))
    with pytest.raises(UserError, match="init_from .* is not a file"):
        train_tiny.run(_config(tmp_path, init_from=str(tmp_path / "missing.safetensors")))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_configs_are_valid_or_config_errors(data):
    """Any value in any field of the run's config (its model's included): a valid config or a ConfigError
    naming a flag, nothing else (what tests/cli/test_bad_input.py checks of longrope's runs)."""
    import dataclasses

    from longrope.errors import ConfigError
    from longrope.options import config_from_dict, field_flags

    fields = [(None, f) for f in dataclasses.fields(train_tiny.TrainTinyConfig) if f.name != "model"]
    fields += [("model", f) for f in dataclasses.fields(TinyConfig)]
    values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                       st.text(max_size=8), st.lists(st.integers(-5, 5), max_size=3))
    given: dict = {"output": "o"}
    for parent, f in data.draw(st.lists(st.sampled_from(fields), max_size=3)):
        (given.setdefault(parent, {}) if parent else given)[f.name] = data.draw(values)
    try:
        config_from_dict(train_tiny.TrainTinyConfig, given)
    except ConfigError as err:
        flags = field_flags(train_tiny.TrainTinyConfig)
        assert "--" in err.render(lambda f: flags.get(f, f))
