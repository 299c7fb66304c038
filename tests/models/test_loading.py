"""load_model / read_rope_info / resolve_source: every kind of model argument, and its errors."""

from __future__ import annotations

import json
import re

import pytest
import torch

from longrope.errors import UserError
from longrope.models import loading
from longrope.models.families import rope_info_from_config, supported_families_text
from tests.models.model_helpers import TINY_L, TINY_THETA, build_tiny, save_tiny


def test_load_local_folder(tmp_path):
    folder = save_tiny(build_tiny("qwen2"), tmp_path / "m")
    model, tok = loading.load_model(folder, dtype="bf16")
    assert tok is None  # the folder has no tokenizer files
    assert not model.training
    assert next(model.parameters()).dtype == torch.bfloat16
    assert model._longrope_source["kind"] == "folder"


def test_read_rope_info_from_config_only(tmp_path):
    folder = save_tiny(build_tiny("phi3"), tmp_path / "m")
    (folder / "model.safetensors").unlink()  # no weights needed
    info = loading.read_rope_info(folder)
    assert info.supported and info.family == "Phi-3"
    assert (info.head_dim, info.rotary_dim, info.rope_theta) == (16, 8, TINY_THETA)
    assert info.original_max_position_embeddings == TINY_L
    assert info.rope_scaling is None


