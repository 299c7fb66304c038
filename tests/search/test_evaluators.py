"""The process-per-device evaluator: parallel workers, a killed worker's candidate is re-queued."""

from __future__ import annotations

import dataclasses
import os
import signal

import numpy as np
import pytest

from longrope.search.evaluators import EvalRequest, ProcessPoolEvaluator, WorkerCrashed
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


class _SlowStartFactory(SyntheticFactory):
    """Takes a minute to build its objective (a model that loads slowly)."""

    def __call__(self, device: str = "cpu") -> SyntheticObjective:
        import time

        time.sleep(60)
        return super().__call__(device)


@dataclasses.dataclass
class _LoadsForFactory(SyntheticFactory):
    """Takes ``load_s`` seconds to build its objective (a model that loads for a while)."""

    load_s: float = 3.0

    def __call__(self, device: str = "cpu") -> SyntheticObjective:
        import time

        time.sleep(self.load_s)
        return super().__call__(device)


_ORPHAN_PARENT = """
import sys, time
import numpy as np

from longrope.search.evaluators import EvalRequest, ProcessPoolEvaluator, WorkerCrashed
from tests.search.test_evaluators import _SlowStartFactory
pool = ProcessPoolEvaluator(_SlowStartFactory(4, 2.0), ["cpu"])
print(pool._procs["w0"].pid, flush=True)
time.sleep(120)
"""


@pytest.mark.timeout(120)
@pytest.mark.parametrize("stopped", [False, True])
def test_a_worker_ends_with_its_killed_search_and_prints_nothing(tmp_path, stopped):
    """Battery 14c: a search SIGKILLed (or SIGTERMed) while its workers loaded the model left them running
    to the end of the load or of their candidate, then each printed a BrokenPipeError traceback onto the
    terminal. A worker now ends when its parent dies, silently; one stopped (SIGSTOP) then too (battery 25b)."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        parent = subprocess.Popen([sys.executable, "-c", _ORPHAN_PARENT], stdout=subprocess.PIPE, stderr=stderr,
                                  text=True, env=env, cwd=root)
        worker = int(parent.stdout.readline())
        time.sleep(1.0)
        if stopped:
            os.kill(worker, signal.SIGSTOP)
        parent.kill()
        parent.wait()
        deadline = time.time() + 20
        while time.time() < deadline and _alive(worker):
            time.sleep(0.2)
        alive = _alive(worker)
        if alive:
            os.kill(worker, signal.SIGKILL)
    assert not alive, "the worker outlived its killed search"
    assert "Traceback" not in err.read_text()


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[-1][:1] != "Z"
    except FileNotFoundError:
        return False


_CTRL_C_PARENT = """
import signal
import time
signal.signal(signal.SIGINT, signal.default_int_handler)  # a background job (nohup make test &) starts with it ignored
import numpy as np

from longrope.search.evaluators import EvalRequest, ProcessPoolEvaluator, WorkerCrashed
from tests.search.test_evaluators import _SlowStartFactory
pool = ProcessPoolEvaluator(_SlowStartFactory(4, 2.0), ["cpu", "cpu"])
print("started", flush=True)
try:
    time.sleep(60)
except KeyboardInterrupt:
    pool.close()
    print("closed", flush=True)
