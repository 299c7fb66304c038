"""search/objective.py: what the model-backed fitnesses score."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from longrope.search.objective import planted_prompts
from tests.models.model_helpers import byte_fallback_tokenizer


def test_planted_keys_follow_the_seed_and_depths_are_spread_evenly_over_the_windows():
    """docs/method.md §11 as it now reads: the keys are seeded, the depths are (k + 0.5)/n whatever the seed (it
    said "planted at a seeded depth")."""
    tokenizer = byte_fallback_tokenizer()
    rng = np.random.default_rng(0)
    docs = [SimpleNamespace(tokens=rng.integers(300, 500, size=400)) for _ in range(4)]
    a, b = (planted_prompts(tokenizer, docs, 256, 1, seed) for seed in (0, 1))
    assert [p.depth for p in a] == [p.depth for p in b] == [0.125, 0.375, 0.625, 0.875]
    assert [p.key for p in a] != [p.key for p in b]
    assert all(len(p.input_ids) == 256 for p in a)
