"""Fixtures for the run tests: small random Llamas *with a tokenizer*, saved as model folders.

``tiny``: a 2-layer Llama (d = 16 → 8 factors, L = 32) with a BPE trained on the passkey sentences,
and a shard folder of patterned random documents (5 search, 5 held out) — for search and eval runs.

``demo_model_dir``:

The demo tokenizes the shipped books with the model's tokenizer, so the bare fixture models of
``tests/conftest.py`` (no tokenizer) do not fit. This one pairs a seeded random 2-layer Llama
(hidden 64, head_dim 16 → 8 frequency pairs, L = 128) with a byte-level BPE trained in a second
on one shipped book. Session-scoped: built once.
"""

from __future__ import annotations

import pytest

from tests.runs.run_helpers import build_tiny

FIXTURE_L = 128


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="session")
def demo_model_dir(tmp_path_factory):
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longrope.embedded import search_texts
    from tools.train_tiny.tokenizer import train_tokenizer

    text = next(iter(search_texts().values()))[:60_000]
    tokenizer = train_tokenizer([text], 512)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=FIXTURE_L,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        tie_word_embeddings=True,
    )
    model = LlamaForCausalLM(config)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _name, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    folder = tmp_path_factory.mktemp("demo-model") / "llama-with-tokenizer"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