"""


@pytest.mark.timeout(120)
def test_ctrl_c_stops_the_search_and_its_workers_print_nothing(tmp_path):
    """Battery 14c: Ctrl-C (SIGINT to the terminal's whole process group) during search --workers N reached the
    workers too: each printed a KeyboardInterrupt traceback (importing its modules or waiting for a request)
    under the search's one line. Only the search gets it now; it closes the workers itself, without waiting
    5 s for each one that is still loading its model."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    err = tmp_path / "stderr.txt"
    with open(err, "w") as stderr:
        parent = subprocess.Popen([sys.executable, "-c", _CTRL_C_PARENT], stdout=subprocess.PIPE, stderr=stderr,
                                  text=True, env=env, cwd=root, start_new_session=True)
        assert parent.stdout.readline().strip() == "started"
        time.sleep(0.3)  # the workers are importing their modules (then load a slow model)
        os.killpg(parent.pid, signal.SIGINT)
        t0 = time.monotonic()
        out, _ = parent.communicate(timeout=60)
        answered = time.monotonic() - t0
    assert parent.returncode == 0 and "closed" in out
    assert answered < 8, f"Ctrl-C took {answered:.1f} s (the workers were waited for one after the other)"
    assert "Traceback" not in err.read_text() and "KeyboardInterrupt" not in err.read_text()


def _children() -> set[int]:
    import multiprocessing

    return {p.pid for p in multiprocessing.active_children()}


@pytest.mark.timeout(120)
def test_an_evaluators_bad_arguments_are_one_line_refusals_and_leave_no_worker():
    """A notebook's devices "cpu" (three workers on 'c', 'p', 'u'), 5, [5] or 5,000 of them, workers -1 (in process
    without a word), 0.5 or 10**9, a negative max_restarts, an objective that is None, a factory that cannot be
    pickled and a submitted None are UserErrors naming the argument (battery 22a)."""
    from longrope.errors import UserError
    from longrope.search.backends import make_evaluator
    from longrope.search.evaluators import InProcessEvaluator

    factory = SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS)
    before = _children()
    for devices, words in [("cpu", "list of device names"), (5, "list of device names"), ([5], "device names"),
                           ([""], "device names"), (["cpu"] * 5000, "1 to 4,096 devices")]:
        with pytest.raises(UserError, match=words):
            ProcessPoolEvaluator(factory, devices)
    with pytest.raises(UserError, match="max_restarts must be an integer"):
        ProcessPoolEvaluator(factory, ["cpu"], max_restarts=-1)
    with pytest.raises(UserError, match="cannot be sent to a worker process"):
        ProcessPoolEvaluator(lambda device: factory(device), ["cpu", "cpu"])
    for workers in (-1, 0.5, "2", True, 10**9):
        with pytest.raises(UserError, match="workers must be an integer in"):
            make_evaluator(factory, workers=workers)
    with pytest.raises(UserError, match="takes an objective"):
        InProcessEvaluator(None)
    with pytest.raises(UserError, match="submitted EvalRequests, got NoneType"):
        InProcessEvaluator(factory("cpu")).submit(None)
    assert _children() <= before


def test_make_evaluator_refuses_two_parallel_backends_as_the_search_config_does():
    """workers and devices together ran on the devices without a word from Python, where the search config refused
    the pair (battery 22's open item): one rule, backends_given, for both."""
    from longrope.errors import ConfigError, UserError
    from longrope.runs.search import SearchConfig
    from longrope.search.backends import backends_given, make_evaluator

    factory = SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS)
    before = _children()
    for kwargs in ({"workers": 2, "devices": ["cpu"]}, {"devices": ["cpu"], "ray_address": "auto"},
                   {"workers": 1, "ray_address": "auto"}):
        with pytest.raises(UserError, match="given together; give only one of workers, devices, ray_address"):
            make_evaluator(factory, **kwargs)
        with pytest.raises(ConfigError, match="give only one of"):
            SearchConfig(model="m", data="d", output="o", target_length=64, **kwargs)
    assert backends_given(0, [], None) == () and backends_given(3, (), "") == ("workers",)
    assert _children() <= before


@pytest.mark.timeout(60)
def test_a_closed_pool_refuses_more_work_instead_of_hanging(tmp_path):
    """After close(), a pool's wait() looped for ever on no worker and its submit() said KeyError 'w0'; a second
    run_search on the pool the first one closed wrote its checkpoint and then failed. Each is one line now, the
    search before it writes anything; closing twice is harmless (battery 22a)."""
    import numpy as np

    from longrope.errors import UserError
    from longrope.search import run_search
    from longrope.search.evaluators import EvalRequest

    pool = ProcessPoolEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS), ["cpu"])
    request = EvalRequest(0, np.ones(N_DIMS), 256, (0,))
    pool.submit(request)
    assert [o.ticket for o in pool.wait()] == [0]
    pool.submit(request)  # left queued: close() drops it
    pool.close()
    space = make_loop("steady", seed=0).space
    for call in (lambda: pool.submit(request), pool.wait,
                 lambda: run_search(space, make_seeds(space), pool, n_docs=N_DOCS, checkpoint=tmp_path / "c.json")):
        with pytest.raises(UserError, match="is closed .* make a new one"):
            call()
    pool.close()
    assert not (tmp_path / "c.json").exists()


