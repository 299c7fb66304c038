"""Checked values of a factor set: the field checks :class:`~longrope.rope.FactorSet` and every file format
reading one share, so that a bad value gets the same one-line :class:`UserError`, naming its field,
wherever it comes from."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from longrope.errors import UserError, shown

__all__ = ["FORMAT_VERSION", "MAX_LENGTH", "RotaryDimMismatch", "check_list_lengths", "factor_array", "int_field", "real_number",
           "scalar_value", "short_repr"]

#: The ``factors.json`` format version this longrope reads and writes (:mod:`longrope.formats.factors`).
FORMAT_VERSION = 1
#: Largest accepted length / n̂: far beyond any context (2M = 2^21) yet exact in float64, so that
#: s = L'/L and every position index stay exact.
MAX_LENGTH = 1 << 40


class RotaryDimMismatch(UserError):
    """A factor list whose length does not fit the model's rotary dim (``FactorSet.load(rotary_dim=...)``).

    Its own class so that a caller who knows the model can add the fix (how to make factors for it)."""


def check_list_lengths(d: Mapping[str, Any], rotary_dim: Any, whose: str, *, prefix: str = "",
                        error: type[UserError] = UserError) -> None:
    """Refuse a ``long_factor`` / ``short_factor`` list that does not hold ``rotary_dim/2`` values,
    naming that list (not the other one) — before the FactorSet is built, which can only compare the
    two lists with each other. ``whose`` says where ``rotary_dim`` comes from ("the model's rotary dim")."""
    if isinstance(rotary_dim, bool) or not isinstance(rotary_dim, int) or rotary_dim < 2:
        return
    half = rotary_dim // 2
    for key in ("long_factor", "short_factor"):
        value = d.get(key)
        if isinstance(value, (list, tuple)) and len(value) != half:
            raise error(f"{prefix}{key} has {len(value)} values but {whose} is {rotary_dim} (needs {half})")


def scalar_value(value: Any) -> Any:
    """A 0-d torch tensor or numpy array, or a numpy number, as the Python number it holds (``torch.tensor(1.2)``, an
    element of ``list(tensor)``, ``np.float64`` arithmetic on arrays, ``np.int64(32)``: a record keeps the checked
    value, and JSON holds Python numbers only); anything else unchanged, for the field's own check."""
    if isinstance(value, np.generic) or (getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None))
                                         and not isinstance(value, numbers.Number)):
        return value.item()
    return value


def factor_array(value: Any, field: str, length: int | None = None) -> np.ndarray:
    """A fresh float64 1-D copy of ``value``, checked finite and > 0 (``field`` names it in errors)."""
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
        raise UserError(f"{field} must be a list of numbers, got {type(value).__name__}")
    if callable(getattr(value, "detach", None)) and callable(getattr(value, "tolist", None)):
        # a torch tensor (bf16, requiring grad or on a GPU: numpy refused those); of another shape: refused below
        value = value.detach().tolist() if getattr(value, "ndim", 1) == 1 else np.broadcast_to(1.0, tuple(value.shape))
    if isinstance(value, (list, tuple)):
        value = [scalar_value(x) for x in value]  # list(tensor): 0-d tensors
        for j, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, numbers.Real):
                raise UserError(f"{field}[{j}] is not a number: {short_repr(x)}")
    try:
        arr = np.array(value, dtype=np.float64, copy=True)
    except (TypeError, ValueError, OverflowError) as e:
        raise UserError(f"{field} must be a list of finite numbers ({e})") from None
    if arr.ndim != 1 or arr.size == 0:
        raise UserError(f"{field} must be a non-empty 1-D list of numbers, got shape {list(arr.shape)}")
    if length is not None and arr.size != length:
        raise UserError(f"{field} has {arr.size} values, expected {length} (rotary_dim/2)")
    bad = np.flatnonzero(~np.isfinite(arr))
    if bad.size:
        raise UserError(f"{field}[{int(bad[0])}] is not finite ({arr[bad[0]]})")
    bad = np.flatnonzero(arr <= 0)
    if bad.size:
        raise UserError(f"{field}[{int(bad[0])}] = {arr[bad[0]]} must be > 0")
    return arr


def int_field(value: Any, field: str, minimum: int, maximum: int = MAX_LENGTH) -> int:
    """An integer in [minimum, maximum]; integral floats (4096.0) are accepted, booleans are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{field} must be an integer >= {minimum}, got {short_repr(value)}")
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        try:
            f = float(value)
        except (OverflowError, ValueError):
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise UserError(f"{field} must be an integer >= {minimum}, got {short_repr(value)}")
        v = int(f)
    if v < minimum:
        raise UserError(f"{field} must be an integer >= {minimum}, got {short_repr(v)}")
    if v > maximum:
        raise UserError(f"{field} must be an integer <= {maximum} (2^{maximum.bit_length() - 1}), got {short_repr(v)}")
    return v


def start_tokens_limit(original: int, target: int) -> int:
    """The most retained start tokens n̂ a factor set for L = ``original`` → L' = ``target`` may keep (see
    :data:`START_TOKENS_WHY`): n̂ ≤ L and n̂ < L'. The rule of factor files and ``baseline --start-tokens``; a search's
    n̂ grid (:func:`~longrope.search.plan.start_token_grid`) is cut at L, which this gives for its L' > L."""
    return min(int(original), int(target) - 1)


#: why n̂ is bounded, in the words every refusal of a too large n̂ uses
START_TOKENS_WHY = ("the first n̂ positions keep their original angles, which the model knows only below its original "
                    "length L, and positions from n̂ to L' use the factors")


def real_number(value: Any, field: str) -> float:
    """A finite float from a real number (a huge JSON integer is refused, not an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{field} must be a number, got {short_repr(value)}")
    try:
        f = float(value)
    except (OverflowError, ValueError):
        f = math.inf
    if not math.isfinite(f):
        raise UserError(f"{field} must be a finite number, got {short_repr(value)}")
    return f


def short_repr(value: Any) -> str:
    """``repr`` cut to one short line (a fuzzed 4000-digit integer must not flood the message): :func:`shown`."""
    return shown(value)
