"""Search spaces and seed genomes for each mode, from the model's RoPE facts (pure numpy).

The paper seeds with PI, NTK and YaRN (docs/method.md §4). Ours adds the reference code's YaRN linear
seed, Llama-3.1-style factors, LongRoPE2-shaped factors around the theoretical critical dimension
and a retained-start-token variant of the best-known shapes: the closed-form methods disagree
most where the search has the most to gain, so starting from all of them costs a few evaluations
and removes a region the mutations would otherwise have to find.
"""

from __future__ import annotations

import numpy as np

from longrope.errors import UserError
from longrope.rope.frequencies import MAX_ROTARY_DIM
from longrope.rope.values import factor_array, int_field, real_number, scalar_value
from longrope.search.space import PAPER_START_TOKENS, Genome, SearchSpace

#: Default upper bound of the short-factor search (our choice; docs/method.md §5.4: the paper only says "lower").
SHORT_UPPER_DEFAULT = 2.0


def _baseline(method: str, theta: float, d: int, L: int, Lt: int) -> np.ndarray:
    from longrope.rope import make_baseline

    return make_baseline(method, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt).long_factor


def _yarn_linear(theta: float, d: int, L: int, Lt: int) -> np.ndarray:
    from longrope.rope import yarn_linear_seed

    return yarn_linear_seed(rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt).long_factor


def attention_choices(scale: float, original_length: int, n: int = 6) -> tuple[float, ...]:
    """Temperatures ours may pick: 1 (PI/NTK as published), YaRN's ``0.1 ln s + 1``, LongRoPE's
    ``sqrt(1 + ln s / ln L)`` and evenly spaced values between 1 and the larger (rounded to 1e-3).

    Why search it: the paper fixes m by formula, but which temperature suits a model at a given
    ratio is an empirical question (a weakly position-trained model preferred m = 1 in our runs),
    and one discrete gene costs almost nothing next to d/2 factors.
    """
    from longrope.rope import longrope_attention_factor, yarn_attention_factor

    yarn = yarn_attention_factor(scale)
    lrope = longrope_attention_factor(scale, original_length)
    top = max(yarn, lrope, 1.0)
    values = {1.0, yarn, lrope, *np.linspace(1.0, top, n).tolist()}
    return tuple(sorted({round(v, 3) for v in values}))


def long_space(n_dims: int, scale: float, *, step: float = 0.01, lower: float | None = None,
               upper: float | None = None, start_tokens: tuple[int, ...] = PAPER_START_TOKENS,
               attention: tuple[float, ...] = ()) -> SearchSpace:
    """The paper's space: λ ∈ [1, 1.25·s] on a ``step`` grid, monotone, n̂ from the published set
    (plus, for ours, the attention temperature from ``attention``)."""
    return SearchSpace(
        n_dims=n_dims,
        lower=1.0 if lower is None else lower,
        upper=1.25 * _scale(scale) if upper is None else upper,
        step=step,
        start_tokens=tuple(start_tokens) if isinstance(start_tokens, list) else start_tokens,  # the space checks them
        attention_choices=tuple(attention) if isinstance(attention, list) else attention,
    )


def _scale(scale: float) -> float:
    """The extension ratio s = L'/L of a space's bounds: a finite number >= 1 (a text was a TypeError, battery 21b)."""
    s = real_number(scalar_value(scale), "scale")
    if s < 1.0:
        raise UserError(f"scale must be >= 1 (the target length over the original one), got {s:g}")
    return s


def _ratio(space: SearchSpace, theta: float, d: int, L: int, Lt: int) -> float:
    """``Lt / L`` of a seed function's RoPE facts, each checked first by the one check of its kind, and ``d`` the
    space's: L=0 was a ZeroDivisionError, a text a TypeError, a rotary dim of another model numpy's broadcast
    error (battery 21b)."""
    from longrope.rope.frequencies import check_rope_theta, check_rotary_dim

    check_rope_theta(theta)
    if check_rotary_dim(d) // 2 != space.n_dims:
        raise UserError(f"rotary dim {d} has {d // 2} pairs but the space has {space.n_dims} dimensions; give the "
                        "rotary dim the space was built for")
    return int_field(scalar_value(Lt), "target length", 1) / int_field(scalar_value(L), "original length", 1)


def longrope2_space(n_dims: int, scale: float, critical_dims: tuple[int, ...], *, step: float = 0.01,
                    upper: float | None = None) -> SearchSpace:
    """LongRoPE2 (docs/method.md §6): λ_i ∈ [s, 2s] monotone for i ≥ d_rcd, NTK-style ramp below; d_rcd searched; n̂ = 0."""
    return SearchSpace(
        n_dims=n_dims,
        lower=1.0,
        upper=2.0 * _scale(scale) if upper is None else upper,
        step=step,
        start_tokens=(0,),
        critical_dims=tuple(critical_dims) if isinstance(critical_dims, list) else critical_dims,
        critical_lower=_scale(scale),
    )


