"""The process-per-device evaluator: parallel workers, a killed worker's candidate is re-queued."""

from __future__ import annotations

import os
import signal

import pytest

from longrope.search.evaluators import ProcessPoolEvaluator
from longrope.search.synthetic import SyntheticFactory, SyntheticObjective
from tests.search.search_helpers import (
    N_DIMS,
    N_DOCS,
    SCALE,
    ShuffledParallel,
    comparable,
    make_loop,
    make_seeds,
    small_config,
)


@pytest.mark.timeout(120)
def test_process_pool_ordered_equals_any_two_slot_run_even_after_a_worker_is_killed():
    """Ordered mode with 2 real worker processes gives the canonical 2-slot result, and a worker
    SIGKILLed mid-run only costs a re-evaluation of its candidate."""
    cfg = small_config(iterations=3)
    obj = SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    _ref_loop = make_loop("steady", seed=7, objective=obj, evaluator=ShuffledParallel(obj, 2, 0), config=cfg)
    reference = _ref_loop.run(make_seeds(_ref_loop.space))

    pool = ProcessPoolEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=0.01), ["cpu", "cpu"])
    killed = []

    def kill_one(progress):
        if progress.done >= 5 and not killed:
            proc = pool._procs["w0"]  # busy or idle: either way its request must not be lost
            killed.append(proc.pid)
            os.kill(proc.pid, signal.SIGKILL)

    loop = make_loop("steady", seed=7, objective=obj, evaluator=pool, config=cfg, on_progress=kill_one)
    res = loop.run(make_seeds(loop.space))
    assert killed and pool._restarts >= 1
    assert comparable(res.history) == comparable(reference.history)
    assert {h["worker"] for h in res.history} >= {"w0", "w1"}


class _BarCheckingFactory(SyntheticFactory):
    """Refuses to build its objective while transformers' progress bars are on in the worker."""

    def __call__(self, device: str = "cpu") -> SyntheticObjective:
        from transformers.utils import logging as hf_logging

        if hf_logging.is_progress_bar_enabled():
            raise RuntimeError("transformers' progress bars are on in the worker")
        return super().__call__(device)


@pytest.mark.timeout(120)
def test_workers_draw_no_library_bars():
    """Battery 8: search --workers 1 --quiet printed transformers' 'Loading weights' bar from each worker
    (a spawned process starts with the bars on); a worker now loads its model with them off."""
    pool = ProcessPoolEvaluator(_BarCheckingFactory(N_DIMS, SCALE, n_docs=N_DOCS), ["cpu"], max_restarts=0)
    obj = SyntheticObjective(N_DIMS, SCALE, n_docs=N_DOCS)
    loop = make_loop("steady", seed=7, objective=obj, evaluator=pool, config=small_config(iterations=1))
    res = loop.run(make_seeds(loop.space))
    assert res.history and {h["worker"] for h in res.history} == {"w0"}
