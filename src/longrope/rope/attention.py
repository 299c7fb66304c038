"""Attention temperature ("mscale"): the factor ``m`` that multiplies both cos and sin.

Because q and k are both rotated by tables scaled by ``m``, attention logits scale by ``m²``
(docs/method.md §2). Policies:

- ``"longrope"`` (Phi-3 "su"): ``m = sqrt(1 + ln s / ln L)``, 1 when ``s ≤ 1``; transformers'
  default for ``rope_type="longrope"`` when no ``attention_factor`` is given.
- ``"yarn"``: ``m = 0.1·ln s + 1``, 1 when ``s ≤ 1`` (transformers' ``get_mscale``).
- ``"none"``: ``m = 1``.
- a number: that value, as given (within :data:`ATTENTION_FACTOR_RANGE`: :func:`check_attention_factor`, the one
  check of an ``m`` wherever one is given — a factor set, a baseline, a policy).

``None`` means "longrope", the contract's default for :class:`~longrope.rope.FactorSet`.
"""

from __future__ import annotations

import math
import numbers

from longrope.errors import UserError
from longrope.rope.values import int_field, real_number, scalar_value, short_repr

__all__ = [
    "ATTENTION_FACTOR_RANGE",
    "ATTENTION_POLICIES",
    "check_attention_factor",
    "longrope_attention_factor",
    "yarn_attention_factor",
    "resolve_attention_factor",
]

ATTENTION_POLICIES = ("longrope", "yarn", "none")
#: The range of an attention factor m. It scales every attention logit by m², and a context extension's is near 1
#: (YaRN's 0.1 ln s + 1 is 1.69 at 1,000x); m = 6e306 (--mscale 1e308) was an infinite angle in float32, 1e-30 every
#: logit 0 (battery 21).
ATTENTION_FACTOR_RANGE = (0.1, 10.0)


def check_attention_factor(value: object, name: str = "attention_factor") -> float:
    """``value`` as the float m it is, or one :class:`UserError` naming ``name``: a real number (not a bool) within
    :data:`ATTENTION_FACTOR_RANGE`."""
    try:
        m = math.nan if isinstance(value, bool) or not isinstance(value, numbers.Real) else float(value)
    except (OverflowError, ValueError):
        m = math.nan
    if not math.isfinite(m) or m <= 0:
        raise UserError(f"{name} must be a finite number > 0, got {short_repr(value)}")
    lo, hi = ATTENTION_FACTOR_RANGE
    if not lo <= m <= hi:
        raise UserError(f"{name} {m:g} is outside [{lo:g}, {hi:g}]: m scales every attention logit by m² ({m * m:.3g} "
                        "here), where a context extension's is near 1 (YaRN's 0.1 ln s + 1 is 1.69 at 1,000x)")
    return m


def longrope_attention_factor(scale: float, original_length: int) -> float:
    """``sqrt(1 + ln s / ln L)``; 1.0 when ``s ≤ 1`` (no extension, no temperature)."""
    scale = _scale(scale)
    if scale <= 1.0:
        return 1.0
    original_length = int_field(scalar_value(original_length), "original_length", 1)
    if original_length <= 1:
        # ln(1) = 0 would divide by zero; a 1-token pre-training context is not a real case.
        raise UserError(
            f"original_length must be > 1 for the longrope attention factor, got {original_length}"
        )
    return math.sqrt(1.0 + math.log(scale) / math.log(original_length))


def yarn_attention_factor(scale: float, mscale: float = 1.0) -> float:
    """``0.1·mscale·ln s + 1``; 1.0 when ``s ≤ 1`` (transformers' ``get_mscale``)."""
    scale = _scale(scale)
    mscale = real_number(scalar_value(mscale), "mscale")
    if scale <= 1.0:
        return 1.0
    value = 0.1 * mscale * math.log(scale) + 1.0
    if value <= 0:
        raise UserError(f"mscale {mscale} gives the attention factor {value:.6g} at scale {scale} (it must be > 0); "
                        "give an mscale >= 0")
    return value


def _scale(scale: float) -> float:
    """The scale factor s of the attention functions, checked as the number they take the log of: a string was
    'TypeError: '<=' not supported between ...', NaN and inf came back as the factor (battery 18)."""
    scale = real_number(scalar_value(scale), "scale")
    if scale <= 0:  # a ratio of two lengths: -3 and 0 were read as "no extension" and gave 1.0 (battery 21b)
        raise UserError(f"scale must be > 0 (the target length over the original one), got {scale:g}")
    return scale


def resolve_attention_factor(
    policy_or_value: str | float | None, scale: float, original_length: int
) -> float:
    """Turn a policy name, an explicit value or ``None`` (= "longrope") into the factor ``m``."""
    policy_or_value = scalar_value(policy_or_value)  # torch.tensor(1.2), as the other attention functions take it
    if policy_or_value is None:
        return longrope_attention_factor(scale, original_length)
    if isinstance(policy_or_value, str):
        name = policy_or_value.strip().lower()
        if name in ("longrope", "su"):
            return longrope_attention_factor(scale, original_length)
        if name == "yarn":
            return yarn_attention_factor(scale)
        if name == "none":
            return 1.0
        try:
            value = float(name)
        except ValueError:
            raise UserError(
                f"unknown attention factor policy {short_repr(policy_or_value)}; use one of "
                f"{', '.join(ATTENTION_POLICIES)} or a number > 0"
            ) from None
        return check_attention_factor(value, "attention factor")
    if isinstance(policy_or_value, bool) or not isinstance(policy_or_value, numbers.Real):
        raise UserError(f"attention factor must be a policy name or a number, got {short_repr(policy_or_value)}")
    return check_attention_factor(policy_or_value, "attention factor")
