"""What happens to a KV cache when generation crosses the short/long switch at L.

The patched rotary module (:mod:`longrope.models.patch`) uses the short factors while
``max(position)+1 <= L`` and the long ones beyond. A cache filled before the crossing holds keys
(and values, and every deeper layer's inputs) computed with the short factors; a from-scratch
forward of the grown sequence computes all of them with the long factors. Three policies:

- ``"reprefill"`` (default, exact): at the step that crosses, ``generate()`` drops the cache and
  feeds the whole sequence once with the long factors — what transformers does for Phi-3 only,
  here for every family (a wrapper around the model's ``prepare_inputs_for_generation``). Every
  later step equals a from-scratch forward with the long factors.
- ``"rerotate"`` (cheap, exact for the first layer only): re-rotate the cached keys from the short
  to the long factors in one pass — rotations compose,
  ``k_long(p) = (m_long/m_short) · R(φ_long(p) − φ_short(p)) · k_short(p)`` per position and pair,
  with the module's own angles (n̂ included: Δ = 0 below n̂), in float64 then float32. This repairs
  the rotation of every cached key, but the keys and values of layers ≥ 1 were computed from hidden
  states that attended with the short factors, and no rotation changes that: only a re-prefill is
  exact for a model with more than one layer. ``bench/bench_generate.py`` measures the gap.
- ``"keep"``: stock transformers (non-Phi-3): cached keys keep the short rotation beside long queries.

Layout facts the re-rotation relies on (transformers 5.24, every supported family — Llama, Mistral,
Qwen2, Qwen3, Phi-3, Gemma, Gemma 2): the cache stores keys *after* rotation, shaped
``[batch, kv_heads, tokens, head_dim]``; the rotation is the ``rotate_half`` one (channel ``i`` pairs
with ``i + d/2``) on the first ``rotary_dim`` channels (Phi-3's partial rotary leaves the rest
untouched); cos and sin both carry m. Qwen3's q/k norms act before the rotation. Tests check it
against a from-scratch forward on one-layer models of each family, where it is exact.

Positions of cached keys are recorded by a forward pre-hook / hook pair on the decoder (the module
that owns ``rotary_emb``): each call's ``position_ids`` (or the decoder's default, ``past +
arange``) are appended to a per-cache record, so left-padded batches (per-row positions) and
sliding-window layers (which keep only the most recent keys) get the positions their keys really
have. Re-rotatable cache layers: ``DynamicLayer``, ``DynamicSlidingWindowLayer`` (the
``DynamicCache`` that ``generate()`` builds) and ``StaticLayer``; any other raises
:class:`~longrope.errors.UserError` naming the fix.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import weakref
from typing import Any

import torch
from torch import nn

from longrope.errors import UserError
from longrope.settings import CACHE_POLICIES

__all__ = ["CACHE_POLICIES", "CacheSwitch", "rerotate_keys_"]

log = logging.getLogger(__name__)

_TWO_PI = 2.0 * math.pi


@dataclasses.dataclass
class _CacheRecord:
    """What one cache holds: the position of every key appended so far, and their rotation regime.

    Positions are kept as the list of per-call chunks and joined only when needed (a crossing, a
    crop): appending one token per decoding step stays O(1) instead of copying the whole history.
    """

    chunks: list  # of [batch, tokens_k] int64 tensors, in cache order
    length: int
    long: bool

    @property
    def positions(self) -> torch.Tensor:
        """All positions ``[batch, tokens]`` (joins the chunks once)."""
        if len(self.chunks) > 1:
            self.chunks = [torch.cat(self.chunks, dim=1)]
        return self.chunks[0]

    @positions.setter
    def positions(self, value: torch.Tensor) -> None:
        self.chunks = [value]
        self.length = int(value.shape[1])

    def append(self, pos: torch.Tensor) -> None:
        self.chunks.append(pos)
        self.length += int(pos.shape[1])

    @classmethod
    def new(cls, pos: torch.Tensor, long: bool) -> _CacheRecord:
        return cls([pos], int(pos.shape[1]), long)


def rerotate_keys_(
    keys: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, ratio: float, rotary_dim: int
) -> None:
    """Rotate cached keys in place by the angle whose cos/sin are given, then scale them by ``ratio``.

    ``keys`` ``[batch, heads, tokens, head_dim]`` (any float dtype); ``cos``/``sin``
    ``[batch, tokens, rotary_dim/2]`` float32. Only the first ``rotary_dim`` channels change.
    """
    half = rotary_dim // 2
    rot = keys[..., :rotary_dim]  # a view: writing into it writes the cache
    x = rot.to(torch.float32)  # [batch, heads, tokens, d]
    x1, x2 = x[..., :half], x[..., half:]
    c = cos[:, None].to(x.device)  # [batch, 1, tokens, d/2]
    s = sin[:, None].to(x.device)
    new = torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1)  # rotate_half convention
    if ratio != 1.0:
        new.mul_(ratio)
    rot.copy_(new)


def _layer_keys(layer: Any) -> torch.Tensor | None:
    """The valid cached keys of one cache layer as a writable view, or None when empty."""
    from transformers.cache_utils import DynamicLayer, DynamicSlidingWindowLayer, StaticLayer

    kind = type(layer)
    if kind in (DynamicLayer, DynamicSlidingWindowLayer):
        keys = getattr(layer, "keys", None)
        if not getattr(layer, "is_initialized", False) or keys is None or keys.numel() == 0:
            return None
        return keys  # [batch, heads, tokens, head_dim]; sliding layers hold the most recent tokens
    if kind is StaticLayer:
        if not getattr(layer, "is_initialized", False):
            return None
        n = int(layer.cumulative_length)
        return layer.keys[:, :, :n] if n else None
    raise UserError(
        f"cannot re-rotate a {kind.__name__} KV cache at the short/long switch; generate with the default "
        "DynamicCache, or with mode='long' (long factors from the first token)"
    )


class CacheSwitch:
    """Decoder hooks and a ``prepare_inputs_for_generation`` wrapper carrying out the cache policy.

    ``policy`` is one of :data:`CACHE_POLICIES`. ``rerotations`` / ``reprefills`` count what was
    done (diagnostics, tests, benchmarks).
    """

    def __init__(self, decoder: nn.Module, module: nn.Module, rotary_dim: int):
        self.decoder = decoder
        self.module = module
        self.rotary_dim = int(rotary_dim)
        self.policy = "reprefill"
        self.rerotations = 0
        self.reprefills = 0
        self._records: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._pending: tuple | None = None
        self._warned = False
        self._warned_rerotate = False
        self._handles = (
            decoder.register_forward_pre_hook(self._pre, with_kwargs=True),
            decoder.register_forward_hook(self._post, with_kwargs=True),
        )

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the caches it tracks (weak references; a pickled model holds no cache)."""
        state = dict(self.__dict__)
        state["_records"], state["_pending"] = None, None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._records = weakref.WeakKeyDictionary()

    def remove(self) -> None:
        """Detach the hooks (the patch no longer needs them)."""
        for h in self._handles:
            h.remove()
        self._records = weakref.WeakKeyDictionary()

    def _active(self) -> bool:
        return self.policy != "keep" and getattr(self.decoder, "rotary_emb", None) is self.module

    # ------------------------------------------------------------------ re-prefill (generate)
    def prepare_inputs(self, base: Any, input_ids: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        """``prepare_inputs_for_generation`` that drops a short-factor cache at the crossing step.

        ``base`` is the model's own method. Dropping the cache (``cache=None``,
        ``next_sequence_length=None``) makes ``generate()`` feed the whole sequence, and it adopts
        the new cache the model returns: the same path transformers takes for Phi-3.
        """
        cache = kwargs.get("cache")
        if self.policy == "reprefill" and cache is not None and self._active() and self._crosses(input_ids, kwargs):
            kwargs["cache"] = None
            kwargs["next_sequence_length"] = None
            self.reprefills += 1
        return base(input_ids, *args, **kwargs)

    def _crosses(self, input_ids: torch.Tensor, kwargs: dict) -> bool:
        """Whether the next call is long while the cache holds short-factor keys."""
        cache = kwargs["cache"]
        past = int(cache.get_seq_length())
        record = self._records.get(cache)
        if past == 0 or record is None or record.long:
            return False
        if kwargs.get("inputs_embeds") is not None:
            return False  # the prompt exists only as embeddings: cannot re-feed it (the hooks re-rotate)
        new = kwargs.get("next_sequence_length") or max(int(input_ids.shape[1]) - past, 1)
        pos = kwargs.get("position_ids")
        if pos is not None and pos.ndim == 2:
            upcoming = pos[:, -new:]
        else:
            upcoming = torch.arange(past, past + new, device=input_ids.device)[None]
        return self.module.uses_long(upcoming)

    # ------------------------------------------------------------------ hooks
    @torch.no_grad()
    def _pre(self, decoder: nn.Module, args: tuple, kwargs: dict) -> None:
        self._pending = None
        if not self._active():
            return
        cache = kwargs.get("cache", kwargs.get("past_key_values"))
        x = kwargs.get("input_ids")
        if x is None:
            x = kwargs.get("inputs_embeds")
        if x is None and args:
            x = args[0]
        if x is None:
            return
        batch, seq = int(x.shape[0]), int(x.shape[1])
        past = int(cache.get_seq_length()) if cache is not None else 0
        pos = kwargs.get("position_ids")
        if pos is None:  # the decoder's own default
            pos = torch.arange(past, past + seq, device=x.device)[None]
        if pos.ndim != 2:
            return  # not the (batch, seq) positions of a text decoder: leave it alone
        pos = pos.expand(batch, seq)
        long = self.module.uses_long(pos)
        record = None
        if cache is not None and past > 0:
            record = self._reconcile(cache, past, batch, kwargs.get("attention_mask"))
            if record.long != long:
                if self.policy == "reprefill" and not self._warned_rerotate:
                    self._warned_rerotate = True
                    log.warning(
                        "a forward call with a KV cache crossed the short/long switch outside generate(): "
                        "re-rotating the cached keys (exact for the first layer only); generate() re-prefills"
                    )
                self._rerotate(cache, record.positions, record.long, long)
                record.long = long
        self._pending = (cache, record, pos, long)

    @torch.no_grad()
    def _post(self, decoder: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
        pending, self._pending = self._pending, None
        if pending is None:
            return
        cache_in, record, pos, long = pending
        # ModelOutput is a dict of its non-None fields: look at the keys, never at the deprecated
        # ``past_key_values`` accessor (transformers 5.x names it ``cache``; 4.x ``past_key_values``).
        keys = output.keys() if hasattr(output, "keys") else ()
        name = "cache" if "cache" in keys else "past_key_values" if "past_key_values" in keys else None
        cache = output[name] if name is not None else None
        if cache is None:
            return
        pos = pos.to(torch.long).clone()
        if record is not None and cache is cache_in:
            record.append(pos.to(record.chunks[0].device))
            record.long = long
        else:  # a new (or emptied) cache: these are its first keys
            record = _CacheRecord.new(pos, long)
        if int(cache.get_seq_length()) != record.length:
            self._records.pop(cache, None)  # not appended the way we assume: reconcile at next use
            return
        self._records[cache] = record

    # ------------------------------------------------------------------ helpers
    def _reconcile(self, cache: Any, past: int, batch: int, attention_mask: Any) -> _CacheRecord:
        """The record for a non-empty cache, repaired after crops and batch expansion, or rebuilt."""
        record = self._records.get(cache)
        if record is not None:
            rows = record.chunks[0].shape[0]
            if rows == batch and record.length == past:
                return record  # the usual case: nothing to join or copy
            pos = record.positions
            if rows != batch and batch % rows == 0:  # e.g. beam expansion of a filled cache
                pos = pos.repeat_interleave(batch // rows, dim=0)
            if pos.shape[0] == batch and pos.shape[1] >= past:
                record.positions = pos[:, :past]  # a crop removes the latest keys
                return record
        # Filled without our hooks (e.g. before the patch was installed): use generate()'s own
        # convention, positions from the attention mask, else 0..past-1.
        if isinstance(attention_mask, torch.Tensor) and attention_mask.ndim == 2 and attention_mask.shape[1] >= past:
            mask = attention_mask[:, :past].to(torch.long)
            pos = (mask.cumsum(-1) - 1).clamp_min(0)
        else:
            pos = torch.arange(past, device=self.module.base_inv_freq.device)[None].expand(batch, past)
        if not self._warned:
            self._warned = True
            log.warning("KV cache of unknown history: assuming its keys sit at generate()'s positions")
        record = _CacheRecord.new(pos.clone(), self.module.uses_long(pos))
        self._records[cache] = record
        return record

    def _rerotate(self, cache: Any, positions: torch.Tensor, from_long: bool, to_long: bool) -> None:
        layers = getattr(cache, "layers", None)
        if layers is None:
            raise UserError(
                f"cannot re-rotate a {type(cache).__name__} at the short/long switch (no per-layer keys); "
                "use the default DynamicCache or mode='long'"
            )
        module = self.module
        ratio = module.regime_scaling(to_long) / module.regime_scaling(from_long)
        tables: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for layer in layers:
            keys = _layer_keys(layer)
            if keys is None:
                continue
            n = keys.shape[-2]
            if n not in tables:
                pos = positions[:, -n:]  # [batch, n]: the keys this layer still holds
                delta = module.angles(pos, long=to_long) - module.angles(pos, long=from_long)  # f64
                delta = delta - torch.round(delta * (1.0 / _TWO_PI)) * _TWO_PI
                delta = delta.to(torch.float32)
                tables[n] = (delta.cos().to(keys.device), delta.sin().to(keys.device))
            cos, sin = tables[n]
            rerotate_keys_(keys, cos, sin, ratio, self.rotary_dim)
        self.rerotations += 1
