"""``FactorSet``: one LongRoPE rescale result, and its file format ``factors.json``.

A factor set is everything a model needs to apply LongRoPE (docs/method.md §2, §5, §8):
per-pair rescale factors ``λ_i`` for long sequences (``long_factor``) and for sequences that fit
in the original window (``short_factor``), the number of retained start tokens ``n̂``, the
attention temperature, the original and target lengths and the rope base.

``factors.json`` (format_version 1)
-----------------------------------
A JSON object; :meth:`FactorSet.save` always writes every key below, in this order::

    {
      "format_version": 1,
      "method": "longrope",              # how the factors were made: "pi", "yarn", "longrope", ...
      "rope_theta": 10000.0,             # rope base b
      "original_max_position_embeddings": 4096,   # L
      "max_position_embeddings": 131072,          # L'  (scale s = L'/L)
      "rotary_dim": 96,                  # informational: 2 * len(long_factor); checked on load
      "start_tokens": 0,                 # n̂: positions p < n̂ keep the original angles
      "attention_factor": null,          # number, or null = sqrt(1 + ln s / ln L) (1 when s <= 1)
      "long_factor": [1.0, ...],         # d/2 numbers λ_i > 0, used when the sequence exceeds L
      "short_factor": [1.0, ...],        # d/2 numbers, used when the sequence fits in L
      "provenance": {...}                # free-form JSON object: command, options, fitness, dates
    }

On load, ``long_factor``, ``rope_theta``, ``original_max_position_embeddings`` and
``max_position_embeddings`` are required; ``short_factor`` defaults to ones, ``start_tokens`` to 0,
``attention_factor`` to null, ``method`` to "custom", ``provenance`` to {}; ``format_version``
must be 1 when present. Unknown keys are rejected (a misspelt "start_token" must not silently
mean n̂ = 0). Numbers must be JSON numbers (no strings, no booleans, no NaN/Infinity).

Every :class:`FactorSet` is usable as built (``__post_init__``): L' ≥ L (a factor set extends the
context; L' < L is refused), lengths and n̂ at most 2^40, factors finite and > 0 with finite,
positive rescaled frequencies ``θ_i/λ_i``. Files are UTF-8 (a byte-order mark is allowed and
ignored). Any problem with a file, whatever its bytes, is a one-line :class:`UserError`.

:meth:`FactorSet.load` also reads a Hugging Face ``config.json`` whose ``rope_scaling`` (4.x) or
``rope_parameters`` (5.x) has ``rope_type``/``type`` "longrope" (or the early Phi-3 name "su"),
and the reference code's CSV (one λ per line, long factors only). See docs/factors-format.md.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import json_object, read_regular, write_json, write_text
from longrope.rope.attention import resolve_attention_factor
from longrope.rope.frequencies import check_rope_theta, check_rotary_dim, inv_freq, rotary_dim

__all__ = ["FORMAT_VERSION", "START_TOKENS_CONFIG_KEY", "FactorSet", "RotaryDimMismatch"]

FORMAT_VERSION = 1

#: Where ``longrope export`` records n̂ in a Hugging Face config.json (no runtime has a key for it;
#: stock runtimes ignore this one). Read back by :meth:`FactorSet.from_hf_config`.
START_TOKENS_CONFIG_KEY = "longrope_start_tokens"

_FILE_KEYS = (
    "format_version",
    "method",
    "rope_theta",
    "original_max_position_embeddings",
    "max_position_embeddings",
    "rotary_dim",
    "start_tokens",
    "attention_factor",
    "long_factor",
    "short_factor",
    "provenance",
)
_REQUIRED_KEYS = ("long_factor", "rope_theta", "original_max_position_embeddings", "max_position_embeddings")
#: Largest accepted length / n̂: far beyond any context (2M = 2^21) yet exact in float64, so that
#: s = L'/L and every position index stay exact.
MAX_LENGTH = 1 << 40
# rope types transformers treats as LongRoPE ("su" is the name early Phi-3 configs used).
_HF_LONGROPE_TYPES = ("longrope", "su")


class RotaryDimMismatch(UserError):
    """A factor list whose length does not fit the model's rotary dim (``FactorSet.load(rotary_dim=...)``).

    Its own class so that a caller who knows the model can add the fix (how to make factors for it)."""


def _check_list_lengths(d: Mapping[str, Any], rotary_dim: Any, whose: str, *, prefix: str = "",
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


def _factor_array(value: Any, field: str, length: int | None = None) -> np.ndarray:
    """A fresh float64 1-D copy of ``value``, checked finite and > 0 (``field`` names it in errors)."""
    if isinstance(value, (str, bytes)) or isinstance(value, Mapping):
        raise UserError(f"{field} must be a list of numbers, got {type(value).__name__}")
    if isinstance(value, (list, tuple)):
        for j, x in enumerate(value):
            if isinstance(x, bool) or not isinstance(x, numbers.Real):
                raise UserError(f"{field}[{j}] is not a number: {x!r}")
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


def _int_field(value: Any, field: str, minimum: int, maximum: int = MAX_LENGTH) -> int:
    """An integer in [minimum, maximum]; integral floats (4096.0) are accepted, booleans are not."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{field} must be an integer >= {minimum}, got {_short(value)}")
    if isinstance(value, numbers.Integral):
        v = int(value)
    else:
        try:
            f = float(value)
        except (OverflowError, ValueError):
            f = math.nan
        if not math.isfinite(f) or f != int(f):
            raise UserError(f"{field} must be an integer >= {minimum}, got {_short(value)}")
        v = int(f)
    if v < minimum:
        raise UserError(f"{field} must be an integer >= {minimum}, got {_short(v)}")
    if v > maximum:
        raise UserError(f"{field} must be an integer <= {maximum} (2^{maximum.bit_length() - 1}), got {_short(v)}")
    return v


