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


def test_the_seeds_meant_for_longropes_temperature_run_under_it_not_yarns():
    """extended_seeds puts the shapes under LongRoPE's m = sqrt(1 + ln s / ln L) too: at L = 8192, s = 8 that is
    1.109, below YaRN's 1.208 (the space's largest choice), which every such seed got instead."""
    from longrope.rope import longrope_attention_factor

    plan = plan_search({"rope_theta": 500000.0, "rotary_dim": 128, "original_length": 8192}, target_length=65536)
    lrope = plan.space.attention_choices[plan.space.attention_index(longrope_attention_factor(8, 8192))]
    assert lrope == 1.109
    temperatures = [plan.space.attention_factor(g) for g in plan.seeds]
    assert temperatures.count(lrope) >= 3  # PI, NTK and YaRN under it, and the shapes with no temperature of their own


def test_a_progressive_searchs_seeds_take_the_installed_sets_longrope_temperature():
    """λ' on a model fine-tuned for L0 installs a set for L -> L' (compose), whose default m is LongRoPE's of L'/L:
    the seeds meant to run under it take that value, not LongRoPE's of the step L'/L0."""
    from longrope.rope import longrope_attention_factor, make_baseline

    rope = {"rope_theta": 10000.0, "rotary_dim": 16, "original_length": 256}
    base = make_baseline("yarn", rope_theta=10000.0, rotary_dim=16, original_length=256, target_length=2048)
    plan = plan_search(rope, target_length=8192, base=base)
    want = plan.space.attention_choices[plan.space.attention_index(longrope_attention_factor(32, 256))]
    assert want != plan.space.attention_choices[plan.space.attention_index(longrope_attention_factor(4, 2048))]
    assert [plan.space.attention_factor(g) for g in plan.seeds].count(want) >= 3