def test_rope_info_reports_present_scaling():
    from tests.models.model_helpers import tiny_config

    config = tiny_config(
        "llama",
        rope_parameters={"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TINY_L},
        max_position_embeddings=4 * TINY_L,
    )
    info = rope_info_from_config(config)
    assert info.original_max_position_embeddings == TINY_L
    assert info.max_position_embeddings == 4 * TINY_L
    assert info.rope_scaling["rope_type"] == "yarn" and info.rope_scaling["factor"] == 4.0


@pytest.mark.parametrize("theta", [float("nan"), float("inf"), -5.0, 0.0])
def test_a_config_whose_rope_theta_is_no_finite_positive_number_is_unsupported(theta):
    """It was reported as supported (inspect printed "rope_theta": NaN, which is no JSON), and the commands
    went on with it."""
    import json

    from tests.models.model_helpers import tiny_config

    info = rope_info_from_config(tiny_config("llama", rope_parameters={"rope_type": "default", "rope_theta": theta}))
    assert not info.supported and "not a finite number > 0" in info.reason
    json.dumps(info.rope_theta, allow_nan=False)


@pytest.mark.parametrize("family, field, value, said", [
    ("llama", "rope_theta", "abc", "rope_theta 'abc', which is not a number"),
    ("llama", "rope_theta", "10000", "rope_theta '10000', which is not a number"),
    ("phi3", "partial_rotary_factor", "half", "partial_rotary_factor 'half', not a number in (0, 1]"),
    ("phi3", "partial_rotary_factor", 1.5, "partial_rotary_factor 1.5, not a number in (0, 1]"),
    ("phi3", "partial_rotary_factor", float("nan"), "partial_rotary_factor nan, not a number in (0, 1]"),
    ("llama", "max_position_embeddings", 0, "max_position_embeddings 0, not a context length"),
    ("llama", "max_position_embeddings", -1, "max_position_embeddings -1, not a context length"),
    ("llama", "max_position_embeddings", 10**18, "max_position_embeddings an integer of 19 digits, not a context"),
    ("llama", "original_max_position_embeddings", "256", "original_max_position_embeddings '256', not a context"),
])
def test_rope_facts_of_the_wrong_kind_or_out_of_range_are_unsupported_with_the_field_named(family, field, value, said):
    """A config.json's RoPE facts as written are checked: a rope_theta "abc" or partial_rotary_factor "half" was a
    ValueError traceback in every command, a rope_theta "10000" passed as supported (then a TypeError in the forward),
    max_position_embeddings 0 or -1 was read as L (and printed back as the fix "--target-length -2"), a Phi-3
    partial_rotary_factor 1.5 rotated more channels than its head has (battery 21c)."""
    import types

    from tests.models.model_helpers import tiny_config

    config = tiny_config(family).to_dict()
    params = dict(config["rope_parameters"])
    if field == "original_max_position_embeddings":
        params.update(rope_type="yarn", factor=4.0, original_max_position_embeddings=value)
    elif field == "max_position_embeddings":
        config[field] = value
    else:
        params[field] = value
    config["rope_parameters"] = params
    info = rope_info_from_config(types.SimpleNamespace(**config))  # as written: transformers' class checks aside
    assert not info.supported and said in info.reason, info.reason


def test_a_config_json_that_names_no_context_length_is_unsupported_unless_the_length_is_given(tmp_path):
    """A config.json without max_position_embeddings was read as its config class's default (Llama's 2048) and every
    factor and target length built on it; a length the model's files do not give (battery 22's open item)."""
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    config = json.loads((folder / "config.json").read_text())
    del config["max_position_embeddings"]
    (folder / "config.json").write_text(json.dumps(config))
    info = loading.read_rope_info(folder)
    assert not info.supported and "names no max_position_embeddings" in info.reason
    assert "2,048" in info.reason and "baseline, export and generate also take it as --original-length" in info.reason
    assert loading.read_rope_info(folder, original_length=TINY_L).supported  # the user gave L on purpose
    config["rope_parameters"] = {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TINY_L,
                                 "rope_theta": TINY_THETA}
    (folder / "config.json").write_text(json.dumps(config))
    assert loading.read_rope_info(folder).original_max_position_embeddings == TINY_L  # L written in its rope block


def test_partial_rotary_on_a_family_that_ignores_it_is_unsupported():
    from tests.models.model_helpers import tiny_config

    config = tiny_config("llama", rope_parameters={"partial_rotary_factor": 0.5})
    info = rope_info_from_config(config)
    assert not info.supported and "partial_rotary_factor" in info.reason


def test_missing_paths_are_user_errors(tmp_path):
    for bad in (str(tmp_path / "nope"), "./nope", "nope.gguf", "~/nope-model"):
        with pytest.raises(UserError, match="no such model"):
            loading.resolve_source(bad)
    (tmp_path / "weights.bin").write_text("x")
    with pytest.raises(UserError, match="not a .gguf"):
        loading.resolve_source(tmp_path / "weights.bin")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no config.json"):
        loading.resolve_source(tmp_path / "empty")


def test_a_home_folder_of_no_such_user_is_a_missing_path_not_a_traceback():
    """battery 28a: inspect --model '~nosuchuser/m' was pathlib's RuntimeError 'Could not determine home directory.'
    as a traceback; the path is looked for as written and said to be missing, as every other missing path."""
    from longrope.data.tokenizer_loading import load_tokenizer

    with pytest.raises(UserError, match="no such model"):
        loading.resolve_source("~longrope-no-such-user-28a/model")
    with pytest.raises(UserError):
        load_tokenizer("~longrope-no-such-user-28a/model")


def test_a_run_folder_is_refused_as_a_model_saying_what_it_is(tmp_path):
    """Battery 8: inspect/search --model RUN (a search run folder) said transformers' 'Unrecognized model ...
    Should have a `model_type` key'; a run folder is named as one, a finetune run's pointing at its model/."""
    import json

    record = {"format": "longrope-run/1", "command": "search", "config": {"model": "tiny"}}
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "config.json").write_text(json.dumps(record))
    with pytest.raises(UserError, match=r"s is a search run folder, not a model: give the model it ran on"):
        loading.resolve_source(tmp_path / "s")
    (tmp_path / "f" / "model").mkdir(parents=True)
    (tmp_path / "f" / "config.json").write_text(json.dumps({**record, "command": "finetune"}))
    (tmp_path / "f" / "model" / "config.json").write_text(json.dumps({"model_type": "llama"}))
    with pytest.raises(UserError, match=r"f is a finetune run folder, not a model: give its model/ folder"):
        loading.resolve_source(tmp_path / "f")
    assert loading.resolve_source(tmp_path / "f" / "model").kind == "folder"


