"""The search loop: ask the strategy, hand requests to an evaluator, tell results back, checkpoint.

Pure numpy (no torch): it never knows how a fitness is computed.

Determinism and resume — the design:

- Every request gets a *ticket* (0, 1, 2 …) when the strategy proposes it.
- The strategy's state (and the RNG it draws from) changes only in ``ask`` and ``tell``.
- In *ordered* mode (the default, and the only mode of the in-process evaluator) results are told
  in ticket order, and ticket ``j`` is asked as soon as tickets ``< j − lag + 1`` have been told. The
  *lag* is the evaluator's slot count when the search starts (1 in process, W with W parallel
  workers), and it is kept in the checkpoint. The proposals are then a deterministic function of
  the seed, the lag and the results, independent of timing and of the slots a resume has: a search
  started with W workers and resumed with one (or the reverse) continues the trajectory of the
  uninterrupted run (tickets asked beyond the free slots wait for one). A worker may idle while the
  oldest ticket is still running (bounded lag), never for a whole generation.
- In *unordered* mode (``ordered=False``) results are told as they arrive and every free slot is
  refilled at once: no idling, but the trajectory depends on completion order (each fitness is
  still exact, bounds/elitism still hold; a resumed run is valid but not bit-identical).
- After every told result, one JSON checkpoint is written atomically: RNG state
  (``Generator.bit_generator.state``), strategy state (population, queues, counters), the fitness
  cache (per-document scores), results that came back but are not told yet, history and the
  pending tickets.
  SIGKILL at any moment loses only evaluations in flight; ``resume`` re-submits the pending tickets
  (results already in the cache are not recomputed) and continues identically.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

import numpy as np

from longrope.errors import UserError, shown
from longrope.evaluate.stats import perplexity
from longrope.io import append_text, is_record_of, write_json, write_text
from longrope.options import check_flag, is_finite_number
from longrope.search.archive import Archive, recordable_score
from longrope.search.evaluators import (
    EvalOutcome,
    EvalRequest,
    Evaluator,
    WorkerCrashed,
    WorkerStalled,
    check_open,
)
from longrope.search.space import Genome, SearchSpace
from longrope.search.strategies import Proposal, Strategy, StrategyConfig
from longrope.settings import MAX_SLOTS

CHECKPOINT_FORMAT = "longrope-search-checkpoint"
CHECKPOINT_VERSION = 1


@dataclass
class SearchResult:
    best: Genome
    factors: np.ndarray
    """λ of the best genome, float64 [d/2]"""
    start_tokens: int
    attention_factor: float | None
    """the searched attention temperature m, or None (not searched: the factor set's default)"""
    fitness: float
    """mean NLL per token of the best genome over the full document set"""
    ppl: float
    n_candidates: int
    """candidate genomes whose evaluation ended"""
    n_doc_evals: int
    """documents scored in total (one full-fidelity evaluation = n_docs of them), reused ones included"""
    n_docs: int
    seconds: float
    stop_reason: str
    history: list[dict]
    reused_doc_evals: int = 0
    """of ``n_doc_evals``, the scores reused from an earlier search (not computed by this one)"""
    parts: np.ndarray | None = None
    """sums over every window of what the best's fitness was made of (``Fitness.parts``), or None"""

    @property
    def full_evals(self) -> float:
        """Cost in full-fidelity evaluations (racing makes this fractional; reused scores are free)."""
        return (self.n_doc_evals - self.reused_doc_evals) / self.n_docs


@dataclass(frozen=True)
class StopRules:
    """Budgets of a search: stopping rules of the loop, whatever the strategy (unset or 0: no limit).

    When one is spent the loop proposes nothing more (in-flight evaluations still finish), but
    never before one candidate has been scored on every document, so a search always ends with a
    result. The strategy's own ends (the paper's T iterations, our candidate budget and stall
    rule ``StrategyConfig.patience``) still apply; whichever comes first ends the search. Budgets
    are not part of a checkpoint's identity: a resumed search may be given more (or less).
    """

    max_evals: float | None = None
    """full-fidelity evaluations (documents scored / documents per fitness; racing counts fractions)"""
    max_seconds: float | None = None
    """wall-clock seconds of search, a resumed search's earlier time included"""
    stall_seconds: float = 60.0
    """with a time budget: how long, once it is spent, the loop waits for an in-flight evaluation without any
    result coming back (or twice the slowest evaluation so far, when that is longer; the whole budget again
    before any) until it names the workers holding them as stopped answering and ends, its checkpoint kept.
    A worker stopped with SIGSTOP hung a search given --max-seconds for ever (battery 25b)."""

    def __post_init__(self) -> None:
        from longrope.settings import check_budget

        for name in ("max_evals", "max_seconds"):  # 0 or None: no limit, as every command reads a budget
            object.__setattr__(self, name, check_budget(getattr(self, name), name))
        if not is_finite_number(self.stall_seconds) or not self.stall_seconds > 0:
            raise UserError(f"stall_seconds must be a number of seconds > 0, got {shown(self.stall_seconds)}")

    def answer_within(self, elapsed: float, slowest: float | None) -> float | None:
        """Seconds from now (``elapsed`` seconds into the search) by which a wait for in-flight evaluations must
        bring a result, the slowest evaluation so far taking ``slowest`` seconds (None: none finished yet);
        None without a time budget (a wait then waits as long as an evaluation takes)."""
        if self.max_seconds is None:
            return None
        patience = max(self.stall_seconds, 2 * slowest if slowest is not None else self.max_seconds)
        return max(0.0, self.max_seconds - elapsed) + patience

    def spent(self, full_evals: float, elapsed: float) -> str | None:
        """Why the budget is spent, or None."""
        if self.max_seconds is not None and elapsed >= self.max_seconds:
            return f"used the time budget of {self.max_seconds:g} s"
        if self.max_evals is not None and full_evals >= self.max_evals:
            return f"used the budget of {self.max_evals:g} full evaluations"
        return None


@dataclass
class Progress:
    """What a progress display needs, passed to ``on_progress`` after every told result."""

    done: int
    budget: int
    best_ppl: float
    full_evals: float
    elapsed: float


def _jsonable_float(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def check_checkpoint_format(d: dict, path: Any) -> None:
    """Refuse a checkpoint another longrope (or a hand) wrote in another format or version: the one check, made by
    ``search --resume`` before the model loads (it was made only when the loop started, after the model loaded,
    battery 19) and by the loop itself."""
    if not is_record_of(d, CHECKPOINT_FORMAT, CHECKPOINT_VERSION):
        raise UserError(f"{path} is not a version-{CHECKPOINT_VERSION} longrope search checkpoint (format "
                        f"{str(d.get('format'))[:60]!r}, version {str(d.get('version'))[:20]}: another longrope "
                        "wrote it?); resume it with that longrope, or delete the folder to start over")
    try:  # its counters too: what needs no search space is checked before the model loads (battery 19)
        _counters(d)
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise _malformed(path, exc) from None


def _malformed(path: Any, exc: BaseException) -> UserError:
    return UserError(f"{path} is malformed ({type(exc).__name__}: {str(exc)[:100]}); delete the folder to start "
                     "over, or choose a new one")


def _counters(d: dict[str, Any]) -> dict[str, Any]:
    """The checkpoint's plain state, checked (a ``ValueError`` or the like for a state no search writes): its
    history records, ticket counters, elapsed seconds and lag (``None`` when an older search kept none), and the
    shapes of its pending and arrived lists; what their genomes and scores mean is checked against the space."""
    history = d["history"]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        raise ValueError("history is not a list of records")
    for key, width in (("pending", 2), ("arrived", 3)):
        if not isinstance(d[key], list) or not all(isinstance(x, list) and len(x) == width for x in d[key]):
            raise ValueError(f"{key} is not a list of {width}-item lists")
    elapsed = d["elapsed"]
    if isinstance(elapsed, bool) or not isinstance(elapsed, (int, float)) or not (math.isfinite(elapsed)
                                                                                    and elapsed >= 0):
        raise ValueError(f"elapsed time {str(elapsed)[:40]!r} is not a finite number of seconds >= 0")
    lag = _count(d["lag"], "lag") if "lag" in d else None
    if lag is not None and not 1 <= lag <= MAX_SLOTS:
        raise ValueError(f"lag is {lag}, not a count of slots in [1, {MAX_SLOTS}]")
    return {"history": list(history), "next_ticket": _count(d["next_ticket"], "next_ticket"),
            "elapsed": float(elapsed), "lag": lag,
            "reused_doc_evals": _count(d.get("reused_doc_evals", 0), "reused_doc_evals")}


class SearchLoop:
    """Runs a strategy against an evaluator. Construct, then :meth:`run` (fresh) or :meth:`resume`."""

    def __init__(
        self,
        space: SearchSpace,
        strategy: Strategy,
        evaluator: Evaluator,
        *,
        seed: int,
        checkpoint: str | Path | None = None,
        history_path: str | Path | None = None,
        fingerprint: dict | None = None,
        ordered: bool = True,
        max_failures: int = 3,
        on_progress: Callable[[Progress], None] | None = None,
        stop: StopRules | None = None,
    ) -> None:
        if not isinstance(space, SearchSpace):
            raise UserError(f"a search takes a SearchSpace, got {shown(space)}")
        if not all(callable(getattr(strategy, name, None)) for name in ("start", "ask", "tell")) \
                or not isinstance(getattr(strategy, "archive", None), Archive):
            raise UserError(f"a search takes a Strategy (e.g. make_strategy('steady', space, Archive(n_docs), "
                            f"StrategyConfig())), got {shown(strategy)}")
        check_evaluator(evaluator)
        _check_loop_arguments(seed=seed, checkpoint=checkpoint, history=history_path, fingerprint=fingerprint,
                              ordered=ordered, on_progress=on_progress, stop=stop, max_failures=max_failures)
        self.space = space
        self.strategy = strategy
        self.archive: Archive = strategy.archive
        self.evaluator = evaluator
        self.seed = int(seed)
        self.rng = np.random.default_rng(self.seed)
        self.checkpoint = Path(checkpoint) if checkpoint else None
        self.history_path = Path(history_path) if history_path else None
        self.fingerprint = _as_recorded(fingerprint or {})
        self.ordered = ordered or evaluator.slots == 1
        #: ordered mode: ticket j is asked once ticket j − lag is told (the slots at the start; kept on resume)
        self.lag = int(evaluator.slots)
        #: tickets asked but not submitted: no free slot (a resume with fewer slots than the lag)
        self.waiting: list[int] = []
        self.max_failures = max_failures
        self.on_progress = on_progress
        self.stop = stop or StopRules()
        self.stop_reason = ""
        self.history: list[dict] = []
        self.pending: dict[int, Proposal] = {}
        self.in_flight: set[int] = set()
        #: ticket -> (docs, scores) of results that came back but are not told yet (ordered mode)
        self.arrived: dict[int, tuple[tuple[int, ...], np.ndarray]] = {}
        self._telling = False  # a ticket is being told (_tell): the state is half updated
        self.next_ticket = 0
        self.failures = 0
        self._meta: dict[int, dict] = {}
        self._elapsed_before = 0.0
        #: seconds of the slowest evaluation so far (None: none came back yet), for StopRules.answer_within
        self._slowest: float | None = None
        self._t0 = time.perf_counter()
        self._started = False
        #: window scores the archive held before this search began (reused from another search)
        self.reused_doc_evals = 0

    # -- public ----------------------------------------------------------------------------------
    def run(self, seeds: list[Genome]) -> SearchResult:
        """A fresh search from ``seeds`` (genomes of ``space``)."""
        for g in seeds:
            if not self.space.contains(g):
                raise ValueError(f"seed {g} is not a valid genome of the space")
        self.strategy.start(seeds, self.rng)
        self._started = True
        self._save()  # before the history: a folder with a history has a checkpoint to resume (a full disk
        if self.history_path:  # failing the first checkpoint left neither --resume nor a fresh start to take it)
            write_text(self.history_path, "")
        return self._loop()

    def resume(self) -> SearchResult:
        """Continue from the checkpoint file (refuses one written by a different configuration)."""
        if self.checkpoint is None or not self.checkpoint.exists():
            raise UserError(f"no checkpoint to resume at {self.checkpoint}; start the search afresh")
        self._load()
        self._started = True
        if self.history_path:
            # history.jsonl may hold lines written after the last checkpoint: rewrite it from the
            # checkpoint so that it matches the resumed state exactly.
            write_text(self.history_path, "".join(json.dumps(h) + "\n" for h in self.history))
        for ticket in sorted(self.pending):
            self._dispatch(ticket)
        return self._loop()

    # -- core ------------------------------------------------------------------------------------
    def _loop(self) -> SearchResult:
        try:
            while True:
                self._advance()
                if not self.in_flight:
                    if self.pending:  # cannot happen: a pending ticket is in flight or complete
                        raise RuntimeError(f"pending tickets {sorted(self.pending)} are neither running nor done")
                    break
                try:
                    outcomes = self._wait()
                except WorkerStalled as exc:
                    where = (f"; the checkpoint {self.checkpoint} keeps the finished work: the same command with "
                             "--resume continues on new workers") if self.checkpoint else ""
                    raise UserError(f"{exc} after the time budget of {self.stop.max_seconds:g} s was spent"
                                    f"{where}") from None
                except WorkerCrashed as exc:
                    fix = "" if exc.says_fix else ", fix it and --resume"  # a worker's own refusal says it
                    where = f"; the checkpoint {self.checkpoint} is kept{fix}" if self.checkpoint else ""
                    raise UserError(f"{exc}{where}") from None
                for outcome in outcomes:
                    self._on_outcome(outcome)
        except BaseException:
            # results that came back but wait for an earlier ticket: kept for --resume; not from a state an
            # interrupt left half told (a ticket out of the pending set and not yet in the history: the review of
            # battery 25b), where the last checkpoint is the consistent one
            if self.arrived and not self._telling:
                with contextlib.suppress(Exception):  # (a save that fails leaves the last checkpoint, and the error)
                    self._save()
            raise
        finally:
            self.evaluator.close()
        return self._result()

    def _wait(self) -> list[EvalOutcome]:
        """The evaluator's next results; with a time budget, a :class:`WorkerStalled` when none comes back in
        :meth:`StopRules.answer_within` (a worker that hung or was stopped hung the whole search, battery 25b)."""
        within = self.stop.answer_within(self._elapsed(), self._slowest)
        if within is None:
            return self.evaluator.wait()
        return self.evaluator.wait(deadline=time.monotonic() + within)

    def _advance(self) -> None:
        """Ask for work and tell finished results, interleaved canonically.

        Ordered mode: ticket ``j`` is asked right after ticket ``j − slots`` is told and before the
        next tell, whatever the completion order was (results that arrive early wait in the cache).
        """
        while True:
            self._fill()
            ticket = self._next_tellable()
            if ticket is None:
                return
            self._tell(ticket)

    def _next_tellable(self) -> int | None:
        for ticket in sorted(self.pending):
            if ticket in self.in_flight:
                if self.ordered:
                    return None
                continue
            prop = self.pending[ticket]
            if ticket in self.arrived or not self.archive.missing_docs(prop.genome, prop.docs):
                return ticket
            if self.ordered:
                return None
        return None

    def _fill(self) -> None:
        self._submit_waiting()
        while True:
            if self.ordered:
                if self.pending and self.next_ticket - min(self.pending) >= self.lag:
                    return  # bounded lag: ticket j waits until ticket j − lag has been told
            elif len(self.in_flight) + len(self.waiting) >= self.evaluator.slots:
                return
            reason = self._budget_spent()
            if reason is not None:
                if not self.pending and not self.stop_reason and not self.strategy.finished:
                    self.stop_reason = reason
                return
            proposal = self.strategy.ask(self.rng, n_pending=len(self.pending))
            if proposal is None:
                return
            ticket = self.next_ticket
            self.next_ticket += 1
            self.pending[ticket] = proposal
            self.archive.reserved.add(proposal.genome)
            self._dispatch(ticket)

    def _dispatch(self, ticket: int) -> None:
        prop = self.pending[ticket]
        missing = self.archive.missing_docs(prop.genome, prop.docs)
        if not missing or ticket in self.arrived:
            return
        if len(self.in_flight) >= self.evaluator.slots:
            self.waiting.append(ticket)  # asked in its canonical place, submitted when a slot frees
            return
        self.in_flight.add(ticket)
        self.evaluator.submit(
            EvalRequest(
                ticket, self.space.factors(prop.genome), prop.genome.start_tokens, missing,
                self.space.attention_factor(prop.genome),
            )
        )

    def _submit_waiting(self) -> None:
        while self.waiting and len(self.in_flight) < self.evaluator.slots:
            self.waiting.sort()
            self._dispatch(self.waiting.pop(0))

    def _on_outcome(self, outcome: EvalOutcome) -> None:
        ticket = outcome.ticket
        if ticket not in self.pending:
            return  # a stale duplicate (e.g. from a worker that was presumed dead)
        prop = self.pending[ticket]
        if outcome.error is not None:
            self.failures += 1
            if self.failures >= self.max_failures:
                where = f"; the checkpoint {self.checkpoint} is kept, fix it and --resume" if self.checkpoint else ""
                raise UserError(
                    f"the evaluation failed {self.failures} times in a row, last: {outcome.error}{where}"
                )
            # retry the same request (same ticket, so the order stays canonical)
            self.in_flight.discard(ticket)
            self._dispatch(ticket)
            return
        self.failures = 0
        self._slowest = max(self._slowest or 0.0, float(outcome.seconds))
        self.in_flight.discard(ticket)
        # Held back until the ticket is told: the strategy must not see results out of order.
        self.arrived[ticket] = (self.archive.missing_docs(prop.genome, prop.docs), outcome.scores)
        self._meta[ticket] = {"seconds": round(outcome.seconds, 4), "worker": outcome.worker}

    def _tell(self, ticket: int) -> None:
        self._telling = True  # the state is half told until the end: no save of it on the way out (_loop)
        prop = self.pending.pop(ticket)
        scored: tuple[int, ...] = ()  # the windows scored for this ticket; the others were in the archive
        if ticket in self.arrived:
            scored, scores = self.arrived.pop(ticket)
            self.archive.add(prop.genome, scored, scores)
        self.archive.reserved.discard(prop.genome)
        self.strategy.tell(prop)
        g = prop.genome
        seen = self.archive.evaluated_docs(g)
        f = self.archive.fitness(g, seen)
        best = self.archive.best()
        entry = {
            "ticket": ticket,
            "kind": prop.kind,
            "factors": [round(float(x), 6) for x in self.space.factors(g)],
            "start_tokens": g.start_tokens,
            "critical_dim": g.critical if g.critical >= 0 else None,
            "attention_factor": self.space.attention_factor(g),
            "docs": list(prop.docs),
            "doc_nll": [
                _jsonable_float(self.archive.scores[g][d][0] / max(self.archive.scores[g][d][1], 1)) for d in prop.docs
            ],
            "scored": [int(d) for d in scored],
            "n_docs_seen": len(seen),
            "full": len(seen) >= self.archive.n_docs,
            "fitness": _jsonable_float(f) if f is not None else None,
            **({"parts": [_jsonable_float(x) for x in parts]}
               if (parts := self.archive.parts(g, seen)) is not None else {}),
            "ppl": _jsonable_float(perplexity(f)) if f is not None else None,
            "best_ppl": _jsonable_float(perplexity(best[1])) if best else None,
            "doc_evals_total": self.archive.n_doc_evals(),
            "elapsed": round(self._elapsed(), 3),
            **self._meta.pop(ticket, {}),
        }
        self.history.append(entry)
        if self.history_path:
            append_text(self.history_path, json.dumps(entry) + "\n")
        self._save()
        self._telling = False
        if self.on_progress:
            self.on_progress(
                Progress(
                    done=self.strategy.progress(),
                    budget=self.strategy.budget,
                    best_ppl=perplexity(best[1]) if best else math.inf,
                    full_evals=(self.archive.n_doc_evals() - self.reused_doc_evals) / self.archive.n_docs,
                    elapsed=self._elapsed(),
                )
            )

    def _budget_spent(self) -> str | None:
        if self.archive.best() is None:  # never stop before one candidate is fully scored
            return None
        return self.stop.spent((self.archive.n_doc_evals() - self.reused_doc_evals) / self.archive.n_docs,
                               self._elapsed())

    def _elapsed(self) -> float:
        return self._elapsed_before + (time.perf_counter() - self._t0)

    # -- checkpoint ------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "version": CHECKPOINT_VERSION,
            "fingerprint": self.fingerprint,
            "seed": self.seed,
            "strategy_name": self.strategy.name,
            "space": self.space.to_dict(),
            "rng": self.rng.bit_generator.state,
            "strategy": self.strategy.state_dict(),
            "cache": self.archive.to_json(),
            "history": self.history,
            "pending": [[t, p.to_json()] for t, p in sorted(self.pending.items())],
            "arrived": [[t, list(d), np.asarray(sc).tolist()] for t, (d, sc) in sorted(self.arrived.items())],
            "next_ticket": self.next_ticket,
            "lag": self.lag,
            "elapsed": self._elapsed(),
            "reused_doc_evals": self.reused_doc_evals,
        }

    def _save(self) -> None:
        if self.checkpoint is not None:
            write_json(self.checkpoint, self.state_dict(), indent=None)

    def _load(self) -> None:
        from longrope.io import read_json

        d = read_json(self.checkpoint, what="search checkpoint")
        check_checkpoint_format(d, self.checkpoint)
        fingerprint = d.get("fingerprint", {})
        diffs = describe_differences(fingerprint, self.fingerprint) if isinstance(fingerprint, dict) else ["fingerprint"]
        if d.get("strategy_name") != self.strategy.name:
            diffs.insert(0, f"strategy: {d.get('strategy_name')} -> {self.strategy.name}")
        if d.get("space") != self.space.to_dict():
            diffs.append("search space (bounds/grid/n̂ set/critical dims)")
        if d.get("seed") != self.seed:
            diffs.append(f"seed: {d.get('seed')!r} -> {self.seed}")
        if diffs:
            raise UserError(
                "--resume refused, the run in this folder used a different configuration: "
                + "; ".join(diffs)
                + " (use the same flags, or a new output folder)"
            )
        try:  # a hand-edited or damaged state: one line, not a KeyError deep in a strategy
            self._load_state(d)
        except UserError:  # already one line naming the problem
            raise
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            raise _malformed(self.checkpoint, exc) from None
        self._t0 = time.perf_counter()

    def _load_state(self, d: dict[str, Any]) -> None:
        """Restore the loop from checkpoint ``d``; a ``ValueError`` (or the like) for a state no search
        writes: counters that are not counts, a negative or non-finite elapsed time, results of tickets
        never asked or scores no evaluator gives, -inf or of no token (they would be told to the strategy as measured)."""
        plain = _counters(d)
        self.rng.bit_generator.state = d["rng"]
        self.strategy.load_state_dict(d["strategy"])
        fresh = Archive.from_json(self.archive.n_docs, d["cache"], self.space)
        self.archive.scores = fresh.scores
        self.archive._ranked = None
        self.history = plain["history"]
        self.next_ticket = plain["next_ticket"]
        self.pending = {_count(t, "a pending ticket"): Proposal.from_json(p, self.space, self.archive.n_docs)
                        for t, p in d["pending"]}
        self.archive.reserved = {p.genome for p in self.pending.values()}
        self.arrived = {}
        for t, docs, sc in d["arrived"]:
            ticket, scores = _count(t, "an arrived ticket"), np.asarray(sc, dtype=np.float64)
            if ticket not in self.pending or scores.ndim != 2 or not all(recordable_score(r) for r in scores):
                raise ValueError(f"a result of ticket {ticket} that is not pending or not a score")
            self.arrived[ticket] = (tuple(int(x) for x in docs), scores)
        if any(t >= self.next_ticket for t in self.pending):
            raise ValueError(f"pending tickets at or beyond next_ticket {self.next_ticket}")
        self._elapsed_before = plain["elapsed"]
        self._slowest = max((float(h["seconds"]) for h in self.history if is_finite_number(h.get("seconds"))),
                            default=None)
        self.reused_doc_evals = plain["reused_doc_evals"]
        # a checkpoint written before the lag was kept: the slots of this start, as those searches resumed
        self.lag = self.lag if plain["lag"] is None else plain["lag"]

    # -- result ----------------------------------------------------------------------------------
    def _result(self) -> SearchResult:
        best = self.archive.best()
        if best is None:
            raise UserError("the search finished without a single fully evaluated candidate")
        g, f = best
        return SearchResult(
            best=g,
            factors=self.space.factors(g),
            start_tokens=g.start_tokens,
            attention_factor=self.space.attention_factor(g),
            fitness=f,
            ppl=perplexity(f),
            n_candidates=self.strategy.progress(),
            n_doc_evals=self.archive.n_doc_evals(),
            n_docs=self.archive.n_docs,
            seconds=self._elapsed(),
            stop_reason=self.stop_reason or self.strategy.stop_reason,
            history=self.history,
            reused_doc_evals=self.reused_doc_evals,
            parts=self.archive.parts(g),
        )


def check_evaluator(evaluator: Any) -> None:
    """A :class:`UserError` unless ``evaluator`` is an open :class:`Evaluator` (None was "'NoneType' object has no
    attribute 'slots'", battery 19)."""
    if not all(callable(getattr(evaluator, name, None)) for name in ("submit", "wait")) \
            or not hasattr(evaluator, "slots"):
        raise UserError(f"a search takes an Evaluator (e.g. InProcessEvaluator(objective)), got "
                        f"{type(evaluator).__name__}")
    check_open(evaluator)


def _check_loop_arguments(*, seed: Any, checkpoint: Any, history: Any, fingerprint: Any, ordered: Any,
                          on_progress: Any, stop: Any, max_failures: Any) -> None:
    """The one check of a search loop's arguments, for :class:`SearchLoop` and :func:`run_search` alike: a notebook's
    stop={...} was an AttributeError deep in the loop, checkpoint=5 a TypeError after the strategy started,
    on_progress=5 a TypeError after the first result, ordered="no" an ordered search (battery 22a)."""
    from longrope.options import check_seed, int_problem

    check_seed(seed)
    if stop is not None and not isinstance(stop, StopRules):
        raise UserError(f"stop must be a StopRules (e.g. StopRules(max_evals=100)) or None, got {shown(stop)}")
    for name, value in (("checkpoint", checkpoint), ("history", history)):
        if value is not None and not (isinstance(value, (str, PurePath)) and str(value).strip()):
            raise UserError(f"{name} must be a file path or None, got {shown(value)}")
    check_flag(ordered, "ordered")
    if on_progress is not None and not callable(on_progress):
        raise UserError(f"on_progress must be a function of a Progress or None, got {shown(on_progress)}")
    if fingerprint is not None and not isinstance(fingerprint, dict):
        raise UserError(f"fingerprint must be a dict or None, got {shown(fingerprint)}")
    if (problem := int_problem(max_failures, 1, 1 << 20)) is not None:
        raise UserError(f"max_failures {problem}")


def _as_recorded(fingerprint: dict) -> dict:
    """``fingerprint`` as its checkpoint will read back (a JSON round trip), checked before any work: a tuple in it
    read back as a list, so every --resume was refused ("lengths: [256, 512] -> (256, 512)"), and a value JSON cannot
    hold (an np.int64) was "c.json cannot be written" after the first scores (battery 29a)."""
    try:
        return json.loads(json.dumps(fingerprint, allow_nan=False))
    except (TypeError, ValueError) as exc:
        raise UserError(f"fingerprint must hold what JSON holds (text, numbers, true/false, null, lists and dicts of "
                        f"them), as the checkpoint records it: {exc}") from None


def _count(value: Any, what: str) -> int:
    """``value`` as a count (an integer >= 0, not a bool) or a ``ValueError`` naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what} is {value!r}, not an integer >= 0")
    return value


def describe_differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Human-readable list of the keys whose values differ between two (nested) dicts."""
    out: list[str] = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key, "<absent>"), new.get(key, "<absent>")
        if isinstance(a, dict) and isinstance(b, dict):
            out.extend(describe_differences(a, b, f"{prefix}{key}."))
        elif a != b:
            out.append(f"{prefix}{key}: {a!r} -> {b!r}")
    return out


