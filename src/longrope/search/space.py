"""The search space: genomes on a grid, their bounds and the monotone constraint.

A genome is stored as integers: ``q_i = round(λ_i / step)``. Working on the integer grid makes
"the same genome" exact (the fitness cache and the duplicate check compare tuples of ints, never
floats that differ in the 15th digit) and makes "never leaves the grid / the bounds" a property
of integer arithmetic rather than of rounding luck.

Three spaces share this code:

- the paper's space (docs/method.md §4): ``λ_i ∈ [1, 1.25·s]``, non-decreasing in i, plus ``n̂`` from a
  fixed set;
- the short-factor space (docs/method.md §5.4): the same shape with a lower upper bound;
- the LongRoPE2 space (docs/method.md §6): only ``i ≥ d_rcd`` is searched, in ``[s, 2s]``, and ``d_rcd`` is a gene;
  the dimensions below it are derived (NTK-style ramp), so they are not free genes.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from longrope.errors import UserError, shown
from longrope.options import check_flag, is_finite_number, is_integer
from longrope.rope.attention import check_attention_factor
from longrope.rope.frequencies import MAX_ROTARY_DIM
from longrope.rope.values import MAX_LENGTH, scalar_value

#: the most factor dimensions a space holds: one per rotary pair of the largest rotary dim accepted
MAX_DIMS = MAX_ROTARY_DIM // 2

#: n̂ values the paper searches (LongRoPE Table 4).
PAPER_START_TOKENS: tuple[int, ...] = (0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 64, 128, 256)


class SpaceError(UserError):
    """A value :class:`SearchSpace` refuses. Its own class so that :func:`~longrope.search.plan.plan_search` can say
    which settings made the space (a library caller gets the plain one-line :class:`UserError`)."""


def _finite(value: Any, name: str) -> None:
    """A real number (not a bool) whose float is finite: 10**400 was float()'s OverflowError."""
    if not is_finite_number(value):
        raise SpaceError(f"{name} must be a finite number, got {shown(value)}")


def _integers(values: Any, name: str) -> None:
    """A tuple (or list) of integers up to 2^40 (not bools, not fractions): start_tokens=(0.5,) was n̂ 0.5."""
    if not isinstance(values, (tuple, list)):
        raise SpaceError(f"{name} must be a tuple of integers, got {shown(values)}")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or abs(v) > MAX_LENGTH:
            raise SpaceError(f"{name} must hold integers (at most {MAX_LENGTH:,}), got {shown(v)} in {shown(values)}")


@dataclass(frozen=True, order=True)
class Genome:
    """One point of the space: grid indices of λ, the retained start tokens and (LongRoPE2) d_rcd.

    Frozen and hashable: it is its own cache key. ``critical`` is ``-1`` when the space has no
    critical dimension gene, ``attention`` ``-1`` when the attention temperature is not searched
    (kept ints so that genomes stay totally ordered and JSON-simple); otherwise ``attention`` is
    an index into ``SearchSpace.attention_choices``.
    """

    q: tuple[int, ...]
    start_tokens: int = 0
    critical: int = -1
    attention: int = -1

    def to_json(self) -> list:
        return [list(self.q), self.start_tokens, self.critical, self.attention]

    @classmethod
    def from_json(cls, obj: list) -> Genome:
        q, n_hat, crit = obj[:3]
        att = obj[3] if len(obj) > 3 else -1
        return cls(tuple(int(v) for v in q), int(n_hat), int(crit), int(att))


def isotonic_non_decreasing(values: np.ndarray) -> np.ndarray:
    """Least-squares projection of ``values`` onto non-decreasing sequences (pool adjacent violators).

    Used by the smooth operators: a perturbed vector is projected back onto the monotone cone
    instead of being rejected, which keeps the perturbation's shape where it was already feasible.
    """
    v = np.asarray(values, dtype=np.float64)
    means: list[float] = []
    counts: list[int] = []
    for x in v:
        means.append(float(x))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            c = counts[-2] + counts[-1]
            m = (means[-2] * counts[-2] + means[-1] * counts[-1]) / c
            means[-2:] = [m]
            counts[-2:] = [c]
    return np.repeat(np.asarray(means), counts)


