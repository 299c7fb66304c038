"""Evaluators: where fitness values are computed, behind one small interface.

The loop hands an evaluator :class:`EvalRequest` s (plain numpy factors, n̂ and document indices,
no genome and no model) and collects :class:`EvalOutcome` s as they finish:

- :class:`InProcessEvaluator` — the objective is called in this process, one request at a time
  (the default; fully deterministic).
- :class:`ProcessPoolEvaluator` — one worker process per device (``torch.multiprocessing`` spawn);
  each worker builds its objective once (loads the model once) and only swaps factors per request.
  On CPU, ``--workers N`` gives N such processes. A worker that dies has its request re-queued and
  is restarted.
- :class:`~longrope.search.ray_evaluator.RayEvaluator` — one Ray actor per GPU over many machines
  (optional extra, imported lazily; it builds on this module, which never imports it back).

Which of them a search runs on is chosen by :func:`longrope.search.backends.make_evaluator`, the
factory above both modules.

An *objective* is any callable ``objective(factors [d/2] float64, start_tokens, docs,
attention_factor=None) -> [len(docs), 2]`` array of per-document ``(nll_sum, n_tokens)`` with an
``n_docs`` attribute. An *objective factory*
is a picklable callable ``factory(device: str) -> objective`` used to build one objective per worker.
"""

from __future__ import annotations

import contextlib
import logging
import pickle
import signal
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from longrope.errors import UserError, shown


class Objective(Protocol):
    n_docs: int

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray: ...


ObjectiveFactory = Callable[[str], Objective]


@dataclass
class EvalRequest:
    ticket: int
    factors: np.ndarray
    """λ, float64 [d/2], as the objective should install them"""
    start_tokens: int
    docs: tuple[int, ...]
    attention_factor: float | None = None
    """the attention temperature m; None = the factor set's default"""


@dataclass
class EvalOutcome:
    ticket: int
    scores: np.ndarray | None
    """[len(docs), 2] (nll_sum, n_tokens) or None when the evaluation failed"""
    error: str | None = None
    seconds: float = 0.0
    worker: str = ""


class Evaluator(Protocol):
    """What the loop needs: ``slots`` requests may be in flight; ``wait`` returns finished ones. ``deadline``
    (a :func:`time.monotonic` time, given by a search with a time budget): when it passes with requests out and
    none finished, ``wait`` raises :class:`WorkerStalled` naming the workers that hold them."""

    slots: int

    def submit(self, request: EvalRequest) -> None: ...

    def wait(self, deadline: float | None = None) -> list[EvalOutcome]: ...

    def close(self) -> None: ...


def call_objective(objective: Objective, request: EvalRequest, worker: str) -> EvalOutcome:
    """Run one request, turning an exception into an outcome with its error (one line + type)."""
    t0 = time.perf_counter()
    try:
        scores = np.asarray(
            objective(request.factors, request.start_tokens, request.docs, request.attention_factor),
            dtype=np.float64,
        )
        if scores.ndim != 2 or scores.shape[0] != len(request.docs) or scores.shape[1] < 2:
            raise ValueError(f"objective returned shape {scores.shape}, expected ({len(request.docs)}, 2 or more)")
        return EvalOutcome(request.ticket, scores, None, time.perf_counter() - t0, worker)
    except Exception as exc:  # the loop decides: retry, or stop with this message
        return EvalOutcome(request.ticket, None, failure_line(exc), time.perf_counter() - t0, worker)


def failure_line(exc: BaseException, *, loading: bool = False) -> str:
    """What a worker reports of an exception: a :class:`UserError`'s own line (it names the problem and the fix),
    else the exception's type and first line. A worker's UserError reached the user as "worker w0 could not build
    its objective: longrope.errors.UserError: ..." (battery 23b). ``loading``: met while building its objective."""
    if isinstance(exc, UserError):
        return str(exc)
    if isinstance(exc, (MemoryError, RuntimeError)):  # what an allocation failure is (torch's OOM: a RuntimeError)
        from longrope.evaluate.memory import out_of_memory_line

        if (line := out_of_memory_line(exc, loading=loading)) is not None:
            return line
    return traceback.format_exception_only(type(exc), exc)[-1].strip()