class _RefusingFactory(SyntheticFactory):
    """Refuses to build its objective the way a model changed since the search started is refused."""

    def __call__(self, device: str = "cpu") -> SyntheticObjective:
        from longrope.errors import UserError

        raise UserError("the model m changed while the search ran; put back the one it started with")


@pytest.mark.timeout(60)
def test_a_worker_s_own_refusal_reaches_the_user_as_its_line():
    """Battery 23b: a worker whose objective refused its inputs (a UserError: problem and fix) was reported as "worker
    w0 could not build its objective: longrope.errors.UserError: the model ...", the type's dotted name in the line."""
    crashed = refusal_of(ProcessPoolEvaluator(_RefusingFactory(N_DIMS, SCALE, n_docs=N_DOCS), ["cpu"], max_restarts=0))
    assert str(crashed) == ("worker w0 could not build its objective: the model m changed while the search ran; "
                            "put back the one it started with")
    assert crashed.says_fix  # the search adds no advice of its own after it


def refusal_of(evaluator) -> WorkerCrashed:
    """What ``evaluator`` (its workers refusing their objective) raises for the first request; closed after."""
    try:
        evaluator.submit(EvalRequest(0, np.ones(N_DIMS), 0, (0,)))
        with pytest.raises(WorkerCrashed) as info:
            evaluator.wait()
    finally:
        evaluator.close()
    return info.value


def test_an_idle_worker_that_dies_is_told_without_a_candidate_and_both_evaluators_end_alike(caplog):
    """The restart line said 'its candidate runs again' of a worker that held none, and the process pool and Ray
    worded a death that used up the restarts each their own way (review of battery 23b): one function says both."""
    import logging

    from longrope.search.evaluators import could_not_build, worker_died

    with caplog.at_level(logging.WARNING, logger="longrope.search.evaluators"):
        worker_died("worker w1 on cpu", "exit status 1", 1, 3, requeued=False)
    assert [r.getMessage() for r in caplog.records] == [
        "search: worker w1 on cpu died (exit status 1); a new one takes its place (restart 1 of 3)"]
    with pytest.raises(WorkerCrashed, match=r"^Ray actor ray0 died \(lost\) and 3 restarts are used up$"):
        worker_died("Ray actor ray0", "lost", 4, 3, requeued=True)
    crashed = could_not_build("worker w0", "ValueError: boom")  # a report of another shape: no fix said
    assert str(crashed) == "worker w0 could not build its objective: ValueError: boom" and not crashed.says_fix


@pytest.mark.timeout(60)
def test_a_worker_killed_and_replaced_is_told_in_one_line(caplog):
    """Battery 23b: a worker killed mid-search (the out-of-memory killer, kill -9) was replaced without a word, and
    the death that used up the restarts was told as "exit code -9"."""
    import logging

    pool = ProcessPoolEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=2.0), ["cpu"],
                                max_restarts=1)
    try:
        for _ in range(2):
            pool.submit(EvalRequest(0, np.ones(N_DIMS), 0, (0,)))
            os.kill(pool._procs["w0"].pid, signal.SIGKILL)
            with caplog.at_level(logging.WARNING, logger="longrope.search.evaluators"):
                if pool._restarts == 0:
                    assert [o.ticket for o in pool.wait()] == [0]  # its candidate ran again on a new worker
                else:
                    with pytest.raises(WorkerCrashed, match=r"died \(killed by SIGKILL: out of memory, or kill -9\) "
                                                            "and 1 restarts are used up"):
                        pool.wait()
    finally:
        pool.close()
    assert [r.getMessage() for r in caplog.records] == [
        "search: worker w0 on cpu died (killed by SIGKILL: out of memory, or kill -9); its candidate runs again on "
        "a new one (restart 1 of 1)"]


