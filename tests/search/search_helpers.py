"""Small builders shared by the search tests (synthetic objective, no model)."""

from __future__ import annotations

import numpy as np

from longrope.search.archive import Archive
from longrope.search.evaluators import EvalOutcome, EvalRequest, InProcessEvaluator, call_objective
from longrope.search.loop import SearchLoop
from longrope.search.space import SearchSpace
from longrope.search.strategies import StrategyConfig, make_strategy
from longrope.search.synthetic import SyntheticObjective

N_DIMS = 12
SCALE = 8.0
N_DOCS = 4


def small_config(**kw) -> StrategyConfig:
    base = dict(population=12, parents=6, mutations=4, crossovers=4, iterations=6, initial=8)
    base.update(kw)
    return StrategyConfig(**base)


def make_space() -> SearchSpace:
    return SearchSpace(n_dims=N_DIMS, lower=1.0, upper=1.25 * SCALE)


def make_seeds(space: SearchSpace):
    i = np.arange(space.n_dims)
    return [
        space.from_factors(np.full(space.n_dims, SCALE)),  # PI
        space.from_factors(SCALE ** (i / (space.n_dims - 1))),  # NTK-like
        space.from_factors(np.where(i < space.n_dims // 2, 1.0, SCALE)),  # YaRN-like
    ]


def make_loop(strategy="steady", *, seed=0, objective=None, evaluator=None, config=None, **loop_kw) -> SearchLoop:
    space = make_space()
    objective = objective or SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    arc = Archive(objective.n_docs)
    strat = make_strategy(strategy, space, arc, config or small_config())
    evaluator = evaluator or InProcessEvaluator(objective)
    return SearchLoop(space, strat, evaluator, seed=seed, **loop_kw)


def comparable(history: list[dict]) -> list[tuple]:
    """History without wall-clock fields (those legitimately differ between runs)."""
    return [
        (h["ticket"], h["kind"], tuple(h["factors"]), h["start_tokens"], tuple(h["docs"]), h["fitness"])
        for h in history
    ]


class FailAfter:
    """Wraps an objective and raises ``exc`` on the call after ``k`` successful ones."""

    def __init__(self, objective, k: int, exc: BaseException) -> None:
        self.objective, self.k, self.exc, self.calls = objective, k, exc, 0
        self.n_docs = objective.n_docs

    def __call__(self, factors, start_tokens, docs, attention_factor=None):
        if self.calls >= self.k:
            raise self.exc
        self.calls += 1
        return self.objective(factors, start_tokens, docs, attention_factor)


class ShuffledParallel:
    """A fake W-slot evaluator that completes its in-flight requests in a seeded random order,
    to test that ordered mode is independent of completion order without real processes."""

    def __init__(self, objective, slots: int, seed: int) -> None:
        self.objective, self.slots = objective, slots
        self.rng = np.random.default_rng(seed)
        self.queue: list[EvalRequest] = []

    def submit(self, request: EvalRequest) -> None:
        self.queue.append(request)

    def wait(self) -> list[EvalOutcome]:
        if not self.queue:
            return []
        k = int(self.rng.integers(len(self.queue)))
        return [call_objective(self.objective, self.queue.pop(k), "fake")]

    def close(self) -> None:
        self.queue.clear()