def critical_window(theta: float, d: int, L: int, below: int = 6, above: int = 1) -> tuple[int, ...]:
    """Candidate d_rcd values: from ``d_tcd − below`` to ``d_tcd + above − 1`` (LongRoPE2 finds the
    real critical dimension below the theoretical one), clamped to [1, d/2 − 1]."""
    from longrope.rope import theoretical_critical_dim

    tcd = theoretical_critical_dim(theta, d, L)
    below, above = (int_field(scalar_value(v), n, 0, MAX_ROTARY_DIM) for v, n in ((below, "below"), (above, "above")))
    lo = max(1, tcd - below)
    hi = min(d // 2 - 1, tcd + above - 1)
    if hi < lo:
        lo = hi = min(max(tcd, 1), d // 2 - 1)
    return tuple(range(lo, hi + 1))


def paper_seeds(space: SearchSpace, theta: float, d: int, L: int, Lt: int) -> list[Genome]:
    """PI, NTK and YaRN with n̂ = 0, snapped into the space (the published initialisation)."""
    _ratio(space, theta, d, L, Lt)
    return [space.from_factors(_baseline(m, theta, d, L, Lt), 0) for m in ("pi", "ntk", "yarn")]


def extended_seeds(space: SearchSpace, theta: float, d: int, L: int, Lt: int) -> list[Genome]:
    """The paper's seeds plus YaRN-linear, llama3, LongRoPE2 shapes, n̂ variants and — when the
    space searches the temperature — each shape with its own method's temperature, and the paper's three shapes
    again under the space's largest temperature choice (deduplicated). The shapes with no temperature of their own
    (YaRN-linear, LongRoPE2's) take that largest choice too: ``attention_factor=None`` reads as it, which is YaRN's
    ``1 + 0.1 ln s`` whenever L is above ~150, above LongRoPE's default ``sqrt(1 + ln s / ln L)``. Measured:
    seeding those under LongRoPE's default instead (proposed by battery 31d) made the demo's searched set answer
    26 of 40 pass keys rather than 36 at the same perplexity (books 0.866x YaRN either way), so the hotter start
    stays."""
    from longrope.rope import longrope2_factors, make_baseline, theoretical_critical_dim

    s = _ratio(space, theta, d, L, Lt)
    sets = [make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
            for m in ("pi", "ntk", "yarn", "llama3")]
    shapes = [(fs.long_factor, fs.resolved_attention_factor()) for fs in sets[:3]]
    shapes.append((_yarn_linear(theta, d, L, Lt), None))
    shapes.append((sets[3].long_factor, sets[3].resolved_attention_factor()))
    tcd = theoretical_critical_dim(theta, d, L)
    for k in sorted({max(1, min(d // 2 - 1, tcd + o)) for o in (-2, -1)}):
        shapes.append((longrope2_factors(theta, d, L, Lt, k, high_factors=s).long_factor, None))
    out: list[Genome] = []

    def add(g: Genome) -> None:
        if g not in out:
            out.append(g)

    for lam, m in shapes:
        add(space.from_factors(lam, 0, attention_factor=m))
    if space.has_attention:  # the paper's shapes again under the largest temperature (None: see the docstring)
        for lam, _ in shapes[:3]:
            add(space.from_factors(lam, 0, attention_factor=None))
    # n̂ matters little for the loss of most tokens but is free to try on the smooth shapes.
    if len(space.start_tokens) > 1:
        for lam, m in shapes[2:4]:
            add(space.from_factors(lam, 4, attention_factor=m))
    return out


def progressive_seeds(space: SearchSpace, theta: float, d: int, L: int, L0: int, Lt: int,
                      base_long: np.ndarray) -> list[Genome]:
    """Progressive search (λ' on a model fine-tuned with ``base_long`` for L0): the extended seeds
    of the step L0 → Lt, then the closed forms for the whole extension L → Lt re-expressed
    relative to the fine-tuned factors (λ' = λ_cf / λ_base, projected into the space) with their
    own temperatures — so the search starts from what YaRN or NTK at Lt would install."""
    from longrope.rope import make_baseline

    _ratio(space, theta, d, L, L0)
    out = extended_seeds(space, theta, d, L0, Lt)
    base_long = factor_array(base_long, "base_long", space.n_dims)
    for m in ("yarn", "ntk", "pi", "llama3"):
        fs = make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
        g = space.from_factors(fs.long_factor / base_long, 0, attention_factor=fs.resolved_attention_factor())
        if g not in out:
            out.append(g)
    return out


def longrope2_seeds(space: SearchSpace, theta: float, d: int, L: int, Lt: int) -> list[Genome]:
    """For each candidate d_rcd: the searched block at s (LongRoPE2's start), and YaRN/NTK shapes
    lifted into [s, 2s]."""
    s = _ratio(space, theta, d, L, Lt)
    out: list[Genome] = []
    others = [_baseline(m, theta, d, L, Lt) for m in ("yarn", "ntk")]
    for crit in space.critical_dims:
        for lam in [np.full(space.n_dims, s)] + [np.clip(o * 1.25, s, 2 * s) for o in others]:
            g = space.from_factors(lam, 0, crit)
            if g not in out:
                out.append(g)
    return out


def short_seeds(space: SearchSpace, base_short: np.ndarray | None) -> list[Genome]:
    """Short-factor recovery: the original RoPE (all ones), the base file's short factors, and
    gentle geometric ramps from 1 to a few end values (small-scale NTK shapes)."""
    n = space.n_dims
    i = np.arange(n, dtype=np.float64)
    shapes = [np.ones(n)]
    if base_short is not None:
        shapes.append(np.asarray(base_short, dtype=np.float64))
    for end in (1.1, 1.25, 1.5, space.upper):
        shapes.append(end ** (i / max(n - 1, 1)))
    n_hat = space.start_tokens[0]
    out: list[Genome] = []
    for lam in shapes:
        g = space.from_factors(lam, n_hat)
        if g not in out:
            out.append(g)
    return out
