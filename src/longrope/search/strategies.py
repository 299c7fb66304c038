"""Search strategies behind one ask/tell interface.

A strategy never sees a model or a document: it proposes ``(genome, docs)`` requests and reads the
scores back from the shared :class:`~longrope.search.archive.Archive`. All randomness comes from the
generator the loop passes in, so the sequence of proposals is a deterministic function of the seed
and of the results told back, in the order they are told.

- :class:`PaperStrategy` — LongRoPE Algorithm 1 as published: initial population of PI/NTK/YaRN
  seeds and their mutations; each iteration the best ``k`` are parents, ``N1`` mutants and ``N2``
  crossovers are produced, evaluated, and compete with the parents ((μ+λ) elitism); duplicates of
  anything evaluated are rejected. Generations are synchronous by definition.
- :class:`SteadyStrategy` — ours: steady-state (one child whenever a slot frees), racing on the
  additive per-document scores (a child is scored on the first document(s); only if it is at least
  as good as the parent cut-off on the same documents is it promoted to the full set), smooth
  log-space mutation with a 1/5-success-rule step size, blend crossover, more seeds, and a stopping
  rule when the best stops improving. (The attention-temperature gene and the extra seeds live in
  the space and the seed list, see :mod:`.seeds`; the strategy only sees genomes.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

from longrope.errors import ConfigError, UserError, shown
from longrope.options import MAX_COUNT, check_int, check_shapes, option
from longrope.search.archive import Archive
from longrope.search.operators import blend_crossover, paper_crossover, paper_mutation, smooth_mutation
from longrope.search.space import Genome, SearchSpace

#: the loop strategies (how candidates are proposed and told); a ``--strategy`` name picks one in
#: :data:`SEARCH_STRATEGIES`
STRATEGIES = ("steady", "paper")
_PAPER = "the paper's knobs (LongRoPE Table 4 defaults)"
_OURS = "ours (--strategy steady / longrope2)"


#: Upper bound of a strategy's candidate counts (population, children per iteration, iterations, ...):
#: far beyond any search a model evaluation allows; a larger number is a typo.
MAX_CANDIDATES = 10**6


@dataclass
class StrategyConfig:
    """Knobs of both strategies (the paper's defaults, LongRoPE Table 4, plus ours)."""

    population: int = option(64, "initial population P of the paper strategy; ours counts it in its candidate "
                             "budget P + T·(N1+N2) and starts from --initial",
                             group=_PAPER)
    parents: int = option(32, "parents k: the best k are the parents of the next children", group=_PAPER)
    mutations: int = option(16, "mutants per iteration N1", group=_PAPER)
    crossovers: int = option(16, "crossovers per iteration N2", group=_PAPER)
    iterations: int = option(40, "iterations T of the paper; ours gets the same candidate budget P + T·(N1+N2)",
                             group=_PAPER)
    mutation_prob: float = option(0.3, "per-gene mutation probability p of the paper's mutation", group=_PAPER)
    # -- ours only --
    initial: int = option(16, "ours: size of the initial set (all seeds first, then smooth mutants of them; "
                          "counted in the candidate budget; no larger than it, unless the seeds alone are)", group=_OURS)
    race: tuple[int, ...] = option((1,), "ours: cumulative document counts of the racing stages before the full "
                                         "set, comma-separated; 'none' scores every candidate fully", group=_OURS,
                                   metavar="N,N")
    race_rank: int = option(0, "ours: a raced child must be at least as good as the member of this rank "
                               "(1-based; 0 = the worst parent) on the documents it has seen", group=_OURS)
    race_margin: float = option(0.0, "ours: tolerance (nats/token) added to the racing reference", group=_OURS)
    race_min_population: int = option(3, "ours: race only once this many genomes are fully evaluated",
                                      group=_OURS)
    sigma: float = option(0.1, "ours: initial log-space mutation scale (0.1 = ±10 % on the moved factors; the "
                               "1/5 success rule adapts it)", group=_OURS)
    sigma_bounds: tuple[float, float] = option((0.004, 0.5), "ours: bounds of the adapted mutation scale",
                                               group=_OURS, metavar="LO,HI")
    crossover_prob: float = option(0.3, "ours: probability that a child is a blend crossover rather than a "
                                        "mutation", group=_OURS)
    point_mutation_prob: float = option(0.25, "ours: share of mutations that use the paper's gene-wise redraw "
                                              "instead of the smooth log-space bump", group=_OURS)
    patience: int | None = option(None, "stop after this many candidates in a row without improvement (the "
                                        "stall rule)", group=_OURS,
                                  default_text="paper: never; ours: max(3·(N1+N2), budget/8)")
    min_delta: float = option(1e-4, "improvement (nats/token) that resets the stall counter", group=_OURS)
    max_tries: int = option(1000, "attempts to find an unseen child before giving up on that child", group=_OURS)

    def __post_init__(self) -> None:
        check_shapes(self)  # each field's kind first, as every config's: sigma="0.1", race=2 or mutation_prob=None
        # were a TypeError ('<' not supported ..., 'int' object is not iterable) from a Python caller (battery 21b)
        for name in ("population", "parents", "iterations", "initial", "max_tries", "race_min_population"):
            check_int(self, name, 1, MAX_CANDIDATES)
        for name in ("mutations", "crossovers", "race_rank"):
            check_int(self, name, 0, MAX_CANDIDATES)
        check_int(self, "patience", 1, MAX_COUNT, optional=True)
        if self.mutations + self.crossovers < 1:
            raise ConfigError(("mutations", "crossovers"), "{name0} + {name1} must be >= 1")
        if self.parents > self.population:
            raise ConfigError(("parents", "population"),
                              f"{{name0}} ({self.parents}) must not exceed {{name1}} ({self.population})")
        for name in ("mutation_prob", "point_mutation_prob", "crossover_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ConfigError(name, "{name} must lie in [0, 1], got " + str(getattr(self, name)))
        self.race = tuple(int(r) for r in self.race)
        if any(not 1 <= r <= MAX_COUNT for r in self.race) or list(self.race) != sorted(set(self.race)):
            raise ConfigError("race", "{name} must be increasing positive document counts, got " + str(self.race))
        if self.race_rank < 0 or self.race_min_population < 1:
            raise ConfigError(("race_rank", "race_min_population"), "{name0} must be >= 0 and {name1} >= 1")
        if not 0 < self.sigma < math.inf:
            raise ConfigError("sigma", "{name} must be a finite number > 0, got " + str(self.sigma))
        self.sigma_bounds = (float(self.sigma_bounds[0]), float(self.sigma_bounds[1]))
        if not 0 < self.sigma_bounds[0] <= self.sigma_bounds[1] < math.inf:
            raise ConfigError("sigma_bounds", "{name} must be finite, 0 < LO <= HI, got " + str(self.sigma_bounds))
        if not 0 <= self.min_delta < math.inf or not 0 <= self.race_margin < math.inf:
            raise ConfigError(("min_delta", "race_margin"), "{name0} and {name1} must be finite numbers >= 0")

    @property
    def budget(self) -> int:
        """Candidate genomes the paper evaluates: P + T·(N1+N2) (1,344 with the defaults)."""
        return self.population + self.iterations * (self.mutations + self.crossovers)

    def to_dict(self) -> dict:
        d = asdict(self)
        d["race"] = list(self.race)
        d["sigma_bounds"] = list(self.sigma_bounds)
        return d


@dataclass
class Proposal:
    """A request of the strategy: score ``genome`` on ``docs``."""

    genome: Genome
    docs: tuple[int, ...]
    kind: str
    """seed | init | mutation | crossover | promotion"""

    def to_json(self) -> dict:
        return {"genome": self.genome.to_json(), "docs": list(self.docs), "kind": self.kind}

    @classmethod
    def from_json(cls, d: dict, space: SearchSpace | None = None, n_docs: int | None = None) -> Proposal:
        """The proposal :meth:`to_json` wrote; with ``space`` (and ``n_docs``) a recorded one is checked: a
        ``ValueError`` for a genome outside the space or a window index outside ``[0, n_docs)``."""
        genome = Genome.from_json(d["genome"]) if space is None else space.recorded_genome(d["genome"])
        docs = tuple(int(x) for x in d["docs"])
        if n_docs is not None and not all(0 <= x < n_docs for x in docs):
            raise ValueError(f"a proposal of windows {list(docs)[:4]} outside the {n_docs} window(s) searched")
        return cls(genome, docs, str(d["kind"]))


class Strategy:
    """Base class: ``start`` once, then ``ask``/``tell`` until ``finished``."""

    name = "base"

    def __init__(self, space: SearchSpace, archive: Archive, config: StrategyConfig) -> None:
        self.space = space
        self.archive = archive
        self.config = config
        self.finished = False
        self.stop_reason = ""

    def start(self, seeds: list[Genome], rng: np.random.Generator) -> None:
        raise NotImplementedError

    def ask(self, rng: np.random.Generator, n_pending: int) -> Proposal | None:
        """The next request, or None when nothing can be proposed until results come back."""
        raise NotImplementedError

    def tell(self, proposal: Proposal) -> None:
        """The scores of ``proposal`` are in the archive now."""
        raise NotImplementedError

    @property
    def budget(self) -> int:
        return self.config.budget

    def progress(self) -> int:
        """Candidates finished so far (for the progress bar; ≤ budget)."""
        raise NotImplementedError

    def state_dict(self) -> dict:
        raise NotImplementedError

    def load_state_dict(self, d: dict) -> None:
        raise NotImplementedError

    # -- helpers ---------------------------------------------------------------------------------
    def _all_docs(self) -> tuple[int, ...]:
        return tuple(range(self.archive.n_docs))


def _unique_seeds(seeds: list[Genome]) -> list[Genome]:
    out: list[Genome] = []
    for g in seeds:
        if g not in out:
            out.append(g)
    if not out:
        raise UserError("at least one seed genome is needed")
    return out


class PaperStrategy(Strategy):
    """LongRoPE Algorithm 1 (see the module docstring); synchronous generations."""

    name = "paper"

    def __init__(self, space: SearchSpace, archive: Archive, config: StrategyConfig) -> None:
        super().__init__(space, archive, config)
        self.generation = 0
        self.queue: list[Proposal] = []
        self.population: list[Genome] = []
        self.n_done = 0
        self.since_improve = 0
        self.best = math.inf

    def start(self, seeds: list[Genome], rng: np.random.Generator) -> None:
        cfg = self.config
        known = self.archive.best()  # scores reused from another search: their best is the one to beat
        self.best = known[1] if known else math.inf
        initial = _unique_seeds(seeds)[: cfg.population]
        n_seeds = len(initial)
        seen = set(initial)
        tries = 0
        while len(initial) < cfg.population and tries < cfg.max_tries * cfg.population:
            tries += 1
            parent = initial[int(rng.integers(n_seeds))]
            child = paper_mutation(self.space, parent, rng, cfg.mutation_prob)
            if child not in seen:
                seen.add(child)
                initial.append(child)
        docs = self._all_docs()
        self.queue = [Proposal(g, docs, "seed" if i < n_seeds else "init") for i, g in enumerate(initial)]
        self.population = list(initial)

    def _next_generation(self, rng: np.random.Generator) -> None:
        cfg = self.config
        parents = self.archive.ranked()[: cfg.parents]
        children: list[Proposal] = []
        seen: set[Genome] = set()

        def fresh(g: Genome | None) -> bool:
            return g is not None and g not in seen and not self.archive.known(g)

        docs = self._all_docs()
        for _ in range(cfg.mutations):
            for _ in range(cfg.max_tries):
                parent = parents[int(rng.integers(len(parents)))]
                child = paper_mutation(self.space, parent, rng, cfg.mutation_prob)
                if fresh(child):
                    seen.add(child)
                    children.append(Proposal(child, docs, "mutation"))
                    break
        if len(parents) >= 2:
            for _ in range(cfg.crossovers):
                for _ in range(cfg.max_tries):
                    i, j = rng.choice(len(parents), size=2, replace=False)
                    child = paper_crossover(self.space, parents[int(i)], parents[int(j)], rng)
                    if fresh(child):
                        seen.add(child)
                        children.append(Proposal(child, docs, "crossover"))
                        break
        self.generation += 1
        self.population = list(parents) + [c.genome for c in children]
        self.queue = children

    def ask(self, rng: np.random.Generator, n_pending: int) -> Proposal | None:
        while not self.queue:
            if self.finished or n_pending > 0:
                return None  # the generation barrier of the published algorithm
            if self.generation >= self.config.iterations:
                self.finished, self.stop_reason = True, f"completed {self.config.iterations} iterations"
                return None
            if self.config.patience is not None and self.since_improve >= self.config.patience:
                self.finished = True
                self.stop_reason = f"no improvement in {self.since_improve} candidates"
                return None
            if not self.archive.ranked():
                self.finished, self.stop_reason = True, "no candidate could be evaluated"
                return None
            self._next_generation(rng)
        return self.queue.pop(0)

    def tell(self, proposal: Proposal) -> None:
        self.n_done += 1
        f = self.archive.fitness(proposal.genome)
        if f is not None and f < self.best - self.config.min_delta:
            self.best = f
            self.since_improve = 0
        else:
            self.since_improve += 1

    def progress(self) -> int:
        return self.n_done

    def state_dict(self) -> dict:
        return {
            "generation": self.generation,
            "queue": [p.to_json() for p in self.queue],
            "population": [g.to_json() for g in self.population],
            "n_done": self.n_done,
            "since_improve": self.since_improve,
            "best": self.best,
            "finished": self.finished,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, d: dict) -> None:
        self.generation = int(d["generation"])
        self.queue = [Proposal.from_json(p, self.space, self.archive.n_docs) for p in d["queue"]]
        self.population = [self.space.recorded_genome(g) for g in d["population"]]
        self.n_done = int(d["n_done"])
        self.since_improve = int(d["since_improve"])
        self.best = float(d["best"])
        self.finished = bool(d["finished"])
        self.stop_reason = str(d["stop_reason"])


@dataclass
class _SteadyCounters:
    n_new: int = 0
    """new genomes proposed (the budget counts these)"""
    n_final: int = 0
    """new genomes whose evaluation ended (rejected by racing or fully scored)"""
    n_raced_out: int = 0
    n_success: int = 0
    since_improve: int = 0
    best: float = math.inf
    sigma: float = 0.05


class SteadyStrategy(Strategy):
    """Ours: steady-state racing evolution (see the module docstring)."""

    name = "steady"

    def __init__(self, space: SearchSpace, archive: Archive, config: StrategyConfig) -> None:
        super().__init__(space, archive, config)
        self.queue: list[Genome] = []
        self.promotions: list[Proposal] = []
        self.c = _SteadyCounters(sigma=config.sigma)
        # Default stall length: three generations' worth of children, or an eighth of the budget.
        # Two generations stopped too early on the synthetic benchmark (a lucky seed start followed
        # by a plateau while the step size adapts).
        self.patience = (
            config.patience
            if config.patience is not None
            else max(3 * (config.mutations + config.crossovers), config.budget // 8)
        )

    # -- racing ----------------------------------------------------------------------------------
    def _stages(self) -> tuple[int, ...]:
        n = self.archive.n_docs
        return tuple(r for r in self.config.race if r < n) + (n,)

    def _first_docs(self) -> tuple[int, ...]:
        if len(self.archive.ranked()) < self.config.race_min_population:
            return self._all_docs()
        return tuple(range(self._stages()[0]))

    def _race_reference(self) -> Genome:
        ranked = self.archive.ranked()
        rank = self.config.race_rank or self.config.parents
        return ranked[min(rank, len(ranked)) - 1]

    # -- selection -------------------------------------------------------------------------------
    def _pick_parent(self, parents: list[Genome], rng: np.random.Generator) -> Genome:
        """Binary tournament among the parents (rank-biased, keeps some diversity)."""
        i, j = rng.integers(len(parents), size=2)
        return parents[int(min(i, j))]

    def _make_child(self, rng: np.random.Generator) -> Proposal | None:
        cfg = self.config
        parents = self.archive.ranked()[: cfg.parents]
        if not parents:
            return None
        for attempt in range(cfg.max_tries):
            # Widen the step after repeated duplicates: the neighbourhood on the grid is used up.
            sigma = self.c.sigma * (1.0 + attempt / 10.0)
            if len(parents) >= 2 and rng.random() < cfg.crossover_prob:
                a = self._pick_parent(parents, rng)
                b = self._pick_parent(parents, rng)
                child = blend_crossover(self.space, a, b, rng)
                kind = "crossover"
                if child == a or child == b:
                    child = smooth_mutation(self.space, child, rng, sigma)
                    kind = "mutation"
            elif rng.random() < cfg.point_mutation_prob:
                child = paper_mutation(self.space, self._pick_parent(parents, rng), rng, cfg.mutation_prob)
                kind = "mutation"
            else:
                child = smooth_mutation(self.space, self._pick_parent(parents, rng), rng, sigma)
                kind = "mutation"
            if not self.archive.known(child):
                return Proposal(child, self._first_docs(), kind)
        return None

    # -- ask / tell ------------------------------------------------------------------------------
    def start(self, seeds: list[Genome], rng: np.random.Generator) -> None:
        cfg = self.config
        known = self.archive.best()  # scores reused from another search: their best is the one to beat
        self.c.best = known[1] if known else math.inf
        initial = _unique_seeds(seeds)
        n_seeds = len(initial)
        seen = set(initial)
        tries = 0
        # the initial set counts against the budget: a budget below --initial (population 4, 2 iterations: 12) was
        # exceeded by the initial set alone, and the search then said "used the budget of 12 candidates" after 16
        size = max(min(cfg.initial, self.budget), n_seeds)
        while len(initial) < size and tries < cfg.max_tries * cfg.initial:
            tries += 1
            parent = initial[int(rng.integers(n_seeds))]
            child = smooth_mutation(self.space, parent, rng, self.c.sigma)
            if child not in seen:
                seen.add(child)
                initial.append(child)
        self.queue = initial
        self._n_seeds = n_seeds

    def ask(self, rng: np.random.Generator, n_pending: int) -> Proposal | None:
        if self.promotions:
            return self.promotions.pop(0)
        if self.finished:
            return None
        if self.queue:
            g = self.queue.pop(0)
            self.c.n_new += 1
            kind = "seed" if self.c.n_new <= getattr(self, "_n_seeds", 0) else "init"
            # Seeds and the initial set: full fidelity until there is a population to race against.
            return Proposal(g, self._first_docs(), kind)
        if self.c.n_new >= self.budget:
            if n_pending == 0:
                self.finished, self.stop_reason = True, f"used the budget of {self.budget} candidates"
            return None
        if self.c.since_improve >= self.patience:
            if n_pending == 0:
                self.finished = True
                self.stop_reason = f"no improvement in {self.c.since_improve} candidates"
            return None
        prop = self._make_child(rng)
        if prop is None:
            if n_pending == 0:
                self.finished = True
                self.stop_reason = "no unseen child could be produced (space exhausted)"
            return None
        self.c.n_new += 1
        return prop

    def _finish_candidate(self, success: bool, fitness: float | None) -> None:
        c = self.c
        c.n_final += 1
        if fitness is not None and fitness < c.best - self.config.min_delta:
            c.best = fitness
            c.since_improve = 0
        else:
            c.since_improve += 1
        # 1/5 success rule (Rechenberg): grow the step when more than 1 in 5 children make it into
        # the parents, shrink it otherwise. Damping 3 keeps it from oscillating on noisy fitness.
        c.n_success += int(success)
        lo, hi = self.config.sigma_bounds
        c.sigma = float(np.clip(c.sigma * math.exp(((1.0 if success else 0.0) - 0.2) / 3.0), lo, hi))

    def tell(self, proposal: Proposal) -> None:
        g = proposal.genome
        arc = self.archive
        if arc.is_full(g):
            f = arc.fitness(g)
            ranked = arc.ranked()
            success = ranked.index(g) < self.config.parents
            self._finish_candidate(success, f)
            return
        seen = arc.evaluated_docs(g)
        ref = self._race_reference()
        f_c = arc.fitness(g, seen)
        f_r = arc.fitness(ref, seen)
        if f_c is not None and f_r is not None and f_c <= f_r + self.config.race_margin:
            nxt = next(s for s in self._stages() if s > len(seen))
            self.promotions.append(Proposal(g, tuple(range(len(seen), nxt)), "promotion"))
        else:
            self.c.n_raced_out += 1
            self._finish_candidate(False, None)

    def progress(self) -> int:
        return self.c.n_final

    def state_dict(self) -> dict:
        c = self.c
        return {
            "queue": [g.to_json() for g in self.queue],
            "n_seeds": getattr(self, "_n_seeds", 0),
            "promotions": [p.to_json() for p in self.promotions],
            "counters": {
                "n_new": c.n_new,
                "n_final": c.n_final,
                "n_raced_out": c.n_raced_out,
                "n_success": c.n_success,
                "since_improve": c.since_improve,
                "best": c.best,
                "sigma": c.sigma,
            },
            "finished": self.finished,
            "stop_reason": self.stop_reason,
        }

    def load_state_dict(self, d: dict) -> None:
        self.queue = [self.space.recorded_genome(g) for g in d["queue"]]
        self._n_seeds = int(d["n_seeds"])
        self.promotions = [Proposal.from_json(p, self.space, self.archive.n_docs) for p in d["promotions"]]
        k = d["counters"]
        self.c = _SteadyCounters(
            n_new=int(k["n_new"]),
            n_final=int(k["n_final"]),
            n_raced_out=int(k["n_raced_out"]),
            n_success=int(k["n_success"]),
            since_improve=int(k["since_improve"]),
            best=float(k["best"]),
            sigma=float(k["sigma"]),
        )
        self.finished = bool(d["finished"])
        self.stop_reason = str(d["stop_reason"])


_LOOPS: dict[str, type[Strategy]] = {"steady": SteadyStrategy, "paper": PaperStrategy}
assert tuple(_LOOPS) == STRATEGIES


def make_strategy(name: str, space: SearchSpace, archive: Archive, config: StrategyConfig) -> Strategy:
    if not isinstance(name, str) or name not in _LOOPS:
        raise UserError(f"unknown strategy {shown(name)}; choose one of {', '.join(STRATEGIES)}")
    return _LOOPS[name](space, archive, config)


@dataclass(frozen=True)
class SearchStrategy:
    """What a ``--strategy`` name means, in one row: the loop strategy that runs, the space and seeds of an
    extension search, whether the attention temperature is searched, and the fitness used unless told."""

    loop: str
    """key of the loop strategies (:data:`STRATEGIES`)"""
    space: str
    """``"paper"``: λ in [1, 1.25·s] on every pair, with n̂; ``"critical"``: LongRoPE2's [s, 2s] above d_rcd"""
    seeds: str
    """seeds of an extension search: ``"paper"`` (PI, NTK, YaRN), ``"extended"`` or ``"longrope2"``"""
    searches_attention: bool
    fitness: str
    """default fitness of extension and progressive searches"""
    short_fitness: str
    """default fitness of short-factor recovery (at most L tokens)"""
    legacy_fitness: str
    """what an unset fitness meant in records written before the joint fitness"""
    help: str


#: Every ``--strategy``: the one table the CLI choices, the plan, the loop and the default fitness read.
SEARCH_STRATEGIES: dict[str, SearchStrategy] = {
    "steady": SearchStrategy("steady", "paper", "extended", True, "joint", "ppl", "ppl",
                             "ours: steady-state, racing on one window first, fitness cache, smooth mutations with "
                             "adaptive step, more seeds, the attention temperature searched too"),
    "paper": SearchStrategy("paper", "paper", "paper", False, "joint", "ppl", "ppl",
                            "the published algorithm: seeds PI/NTK/YaRN, (mu+lambda) generations"),
    "longrope2": SearchStrategy("steady", "critical", "longrope2", False, "needle", "needle", "needle",
                                "LongRoPE2: lambda_i in [s, 2s] for i >= d_rcd, NTK-style below, d_rcd searched, "
                                "needle-driven fitness"),
}


def search_strategy(name: str) -> SearchStrategy:
    """The row of a ``--strategy`` name (a one-line UserError naming the choices for another)."""
    if not isinstance(name, str) or name not in SEARCH_STRATEGIES:
        raise UserError(f"unknown strategy {shown(name)}; choose one of {', '.join(SEARCH_STRATEGIES)}")
    return SEARCH_STRATEGIES[name]
