"""Budgets are stopping rules of the loop (``StopRules``), whatever the strategy."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longrope.errors import ConfigError
from longrope.search import InProcessEvaluator, SearchSpace, StrategyConfig
from longrope.search.loop import StopRules, run_search
from longrope.search.synthetic import SyntheticObjective


def _run(stop: StopRules, strategy: str = "steady"):
    n, scale, docs = 8, 4.0, 3
    space = SearchSpace(n_dims=n, lower=1.0, upper=1.25 * scale)
    i = np.arange(n)
    seeds = [space.from_factors(np.full(n, scale)), space.from_factors(scale ** (i / (n - 1)))]
    cfg = StrategyConfig(population=8, parents=4, mutations=4, crossovers=4, iterations=50, initial=6)
    return run_search(space, seeds, InProcessEvaluator(SyntheticObjective(n, scale, n_docs=docs)), n_docs=docs,
                      strategy=strategy, config=cfg, stop=stop, seed=0)


@pytest.mark.parametrize("strategy", ["steady", "paper"])
def test_evaluation_budget_stops_the_search(strategy):
    r = _run(StopRules(max_evals=4.0), strategy)
    assert "4 full evaluations" in r.stop_reason
    # it stops at the first ask past the budget: at most one more candidate's documents
    assert 4.0 <= r.full_evals <= 5.0


def test_spent_time_budget_still_scores_one_candidate_fully():
    r = _run(StopRules(max_seconds=1e-9))
    assert "time budget" in r.stop_reason
    assert r.full_evals == 1.0 and r.n_candidates == 1
    assert math.isfinite(r.ppl)


def test_no_budget_leaves_the_strategy_its_own_end():
    r = _run(StopRules())
    assert "budget of" in r.stop_reason or "no improvement" in r.stop_reason
    assert "full evaluations" not in r.stop_reason


@pytest.mark.parametrize("kwargs", [{"max_evals": -1}, {"max_seconds": -1.0}, {"max_seconds": float("nan")},
                                    {"max_evals": True}])
def test_budgets_must_be_positive_or_zero(kwargs):
    with pytest.raises(ConfigError, match=next(iter(kwargs)) + r" must be a number >= 0 \(0 or unset: no limit\)"):
        StopRules(**kwargs)


def test_a_zero_budget_is_no_limit():
    """0 means no limit, in the library as in every command (settings.check_budget)."""
    assert StopRules(max_evals=0, max_seconds=0) == StopRules()
    assert StopRules(max_evals=0).spent(1e9, 1e9) is None


@pytest.mark.parametrize("field", ["population", "parents", "mutations", "iterations", "initial", "race_rank",
                                   "max_tries", "patience"])
def test_strategy_counts_are_bounded(field):
    with pytest.raises(ConfigError, match=f"{field} must be an integer in .*, got an integer of 401 digits"):
        StrategyConfig(**{field: 10**400})


def test_the_initial_set_counts_against_the_candidate_budget():
    """A budget P + T·(N1+N2) below --initial (population 4, 2 iterations of 2 + 2: 12) was exceeded by the initial
    set alone (16 evaluated), and the search then said it "used the budget of 12 candidates"."""
    n, scale, docs = 8, 4.0, 3
    space = SearchSpace(n_dims=n, lower=1.0, upper=1.25 * scale)
    seeds = [space.from_factors(np.full(n, scale))]
    cfg = StrategyConfig(population=4, parents=2, mutations=2, crossovers=2, iterations=2, initial=16, patience=100)
    r = run_search(space, seeds, InProcessEvaluator(SyntheticObjective(n, scale, n_docs=docs)), n_docs=docs,
                   strategy="steady", config=cfg, stop=StopRules(), seed=0)
    assert r.stop_reason == "used the budget of 12 candidates"
    assert r.n_candidates <= cfg.budget
