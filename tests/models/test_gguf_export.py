"""GGUF export: read back with the ``gguf`` package; llama.cpp itself is checked in test_llamacpp.py (slow)."""

from __future__ import annotations

import math
import re

import gguf
import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.models import inspect_model
from longrope.models.gguf import (
    GGUF_ARCHES,
    NO_GGUF_FACTORS,
    export_gguf,
    export_gguf_from_gguf,
    gguf_rope_facts,
)
from longrope.rope import FactorSet
from tests.models.model_helpers import TINY_L, build_tiny

SUPPORTED = tuple(GGUF_ARCHES)  # llama, mistral, qwen2, phi3


def factor_set(model, *, start_tokens=0, attention_factor=1.083, target=4 * TINY_L) -> FactorSet:
    info = inspect_model(model)
    half = info.rotary_dim // 2
    return FactorSet(
        long_factor=np.linspace(1.0, 5.5, half),
        short_factor=np.linspace(1.0, 1.2, half),
        start_tokens=start_tokens,
        attention_factor=attention_factor,
        original_max_position_embeddings=TINY_L,
        max_position_embeddings=target,
        rope_theta=info.rope_theta,
    )


def fields(path) -> dict:
    reader = gguf.GGUFReader(path)
    return {f.name: f.contents() for f in reader.fields.values()}


def tensors(path) -> dict:
    return {t.name: t for t in gguf.GGUFReader(path).tensors}


