"""Install LongRoPE factors into a loaded transformers model, swap them fast, restore the original.

Design (the torchtune habit: inject the position-embedding module, never edit attention code):
in transformers ≥ 4.48 the decoder computes ``position_embeddings = self.rotary_emb(hidden,
position_ids)`` once per forward and passes ``(cos, sin)`` to every layer. We replace that single
module, ``model.model.rotary_emb``, by :class:`LongRopeRotaryEmbedding` and keep the original to
put back. Nothing process-wide is patched; two models in one process are independent.

What the replacement computes, for position ``p`` and pair ``i`` (docs/method.md §2):

- angle ``p·θ_i`` for ``p < n̂`` (retained start tokens), ``p·θ_i/λ_i`` otherwise;
- ``λ`` = the long factors when ``max(position_ids) + 1 > L``, the short ones otherwise — the same
  switch transformers' own ``longrope`` rope type makes, decided per forward call for the whole batch;
- cos and sin both multiplied by the attention factor m, on every row (start tokens included: the
  reference code forgot those rows);
- angles in float64, reduced into [−π, π], then cast to float32 for cos/sin, then to the model dtype.
  At 2M positions a float32 ``p·θ`` is off by ~0.1 rad on the fastest pair; this is not.

KV cache: ``generate()`` passes absolute ``position_ids`` for the new tokens, so n̂ holds. When
generation crosses L, stock transformers keeps the cached keys rotated with the short factors while
new tokens use the long ones (every longrope family but Phi-3, which drops the cache and re-prefills
once). The patch carries a cache policy (:mod:`longrope.models.cache_switch`): ``"reprefill"``
(default) drops the cache at the crossing step for every family, so ``generate()`` equals a
from-scratch forward with the long factors; ``"rerotate"`` re-rotates the cached keys in one pass
(cheap, exact for the first layer only); ``"keep"`` is the stock behaviour. ``patch.mode = "long"``
uses the long factors from the first token (what vLLM does when ``max_model_len > L``, and llama.cpp
when the context is larger than L).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn

from longrope.errors import UserError, shown
from longrope.models.cache_switch import CACHE_POLICIES, CacheSwitch
from longrope.models.factor_files import check_rotary_fit
from longrope.models.families import (
    FAMILIES,
    RopeInfo,
    _find_rotary_owner,
    inspect_model,
    require_supported,
    unwrap_adapters,
)
from longrope.options import check_loaded_model
from longrope.rope import inv_freq as rope_inv_freq
from longrope.rope.factors import require_factor_set
from longrope.settings import SWITCH_MODES

__all__ = ["CACHE_POLICIES", "MODES", "LongRopeRotaryEmbedding", "RopePatch", "check_cache_policy", "check_mode", "current_patch",
           "install_factors"]

log = logging.getLogger(__name__)

_TWO_PI = 2.0 * math.pi
# Buffers this module keeps in float64 whatever ``model.to(dtype)`` asks (see ``_apply``).
_FP64_BUFFERS = ("base_inv_freq", "short_inv_freq", "long_inv_freq")
MODES = SWITCH_MODES
"""``switch``: short factors while max(position)+1 <= L, long beyond (transformers); ``long``: always long."""


def _base_inv_freq(rope_theta: float, rotary_dim: int) -> np.ndarray:
    """θ_i = 1 / b^(2i/d), float64 [d/2]: transformers' ``inv_freq`` formula, without its float32 rounding."""
    return rope_inv_freq(rope_theta, rotary_dim)


@dataclasses.dataclass(frozen=True)
class _Resolved:
    """A factor set turned into what the forward pass needs (validated against the model)."""

    short_inv_freq: np.ndarray  # [d/2] float64, θ_i / λ_short_i
    long_inv_freq: np.ndarray  # [d/2] float64, θ_i / λ_long_i
    start_tokens: int
    attention_scaling: float
    original_max_position_embeddings: int


