"""Fixtures for the training tests: a tiny random Llama folder, a factor file, a shard folder."""

from __future__ import annotations

import pytest

from tests.train.train_helpers import standard_corpus, write_factors


@pytest.fixture
def tiny_dir(tmp_path, build_tiny_model):
    """A tiny random Llama (2 layers, hidden 64, vocab 128, L = 32) saved as a folder, no tokenizer."""
    folder = tmp_path / "tiny-llama"
    build_tiny_model("llama").save_pretrained(folder)
    return folder


@pytest.fixture
def factors_file(tmp_path):
    return write_factors(tmp_path / "factors.json")


@pytest.fixture
def corpus_dir(tmp_path):
    return standard_corpus(tmp_path / "shards")


@pytest.fixture
def make_config(tiny_dir, factors_file, corpus_dir, tmp_path):
    """``make_config(**overrides)``: a small, fast FinetuneConfig on the fixtures (N = 64 > L = 32)."""
    from longrope.train import FinetuneConfig

    def make(**overrides):
        values = dict(model=str(tiny_dir), factors=str(factors_file), data=str(corpus_dir),
                      output=str(tmp_path / "run"), seq_len=64, steps=6, learning_rate=3e-3, warmup_steps=1,
                      checkpoint_every=2, device="cpu", dtype="float32", quiet=True, export_dtype="float32")
        values.update(overrides)
        return FinetuneConfig(**values)

    return make
