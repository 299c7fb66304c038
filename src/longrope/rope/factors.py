"""``FactorSet``: one LongRoPE rescale result, as a value (pure math: numpy, no file format).

A factor set is everything a model needs to apply LongRoPE (docs/method.md §2, §5, §8):
per-pair rescale factors ``λ_i`` for long sequences (``long_factor``) and for sequences that fit
in the original window (``short_factor``), the number of retained start tokens ``n̂``, the
attention temperature, the original and target lengths and the rope base.

Every :class:`FactorSet` is usable as built (``__post_init__``): L' ≥ L (a factor set extends the
context; L' < L is refused), lengths at most 2^40, n̂ at most min(L, L' − 1), factors finite and > 0 with finite,
positive rescaled frequencies ``θ_i/λ_i`` whose angles stay below 2^52 rad up to L'; a bad value is a
one-line :class:`UserError`.

Its files — ``factors.json`` (format_version 1), a Hugging Face ``config.json`` with longrope scaling
and the reference code's CSV — are read and written by :mod:`longrope.formats` (docs/factors-format.md);
:meth:`FactorSet.load`, :meth:`FactorSet.save` and the other I/O methods below are their entry points
(importing :mod:`longrope.formats` when called: the formats build on this package, not the reverse).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import numbers
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.rope.attention import check_attention_factor, resolve_attention_factor
from longrope.rope.frequencies import check_rope_theta, check_rotary_dim, inv_freq
from longrope.rope.values import (
    FORMAT_VERSION,
    MAX_LENGTH,
    START_TOKENS_WHY,
    RotaryDimMismatch,
    factor_array,
    int_field,
    real_number,
    scalar_value,
    short_repr,
    start_tokens_limit,
)

__all__ = ["FORMAT_VERSION", "MAX_LENGTH", "FactorSet", "RotaryDimMismatch"]

#: the largest rotary angle (radians) a factor set may reach by L': beyond it float64 holds no fraction of a turn
_MAX_ANGLE = 2.0**52


def require_factor_set(obj: Any) -> None:
    """A library caller's factor set is one (its factors and lengths readable): the one check of the functions that
    take a ``factor_set`` (install, export). A path or None was an AttributeError traceback in the export."""
    if not all(hasattr(obj, name) for name in ("long_factor", "short_factor", "original_max_position_embeddings",
                                               "max_position_embeddings")):
        hint = " (load the file with FactorSet.load(path))" if isinstance(obj, (str, os.PathLike)) else ""
        from longrope.errors import UserError

        raise UserError(f"expected a FactorSet (long_factor, short_factor, ...), got {type(obj).__name__}{hint}")


#: provenance key of a dynamic NTK set applied as made at every length: the set a model folder's ``factors.json``
#: holds (its config.json holds those factors for every runtime; a fine-tuned model was trained with them)
APPLIED_AS_MADE = "applied_as_made"


def follows_length(factor_set: Any) -> bool:
    """Whether :func:`~longrope.rope.baselines.at_length` recomputes ``factor_set`` for each length (a dynamic NTK set that says how, and not
    one fixed by :func:`as_made`)."""
    provenance = getattr(factor_set, "provenance", None)
    return getattr(factor_set, "method", None) == "dynamic-ntk" and isinstance(provenance, dict) \
        and isinstance(provenance.get("options"), dict) and not provenance.get(APPLIED_AS_MADE)


def as_made(factor_set: Any) -> Any:
    """``factor_set`` marked to be applied as made at every length (any set that does not follow the length: itself).
    A model folder's factor set is what its config gives transformers, vLLM and llama.cpp at every length above L,
    and what a fine-tuning trained with: evaluated from the folder's ``factors.json`` a dynamic NTK set was recomputed
    per length, so ``eval ppl`` of a fine-tuned model measured factors it was never trained with, unlike its
    ``config.json`` (perplexity 22.8 against 25.9 at 512 tokens on the embedded model; battery 29b)."""
    if not follows_length(factor_set):
        return factor_set
    return factor_set.with_(provenance={**factor_set.provenance, APPLIED_AS_MADE: True})


def _model_rotary_dim(rotary_dim: Any) -> int | None:
    """The model's rotary dim a loader is given, checked (None: not known): 'x' or True was taken and the list
    lengths went unchecked (battery 19)."""
    return None if rotary_dim is None else check_rotary_dim(rotary_dim)


@dataclasses.dataclass(frozen=True, eq=False, kw_only=True)
class FactorSet:
    """Per-pair RoPE rescale factors plus what is needed to apply them (docs/method.md §2).

    Frozen: derive variants with :meth:`with_`. The arrays are private read-only float64 copies (a
    search builds a new FactorSet per genome, which costs microseconds).
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
        for name in ("start_tokens", "attention_factor", "original_max_position_embeddings",
                     "max_position_embeddings", "rope_theta"):
            set_(self, name, scalar_value(getattr(self, name)))  # torch.tensor(1.2) is the number 1.2
        long_ = factor_array(self.long_factor, "long_factor")
        set_(self, "long_factor", long_)
        if self.short_factor is None:
            short = np.ones_like(long_)
        else:
            short = factor_array(self.short_factor, "short_factor")
            if short.size != long_.size:
                # Which list is wrong cannot be told from the two alone: name both (FactorSet.load
                # names the wrong one when it knows the rotary dim, from the model or the file).
                raise UserError(f"long_factor has {long_.size} values but short_factor has {short.size}; both "
                                "lists need rotary_dim/2 values, one per rotary pair")
        set_(self, "short_factor", short)
        self._freeze_arrays()
        set_(self, "start_tokens", int_field(self.start_tokens, "start_tokens", 0))
        if self.attention_factor is not None:  # (null: the longrope policy's, resolved below)
            set_(self, "attention_factor", check_attention_factor(self.attention_factor))
        set_(
            self,
            "original_max_position_embeddings",
            int_field(self.original_max_position_embeddings, "original_max_position_embeddings", 1),
        )
        set_(
            self,
            "max_position_embeddings",
            int_field(self.max_position_embeddings, "max_position_embeddings", 1),
        )
        if self.max_position_embeddings < self.original_max_position_embeddings:
            raise UserError(
                f"max_position_embeddings L' = {self.max_position_embeddings} is below "
                f"original_max_position_embeddings L = {self.original_max_position_embeddings}; a factor set "
                "extends the context, so L' must be >= L (fix the target length or the file)"
            )
        limit = start_tokens_limit(self.original_max_position_embeddings, self.max_position_embeddings)
        if self.start_tokens > max(limit, 0):
            raise UserError(f"start_tokens n̂ = {self.start_tokens} is more than {limit} for L = "
                            f"{self.original_max_position_embeddings}, L' = {self.max_position_embeddings}: "
                            f"{START_TOKENS_WHY}; give n̂ from 0 to {limit} (fix the file)")
        theta = self.rope_theta
        if not isinstance(theta, bool) and isinstance(theta, numbers.Real):
            theta = real_number(theta, "rope_theta")
        set_(self, "rope_theta", check_rope_theta(theta))
        self.resolved_attention_factor()  # usable as built: L = 1 with s > 1 has no default temperature
        for name, lam in (("long_factor", long_), ("short_factor", short)):
            with np.errstate(over="ignore", divide="ignore", under="ignore"):
                freq = inv_freq(self.rope_theta, 2 * lam.size) / lam  # [d/2]
            if not (np.isfinite(freq).all() and (freq > 0).all()):
                i = int(np.flatnonzero(~(np.isfinite(freq) & (freq > 0)))[0])
                raise UserError(f"{name}[{i}] = {lam[i]:g} with rope_theta {self.rope_theta:g} gives a rescaled "
                                "frequency that is not a finite positive number; use factors of a sane size")
            # angles p·θ_i/λ_i past 2^52 rad are not computable (the float64 reduction into [-π, π] loses whole
            # turns, then NaN): λ = 1e-300 ran and gave perplexity NaN (battery 5)
            if (freq * self.max_position_embeddings >= _MAX_ANGLE).any():
                i = int(np.flatnonzero(freq * self.max_position_embeddings >= _MAX_ANGLE)[0])
                raise UserError(f"{name}[{i}] = {lam[i]:g} with rope_theta {self.rope_theta:g} gives rotary angles "
                                f"past 2^52 rad by position {self.max_position_embeddings} (not computable: NaN "
                                "results); use factors of a sane size")
        if not isinstance(self.method, str) or not self.method:
            raise UserError(f"method must be a non-empty string, got {short_repr(self.method)}")
        if not isinstance(self.provenance, Mapping):
            raise UserError(f"provenance must be a JSON object (dict), got {type(self.provenance).__name__}")
        try:  # a deep copy, as the arrays are: the caller's nested dicts (options) edited afterwards edited this set
            set_(self, "provenance", copy.deepcopy(dict(self.provenance)))
        except (TypeError, copy.Error) as exc:  # (a lock, a module: nothing a JSON record holds)
            raise UserError(f"provenance must be a JSON object (text, numbers, lists and dicts), got a value that "
                            f"cannot be copied: {exc}") from None

    def _freeze_arrays(self) -> None:
        """Frozen means frozen: ``fs.long_factor[0] = 2`` edited a set in use (its digest, its equality)."""
        for arr in (self.long_factor, self.short_factor):
            arr.setflags(write=False)

    def __setstate__(self, state: dict) -> None:
        """Unpickled (a search worker's copy) or deep-copied: numpy hands back writable arrays; frozen again."""
        self.__dict__.update(state)
        self._freeze_arrays()

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
        seq_len = int_field(scalar_value(seq_len), "seq_len", 0)  # 'x' was a TypeError, NaN the short factors
        return self.long_factor if seq_len > self.original_max_position_embeddings else self.short_factor

    def inv_freq(self, which: str = "long") -> np.ndarray:
        """Rescaled frequencies ``θ_i / λ_i`` (float64, [d/2]) for ``which`` in {"long", "short"}."""
        if which not in ("long", "short"):
            raise UserError(f"which must be 'long' or 'short', got {short_repr(which)}")
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
        require_factor_set(other)
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
        require_factor_set(other)  # 'x' was an AttributeError
        rtol, atol = (real_number(scalar_value(tol), name) for name, tol in (("rtol", rtol), ("atol", atol)))
        for name, tol in (("rtol", rtol), ("atol", atol)):  # NaN compared every set equal, with numpy's warning
            if tol < 0:  # the checked float is what numpy gets: a 10**40 integer was its isfinite TypeError
                raise UserError(f"{name} must be a number >= 0, got {short_repr(tol)}")
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

    # ----------------------------------------------------------------- files (longrope.formats)
    def to_dict(self) -> dict[str, Any]:
        """The ``factors.json`` object (plain Python types; floats round-trip exactly through JSON)."""
        from longrope.formats import factors as files

        return files.to_json(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], *, rotary_dim: int | None = None) -> FactorSet:
        """Parse a ``factors.json`` object; any problem → :class:`UserError` naming the key.

        ``rotary_dim``: the model's, when known: a list of another length is a
        :class:`RotaryDimMismatch` naming that list. Without it, the file's own ``rotary_dim`` names
        the list that was cut when the two lists differ."""
        from longrope.formats import factors as files

        return files.from_json(cls, d, rotary_dim=_model_rotary_dim(rotary_dim))

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``factors.json`` atomically (a killed process never leaves half a file)."""
        from longrope.formats import factors as files

        return files.save_json(self, path)

    def save_csv(self, path: str | os.PathLike) -> Path:
        """Write ``long_factor`` in the reference code's CSV (one λ per line; everything else is lost)."""
        from longrope.formats import factors as files

        return files.save_csv(self, path)

    @classmethod
    def from_hf_config(cls, config: Mapping[str, Any], *, source: str = "config.json",
                       rotary_dim: int | None = None) -> FactorSet:
        """Read LongRoPE factors from a Hugging Face config dict (``rope_scaling`` or ``rope_parameters``);
        see :func:`longrope.formats.hf_config.longrope_fields`. (Writing a config is the export's job:
        :func:`longrope.models.export.longrope_config_entries`.)"""
        from longrope.formats import hf_config

        return cls(**hf_config.longrope_fields(config, source=source, rotary_dim=_model_rotary_dim(rotary_dim)))

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
        from longrope.formats import factors as files

        return cls(**files.csv_fields(path, rope_theta=rope_theta, original_length=original_length,
                                       target_length=target_length, method=method, start_tokens=start_tokens,
                                       rotary_dim=_model_rotary_dim(rotary_dim)))

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
        :func:`longrope.models.factor_files.check_fits`. A dynamic NTK ``factors.json`` whose ``config.json`` beside it
        applies the same long factors (a model folder's) is read as made (:func:`as_made`), as that folder's runtimes
        apply it.
        """
        from longrope.formats import factors as files

        fs = files.load(cls, path, rope_theta=rope_theta, original_length=original_length,
                        target_length=target_length, rotary_dim=_model_rotary_dim(rotary_dim))
        if follows_length(fs) and files.applied_by_its_config(files.factor_file(path), fs.long_factor):
            # a model folder's factors.json written before export marked it (as_made): its config.json applies these
            # factors at every length, and a fine-tuning trained with them (battery 29b's review)
            fs = as_made(fs)
        return fs
