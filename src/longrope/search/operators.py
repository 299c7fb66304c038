"""Variation operators. Every operator returns a genome of the space (on the grid, in bounds,
monotone when the space is) or ``None`` when it produced an infeasible child that the caller
rejects (the paper's crossover).

Two families:

- the paper's (LongRoPE Algorithm 1): gene-wise redraw between the neighbours, uniform crossover
  that keeps only monotone children;
- ours: perturbations in log λ of a smooth bump (a few neighbouring dimensions move together, as
  the good factor curves are smooth in i), projected back onto the monotone cone by isotonic
  regression instead of being rejected; blend crossover (a convex combination of two monotone
  curves is monotone, so it never needs rejection); n̂ and d_rcd move to neighbouring values.
"""

from __future__ import annotations

import numpy as np

from longrope.errors import UserError
from longrope.rope.values import real_number, scalar_value
from longrope.search.space import Genome, SearchSpace, isotonic_non_decreasing


def _share(value: float, name: str, hi: float = 1.0) -> float:
    """A probability (``hi`` 1) or a mutation scale: a finite number in ``[0, hi]``, checked by the one number
    check (rope.values): a text was '<' between float and str, sigma=-1 numpy's "scale < 0" and sigma=inf a
    child of NaN factors (battery 21b)."""
    v = real_number(scalar_value(value), name)
    if not 0.0 <= v <= hi:
        raise UserError(f"{name} must be a number in [0, {hi:g}], got {v:g}")
    return v


# -- the paper's operators ------------------------------------------------------------------------
def paper_mutation(space: SearchSpace, parent: Genome, rng: np.random.Generator, prob: float) -> Genome:
    """Each free gene with probability ``prob`` is redrawn uniformly on the grid between its neighbours.

    Genes are visited in increasing i and the lower neighbour is the already-mutated one, so the
    child is monotone by construction; the first/last gene are bounded by the space's bounds.
    n̂ (and d_rcd) are redrawn uniformly from their sets with the same probability.
    """
    prob = _share(prob, "prob")
    q = np.asarray(parent.q, dtype=np.int64).copy()
    lo, hi = space.gene_bounds(parent.critical)
    free = space.free_dims(parent)
    for i in free:
        if rng.random() < prob:
            a, b = int(lo[i]), int(hi[i])
            if space.monotone:
                if i > free.start:
                    a = max(a, int(q[i - 1]))
                if i + 1 < space.n_dims:
                    b = min(b, int(q[i + 1]))
            q[i] = int(rng.integers(a, b + 1))
    n_hat = parent.start_tokens
    if len(space.start_tokens) > 1 and rng.random() < prob:
        n_hat = int(space.start_tokens[int(rng.integers(len(space.start_tokens)))])
    crit = parent.critical
    if space.has_critical and rng.random() < prob:
        crit = int(space.critical_dims[int(rng.integers(len(space.critical_dims)))])
    att = parent.attention
    if space.has_attention and rng.random() < prob:
        att = int(rng.integers(len(space.attention_choices)))
    return space.canonical(q, n_hat, crit, att)


def paper_crossover(space: SearchSpace, a: Genome, b: Genome, rng: np.random.Generator) -> Genome | None:
    """Uniform crossover: each gene from either parent with probability 1/2; infeasible -> None."""
    mask = rng.random(space.n_dims) < 0.5
    q = np.where(mask, np.asarray(a.q), np.asarray(b.q)).astype(np.int64)
    n_hat = a.start_tokens if rng.random() < 0.5 else b.start_tokens
    crit = a.critical if rng.random() < 0.5 else b.critical
    att = a.attention if rng.random() < 0.5 else b.attention
    child = Genome(tuple(int(x) for x in q), int(n_hat), int(crit), int(att))
    return child if space.contains(child) else None


