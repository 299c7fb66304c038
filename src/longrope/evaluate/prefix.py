"""One prefill of a long prompt, shared by a teacher-forced score and a greedy continuation.

Passkey mode "both" asks each key two ways on the same prompt ``P``: greedy decoding after ``P``,
and the mean NLL of the answer tokens teacher-forced after ``P``. Both are continuations of ``P``,
so the expensive part — the forward over ``P`` — is done once:

1. :func:`prefill` feeds ``P[:-1]`` through the decoder body into a ``DynamicCache`` (no logits
   over the prompt, so no ``[T, vocab]`` block);
2. :func:`score_continuation` feeds ``P[-1]`` and the answer but its last token on that cache,
   scores the answer from those rows, then crops the cache back to ``P[:-1]``;
3. the greedy decoder (``model.generate`` with ``cache=``) feeds ``P[-1]`` and decodes on.

Each equals a from-scratch forward of its own sequence to float tolerance, *provided the rotary
factors are the same* for every call: a LongRoPE patch in mode "switch" uses the short factors for a
forward of up to L tokens and the long ones beyond (:mod:`longrope.models.cache_switch`), so a
cache filled with short factors is not the prefix of a long from-scratch forward.
:func:`single_prefill_exact` says when the shared prefill is exact; the caller falls back to
separate forwards otherwise (a prompt within a few tokens below L, and caches whose layers cannot
be cropped, e.g. sliding-window layers).
"""

from __future__ import annotations

from typing import Any

import torch

from longrope.evaluate import lm

__all__ = ["prefill", "score_continuation", "single_prefill_exact"]


def _uses_long(model: torch.nn.Module, n_tokens: int) -> bool | None:
    """Whether a from-scratch forward of ``n_tokens`` uses the long factors (None: no switch). A model's own
    ``longrope`` scaling (an export loaded as it is) switches too: its answer crossing L was scored on a cache of
    short-factor keys and claimed exact, 1.16 nats where the forward from scratch gives 0.01 (battery 30a)."""
    from longrope.models.generation import own_longrope_length

    rotary = getattr(lm.decoder_body(model), "rotary_emb", None)
    decide = getattr(rotary, "uses_long", None)
    if decide is None:
        own = own_longrope_length(rotary)
        return None if own is None else int(n_tokens) > own  # transformers: long where max(position) + 1 > L
    return bool(decide(torch.tensor([[int(n_tokens) - 1]])))


def single_prefill_exact(model: torch.nn.Module, prefix_len: int, longest: int) -> bool:
    """Whether every forward from ``prefix_len`` to ``longest`` tokens uses the same rotary factors
    (the switch is monotone in the length, so the two ends decide). A model's own dynamic RoPE changes its base
    with every length past its original one: there only a prefill within it is exact (mode "both" scored a
    dynamic-scaling model's answer on a cache of the prompt's base, 0.265 nats against 0.211 from scratch at 600
    tokens on the embedded model; battery 27b)."""
    from longrope.models.generation import is_dynamic_rope

    rotary = getattr(lm.decoder_body(model), "rotary_emb", None)
    if is_dynamic_rope(rotary):
        return int(longest) <= int(rotary.original_max_seq_len)
    return _uses_long(model, prefix_len) == _uses_long(model, longest)


def prefill(model: torch.nn.Module, ids: torch.Tensor) -> Any | None:
    """A ``DynamicCache`` holding ``ids`` (``[1, T]``), or None when its layers cannot be cropped
    back (sliding-window and other special layers): the caller then forwards separately."""
    from transformers.cache_utils import DynamicCache, DynamicLayer

    _check_ids(model, ids, "ids", 2)
    cache = DynamicCache(config=model.config)
    if any(type(layer) is not DynamicLayer for layer in getattr(cache, "layers", ())):
        return None
    with torch.no_grad():  # a cache of the prompt, never trained through: no graph kept (nor torch's warning)
        lm.decoder_body(model)(input_ids=ids, cache=cache, use_cache=True)
    return cache


def _check_ids(model: torch.nn.Module, ids: Any, name: str, ndim: int) -> None:
    """``ids`` is a non-empty integer tensor of ``ndim`` dimensions (``[1, T]`` or ``[T]``) whose ids the model has,
    checked before a forward changes the cache: a number, a list or a float tensor was a TypeError or RuntimeError
    deep in torch, an id past the embeddings an IndexError, an empty answer 'batch_size (1) to match target
    batch_size (0)' (battery 21b)."""
    from longrope.errors import UserError
    from longrope.models.generation import check_token_ids

    shape = "[1, T]" if ndim == 2 else "[T]"
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.int64, torch.int32) or ids.ndim != ndim \
            or ids.numel() == 0 or (ndim == 2 and ids.shape[0] != 1):
        got = f"a {ids.dtype} tensor of shape {list(ids.shape)}" if isinstance(ids, torch.Tensor) \
            else type(ids).__name__
        raise UserError(f"{name} must be a non-empty integer tensor of token ids, shape {shape}; got {got}")
    check_token_ids(model, ids, what=name, fix="give ids of the model's own tokenizer")


def score_continuation(model: torch.nn.Module, cache: Any, last: torch.Tensor, answer: torch.Tensor, *,
                       chunk_size: int = 16) -> tuple[bool, float]:
    """Teacher-forced ``(exact, NLL sum)`` of ``answer`` (``[a]``) after the cached prefix and its
    last token ``last`` (``[1]``); the cache is cropped back to the prefix afterwards."""
    _check_ids(model, last, "last", 1)
    _check_ids(model, answer, "answer", 1)
    lm.check_chunk_size(chunk_size)
    if chunk_size is None:
        chunk_size = 16
    if last.numel() != 1:
        from longrope.errors import UserError

        raise UserError(f"last must be the prompt's one last token id (shape [1]), got shape {list(last.shape)}")
    inputs = torch.cat([last, answer[:-1]])[None]  # [1, a]: row j predicts answer[j]
    with torch.no_grad():  # a score: no graph kept (it warned 'Converting a tensor with requires_grad=True')
        hidden = lm.decoder_body(model)(input_ids=inputs, cache=cache, use_cache=True).last_hidden_state[0]
        cache.crop(-int(inputs.shape[1]))
        transform = lm.logit_transform(getattr(model, "config", None))
        nll, arg = lm.chunked_nll(model, hidden, answer, chunk_size=chunk_size, transform=transform,
                                  return_argmax=True)
    return bool(torch.equal(arg, answer)), float(nll.double().sum())
