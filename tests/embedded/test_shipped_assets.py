"""The shipped tiny model, tokenizer and corpus load offline and fit together."""

from __future__ import annotations

import math

import pytest

from longrope.embedded import (
    CORPUS_DIR,
    TINY_MODEL_DIR,
    heldout_texts,
    load_split,
    search_texts,
    training_info,
)


@pytest.fixture(scope="module")
def tiny():
    """The embedded model (fp32) and tokenizer, loaded with the hub switched off."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    old = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    try:
        model = AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return model.eval(), tok


def test_folder_is_a_normal_hf_folder():
    names = {p.name for p in TINY_MODEL_DIR.iterdir()}
    for required in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                     "training.json", "train_log.jsonl"):
        assert required in names
    # fp16 weights: a few MB, not a 17 MB fp32 dump
    assert TINY_MODEL_DIR.joinpath("model.safetensors").stat().st_size < 12e6


def test_model_is_a_short_context_llama_with_standard_rope(tiny):
    model, tok = tiny
    cfg = model.config
    info = training_info()
    assert cfg.model_type == "llama"
    assert cfg.max_position_embeddings == info["config"]["context"] == 256
    assert cfg.hidden_size // cfg.num_attention_heads == 64  # 32 frequency pairs
    rope = getattr(cfg, "rope_parameters", None) or {}
    assert rope.get("rope_type", "default") == "default"
    assert float(rope.get("rope_theta", getattr(cfg, "rope_theta", 0))) == 10000.0
    assert cfg.vocab_size == len(tok) == 4096


def test_tokenizer_prepends_bos_and_splits_digits(tiny):
    _, tok = tiny
    ids = tok("The pass key is 40721.")["input_ids"]
    assert ids[0] == tok.bos_token_id == 1
    assert tok.eos_token_id == 2
    digits = [t for t in tok.convert_ids_to_tokens(ids) if t.isdigit()]
    assert digits == list("40721")
    assert tok.decode(ids, skip_special_tokens=True) == "The pass key is 40721."


def test_model_predicts_heldout_text_far_better_than_chance(tiny):
    """A real language model: PPL at its trained length on held-out prose well below the vocab."""
    import torch

    model, tok = tiny
    text = next(iter(heldout_texts().values()))
    ids = tok(text[20000:40000])["input_ids"][:256]
    x = torch.tensor([ids])
    with torch.inference_mode():
        loss = model(input_ids=x, labels=x).loss
    ppl = math.exp(float(loss))
    assert ppl < 200, ppl  # uniform guessing is 4096; the report says ~the shipped training.json value


def test_training_record_names_the_command_and_matches_config(tiny):
    model, _ = tiny
    info = training_info()
    assert info["command"].startswith("longrope train-tiny ")
    assert f"--seed {info['seed']}" in info["command"]
    assert info["config"]["num_layers"] == model.config.num_hidden_layers
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    rep = info["report"]
    assert rep["ppl_256"] < rep["ppl_2048_unscaled"]  # unscaled RoPE degrades beyond its window
    lines = TINY_MODEL_DIR.joinpath("train_log.jsonl").read_text().splitlines()
    assert len(lines) >= 2 and '"step"' in lines[-1]


def test_shipped_docs_are_long_enough_for_16x():
    split = load_split()
    tokens = split["notes"]["tokens"]
    for name in split["roles"]["search"] + split["roles"]["heldout"]:
        assert tokens[name] >= 4096, name
    assert set(search_texts()) == set(split["roles"]["search"])
    assert set(heldout_texts()) == set(split["roles"]["heldout"])
    assert CORPUS_DIR.joinpath("split.json").exists()


def test_load_split_missing_is_a_user_error(tmp_path):
    from longrope.errors import UserError

    with pytest.raises(UserError, match="split.json"):
        load_split(tmp_path)


def test_a_staged_run_records_its_starting_checkpoint():
    run = training_info()["run"]
    if "init_from" in run:
        init = run["init_from"]
        assert len(init["sha256"]) == 64 and init["step"] >= 1 and len(init["fingerprint"]) == 16
        assert init["log"] and init["log"][-1]["step"] <= init["step"]


def test_training_info_of_a_folder_without_its_record_is_one_line(tmp_path):
    """training_info('/nonexistent') was a FileNotFoundError traceback (battery 29a's open item)."""
    import pytest

    from longrope.embedded import training_info
    from longrope.errors import UserError

    assert training_info()["config"]  # the shipped model's record
    with pytest.raises(UserError, match=r"training.json does not exist .*tools.train_tiny"):
        training_info(tmp_path)
