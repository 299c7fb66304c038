"""The family rows: every per-family fact (GGUF architecture, cache reset, config quirks) is read from
``FAMILIES``, and the modules that act on them derive their tables from it."""

from __future__ import annotations

import dataclasses

import pytest

from longrope.models import export, gguf, patch
from longrope.models.families import FAMILIES
from tests.models.model_helpers import build_tiny


def test_gguf_tables_are_the_family_rows():
    # the families llama.cpp runs with factors and the architecture each is written as
    assert gguf.GGUF_ARCHES == {"llama": "llama", "mistral": "llama", "qwen2": "llama", "phi3": "phi3"}
    assert gguf.NO_GGUF_FACTORS == {"qwen3": "qwen3", "gemma": "gemma", "gemma2": "gemma2"}
    assert set(gguf.GGUF_ARCHES) | set(gguf.NO_GGUF_FACTORS) == set(FAMILIES)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_cache_reset_follows_the_row(family, monkeypatch):
    model = build_tiny(family)
    expected = FAMILIES[family].resets_cache_at_switch and "prepare_inputs_for_generation" in vars(type(model))
    assert patch._resets_cache_at_switch(model) == expected
    flipped = dataclasses.replace(FAMILIES[family], resets_cache_at_switch=not FAMILIES[family].resets_cache_at_switch)
    monkeypatch.setitem(FAMILIES, family, flipped)
    assert patch._resets_cache_at_switch(model) == (
        flipped.resets_cache_at_switch and "prepare_inputs_for_generation" in vars(type(model)))


def test_phi3_rows_quirks():
    phi3 = FAMILIES["phi3"]
    assert phi3.resets_cache_at_switch and phi3.hf4_three_key_scaling and phi3.honours_partial_rotary
    others = [f for t, f in FAMILIES.items() if t != "phi3"]
    assert not any(f.resets_cache_at_switch or f.hf4_three_key_scaling for f in others)


def test_three_key_scaling_follows_the_row(monkeypatch):
    from longrope.models.families import inspect_model
    from longrope.rope import make_baseline

    model = build_tiny("llama")
    info = inspect_model(model)
    fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                       original_length=info.original_max_position_embeddings,
                       target_length=4 * info.original_max_position_embeddings).with_(attention_factor=None)
    entries, _ = export.longrope_config_entries(fs, info)
    assert "attention_factor" in entries["rope_scaling"]
    monkeypatch.setitem(FAMILIES, "llama", dataclasses.replace(FAMILIES["llama"], hf4_three_key_scaling=True))
    entries, _ = export.longrope_config_entries(fs, info)
    assert set(entries["rope_scaling"]) == {"type", "short_factor", "long_factor"}