def check_request(request: Any, evaluator: Any) -> None:
    """The one check of what an evaluator's ``submit`` is handed, and that it is still open: None was queued and
    broke ``wait`` with "'NoneType' object has no attribute 'ticket'"; a closed pool's ``wait`` looped for ever on
    no worker and its ``submit`` said KeyError 'w0' (battery 22a)."""
    check_open(evaluator)
    if not isinstance(request, EvalRequest):
        raise UserError(f"an evaluator is submitted EvalRequests, got {type(request).__name__}")


def check_open(evaluator: Any) -> None:
    """A :class:`UserError` when ``evaluator`` was closed and cannot evaluate any more (its workers are stopped;
    an in-process evaluator holds nothing to stop and stays usable). ``run_search`` closes the evaluator it ran on,
    so a second search on the same pool is refused here, before it writes anything."""
    if getattr(evaluator, "_closed", False):
        raise UserError(f"this {type(evaluator).__name__} is closed (by close() or at the end of the search it ran); "
                        "make a new one to evaluate more")


def check_pool_arguments(owner: str, factory: Any, max_restarts: Any) -> None:
    """The one check of what every pool of workers is built from (process pool and Ray): a picklable objective
    factory and a count of restarts. The Ray evaluator took None as its factory (each actor then died on it) and -1
    restarts, and gave up on the first death (battery 23b)."""
    from longrope.options import int_problem

    if not callable(factory):
        raise UserError(f"{owner} takes an objective factory (a picklable callable such as ObjectiveSpec(...)), "
                        f"got {shown(factory)}")
    if (problem := int_problem(max_restarts, 0, 1 << 20)) is not None:
        raise UserError(f"max_restarts {problem}")


def check_devices(devices: Any) -> list[str]:
    """``devices`` of a process pool as a list of device names (1 to :data:`~longrope.settings.MAX_SLOTS`), or a
    :class:`UserError`: the string "cpu" started three workers on devices 'c', 'p' and 'u', an int said "'int' object
    is not iterable", and ["cpu"] * 5000 started 5000 processes (battery 22a)."""
    from longrope.settings import MAX_SLOTS

    if isinstance(devices, (str, bytes)) or not isinstance(devices, Sequence):
        raise UserError(f"devices must be a list of device names such as ['cpu', 'cpu'] or ['cuda:0'], "
                        f"got {shown(devices)}")
    if not 1 <= len(devices) <= MAX_SLOTS:
        raise UserError(f"devices must name 1 to {MAX_SLOTS:,} devices (one worker each), got {len(devices):,}")
    for dev in devices:
        if not isinstance(dev, str) or not dev.strip():
            raise UserError(f"devices must be device names such as 'cpu' or 'cuda:0', got {shown(dev)}")
    return list(devices)


class InProcessEvaluator:
    """Calls the objective in this process; one slot, so the run is exactly reproducible."""

    slots = 1

    def __init__(self, objective: Objective) -> None:
        if not callable(objective):
            raise UserError(f"InProcessEvaluator takes an objective (a callable such as ObjectiveSpec(...)('cpu')), "
                            f"got {shown(objective)}")
        self.objective = objective
        self._queue: list[EvalRequest] = []

    def submit(self, request: EvalRequest) -> None:
        check_request(request, self)
        self._queue.append(request)

    def wait(self, deadline: float | None = None) -> list[EvalOutcome]:
        """The next request's outcome (``deadline`` is moot: the request runs here, to its end)."""
        if not self._queue:
            return []
        return [call_objective(self.objective, self._queue.pop(0), "main")]

    def close(self) -> None:
        self._queue.clear()