def run_search(
    space: SearchSpace,
    seeds: list[Genome],
    evaluator: Evaluator,
    *,
    n_docs: int,
    strategy: str = "steady",
    config: StrategyConfig | None = None,
    stop: StopRules | None = None,
    seed: int = 0,
    checkpoint: str | Path | None = None,
    history: str | Path | None = None,
    fingerprint: dict | None = None,
    ordered: bool = True,
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    preload: list | None = None,
) -> SearchResult:
    """The one entry point of a search: ``strategy`` ("steady" or "paper") over ``space`` from
    ``seeds``, fitness from ``evaluator`` (``n_docs`` documents per full evaluation), ended by the
    strategy or by ``stop``; checkpointed after every told result when ``checkpoint`` is given, and
    continued from it with ``resume``. ``preload``: the fitness cache of an earlier search of the
    same windows and space (``Archive.to_json``), reused by a fresh run (the budgets count only new
    scores)."""
    from longrope.options import int_problem
    from longrope.search.strategies import STRATEGIES, make_strategy

    # the caller's arguments, before any work (evaluator None was "'NoneType' object has no attribute 'slots'",
    # seed -1 numpy's "expected non-negative integer", battery 19)
    if not isinstance(space, SearchSpace):
        raise UserError(f"run_search takes a SearchSpace, got {type(space).__name__}")
    check_evaluator(evaluator)
    if (problem := int_problem(n_docs, 1, 1 << 31)) is not None:
        raise UserError(f"n_docs {problem}")
    if strategy not in STRATEGIES:
        raise UserError(f"unknown strategy {shown(strategy)}; choose one of {', '.join(STRATEGIES)}")
    # a notebook's stop={...} or config={...} was an AttributeError deep in the loop, checkpoint=5 a TypeError after
    # the strategy started, resume="yes" a resume, a generator of seeds was used up by this very check and then
    # said "at least one seed genome is needed" (battery 22a)
    if seeds is None or isinstance(seeds, (str, bytes, dict)) or not hasattr(seeds, "__iter__"):
        raise UserError(f"run_search's seeds must be a list of Genomes of the space, got {shown(seeds)}")
    seeds = list(seeds)
    if not all(isinstance(g, Genome) for g in seeds):
        raise UserError("run_search's seeds must be Genomes of the space (e.g. from plan_search(...).seeds)")
    if config is not None and not isinstance(config, StrategyConfig):
        raise UserError(f"config must be a StrategyConfig (e.g. StrategyConfig(population=16)) or None, "
                        f"got {shown(config)}")
    check_flag(resume, "resume")
    _check_loop_arguments(seed=seed, checkpoint=checkpoint, history=history, fingerprint=fingerprint,
                          ordered=ordered, on_progress=on_progress, stop=stop, max_failures=3)
    archive = Archive(n_docs)
    if preload and not resume:
        try:
            archive = Archive.from_json(n_docs, preload, space)
        except (ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
            raise UserError(f"run_search's preload is not a fitness cache of this search's windows and space "
                            f"(Archive.to_json's list): {exc}") from None
    strat = make_strategy(strategy, space, archive, config or StrategyConfig())
    loop = SearchLoop(space, strat, evaluator, seed=seed, checkpoint=checkpoint, history_path=history,
                      fingerprint=fingerprint, ordered=ordered, on_progress=on_progress, stop=stop)
    loop.reused_doc_evals = archive.n_doc_evals()
    return loop.resume() if resume else loop.run(seeds)