def test_a_shard_folder_or_a_checkpoint_is_refused_as_a_model_saying_what_it_is(tmp_path):
    """Battery 19c: inspect --model on a shard folder or a fine-tune checkpoint said 'model folder X has no
    config.json'; each is named as what it is, with what to give instead."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "meta.json").write_text("{}")
    (shards / "index.npy").write_bytes(b"")
    with pytest.raises(UserError, match=r"shards is a shard folder from 'longrope tokenize' .*pass it as --data"):
        loading.resolve_source(shards)
    ckpt = tmp_path / "run" / "checkpoints" / "step-00000002"
    ckpt.mkdir(parents=True)
    (ckpt / "train_state.json").write_text("{}")
    with pytest.raises(UserError, match=r"is a fine-tune checkpoint .*finish the run with 'longrope finetune"):
        loading.resolve_source(ckpt)
    (tmp_path / "run" / "model").mkdir()
    (tmp_path / "run" / "model" / "config.json").write_text("{}")
    with pytest.raises(UserError, match=r"is a fine-tune checkpoint .*give .*run/model \(the fine-tuned model\)"):
        loading.resolve_source(ckpt)


def test_gguf_file_and_folder_resolve(tmp_path):
    (tmp_path / "m.gguf").write_bytes(b"GGUF")
    src = loading.resolve_source(tmp_path / "m.gguf")
    assert (src.kind, src.gguf_file) == ("gguf", "m.gguf")
    assert loading.resolve_source(tmp_path).gguf_file == "m.gguf"


def test_a_gguf_reached_through_a_link_or_named_in_capitals_is_found(tmp_path):
    """A link named *.gguf to a file of another name (a hub cache's snapshots/REV/model.gguf -> ../../blobs/SHA) was
    looked for beside its target, as blobs/model.gguf ("No such file or directory"); a folder holding M.GGUF had "no
    .gguf file" though M.GGUF given as a file loads (battery 25a)."""
    import numpy as np

    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    (tmp_path / "blobs").mkdir()
    export_gguf(build_tiny("llama"), None, fs, tmp_path / "blobs" / "m.gguf", outtype="f32")
    (tmp_path / "blobs" / "m.gguf").rename(tmp_path / "blobs" / "5f3a9c")
    (tmp_path / "snapshot").mkdir()
    (tmp_path / "snapshot" / "model.gguf").symlink_to("../blobs/5f3a9c")
    (tmp_path / "upper").mkdir()
    (tmp_path / "upper" / "M.GGUF").write_bytes((tmp_path / "blobs" / "5f3a9c").read_bytes())
    for model in (tmp_path / "snapshot" / "model.gguf", tmp_path / "snapshot", tmp_path / "upper"):
        assert loading.read_rope_info(model).original_max_position_embeddings == TINY_L, model


def test_missing_embedded_tiny_model_is_a_user_error(tmp_path, monkeypatch):
    monkeypatch.setattr(loading, "embedded_tiny_path", lambda: tmp_path / "tiny")
    with pytest.raises(UserError, match="embedded tiny model is missing"):
        loading.resolve_source("tiny")


def test_unreachable_hub_is_one_line_user_error(monkeypatch):
    monkeypatch.setattr(loading, "_hub_reachable", lambda timeout=3.0: False)
    with pytest.raises(UserError) as e:
        loading.load_config("some-org/some-model-that-is-not-cached")
    msg = str(e.value)
    assert "\n" not in msg and "hub" in msg and "local model folder" in msg


def test_smollm2_source_comes_from_the_package():
    src = loading.resolve_source("smollm2")
    assert src.kind == "gguf" and src.gguf_file == loading.SMOLLM2_GGUF


def test_dtype_and_device_errors():
    assert loading.resolve_dtype("bfloat16") is torch.bfloat16
    assert loading.resolve_dtype(torch.float16) is torch.float16
    with pytest.raises(UserError, match="unknown dtype"):
        loading.resolve_dtype("int7")
    with pytest.raises(UserError, match="unknown dtype"):  # a torch dtype too (battery 9a: export_hf took int8)
        loading.resolve_dtype(torch.int8)
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="CUDA is not available"):
            loading.resolve_device("cuda")
    with pytest.raises(UserError, match="bad device"):
        loading.resolve_device("toaster")


@pytest.mark.parametrize("device", ["meta", "xla", "hpu:0", "ipu"])
def test_a_device_torch_names_but_cannot_run_a_model_on_is_one_line(device):
    """--device meta ended an evaluation in "Tensor.item() cannot be called on meta tensors", --device xla in
    "PyTorch is not linked with support for xla devices": tracebacks after the model loaded (battery 17)."""
    with pytest.raises(UserError, match=f"bad device '{device}': a model runs on cpu, cuda"):
        loading.resolve_device(device)


def test_auto_device_is_the_one_reading_of_auto(monkeypatch):
    """"auto" (or no setting) is CUDA when there is a GPU, else the CPU; other names are resolve_device's."""
    for has_gpu, expected in ((False, "cpu"), (True, "cuda")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda has_gpu=has_gpu: has_gpu)
        assert loading.auto_device("auto") == torch.device(expected)
        assert loading.auto_device(None) == torch.device(expected)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert loading.auto_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="CUDA is not available; give cpu"):
        loading.auto_device("cuda", fix="give cpu")