# -- one process per device -----------------------------------------------------------------------
def _worker_main(worker: str, device: str, factory: Any, conn: Any) -> None:
    """Worker process: build the objective once, then serve requests from its pipe until None/EOF.
    transformers' own bars (its weight-loading bar) are off here: the parent draws the search's
    progress, and N workers' bars on the shared stderr were noise that --quiet did not hide."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the search's to answer (see _interrupts_held)
    _exit_with_parent()
    _no_library_bars()
    try:
        objective = factory(device)
    except BaseException as exc:  # reported to the parent, which stops the search with this line
        _tell_parent(conn, ("fatal", fatal_report(exc)))
        return
    if not _tell_parent(conn, ("ready", None)):
        return
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return
        if request is None or not _tell_parent(conn, ("outcome", call_objective(objective, request, worker))):
            return


@contextlib.contextmanager
def _interrupts_held() -> Iterator[None]:
    """Spawn a worker with SIGINT ignored (a disposition the spawned interpreter inherits, and then keeps): Ctrl-C,
    which the terminal sends to the whole process group, reaches only the search, which stops its workers itself
    (each printed a KeyboardInterrupt traceback, battery 14c). Meanwhile SIGINT is blocked here too, so a Ctrl-C
    in that moment waits for the search's own handler instead of being lost."""
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        yield  # only the main thread may set a handler
        return
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    handler = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _tell_parent(conn: Any, message: tuple) -> bool:
    """Send ``message`` to the search; False when it is gone (its pipe broke: nothing to report to)."""
    try:
        conn.send(message)
    except (BrokenPipeError, EOFError, OSError):
        return False
    return True


def _exit_with_parent() -> None:
    """A worker lives no longer than the search that spawned it: a thread waits on the parent's sentinel
    and ends the process when the parent dies however it dies. A search killed with SIGKILL or SIGTERM
    left its workers loading the model or scoring a candidate for minutes (on a GPU, holding its
    memory), each ending with a BrokenPipeError traceback on the user's terminal (battery 14c)."""
    import multiprocessing
    import os
    import threading

    parent = multiprocessing.parent_process()
    sentinel = getattr(parent, "sentinel", None)
    if sentinel is None:  # not a spawned child (called in-process, in a test): nothing to watch
        return
    _killed_by_the_kernel_with_parent()

    def watch() -> None:
        from multiprocessing.connection import wait

        wait([sentinel])
        os._exit(0)

    threading.Thread(target=watch, name="longrope-parent-watch", daemon=True).start()


def _killed_by_the_kernel_with_parent() -> None:
    """Linux: the kernel sends this worker SIGKILL when the search's thread that started it ends (``prctl``
    ``PR_SET_PDEATHSIG``). The watcher thread of :func:`_exit_with_parent` cannot run in a stopped worker (SIGSTOP,
    Ctrl-Z): one stopped while its search was SIGKILLed stayed stopped for good (battery 25b's open item). Elsewhere,
    or where libc has no prctl, the watcher alone."""
    import sys

    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return


def _no_library_bars() -> None:
    try:
        from transformers.utils import logging as hf_logging
    except ImportError:  # pragma: no cover - transformers is a dependency of the package
        return
    hf_logging.disable_progress_bar()


def _spawn_context():
    """torch.multiprocessing's spawn context when torch is installed (CUDA needs spawn, and its
    reducers share tensors), the standard library's otherwise — the loop itself never needs torch."""
    try:
        import torch.multiprocessing as mp
    except ImportError:  # pragma: no cover - torch is a dependency of the package
        import multiprocessing as mp
    return mp.get_context("spawn")


class WorkerCrashed(RuntimeError):
    """A worker could not start or kept dying; the message says why, and ``says_fix`` whether it says what to do
    too (a worker's own refusal): the search adds its own advice only where it does not (the review of battery 23b:
    the loop looked for '--resume' in the text)."""

    def __init__(self, message: str, *, says_fix: bool = False) -> None:
        super().__init__(message)
        self.says_fix = says_fix