@pytest.mark.parametrize("edit, reason", [
    ({"long_factor": ["a"] * 8}, "long_factor[0] is not a number: 'a'"),
    ({"long_factor": [1.0] * 3}, "long_factor has 3 values but the model's rotary dim is 16 (needs 8)"),
])
def test_a_model_whose_own_longrope_factors_are_malformed_is_unsupported_in_one_line(
        tiny_model_dir, tmp_path, capsys, edit, reason):
    """A model folder with hand-edited longrope factors in its config.json was 'supported' (inspect rc 0), and
    eval ppl on it ended in a 64-line transformers traceback after transformers' notes, twice (battery 6)."""
    import json
    import shutil

    from longrope.cli import main
    from longrope.models import read_rope_info

    folder = tmp_path / "edited"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    params = {"rope_type": "longrope", "rope_theta": 10000.0, "long_factor": [1.0] * 8, "short_factor": [1.0] * 8, "original_max_position_embeddings": config["max_position_embeddings"]}
    params.update(edit)
    config.update(rope_parameters=params, rope_scaling=params, max_position_embeddings=4 * params[
        "original_max_position_embeddings"])
    (folder / "config.json").write_text(json.dumps(config))
    info = read_rope_info(folder)
    assert not info.supported and reason in info.reason
    capsys.readouterr()
    assert main(["generate", "--model", str(folder), "--factors", str(folder / "config.json"), "--prompt", "x",
                 "--max-new-tokens", "1"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and reason in err, err


def test_a_linear_scaled_model_is_refused_before_its_factors_are_dropped(tiny_model_dir, tmp_path, capsys):
    """A config with linear rope scaling (factor 4, a position-interpolation fine-tune) was supported with L =
    max_position_embeddings: `baseline --method pi` wrote λ = 1 for the model's own length while the model ran
    λ = 4, and every installed set silently dropped the ×4 (battery 14b). Refused in one line; factor 1 is no
    scaling and stays supported."""
    import json
    import shutil

    from longrope.cli import main
    from longrope.models import read_rope_info

    def folder_with(factor: float):
        folder = tmp_path / f"linear{factor:g}"
        shutil.copytree(tiny_model_dir, folder)
        config = json.loads((folder / "config.json").read_text())
        params = {"rope_type": "linear", "factor": factor, "rope_theta": 10000.0}
        config.update(rope_parameters=params, rope_scaling=params)
        (folder / "config.json").write_text(json.dumps(config))
        return folder

    assert read_rope_info(folder_with(1.0)).supported
    folder = folder_with(4.0)
    info = read_rope_info(folder)
    assert not info.supported and "linear with factor 4" in info.reason
    capsys.readouterr()
    assert main(["baseline", "--model", str(folder), "--method", "pi", "--target-length", "2x",
                 "-o", str(tmp_path / "f.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "fine-tuned from" in err, err
    assert not (tmp_path / "f.json").exists()


@pytest.mark.parametrize("factor", ["4", float("nan"), 0.5])
def test_a_scaling_factor_that_is_not_a_number_of_at_least_one_is_refused(tiny_model_dir, tmp_path, factor):
    """Battery 16: a config with rope_scaling {"rope_type": "linear", "factor": "4"} passed (the linear check
    skips a factor that is not a number): baseline wrote factors, and eval ppl was transformers' TypeError
    traceback ("unsupported operand type(s) for /=: 'Tensor' and 'str'") after its warning."""
    import json
    import shutil

    from longrope.models import read_rope_info

    folder = tmp_path / "m"
    shutil.copytree(tiny_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    params = {"rope_type": "linear", "factor": factor, "rope_theta": 10000.0}
    config.update(rope_parameters=params, rope_scaling=params)
    (folder / "config.json").write_text(json.dumps(config))
    info = read_rope_info(folder)
    assert not info.supported and f"has factor {factor!r}, not a number >= 1" in info.reason


def test_rope_info_from_a_config_json_dict_is_the_info_of_its_config_object():
    """rope_info_from_config read model_type and max_position_embeddings as attributes: a config.json dict (what the
    formats module says a config may be) of a Llama was "model type 'unknown' is not a supported family", though its
    head_dim and rope_theta were read (battery 29a)."""
    from transformers import GPT2Config, Phi3Config

    from longrope.models import rope_info_from_config

    config = Phi3Config(hidden_size=64, num_attention_heads=4, max_position_embeddings=256,
                        original_max_position_embeddings=32, partial_rotary_factor=0.5)
    from_dict = rope_info_from_config(config.to_dict())
    assert from_dict.supported and from_dict.family == "Phi-3" and from_dict.max_position_embeddings == 256
    assert from_dict == rope_info_from_config(config)
    assert "'gpt2' has no RoPE" in rope_info_from_config(GPT2Config().to_dict()).reason


def test_a_config_json_dict_that_leaves_keys_out_reads_its_class_defaults_as_transformers_does():
    """Read key by key, a Llama config.json dict without rope_theta had 'no RoPE' and a Qwen3 one without head_dim a
    head of 16 channels where transformers' config (and so the model) has 128 (review of battery 29)."""
    from longrope.models import rope_info_from_config

    llama = rope_info_from_config({"model_type": "llama", "hidden_size": 64, "num_attention_heads": 4})
    assert llama.supported and llama.rope_theta == 1e4 and llama.original_max_position_embeddings == 2048
    assert rope_info_from_config({"model_type": "qwen3", "hidden_size": 64, "num_attention_heads": 4}).head_dim == 128
    unknown = rope_info_from_config({"model_type": "no-such-family", "rope_theta": 1e4, "head_dim": 16})
    assert not unknown.supported and "'no-such-family' is not a supported family" in unknown.reason


def test_a_config_json_dict_is_left_as_it_was_and_values_transformers_refuses_are_read_key_by_key():
    """Read through transformers' config class, the caller's dict changed (its rope_scaling gained rope_theta, a Phi-3
    one rope_type and partial_rotary_factor), and values the class refuses (StrictDataclassError, num_attention_heads
    0's ZeroDivisionError) were tracebacks where they had been read key by key (second review of battery 29)."""
    import copy

    from longrope.models import rope_info_from_config

    phi3 = {"model_type": "phi3", "hidden_size": 64, "num_attention_heads": 4, "max_position_embeddings": 256,
            "original_max_position_embeddings": 32, "partial_rotary_factor": 0.5,
            "rope_scaling": {"type": "longrope", "long_factor": [1.0] * 8, "short_factor": [1.0] * 8}}
    before = copy.deepcopy(phi3)
    rope_info_from_config(phi3)
    assert phi3 == before
    for values in ({"model_type": "llama", "hidden_size": 10, "num_attention_heads": 3, "rope_theta": 1e4},
                   {"model_type": "qwen2", "hidden_size": "64", "num_attention_heads": 4, "rope_theta": 1e4},
                   {"model_type": "llama", "num_attention_heads": 0, "head_dim": 16, "rope_theta": 1e4}):
        info = rope_info_from_config(values)  # a RopeInfo naming transformers' reason, as loading the file says it
        assert not info.supported and "refused by transformers' check" in info.reason, info.reason
    wrong = {**phi3, "rope_scaling": {**phi3["rope_scaling"], "short_factor": [1.0] * 9}}
    info = rope_info_from_config(wrong)  # read key by key, it 'has no RoPE' (third review of battery 29)
    assert not info.supported and "short_factor" in info.reason and "has no RoPE" not in info.reason, info.reason


def test_a_refused_config_json_dict_of_an_unsupported_family_is_said_to_be_one():
    """A gemma3_text dict transformers' class refuses was given transformers' reason and 'fix that field', for a family
    that is not supported anyway (fifth review of battery 29)."""
    from longrope.models import rope_info_from_config

    info = rope_info_from_config({"model_type": "gemma3_text", "hidden_size": 10, "num_attention_heads": 3})
    assert not info.supported and "'gemma3_text' is not a supported family" in info.reason, info.reason