def test_supported_families_text_names_all():
    text = supported_families_text()
    for name in ("llama", "mistral", "qwen2", "phi3", "gemma"):
        assert f"({name})" in text


@pytest.mark.slow
def test_load_smollm2_gguf():
    model, tok = loading.load_model("smollm2")
    info = loading.read_rope_info("smollm2")
    assert info.family == "Llama" and info.rotary_dim == 64 and info.rope_theta == 100000.0
    assert tok is not None and tok("hello")["input_ids"]
    assert model.config.model_type == "llama"


@pytest.mark.parametrize("damage", ["config_only", "no_tokenizer_json", "empty_tokenizer_json"])
def test_a_model_folder_with_incomplete_tokenizer_files_is_one_line_naming_them(tmp_path, damage):
    """Battery 14b: tokenizer_config.json alone made a 3-token tokenizer that encoded any text as nothing (then
    refused as 'a different vocabulary; re-run tokenize'); a missing or empty tokenizer.json was transformers'
    "Couldn't instantiate the backend tokenizer from one of:" or a bare "'added_tokens'"."""
    import shutil

    folder = tmp_path / "m"
    shutil.copytree(loading.embedded_tiny_path(), folder)
    if damage == "config_only":
        (folder / "tokenizer.json").unlink()
        (folder / "tokenizer_config.json").write_text('{"tokenizer_class": "LlamaTokenizer"}')
    elif damage == "no_tokenizer_json":
        (folder / "tokenizer.json").unlink()
    else:
        (folder / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="tokenizer of .*(incomplete|damaged).*copy tokenizer.json") as e:
        loading.load_tokenizer_of(str(folder))
    assert "\n" not in str(e.value)


def test_a_model_folder_whose_tokenizer_is_longer_than_its_embeddings_is_one_line_naming_its_tokenizer(tmp_path):
    """Battery 27c: a folder holding another model's larger tokenizer was refused later with fixes that did not fit
    it ("tokenize with the model's tokenizer" from eval ppl on shards of that very tokenizer, "the shards were
    tokenized for another model" from finetune, "give this model's own tokenizer (or None ...)" from export)."""
    from tests.data.data_helpers import make_tokenizer

    folder = save_tiny(build_tiny("llama"), tmp_path / "m")  # 128 embeddings
    make_tokenizer(300).save_pretrained(folder)
    with pytest.raises(UserError, match=r"tokenizer of .*: its base vocabulary has 300 tokens but the model has 128 "
                                        r"token embeddings.*"
                                        r"another model's; copy tokenizer.json") as e:
        loading.load_tokenizer_of(str(folder))
    assert "\n" not in str(e.value)
    save_tiny(build_tiny("llama", vocab_size=300), folder)  # its own size: loads
    assert len(loading.load_tokenizer_of(str(folder))) == 300
    # the review of battery 27c: a model's own tokenizer may add special tokens past its embeddings that no text
    # becomes (CodeLlama-34b: 32,004 tokens for 32,000 rows): judged by its base vocabulary, it loads
    tok = make_tokenizer(300)
    tok.add_special_tokens({"additional_special_tokens": ["<PRE>", "<SUF>", "<MID>", "<EOT>"]})
    tok.save_pretrained(folder)
    assert len(loading.load_tokenizer_of(str(folder))) == 304


def test_a_phi3_long_context_config_loads_without_transformers_factor_note(tmp_path):
    """Battery 14b: a config laid out as Phi-3-mini-128k's (longrope scaling without `factor`, L as the top-level
    original_max_position_embeddings) printed transformers' "Please set the `factor` field of `rope_parameters`"
    on every command; the published configs are that way and transformers reads them alike."""
    import json
    import logging

    folder = save_tiny(build_tiny("phi3"), tmp_path / "phi3")
    config = json.loads((folder / "config.json").read_text())
    half = loading.read_rope_info(str(folder)).rotary_dim // 2
    config["rope_parameters"] = {**config["rope_parameters"], "rope_type": "longrope",
                                 "short_factor": [1.0] * half, "long_factor": [2.0] * half}
    config.update(original_max_position_embeddings=TINY_L, max_position_embeddings=4 * TINY_L)
    (folder / "config.json").write_text(json.dumps(config))
    logging.Logger.warning_once.cache_clear()  # transformers says it once per process
    seen: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: seen.append(record.getMessage())
    logger = logging.getLogger("transformers.modeling_rope_utils")  # transformers' loggers do not propagate
    logger.addHandler(handler)
    try:
        info = loading.read_rope_info(str(folder))
    finally:
        logger.removeHandler(handler)
    assert info.max_position_embeddings == 4 * TINY_L
    assert not [m for m in seen if "factor` field" in m]


