"""Operators never leave the space: grid, bounds, monotonicity, derived LongRoPE2 dims."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longrope.search.operators import blend_crossover, paper_crossover, paper_mutation, smooth_mutation
from longrope.search.space import PAPER_START_TOKENS, Genome, SearchSpace, isotonic_non_decreasing


@st.composite
def spaces(draw):
    n = draw(st.integers(1, 24))
    scale = draw(st.sampled_from([1.0, 1.5, 2.0, 4.0, 8.0, 32.0]))
    critical = draw(st.booleans()) and n >= 3
    if critical:
        lo_c = draw(st.integers(0, n - 2))
        dims = tuple(range(lo_c, min(n, lo_c + draw(st.integers(1, 4)))))
        return SearchSpace(
            n_dims=n, lower=1.0, upper=2 * scale, critical_dims=dims, critical_lower=scale, start_tokens=(0,)
        )
    attention = draw(st.sampled_from([(), (1.0,), (1.0, 1.1, 1.2074)]))
    return SearchSpace(n_dims=n, lower=1.0, upper=max(1.25 * scale, 1.0), start_tokens=PAPER_START_TOKENS,
                       attention_choices=attention)


@st.composite
def space_and_genomes(draw):
    space = draw(spaces())
    seeds = []
    for _ in range(2):
        raw = draw(st.lists(st.floats(0.5, 80.0), min_size=space.n_dims, max_size=space.n_dims))
        n_hat = draw(st.integers(0, 300))
        crit = draw(st.integers(0, space.n_dims)) if space.has_critical else -1
        m = draw(st.one_of(st.none(), st.floats(0.5, 2.0)))
        seeds.append(space.from_factors(np.sort(np.asarray(raw)) if draw(st.booleans()) else raw, n_hat, crit, m))
    return space, seeds, draw(st.integers(0, 2**32 - 1))


def assert_valid(space: SearchSpace, g: Genome) -> None:
    assert space.contains(g), g
    lam = space.factors(g)
    assert np.all(lam >= space.lower - 1e-12) and np.all(lam <= space.upper + 1e-12)
    assert np.all(np.diff(np.asarray(g.q)) >= 0)
    assert g.start_tokens in space.start_tokens
    m = space.attention_factor(g)
    assert (m is None) == (not space.has_attention)
    assert m is None or m in space.attention_choices


@settings(max_examples=150, deadline=None)
@given(space_and_genomes())
def test_canonical_is_valid_and_idempotent(case):
    space, (a, b), _ = case
    for g in (a, b):
        assert_valid(space, g)
        assert space.canonical(np.asarray(g.q), g.start_tokens, g.critical, g.attention) == g


@settings(max_examples=150, deadline=None)
@given(space_and_genomes(), st.floats(0.0, 1.0), st.floats(1e-3, 1.0))
def test_operators_keep_bounds_and_monotonicity(case, prob, sigma):
    space, (a, b), seed = case
    rng = np.random.default_rng(seed)
    for _ in range(5):
        assert_valid(space, paper_mutation(space, a, rng, prob))
        assert_valid(space, smooth_mutation(space, a, rng, sigma))
        assert_valid(space, blend_crossover(space, a, b, rng))
        child = paper_crossover(space, a, b, rng)
        if child is not None:
            assert_valid(space, child)


def test_paper_mutation_redraws_between_neighbours():
    """A mutated gene lies between its (possibly mutated) lower neighbour and its upper one."""
    space = SearchSpace(n_dims=8, lower=1.0, upper=10.0)
    parent = space.from_factors(np.linspace(1.0, 9.0, 8), 0)
    rng = np.random.default_rng(0)
    changed = 0
    for _ in range(200):
        child = paper_mutation(space, parent, rng, 0.3)
        changed += child != parent
        assert_valid(space, child)
    assert changed > 150  # p = 0.3 on 9 genes: P(no change) = 0.7^9 ≈ 4 %


def test_paper_crossover_rejects_non_monotone_children():
    space = SearchSpace(n_dims=4, lower=1.0, upper=10.0, start_tokens=(0,))
    a = space.from_factors([1.0, 1.0, 9.0, 9.0])
    b = space.from_factors([5.0, 5.0, 5.0, 5.0])
    rng = np.random.default_rng(0)
    results = [paper_crossover(space, a, b, rng) for _ in range(100)]
    assert any(r is None for r in results)  # e.g. (5, 1, …) is not monotone
    assert all(r is None or space.contains(r) for r in results)


@settings(max_examples=100, deadline=None)
@given(st.lists(st.floats(-10, 10), min_size=1, max_size=30))
def test_isotonic_projection(values):
    v = np.asarray(values)
    p = isotonic_non_decreasing(v)
    assert np.all(np.diff(p) >= -1e-9)
    assert abs(p.mean() - v.mean()) < 1e-6  # PAV preserves the mean
    if np.all(np.diff(v) >= 0):
        np.testing.assert_allclose(p, v)


def test_longrope2_space_derives_the_dims_below_the_critical_one():
    space = SearchSpace(n_dims=16, lower=1.0, upper=16.0, critical_dims=(8, 9, 10), critical_lower=8.0, start_tokens=(0,))
    g = space.from_factors(np.full(16, 3.0), 0, critical=9)
    lam = space.factors(g)
    assert g.critical == 9
    assert np.all(lam[9:] >= 8.0)  # searched part lies in [s, 2s]
    assert lam[0] == pytest.approx(1.0) and np.all(np.diff(lam) >= 0)
    # mutating d_rcd keeps the derived part consistent
    rng = np.random.default_rng(1)
    for _ in range(50):
        assert_valid(space, smooth_mutation(space, g, rng, 0.1, discrete_prob=1.0))


def test_space_validation_names_the_field():
    with pytest.raises(ValueError, match="step"):
        SearchSpace(n_dims=4, step=0.0)
    with pytest.raises(ValueError, match="lower"):
        SearchSpace(n_dims=4, lower=2.0, upper=1.0)
    with pytest.raises(ValueError, match="critical_lower"):
        SearchSpace(n_dims=4, critical_dims=(1,))


def test_a_space_of_values_of_another_kind_is_one_user_error():
    """battery 20b: SearchSpace took start_tokens=(0.5,) (a fractional n̂), (True,), monotone='no' (a monotone space),
    critical_lower='1.5'; start_tokens=4 and attention_choices=('a',) were TypeErrors, upper=10**400 an OverflowError,
    every refusal a plain ValueError the command line would print as a traceback; StopRules(max_evals=10**400) an
    OverflowError too."""
    from longrope.errors import UserError
    from longrope.search import StopRules

    for kw in ({"start_tokens": (0.5,)}, {"start_tokens": (True,)}, {"start_tokens": 4}, {"monotone": "no"},
               {"critical_lower": "1.5"}, {"attention_choices": ("a",)}, {"attention_choices": 1.0},
               {"upper": 10**400}, {"critical_dims": (0.5,)}, {"step": 0.0}):
        with pytest.raises(UserError, match=next(iter(kw))):
            SearchSpace(n_dims=4, **kw)
    assert SearchSpace(n_dims=4, monotone=np.bool_(False)).monotone is False
    with pytest.raises(UserError, match="max_evals must be a number"):
        StopRules(max_evals=10**400)


def test_attention_gene_seeds_and_default():
    from longrope.search.seeds import attention_choices

    choices = attention_choices(8.0, 256)
    assert choices[0] == 1.0 and round(0.1 * np.log(8) + 1, 3) in choices
    assert round(float(np.sqrt(1 + np.log(8) / np.log(256))), 3) in choices
    space = SearchSpace(n_dims=4, upper=10.0, attention_choices=choices)
    assert space.attention_factor(space.from_factors(np.full(4, 8.0), 0, attention_factor=1.0)) == 1.0
    # None (LongRoPE's formula, the largest usual temperature) maps to the largest choice
    assert space.attention_factor(space.from_factors(np.full(4, 8.0), 0)) == max(choices)
    # a space without the gene gives None: the factor set's own default, as the paper
    plain = SearchSpace(n_dims=4, upper=10.0)
    assert plain.attention_factor(plain.from_factors(np.full(4, 8.0), 0, attention_factor=1.0)) is None


def test_progressive_seeds_start_from_the_closed_forms_of_the_whole_extension():
    """A progressive search on a model fine-tuned with λ_base for L0 starts from YaRN/NTK/PI for L → L'
    re-expressed as λ' = λ_cf / λ_base (projected into the space), besides the step's own seeds."""
    from longrope.rope import make_baseline
    from longrope.search.plan import plan_search

    theta, d, L, L0, Lt = 1e4, 64, 256, 2048, 8192
    base = make_baseline("yarn", rope_theta=theta, rotary_dim=d, original_length=L, target_length=L0)
    plan = plan_search({"family": "llama", "rope_theta": theta, "rotary_dim": d, "original_length": L},
                       target_length=Lt, strategy="steady", base=base)
    assert all(plan.space.contains(g) for g in plan.seeds)
    yarn = make_baseline("yarn", rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
    want = plan.space.from_factors(yarn.long_factor / base.long_factor, 0,
                                   attention_factor=yarn.resolved_attention_factor())
    assert want in plan.seeds
    lam = plan.mapper.factor_set(plan.space.factors(want), 0).long_factor
    # where λ_cf / λ_base is inside [1, 1.25 s'], the composed seed is the closed form itself (to the grid)
    inside = (yarn.long_factor / base.long_factor >= 1) & (yarn.long_factor / base.long_factor <= 1.25 * Lt / L0)
    np.testing.assert_allclose(lam[inside], yarn.long_factor[inside], rtol=0.01)


def test_space_seeds_and_operators_refuse_bad_numbers_in_one_line():
    """The search's building blocks check their numbers by the one check of each kind: a NaN or infinite factor was
    snapped to the lower bound without a word (a genome of factors nobody gave), n̂ 2.7 read as 2, L=0 a
    ZeroDivisionError, a rotary dim of another model numpy's broadcast error, a text probability or sigma a
    TypeError, np.float32 bounds a RuntimeWarning (battery 21b)."""
    import warnings

    import numpy as np
    import pytest

    from longrope.errors import UserError
    from longrope.search import operators, seeds
    from longrope.search.space import SearchSpace

    space = seeds.long_space(8, 8.0)
    g = space.from_factors(np.linspace(1, 8, 8))
    rng = np.random.default_rng(0)
    calls = [
        lambda: space.from_factors(np.array([1, 2, np.nan, 3, 4, 5, 6, 7.0])),
        lambda: space.from_factors(np.array([1, 2, np.inf, 3, 4, 5, 6, 7.0])),
        lambda: space.canonical([100.0] * 7 + [np.nan]),
        lambda: space.canonical([100.0] * 6),
        lambda: space.canonical([100.0] * 8, start_tokens=2.7),
        lambda: space.canonical([100.0] * 8, start_tokens=None),
        lambda: seeds.extended_seeds(space, 1e4, 16, 0, 2048),
        lambda: seeds.longrope2_seeds(seeds.longrope2_space(8, 8.0, (5, 6)), 1e4, 16, "256", 2048),
        lambda: seeds.paper_seeds(space, 1e4, 4, 256, 2048),
        lambda: seeds.progressive_seeds(space, 1e4, 16, 256, 1024, 2048, np.zeros(8)),
        lambda: seeds.long_space(8, "8"),
        lambda: seeds.longrope2_space(8, 8.0, 5),
        lambda: seeds.critical_window(1e4, 16, 256, below=2.5),
        lambda: operators.paper_mutation(space, g, rng, "0.3"),
        lambda: operators.smooth_mutation(space, g, rng, -1.0),
        lambda: operators.smooth_mutation(space, g, rng, float("inf")),
        lambda: operators.smooth_mutation(space, g, rng, 0.1, discrete_prob=None),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(UserError) as e:
            call()
        assert "\n" not in str(e.value), i
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert SearchSpace(n_dims=8, lower=np.float32(1.0), upper=np.float32(4.0)).upper == 4.0


def test_a_space_of_numpy_numbers_holds_python_ones_and_its_search_checkpoints(tmp_path):
    """Settings take numpy numbers (README), but SearchSpace kept them as given: run_search with n_dims=np.int64(12)
    scored its first candidates and then said "c.json cannot be written: Object of type int64 is not JSON
    serializable" (battery 29a)."""
    import json

    from longrope.search import InProcessEvaluator, StopRules, StrategyConfig, SyntheticObjective, run_search

    space = SearchSpace(n_dims=np.int64(12), lower=np.float64(1.0), upper=np.float32(10.0), step=np.float64(0.01),
                        start_tokens=[np.int64(0), np.int64(4)], attention_choices=(np.float64(1.0), 1.2))
    assert type(space.n_dims) is int and space.start_tokens == (0, 4) and type(space.upper) is float
    assert json.loads(json.dumps(space.to_dict()))["n_dims"] == 12
    seeds = [space.from_factors(np.full(12, 8.0))]
    config = StrategyConfig(population=6, parents=3, mutations=2, crossovers=2, iterations=2, initial=4)
    run_search(space, seeds, InProcessEvaluator(SyntheticObjective(12, 8.0, n_docs=2)), n_docs=2, config=config,
               stop=StopRules(max_evals=10), checkpoint=tmp_path / "c.json")
    assert json.loads((tmp_path / "c.json").read_text())["space"]["n_dims"] == 12


