"""Closed-form baselines (docs/method.md §3), each a pure function registered by name.

Every function has the same keyword-only signature, like transformers' ``ROPE_INIT_FUNCTIONS``::

    fn(*, rope_theta, rotary_dim, original_length, target_length, **options) -> FactorSet

and expresses its method as per-pair factors ``λ_i = θ_i / θ'_i``, so a baseline is applied by
exactly the same code path as a searched LongRoPE result. The method name and every resolved
option are recorded in ``provenance``. The baselines are also the seeds of the search.

YaRN and llama3 follow transformers 5.24's ``_compute_yarn_parameters`` /
``_compute_llama3_parameters`` step for step (in float64 instead of float32); the tests compare
the resulting ``inv_freq`` with transformers' own.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.options import check_flag
from longrope.rope.attention import check_attention_factor, yarn_attention_factor
from longrope.rope.factors import APPLIED_AS_MADE, FactorSet, as_made, follows_length  # noqa: F401 - re-exported
from longrope.rope.frequencies import check_rope_theta, check_rotary_dim, inv_freq
from longrope.rope.values import int_field, real_number, scalar_value, short_repr

__all__ = [
    "BASELINES",
    "make_baseline",
    "pi_factors",
    "ntk_factors",
    "dynamic_ntk_factors",
    "yarn_factors",
    "llama3_factors",
    "yarn_correction_range",
    "yarn_extrapolation_mask",
    "yarn_linear_seed",
    "baseline_options",
    "at_length",
    "as_made",
    "follows_length",
]

BaselineFn = Callable[..., FactorSet]


def _common(
    rope_theta: float, rotary_dim: int, original_length: int, target_length: int
) -> tuple[float, int, int, int]:
    b = check_rope_theta(rope_theta)
    d = check_rotary_dim(rotary_dim)
    L = int_field(original_length, "original_length", 1)
    Lt = int_field(target_length, "target_length", 1)
    if Lt < L:
        raise UserError(
            f"target_length {Lt} is shorter than original_length {L}; a baseline extends the context"
        )
    return b, d, L, Lt


def _scale_factor(value: Any) -> float:
    """A method's scale factor s (yarn, llama3, dynamic NTK): at least 1, as transformers requires of it; below 1
    it shrank the context (λ = 0.5 on the low frequencies) in a file that says it extends it."""
    s = _positive(value, "factor")
    if s < 1:
        raise UserError(f"factor must be >= 1 (a scale factor extends the context; below 1 it shrinks it), got {s:g}")
    return s


def _positive(value: Any, name: str) -> float:
    """``value`` as a finite float > 0, or one line naming ``name`` (an integer too large for a float, beta_fast=10**400,
    was math.isfinite's OverflowError traceback)."""
    try:
        v = real_number(value, name)
    except UserError:
        v = math.nan
    if not v > 0:
        raise UserError(f"{name} must be a finite number > 0, got {short_repr(value)}")
    return v


def _check_mscale_pair(mscale: Any, mscale_all_dim: Any, attention_factor: Any) -> None:
    """YaRN's DeepSeek-style temperature needs both mscale values, and an explicit attention_factor overrides
    them (transformers' rules): one alone, or either beside attention_factor, would be silently unused."""
    given = [name for name, v in (("mscale", mscale), ("mscale_all_dim", mscale_all_dim)) if v is not None]
    if len(given) == 1:
        raise UserError(f"{given[0]} alone is unused: the DeepSeek-style attention temperature is "
                        "get_mscale(s, mscale) / get_mscale(s, mscale_all_dim); give both, or neither for "
                        "YaRN's 0.1·ln s + 1")
    if given and attention_factor is not None:
        raise UserError("attention_factor overrides mscale and mscale_all_dim; give one or the other")


def _result(
    method: str, lam: np.ndarray, b: float, L: int, Lt: int, attention: float | None, options: dict[str, Any]
) -> FactorSet:
    # the options as the Python numbers they are: a numpy one (beta_fast=np.int64(32)) made a set that could not be
    # saved, "provenance is not JSON-serialisable" about a provenance the caller never wrote
    options = {k: scalar_value(v) for k, v in options.items()}
    return FactorSet(
        long_factor=lam,
        attention_factor=attention,
        original_max_position_embeddings=L,
        max_position_embeddings=Lt,
        rope_theta=b,
        method=method,
        provenance={"method": method, "options": options},
    )


def pi_factors(*, rope_theta: float, rotary_dim: int, original_length: int, target_length: int) -> FactorSet:
    """Position interpolation: ``λ_i = s`` for every pair; attention 1."""
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    s = Lt / L
    return _result("pi", np.full(d // 2, s), b, L, Lt, 1.0, {})


def ntk_factors(*, rope_theta: float, rotary_dim: int, original_length: int, target_length: int) -> FactorSet:
    """NTK-aware: base ``b' = b·s^(d/(d−2))`` ⇔ ``λ_i = (b'/b)^(2i/d) = s^(2i/(d−2))``; attention 1.

    Written as ``s^(2i/(d−2))`` so ``λ_0 = 1`` and ``λ_{d/2−1} = s`` hold exactly.
    """
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    if d < 4:
        raise UserError(f"NTK scaling needs rotary_dim >= 4, got {d}")
    s = Lt / L
    i = np.arange(d // 2, dtype=np.float64)
    return _result("ntk", s ** (2.0 * i / (d - 2)), b, L, Lt, 1.0, {"base": b * s ** (d / (d - 2))})


def dynamic_ntk_factors(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    length: int | None = None,
    factor: float | None = None,
) -> FactorSet:
    """Dynamic NTK at current length ℓ: ``b' = b·((s·ℓ/L) − (s−1))^(d/(d−2))``; attention 1.

    ``length`` (ℓ) defaults to the target length; ℓ ≤ L gives the identity, as in transformers
    (which clamps ``seq_len`` to at least L). ``factor`` (s) defaults to L'/L. Note that at
    ℓ = L' the effective ratio is ``s² − s + 1``, not s: that is the method as transformers defines it.
    """
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    if d < 4:
        raise UserError(f"dynamic NTK scaling needs rotary_dim >= 4, got {d}")
    s = Lt / L if factor is None else _scale_factor(factor)
    ell = Lt if length is None else int_field(length, "length", 1)
    ell_eff = max(ell, L)
    ratio = s * ell_eff / L - (s - 1.0)  # b'/b = ratio^(d/(d−2))
    i = np.arange(d // 2, dtype=np.float64)
    lam = ratio ** (2.0 * i / (d - 2))
    options = {"length": ell, "factor": s, "effective_ratio": ratio, "base": b * ratio ** (d / (d - 2))}
    return _result("dynamic-ntk", lam, b, L, Lt, 1.0, options)


def at_length(factor_set: Any, length: int) -> Any:
    """The set to apply to a sequence of ``length`` tokens: a dynamic NTK set recomputed for ℓ = ``length`` (its
    ratio ``s·ℓ/L − (s − 1)`` follows the current length, docs/method.md §3, as transformers' ``dynamic`` does at
    every forward), any other set (and None, the model's own RoPE) as it is. A dynamic NTK file is made for one ℓ
    (its target length unless ``--length`` said): applied as it was at every length of an evaluation, its row at
    2x of an 8x file was NTK with ratio 57 where dynamic NTK's is 9 (perplexity 93.7 against transformers' 84.7 on
    the embedded model; battery 27b). A set whose factors are not the closed form its provenance names (edited by
    hand) is left as it is."""
    if not follows_length(factor_set):
        return factor_set
    options = factor_set.provenance["options"]
    common = dict(rope_theta=factor_set.rope_theta, rotary_dim=factor_set.rotary_dim,
                  original_length=factor_set.original_max_position_embeddings,
                  target_length=factor_set.max_position_embeddings, factor=options.get("factor"))
    try:
        made = dynamic_ntk_factors(length=options.get("length"), **common)
        now = dynamic_ntk_factors(length=length, **common)
    except UserError:  # options that are not the closed form's (a hand-written provenance)
        return factor_set
    if not np.allclose(made.long_factor, factor_set.long_factor, rtol=1e-12, atol=0.0):
        return factor_set
    return factor_set.with_(long_factor=now.long_factor, provenance={**factor_set.provenance, **now.provenance})


def yarn_correction_range(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    beta_fast: float = 32,
    beta_slow: float = 1,
    truncate: bool = True,
) -> tuple[float, float]:
    """YaRN's ``(low, high)`` pair-index range: ``dim(r) = d·ln(L/(2πr)) / (2 ln b)``.

    ``low = floor(dim(β_fast))``, ``high = ceil(dim(β_slow))`` when ``truncate`` (transformers'
    default), then clamped to ``[0, d−1]`` — transformers clamps to d−1, not d/2−1; kept for parity.
    """
    b = check_rope_theta(rope_theta)
    d = check_rotary_dim(rotary_dim)
    L = int_field(original_length, "original_length", 1)

    def dim_of(rotations: float) -> float:
        ratio = L / (rotations * 2 * math.pi)  # transformers' expression, kept where it is finite (parity) ...
        log_ratio = math.log(ratio) if 0 < ratio < math.inf else \
            math.log(L) - math.log(rotations) - math.log(2 * math.pi)  # ... a β near 0 or 1e308: in logs
        return d * log_ratio / (2 * math.log(b))

    fast, slow = _positive(beta_fast, "beta_fast"), _positive(beta_slow, "beta_slow")
    if fast <= slow:  # reversed, the ramp runs backwards: the fast pairs interpolated, the slow ones kept
        raise UserError(f"beta_fast ({fast:g}) must be greater than beta_slow ({slow:g}): β_fast counts the "
                        "rotations in L above which a pair is kept, β_slow those below which it is "
                        "interpolated (defaults 32 and 1); swap them")
    low, high = dim_of(fast), dim_of(slow)
    if check_flag(truncate, "truncate"):
        low, high = math.floor(low), math.ceil(high)
    return max(low, 0), min(high, d - 1)


def yarn_extrapolation_mask(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    beta_fast: float = 32,
    beta_slow: float = 1,
    truncate: bool = True,
) -> np.ndarray:
    """``mask_i = 1 − clamp((i − low)/(high − low), 0, 1)``: 1 = keep θ_i (extrapolate), 0 = θ_i/s."""
    low, high = yarn_correction_range(
        rope_theta=rope_theta,
        rotary_dim=rotary_dim,
        original_length=original_length,
        beta_fast=beta_fast,
        beta_slow=beta_slow,
        truncate=truncate,
    )
    if low == high:
        high += 0.001  # transformers' guard against a zero-width ramp
    i = np.arange(rotary_dim // 2, dtype=np.float64)
    ramp = np.clip((i - low) / (high - low), 0.0, 1.0)
    return 1.0 - ramp


def yarn_factors(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    beta_fast: float = 32,
    beta_slow: float = 1,
    truncate: bool = True,
    factor: float | None = None,
    mscale: float | None = None,
    mscale_all_dim: float | None = None,
    attention_factor: float | None = None,
) -> FactorSet:
    """YaRN: ``θ'_i = (θ_i/s)(1−mask_i) + θ_i·mask_i`` ⇔ ``λ_i = 1/((1−mask_i)/s + mask_i)``.

    Attention: ``attention_factor`` if given; else ``get_mscale(s, mscale)/get_mscale(s, mscale_all_dim)``
    when both are given (DeepSeek style); else ``0.1·ln s + 1`` — transformers' rules.
    ``factor`` (s) defaults to L'/L. Defaults β_fast = 32, β_slow = 1 (Llama); Mistral uses 128/2.
    """
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    s = Lt / L if factor is None else _scale_factor(factor)
    mask = yarn_extrapolation_mask(
        rope_theta=b,
        rotary_dim=d,
        original_length=L,
        beta_fast=beta_fast,
        beta_slow=beta_slow,
        truncate=truncate,
    )
    lam = 1.0 / ((1.0 - mask) / s + mask)
    for name, value in (("mscale", mscale), ("mscale_all_dim", mscale_all_dim)):
        if value is not None:  # NaN/inf: "provenance is not JSON-serialisable" when the file was written
            real_number(value, name)  # (an integer too large for a float: one line, not an OverflowError)
    _check_mscale_pair(mscale, mscale_all_dim, attention_factor)
    if attention_factor is not None:
        attn = check_attention_factor(attention_factor)
    elif mscale and mscale_all_dim:
        attn = yarn_attention_factor(s, float(mscale)) / yarn_attention_factor(s, float(mscale_all_dim))
    else:
        attn = yarn_attention_factor(s)
    options = {
        "beta_fast": beta_fast,
        "beta_slow": beta_slow,
        "truncate": bool(truncate),
        "factor": s,
        "mscale": mscale,
        "mscale_all_dim": mscale_all_dim,
        "attention_factor": attention_factor,
    }
    return _result("yarn", lam, b, L, Lt, attn, options)


def llama3_factors(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    factor: float | None = None,
    low_freq_factor: float = 1.0,
    high_freq_factor: float = 4.0,
) -> FactorSet:
    """Llama-3.1 style: by wavelength ``w_i = 2π/θ_i`` — keep when ``w < L/high``, divide by ``factor``
    when ``w > L/low``, blend in between with ``smooth = (L/w − low)/(high − low)``; attention 1.

    ``factor`` defaults to s = L'/L (Llama 3.1 ships factor 8 for L = 8192, L' = 131072 → s = 16:
    pass ``factor=8`` to reproduce it exactly).
    """
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    f = Lt / L if factor is None else _scale_factor(factor)
    low = _positive(low_freq_factor, "low_freq_factor")
    high = _positive(high_freq_factor, "high_freq_factor")
    if high <= low:
        raise UserError(f"high_freq_factor ({high}) must be greater than low_freq_factor ({low})")
    theta = inv_freq(b, d)
    wavelen = 2 * math.pi / theta
    low_freq_wavelen, high_freq_wavelen = L / low, L / high
    scaled = np.where(wavelen > low_freq_wavelen, theta / f, theta)
    smooth = (L / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / f + smooth * scaled
    medium = ~(wavelen < high_freq_wavelen) & ~(wavelen > low_freq_wavelen)
    new = np.where(medium, smoothed, scaled)
    options = {"factor": f, "low_freq_factor": low, "high_freq_factor": high}
    return _result("llama3", theta / new, b, L, Lt, 1.0, options)


def yarn_linear_seed(
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    beta_fast: float = 32,
    beta_slow: float = 1,
) -> FactorSet:
    """The reference search's YaRN-like seed ``λ_i = s·(1−mask_i) + mask_i`` (a linear blend of λ,
    not of θ as real YaRN does). Monotone from 1 to s; attention left to the LongRoPE default (None).
    """
    b, d, L, Lt = _common(rope_theta, rotary_dim, original_length, target_length)
    s = Lt / L
    mask = yarn_extrapolation_mask(
        rope_theta=b, rotary_dim=d, original_length=L, beta_fast=beta_fast, beta_slow=beta_slow
    )
    lam = s * (1.0 - mask) + mask
    return _result("yarn-linear-seed", lam, b, L, Lt, None, {"beta_fast": beta_fast, "beta_slow": beta_slow})


BASELINES: dict[str, BaselineFn] = {
    "pi": pi_factors,
    "ntk": ntk_factors,
    "dynamic-ntk": dynamic_ntk_factors,
    "yarn": yarn_factors,
    "llama3": llama3_factors,
}
"""Method name → pure function with the common keyword-only signature (see module docstring)."""

_COMMON_ARGS = {"rope_theta", "rotary_dim", "original_length", "target_length"}


def baseline_options(method: str) -> list[str]:
    """The extra option names ``method`` accepts (besides the four common arguments)."""
    fn = _lookup(method)
    return [p for p in inspect.signature(fn).parameters if p not in _COMMON_ARGS]


def _lookup(method: str) -> BaselineFn:
    try:
        return BASELINES[method]
    except (KeyError, TypeError):
        raise UserError(f"unknown baseline method {short_repr(method)}; known: {', '.join(BASELINES)}") from None


def make_baseline(
    method: str,
    *,
    rope_theta: float,
    rotary_dim: int,
    original_length: int,
    target_length: int,
    **options: Any,
) -> FactorSet:
    """Build the ``method`` baseline as a :class:`FactorSet`; unknown methods/options → UserError."""
    fn = _lookup(method)
    allowed = baseline_options(method)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise UserError(
            f"baseline {short_repr(method)} has no option(s) {', '.join(map(short_repr, unknown))}; it takes: {', '.join(allowed) or 'none'}"
        )
    return fn(
        rope_theta=rope_theta,
        rotary_dim=rotary_dim,
        original_length=original_length,
        target_length=target_length,
        **options,
    )