class WorkerStalled(WorkerCrashed):
    """Workers holding requests gave no result by the deadline a search with a time budget set (a worker stopped by
    SIGSTOP or Ctrl-Z, or hung): the message names them; the search keeps its checkpoint for --resume."""


def stalled(holders: Sequence[str]) -> WorkerStalled:
    """The :class:`WorkerStalled` of the workers (each "worker w0 on cpu (pid 123, ...)") that stopped answering:
    one wording for the process pool and Ray."""
    return WorkerStalled(f"{', '.join(holders)} stopped answering")


#: how long a busy worker is stopped (SIGSTOP, Ctrl-Z) before the search says so, once
STOPPED_NOTE_SECONDS = 30.0


def process_state(pid: int) -> str:
    """What the system says of a worker process that does not answer, for its line: ", stopped by SIGSTOP or
    Ctrl-Z" for a stopped one, "" when it looks alive or cannot be read."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(") ", 1)[-1][:1]
    except (OSError, ValueError):
        return ""
    if state in ("T", "t"):
        return ", stopped by SIGSTOP or Ctrl-Z"
    return ""


def fatal_report(exc: BaseException) -> tuple[str, bool]:
    """What a worker that could not build its objective sends back: its :func:`failure_line` and whether that line
    says the fix (a :class:`UserError`)."""
    return failure_line(exc, loading=True), isinstance(exc, UserError)


def could_not_build(worker: str, report: Any) -> WorkerCrashed:
    """The error of a worker (``worker w0``, ``Ray actor ray0``) whose objective could not be built, from its
    :func:`fatal_report`: one wording for the process pool and Ray."""
    line, says_fix = report if isinstance(report, (tuple, list)) and len(report) == 2 else (str(report), False)
    return WorkerCrashed(f"{worker} could not build its objective: {line}", says_fix=bool(says_fix))


_log = logging.getLogger(__name__)


def worker_died(worker: str, why: str, restarts: int, max_restarts: int, *, requeued: bool) -> None:
    """A worker (``worker w0 on cpu``, ``Ray actor ray0``) died (``why``) and this is restart ``restarts``: past
    ``max_restarts`` a :class:`WorkerCrashed`, else the one line of its replacement (its candidate, when it held one,
    queued again), a warning of this module's logger, which reaches the user of a command line that configures no
    logging. A worker killed (by the out-of-memory killer, kill -9) was replaced without a word until the restarts
    were used up (battery 23b); the process pool and Ray worded the end each their own way."""
    if restarts > max_restarts:
        raise WorkerCrashed(f"{worker} died ({why}) and {max_restarts} restarts are used up")
    what = "its candidate runs again on a new one" if requeued else "a new one takes its place"
    _log.warning(f"search: {worker} died ({why}); {what} (restart {restarts} of {max_restarts})")


def exit_words(exitcode: int | None) -> str:
    """How a worker process ended, in words: "killed by SIGKILL (...)" where Python says exit code -9."""
    if exitcode is None:
        return "its pipe closed while it ran"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}" + (": out of memory, or kill -9" if exitcode == -signal.SIGKILL else "")
    return f"exit status {exitcode}"


def _continue(pid: int | None) -> None:
    """SIGCONT to a worker being stopped, so that a SIGTERM pending on a stopped process takes effect."""
    import os

    if pid is not None and hasattr(signal, "SIGCONT"):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGCONT)


#: seconds a closing pool gives its workers to end by themselves before it stops them
_CLOSE_GRACE_S = 2.0


class ProcessPoolEvaluator:
    """One spawned worker process per entry of ``devices`` (e.g. ``["cuda:0", "cuda:1"]`` or
    ``["cpu"] * N``). Requests go to idle workers; results come back in completion order.

    Each worker has its own pipe (not one shared queue): a worker killed while writing can only
    break its own channel, which is discarded with it, never block the others.
    """

    def __init__(self, factory: ObjectiveFactory, devices: Sequence[str], *, max_restarts: int = 3) -> None:
        self.devices = check_devices(devices)
        check_pool_arguments("ProcessPoolEvaluator", factory, max_restarts)
        self._closed = False
        self.factory = factory
        self.slots = len(self.devices)
        self.max_restarts = max_restarts
        self._ctx = _spawn_context()
        self._procs: dict[str, Any] = {}
        self._conns: dict[str, Any] = {}
        self._busy: dict[str, EvalRequest | None] = {}
        self._since: dict[str, float] = {}  # when each busy worker's wait began: its request, or its "ready" after
        self._ready: set[str] = set()  # the workers that built their objective (loaded the model) since they started
        self._stopped: dict[str, float | None] = {}  # a busy worker seen stopped: since when (None: said so already)
        self._backlog: list[EvalRequest] = []
        self._restarts = 0
        try:
            for i, dev in enumerate(self.devices):
                self._start(f"w{i}", dev)
        except BaseException as exc:  # the workers already started are stopped, not left to the parent's exit
            self.close()
            if isinstance(exc, (AttributeError, TypeError, pickle.PicklingError)):
                raise UserError(f"the objective factory cannot be sent to a worker process ({exc}); give a picklable "
                                f"one, e.g. an instance of a module-level class such as ObjectiveSpec") from None
            raise

    def _device(self, worker: str) -> str:
        return self.devices[int(worker[1:])]

    def _start(self, worker: str, device: str) -> None:
        parent, child = self._ctx.Pipe(duplex=True)
        proc = self._ctx.Process(target=_worker_main, args=(worker, device, self.factory, child), daemon=True)
        with _interrupts_held():
            proc.start()
        child.close()  # the parent keeps only its end, so a dead worker reads as EOF
        self._procs[worker] = proc
        self._conns[worker] = parent
        self._busy[worker] = None
        self._ready.discard(worker)

    def _dispatch(self) -> None:
        for worker in list(self._busy):
            if self._busy[worker] is None and self._backlog:
                req = self._backlog.pop(0)
                self._busy[worker] = req
                self._since[worker] = time.monotonic()
                try:
                    self._conns[worker].send(req)
                except (BrokenPipeError, OSError):
                    self._worker_died(worker)

    def submit(self, request: EvalRequest) -> None:
        check_request(request, self)
        self._backlog.append(request)
        self._dispatch()

    def _worker_died(self, worker: str) -> None:
        """Re-queue its request, replace it (or give up after ``max_restarts``)."""
        proc = self._procs[worker]
        proc.join(timeout=5)
        req = self._busy.get(worker)
        try:
            self._conns[worker].close()
        except OSError:
            pass
        self._restarts += 1
        worker_died(f"worker {worker} on {self._device(worker)}", exit_words(proc.exitcode), self._restarts,
                    self.max_restarts, requeued=req is not None)
        if req is not None:
            self._backlog.insert(0, req)  # its candidate is re-queued, nothing is lost
        self._start(worker, self._device(worker))

    def wait(self, deadline: float | None = None) -> list[EvalOutcome]:
        from multiprocessing.connection import wait as wait_connections

        check_open(self)
        if not self._backlog and all(r is None for r in self._busy.values()):
            return []
        out: list[EvalOutcome] = []
        window = None if deadline is None else deadline - time.monotonic()
        while not out:
            if deadline is not None and self._stalled(deadline, window):
                raise stalled(self._holders())
            by_conn = {conn: w for w, conn in self._conns.items()}
            ready = wait_connections(list(by_conn), timeout=1.0)
            for conn in ready:
                worker = by_conn[conn]
                try:
                    kind, payload = conn.recv()
                except (EOFError, OSError):
                    self._worker_died(worker)
                    continue
                if kind == "fatal":
                    raise could_not_build(f"worker {worker}", payload)
                if kind == "ready":  # its model is loaded: the wait for its request's answer starts now
                    self._ready.add(worker)
                    if self._busy[worker] is not None:
                        self._since[worker] = time.monotonic()
                if kind == "outcome":
                    self._busy[worker] = None
                    out.append(payload)
            if not ready:  # belt and braces: a worker that died without closing its pipe
                for worker, proc in list(self._procs.items()):
                    if not proc.is_alive():
                        self._worker_died(worker)
                self._note_stopped()
            self._dispatch()
        return out

    def _note_stopped(self) -> None:
        """One warning for a busy worker stopped (SIGSTOP, Ctrl-Z) for :data:`STOPPED_NOTE_SECONDS`: without a time
        budget the search waits for it for ever, and said nothing (battery 25b's open item); the line says how to
        go on or end. Said again if it is stopped again after going on."""
        now = time.monotonic()
        for w, req in self._busy.items():
            pid = self._procs[w].pid
            if req is None or not process_state(pid):
                self._stopped.pop(w, None)
                continue
            since = self._stopped.setdefault(w, now)
            if since is not None and now - since >= STOPPED_NOTE_SECONDS:
                self._stopped[w] = None
                _log.warning(f"search: worker {w} on {self._device(w)} (pid {pid}) is stopped by SIGSTOP or Ctrl-Z "
                             f"and holds a candidate; the search waits for it: `kill -CONT {pid}` lets it go on, "
                             "Ctrl-C ends the search (its checkpoint kept for --resume)")

    def _stalled(self, deadline: float, window: float) -> bool:
        """Whether every busy worker stopped answering: past ``deadline`` with no answer waiting, each has held its
        request ``window`` seconds (the patience this wait was given) since it was handed it or since it loaded its
        model, whichever came later. A worker still loading its model is not stalled unless it is stopped: loading
        a big model counted as not answering, and a search given --max-seconds ended before its first result (the
        review of battery 25b)."""
        now = time.monotonic()
        busy = [w for w, r in self._busy.items() if r is not None]
        if now < deadline or not busy or any(self._conns[w].poll() for w in busy):
            return False
        for w in busy:
            if w not in self._ready:
                if not process_state(self._procs[w].pid):  # loading, not stopped
                    return False
            elif now - self._since.get(w, now) < window:
                return False
        return True

    def _holders(self) -> list[str]:
        """The busy workers, longest-held request first, each with its pid, how long it has held its request and
        whether it is stopped (a hung search named no one: only Ctrl-C ended it, battery 25b)."""
        now = time.monotonic()
        busy = sorted((w for w, r in self._busy.items() if r is not None), key=lambda w: self._since.get(w, now))
        return [f"worker {w} on {self._device(w)} (pid {self._procs[w].pid}, no result for "
                f"{now - self._since.get(w, now):.0f} s{process_state(self._procs[w].pid)})" for w in busy]

    def close(self) -> None:
        for conn in self._conns.values():
            try:
                conn.send(None)
            except (BrokenPipeError, OSError):  # already gone
                pass
        # one short deadline for all: an idle worker ends at once on None; one still loading its model or scoring a
        # candidate no one waits for is stopped (5 s each made a Ctrl-C during the workers' set-up take 12 s)
        deadline = time.monotonic() + _CLOSE_GRACE_S
        for proc in self._procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._procs.values():
            if proc.is_alive():
                proc.terminate()
                _continue(proc.pid)  # a stopped worker (SIGSTOP, Ctrl-Z) takes its SIGTERM only once continued
        deadline = time.monotonic() + _CLOSE_GRACE_S
        for proc in self._procs.values():
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
        for proc in self._procs.values():
            if proc.is_alive():  # deaf to SIGTERM (a native hang): the interpreter's exit joined it for ever
                proc.kill()
                proc.join(timeout=5)
        for conn in self._conns.values():
            conn.close()
        self._procs.clear()
        self._conns.clear()
        self._backlog.clear()
        self._closed = True