def _real(value: Any, field: str) -> float:
    """A finite float from a real number (a huge JSON integer is refused, not an OverflowError)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise UserError(f"{field} must be a number, got {_short(value)}")
    try:
        f = float(value)
    except (OverflowError, ValueError):
        f = math.inf
    if not math.isfinite(f):
        raise UserError(f"{field} must be a finite number, got {_short(value)}")
    return f


def _short(value: Any) -> str:
    """``repr`` cut to one short line (a fuzzed 4000-digit integer must not flood the message)."""
    text = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else f"a {len(str(abs(value)))}-digit integer"
    return text if len(text) <= 60 else text[:57] + "..."


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class FactorSet:
    """Per-pair RoPE rescale factors plus what is needed to apply them (docs/method.md §2).

    Frozen: derive variants with :meth:`with_`. The arrays are private float64 copies; do not
    write into them (a search builds a new FactorSet per genome, which costs microseconds).
    """

    long_factor: np.ndarray
    """``λ_i`` for i = 0 … d/2−1 (float64, > 0), used when the sequence is longer than L."""
    short_factor: np.ndarray | None = None
    """``λ_i`` used when the sequence fits in L; ``None`` → ones (the original RoPE)."""
    start_tokens: int = 0
    """n̂: positions ``p < n̂`` keep the original angles ``p·θ_i`` (attention-sink geometry)."""
    attention_factor: float | None = None
    """Temperature m multiplying cos and sin; ``None`` → ``sqrt(1 + ln s / ln L)`` (1 when s ≤ 1)."""
    original_max_position_embeddings: int
    """L, the pre-training context length."""
    max_position_embeddings: int
    """L', the target context length."""
    rope_theta: float
    """The rope base b."""
    method: str = "custom"
    """How these factors were made ("pi", "ntk", "yarn", "longrope", ...)."""
    provenance: dict = dataclasses.field(default_factory=dict)
    """Free-form JSON-able record: options, search settings, fitness, source file."""

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen dataclass: normalise fields in place once, here
        long_ = _factor_array(self.long_factor, "long_factor")
        set_(self, "long_factor", long_)
        if self.short_factor is None:
            short = np.ones_like(long_)
        else:
            short = _factor_array(self.short_factor, "short_factor")
            if short.size != long_.size:
                # Which list is wrong cannot be told from the two alone: name both (FactorSet.load
                # names the wrong one when it knows the rotary dim, from the model or the file).
                raise UserError(f"long_factor has {long_.size} values but short_factor has {short.size}; both "
                                "lists need rotary_dim/2 values, one per rotary pair")
        set_(self, "short_factor", short)
        set_(self, "start_tokens", _int_field(self.start_tokens, "start_tokens", 0))
        if self.attention_factor is not None:
            a = self.attention_factor
            try:
                a_f = math.nan if isinstance(a, bool) or not isinstance(a, numbers.Real) else float(a)
            except (OverflowError, ValueError):
                a_f = math.nan
            if not math.isfinite(a_f) or a_f <= 0:
                raise UserError(f"attention_factor must be a finite number > 0 or null, got {_short(a)}")
            set_(self, "attention_factor", a_f)
        set_(
            self,
            "original_max_position_embeddings",
            _int_field(self.original_max_position_embeddings, "original_max_position_embeddings", 1),
        )
        set_(
            self,
            "max_position_embeddings",
            _int_field(self.max_position_embeddings, "max_position_embeddings", 1),
        )
        if self.max_position_embeddings < self.original_max_position_embeddings:
            raise UserError(
                f"max_position_embeddings L' = {self.max_position_embeddings} is below "
                f"original_max_position_embeddings L = {self.original_max_position_embeddings}; a factor set "
                "extends the context, so L' must be >= L (fix the target length or the file)"
            )
        theta = self.rope_theta
        if not isinstance(theta, bool) and isinstance(theta, numbers.Real):
            theta = _real(theta, "rope_theta")
        set_(self, "rope_theta", check_rope_theta(theta))
        self.resolved_attention_factor()  # usable as built: L = 1 with s > 1 has no default temperature
        for name, lam in (("long_factor", long_), ("short_factor", short)):
            with np.errstate(over="ignore", divide="ignore", under="ignore"):
                freq = inv_freq(self.rope_theta, 2 * lam.size) / lam  # [d/2]
            if not (np.isfinite(freq).all() and (freq > 0).all()):
                i = int(np.flatnonzero(~(np.isfinite(freq) & (freq > 0)))[0])
                raise UserError(f"{name}[{i}] = {lam[i]:g} with rope_theta {self.rope_theta:g} gives a rescaled "
                                "frequency that is not a finite positive number; use factors of a sane size")
        if not isinstance(self.method, str) or not self.method:
            raise UserError(f"method must be a non-empty string, got {self.method!r}")
        if not isinstance(self.provenance, Mapping):
            raise UserError(f"provenance must be a JSON object (dict), got {type(self.provenance).__name__}")
        set_(self, "provenance", dict(self.provenance))

    # ----------------------------------------------------------------- derived quantities
    @property
    def rotary_dim(self) -> int:
        """d = 2 · len(long_factor)."""
        return 2 * int(self.long_factor.size)

    @property
    def original_length(self) -> int:
        """Alias of ``original_max_position_embeddings`` (L)."""
        return self.original_max_position_embeddings

    @property
    def target_length(self) -> int:
        """Alias of ``max_position_embeddings`` (L')."""
        return self.max_position_embeddings

    @property
    def scale(self) -> float:
        """s = L'/L."""
        return self.max_position_embeddings / self.original_max_position_embeddings

    def resolved_attention_factor(self) -> float:
        """The attention temperature m actually applied: the explicit value, or the LongRoPE formula."""
        return resolve_attention_factor(
            self.attention_factor, self.scale, self.original_max_position_embeddings
        )

    def factors_for_length(self, seq_len: int) -> np.ndarray:
        """``long_factor`` when ``seq_len > L`` else ``short_factor`` — transformers' switching rule."""
        return self.long_factor if seq_len > self.original_max_position_embeddings else self.short_factor

    def inv_freq(self, which: str = "long") -> np.ndarray:
        """Rescaled frequencies ``θ_i / λ_i`` (float64, [d/2]) for ``which`` in {"long", "short"}."""
        if which not in ("long", "short"):
            raise ValueError(f"which must be 'long' or 'short', got {which!r}")
        lam = self.long_factor if which == "long" else self.short_factor
        return inv_freq(self.rope_theta, self.rotary_dim) / lam

    # ----------------------------------------------------------------- constructors / variants
    @classmethod
    def identity(
        cls, rotary_dim: int, rope_theta: float, original_length: int, target_length: int | None = None
    ) -> FactorSet:
        """All factors 1 and attention 1: the model's original RoPE (``swap`` target for a baseline run)."""
        half = check_rotary_dim(rotary_dim) // 2
        return cls(
            long_factor=np.ones(half),
            short_factor=np.ones(half),
            attention_factor=1.0,
            original_max_position_embeddings=original_length,
            max_position_embeddings=original_length if target_length is None else target_length,
            rope_theta=rope_theta,
            method="identity",
        )

    def with_(self, **changes: Any) -> FactorSet:
        """A copy with some fields replaced (``dataclasses.replace``; validation runs again)."""
        return dataclasses.replace(self, **changes)

    def compose(self, other: FactorSet) -> FactorSet:
        """Progressive extension (docs/method.md §5.3): ``λ_final = λ_self ⊙ λ_other``.

        ``self`` is the set the model was fine-tuned with, ``other`` the factors found by the second
        search on that fine-tuned model (relative to it). The result keeps ``self``'s L and rope base
        and takes ``other``'s target length L', n̂ and attention factor (``None`` → derived from the
        new s). Short factors multiply too (``other``'s are normally ones).
        """
        if not isinstance(other, FactorSet):
            raise TypeError(f"compose needs a FactorSet, got {type(other).__name__}")
        if other.rotary_dim != self.rotary_dim:
            raise UserError(
                f"cannot compose factor sets of rotary_dim {self.rotary_dim} and {other.rotary_dim}"
            )
        if other.rope_theta != self.rope_theta:
            raise UserError(
                f"cannot compose factor sets of rope_theta {self.rope_theta} and {other.rope_theta}"
            )
        return FactorSet(
            long_factor=self.long_factor * other.long_factor,
            short_factor=self.short_factor * other.short_factor,
            start_tokens=other.start_tokens,
            attention_factor=other.attention_factor,
            original_max_position_embeddings=self.original_max_position_embeddings,
            max_position_embeddings=other.max_position_embeddings,
            rope_theta=self.rope_theta,
            method=f"{self.method}*{other.method}",
            provenance={"composed_of": [self.to_dict(), other.to_dict()]},
        )

    # ----------------------------------------------------------------- equality
    def __eq__(self, other: object) -> bool:
        """Exact equality of every field (arrays element-wise); provenance included."""
        if not isinstance(other, FactorSet):
            return NotImplemented
        return self.same_factors(other, rtol=0.0, atol=0.0) and self.provenance == other.provenance

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays inside: not hashable

    def same_factors(self, other: FactorSet, *, rtol: float = 1e-12, atol: float = 0.0) -> bool:
        """Equal up to ``rtol``/``atol`` on the factors, exactly on everything else but provenance."""
        return (
            self.long_factor.shape == other.long_factor.shape
            and np.allclose(self.long_factor, other.long_factor, rtol=rtol, atol=atol)
            and np.allclose(self.short_factor, other.short_factor, rtol=rtol, atol=atol)
            and self.start_tokens == other.start_tokens
            and self.attention_factor == other.attention_factor
            and self.original_max_position_embeddings == other.original_max_position_embeddings
            and self.max_position_embeddings == other.max_position_embeddings
            and self.rope_theta == other.rope_theta
            and self.method == other.method
        )

    def __repr__(self) -> str:
        lf = self.long_factor
        return (
            f"FactorSet(method={self.method!r}, d={self.rotary_dim}, L={self.original_max_position_embeddings}, "
            f"L'={self.max_position_embeddings}, s={self.scale:g}, theta={self.rope_theta:g}, "
            f"n_hat={self.start_tokens}, attention_factor={self.attention_factor}, "
            f"long=[{lf[0]:.4g} … {lf[-1]:.4g}])"
        )

    def digest(self) -> str:
        """SHA-256 of what the set applies (every field but ``provenance``): equal digests, equal
        factors, wherever the file lies and whatever history it records."""
        import hashlib

        applied = {k: v for k, v in self.to_dict().items() if k != "provenance"}
        return hashlib.sha256(json.dumps(applied, sort_keys=True).encode("utf-8")).hexdigest()

    # ----------------------------------------------------------------- factors.json
    def to_dict(self) -> dict[str, Any]:
        """The ``factors.json`` object (plain Python types; floats round-trip exactly through JSON)."""
        return {
            "format_version": FORMAT_VERSION,
            "method": self.method,
            "rope_theta": self.rope_theta,
            "original_max_position_embeddings": self.original_max_position_embeddings,
            "max_position_embeddings": self.max_position_embeddings,
            "rotary_dim": self.rotary_dim,
            "start_tokens": self.start_tokens,
            "attention_factor": self.attention_factor,
            "long_factor": [float(x) for x in self.long_factor],
            "short_factor": [float(x) for x in self.short_factor],
            "provenance": self.provenance,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, rotary_dim: int | None = None) -> FactorSet:
        """Parse a ``factors.json`` object; any problem → :class:`UserError` naming the key.

        ``rotary_dim``: the model's, when known: a list of another length is a
        :class:`RotaryDimMismatch` naming that list. Without it, the file's own ``rotary_dim`` names
        the list that was cut when the two lists differ."""
        if not isinstance(d, Mapping):
            raise UserError(f"a factor file must hold a JSON object, got {type(d).__name__}")
        unknown = sorted(set(d) - set(_FILE_KEYS))
        if unknown:
            raise UserError(
                f"unknown key(s) {', '.join(map(repr, unknown))} in factor file; known: {', '.join(_FILE_KEYS)}"
            )
        missing = [k for k in _REQUIRED_KEYS if k not in d]
        if missing:
            raise UserError(f"factor file is missing required key(s): {', '.join(missing)}")
        version = d.get("format_version", FORMAT_VERSION)
        if isinstance(version, bool) or version != FORMAT_VERSION:
            raise UserError(
                f"unsupported factor file format_version {version!r}; this longrope reads {FORMAT_VERSION}"
            )
        _check_list_lengths(d, rotary_dim, "the model's rotary dim", error=RotaryDimMismatch)
        long_raw, short_raw = d.get("long_factor"), d.get("short_factor")
        if (isinstance(long_raw, (list, tuple)) and isinstance(short_raw, (list, tuple))
                and len(long_raw) != len(short_raw)):
            _check_list_lengths(d, d.get("rotary_dim"), "the file's rotary_dim")
        fs = cls(
            long_factor=d["long_factor"],
            short_factor=d.get("short_factor"),
            start_tokens=d.get("start_tokens", 0),
            attention_factor=d.get("attention_factor"),
            original_max_position_embeddings=d["original_max_position_embeddings"],
            max_position_embeddings=d["max_position_embeddings"],
            rope_theta=d["rope_theta"],
            method=d.get("method", "custom"),
            provenance=d.get("provenance") or {},
        )
        if "rotary_dim" in d and d["rotary_dim"] != fs.rotary_dim:
            raise UserError(
                f"rotary_dim {d['rotary_dim']!r} does not match long_factor ({fs.long_factor.size} values → {fs.rotary_dim})"
            )
        return fs

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``factors.json`` atomically (a killed process never leaves half a file)."""
        try:
            json.dumps(self.provenance, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise UserError(f"provenance is not JSON-serialisable: {e}") from None
        return write_json(path, self.to_dict())

    def save_csv(self, path: str | os.PathLike) -> Path:
        """Write ``long_factor`` in the reference code's CSV (one λ per line; everything else is lost)."""
        return write_text(path, "".join(f"{float(x)!r}\n" for x in self.long_factor))

    # ----------------------------------------------------------------- Hugging Face config
    # (writing a config is the export's job: longrope.models.export.longrope_config_entries)
    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], *, source: str = "config.json",
                       rotary_dim: int | None = None) -> FactorSet:
        """Read LongRoPE factors from a Hugging Face config dict (``rope_scaling`` or ``rope_parameters``).

        Follows transformers: top-level ``original_max_position_embeddings`` wins over the one in
        the rope dict (Phi-3 stores it there); without ``attention_factor`` the temperature comes from
        ``factor`` when given, else from ``max_position_embeddings / L`` — when ``factor`` differs
        from L'/L we store the value transformers would use explicitly, so behaviour is preserved.
        """
        params = _hf_longrope_params(config, source)
        where = f"{source}: longrope rope scaling"
        for key in ("long_factor", "short_factor"):
            if key not in params:
                raise UserError(f"{where} has no {key!r}")
        _check_list_lengths(params, rotary_dim, "the model's rotary dim", prefix=f"{where}: ", error=RotaryDimMismatch)
        _check_list_lengths(params, _hf_rotary_dim(config, params, source), "the model's rotary dim",
                            prefix=f"{where}: ")
        L = config.get("original_max_position_embeddings", params.get("original_max_position_embeddings"))
        if L is None:
            raise UserError(
                f"{source} has no original_max_position_embeddings (top level or in the rope scaling)"
            )
        L = _int_field(L, f"{source}: original_max_position_embeddings", 1)
        factor = params.get("factor")
        if factor is not None:
            factor = _real(factor, f"{where}: factor")
            if factor <= 0:
                raise UserError(f"{where}: factor must be > 0, got {factor}")
        L_target = config.get("max_position_embeddings")
        if L_target is None:
            if factor is None:
                raise UserError(f"{source} has neither max_position_embeddings nor a rope scaling factor")
            L_target = L * factor
            if L_target > MAX_LENGTH:
                raise UserError(f"{where}: factor {factor} × L {L} is beyond {MAX_LENGTH} positions")
            L_target = int(round(L_target))
        L_target = _int_field(L_target, f"{source}: max_position_embeddings", 1)
        theta = params.get("rope_theta", config.get("rope_theta"))
        provenance: dict[str, Any] = {"source": source, "format": "hf-config"}
        if theta is None:
            theta = 10000.0  # transformers' default_theta for Llama/Phi-3-like models
            provenance["rope_theta_defaulted"] = True
        theta = _real(theta, f"{source}: rope_theta")
        attention = params.get("attention_factor")
        if attention is None and factor is not None:
            s_hf = float(factor)
            if not math.isclose(s_hf, L_target / L, rel_tol=1e-12):
                attention = resolve_attention_factor("longrope", s_hf, L)
                provenance["attention_factor_from_factor"] = s_hf
        for extra in ("short_mscale", "long_mscale"):
            if extra in params:  # vLLM reads these; transformers does not (docs/method.md §8)
                provenance[extra] = params[extra]
        fs = cls(
            long_factor=_factor_array(params["long_factor"], f"{where}.long_factor"),
            short_factor=_factor_array(params["short_factor"], f"{where}.short_factor"),
            start_tokens=_int_field(config.get(START_TOKENS_CONFIG_KEY, 0), f"{source}: {START_TOKENS_CONFIG_KEY}", 0),
            attention_factor=attention,
            original_max_position_embeddings=L,
            max_position_embeddings=L_target,
            rope_theta=check_rope_theta(theta, name=f"{source}: rope_theta"),
            method="longrope",
            provenance=provenance,
        )
        return fs

    # ----------------------------------------------------------------- reference CSV
    @classmethod
    def from_csv(
        cls,
        path: str | os.PathLike,
        *,
        rope_theta: float,
        original_length: int,
        target_length: int,
        method: str = "longrope",
        start_tokens: int = 0,
        rotary_dim: int | None = None,
    ) -> FactorSet:
        """Read the reference code's CSV (one λ per line → ``long_factor``; short factors are ones).

        The CSV carries no lengths or base, so they must be given. Blank lines and ``#`` comments
        are skipped; a row with several numbers (the per-layer 32×64 variant) is rejected.
        """
        path = Path(path)
        values = _parse_csv_column(_read_text(path, "factor CSV"), str(path))
        _check_list_lengths({"long_factor": list(values)}, rotary_dim, "the model's rotary dim", prefix=f"{path}: ",
                            error=RotaryDimMismatch)
        return cls(
            long_factor=values,
            start_tokens=start_tokens,
            original_max_position_embeddings=original_length,
            max_position_embeddings=target_length,
            rope_theta=rope_theta,
            method=method,
            provenance={"source": str(path), "format": "reference-csv"},
        )

    # ----------------------------------------------------------------- any file
    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        *,
        rope_theta: float | None = None,
        original_length: int | None = None,
        target_length: int | None = None,
        rotary_dim: int | None = None,
    ) -> FactorSet:
        """Load ``factors.json``, a Hugging Face ``config.json`` with longrope scaling, or a reference CSV.

        A folder means its ``factors.json`` (else its ``config.json``). The format is detected from
        the content: a JSON object with ``long_factor`` is ours; one with ``rope_scaling`` /
        ``rope_parameters`` is a HF config; a column of numbers is the reference CSV, which needs
        ``rope_theta``, ``original_length`` and ``target_length``. ``rotary_dim`` (the model's, when
        known): a factor list of another length is a :class:`RotaryDimMismatch` naming the file and
        the list. Whether the rest of the set fits a model (base, L) is
        :func:`longrope.models.factor_files.check_fits`.
        """
        path = Path(path)
        if path.is_dir():
            for name in ("factors.json", "config.json"):
                if (path / name).is_file():
                    path = path / name
                    break
            else:
                raise UserError(f"{path} is a folder without factors.json or config.json")
            if path.name == "config.json" and _run_record_command(path):  # e.g. a fine-tuning or eval run folder
                raise UserError(f"{path.parent} is {_run_record_command(path)} run folder without factors.json; give "
                                "a factor file, a search run folder or a fine-tuned model folder (its model/)")
        text = _read_text(path, "factor file")
        stripped = text.lstrip()
        if path.suffix.lower() == ".csv" or (stripped and stripped[0] not in "{["):
            missing = [
                flag
                for flag, v in (
                    ("--rope-theta", rope_theta),
                    ("--original-length", original_length),
                    ("--target-length", target_length),
                )
                if v is None
            ]
            if missing:
                raise UserError(
                    f"{path} is a reference-code CSV (factors only); give {', '.join(missing)} "
                    "(rope_theta, original_length, target_length)"
                )
            return cls.from_csv(
                path, rope_theta=rope_theta, original_length=original_length, target_length=target_length,
                rotary_dim=rotary_dim,
            )
        obj = _parse_json(text, path)
        if not isinstance(obj, dict):
            raise UserError(f"{path} must hold a JSON object, got {type(obj).__name__}")
        if "long_factor" in obj:
            try:
                fs = cls.from_dict(obj, rotary_dim=rotary_dim)
            except UserError as e:  # name the file the problem is in (keeping a mismatch a mismatch)
                raise (RotaryDimMismatch if isinstance(e, RotaryDimMismatch) else UserError)(f"{path}: {e}") from None
        elif "rope_scaling" in obj or "rope_parameters" in obj:
            fs = cls.from_hf_config(obj, source=str(path), rotary_dim=rotary_dim)
        else:
            raise UserError(
                f"{path} is neither a factors.json (no 'long_factor') nor a Hugging Face config.json "
                "(no 'rope_scaling'/'rope_parameters')"
            )
        return fs


