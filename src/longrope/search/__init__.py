"""Evolution search of LongRoPE rescale factors (LONGROPE.md §4–§6).

Layers, from pure to glue:

- :mod:`.space` — genomes on the integer grid, bounds, monotonicity, LongRoPE2's derived dims;
- :mod:`.operators` — the paper's mutation/crossover and our smooth ones;
- :mod:`.archive` — the fitness cache (per-document, additive scores);
- :mod:`.strategies` — ``paper`` (Algorithm 1 as published) and ``steady`` (ours) behind ask/tell;
- :mod:`.loop` — the loop: evaluators, canonical ordering, checkpoint/resume, history;
- :mod:`.evaluators` / :mod:`.ray_evaluator` — in-process, one process per device, Ray;
- :mod:`.synthetic` — a synthetic objective with a known optimum (tests, loop benchmarks);
- :mod:`.objective` / :mod:`.seeds` / :mod:`.job` — model objectives, seeds and ``longrope search``.

Everything up to :mod:`.loop` is numpy only; torch is imported only where a model is evaluated.
"""

from longrope.search.archive import Archive
from longrope.search.evaluators import (
    EvalOutcome,
    EvalRequest,
    Evaluator,
    InProcessEvaluator,
    Objective,
    ProcessPoolEvaluator,
    WorkerCrashed,
)
from longrope.search.loop import Progress, SearchLoop, SearchResult
from longrope.search.space import PAPER_START_TOKENS, Genome, SearchSpace
from longrope.search.strategies import (
    STRATEGIES,
    PaperStrategy,
    SteadyStrategy,
    StrategyConfig,
    make_strategy,
)
from longrope.search.synthetic import SyntheticFactory, SyntheticObjective

__all__ = [
    "PAPER_START_TOKENS",
    "STRATEGIES",
    "Archive",
    "EvalOutcome",
    "EvalRequest",
    "Evaluator",
    "Genome",
    "InProcessEvaluator",
    "Objective",
    "PaperStrategy",
    "ProcessPoolEvaluator",
    "Progress",
    "SearchLoop",
    "SearchResult",
    "SearchSpace",
    "SteadyStrategy",
    "StrategyConfig",
    "SyntheticFactory",
    "SyntheticObjective",
    "WorkerCrashed",
    "make_strategy",
]
