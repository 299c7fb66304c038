"""search/plan.py: what a search is over, resolved from the model's RoPE facts."""

from __future__ import annotations

import pytest

from longrope.errors import ConfigError
from longrope.search.plan import plan_search
from longrope.search.space import PAPER_START_TOKENS

ROPE_64 = {"rope_theta": 10000.0, "rotary_dim": 16, "original_length": 64}


def test_the_default_start_token_grid_stops_at_the_original_length():
    """n̂ positions keep their original angles, which the model knows only below L."""
    plan = plan_search(ROPE_64, target_length=512)
    assert plan.space.start_tokens == tuple(t for t in PAPER_START_TOKENS if t <= 64)
    assert max(plan.space.start_tokens) == 64


def test_a_start_token_beyond_the_original_length_is_refused_by_name():
    with pytest.raises(ConfigError) as e:
        plan_search(ROPE_64, target_length=512, start_tokens=(0, 4, 600))
    assert e.value.fields == ("start_tokens",) and "600" in str(e.value) and "original length L = 64" in str(e.value)


def test_a_start_token_grid_within_the_original_length_is_kept():
    assert plan_search(ROPE_64, target_length=512, start_tokens=(0, 8, 64)).space.start_tokens == (0, 8, 64)
