"""LongRoPE2's critical dimension and its factor shape (docs/method.md §6, arXiv 2502.20082).

Convention: dimensions are indexed by rotary PAIR ``i = 0 … d/2−1`` (the index of ``θ_i`` and of
``λ_i``), not by channel. Pair ``i`` has period ``2π/θ_i = 2π·b^(2i/d)``; it completes a full
turn within the pre-training length L iff ``2π·b^(2i/d) ≤ L`` ⇔ ``i ≤ (d/2)·log_b(L/2π)``. The
theoretical critical dimension

    d_tcd = ceil((d/2) · log_b(L / 2π))

is therefore the first pair whose period exceeds L: pairs ``i ≥ d_tcd`` never saw a full turn in
training and must be interpolated (``λ ≥ s``); pairs below may extrapolate. The LongRoPE2 paper
finds the real critical dimension ``d_rcd`` below ``d_tcd`` (higher pairs are under-trained) and
searches it; its development code starts from ``d_tcd − 1`` (``offset=-1`` here).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from longrope.errors import UserError
from longrope.rope.factors import FactorSet
from longrope.rope.frequencies import MAX_ROTARY_DIM, check_rope_theta, check_rotary_dim
from longrope.rope.values import factor_array, int_field, real_number, scalar_value

__all__ = ["theoretical_critical_dim", "longrope2_factors"]


def theoretical_critical_dim(
    rope_theta: float, rotary_dim: int, original_length: int, offset: int = 0
) -> int:
    """``ceil((d/2)·log_b(L/2π)) + offset``, clamped to ``[0, d/2]`` (a pair index; see module doc)."""
    b = check_rope_theta(rope_theta)
    d = check_rotary_dim(rotary_dim)
    L = int_field(original_length, "original_length", 1)
    if b <= 1:
        raise UserError(f"rope_theta must be > 1 for a critical dimension, got {b}")
    raw = (d / 2) * math.log(L / (2 * math.pi)) / math.log(b)
    offset = int_field(scalar_value(offset), "offset", -MAX_ROTARY_DIM, MAX_ROTARY_DIM)  # one integer rule: 2.5
    return int(min(max(math.ceil(raw) + offset, 0), d // 2))  # was read as 2, True as 1, None int()'s TypeError


def longrope2_factors(
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    critical_dim: int,
    high_factors: np.ndarray | list[float] | float | None = None,
) -> FactorSet:
    """LongRoPE2-shaped factors: NTK-style below ``critical_dim``, given ``λ ≥ s`` from it on.

    For ``i ≥ d_rcd``: ``λ_i = high_factors[i − d_rcd]`` (a scalar or ``None`` = s for all); they
    must be ≥ s and non-decreasing (the paper searches them in ``[s, 2s]``).
    For ``i < d_rcd``: ``λ_i = λ_{d_rcd}^(i/d_rcd)`` — a geometric ramp from 1, which is exactly an
    NTK base change ``b' = b·λ_{d_rcd}^(d/(2·d_rcd))`` restricted to those pairs, chosen so the curve
    meets the interpolated block continuously (monotone overall). With ``d_rcd = d/2`` the anchor
    is s. Attention factor left to the LongRoPE default (``None``).
    """
    b = check_rope_theta(rope_theta)
    d = check_rotary_dim(rotary_dim)
    L = int_field(original_length, "original_length", 1)
    Lt = int_field(target_length, "target_length", 1)
    half = d // 2
    k = int_field(critical_dim, "critical_dim", 0)
    if k > half:
        raise UserError(f"critical_dim must be in [0, {half}] (a rotary pair index), got {k}")
    s = Lt / L
    n_high = half - k
    value = scalar_value(high_factors)  # a 0-d tensor or array is the scalar it holds
    if value is None:
        high = np.full(n_high, s)
    elif isinstance(value, numbers.Real) and not isinstance(value, bool):
        high = np.full(n_high, real_number(value, "high_factors"))
    else:
        # the one reader of a factor list (text, None, a tensor requiring grad, 10**400: one line each; they were
        # numpy's ValueError/TypeError, OverflowError and torch's RuntimeError tracebacks, battery 29a)
        high = np.empty(0) if n_high == 0 and _is_empty(value) else factor_array(value, "high_factors")
        if high.shape != (n_high,):
            raise UserError(
                f"high_factors must have {n_high} values (d/2 − critical_dim), got shape {list(high.shape)}"
            )
    if n_high:
        if np.any(high < s * (1 - 1e-12)):
            raise UserError(f"high_factors must all be >= s = {s:g} (LongRoPE2 interpolates these pairs)")
        if np.any(np.diff(high) < 0):
            raise UserError("high_factors must be non-decreasing in the pair index")
    anchor = float(high[0]) if n_high else s
    i = np.arange(k, dtype=np.float64)
    low = anchor ** (i / k) if k else np.empty(0)
    lam = np.concatenate([low, high])
    return FactorSet(
        long_factor=lam,
        original_max_position_embeddings=L,
        max_position_embeddings=Lt,
        rope_theta=b,
        method="longrope2",
        provenance={"method": "longrope2", "options": {"critical_dim": k, "anchor": anchor}},
    )


def _is_empty(value: object) -> bool:
    """Whether ``value`` is an empty sequence (the high factors of ``critical_dim = d/2``: there are none)."""
    try:
        return len(value) == 0  # type: ignore[arg-type]
    except TypeError:
        return False