@dataclass(frozen=True)
class SearchSpace:
    """Bounds, grid and constraints of the factors being searched.

    Attributes:
        n_dims: number of rescale factors, d/2.
        lower: smallest λ allowed (1.0 in the paper: never extrapolate further than the original).
        upper: largest λ allowed (1.25·s in the paper).
        step: grid spacing of λ (0.01 in the paper).
        start_tokens: allowed n̂ values; a single value means n̂ is not searched.
        monotone: λ non-decreasing in i (the paper's constraint).
        critical_dims: allowed d_rcd values for the LongRoPE2 space; empty = every dimension is a gene.
        critical_lower: lower bound of λ for i ≥ d_rcd (LongRoPE2: s).
        attention_choices: attention temperatures m to choose from (ours); empty = not searched,
            the factor set's default (LongRoPE's ``sqrt(1 + ln s / ln L)``) is used, as in the paper.
    """

    n_dims: int
    lower: float = 1.0
    upper: float = 2.0
    step: float = 0.01
    start_tokens: tuple[int, ...] = PAPER_START_TOKENS
    monotone: bool = True
    critical_dims: tuple[int, ...] = field(default_factory=tuple)
    critical_lower: float | None = None
    attention_choices: tuple[float, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        # the kinds and finiteness first: '4' was a TypeError, upper=inf an OverflowError in the grid (battery 19);
        # start_tokens=(0.5,) a fractional n̂, monotone='no' a monotone space, ('a',) and 4 TypeErrors (battery 20b)
        for name in ("n_dims", "lower", "upper", "step", "critical_lower"):  # numpy numbers as Python ones: the space
            object.__setattr__(self, name, scalar_value(getattr(self, name)))  # goes into checkpoints (JSON)
        for name in ("start_tokens", "critical_dims", "attention_choices"):
            if isinstance(getattr(self, name), (tuple, list)):  # n_dims=np.int64(12) was "c.json cannot be written"
                object.__setattr__(self, name, tuple(scalar_value(v) for v in getattr(self, name)))  # (battery 29a)
        if isinstance(self.n_dims, bool) or not isinstance(self.n_dims, numbers.Integral) \
                or not 1 <= self.n_dims <= MAX_DIMS:
            raise SpaceError(f"n_dims must be an integer in [1, {MAX_DIMS}], got {shown(self.n_dims)}")
        for name in ("lower", "upper", "step"):
            _finite(getattr(self, name), name)
        if self.critical_lower is not None:
            _finite(self.critical_lower, "critical_lower")
        object.__setattr__(self, "monotone", check_flag(self.monotone, "monotone"))  # 'no' was a monotone space
        _integers(self.start_tokens, "start_tokens")
        _integers(self.critical_dims, "critical_dims")
        if not isinstance(self.attention_choices, (tuple, list)):
            raise SpaceError(f"attention_choices must be a tuple of numbers, got {shown(self.attention_choices)}")
        for m in self.attention_choices:
            _finite(m, "attention_choices")
        if not self.step > 0:
            raise SpaceError(f"step must be > 0, got {self.step}")
        if not (self.lower > 0 and self.upper >= self.lower):
            raise SpaceError(f"need 0 < lower <= upper, got lower={self.lower} upper={self.upper}")
        if self.q_hi < self.q_lo:
            raise SpaceError(f"no grid point of step {self.step} lies in [{self.lower}, {self.upper}]")
        # the grid is the multiples of the step (genomes are q = λ / step): step 0.03 made 1.02 the smallest λ, so no
        # pair kept its rotation (λ = 1) and every seed's fast pairs were interpolated (battery 31d)
        cells = self.lower / self.step
        if abs(cells - round(cells)) > 1e-6 * max(1.0, cells):
            raise SpaceError(f"the lower bound {self.lower:g} is not on the grid of step {self.step:g} (λ = k·step): "
                             f"the smallest λ searched would be {self.q_lo * self.step:g}; give a step that divides "
                             f"{self.lower:g} (0.01 divides 1.0), or a lower bound that is a multiple of the step (a run "
                             "folder searched so before this check cannot go on: start a new run)")
        if not self.start_tokens or any(n < 0 for n in self.start_tokens):
            raise SpaceError(f"start_tokens must be non-empty and >= 0, got {self.start_tokens}")
        if list(self.start_tokens) != sorted(set(self.start_tokens)):
            raise SpaceError(f"start_tokens must be sorted and unique, got {self.start_tokens}")
        if self.critical_dims:
            if any(not 0 <= c < self.n_dims for c in self.critical_dims):
                raise SpaceError(f"critical_dims must lie in [0, {self.n_dims}), got {self.critical_dims}")
            if list(self.critical_dims) != sorted(set(self.critical_dims)):
                raise SpaceError("critical_dims must be sorted and unique")
            if self.critical_lower is None or not self.lower <= self.critical_lower <= self.upper:
                raise SpaceError("critical_lower must be set and lie in [lower, upper] for a LongRoPE2 space")
        for m in self.attention_choices:  # each a factor set's m: the one check of an attention factor
            try:
                check_attention_factor(m, "attention_choices")
            except UserError as exc:
                raise SpaceError(str(exc)) from None
        if list(self.attention_choices) != sorted(set(self.attention_choices)):
            raise SpaceError("attention_choices must be sorted and unique")

    # -- grid ------------------------------------------------------------------------------------
    @property
    def q_lo(self) -> int:
        # A tiny tolerance so that 1.0/0.01 = 100 is not lost to 99.99999999.
        return math.ceil(self.lower / self.step - 1e-9)

    @property
    def q_hi(self) -> int:
        return math.floor(self.upper / self.step + 1e-9)

    @property
    def q_crit_lo(self) -> int:
        return math.ceil((self.critical_lower or self.lower) / self.step - 1e-9)

    @property
    def has_critical(self) -> bool:
        return bool(self.critical_dims)

    @property
    def has_attention(self) -> bool:
        return bool(self.attention_choices)

    def attention_factor(self, genome: Genome) -> float | None:
        """The temperature m of the genome, or None (the factor set's default) when not searched."""
        return float(self.attention_choices[genome.attention]) if self.has_attention else None

    def attention_index(self, m: float | None) -> int:
        """Index of the choice nearest to ``m`` (None → the largest choice: the space knows neither s nor L, so a
        caller that means a factor set's default, LongRoPE's ``sqrt(1 + ln s / ln L)``, passes its value; it is
        below YaRN's ``1 + 0.1 ln s`` whenever L is above ~150); -1 when the space does not search it."""
        if not self.has_attention:
            return -1
        if m is None:
            return len(self.attention_choices) - 1
        try:  # NaN was "nearest" to the first choice, 'x' a TypeError (battery 29a): the one check of an m
            m = check_attention_factor(scalar_value(m), "attention_factor")
        except UserError as exc:
            raise SpaceError(str(exc)) from None
        return int(np.argmin([abs(c - m) for c in self.attention_choices]))

    def gene_bounds(self, critical: int = -1) -> tuple[np.ndarray, np.ndarray]:
        """Per-dimension integer bounds of the free genes (derived dims get their lower bound)."""
        lo = np.full(self.n_dims, self.q_lo, dtype=np.int64)
        hi = np.full(self.n_dims, self.q_hi, dtype=np.int64)
        if self.has_critical:
            lo[critical:] = self.q_crit_lo
        return lo, hi

    def free_dims(self, genome: Genome) -> range:
        """Indices of the λ genes that operators may change."""
        return range(genome.critical if self.has_critical else 0, self.n_dims)

    # -- conversions -----------------------------------------------------------------------------
    def factors(self, genome: Genome) -> np.ndarray:
        """λ as float64 ``[d/2]``."""
        return np.asarray(genome.q, dtype=np.float64) * self.step

    def canonical(
        self, q: np.ndarray | list[float], start_tokens: int = 0, critical: int = -1, attention: int = -1
    ) -> Genome:
        """Snap raw integer-ish values to a valid genome: bounds, monotonicity, derived dims, n̂ set.

        Rounding is a monotone map, so a non-decreasing real vector stays non-decreasing on the grid.
        """
        v = self._raw_genes(q)
        for value, name in ((start_tokens, "start_tokens"), (critical, "critical"), (attention, "attention")):
            if not is_integer(value):  # 2.7 was read as n̂ 2 and True as 1, None was int()'s TypeError (battery 21b)
                raise SpaceError(f"{name} must be an integer, got {shown(value)}")
        if self.has_critical:
            crit = min(self.critical_dims, key=lambda c: (abs(c - critical), c))
        else:
            crit = -1
        lo, hi = self.gene_bounds(crit)
        v = np.clip(np.rint(v), lo, hi).astype(np.int64)  # clipped as floats: a huge value cast first wrapped around
        if self.monotone:
            v = np.maximum.accumulate(v)
        if self.has_critical:
            v[:crit] = self._derived_below(int(v[crit]), crit)
        n_hat = min(self.start_tokens, key=lambda n: (abs(n - int(start_tokens)), n))
        att = int(np.clip(attention, 0, len(self.attention_choices) - 1)) if self.has_attention else -1
        return Genome(tuple(int(x) for x in v), int(n_hat), crit, att)

    def from_factors(
        self, factors: np.ndarray, start_tokens: int = 0, critical: int = -1, attention_factor: float | None = None
    ) -> Genome:
        """The nearest valid genome to real-valued factors (how the seeds enter the space)."""
        from longrope.rope.values import factor_array

        try:
            lam = factor_array(factors, "factors", self.n_dims)  # finite, > 0, one per rotary pair
        except UserError as e:
            raise SpaceError(str(e)) from None
        return self.canonical(lam / self.step, start_tokens, critical, self.attention_index(attention_factor))

    def _raw_genes(self, q: Any) -> np.ndarray:
        """``q`` (real-valued grid indices, one per rotary pair) as finite floats: a NaN or an infinity was cast to
        the int64 minimum and clipped to the lower bound without a word, another length numpy's broadcast error
        (battery 21b)."""
        try:
            v = np.asarray(q, dtype=np.float64)
        except (TypeError, ValueError):
            raise SpaceError(f"q must be {self.n_dims} numbers (grid indices of λ), got {shown(q)}") from None
        if v.shape != (self.n_dims,):
            raise SpaceError(f"q must hold {self.n_dims} values (one per rotary pair of this space), got shape "
                             f"{list(v.shape)}")
        if not np.all(np.isfinite(v)):
            raise SpaceError(f"q must be finite numbers, got {shown(q)}")
        return v

    def _derived_below(self, q_crit: int, crit: int) -> np.ndarray:
        """LongRoPE2: dims below d_rcd follow an NTK-style geometric ramp from 1 to λ_{d_rcd}.

        NTK-aware scaling gives λ_i = κ^(2i/d), geometric in i; matching it at i = d_rcd gives
        λ_i = λ_{d_rcd}^(i/d_rcd). It is monotone, equals 1 at i = 0 and meets the searched part.
        """
        if crit == 0:
            return np.zeros(0, dtype=np.int64)
        lam_c = q_crit * self.step
        i = np.arange(crit, dtype=np.float64)
        lam = lam_c ** (i / crit)
        return np.clip(np.rint(lam / self.step).astype(np.int64), self.q_lo, q_crit)

    # -- checks ----------------------------------------------------------------------------------
    def recorded_genome(self, obj: list) -> Genome:
        """A genome a checkpoint recorded, decoded and checked: a ``ValueError`` when no search of this space
        could have written it (other dimensions, an index past the n̂ or temperature choices, off the grid or
        out of bounds) — it would be scored as a factor set the search never proposes, or fail in the
        evaluator."""
        g = Genome.from_json(obj)
        if not self.contains(g):
            raise ValueError("a genome outside the search space (other dimensions, grid or bounds)")
        return g

    def contains(self, genome: Genome) -> bool:
        """True when the genome is on the grid, in bounds, monotone (if required) and canonical."""
        q = np.asarray(genome.q, dtype=np.int64)
        if q.shape != (self.n_dims,) or genome.start_tokens not in self.start_tokens:
            return False
        if self.has_critical and genome.critical not in self.critical_dims:
            return False
        if not self.has_critical and genome.critical != -1:
            return False
        if self.has_attention and not 0 <= genome.attention < len(self.attention_choices):
            return False
        if not self.has_attention and genome.attention != -1:
            return False
        lo, hi = self.gene_bounds(genome.critical)
        free = slice(genome.critical if self.has_critical else 0, None)
        if np.any(q[free] < lo[free]) or np.any(q > hi) or np.any(q < self.q_lo):
            return False
        if self.monotone and np.any(np.diff(q) < 0):
            return False
        if self.has_critical:
            derived = self._derived_below(int(q[genome.critical]), genome.critical)
            if not np.array_equal(q[: genome.critical], derived):
                return False
        return True

    def to_dict(self) -> dict:
        return {
            "n_dims": self.n_dims,
            "lower": self.lower,
            "upper": self.upper,
            "step": self.step,
            "start_tokens": list(self.start_tokens),
            "monotone": self.monotone,
            "critical_dims": list(self.critical_dims),
            "critical_lower": self.critical_lower,
            "attention_choices": list(self.attention_choices),
        }

    @classmethod
    def from_dict(cls, d: dict) -> SearchSpace:
        return cls(
            n_dims=int(d["n_dims"]),
            lower=float(d["lower"]),
            upper=float(d["upper"]),
            step=float(d["step"]),
            start_tokens=tuple(int(n) for n in d["start_tokens"]),
            monotone=bool(d["monotone"]),
            critical_dims=tuple(int(c) for c in d.get("critical_dims", ())),
            critical_lower=d.get("critical_lower"),
            attention_choices=tuple(float(m) for m in d.get("attention_choices", ())),
        )