def _resolve(factor_set: Any, info: RopeInfo, base: np.ndarray) -> _Resolved:
    """Check a factor set against the model and precompute its rescaled frequencies."""
    require_factor_set(factor_set)
    long_f = np.asarray(factor_set.long_factor, dtype=np.float64)
    short_f = np.asarray(factor_set.short_factor, dtype=np.float64)
    check_rotary_fit(factor_set, info.rotary_dim, info.rope_theta, source="factor set",
                     who=f"this {info.family} model", fix="use a factor file made for this model")
    for name, arr in (("long_factor", long_f), ("short_factor", short_f)):
        if arr.ndim != 1:
            raise UserError(f"{name} must be a flat list of factors, got shape {arr.shape}")
        if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
            raise UserError(f"{name} must be finite and > 0")
    L = int(factor_set.original_max_position_embeddings)
    n_hat = int(factor_set.start_tokens)
    if n_hat < 0:
        raise UserError(f"start_tokens must be >= 0, got {n_hat}")
    m = float(factor_set.resolved_attention_factor())
    if not math.isfinite(m) or m <= 0:
        raise UserError(f"attention factor must be finite and > 0, got {m}")
    return _Resolved(base / short_f, base / long_f, n_hat, m, L)


class LongRopeRotaryEmbedding(nn.Module):
    """Drop-in replacement for a family's ``*RotaryEmbedding``: same call, same (cos, sin) shapes/dtypes.

    ``forward(x, position_ids) -> (cos, sin)``, each ``[batch, seq, rotary_dim]`` in ``x.dtype`` on
    ``x.device``, laid out ``cat(freqs, freqs)`` like transformers (rotate_half convention).
    The frequency tables are float64 buffers preallocated once; :meth:`load` copies new values
    into them (no reallocation), which is what makes :meth:`RopePatch.swap` cheap.
    """

    _host_switch_devices: tuple[str, ...] = ("cpu",)
    """Device types whose positions decide the switch on the host (others keep it on the device)."""

    def __init__(self, info: RopeInfo, resolved: _Resolved, config: Any = None):
        super().__init__()
        self.rotary_dim = int(info.rotary_dim)
        self.rope_theta = float(info.rope_theta)
        self.rope_type = "longrope"  # informational, mirrors the transformers attribute
        self.config = config
        base = _base_inv_freq(self.rope_theta, self.rotary_dim)
        # Non-persistent: never written into a state dict, so saving the model is unaffected.
        self.register_buffer("base_inv_freq", torch.from_numpy(base.copy()), persistent=False)  # [d/2] f64
        self.register_buffer("short_inv_freq", torch.empty_like(self.base_inv_freq), persistent=False)
        self.register_buffer("long_inv_freq", torch.empty_like(self.base_inv_freq), persistent=False)
        self.start_tokens = 0
        # m for rows computed with the short / the long factors. A factor set has one m and
        # transformers applies it to both; vLLM has one per regime (short_mscale / long_mscale).
        self.short_attention_scaling = 1.0
        self.long_attention_scaling = 1.0
        self.original_max_position_embeddings = 1
        self.always_long = False
        """True: long factors for every call, whatever the length (``RopePatch.mode = "long"``)."""
        object.__setattr__(self, "replaced", None)  # a plain attribute, not a submodule (one rotary_emb in the tree)
        """The model's own rotary module this one replaces (set by :func:`install_factors`): ``model.to(...)`` reaches
        it through this one (:meth:`_apply`), so that :meth:`RopePatch.restore` puts back the module the model would
        have had."""
        self.load(resolved)

    @torch.no_grad()
    def load(self, resolved: _Resolved) -> None:
        """Copy a resolved factor set into the existing buffers (in place, any device)."""
        self.short_inv_freq.copy_(torch.from_numpy(resolved.short_inv_freq))
        self.long_inv_freq.copy_(torch.from_numpy(resolved.long_inv_freq))
        self.start_tokens = resolved.start_tokens
        self.attention_scaling = resolved.attention_scaling
        self.original_max_position_embeddings = resolved.original_max_position_embeddings

    @property
    def attention_scaling(self) -> float:
        """The attention factor m (of the long rows; the short rows use ``short_attention_scaling``)."""
        return self.long_attention_scaling

    @attention_scaling.setter
    def attention_scaling(self, value: float) -> None:
        self.short_attention_scaling = self.long_attention_scaling = float(value)

    def uses_long(self, position_ids: torch.Tensor) -> bool:
        """Whether a call with these positions uses the long factors (host decision: syncs once)."""
        if self.always_long:
            return True
        return int(position_ids.max()) + 1 > self.original_max_position_embeddings

    def regime_scaling(self, long: bool) -> float:
        """m of the rows computed with the long (True) or short (False) factors."""
        return self.long_attention_scaling if long else self.short_attention_scaling

    def _apply(self, fn, recurse=True):  # noqa: D401 - nn.Module hook
        """Follow ``model.to(device)`` but keep the frequency tables in float64.

        ``model.to(torch.bfloat16)`` casts every floating buffer; transformers' own ``inv_freq``
        silently loses precision that way. Ours move device only. Devices without float64 (MPS)
        keep the tables on the CPU; ``forward`` then computes the angles there.
        """
        saved = {name: self._buffers[name] for name in _FP64_BUFFERS}
        super()._apply(fn, recurse)
        for name, old in saved.items():
            new = self._buffers[name]
            target = new.device if new.device.type != "mps" else torch.device("cpu")
            if new.dtype != torch.float64 or new.device != target:
                self._buffers[name] = old.to(device=target)
        replaced = self.__dict__.get("replaced")
        if replaced is not None:
            # the model's own module, out of the tree while this one stands in for it, follows the cast or move the
            # model gets: restore() after model.to(torch.bfloat16) put back a float32 inv_freq, and the model it
            # gave back was not the unpatched model (logits 0.02 apart in bfloat16; battery 29a)
            replaced._apply(fn, recurse)
        return self

    def _is_long(self, position_ids: torch.Tensor) -> torch.Tensor | bool:
        """The switch for this call: a Python bool, or a 0-d bool tensor on the tables' device.

        On the CPU the decision is taken on the host (nothing to synchronise with, and it saves the
        ``where`` ops in the decoding loop); on an accelerator it stays on the device, like transformers.
        """
        if self.always_long:
            return True
        if position_ids.device.type in self._host_switch_devices:
            return int(position_ids.max()) + 1 > self.original_max_position_embeddings
        dev = self.base_inv_freq.device
        return position_ids.max().to(dev) + 1 > self.original_max_position_embeddings

    def angles(self, position_ids: torch.Tensor, long: bool | None = None) -> torch.Tensor:
        """Rotary angles ``[batch, seq, d/2]`` float64 (not reduced).

        ``long=None`` applies the switch (or ``always_long``) like ``forward``; True/False forces the
        long/short factors (the cache re-rotation needs both for the same positions).
        """
        dev = self.base_inv_freq.device
        pos = position_ids.to(device=dev, dtype=torch.float64)  # [batch, seq]
        if long is None:
            is_long = self._is_long(position_ids)  # one decision for the whole call, like transformers
            if isinstance(is_long, bool):
                inv = self.long_inv_freq if is_long else self.short_inv_freq
            else:
                inv = torch.where(is_long, self.long_inv_freq, self.short_inv_freq)
        else:
            inv = self.long_inv_freq if long else self.short_inv_freq  # [d/2]
        freqs = pos[..., None] * inv  # [batch, seq, d/2]
        if self.start_tokens > 0:
            keep = (pos < self.start_tokens)[..., None]  # [batch, seq, 1]
            freqs = torch.where(keep, pos[..., None] * self.base_inv_freq, freqs)
        return freqs

    def _scaling(self, position_ids: torch.Tensor) -> torch.Tensor | float:
        """m for this call: a float when both regimes share it (the usual case), else a 0-d tensor."""
        if self.always_long or self.short_attention_scaling == self.long_attention_scaling:
            return self.long_attention_scaling
        is_long = self._is_long(position_ids)
        if isinstance(is_long, bool):
            return self.regime_scaling(is_long)
        m = torch.tensor([self.short_attention_scaling, self.long_attention_scaling], device=is_long.device)
        return m[is_long.long()].float()

    @torch.no_grad()
    def forward(self, x: torch.Tensor, position_ids: torch.Tensor | None = None, layer_type: Any = None):
        if layer_type is not None:
            raise UserError("per-layer-type RoPE is not supported by longrope")
        if position_ids is None:  # the decoders always pass them; be lenient for direct calls
            position_ids = torch.arange(x.shape[1], device=x.device)[None]
        # Reduce into [−π, π] in float64 first (subtract whole turns: torch.remainder is ~20× slower on
        # CPU float64): the float32 cast then loses < 2e-7 rad at any position.
        freqs = self.angles(position_ids)  # [batch, seq, d/2] float64, a fresh tensor
        turns = torch.round(freqs * (1.0 / _TWO_PI))
        freqs = freqs.sub_(turns.mul_(_TWO_PI)).to(torch.float32)
        # Trig on the d/2 distinct angles, then duplicate: transformers' cat(freqs, freqs) layout
        # (rotate_half pairs channel i with i + d/2) at half the trig cost.
        m = self._scaling(position_ids)
        if isinstance(m, torch.Tensor):
            m = m.to(freqs.device)
        cos, sin = freqs.cos(), freqs.sin()  # [batch, seq, d/2]
        if not (isinstance(m, float) and m == 1.0):
            cos, sin = cos.mul_(m), sin.mul_(m)
        cos = torch.cat((cos, cos), dim=-1).to(device=x.device, dtype=x.dtype)  # [batch, seq, d]
        sin = torch.cat((sin, sin), dim=-1).to(device=x.device, dtype=x.dtype)
        return cos, sin

    def extra_repr(self) -> str:
        return (
            f"rotary_dim={self.rotary_dim}, rope_theta={self.rope_theta:g}, "
            f"L={self.original_max_position_embeddings}, start_tokens={self.start_tokens}, "
            f"attention_scaling={self.attention_scaling:.6g}, always_long={self.always_long}"
        )


