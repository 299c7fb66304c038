"""Ray evaluator: one actor per GPU (or per CPU when the cluster has none), over many machines.

Optional: Ray is imported lazily, only when this evaluator is built (``pip install longrope[ray]``).
Each actor builds its objective once (loads the model once) and then only swaps factors. Results
stream back as they finish (``ray.wait``). An actor that dies (machine lost, OOM, killed) has its
request re-queued on a fresh actor; after ``max_restarts`` deaths the search stops with the error
and keeps its checkpoint. A cluster that stops answering (``ray stop``, its head node lost) is noticed
between bounded waits and stops the search the same way, before Ray's own core worker ends the process
without a word of ours.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from longrope.errors import UserError, shown
from longrope.io import signal_handlers_kept
from longrope.search.evaluators import (
    EvalOutcome,
    EvalRequest,
    ObjectiveFactory,
    WorkerCrashed,
    _no_library_bars,
    call_objective,
    check_open,
    check_pool_arguments,
    check_request,
    could_not_build,
    fatal_report,
    stalled,
    worker_died,
)


class _RayWorker:
    """The actor body (wrapped by ``ray.remote`` at run time, so this module imports without Ray)."""

    def __init__(self, factory: ObjectiveFactory, name: str) -> None:
        import ray

        _no_library_bars()  # as in a process worker: N actors' loading bars reached the terminal, --quiet or not
        gpus = ray.get_gpu_ids()
        # Ray sets CUDA_VISIBLE_DEVICES to the actor's GPU, which is then cuda:0 inside the actor.
        self.device = "cuda:0" if gpus else "cpu"
        self.name = name
        self.fatal: tuple[str, bool] | None = None
        try:
            self.objective = factory(self.device)
        except BaseException as exc:  # told by evaluate(), as a process worker tells its parent (battery 23b)
            self.objective, self.fatal = None, fatal_report(exc)

    def evaluate(self, request: EvalRequest) -> EvalOutcome | tuple[str, tuple[str, bool]]:
        """The request's outcome, or ``("fatal", why)`` when this actor could not build its objective: raised in
        ``__init__``, it was a crash (three restarts, each building it again, Ray's traceback of each on the
        terminal) ending in a line without the reason (battery 23b)."""
        if self.fatal is not None:
            return ("fatal", self.fatal)
        return call_objective(self.objective, request, self.name)

    def pid(self) -> int:
        return os.getpid()


#: consecutive failed probes of the control store that mean the cluster is gone (a poll each ``poll_s``: with the
#: default 5 s, under 30 s, well before Ray's own 60 s)
_MISSES_TO_LOSE = 3


class RayEvaluator:
    """One actor per GPU of the cluster (or ``num_workers`` CPU actors); see the module docstring."""

    def __init__(
        self,
        factory: ObjectiveFactory,
        *,
        address: str | None = None,
        num_workers: int | None = None,
        init_kwargs: dict | None = None,
        max_restarts: int = 3,
        poll_s: float = 5.0,
    ) -> None:
        _check_arguments(factory, num_workers, init_kwargs, max_restarts, poll_s)
        try:
            import ray
        except ImportError:
            raise UserError("the Ray evaluator needs Ray: pip install 'longrope[ray]'") from None
        self._closed = False
        self._ray = ray
        self._owns_ray = False
        if not ray.is_initialized():
            _check_answers(address)
            try:
                with warnings.catch_warnings(), signal_handlers_kept():  # (Ray's would abort on SIGTERM)
                    warnings.simplefilter("ignore", UserWarning)  # the Ray client's timeout warning: the line below
                    ray.init(address=address, **{"logging_level": _ray_log_level(address), **(init_kwargs or {})})
            except Exception as exc:  # connection refused, bad address: one line for the user
                if address == "auto" and isinstance(exc, ConnectionError):  # Ray's words name its own --address flag
                    raise UserError("no Ray cluster runs on this machine for the Ray address 'auto' to join; start "
                                    "one (ray start --head), or give the address of a running cluster") from None
                raise UserError(f"cannot connect to the Ray cluster at {address!r}: {exc}") from None
            self._owns_ray = True
        self.poll_s = poll_s
        self._gcs = _reachable_control_store(ray, poll_s)
        self._lost = False
        self._misses = 0
        resources = ray.cluster_resources()
        n_gpus = int(resources.get("GPU", 0))
        self._per_actor = {"num_gpus": 1, "num_cpus": 1} if n_gpus else {"num_cpus": 1}
        room = min(n_gpus, int(resources.get("CPU", 1))) if n_gpus else max(1, int(resources.get("CPU", 1)))
        if num_workers is not None and num_workers > room:
            # the actors beyond it were never placed: their requests waited for ever, without a word (battery 23b)
            self._shut_down_own_ray()
            # (an autoscaling cluster is counted by the nodes it has when the search starts: start them first)
            raise UserError(f"num_workers {num_workers} is more actors than this Ray cluster can run at once ({room}: "
                            f"one {'GPU' if n_gpus else 'CPU'} each, on the nodes it has now); give at most {room}, "
                            f"or None for one per {'GPU' if n_gpus else 'CPU'}, or add nodes before the search starts")
        n = num_workers or room
        self.slots = n
        self.factory = factory
        self.max_restarts = max_restarts
        self._remote_cls = ray.remote(**self._per_actor)(_RayWorker)
        self.actors: list[Any] = [self._new_actor(i) for i in range(n)]
        self._idle: list[int] = list(range(n))
        self._backlog: list[EvalRequest] = []
        self._refs: dict[Any, tuple[int, EvalRequest]] = {}
        self._since: dict[int, float] = {}  # when each busy actor was handed its request (time.monotonic)
        self._answered: set[int] = set()  # the actors that returned a result (so built their objective) since started
        self._restarts = 0
        self._generation = [0] * n

    def _shut_down_own_ray(self) -> None:
        """Shut down the Ray this evaluator started, when it is refused before it has any actor."""
        self._closed = True
        if self._owns_ray:
            self._ray.shutdown()

    def _new_actor(self, i: int) -> Any:
        return self._remote_cls.remote(self.factory, f"ray{i}")

    def _dispatch(self) -> None:
        while self._idle and self._backlog:
            i = self._idle.pop(0)
            req = self._backlog.pop(0)
            self._since[i] = time.monotonic()
            self._refs[self.actors[i].evaluate.remote(req)] = (i, req)

    def submit(self, request: EvalRequest) -> None:
        check_request(request, self)
        self._backlog.append(request)
        self._dispatch()

    def wait(self, deadline: float | None = None) -> list[EvalOutcome]:
        check_open(self)
        ray = self._ray
        out: list[EvalOutcome] = []
        window = None if deadline is None else deadline - time.monotonic()
        while not out:
            if not self._refs:
                return out
            timeout = self.poll_s if deadline is None else min(self.poll_s, max(0.0, deadline - time.monotonic()))
            ready, _ = ray.wait(list(self._refs), num_returns=1, timeout=timeout)
            if not ready:
                if deadline is not None and self._stalled(deadline, window):
                    raise stalled(self._holders())
                self._check_cluster()
                continue
            more, _ = ray.wait([r for r in self._refs if r not in ready], num_returns=len(self._refs) - len(ready),
                               timeout=0)
            for ref in list(ready) + list(more):
                i, req = self._refs.pop(ref)
                try:
                    outcome = ray.get(ref)
                    if isinstance(outcome, tuple) and outcome[:1] == ("fatal",):
                        raise could_not_build(f"Ray actor ray{i}", outcome[1])
                    out.append(outcome)
                    self._answered.add(i)
                    self._idle.append(i)
                except ray.exceptions.RayActorError as exc:
                    self._restarts += 1
                    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                    worker_died(f"Ray actor ray{i}", first, self._restarts, self.max_restarts, requeued=True)
                    self._backlog.insert(0, req)  # its candidate is re-queued, nothing is lost
                    self.actors[i] = self._new_actor(i)
                    self._answered.discard(i)
                    self._idle.append(i)
            self._dispatch()
        return out

    def _stalled(self, deadline: float, window: float) -> bool:
        """Whether every busy actor stopped answering: past ``deadline``, each has answered before (an actor that
        has not yet may still be loading its model, which the pool's workers say and Ray's actors do not) and has
        held its request ``window`` seconds (the patience this wait was given)."""
        now = time.monotonic()
        busy = [i for i, _ in self._refs.values()]
        return now >= deadline and bool(busy) and all(
            i in self._answered and now - self._since.get(i, now) >= window for i in busy)

    def _holders(self) -> list[str]:
        """The actors holding a request, longest-held first, each with how long it has held it."""
        now = time.monotonic()
        held = sorted(self._refs.values(), key=lambda ir: self._since.get(ir[0], now))
        return [f"Ray actor ray{i} (no result for {now - self._since.get(i, now):.0f} s)" for i, _ in held]

    def _check_cluster(self) -> None:
        """Battery 15: after ``ray stop`` mid-search, ``ray.wait`` blocked until Ray's core worker gave up on the
        cluster (60 s) and ended the process itself, with Ray's lines and none of ours. A bounded wait and this
        probe of the control store's port end the search with one line and the checkpoint kept."""
        if self._gcs is None or _unanswered(*self._gcs, self.poll_s) is None:
            self._misses = 0
            return
        self._misses += 1  # a control store slow for one probe (a loaded head) does not end hours of search
        if self._misses < _MISSES_TO_LOSE:
            return
        self._lost = True
        raise WorkerCrashed(f"the Ray cluster (control store {self._gcs[0]}:{self._gcs[1]}) stopped answering "
                            "(ray stop, or its head node lost); start it again")

    def close(self) -> None:
        if self._closed:  # a second close: its actors are gone and Ray shut down already
            return
        self._closed = True
        self._backlog.clear()
        if self._lost:  # nothing to tell a cluster that is gone: ray.kill and shutdown would wait on it
            self.actors = []
            self._refs.clear()
            return
        for actor in self.actors:
            try:
                self._ray.kill(actor)
            except Exception:  # already dead
                pass
        self.actors = []
        self._refs.clear()
        if self._owns_ray:
            self._ray.shutdown()