def test_a_partial_rotary_gguf_loads_as_the_model_it_was_exported_from(tmp_path, capfd):
    """transformers' GGUF reader drops phi3.rope.dimension_count: a Phi-3 GGUF rotating half of each head was
    read as rotating all of it (another model), and Phi3Config's default pad id 32000 was warned about."""
    import numpy as np

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")  # a GGUF without a tokenizer is not one transformers reads
    model = build_tiny("phi3", vocab_size=len(tokenizer))
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 4), short_factor=np.ones(4), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    path = export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32").path
    capfd.readouterr()
    assert loading.read_rope_info(path).rotary_dim == rope_info_from_config(model.config).rotary_dim == 8
    loaded = loading.load_model(path, dtype="float32", device="cpu")[0]
    assert rope_info_from_config(loaded.config).rotary_dim == 8
    assert loaded.config.pad_token_id is None
    assert "pad_token_id" not in capfd.readouterr().err


def test_a_gguf_tokenizer_has_the_vocabulary_of_the_folder_it_was_exported_from(tmp_path):
    """transformers' GPT-2 GGUF tokenizer adds its class default '<|endoftext|>' at id n when the vocabulary has
    none: a GGUF of the embedded tiny model had 4,097 tokens for 4,096 embeddings, so eval refused even shards of
    its own tokenizer, and the folder's shards for another vocabulary hash (battery 20d)."""
    import numpy as np

    from longrope.data import vocab_sha256
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")
    model = build_tiny("llama", vocab_size=len(tokenizer))
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    path = export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32").path
    read = load_tokenizer(path)
    assert len(read) == len(tokenizer) == 4096
    assert vocab_sha256(read) == vocab_sha256(tokenizer)
    text = "a line <|endoftext|> and </s> more"
    assert read(text)["input_ids"] == tokenizer(text)["input_ids"]