class _SwitchingPrepare:
    """A patched model's ``prepare_inputs_for_generation``: its class's method run through the patch's
    :meth:`CacheSwitch.prepare_inputs`. An object holding the switch, the plain function and the model, not a
    closure: ``copy.deepcopy`` of a patched model gives the copy a wrapper of its own switch and model (a closure
    was shared, so the copy's ``generate()`` went through the original's switch and, once that was restored,
    no longer re-prefilled at L), and ``pickle`` / ``torch.save`` of the model work as for an unpatched one."""

    def __init__(self, switch: CacheSwitch, base: Any, model: nn.Module) -> None:
        self.switch = switch
        own = inspect.ismethod(base) and base.__self__ is model  # kept unbound, bound to the model at each call
        self.function, self.model = (base.__func__, model) if own else (base, None)

    def _base(self) -> Any:
        return self.function.__get__(self.model) if self.model is not None else self.function

    @property
    def __signature__(self) -> inspect.Signature:  # the method's own: generate() inspects it
        return inspect.signature(self._base())

    def __call__(self, input_ids: Any, *args: Any, **kwargs: Any) -> Any:
        return self.switch.prepare_inputs(self._base(), input_ids, *args, **kwargs)


class RopePatch:
    """Handle on an installed patch: ``swap`` factors, ``restore`` the original RoPE.

    Usable as a context manager (``with install_factors(model, fs) as patch: ...`` restores on exit).
    """

    def __init__(
        self,
        model: nn.Module,
        owner: nn.Module,
        original: nn.Module,
        module: LongRopeRotaryEmbedding,
        info: RopeInfo,
        factor_set: Any,
    ):
        self.model = model
        self.info = info
        self._owner = owner
        self._original = original
        self._module = module
        self._base = _base_inv_freq(info.rope_theta, info.rotary_dim)
        self.factor_set = factor_set
        self._warned_lengths: set[int] = set()
        self._warn_once_about_length(int(factor_set.original_max_position_embeddings))
        self._switch = CacheSwitch(owner, module, info.rotary_dim)
        self._wrapped_prepare = False

    # ------------------------------------------------------------------ generation behaviour
    @property
    def mode(self) -> str:
        """``"switch"`` (short factors up to L, long beyond; default) or ``"long"`` (long from the first token)."""
        return "long" if self._module.always_long else "switch"

    @mode.setter
    def mode(self, value: str) -> None:
        self._module.always_long = check_mode(value) == "long"

    @property
    def cache_policy(self) -> str:
        """At the short→long switch: ``"reprefill"`` (default, exact), ``"rerotate"`` or ``"keep"`` (stock)."""
        return self._switch.policy

    @cache_policy.setter
    def cache_policy(self, value: str) -> None:
        self._switch.policy = check_cache_policy(value)
        self._sync_generation_wrapper()

    @property
    def rerotations(self) -> int:
        """How many times a KV cache was re-rotated at the switch since install."""
        return self._switch.rerotations

    @property
    def reprefills(self) -> int:
        """How many times ``generate()`` re-prefilled at the switch since install."""
        return self._switch.reprefills

    def _sync_generation_wrapper(self) -> None:
        """Wrap this model's ``prepare_inputs_for_generation`` while the patch is active and not "keep".

        The wrapper (:meth:`CacheSwitch.prepare_inputs`) re-prefills at our L. It is an attribute of
        this one model instance, shadowing the class method; deleting it restores the class method.
        Nothing is patched process-wide. Phi-3's own override (a reset keyed on the config's L) is
        skipped in favour of the generic method it would call after its check, as our switch is at
        the factor set's L.
        """
        model = self.model
        # A bare decoder (AutoModel) does not generate: nothing to wrap.
        want = self.active and self._switch.policy != "keep" and hasattr(model, "prepare_inputs_for_generation")
        if want and not self._wrapped_prepare:
            # The class's own method, looked up through the class so that a copy's wrapper binds to the copy.
            owner = super(type(model), model) if _resets_cache_at_switch(model) else model
            wrapper = _SwitchingPrepare(self._switch, owner.prepare_inputs_for_generation, model)
            object.__setattr__(model, "prepare_inputs_for_generation", wrapper)
            self._wrapped_prepare = True
        elif not want and self._wrapped_prepare:
            object.__delattr__(self.model, "prepare_inputs_for_generation")
            self._wrapped_prepare = False

    @property
    def module(self) -> LongRopeRotaryEmbedding:
        """The injected rotary module."""
        return self._module

    @property
    def original(self) -> nn.Module:
        """The model's own rotary module (what ``restore`` puts back)."""
        return self._original

    @property
    def active(self) -> bool:
        """True while the model runs with the installed factors."""
        return self._owner.rotary_emb is self._module

    def swap(self, factor_set: Any | None) -> RopePatch:
        """Run the model with ``factor_set`` from now on; ``None`` puts the original RoPE back.

        Copies the new tables into the preallocated buffers (no reallocation, no model reload):
        a few tens of microseconds on CPU. A factor set of the wrong size raises :class:`UserError`
        and leaves the current factors in place.
        """
        if factor_set is None:
            self._attach(self._original)
            self.factor_set = None
            return self
        resolved = _resolve(factor_set, self.info, self._base)
        self._warn_once_about_length(resolved.original_max_position_embeddings)
        self._module.load(resolved)
        self._attach(self._module)
        self.factor_set = factor_set
        return self

    def _warn_once_about_length(self, L: int) -> None:
        """A factor set made for another L is allowed (it defines the switch point) but worth one warning."""
        if L != self.info.original_max_position_embeddings and L not in self._warned_lengths:
            self._warned_lengths.add(L)
            log.warning(
                "factor set original length L=%d differs from the model's %s; short/long factors switch at %d",
                L,
                self.info.original_max_position_embeddings,
                L,
            )

    def _attach(self, new: nn.Module) -> None:
        """Put ``new`` in place of the current rotary module, on the device the model has moved to.

        The detached module does not follow ``model.to(...)``, so bring it to where the attached
        one lives (``.to(device)`` only: our float64 tables and transformers' float32 ones keep
        their dtypes).
        """
        current = self._owner.rotary_emb
        if current is not new:
            device = _buffer_device(current)
            if device is not None and device != _buffer_device(new):
                new.to(device)
            self._owner.rotary_emb = new
        self._sync_generation_wrapper()

    def restore(self) -> nn.Module:
        """Put the original rotary module back (the very same object); returns the model."""
        self.swap(None)
        return self.model

    def __enter__(self) -> RopePatch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.restore()