def _check_arguments(factory: Any, num_workers: Any, init_kwargs: Any, max_restarts: Any, poll_s: Any) -> None:
    """What a :class:`RayEvaluator` is built from, checked before Ray starts: -1 workers made no actor and a search
    that waited on none, 0.5 or "2" were Python's TypeError, a poll of -1 s Ray's "Timeout value out of range"
    after Ray had started, init_kwargs="x" was taken unread (battery 23b)."""
    from longrope.options import int_problem, is_finite_number
    from longrope.settings import MAX_SLOTS

    check_pool_arguments("RayEvaluator", factory, max_restarts)
    if num_workers is not None and (problem := int_problem(num_workers, 1, MAX_SLOTS)) is not None:
        raise UserError(f"num_workers {problem} (None: one actor per GPU of the cluster, else per CPU)")
    if init_kwargs is not None and not isinstance(init_kwargs, dict):
        raise UserError(f"init_kwargs must be a dict of ray.init's arguments or None, got {shown(init_kwargs)}")
    if not is_finite_number(poll_s) or not 0 < poll_s <= 3600:
        raise UserError(f"poll_s must be a number of seconds in (0, 3600], got {shown(poll_s)}")


def _reachable_control_store(ray: Any, timeout_s: float) -> tuple[str, int] | None:
    """The cluster's control store as ``(host, port)`` when this process reaches it now, else None (no probe).

    Through Ray Client (``ray://``) the driver may not see the control store's own address (another network,
    another machine's loopback); a probe that fails at the start says nothing about the cluster later, so the
    search then waits on Ray alone, as before."""
    try:
        host, _, port = str(ray.get_runtime_context().gcs_address).rpartition(":")
        store = (host, int(port))
    except Exception:  # Ray Client and older Rays may not say
        return None
    return store if _unanswered(*store, timeout_s) is None else None


