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



def test_the_paper_shapes_are_seeded_again_under_the_spaces_largest_temperature():
    """extended_seeds' docstring said "and with LongRoPE's" temperature where the code passes None, the space's
    largest choice (YaRN's 1 + 0.1 ln s; battery 31d). Measured on the demo, LongRoPE's start answered 26 of 40
    keys against 36: the code stays and the docstring says what it does. At L = 8192, s = 8: 1.208, not 1.109."""
    from longrope.rope import longrope_attention_factor

    plan = plan_search({"rope_theta": 500000.0, "rotary_dim": 128, "original_length": 8192}, target_length=65536)
    space = plan.space
    largest = space.attention_choices[space.attention_index(None)]
    assert largest == max(space.attention_choices) == 1.208
    assert largest != space.attention_choices[space.attention_index(longrope_attention_factor(8, 8192))]
    temperatures = [space.attention_factor(g) for g in plan.seeds]
    assert temperatures.count(largest) >= 4  # YaRN's own, then PI, NTK (and the shapes without one) under it