# --------------------------------------------------------------------- reading files
def _run_record_command(path: Path) -> str | None:
    """'a finetune' when ``path`` is the config.json of a longrope run folder (of that command), else None."""
    from longrope.io import read_json

    try:
        doc = read_json(path, what="run configuration")
    except UserError:
        return None
    command = doc.get("command") if doc.get("format") == "longrope-run/1" else None
    return f"{'an' if str(command)[:1] in 'aeiou' else 'a'} {command}" if isinstance(command, str) else None


def _read_text(path: Path, what: str) -> str:
    """A file's text as UTF-8; a byte-order mark is dropped (editors on Windows write one)."""
    try:
        data = read_regular(path)  # a pipe or device named as the file: refused, never waited on
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise UserError(f"cannot read {what} {path}: {getattr(e, 'strerror', None) or e}") from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {e.start}: {e.reason}); save it as UTF-8") from None


def _parse_json(text: str, path: Path) -> Any:
    # NaN/Infinity literals parse (to floats) so that the field check can name the key they sit in.
    try:
        return json.loads(text, object_pairs_hook=json_object)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:  # a number too long to parse, nesting too deep
        raise UserError(f"{path} is not a usable JSON file ({str(e).splitlines()[0][:80] or type(e).__name__})") from None


# --------------------------------------------------------------------- helpers for HF configs
def _rope_type(params: Mapping[str, Any]) -> str | None:
    t = params.get("rope_type", params.get("type"))
    return t if isinstance(t, str) else None


