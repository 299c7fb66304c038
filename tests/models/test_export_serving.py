"""HF export for serving: vLLM's mscale keys, the README, stale temporaries, L' < L refused."""

from __future__ import annotations

import contextlib
import json
import math
import os
import types

import numpy as np
import pytest

from longrope.errors import UserError
from longrope.models import export_hf, inspect_model, longrope_config_entries
from longrope.models.export import check_target_length, remove_stale_temporaries
from longrope.rope import FactorSet
from tests.models.model_helpers import TINY_L, build_tiny


def factor_set(model, **kw) -> FactorSet:
    info = inspect_model(model)
    half = info.rotary_dim // 2
    return FactorSet(long_factor=np.linspace(1.0, 4.0, half), original_max_position_embeddings=TINY_L,
                     max_position_embeddings=4 * TINY_L, rope_theta=info.rope_theta, **kw)


@pytest.mark.parametrize("attention_factor", [None, 1.083])
def test_vllm_mscale_keys_equal_m(family, attention_factor):
    model = build_tiny(family)
    fs = factor_set(model, attention_factor=attention_factor)
    m = fs.resolved_attention_factor()
    entries, _ = longrope_config_entries(fs, inspect_model(model))
    params = entries["rope_parameters"]
    assert params["short_mscale"] == params["long_mscale"] == m
    scaling = entries["rope_scaling"]
    if family == "phi3" and attention_factor is None:
        # transformers 4.x Phi-3 accepts only these keys; vLLM's default mscale equals m here
        assert set(scaling) == {"type", "short_factor", "long_factor"}
        default = math.sqrt(1 + math.log(4) / math.log(TINY_L))
        assert math.isclose(m, default, rel_tol=1e-12)
    else:
        assert scaling["short_mscale"] == scaling["long_mscale"] == m


def test_export_folder_has_a_serving_readme_and_loads(tmp_path):
    from transformers import AutoConfig

    model = build_tiny("llama")
    out = export_hf(model, None, factor_set(model, attention_factor=1.083, start_tokens=4), tmp_path / "m").path
    readme = (out / "README.md").read_text()
    for needle in ("vllm serve", "--max-model-len", "short_mscale", "llama.cpp", "--format gguf", "n̂ = 4", "1.083"):
        assert needle in readme, needle
    config = AutoConfig.from_pretrained(out)  # stock transformers still reads it as longrope
    assert config.rope_parameters["rope_type"] == "longrope"
    assert json.loads((out / "config.json").read_text())["rope_scaling"]["long_mscale"] == 1.083


def test_stale_temporaries_of_killed_exports_are_removed(tmp_path):
    model = build_tiny("qwen2")
    dead = tmp_path / ".m.tmp-99999999-abc"  # a pid above any pid_max: that process is gone
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"x" * 1000)
    legacy = tmp_path / ".m.tmp-k3j2h1"  # the old naming, without a pid
    legacy.mkdir()
    old = tmp_path / ".m.old-99999998"
    old.mkdir()
    alive = tmp_path / f".m.tmp-{os.getppid()}-zzz"  # our parent runs: an export in progress elsewhere
    alive.mkdir()
    other = tmp_path / ".other.tmp-99999999-abc"  # another output's leftovers are not ours to judge
    other.mkdir()
    export_hf(model, None, factor_set(model), tmp_path / "m")
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["m", alive.name, other.name])
    assert remove_stale_temporaries(tmp_path / "m") == []


def test_target_below_original_is_refused_in_one_line():
    fake = types.SimpleNamespace(long_factor=[1.0], short_factor=[1.0], original_max_position_embeddings=4096,
                                 max_position_embeddings=2048)
    with pytest.raises(UserError, match="below its original length") as exc:
        check_target_length(fake)
    assert "\n" not in str(exc.value)


def test_output_that_is_a_file_is_refused(tmp_path):
    model = build_tiny("llama")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        export_hf(model, None, factor_set(model), tmp_path / "file")