def check_mode(value: Any) -> str:
    """``value`` when it is one of :data:`MODES`, else the one refusal of a patch mode."""
    if not isinstance(value, str) or value not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {shown(value)}")
    return value


def check_cache_policy(value: Any) -> str:
    """``value`` when it is one of :data:`CACHE_POLICIES`, else the one refusal of a cache policy."""
    if not isinstance(value, str) or value not in CACHE_POLICIES:
        raise UserError(f"cache policy must be one of {', '.join(CACHE_POLICIES)}, got {shown(value)}")
    return value


def current_patch(model: nn.Module) -> RopePatch | None:
    """The patch installed on ``model`` (active or not), or None. An adapter wrapper (peft) answers for its model."""
    return getattr(unwrap_adapters(model), "_longrope_patch", None)


def _resets_cache_at_switch(model: nn.Module) -> bool:
    """Whether this model class drops its KV cache when generation crosses L (its family's row says so:
    Phi-3 in transformers) and still carries the override that does it."""
    family = FAMILIES.get(getattr(getattr(model, "config", None), "model_type", None))
    return family is not None and family.resets_cache_at_switch and (
        "prepare_inputs_for_generation" in vars(type(model))
    )


def _buffer_device(module: nn.Module) -> torch.device | None:
    for buf in module.buffers():
        return buf.device
    return None


