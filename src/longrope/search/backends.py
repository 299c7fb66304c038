"""Which evaluator a search runs on: the factory above :mod:`.evaluators` and :mod:`.ray_evaluator`.

It needs both sides (the in-process and process-pool evaluators, and the Ray one), so it lives in a
module of its own that both leave alone: :mod:`.ray_evaluator` builds on :mod:`.evaluators`, and
nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from longrope.search.evaluators import Evaluator, InProcessEvaluator, ProcessPoolEvaluator

__all__ = ["make_evaluator"]


def make_evaluator(factory: Any, *, workers: int = 0, devices: Sequence[str] = (), ray_address: str | None = None,
                   device: str = "cpu") -> tuple[Evaluator, Any]:
    """The evaluator a search runs on, and the in-process objective when there is one.

    ``factory(device) -> objective`` (an :class:`~longrope.search.objective.ObjectiveSpec`) is built
    once per worker: in this process (default), in ``workers`` CPU processes (torch threads split
    between them), one process per entry of ``devices``, or one Ray actor per GPU of the cluster at
    ``ray_address``.
    """
    from longrope.errors import UserError
    from longrope.options import int_problem
    from longrope.settings import MAX_SLOTS

    # -1 ran in process without a word, 0.5 and "2" were numpy's and Python's TypeErrors, 10**9 built a list of a
    # billion device names (battery 22a); devices are checked by the pool itself
    if (problem := int_problem(workers, 0, MAX_SLOTS)) is not None:
        raise UserError(f"workers {problem} (0: in this process)")
    if ray_address:
        from longrope.search.ray_evaluator import RayEvaluator

        return RayEvaluator(factory, address=ray_address), None
    if devices:
        return ProcessPoolEvaluator(factory, list(devices)), None
    if workers > 0:
        if getattr(factory, "threads", None) is None and hasattr(factory, "threads"):
            factory.threads = 1
        return ProcessPoolEvaluator(factory, ["cpu"] * int(workers)), None
    objective = factory(device)
    return InProcessEvaluator(objective), objective
