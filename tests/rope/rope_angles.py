"""Test oracle: rotary angles with rescale factors, retained start tokens and the attention temperature,
computed in float64 numpy (the patch's torch tables are checked against it; nothing in the package uses it).

docs/method.md §2: position ``p`` in pair ``i`` gets angle ``p·θ_i`` when ``p < n̂`` (retained start
tokens keep their trained geometry) and ``p·θ_i/λ_i`` otherwise.

Precision: everything is float64. At p = 2M and θ_0 = 1 the angle is 2e6 rad; float64 holds it to
~2e-10 rad, float32 only to ~0.125 rad. Callers that must hand angles to float32 code (a torch
model) should call :func:`reduce_angles` first — reducing modulo 2π in float64 keeps the fp32
value within ~4e-7 rad of the truth — or use :func:`cos_sin`, which takes cos/sin in float64 and
casts only the results.
"""

from __future__ import annotations

import math

import numpy as np

from longrope.errors import UserError

__all__ = ["rope_angles", "reduce_angles", "cos_sin", "apply_rotary"]

_TWO_PI = 2.0 * math.pi
_EXACT_INT = 2**53  # float64 holds every integer position below this exactly


def _positions(positions: np.ndarray | list[int] | int) -> np.ndarray:
    p = np.asarray(positions)
    if p.dtype.kind in "iu":
        if p.size and (int(p.max()) >= _EXACT_INT or int(p.min()) < 0):
            raise UserError("positions must be in [0, 2**53) to be exact in float64")
        return p.astype(np.float64)
    if p.dtype.kind == "f":
        p = p.astype(np.float64)
        if p.size and not np.all(np.isfinite(p)):
            raise UserError("positions must be finite")
        return p
    raise UserError(f"positions must be integers (or floats), got dtype {p.dtype}")


def rope_angles(
    positions: np.ndarray | list[int] | int,
    inv_freq: np.ndarray,
    factors: np.ndarray | None = None,
    start_tokens: int = 0,
) -> np.ndarray:
    """Float64 angles ``[*positions.shape, d/2]``: ``p·θ_i`` for ``p < n̂``, ``p·θ_i/λ_i`` otherwise.

    ``inv_freq`` are the original ``θ_i`` (see :func:`longrope.rope.inv_freq`); ``factors`` the
    ``λ_i`` (``None`` = ones). Positions may be any shape (e.g. ``[batch, seq]`` cache positions);
    the n̂ rule is applied per element, so generation with a KV cache gets the same angles as a
    full forward pass.
    """
    p = _positions(positions)[..., None]  # [..., 1]
    theta = np.asarray(inv_freq, dtype=np.float64)  # [d/2]
    if theta.ndim != 1:
        raise UserError(f"inv_freq must be 1-D, got shape {list(theta.shape)}")
    if factors is None:
        return p * theta
    lam = np.asarray(factors, dtype=np.float64)
    if lam.shape != theta.shape:
        raise UserError(
            f"factors have shape {list(lam.shape)}, inv_freq {list(theta.shape)}; they must match"
        )
    if isinstance(start_tokens, bool) or int(start_tokens) != start_tokens or start_tokens < 0:
        raise UserError(f"start_tokens must be an integer >= 0, got {start_tokens!r}")
    scaled = p * (theta / lam)  # [..., d/2]
    if start_tokens > 0:
        scaled = np.where(p < start_tokens, p * theta, scaled)
    return scaled


def reduce_angles(angles: np.ndarray) -> np.ndarray:
    """Angles reduced modulo 2π into ``[−π, π)`` in float64, safe to cast to float32 afterwards."""
    a = np.asarray(angles, dtype=np.float64)
    return np.remainder(a + math.pi, _TWO_PI) - math.pi


def cos_sin(
    positions: np.ndarray | list[int] | int,
    inv_freq: np.ndarray,
    factors: np.ndarray | None = None,
    start_tokens: int = 0,
    attention_factor: float = 1.0,
    dtype: np.dtype | type = np.float32,
    *,
    duplicate: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """``(m·cos, m·sin)`` of :func:`rope_angles`, computed in float64 and cast to ``dtype`` last.

    The temperature ``m`` multiplies EVERY row, retained start-token rows included (the reference
    code left those rows unscaled, so the sink's logits changed scale relative to the rest).
    ``duplicate=True`` returns ``[..., d]`` tables laid out like transformers' ``cat(freqs, freqs)``
    for the rotate-half convention; the default is ``[..., d/2]``.
    """
    m = float(attention_factor)
    if not math.isfinite(m) or m <= 0:
        raise UserError(f"attention_factor must be a finite number > 0, got {attention_factor!r}")
    angles = rope_angles(positions, inv_freq, factors, start_tokens)
    if duplicate:
        angles = np.concatenate([angles, angles], axis=-1)
    return (m * np.cos(angles)).astype(dtype), (m * np.sin(angles)).astype(dtype)


def apply_rotary(x: np.ndarray, cos: np.ndarray, sin: np.ndarray) -> np.ndarray:
    """Rotate ``x [..., d]`` (rotate-half layout: pair i = channels i and i + d/2) by half tables.

    ``cos``/``sin`` are ``[..., d/2]`` (e.g. from :func:`cos_sin` without ``duplicate``) and
    broadcast against ``x``'s leading dimensions. Channels beyond d (partial rotary) are not
    handled here; pass only the rotated slice.
    """
    half = cos.shape[-1]
    if x.shape[-1] != 2 * half:
        raise ValueError(f"x has {x.shape[-1]} channels, the tables rotate {2 * half}")
    x1, x2 = x[..., :half], x[..., half:]
    return np.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)