def test_a_smollm_gguf_tokenizer_splits_digits_as_the_folder_it_was_exported_from(tmp_path):
    """transformers' GGUF reader ignores ``tokenizer.ggml.pre`` 'smollm' (digits split one by one before GPT-2's
    regex): whitespace before a digit was tokenized otherwise than by the tiny model's own tokenizer, on 2 of the 8
    shipped documents (and by the ``smollm2`` model than by SmolLM2's tokenizer and llama.cpp; battery 25a)."""
    import numpy as np

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")
    model = build_tiny("llama", vocab_size=len(tokenizer))
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    read = load_tokenizer(export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32").path)
    for text in ("&c.]\n\n1 Clown", "q r.\n        2 < 3", "pass key 90210 is 4 7"):
        assert read(text)["input_ids"] == tokenizer(text)["input_ids"], text


def test_a_gguf_written_without_a_tokenizer_loads_as_a_folder_without_one(tmp_path):
    """export --format gguf of a folder without tokenizer files writes tokenizer.ggml.model 'none'; load_model
    then asked transformers for its tokenizer: "Cannot build a tokenizer from a GGUF file stating tokenizer 'none'"
    (battery 20d), so longrope could not read back a file it wrote. The model loads with no tokenizer, as such a
    folder does."""
    import numpy as np

    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    model = build_tiny("qwen2")
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    path = export_gguf(model, None, fs, tmp_path / "m.gguf", outtype="f32").path
    assert loading.load_tokenizer_of(path) is None
    loaded, tokenizer = loading.load_model(path, dtype="float32", device="cpu")
    assert tokenizer is None and loaded.config.vocab_size == model.config.vocab_size


def _gguf_with(src, dst, wanted):
    """``src`` rewritten with each header key of ``wanted`` set to its ``(value, GGUFValueType)``."""
    import gguf
    import numpy as np

    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(dst, reader.get_field("general.architecture").contents())
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture" or name in wanted:
            continue
        kind = field.types[0]
        writer.add_key_value(name, field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for name, (value, kind) in wanted.items():
        writer.add_key_value(name, value, kind)
    for t in reader.tensors:
        writer.add_tensor(t.name, np.array(t.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return dst


@pytest.mark.parametrize("damage, said", [
    ("drop blk.1.ffn_up.weight", "its weights do not fit its GGUF header: 1 tensor(s) its GGUF header needs"),
    ("drop tokenizer.ggml.tokens", "its GGUF header lacks 'tokens'"),
    ("arch bogus", "architecture bogus is not supported"),
    ("theta -5", "rope_theta -5.0, not a finite number > 0"),
])
def test_a_gguf_transformers_refuses_is_told_with_what_to_do(tmp_path, damage, said):
    """A GGUF whose tensors do not fit its header was told to "use the config.json saved with them" (a GGUF has
    none), a header's RoPE fact written wrong to "fix it in its config.json", and transformers' reader's own refusals
    came bare: "'tokens'", "architecture bogus is not supported yet" (battery 25a)."""
    import gguf
    import numpy as np

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    src = export_gguf(build_tiny("llama", vocab_size=len(tokenizer)), tokenizer, fs, tmp_path / "src.gguf",
                      outtype="f32").path
    how, what = damage.split()
    reader = gguf.GGUFReader(src)
    arch = what if how == "arch" else "llama"
    writer = gguf.GGUFWriter(tmp_path / "m.gguf", arch)
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name in ("general.architecture", what):
            continue
        kind = field.types[0]
        if how == "theta" and name == "llama.rope.freq_base":
            writer.add_key_value(name, float(what), kind)
            continue
        writer.add_key_value(name.replace("llama.", f"{arch}."), field.contents(), kind,
                             sub_type=field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        if t.name != what:
            writer.add_tensor(t.name, np.array(t.data))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    if how == "theta":
        reason = loading.read_rope_info(tmp_path / "m.gguf").reason
    else:
        with pytest.raises(UserError) as e:
            loading.load_model(tmp_path / "m.gguf")
        reason = str(e.value)
    assert said in reason and "config.json" not in reason and "\n" not in reason
    assert reason.endswith(loading.GGUF_FIX)


@pytest.mark.parametrize("keys, said", [
    ({"original_context_length": (0, "UINT32")}, "original_context_length is 0, not a context length"),
    ({"original_context_length": ("256", "STRING")}, "original_context_length is '256', not a context length"),
    ({"type": ("bogus", "STRING")}, "scaling.type is 'bogus', not one of llama.cpp's scaling types"),
    ({"type": (7, "UINT32")}, "scaling.type is 7, not one of llama.cpp's scaling types"),
    ({"attn_factor": (float("nan"), "FLOAT32")}, "attn_factor is nan, not a finite number > 0"),
    ({"type": ("linear", "STRING"), "factor": (4.0, "FLOAT32")}, "linear with factor 4 (a position-interpolation"),
])
def test_a_gguf_header_rope_scaling_is_checked_as_a_config_json_one(tmp_path, keys, said):
    """A GGUF header's rope.scaling keys were read only where they had the kind expected, else dropped: an
    original_context_length 0 or "256" left L at the extended context_length, a type 'bogus' or 7 passed, and a
    header declaring linear ×4 (a position-interpolation fine-tune) was supported, its scaling silently replaced by
    the factors, where the same model as a folder is refused (battery 21c)."""
    import gguf
    import numpy as np

    from longrope.models import inspect_model
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    good = export_gguf(build_tiny("llama"), None, fs, tmp_path / "m.gguf", outtype="f32").path
    typed = {f"llama.rope.scaling.{k}": (v, getattr(gguf.GGUFValueType, kind)) for k, (v, kind) in keys.items()}
    path = _gguf_with(good, tmp_path / "bad.gguf", typed)
    if "linear" in said:  # well formed, and unsupported as the folder is
        for info in (loading.read_rope_info(path), inspect_model(loading.load_model(path)[0])):
            assert not info.supported and said in info.reason
        return
    for read in (loading.read_rope_info, loading.load_model):
        with pytest.raises(UserError, match=re.escape(said)):
            read(path)


@pytest.mark.parametrize("kind", ["folder", "gguf"])
def test_a_tokenizer_its_library_cannot_build_is_one_line_before_the_weights_are_read(tmp_path, kind):
    """tokenizers' bare Exception for a tokenizer.json whose merges name tokens its vocabulary lacks, and an
    IndexError for a GGUF whose bos id lies past its token list, were tracebacks, after the weights had loaded
    (battery 21c). Here the weights are damaged too: the tokenizer is what is refused, so it is read first."""
    import gguf
    import numpy as np

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")
    model = build_tiny("llama", vocab_size=len(tokenizer))
    if kind == "folder":
        path = save_tiny(model, tmp_path / "m")
        tokenizer.save_pretrained(path)
        spec = json.loads((path / "tokenizer.json").read_text())
        spec["model"]["vocab"] = dict(list(spec["model"]["vocab"].items())[:50])
        (path / "tokenizer.json").write_text(json.dumps(spec))
        (path / "model.safetensors").write_bytes(b"\0" * 64)
        said = "its tokenizer files are incomplete or damaged"
    else:
        fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8),
                       original_max_position_embeddings=TINY_L, max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
        good = export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32").path
        path = _gguf_with(good, tmp_path / "bad.gguf", {"tokenizer.ggml.bos_token_id": (99999, gguf.GGUFValueType.UINT32)})
        said = "its GGUF header's tokenizer keys (tokenizer.ggml.*) are damaged"
    for read in (loading.load_tokenizer_of, loading.load_model):
        with pytest.raises(UserError) as e:
            read(path)
        assert "\n" not in str(e.value) and said in str(e.value) and "cannot load the tokenizer" in str(e.value)


def test_a_qwen3_gguf_whose_head_is_not_the_class_default_loads_as_the_model_it_was_written_from(tmp_path):
    """transformers' qwen3 GGUF reader takes no head size from the header: Qwen3Config's default 128 stood, so a
    Qwen3 of head 16 was read as rotating 16 of 128 channels ("Qwen3 rotates the whole head but its config has
    partial_rotary_factor=0.125") and its weights refused as not fitting (battery 21c). The head size is the header's
    attention.key_length, as llama.cpp reads it."""
    import gguf
    import numpy as np

    from tests.models.model_helpers import tiny_ids

    model = build_tiny("qwen3")
    c = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN3, c.num_hidden_layers)
    writer = gguf.GGUFWriter(tmp_path / "q.gguf", "qwen3")
    u32, f32 = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.FLOAT32
    for key, value, kind in [
        ("context_length", c.max_position_embeddings, u32), ("embedding_length", c.hidden_size, u32),
        ("block_count", c.num_hidden_layers, u32), ("feed_forward_length", c.intermediate_size, u32),
        ("attention.head_count", c.num_attention_heads, u32), ("attention.head_count_kv", c.num_key_value_heads, u32),
        ("rope.freq_base", TINY_THETA, f32), ("attention.layer_norm_rms_epsilon", c.rms_norm_eps, f32),
        ("rope.dimension_count", c.head_dim, u32), ("attention.key_length", c.head_dim, u32),
        ("attention.value_length", c.head_dim, u32), ("vocab_size", c.vocab_size, u32),
    ]:
        writer.add_key_value(f"qwen3.{key}", value, kind)
    writer.add_key_value("tokenizer.ggml.model", "none", gguf.GGUFValueType.STRING)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    info = loading.read_rope_info(tmp_path / "q.gguf")
    assert info.supported and (info.head_dim, info.rotary_dim) == (16, 16), info.reason
    loaded = loading.load_model(tmp_path / "q.gguf")[0]
    ids = tiny_ids(24)
    with torch.no_grad():
        np.testing.assert_allclose(loaded(ids).logits.numpy(), model(ids).logits.numpy(), atol=1e-4)


def test_a_gguf_whose_rotary_dims_exceed_its_head_is_refused_before_factors_are_made(tmp_path):
    """rope.dimension_count larger than the head size (a header written wrong): baseline wrote factors for that many
    pairs, and only loading the weights refused the file (battery 21c open item). The header is refused where the
    config is read, by every command."""
    import gguf
    import numpy as np

    from longrope.cli import main
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    good = export_gguf(build_tiny("llama"), None, fs, tmp_path / "m.gguf", outtype="f32").path
    head = int(loading.read_rope_info(good).rotary_dim)
    path = _gguf_with(good, tmp_path / "wide.gguf", {"llama.rope.dimension_count": (2 * head, gguf.GGUFValueType.UINT32)})
    with pytest.raises(UserError, match=f"rope.dimension_count {2 * head} is larger than the head size {head}"):
        loading.read_rope_info(path)
    out = tmp_path / "f.json"
    assert main(["baseline", "--model", str(path), "--method", "pi", "--target-length", "4x", "-o", str(out)]) == 2
    assert not out.exists()


def test_a_digest_taken_in_one_process_is_trusted_in_another_while_the_files_are_unchanged(tmp_path, monkeypatch):
    """A search's workers (spawned afresh) each read the whole model again to check it was still the one the search
    started with, and loaded it before checking (review of battery 23b). The start passes the files' stat facts
    with the digest: a worker reads the weights only when a file changed, and refuses a changed model before it
    loads it."""
    import longrope.io as io_mod
    from longrope.search.objective import ObjectiveSpec

    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    digest = loading.model_digest(folder)
    facts = loading.digest_facts(folder, digest)
    assert facts is not None and loading.digest_facts(folder, "0" * 64) is None
    reads = []
    real = io_mod.update_hash
    monkeypatch.setattr(io_mod, "update_hash", lambda h, path: (reads.append(path), real(h, path)))
    monkeypatch.setattr(loading, "_DIGESTS", {})  # a fresh process
    loading.trust_digest(json.loads(json.dumps(facts)), digest)  # as pickled or written: lists
    assert loading.model_digest(folder) == digest and reads == []
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    assert loading.model_digest(folder) != digest and reads

    def no_load(*args, **kwargs):
        raise AssertionError("the changed model was loaded before it was refused")

    monkeypatch.setattr(loading, "load_model", no_load)
    spec = ObjectiveSpec.__new__(ObjectiveSpec)  # the fields the check reads, without a search plan to build
    spec.__dict__.update(model=str(folder), data=str(tmp_path), threads=None, model_sha256=digest,
                         model_facts=facts, data_digest=None)
    with pytest.raises(UserError, match="changed while the search ran"):
        spec("cpu")


def test_a_folder_here_named_as_an_embedded_model_is_noted_once_as_not_used(tmp_path, monkeypatch, caplog):
    """Battery 28a's open item: after `cp -r some-model tiny`, `--model tiny` measured the embedded model without a
    word. The name keeps its meaning; one note (a warning of this module's logger, which reaches the user of the
    command line) says the folder here is not used and how to reach it."""
    import logging

    from longrope.cli import main

    monkeypatch.setattr(loading, "_SHADOWED_NOTED", set())
    monkeypatch.chdir(tmp_path)
    note = "note: 'tiny' names the embedded tiny model; the tiny in this folder is not used (write ./tiny for it)"
    with caplog.at_level(logging.WARNING, logger=loading.__name__):
        assert main(["inspect", "--model", "tiny"]) == 0
        assert note not in caplog.text  # no such folder here: nothing to say
        (tmp_path / "tiny").mkdir()
        assert main(["inspect", "--model", "tiny"]) == 0 and main(["inspect", "--model", "tiny"]) == 0
    assert [r.getMessage() for r in caplog.records].count(note) == 1, caplog.text


def test_load_model_reads_device_auto_as_every_command_does(tmp_path):
    """load_model(path, device="auto") was refused with torch's list of device types and "use --device cpu", though
    "auto" is every command's device default (CUDA when there is one; battery 29a)."""
    folder = save_tiny(build_tiny("llama"), tmp_path / "m")
    model, _ = loading.load_model(folder, device="auto")
    want = "cuda" if torch.cuda.is_available() else "cpu"
    assert next(model.parameters()).device.type == want


def test_a_gguf_header_is_parsed_once_per_file_version_while_it_loads(tmp_path, monkeypatch):
    """Loading the smollm2 tokenizer parsed its 49k-token GGUF header six times (5 s each: 29 s before any work, in
    every command given a GGUF; battery 31c). A file written again (another version) is parsed again."""
    import sys

    import gguf
    import numpy as np

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.models.gguf import export_gguf
    from longrope.rope import FactorSet

    tokenizer = load_tokenizer("tiny")
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    path = export_gguf(build_tiny("llama", vocab_size=len(tokenizer)), tokenizer, fs, tmp_path / "m.gguf",
                       outtype="f32").path
    parsed = []

    class Counting(gguf.GGUFReader):
        def __init__(self, *args, **kwargs):
            if sys._getframe(1).f_globals["__name__"].startswith("longrope."):  # transformers parses it once more
                parsed.append(args)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(gguf, "GGUFReader", Counting)
    loading.load_tokenizer_of(path)
    assert len(parsed) == 1
    loading.load_tokenizer_of(path)
    assert len(parsed) == 1
    path.write_bytes(path.read_bytes())  # a new version of the file
    assert loading.read_rope_info(path).original_max_position_embeddings == TINY_L
    assert len(parsed) == 2
    # second review of battery 31: a kept reader of a file since deleted held its memory map (the disk space) for the
    # life of the process; it is dropped at the next call, and the cache is used under a lock (threads)
    from longrope.models import gguf as ours

    other = tmp_path / "other.gguf"
    other.write_bytes(path.read_bytes())
    ours.open_gguf(other)
    other.unlink()
    ours.open_gguf(path)
    assert all(key[0] != str(other) for key in ours._READERS)
