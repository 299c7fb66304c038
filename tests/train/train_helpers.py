"""Shard folders with chosen token ids and roles, factor files and configs for the training tests."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

TINY_VOCAB = 128
TINY_L = 32  # original context of the tiny random models (tests/models/model_helpers.py)


def write_corpus(folder: Path, docs: list[tuple[str, np.ndarray, str | None]]) -> Path:
    """A shard folder holding ``docs`` = [(id, token ids, role)], written with the shard writer."""
    from longrope.data.shards import FORMAT, FORMAT_VERSION, SPECIAL_TOKEN_POLICY, ShardWriter, write_meta

    folder = Path(folder)
    writer = ShardWriter(folder, np.dtype("<u2"))
    for name, ids, role in docs:
        writer.add(name, np.asarray(ids), role)
    files = writer.finish()
    write_meta(folder, {
        "format": FORMAT, "version": FORMAT_VERSION,
        "tokenizer": {"name": "test-ids", "vocab_sha256": "test-ids", "vocab_size": TINY_VOCAB,
                      "bos_token_id": 1, "eos_token_id": 2},
        "special_tokens": SPECIAL_TOKEN_POLICY, "dtype": "uint16", "n_docs": writer.n_docs,
        "n_tokens": writer.n_tokens, "inputs": [], "options": {}, "fingerprint": "test", **files,
    })
    return folder


def pattern_doc(seed: int, length: int, period: int = 11, start: int = 0) -> np.ndarray:
    """A learnable document: a seeded random motif of ``period`` ids (>= 3) repeated, from phase ``start``."""
    rng = np.random.default_rng(seed)
    motif = rng.integers(3, TINY_VOCAB, size=period)
    return np.resize(np.roll(motif, -start), length).astype(np.int64)


def standard_corpus(folder: Path, *, n_train: int = 6) -> Path:
    """Training documents of varied lengths (one motif at different phases, so a few steps learn it) plus
    search and held-out documents (other motifs)."""
    docs: list[tuple[str, np.ndarray, str | None]] = []
    for k in range(n_train):
        docs.append((f"train/{k}.txt", pattern_doc(100, 40 + 37 * k, start=k), "train"))
    docs.append(("books/search-a.txt", pattern_doc(200, 300), "search"))
    docs.append(("books/heldout-a.txt", pattern_doc(300, 300), "heldout"))
    return write_corpus(folder, docs)


def write_factors(path: Path, *, rotary_dim: int = 16, L: int = TINY_L, target: int = 4 * TINY_L) -> Path:
    """A factor set for the tiny models: long factors rising 1 → 4, short factors 1 → 1.3 (neither identity)."""
    from longrope.rope import FactorSet

    half = rotary_dim // 2
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, half), short_factor=np.linspace(1.0, 1.3, half),
                   original_max_position_embeddings=L, max_position_embeddings=target, rope_theta=10000.0,
                   method="test")
    fs.save(path)
    return Path(path)


def config_json(cfg) -> str:
    return json.dumps(cfg.to_dict())