@contextlib.contextmanager
def _rope_notes():
    """The messages transformers' rope module logs meanwhile, as a user's process sees them (without longrope's
    own filter of that logger)."""
    import logging

    logger = logging.getLogger("transformers.modeling_rope_utils")
    kept, logger.filters = logger.filters, []
    seen: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: seen.append(record.getMessage())
    logger.addHandler(handler)
    try:
        yield seen
    finally:
        logger.removeHandler(handler)
        logger.filters = kept


def test_the_note_transformers_logs_on_loading_an_export_is_the_one_its_readme_explains(tmp_path):
    """Stock transformers notes "Unrecognized keys in `rope_parameters`" of the vLLM keys on loading every export;
    the model card (and docs/method.md) says what it is, so a user does not take it for a broken export (battery
    23's open item). The note is read here without longrope's own filter, as a user's process sees it."""
    from transformers import AutoConfig

    model = build_tiny("llama")
    out = export_hf(model, None, factor_set(model, attention_factor=1.083), tmp_path / "m").path
    with _rope_notes() as seen:
        AutoConfig.from_pretrained(out)
    notes = [m for m in seen if "Unrecognized keys" in m]
    readme = (out / "README.md").read_text()
    assert notes and all("mscale" in m for m in notes)
    assert "Unrecognized keys in `rope_parameters`\" of `short_mscale` and `long_mscale`" in readme


def test_the_model_cards_transformers_lines_note_the_vllm_keys_as_often_as_the_card_says(tmp_path, monkeypatch):
    """The card's own transformers lines, run as written from the folder's parent, print the note once per
    config read (the model's load and the tokenizer's); the card said "notes once" (battery 26b)."""
    import re

    from longrope.models import load_model

    model, tok = load_model("tiny")
    out = export_hf(model, tok, factor_set(model, attention_factor=1.083), tmp_path / "m").path
    readme = (out / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    with _rope_notes() as seen:
        exec(block, {})
    notes = [m for m in seen if "Unrecognized keys" in m]
    assert len(notes) == block.count("from_pretrained") == 2
    assert "each time it reads\nthis config.json (twice for the two lines above" in readme


def test_a_phi3_export_with_the_default_m_explains_the_note_transformers_logs_on_it(tmp_path):
    """Battery 31b: a Phi-3 export with the default m writes the three-key rope_scaling transformers 4.x requires;
    transformers 5 logs "... Please set the `factor` field ..." on it, not the vLLM-keys note its card promised
    (which it does not log). The card names the note it gets and why nothing needs setting."""
    from transformers import AutoConfig

    model = build_tiny("phi3")
    out = export_hf(model, None, factor_set(model), tmp_path / "m").path
    readme = (out / "README.md").read_text()
    with _rope_notes() as seen:
        AutoConfig.from_pretrained(out).validate_rope()  # what a model's load runs (the note is logged once a process)
    assert not [m for m in seen if "Unrecognized keys" in m] and "Unrecognized keys" not in readme
    assert "Please set the `factor` field\": `rope_scaling` is the three keys transformers 4.x's Phi-3 requires" in readme


def test_the_model_card_of_an_export_without_a_tokenizer_loads_no_tokenizer_from_the_folder(tmp_path, monkeypatch):
    """Battery 31b: a model without a tokenizer exports a folder without one, and its card's transformers lines still
    loaded one from the folder (transformers refused). The card's lines, run as written, now load; they say where a
    tokenizer comes from, and the note about the vLLM keys counts one read of the config."""
    import re

    model = build_tiny("llama")
    out = export_hf(model, None, factor_set(model, attention_factor=1.083), tmp_path / "m").path
    readme = (out / "README.md").read_text()
    block = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "AutoTokenizer" not in block and "load the source model's" in block
    monkeypatch.chdir(tmp_path)
    with _rope_notes() as seen:
        exec(block, {})
    assert len([m for m in seen if "Unrecognized keys" in m]) == block.count("from_pretrained") == 1
    assert "(once for the line above, the model's load)" in readme
    assert f"vllm serve m --max-model-len {4 * TINY_L} --tokenizer SOURCE_MODEL" in readme