def test_a_seed_temperature_that_is_not_an_attention_factor_is_refused_not_snapped_to_a_choice():
    """SearchSpace.from_factors(..., attention_factor=nan) gave a genome of the first temperature ("nearest" to NaN)
    without a word, 'x' was a TypeError from inside (battery 29a); a tensor is the number it holds."""
    import torch

    from longrope.errors import UserError

    space = SearchSpace(n_dims=4, lower=1.0, upper=8.0, attention_choices=(1.0, 1.1, 1.2))
    for bad in (float("nan"), "x", 1e9):
        with pytest.raises(UserError, match="^attention_factor"):
            space.from_factors(np.full(4, 2.0), attention_factor=bad)
    assert space.attention_index(torch.tensor(1.19)) == 2 and space.attention_index(None) == 2


def test_a_step_that_puts_no_grid_point_on_the_lower_bound_is_refused():
    """λ = k·step: step 0.03 made 1.02 the smallest factor, so no pair could keep its rotation (λ = 1) and every seed's
    fast pairs were interpolated without a word; 0.05 and 0.025 divide 1."""
    from longrope.search.space import SpaceError

    with pytest.raises(SpaceError, match=r"not on the grid of step 0.03 .*smallest λ searched would be 1.02"):
        SearchSpace(n_dims=4, upper=10.0, step=0.03)
    for step in (0.05, 0.025, 0.01):
        assert SearchSpace(n_dims=4, upper=10.0, step=step).q_lo * step == pytest.approx(1.0)


def test_a_search_plan_names_the_step_that_misses_the_lower_bound():
    from longrope.errors import ConfigError
    from longrope.search.plan import plan_search

    with pytest.raises(ConfigError, match="not on the grid of step 0.3") as e:
        plan_search({"rope_theta": 1e4, "rotary_dim": 16, "original_length": 256}, target_length=2048, step=0.3)
    assert "step" in e.value.fields
