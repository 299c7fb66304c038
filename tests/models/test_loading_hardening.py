"""load_model: models without RoPE, per-family attention, weights that must not be unpickled."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from longrope.errors import UserError
from longrope.models import loading
from longrope.models.families import FAMILIES, attn_implementation_for, has_rope, require_rope
from tests.models.model_helpers import build_tiny, save_tiny, tiny_config, tiny_ids


def _one_line(exc_info) -> str:
    msg = str(exc_info.value)
    assert msg and "\n" not in msg
    return msg


@pytest.mark.parametrize("make", [
    lambda t: t.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64),
    lambda t: t.OPTConfig(num_hidden_layers=1, hidden_size=32, num_attention_heads=2, ffn_dim=64, vocab_size=64,
                          word_embed_proj_dim=32),
    lambda t: t.BloomConfig(n_layer=1, hidden_size=32, n_head=2, vocab_size=64),
])
def test_a_model_without_rope_is_refused_before_its_weights_are_read(tmp_path, make):
    import transformers

    config = make(transformers)
    config.save_pretrained(tmp_path / "m")  # config only: the refusal must not need the weights
    assert not has_rope(config)
    with pytest.raises(UserError, match="has no RoPE") as e:
        loading.load_model(tmp_path / "m")
    msg = _one_line(e)
    assert config.model_type in msg and "llama" in msg


def test_require_rope_false_loads_it_anyway(tmp_path):
    import transformers

    config = transformers.GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=64, n_positions=64)
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    model, _ = loading.load_model(tmp_path / "gpt2", require_rope=False)
    assert model.config.model_type == "gpt2"
    with pytest.raises(UserError, match="no RoPE"):
        require_rope(model.config, label="gpt2")


def test_every_supported_family_has_rope():
    for family in FAMILIES:
        assert has_rope(tiny_config(family)), family


def test_gemma2_loads_with_eager_and_runs_a_forward(tmp_path):
    """Loading always asked for SDPA, which transformers refuses for Gemma 2."""
    ref = build_tiny("gemma2")
    folder = save_tiny(ref, tmp_path / "g2")
    model, tok = loading.load_model(folder)
    assert tok is None and model.config._attn_implementation == "eager"
    ids = tiny_ids(48)  # longer than TINY_L: the sliding/global layers both see it
    with torch.no_grad():
        got = model(input_ids=ids).logits
        want = ref(input_ids=ids).logits
    torch.testing.assert_close(got, want)
    assert attn_implementation_for("gemma2") == "eager"


@pytest.mark.parametrize("family", ["llama", "gemma", "qwen2", "phi3"])
def test_families_default_to_sdpa_and_accept_an_override(tmp_path, family):
    folder = save_tiny(build_tiny(family), tmp_path / family)
    model, _ = loading.load_model(folder)
    assert model.config._attn_implementation == "sdpa" == attn_implementation_for(family)
    model, _ = loading.load_model(folder, attn_implementation="eager")
    assert model.config._attn_implementation == "eager"


def test_an_impossible_attention_implementation_is_one_line(tmp_path):
    folder = save_tiny(build_tiny("gemma2"), tmp_path / "g2")
    with pytest.raises(UserError) as e:
        loading.load_model(folder, attn_implementation="sdpa")
    assert "g2" in _one_line(e)
    with pytest.raises(UserError):
        loading.load_model(folder, attn_implementation="no-such-attention")
    with pytest.raises(UserError, match="attn_implementation"):
        loading.load_model(folder, attn_implementation="")


def test_an_attention_implementation_is_checked_from_the_config_alone():
    """battery 9a: eval ruler --attn-implementation bogus made its samples (~20 s of lm-eval) before the model load
    refused it; prepare_eval now checks it on the meta device (no weights), as the load would."""
    from longrope.runs.evaluate import PplConfig, prepare_eval

    for name in ("eager", "sdpa", None):
        loading.check_attn_implementation(tiny_config("llama"), name, "m")
    with pytest.raises(UserError, match="cannot load 'm' with attention implementation 'no-such-attention'"):
        loading.check_attn_implementation(tiny_config("llama"), "no-such-attention", "m")
    with pytest.raises(UserError, match="attention implementation 'no-such-attention'"):
        prepare_eval(PplConfig(model="tiny", data="shards", lengths=(512,), output="o",
                               attn_implementation="no-such-attention"), kv_cache=False)


class _Evil:
    """Unpickling this creates a file, so its absence proves nothing ran."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _bin_folder(tmp_path, extra=None):
    folder = tmp_path / "binmodel"
    tiny_config("llama").save_pretrained(folder)
    state = dict(build_tiny("llama").state_dict())
    if extra is not None:
        state["evil"] = extra
    torch.save(state, folder / "pytorch_model.bin")
    return folder