@pytest.mark.timeout(120)
def test_a_stopped_worker_ends_a_timed_search_naming_it_and_keeping_its_work(tmp_path):
    """Battery 25b: a worker stopped with SIGSTOP hung a search given a time budget for ever (only Ctrl-C ended
    it, and SIGTERM left it joining the stopped worker). It now ends once no result comes back for the stall
    time after the budget, naming the worker, its checkpoint keeping the results that came back, no worker left."""
    import json
    import time

    from longrope.errors import UserError
    from longrope.search.loop import StopRules

    pool = ProcessPoolEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=0.02), ["cpu", "cpu"])
    procs = dict(pool._procs)
    for ticket in (0, 1):  # both workers loaded before the 2 s budget starts (a loaded machine: flaky otherwise)
        pool.submit(EvalRequest(ticket, np.ones(N_DIMS), 0, (0,)))
    while len(pool._ready) < 2 or any(r is not None for r in pool._busy.values()):
        pool.wait()

    stopped = []

    def stop_one(progress):  # w0 stopped while it holds a candidate
        if progress.done >= 4 and not stopped and pool._busy["w0"] is not None:
            stopped.append(os.kill(procs["w0"].pid, signal.SIGSTOP))

    ckpt = tmp_path / "checkpoint.json"
    loop = make_loop("steady", seed=7, evaluator=pool, config=small_config(iterations=50), on_progress=stop_one,
                     checkpoint=ckpt, stop=StopRules(max_seconds=2.0, stall_seconds=1.0))
    t0 = time.monotonic()
    try:
        with pytest.raises(UserError) as err:
            loop.run(make_seeds(loop.space))
    finally:
        for proc in procs.values():
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGKILL)
    assert stopped and time.monotonic() - t0 < 30
    assert "worker w0 on cpu" in str(err.value) and "stopped by SIGSTOP" in str(err.value)
    assert "--resume" in str(err.value)
    assert not any(p.is_alive() for p in procs.values())
    told = json.loads(ckpt.read_text())
    assert len(told["history"]) >= 4 and told["pending"]


@pytest.mark.timeout(60)
def test_a_worker_loading_its_model_past_the_deadline_is_not_taken_for_stopped():
    """The review of battery 25b: the stall clock ran from the request, so a worker still loading its model when the
    time budget ran out was named as having stopped answering, and a search given --max-seconds ended before its
    first result. A loading worker is waited for; its clock starts when it is ready."""
    import time

    pool = ProcessPoolEvaluator(_LoadsForFactory(N_DIMS, SCALE, n_docs=N_DOCS, load_s=3.0), ["cpu"])
    try:
        pool.submit(EvalRequest(0, np.ones(N_DIMS), 0, (0,)))
        t0 = time.monotonic()
        out = pool.wait(deadline=time.monotonic() + 0.5)
        assert [o.ticket for o in out] == [0] and time.monotonic() - t0 >= 2.0
    finally:
        pool.close()


@pytest.mark.timeout(60)
def test_a_worker_stopped_without_a_time_budget_is_named_once_with_how_to_go_on(monkeypatch, caplog):
    """Battery 25b's open item: without --max-seconds a search waits for a stopped worker (SIGSTOP, Ctrl-Z) for ever,
    and said nothing. It now says once which worker is stopped and how to go on (kill -CONT) or end (Ctrl-C); the
    worker continued, its result comes back."""
    import logging
    import threading

    from longrope.search import evaluators

    monkeypatch.setattr(evaluators, "STOPPED_NOTE_SECONDS", 0.5)
    pool = ProcessPoolEvaluator(SyntheticFactory(N_DIMS, SCALE, n_docs=N_DOCS, seconds_per_doc=0.3), ["cpu"])
    pid = pool._procs["w0"].pid
    timer = threading.Timer(4.0, os.kill, (pid, signal.SIGCONT))
    try:
        pool.submit(EvalRequest(0, np.ones(N_DIMS), 0, (0,)))
        assert [o.ticket for o in pool.wait()] == [0]  # loaded and answering
        pool.submit(EvalRequest(1, np.ones(N_DIMS), 0, tuple(range(N_DOCS))))
        os.kill(pid, signal.SIGSTOP)
        timer.start()
        with caplog.at_level(logging.WARNING, logger=evaluators.__name__):
            assert [o.ticket for o in pool.wait()] == [1]
    finally:
        timer.cancel()
        os.kill(pid, signal.SIGCONT)
        pool.close()
    notes = [r.getMessage() for r in caplog.records if "is stopped by SIGSTOP" in r.getMessage()]
    assert len(notes) == 1, notes
    assert f"worker w0 on cpu (pid {pid})" in notes[0] and f"kill -CONT {pid}" in notes[0] and "Ctrl-C" in notes[0]