# -- our operators --------------------------------------------------------------------------------
#: the largest mutation scale (log units) smooth_mutation takes: e^10 moves a factor 22,000-fold, far past any
#: search space's bounds (StrategyConfig's sigma bounds are 0.004-0.5); a larger one overflowed exp to inf
MAX_SIGMA = 10.0

def _neighbour(values: tuple[int, ...], current: int, rng: np.random.Generator, reach: int) -> int:
    """Move ``current`` by 1..reach positions in the sorted ``values`` (clamped at the ends)."""
    idx = values.index(current) if current in values else int(np.searchsorted(values, current))
    shift = int(rng.integers(1, reach + 1)) * (1 if rng.random() < 0.5 else -1)
    return int(values[int(np.clip(idx + shift, 0, len(values) - 1))])


def smooth_mutation(
    space: SearchSpace,
    parent: Genome,
    rng: np.random.Generator,
    sigma: float,
    *,
    discrete_prob: float = 0.2,
) -> Genome:
    """Add a Gaussian bump of random centre, width and amplitude ~ N(0, sigma) to log λ.

    sigma is in log units (0.05 ≈ ±5 % on the affected factors) so one scale fits every ratio s.
    A small per-gene jitter (sigma/4) lets single dimensions move too. The result is projected onto
    the monotone cone (isotonic regression), clipped and snapped to the grid by ``canonical``.
    n̂, d_rcd and the attention temperature move to a neighbouring value with probability
    ``discrete_prob`` each.
    """
    sigma, discrete_prob = _share(sigma, "sigma", MAX_SIGMA), _share(discrete_prob, "discrete_prob")
    free = space.free_dims(parent)
    q = np.asarray(parent.q, dtype=np.float64)
    x = np.log(q * space.step)
    i = np.arange(space.n_dims, dtype=np.float64)
    n_free = len(free)
    centre = free.start + rng.random() * max(n_free - 1, 1)
    width = np.exp(rng.uniform(np.log(0.5), np.log(max(n_free, 1.0))))
    amp = rng.normal(0.0, sigma)
    bump = np.exp(-0.5 * ((i - centre) / width) ** 2)
    jitter = rng.normal(0.0, sigma / 4.0, size=space.n_dims)
    x = x + amp * bump + jitter
    x[: free.start] = np.log(q[: free.start] * space.step)  # derived dims are recomputed anyway
    v = np.exp(x) / space.step
    if space.monotone:
        v[free.start :] = isotonic_non_decreasing(v[free.start :])
    n_hat = parent.start_tokens
    if len(space.start_tokens) > 1 and rng.random() < discrete_prob:
        n_hat = _neighbour(space.start_tokens, n_hat, rng, reach=2)
    crit = parent.critical
    if space.has_critical and rng.random() < discrete_prob:
        crit = _neighbour(space.critical_dims, crit, rng, reach=2)
    att = parent.attention
    if space.has_attention and rng.random() < discrete_prob:
        att = _neighbour(tuple(range(len(space.attention_choices))), att, rng, reach=1)
    return space.canonical(v, n_hat, crit, att)


def blend_crossover(space: SearchSpace, a: Genome, b: Genome, rng: np.random.Generator) -> Genome:
    """Geometric blend ``λ = λ_a^α · λ_b^(1−α)``, α ~ U(0, 1); n̂ and d_rcd from either parent.

    log λ of the child is a convex combination of two non-decreasing curves, hence non-decreasing
    and inside the (convex) box: no rejection needed.
    """
    alpha = rng.random()
    xa = np.log(np.asarray(a.q, dtype=np.float64))
    xb = np.log(np.asarray(b.q, dtype=np.float64))
    v = np.exp(alpha * xa + (1.0 - alpha) * xb)
    n_hat = a.start_tokens if rng.random() < 0.5 else b.start_tokens
    crit = a.critical if rng.random() < 0.5 else b.critical
    att = a.attention if rng.random() < 0.5 else b.attention
    return space.canonical(v, n_hat, crit, att)