def test_a_bin_torch_refuses_to_unpickle_is_one_line_and_runs_nothing(tmp_path):
    marker = tmp_path / "code-ran"
    folder = _bin_folder(tmp_path, _Evil(str(marker)))
    with pytest.raises(UserError, match="refuses to unpickle") as e:
        loading.load_model(folder)
    assert "safetensors" in _one_line(e)
    assert not marker.exists()


def test_a_plain_tensor_bin_still_loads(tmp_path):
    folder = _bin_folder(tmp_path)
    model, _ = loading.load_model(folder)
    assert model.config.model_type == "llama"


@pytest.mark.parametrize("name,data", [("model.safetensors", b"\x08\x00\x00\x00\x00\x00\x00\x00{bad json"),
                                       ("model.safetensors", b"short"),
                                       ("pytorch_model.bin", b"PK\x03\x04 truncated zip")])
def test_corrupt_weights_are_one_line(tmp_path, name, data):
    folder = tmp_path / "m"
    tiny_config("llama").save_pretrained(folder)
    (folder / name).write_bytes(data)
    with pytest.raises(UserError) as e:
        loading.load_model(folder)
    assert "m" in _one_line(e)


def test_config_json_is_still_read_first(tmp_path):
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_type"] = "gpt2"  # a config that says "no RoPE" wins over whatever weights are there
    cfg.pop("rope_parameters", None)
    cfg.pop("rope_theta", None)
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError, match="no RoPE"):
        loading.load_model(folder)


def test_a_config_that_does_not_fit_its_weights_is_one_line_without_the_load_report(tmp_path, capfd):
    """A hand-edited config.json (head_dim 48 on 64-wide weights) gave transformers' LOAD REPORT table and a
    RuntimeError traceback (battery 5); now one line, and the report is left out."""
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["head_dim"] = cfg["hidden_size"] // cfg["num_attention_heads"] // 2
    (folder / "config.json").write_text(json.dumps(cfg))
    capfd.readouterr()
    with pytest.raises(UserError) as e:
        loading.load_model(folder)
    assert "its weights do not fit its config.json" in _one_line(e)
    captured = capfd.readouterr()
    assert "LOAD REPORT" not in captured.err + captured.out


@pytest.mark.parametrize("scaling,expect", [
    ("yarn", "rope_scaling block"),  # not a mapping: a huggingface_hub validation error (was a traceback)
    ({"rope_type": "yarn"}, "rope_scaling block"),  # a known type without its keys
    ({"rope_type": "weird", "factor": 4.0}, "transformers does not know"),  # inspect said supported
])
def test_a_bad_rope_scaling_block_is_one_line_that_names_it(tmp_path, scaling, expect):
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg.pop("rope_parameters", None)
    cfg["rope_scaling"] = scaling
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(UserError) as e:
        loading.load_model(folder)
    assert expect in _one_line(e) and "config.json" in str(e.value)
    if isinstance(scaling, dict) and scaling["rope_type"] == "weird":
        info = loading.read_rope_info(folder)
        assert not info.supported and "fix or remove the rope_scaling block" in info.reason


@pytest.mark.parametrize("layers", [0, 4])
def test_a_config_with_other_layers_than_its_weights_is_one_line(tmp_path, capfd, layers):
    """num_hidden_layers edited: transformers dropped the extra weights or filled missing layers with random
    values, printed its LOAD REPORT and loaded; the model was then measured as if it were the saved one."""
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["num_hidden_layers"] not in (layers,)
    cfg["num_hidden_layers"] = layers
    (folder / "config.json").write_text(json.dumps(cfg))
    capfd.readouterr()
    with pytest.raises(UserError) as e:
        loading.load_model(folder)
    msg = _one_line(e)
    assert "its weights do not fit its config.json" in msg
    assert ("have no place in its config.json" if layers == 0 else "are not in its weights") in msg
    captured = capfd.readouterr()
    assert "LOAD REPORT" not in captured.err + captured.out