def _hf_longrope_params(config: Mapping[str, Any], source: str) -> Mapping[str, Any]:
    """The longrope rope dict of a config; rope_parameters (5.x) and rope_scaling (4.x) must agree."""
    found: dict[str, Mapping[str, Any]] = {}
    other_types: list[str] = []
    for key in ("rope_parameters", "rope_scaling"):
        value = config.get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise UserError(f"{source}: {key} must be a JSON object, got {type(value).__name__}")
        candidates: list[Mapping[str, Any]]
        if (
            _rope_type(value) is None
            and value
            and all(isinstance(v, Mapping) or v is None for v in value.values())
        ):
            # 5.x per-layer-type form: {"full_attention": {...}, "sliding_attention": {...}}
            candidates = [v for v in value.values() if isinstance(v, Mapping)]
        else:
            candidates = [value]
        longrope = [c for c in candidates if (_rope_type(c) or "").lower() in _HF_LONGROPE_TYPES]
        other_types += [str(_rope_type(c)) for c in candidates if c not in longrope]
        if len(longrope) > 1:
            first = longrope[0]
            if any(c.get("long_factor") != first.get("long_factor") for c in longrope[1:]):
                raise UserError(f"{source}: {key} holds several different longrope entries; not supported")
        if longrope:
            found[key] = longrope[0]
    if not found:
        kinds = ", ".join(sorted(set(other_types))) or "none"
        raise UserError(f"{source} has no longrope rope scaling (rope type: {kinds}); nothing to load")
    if len(found) == 2:
        a, b = found["rope_parameters"], found["rope_scaling"]
        for k in ("long_factor", "short_factor"):
            if a.get(k) is not None and b.get(k) is not None and a[k] != b[k]:
                raise UserError(f"{source}: rope_parameters and rope_scaling disagree on {k}")
        return {**b, **a}
    return next(iter(found.values()))


