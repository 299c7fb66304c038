"""Model plumbing for evaluation: hidden states, then the LM head and the loss in chunks.

A causal LM's ``forward`` returns ``[batch, seq, vocab]`` logits: at 128k positions and a 128k
vocabulary that is 67 GB in fp32 (docs/method.md §7). Evaluation only needs one number per position
(the NLL of the next token), so we run the decoder body (``model.model``) for hidden states and
apply the LM head plus cross-entropy over chunks of positions; peak extra memory is one
``[chunk, vocab]`` block.

The final-logit transforms some families apply after the head are reproduced here, read from the
config the same way their ``forward`` does:

- Gemma 2/3: ``final_logit_softcapping`` c → ``c·tanh(logits / c)``;
- Cohere: ``logit_scale`` → ``logits · logit_scale``;
- Granite: ``logits_scaling`` → ``logits / logits_scaling``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from longrope.errors import UserError, shown
from longrope.options import is_integer

__all__ = [
    "check_chunk_size",
    "decoder_body",
    "lm_head",
    "logit_transform",
    "model_device",
    "default_chunk_size",
    "vocab_size",
    "hidden_states",
    "chunked_nll",
    "last_logits",
]

#: Elements of one ``[chunk, vocab]`` logits block in the chunked loss (2^24 floats = 64 MB fp32).
LOGITS_BLOCK_ELEMENTS = 1 << 24


def decoder_body(model: torch.nn.Module) -> torch.nn.Module:
    """The model without its LM head (``LlamaForCausalLM.model`` and the like)."""
    get = getattr(model, "get_decoder", None)
    if callable(get):
        body = get()
        if body is not None and body is not model:
            return body
    body = getattr(model, "model", None)
    if isinstance(body, torch.nn.Module):
        return body
    raise TypeError(f"{type(model).__name__} has no decoder body (.model / get_decoder())")


def lm_head(model: torch.nn.Module) -> torch.nn.Module:
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is None:
        head = getattr(model, "lm_head", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no LM head (get_output_embeddings() / .lm_head)")
    return head


def logit_transform(config: object) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The family-specific map applied to the head's output before the softmax, or None."""
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = []
    scale = getattr(config, "logit_scale", None)
    if isinstance(scale, (int, float)) and not isinstance(scale, bool) and scale != 1:
        fns.append(lambda x, s=float(scale): x * s)
    div = getattr(config, "logits_scaling", None)
    if isinstance(div, (int, float)) and not isinstance(div, bool) and div != 1:
        fns.append(lambda x, d=float(div): x / d)
    cap = getattr(config, "final_logit_softcapping", None)
    if isinstance(cap, (int, float)) and not isinstance(cap, bool) and cap > 0:
        fns.append(lambda x, c=float(cap): torch.tanh(x / c) * c)
    if not fns:
        return None

    def apply(x: torch.Tensor) -> torch.Tensor:
        for fn in fns:
            x = fn(x)
        return x

    return apply


def model_device(model: torch.nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


def vocab_size(model: torch.nn.Module) -> int:
    head = lm_head(model)
    return int(getattr(head, "out_features", 0) or getattr(model.config, "vocab_size", 32000))


def default_chunk_size(model: torch.nn.Module, n_positions: int | None = None) -> int:
    """Positions per LM-head chunk, so the logits block never dominates memory nor time.

    - at most 2^24 logits (64 MB fp32; the log-softmax temporary doubles it), at least 16 rows;
    - within that, no more rows than make the block as large as the ``[n_positions, hidden]``
      hidden states the forward pass produced anyway,
    - but at least 128 rows: each chunk streams the whole ``[vocab, hidden]`` head weight from
      memory, and with fewer rows that traffic, not the arithmetic, sets the time (measured on
      CPU with a 32k vocabulary: 16 rows 2× slower than 128–256).
    """
    vocab = max(vocab_size(model), 1)
    cap = max(16, LOGITS_BLOCK_ELEMENTS // vocab)
    want = cap
    if n_positions is not None:
        hidden = int(getattr(model.config, "hidden_size", 0) or 0)
        if hidden:
            want = max(128, -(-n_positions * hidden // vocab))
    return min(want, cap)


def hidden_states(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
    """Final hidden states of the decoder body, ``[batch, seq, hidden]``, no cache kept."""
    out = decoder_body(model)(input_ids=input_ids, use_cache=False)
    return out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]


def check_chunk_size(chunk_size: Any) -> None:
    """The one check of an LM-head chunk size: a positive integer, or None for the default. (needle_score took
    a negative one: no chunk ran, and the never-written NLL buffer was scored, exact=0 with NLL 1e-44.)"""
    if chunk_size is not None and (not is_integer(chunk_size) or chunk_size < 1):
        raise UserError(f"chunk_size must be a positive integer, got {shown(chunk_size)}")


def chunked_nll(
    model: torch.nn.Module,
    hidden: torch.Tensor,
    labels: torch.Tensor,
    *,
    chunk_size: int,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
    return_argmax: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-position NLL (float32) of ``labels`` given the hidden states that predict them.

    ``hidden`` is ``[n, hidden]`` (row j predicts ``labels[j]``), ``labels`` ``[n]``. The head and
    the log-softmax run ``chunk_size`` rows at a time in float32, so the largest temporary is
    ``[chunk_size, vocab]``. With ``return_argmax`` also the argmax id per row (for exact-match
    scores), from the same transformed logits.
    """
    check_chunk_size(chunk_size)
    head = lm_head(model)
    n = hidden.shape[0]
    nll = torch.empty(n, dtype=torch.float32, device=hidden.device)
    arg = torch.empty(n, dtype=torch.long, device=hidden.device) if return_argmax else None
    for a in range(0, n, chunk_size):
        b = min(a + chunk_size, n)
        logits = head(hidden[a:b]).float()  # [chunk, vocab]
        if transform is not None:
            logits = transform(logits)
        nll[a:b] = F.cross_entropy(logits, labels[a:b], reduction="none")
        if arg is not None:
            arg[a:b] = logits.argmax(dim=-1)
        del logits
    return nll, arg


def last_logits(model: torch.nn.Module, hidden_last: torch.Tensor) -> torch.Tensor:
    """Transformed float32 logits for a few hidden rows (``[n, hidden]`` → ``[n, vocab]``)."""
    logits = lm_head(model)(hidden_last).float()
    transform = logit_transform(getattr(model, "config", None))
    return transform(logits) if transform is not None else logits
