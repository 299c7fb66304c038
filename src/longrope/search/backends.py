"""Which evaluator a search runs on: the factory above :mod:`.evaluators` and :mod:`.ray_evaluator`.

It needs both sides (the in-process and process-pool evaluators, and the Ray one), so it lives in a
module of its own that both leave alone: :mod:`.ray_evaluator` builds on :mod:`.evaluators`, and
nothing imports back up.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from longrope.search.evaluators import Evaluator, InProcessEvaluator, ProcessPoolEvaluator

__all__ = ["BACKEND_FIELDS", "backends_given", "make_evaluator"]

BACKEND_FIELDS = ("workers", "devices", "ray_address")  # the ways to evaluate outside this process: one at most


def backends_given(workers: Any, devices: Sequence[str] | None, ray_address: str | None) -> tuple[str, ...]:
    """The names in :data:`BACKEND_FIELDS` whose value asks for parallel evaluation (the rule a search config and
    :func:`make_evaluator` both apply: more than one is refused, none is this process)."""
    asked = (isinstance(workers, int) and not isinstance(workers, bool) and workers > 0, bool(devices), bool(ray_address))
    return tuple(name for name, on in zip(BACKEND_FIELDS, asked) if on)


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
    if len(given := backends_given(workers, devices, ray_address)) > 1:  # devices won without a word (battery 22)
        raise UserError(f"{', '.join(given)} were given together; give only one of {', '.join(BACKEND_FIELDS)}")
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