def check_factor_sets(model: nn.Module, named_sets: Any) -> None:
    """Each factor set of ``named_sets`` (``(name, FactorSet or None)`` pairs) fits ``model``, by the checks
    :func:`install_factors` and :meth:`RopePatch.swap` make, before the first one is used: a suite of sets refused
    its third after measuring the first two (battery 20b)."""
    named_sets = [(name, fs) for name, fs in named_sets if fs is not None]
    if not named_sets:  # the model's own RoPE only: nothing to fit
        return
    info = require_supported(inspect_model(unwrap_adapters(model)))
    base = _base_inv_freq(info.rope_theta, info.rotary_dim)
    for name, fs in named_sets:
        if fs is not None:
            try:
                _resolve(fs, info, base)
            except UserError as e:
                raise UserError(f"factor set {name!r}: {e}") from None


def install_factors(model: nn.Module, factor_set: Any) -> RopePatch:
    """Make ``model`` use ``factor_set`` (a :class:`~longrope.rope.FactorSet`), in place.

    Raises :class:`UserError` for an unsupported model or a factor set that does not fit it
    (wrong rotary dim, other rope base). Installing on a model that already carries a patch
    swaps the factors of that patch and returns it (one patch per model). A peft ``PeftModel`` is patched
    through the model it wraps (the same patch either way round). ``None`` is refused on any model (it restored a
    patched model's own RoPE and was refused on an unpatched one, battery 29a): ``patch.restore()`` or
    ``patch.swap(None)`` put the original RoPE back.
    """
    if factor_set is None:
        raise UserError("install_factors needs a FactorSet, got None; to run the model with its own RoPE again, "
                        "call restore() (or swap(None)) on the patch install_factors returned")
    model = unwrap_adapters(model)
    existing = getattr(model, "_longrope_patch", None)
    if existing is not None:
        return existing.swap(factor_set)
    info = require_supported(inspect_model(model))
    check_loaded_model(model, "install_factors")  # on the meta device the tables would be empty, then noise
    owner = _find_rotary_owner(model)
    original = owner.rotary_emb
    base = _base_inv_freq(info.rope_theta, info.rotary_dim)
    resolved = _resolve(factor_set, info, base)
    ref = original.inv_freq if isinstance(getattr(original, "inv_freq", None), torch.Tensor) else None
    device = ref.device if ref is not None else next(model.parameters()).device
    module = LongRopeRotaryEmbedding(info, resolved, config=getattr(original, "config", None)).to(device)
    object.__setattr__(module, "replaced", original)
    patch = RopePatch(model, owner, original, module, info, factor_set)
    # A plain attribute (not a submodule) so it stays out of state_dict / named_modules.
    object.__setattr__(model, "_longrope_patch", patch)
    patch._attach(module)
    return patch