def unpermute(rows: np.ndarray, n_head: int) -> np.ndarray:
    """Inverse of the llama-architecture q/k row permutation (pairs (2j, 2j+1) back to (j, j + d/2))."""
    return rows.reshape(n_head, rows.shape[0] // n_head // 2, 2, *rows.shape[1:]).swapaxes(1, 2).reshape(rows.shape)


@pytest.mark.parametrize("family", SUPPORTED)
def test_hf_export_reads_back_with_the_right_values(family, tmp_path):
    model = build_tiny(family)
    fs = factor_set(model)
    out = export_gguf(model, None, fs, tmp_path / "m.gguf", outtype="f16").path
    arch = GGUF_ARCHES[family]
    kv = fields(out)
    assert kv["general.architecture"] == arch
    assert kv[f"{arch}.context_length"] == 4 * TINY_L
    assert kv[f"{arch}.rope.scaling.type"] == "longrope"
    assert kv[f"{arch}.rope.scaling.original_context_length"] == TINY_L
    assert math.isclose(kv[f"{arch}.rope.scaling.attn_factor"], 1.083, rel_tol=1e-6)
    assert f"{arch}.rope.scaling.factor" not in kv  # llama.cpp would divide the frequencies by it on top
    info = inspect_model(model)
    assert kv[f"{arch}.rope.dimension_count"] == info.rotary_dim
    assert kv[f"{arch}.rope.freq_base"] == info.rope_theta
    t = tensors(out)
    for name, want in (("rope_factors_long.weight", fs.long_factor), ("rope_factors_short.weight", fs.short_factor)):
        assert t[name].tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_allclose(np.asarray(t[name].data), want.astype(np.float32))
    state = model.state_dict()
    assert len(t) == len(state) + 2  # every weight (untied lm_head → output.weight) plus the two factor tensors
    assert t["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F16
    assert t["output_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32


@pytest.mark.parametrize("family", ["llama", "qwen2"])
def test_llama_architecture_gets_permuted_q_k_rows(family, tmp_path):
    model = build_tiny(family)
    out = export_gguf(model, None, factor_set(model), tmp_path / "m.gguf", outtype="f32").path
    t = tensors(out)
    cfg = model.config
    state = {k: v.numpy() for k, v in model.state_dict().items()}
    q = np.asarray(t["blk.0.attn_q.weight"].data)
    k = np.asarray(t["blk.0.attn_k.weight"].data)
    np.testing.assert_array_equal(unpermute(q, cfg.num_attention_heads), state["model.layers.0.self_attn.q_proj.weight"])
    np.testing.assert_array_equal(unpermute(k, cfg.num_key_value_heads), state["model.layers.0.self_attn.k_proj.weight"])
    assert not np.array_equal(q, state["model.layers.0.self_attn.q_proj.weight"])
    np.testing.assert_array_equal(np.asarray(t["blk.0.attn_v.weight"].data), state["model.layers.0.self_attn.v_proj.weight"])
    if family == "qwen2":  # biases follow their rows
        bq = np.asarray(t["blk.0.attn_q.bias"].data)
        np.testing.assert_array_equal(unpermute(bq, cfg.num_attention_heads), state["model.layers.0.self_attn.q_proj.bias"])


def test_phi3_keeps_its_layout_and_fused_tensors(tmp_path):
    model = build_tiny("phi3")
    out = export_gguf(model, None, factor_set(model), tmp_path / "m.gguf", outtype="f32").path
    t = tensors(out)
    np.testing.assert_array_equal(
        np.asarray(t["blk.0.attn_qkv.weight"].data), model.state_dict()["model.layers.0.self_attn.qkv_proj.weight"].numpy()
    )
    assert fields(out)["phi3.rope.dimension_count"] == 8  # partial rotary: 8 of 16 channels


def test_tied_embeddings_write_no_output_tensor(tmp_path):
    model = build_tiny("llama", tie_word_embeddings=True)
    t = tensors(export_gguf(model, None, factor_set(model), tmp_path / "m.gguf").path)
    assert "output.weight" not in t and "token_embd.weight" in t


@pytest.mark.parametrize("family", sorted(NO_GGUF_FACTORS))
def test_families_llamacpp_cannot_run_are_refused_in_one_line(family, tmp_path):
    model = build_tiny(family)
    with pytest.raises(UserError, match="llama.cpp") as exc:
        export_gguf(model, None, factor_set(model), tmp_path / "m.gguf")
    assert "\n" not in str(exc.value)
    assert not list(tmp_path.iterdir())  # nothing left behind


def test_tokenizer_of_the_embedded_model(tmp_path, caplog):
    """... and without gguf's "Unknown separator token '<s>' in TemplateProcessing<pair>" (a Llama-style pair
    template; llama.cpp never uses it for generation) printed on every export (battery 4)."""
    import logging

    from longrope.models import load_model

    model, tok = load_model("tiny")
    info = inspect_model(model)
    fs = FactorSet(long_factor=np.full(info.rotary_dim // 2, 8.0), original_max_position_embeddings=256,
                   max_position_embeddings=2048, rope_theta=info.rope_theta)
    with caplog.at_level(logging.WARNING):
        out = export_gguf(model, tok, fs, tmp_path / "tiny.gguf").path
    assert not [r for r in caplog.records if "TemplateProcessing" in r.getMessage()]
    kv = fields(out)
    assert kv["tokenizer.ggml.model"] == "gpt2" and kv["tokenizer.ggml.pre"] == "smollm"
    tokens = kv["tokenizer.ggml.tokens"]
    assert len(tokens) == 4096 and tokens[1] == "<s>"
    assert kv["tokenizer.ggml.token_type"][1] == gguf.TokenType.CONTROL
    assert len(kv["tokenizer.ggml.merges"]) > 1000
    assert kv["tokenizer.ggml.bos_token_id"] == 1 and kv["tokenizer.ggml.eos_token_id"] == 2


def _tiny_4x_export_read_back(tmp_path):
    """``(factors, GGUF path, the GGUF loaded back)`` of the tiny model exported at 4x."""
    from longrope.models import load_model

    model, tok = load_model("tiny")
    info = inspect_model(model)
    fs = FactorSet(long_factor=np.full(info.rotary_dim // 2, 4.0), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=info.rope_theta)
    out = export_gguf(model, tok, fs, tmp_path / "tiny.gguf").path
    return fs, out, load_model(out)[0]


def test_a_loaded_export_knows_its_original_length(tmp_path, caplog):
    """transformers' GGUF reader drops L; the loaded model reported the extended context as trained, and
    installing the factors warned that their L differs from the model's (noise a user cannot act on)."""
    import logging

    from longrope.models import install_factors

    fs, out, loaded = _tiny_4x_export_read_back(tmp_path)
    assert inspect_model(loaded).original_max_position_embeddings == TINY_L
    with caplog.at_level(logging.WARNING, logger="longrope"):
        install_factors(loaded, fs)
    assert not [r for r in caplog.records if "differs from the model" in r.getMessage()]


def test_a_gguf_export_read_back_declares_the_scaling_transformers_does_not_apply(tmp_path):
    """battery 9a: inspect of a GGUF export said "rope_scaling": null, and eval's 'none' of it was the unscaled
    model without a word (transformers' GGUF reader drops the factors; llama.cpp applies them)."""
    from longrope.models import read_rope_info

    fs, out, loaded = _tiny_4x_export_read_back(tmp_path)
    for read in (read_rope_info(out), inspect_model(loaded)):
        assert read.rope_scaling["rope_type"] == "longrope" and read.rope_scaling["applied_by_transformers"] is False
        assert read.original_max_position_embeddings == TINY_L
    assert read_rope_info("tiny").rope_scaling is None


def test_quiet_hides_the_gguf_reader_bar_too(tmp_path, capfd):
    """transformers' GGUF reader draws its "Converting and de-quantizing" bar with tqdm directly; with
    transformers' bars switched off (``--quiet``) it was still drawn on every load of a GGUF model."""
    from transformers.utils import logging as hf_logging

    from longrope.models import load_model

    model, tok = load_model("tiny")
    info = inspect_model(model)
    fs = FactorSet(long_factor=np.full(info.rotary_dim // 2, 4.0), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=info.rope_theta)
    out = export_gguf(model, tok, fs, tmp_path / "tiny.gguf").path
    capfd.readouterr()
    was = hf_logging.is_progress_bar_enabled()  # an earlier test (generate's CLI) may have switched bars off
    try:
        hf_logging.disable_progress_bar()
        load_model(out)
        assert "de-quantizing" not in capfd.readouterr().err
        hf_logging.enable_progress_bar()
        load_model(out)  # bars on: the reader's bar is drawn as before (the switch is restored after the load)
        assert "de-quantizing" in capfd.readouterr().err
    finally:
        (hf_logging.enable_progress_bar if was else hf_logging.disable_progress_bar)()


def test_start_tokens_warn_once(tmp_path, caplog):
    model = build_tiny("llama")
    result = export_gguf(model, None, factor_set(model, start_tokens=4), tmp_path / "m.gguf")
    assert len(result.warnings) == 1 and "n̂ = 4" in result.warnings[0] and "GGUF" in result.warnings[0]
    assert not export_gguf(model, None, factor_set(model, start_tokens=1), tmp_path / "m1.gguf").warnings


def test_bad_targets_are_one_line_errors(tmp_path):
    model = build_tiny("llama")
    fs = factor_set(model)
    (tmp_path / "dir.gguf").mkdir()
    with pytest.raises(UserError, match="is a folder"):
        export_gguf(model, None, fs, tmp_path / "dir.gguf")
    export_gguf(model, None, fs, tmp_path / "m.gguf")
    with pytest.raises(UserError, match="--overwrite"):
        export_gguf(model, None, fs, tmp_path / "m.gguf")
    export_gguf(model, None, fs, tmp_path / "m.gguf", overwrite=True)
    with pytest.raises(UserError, match="below"):  # refused by the factor set itself (FactorSet checks L' >= L)
        export_gguf(model, None, factor_set(model, target=TINY_L // 2), tmp_path / "short.gguf")
    with pytest.raises(UserError, match="rotary dim"):
        export_gguf(model, None, FactorSet(long_factor=np.ones(3), original_max_position_embeddings=TINY_L,
                                           max_position_embeddings=64, rope_theta=1e4), tmp_path / "x.gguf")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir.gguf", "m.gguf"]  # no temporaries left


def _quantized_gguf(path, fs_source):
    """A small llama GGUF with one Q8_0 tensor, an old scaling and a rope_freqs tensor to be replaced."""
    writer = gguf.GGUFWriter(path, arch="llama")
    writer.add_name("synthetic")
    writer.add_context_length(TINY_L)
    writer.add_embedding_length(64)
    writer.add_block_count(1)
    writer.add_head_count(4)
    writer.add_rope_dimension_count(16)
    writer.add_rope_freq_base(10000.0)
    writer.add_key_value("llama.rope.scaling.type", "linear", gguf.GGUFValueType.STRING)
    writer.add_key_value("llama.rope.scaling.factor", 2.0, gguf.GGUFValueType.FLOAT32)
    writer.add_array("general.languages", ["en", "fr"])
    gen = np.random.default_rng(0)
    w = gen.standard_normal((64, 64)).astype(np.float32)
    writer.add_tensor("blk.0.attn_q.weight", gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q8_0),
                      raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    writer.add_tensor("blk.0.attn_norm.weight", gen.standard_normal(64).astype(np.float32))
    writer.add_tensor("rope_freqs.weight", np.full(8, 3.0, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_to_gguf_copies_everything_and_adds_the_factors(tmp_path):
    src = _quantized_gguf(tmp_path / "src.gguf", None)
    facts = gguf_rope_facts(src)
    assert facts == {"arch": "llama", "rotary_dim": 16, "rope_theta": 10000.0, "context_length": TINY_L}
    fs = FactorSet(long_factor=np.linspace(1, 4, 8), short_factor=np.linspace(1, 1.1, 8), attention_factor=1.2,
                   original_max_position_embeddings=TINY_L, max_position_embeddings=4 * TINY_L, rope_theta=1e4)
    result = export_gguf_from_gguf(src, fs, tmp_path / "out.gguf")
    assert len(result.warnings) == 1 and "rope_freqs" in result.warnings[0]
    before, after = fields(src), fields(result.path)
    for key, value in before.items():
        if key.startswith(("GGUF.", "llama.rope.scaling.", "llama.context_length")):
            continue
        assert after[key] == value, key
    assert after["llama.context_length"] == 4 * TINY_L
    assert after["llama.rope.scaling.type"] == "longrope" and "llama.rope.scaling.factor" not in after
    assert after["llama.rope.scaling.original_context_length"] == TINY_L
    assert math.isclose(after["llama.rope.scaling.attn_factor"], 1.2, rel_tol=1e-6)
    t0, t1 = tensors(src), tensors(result.path)
    assert set(t1) == {"blk.0.attn_q.weight", "blk.0.attn_norm.weight", "rope_factors_long.weight",
                       "rope_factors_short.weight"}
    for name in ("blk.0.attn_q.weight", "blk.0.attn_norm.weight"):
        assert t1[name].tensor_type == t0[name].tensor_type
        assert np.asarray(t1[name].data).tobytes() == np.asarray(t0[name].data).tobytes()
    np.testing.assert_allclose(np.asarray(t1["rope_factors_long.weight"].data), np.linspace(1, 4, 8), rtol=1e-6)
    # and again, from the exported file (factor tensors replaced, not duplicated)
    again = export_gguf_from_gguf(result.path, fs.with_(long_factor=np.full(8, 2.0)), tmp_path / "again.gguf")
    t2 = tensors(again.path)
    assert len(t2) == 4 and np.all(np.asarray(t2["rope_factors_long.weight"].data) == 2.0)


def test_gguf_to_gguf_refuses_mismatched_factors_and_other_archs(tmp_path):
    src = _quantized_gguf(tmp_path / "src.gguf", None)
    fs = FactorSet(long_factor=np.ones(4), original_max_position_embeddings=TINY_L, max_position_embeddings=64,
                   rope_theta=1e4)
    with pytest.raises(UserError, match="rotary dim 16"):
        export_gguf_from_gguf(src, fs, tmp_path / "out.gguf")
    with pytest.raises(UserError, match="source model itself"):
        export_gguf_from_gguf(src, fs.with_(long_factor=np.ones(8), short_factor=None), src, overwrite=True)
    writer = gguf.GGUFWriter(tmp_path / "g.gguf", arch="gemma2")
    writer.add_tensor("x", np.zeros(2, dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match="gemma2"):
        export_gguf_from_gguf(tmp_path / "g.gguf", fs, tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


def test_f32_export_keeps_exact_weights(tmp_path):
    model = build_tiny("mistral")
    t = tensors(export_gguf(model, None, factor_set(model), tmp_path / "m.gguf", outtype="f32").path)
    assert t["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    np.testing.assert_array_equal(np.asarray(t["blk.1.ffn_down.weight"].data),
                                  model.state_dict()["model.layers.1.mlp.down_proj.weight"].numpy())
    assert torch.is_tensor(model.model.embed_tokens.weight)  # the model itself is untouched


@pytest.mark.parametrize("damage, said", [
    ("more_blocks", "its header says 3 blocks but its tensors are of 2"),
    ("missing_tensor", "its block 1 lacks tensor(s) the other blocks have (e.g. blk.1.attn_q.weight)"),
    ("attn_q_shape", "its tensor blk.1.attn_q.weight has shape [64, 32], which its header's sizes do not give"),
])
def test_gguf_to_gguf_refuses_a_source_whose_header_and_tensors_disagree(tmp_path, damage, said):
    """The GGUF -> GGUF export reads no weight through transformers: a source whose header said more blocks than
    its tensors hold, a block without a tensor the others have, or an attn_q of other rows than heads x head size
    was copied into a new, as broken, file, and the export said it was written (battery 21c)."""
    model = build_tiny("llama")
    src = export_gguf(model, None, factor_set(model), tmp_path / "src.gguf", outtype="f32").path
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(tmp_path / "bad.gguf", arch="llama")
    for field in reader.fields.values():
        if field.name.startswith("GGUF.") or field.name == "general.architecture":
            continue
        value = field.contents()
        if damage == "more_blocks" and field.name == "llama.block_count":
            value += 1
        kind = field.types[0]
        writer.add_key_value(field.name, value, kind, sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY
                             else None)
    for t in reader.tensors:
        data = np.array(t.data)
        if t.name == "blk.1.attn_q.weight" and damage == "missing_tensor":
            continue
        if t.name == "blk.1.attn_q.weight" and damage == "attn_q_shape":
            data = data[:32]
        writer.add_tensor(t.name, data)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(UserError, match=re.escape(said)):
        export_gguf_from_gguf(tmp_path / "bad.gguf", factor_set(model), tmp_path / "out.gguf")
    assert not (tmp_path / "out.gguf").exists()


_KILLED_MID_WRITE = """
import os, signal, sys
import gguf
from longrope.models.gguf import export_gguf
from tests.models.test_gguf_export import factor_set
from tests.models.model_helpers import build_tiny

def killed(self, *a, **k):
    os.kill(os.getpid(), signal.SIGKILL)

gguf.GGUFWriter.write_tensors_to_file = killed
model = build_tiny("llama")
export_gguf(model, None, factor_set(model), sys.argv[1])
"""


def test_what_a_killed_export_left_is_removed_by_the_next_one(tmp_path):
    """Battery 23c: an export SIGKILLed while it wrote (OOM killer, kill -9) left its temporary file and the folder
    the tokenizer was written to; the next export to the same file removed the first, never the second."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    out = tmp_path / "m.gguf"
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    proc = subprocess.run([sys.executable, "-c", _KILLED_MID_WRITE, str(out)], cwd=root, env=env, timeout=300,
                          capture_output=True, text=True)
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert any(p.name.startswith(".m.gguf.") for p in tmp_path.iterdir())  # what the kill left
    model = build_tiny("llama")
    export_gguf(model, None, factor_set(model), out)
    assert [p.name for p in tmp_path.iterdir()] == ["m.gguf"]


def test_a_link_given_as_the_gguf_output_names_the_file_written(tmp_path):
    """Battery 23c: as for an export folder, -o LINK writes the file the link names. The link itself was replaced by
    the new file (the target kept the old model), and a dangling link failed after all the work as 'written by
    another process while this one worked'."""
    model = build_tiny("llama")
    fs = factor_set(model)
    disk = tmp_path / "disk"
    disk.mkdir()
    (disk / "old.gguf").write_bytes(b"GGUF")
    (tmp_path / "live.gguf").symlink_to(disk / "old.gguf")
    (tmp_path / "dangling.gguf").symlink_to(disk / "new.gguf")
    export_gguf(model, None, fs, tmp_path / "live.gguf", overwrite=True)
    export_gguf(model, None, fs, tmp_path / "dangling.gguf")
    for link, target in (("live.gguf", "old.gguf"), ("dangling.gguf", "new.gguf")):
        assert (tmp_path / link).is_symlink()
        assert fields(disk / target)["llama.rope.scaling.type"] == "longrope"


def test_the_gguf_name_of_a_local_model_is_its_folder_name_not_its_path(tmp_path):
    """Battery 23c: general.name was config._name_or_path, the absolute path of a local source folder."""
    from longrope.models import load_model

    model = build_tiny("llama")
    model.save_pretrained(tmp_path / "models" / "my-model")
    loaded, _ = load_model(str(tmp_path / "models" / "my-model"), dtype=torch.float32)
    export_gguf(loaded, None, factor_set(loaded), tmp_path / "a.gguf")
    assert fields(tmp_path / "a.gguf")["general.name"] == "my-model"
    model.config._name_or_path = "someone/some-model"  # a hub id stays as it is
    export_gguf(model, None, factor_set(model), tmp_path / "b.gguf")
    assert fields(tmp_path / "b.gguf")["general.name"] == "someone/some-model"


def test_a_qwen2_written_as_a_llama_gguf_is_read_back_with_its_biases(tmp_path):
    """Battery 23c: a Qwen2 is written as a llama GGUF with q/k/v biases (the architecture llama.cpp applies factors
    for); transformers' reader built a Llama without biases from it and dropped them without a word, so eval and
    generate of the file ran another model than llama.cpp (logits 0.3-0.6 off). A Llama's MLP biases likewise."""
    from longrope.models import install_factors, load_model

    for family, kwargs in (("qwen2", {}), ("llama", {"mlp_bias": True})):
        model = build_tiny(family, **kwargs)
        fs = factor_set(model)
        export_gguf(model, None, fs, tmp_path / f"{family}.gguf", outtype="f32")
        back, _ = load_model(str(tmp_path / f"{family}.gguf"), dtype=torch.float32)
        assert inspect_model(back).model_type == family
        for m in (model, back):
            install_factors(m, fs)
        ids = torch.randint(3, 128, (1, 2 * TINY_L), generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            for n in (TINY_L // 2, 2 * TINY_L):  # short and long factors
                torch.testing.assert_close(back(ids[:, :n]).logits, model(ids[:, :n]).logits, atol=1e-4, rtol=1e-4)


def test_a_byte_fallback_bpe_vocabulary_scores_its_pieces_in_merge_order(tmp_path):
    """llama.cpp's tokenizer for such a vocabulary (Llama 2, Mistral) joins the adjacent pair whose joined piece scores
    highest; every piece scored -1000 (the gguf package's placeholder), so it joined the leftmost pair first and split
    text otherwise than transformers (battery 29b; test_llamacpp.py checks the tokens with the real llama.cpp)."""
    import json

    from tests.models.model_helpers import byte_fallback_tokenizer

    tok = byte_fallback_tokenizer()
    model = build_tiny("llama", vocab_size=len(tok))
    out = export_gguf(model, tok, factor_set(model), tmp_path / "m.gguf", outtype="f32").path
    meta = fields(out)
    score = dict(zip(meta["tokenizer.ggml.tokens"], meta["tokenizer.ggml.scores"]))
    merges = json.loads(tok.backend_tokenizer.to_str())["model"]["merges"]
    made = [a + b for a, b in (m.split(" ", 1) if isinstance(m, str) else m for m in merges)]
    assert len(made) > 100
    assert [score[p] for p in made] == sorted((score[p] for p in made), reverse=True)  # earlier merges first
    assert len({score[p] for p in made}) == len(made)


def test_a_gguf_whose_pieces_score_alike_is_copied_with_a_warning(tmp_path, monkeypatch):
    """A GGUF longrope wrote from a byte-fallback BPE before its pieces were scored by merge rank scores them all
    alike; a re-export copied that vocabulary without a word, llama.cpp still tokenizing otherwise than transformers
    (review of battery 29b). A source scored by merge rank is copied without the warning."""
    import longrope.models.gguf as gguf_module
    from tests.models.model_helpers import byte_fallback_tokenizer

    tok = byte_fallback_tokenizer()
    model = build_tiny("llama", vocab_size=len(tok))
    fs = factor_set(model)
    scored = export_gguf(model, tok, fs, tmp_path / "scored.gguf", outtype="f32").path
    assert not any("score every piece alike" in w or "scores every piece" in w
                   for w in export_gguf_from_gguf(scored, fs, tmp_path / "a.gguf").warnings)
    monkeypatch.setattr(gguf_module, "_merge_scores", lambda model: {})  # as written before: one score for all
    flat = export_gguf(model, tok, fs, tmp_path / "flat.gguf", outtype="f32").path
    assert len(set(fields(flat)["tokenizer.ggml.scores"])) == 1
    warnings = export_gguf_from_gguf(flat, fs, tmp_path / "b.gguf").warnings
    assert any("scores every piece alike" in w and "export the Hugging Face model" in w for w in warnings)