def test_a_model_folder_with_links_to_missing_files_names_them(tiny_model_dir, tmp_path):
    """Battery 16: a folder whose model.safetensors is a link to a file that no longer exists (a snapshot moved
    out of the Hugging Face cache) was "Error no file named model.safetensors, or pytorch_model.bin, found in
    directory" (there is one: a broken link), with no way out."""
    import shutil

    from longrope.models.loading import resolve_source

    folder = tmp_path / "snapshot"
    shutil.copytree(tiny_model_dir, folder)
    (folder / "model.safetensors").unlink()
    (folder / "model.safetensors").symlink_to(tmp_path / "blobs" / "0123abc")
    with pytest.raises(UserError, match=r"has links to files that do not exist \(model.safetensors -> .*0123abc\)"):
        resolve_source(str(folder))


@pytest.mark.parametrize("field, value, said", [
    ("num_attention_heads", 0, "(ZeroDivisionError: integer modulo by zero): a size such as num_attention_heads is 0"),
    ("max_position_embeddings", "256", "'max_position_embeddings' expected int, got str (value: '256')"),
    ("head_dim", 15, "RoPE requires an even rotary dimension, but got `head_dim`=15"),
    ("num_attention_heads", 3, "The hidden size (64) is not a multiple of the number of attention heads (3)"),
])
def test_a_config_json_transformers_own_checks_refuse_is_one_line_with_their_reason(tmp_path, field, value, said):
    """transformers' config classes check their fields and sizes themselves: their two-line message was cut to its
    first line ("Class validation error for validator 'validate_rope':", the reason dropped), and a check that
    divides by num_attention_heads 0 was a ZeroDivisionError traceback in every command (battery 21c)."""
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    cfg = json.loads((folder / "config.json").read_text())
    cfg[field] = value
    (folder / "config.json").write_text(json.dumps(cfg))
    for read in (loading.read_rope_info, loading.load_model):
        with pytest.raises(UserError) as e:
            read(folder)
        msg = _one_line(e)
        assert said in msg and "its config.json is refused by transformers' check" in msg and "fix" in msg, msg


@pytest.mark.parametrize("damage", ["shard_missing", "index_not_json", "shard_outside"])
def test_a_sharded_checkpoint_whose_index_or_shard_is_damaged_is_one_line_naming_the_index(tmp_path, damage):
    """A shard the index names that is not there was "No such file or directory: .../model-00002-of-00002.safetensors",
    an index that is no JSON "Expecting property name enclosed in double quotes: line 1 column 2": neither named the
    index nor what to do (battery 21c)."""
    folder = tmp_path / "m"
    build_tiny("llama").save_pretrained(folder, max_shard_size="100KB")
    shards = sorted(folder.glob("model-*.safetensors"))
    assert len(shards) > 1 and (folder / "model.safetensors.index.json").is_file()
    if damage == "shard_missing":
        shards[-1].unlink()
        said = f"its weight index model.safetensors.index.json names {shards[-1].name}, which is not in the folder"
    elif damage == "shard_outside":  # read by transformers from outside the folder when a file lay there
        index = json.loads((folder / "model.safetensors.index.json").read_text())
        outside = tmp_path / shards[-1].name
        shards[-1].rename(outside)
        index["weight_map"] = {k: f"../{v}" if v == shards[-1].name else v for k, v in index["weight_map"].items()}
        (folder / "model.safetensors.index.json").write_text(json.dumps(index))
        said = f"its weight index model.safetensors.index.json names '../{shards[-1].name}', outside the model folder"
    else:
        (folder / "model.safetensors.index.json").write_text("{not json")
        said = "model.safetensors.index.json is not a readable weight index of a sharded checkpoint"
    with pytest.raises(UserError) as e:
        loading.load_model(folder)
    assert said in _one_line(e) and "download or save the model again" in str(e.value)