def _hf_rotary_dim(config: Mapping[str, Any], params: Mapping[str, Any], source: str) -> int | None:
    """The model's rotary dim from head_dim (or hidden_size/num_attention_heads) and partial_rotary_factor."""
    head_dim = config.get("head_dim")
    if head_dim is None:
        hidden, heads = config.get("hidden_size"), config.get("num_attention_heads")
        if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
            head_dim = hidden // heads
    if head_dim is None:
        return None
    prf = params.get("partial_rotary_factor", config.get("partial_rotary_factor", 1.0))
    if prf is None:
        prf = 1.0
    if isinstance(head_dim, numbers.Integral) and not isinstance(head_dim, bool):
        head_dim = _int_field(head_dim, f"{source}: head_dim", 2)
    if isinstance(prf, numbers.Real) and not isinstance(prf, bool):
        prf = _real(prf, f"{source}: partial_rotary_factor")
    try:
        return rotary_dim(head_dim, prf)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def _parse_csv_column(text: str, source: str) -> np.ndarray:
    values: list[float] = []
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise UserError(f"{source} is not a readable CSV ({e})") from None
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells or cells[0].startswith("#"):
            continue
        if len(cells) > 1:
            raise UserError(
                f"{source}:{lineno} has {len(cells)} values; only the one-λ-per-line CSV is supported "
                "(not the per-layer variant)"
            )
        try:
            values.append(float(cells[0]))
        except ValueError:
            raise UserError(f"{source}:{lineno}: {_short(cells[0])} is not a number") from None
    if not values:
        raise UserError(f"{source} holds no factors")
    return _factor_array(values, f"{source}: factor")