_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""An HTTP/2 client preface and an empty SETTINGS frame: a Ray head's control store (GCS) is a gRPC server,
which answers with a SETTINGS frame of its own."""


def _unanswered(host: str, port: int, timeout_s: float) -> str | None:
    """Why no gRPC server (what a Ray head runs) answers at ``host:port`` within ``timeout_s``, or None when one
    does: nothing listening, or something else (a web server, a silent port: Ray retried on those for minutes)."""
    import socket

    try:
        with socket.create_connection((host.strip("[]"), port), timeout=timeout_s) as conn:
            conn.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = conn.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
    except TimeoutError:
        return f"a connection was accepted but nothing answered within {timeout_s:g} s, as a Ray head does"
    except OSError as exc:
        return str(exc.strerror or exc)
    if len(head) < 9 or head[3] != 0x04:  # the frame type of SETTINGS
        return "something answers there, but not a Ray head (its control store speaks gRPC)"
    return None


def _ray_log_level(address: str | None) -> int:
    """How much of Ray's own logging a search shows: a local instance it starts (no address, ``local``) only errors
    (Ray's start-up lines, its dashboard URL and a token-authentication notice were printed on every
    ``--ray-address local`` search, even with ``--quiet``, battery 20); a cluster it joins warnings too (a version
    mismatch is the user's to act on)."""
    import logging

    return logging.ERROR if address in (None, "local") else logging.WARNING


#: the port of a Ray client server (``ray://HOST``) when the address names none
RAY_CLIENT_PORT = 10001


def _check_answers(address: str | None, timeout_s: float = 5.0) -> None:
    """Refuse a ``host:port`` or ``ray://host[:port]`` where no Ray head answers (nothing listens, or another
    server: battery 16), in seconds: Ray's own connect retried for minutes (over 10, printing a warning every 5 s,
    deaf to SIGTERM; battery 15), its client for 30 s before a warning and a timeout (battery 20). A Ray client
    server speaks gRPC as the control store does. ``auto``, ``local`` and no address are Ray's to resolve."""
    if not address:
        return
    target = address
    if address.startswith("ray://"):
        target = address[len("ray://"):].split("/", 1)[0]
        if not target:  # the client waited 30 s for a server at no host
            raise UserError(f"the Ray address {address!r} names no host; write it ray://HOST:PORT (the head node's "
                            f"Ray client server, port {RAY_CLIENT_PORT} unless set otherwise)")
        if ":" not in target.lstrip("[").rsplit("]", 1)[-1]:
            target = f"{target}:{RAY_CLIENT_PORT}"
    if "://" in target or ":" not in target:
        return
    host, _, port = target.rpartition(":")
    try:
        number = int(port)
    except ValueError:
        return  # not host:port: Ray's own message names it
    why = _unanswered(host, number, timeout_s)
    if why is not None:
        raise UserError(f"no Ray cluster answers at the Ray address {address!r} ({why}); start the "
                        "cluster there (ray start --head) or give the address its head node prints")