def test_model_files_this_user_may_not_read_are_said_to_be_unreadable(tmp_path, monkeypatch):
    """Battery 21 (as a user other than root, chmod 000): an unreadable model.safetensors was 'No such file or
    directory', an unreadable tokenizer.json 'its tokenizer files are incomplete or damaged; copy them again', an
    unreadable folder 'has no config.json and no .gguf file'. Each is said as what it is, with the fix."""
    import os
    import shutil

    from longrope.models.loading import embedded_tiny_path, load_tokenizer_of, resolve_source

    folder = tmp_path / "model"
    shutil.copytree(embedded_tiny_path(), folder)
    (folder / "m.gguf").write_bytes(b"GGUF")
    real = os.access
    for denied, said in [(folder / "model.safetensors", r"cannot read model.safetensors in model folder .*chmod"),
                         (folder / "tokenizer.json", r"cannot read tokenizer.json in model folder"),
                         (folder, r"cannot read model folder .*permission denied.*chmod a\+rx"),
                         (folder / "m.gguf", r"cannot read model file .*m.gguf \(permission denied\)")]:
        monkeypatch.setattr(os, "access", lambda p, mode, denied=denied: False if os.fspath(p) == os.fspath(denied)
                            else real(p, mode))
        target = folder / "m.gguf" if denied.name == "m.gguf" else folder
        with pytest.raises(UserError, match=said):
            resolve_source(str(target))
        if denied.name == "tokenizer.json":
            with pytest.raises(UserError, match=said):
                load_tokenizer_of(str(folder))


def _gguf_with(tmp_path, model, name: str, replace) -> Path:
    """``tmp_path/m.gguf``: ``model`` exported as a float32 GGUF, then written again with the tensor ``name``
    given by ``replace(data, writer)`` (which adds it itself); the other keys and tensors as exported."""
    import gguf
    import numpy as np

    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet
    from tests.models.model_helpers import TINY_L, TINY_THETA

    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8),
                   original_max_position_embeddings=TINY_L, max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    reader = gguf.GGUFReader(export_gguf(model, None, fs, tmp_path / "src.gguf", outtype="f32").path)
    writer = gguf.GGUFWriter(tmp_path / "m.gguf", "llama")
    for key, field in reader.fields.items():
        if not key.startswith("GGUF.") and key != "general.architecture":
            kind = field.types[0]
            writer.add_key_value(key, field.contents(), kind,
                                 sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        if t.name == name:
            replace(np.array(t.data), writer)
        else:
            writer.add_tensor(t.name, np.array(t.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return tmp_path / "m.gguf"


@pytest.mark.parametrize("kind", ["folder", "gguf"])
def test_weights_holding_nan_are_refused_in_one_line_without_numpy_warnings(tmp_path, kind, recwarn):
    """A damaged GGUF (a quantized block whose scale is NaN) loaded with numpy's "invalid value encountered in
    multiply" printed, and every perplexity of it was "not finite (... try float32)"; a folder whose weights hold
    NaN likewise (battery 25a)."""
    import gguf
    import numpy as np

    model = build_tiny("llama")
    if kind == "folder":
        with torch.no_grad():
            model.model.layers[0].mlp.up_proj.weight[0, 0] = float("nan")
        path = save_tiny(model, tmp_path / "m")
    else:
        def infinite_scales(data, writer):  # Q8_0, every block's f16 scale infinite (times 0: NaN)
            data[:, :32] = 0.0
            q = gguf.quants.quantize(data, gguf.GGMLQuantizationType.Q8_0)
            q.reshape(-1, 34)[:, :2] = np.frombuffer(np.float16(np.inf).tobytes(), np.uint8)
            writer.add_tensor("blk.0.ffn_up.weight", q, raw_dtype=gguf.GGMLQuantizationType.Q8_0)

        path = _gguf_with(tmp_path, model, "blk.0.ffn_up.weight", infinite_scales)
    with pytest.raises(UserError) as e:
        loading.load_model(path)
    assert "its weights hold NaN or infinite values (e.g. model.layers.0.mlp.up_proj.weight)" in _one_line(e)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_a_gguf_of_a_tensor_type_the_reader_cannot_dequantize_is_refused_before_its_weights(tmp_path):
    """A GGUF holding an F64 (or Q8_1, Q8_K, integer) tensor was a NotImplementedError traceback from gguf's
    dequantizer, after its config and tokenizer had loaded (battery 25a)."""
    import numpy as np

    _gguf_with(tmp_path, build_tiny("llama"), "blk.0.ffn_up.weight",
               lambda data, writer: writer.add_tensor("blk.0.ffn_up.weight", data.astype(np.float64)))
    with pytest.raises(UserError) as e:
        loading.load_model(tmp_path / "m.gguf")
    assert "cannot dequantize: F64 (e.g. blk.0.ffn_up.weight); convert it" in _one_line(e)
