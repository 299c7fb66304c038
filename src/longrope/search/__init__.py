"""Evolution search of LongRoPE rescale factors (docs/method.md §4–§6).

Layers, from pure to glue:

- :mod:`.space` — genomes on the integer grid, bounds, monotonicity, LongRoPE2's derived dims;
- :mod:`.operators` — the paper's mutation/crossover and our smooth ones;
- :mod:`.archive` — the fitness cache (per-document, additive scores);
- :mod:`.strategies` — ``paper`` (Algorithm 1 as published) and ``steady`` (ours) behind ask/tell;
- :mod:`.loop` — the loop: evaluators, canonical ordering, checkpoint/resume, history, budgets
  (:class:`StopRules`), and the one entry point :func:`run_search` (space, seeds, evaluator,
  strategy, stopping rules, checkpoint);
- :mod:`.evaluators` / :mod:`.ray_evaluator` — in-process, one process per device, Ray; :mod:`.backends`
  picks one for a run (above both, so neither imports the other);
- :mod:`.synthetic` — a synthetic objective with a known optimum (tests, loop benchmarks);
- :mod:`.seeds` / :mod:`.plan` — seeds and spaces, and the plan of a search from a model's RoPE facts;
- :mod:`.objective` — model-backed objectives (the glue that loads a model in a worker).

Everything but :mod:`.objective`'s evaluation runs on numpy only; torch is imported only where a
model is evaluated. A whole ``longrope search`` run (run folder, report) is
:mod:`longrope.runs.search`.
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
from longrope.search.loop import Progress, SearchLoop, SearchResult, StopRules, run_search
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
    "StopRules",
    "StrategyConfig",
    "SyntheticFactory",
    "SyntheticObjective",
    "WorkerCrashed",
    "make_strategy",
    "run_search",
]
