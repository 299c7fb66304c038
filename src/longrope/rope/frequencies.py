"""Rotary frequencies: the ``inv_freq`` buffer of Hugging Face models, in float64.

Notation (docs/method.md §1): ``d`` is the rotary dimension, ``i = 0 … d/2−1`` the pair index and
``θ_i = b^(−2i/d)`` the angular frequency of pair ``i`` for rope base ``b`` (``rope_theta``).
Everything here is float64: the rescaled angles ``p·θ_i/λ_i`` are needed to ~1e-9 rad at 2M
positions, and a float32 ``θ_i`` alone is off by ~1e-7 relative, i.e. ~0.1 rad there.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from longrope.errors import UserError
from longrope.rope.values import short_repr

__all__ = ["MAX_ROTARY_DIM", "inv_freq", "rotary_dim", "check_rotary_dim", "check_rope_theta"]


#: Largest rotary dim accepted: 64x the largest head of a released RoPE model (256, Gemma); a larger one is a
#: typo whose arrays (``inv_freq`` of d/2 values) would exhaust memory (10**12 was numpy's "Maximum allowed size
#: exceeded", battery 19).
MAX_ROTARY_DIM = 1 << 14


def check_rotary_dim(rotary_dim: int, *, name: str = "rotary_dim") -> int:
    """Return ``rotary_dim`` as an int after checking it is a positive even integer up to :data:`MAX_ROTARY_DIM`."""
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, numbers.Integral):
        raise UserError(f"{name} must be a positive even integer, got {short_repr(rotary_dim)}")
    d = int(rotary_dim)
    if d < 2 or d % 2 or d > MAX_ROTARY_DIM:
        raise UserError(f"{name} must be a positive even integer <= {MAX_ROTARY_DIM:,}, got {short_repr(d)}")
    return d


def check_rope_theta(rope_theta: float, *, name: str = "rope_theta") -> float:
    """Return ``rope_theta`` as a float after checking it is finite and > 0 (an integer too large for a float is
    refused like inf: it was an OverflowError)."""
    if isinstance(rope_theta, bool) or not isinstance(rope_theta, numbers.Real):
        raise UserError(f"{name} must be a positive number, got {short_repr(rope_theta)}")
    try:
        b = float(rope_theta)
    except (OverflowError, ValueError):
        b = math.inf
    if not math.isfinite(b) or b <= 0:
        raise UserError(f"{name} must be a finite number > 0, got {short_repr(rope_theta) if b == math.inf else b}")
    return b


def rotary_dim(head_dim: int, partial_rotary_factor: float = 1.0) -> int:
    """Number of rotated channels per head: ``int(head_dim · partial_rotary_factor)``.

    Truncation with ``int`` matches transformers (``dim = int(head_dim * partial_rotary_factor)``),
    so a factor file validated here has the same length as the model's ``inv_freq`` buffer.
    """
    if isinstance(head_dim, bool) or not isinstance(head_dim, numbers.Integral) or not 2 <= head_dim <= MAX_ROTARY_DIM:
        # (bounded like the rotary dim: 10**5000 was an OverflowError traceback in the product below)
        raise UserError(f"head_dim must be an integer from 2 to {MAX_ROTARY_DIM:,}, got {short_repr(head_dim)}")
    try:
        factor = math.nan if isinstance(partial_rotary_factor, bool) or not isinstance(
            partial_rotary_factor, numbers.Real) else float(partial_rotary_factor)
    except (OverflowError, ValueError):  # an integer too large for a float
        factor = math.nan
    if not 0.0 < factor <= 1.0:
        raise UserError(f"partial_rotary_factor must be in (0, 1], got {short_repr(partial_rotary_factor)}")
    d = int(int(head_dim) * factor)
    if d < 2 or d % 2:
        raise UserError(
            f"rotary dim int(head_dim {head_dim} * partial_rotary_factor {partial_rotary_factor}) = {d} "
            "is not a positive even number"
        )
    return d


def inv_freq(rope_theta: float, rotary_dim: int) -> np.ndarray:
    """``θ_i = 1 / b^(2i/d)`` for ``i = 0 … d/2−1``, float64, shape ``[d/2]``.

    Computed as ``1 / b**(2i/d)`` like transformers (rather than ``b**(−2i/d)``) so the float64
    values round the same way as the reference formula; the difference is at most 1 ulp anyway.
    """
    b = check_rope_theta(rope_theta)
    d = check_rotary_dim(rotary_dim)
    exponents = np.arange(0, d, 2, dtype=np.float64) / d  # [d/2]
    return 1.0 / (b**exponents)
