"""The LM loss through the head in chunks: never ``[N, vocab]`` logits, in the forward or the backward.

``model(input_ids, labels=...)`` materialises ``[N, vocab]`` logits, upcasts them to float32 for the
cross-entropy and keeps them (and their gradient) for the backward pass — 67 GB at 128k positions
with a 128k vocabulary (docs/method.md §7). Here the decoder body gives hidden states ``[T, H]`` and
:class:`ChunkedLinearCrossEntropy` runs the head and the loss ``chunk`` rows at a time.

How the gradient stays exact without keeping any chunk's logits: the forward pass of the autograd
function computes, per chunk, the logits ``z = h Wᵀ``, the summed cross-entropy and — with a local
``torch.autograd.grad`` of that chunk's loss, so softmax, the float32 upcast and any logit transform
(Gemma 2's soft-capping) are differentiated by torch itself — ``∂loss/∂z``; from it the chunk's
``∂loss/∂h = (∂loss/∂z) W`` and its share of ``∂loss/∂W = (∂loss/∂z)ᵀ h``. Only those two (the
sizes of ``h`` and ``W``) are kept; the backward pass multiplies them by the incoming gradient.
The head is evaluated once per step, as in the plain path (checkpointing the chunks instead would
compute it twice). Under autocast the matmuls run in the autocast dtype and the softmax in float32,
as transformers' own loss does; ``∂loss/∂W`` accumulates in the weight's dtype.

:class:`CausalLMLoss` wraps the Hugging Face model so that the loss is computed inside one
``forward`` call: what DDP and FSDP need (their hooks run around the wrapped module's forward; FSDP
gathers the root's parameters — embeddings, final norm, head — for it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from longrope.evaluate.lm import decoder_body, lm_head, logit_transform

__all__ = ["ChunkedLinearCrossEntropy", "chunked_cross_entropy", "default_loss_chunk", "CausalLMLoss"]

#: Elements of one ``[chunk, vocab]`` block the default chunk aims for (2^21 = 8 MB in float32).
_BLOCK_ELEMENTS = 1 << 21
#: Fewest rows per chunk: each chunk streams the whole ``[vocab, hidden]`` weight, so very thin
#: chunks are bound by that traffic rather than by arithmetic.
_MIN_ROWS = 128


def default_loss_chunk(vocab_size: int) -> int:
    """Rows per chunk: ``max(128, 2^21 / vocab)``."""
    return max(_MIN_ROWS, _BLOCK_ELEMENTS // max(int(vocab_size), 1))


def _compute_dtype(t: torch.Tensor) -> torch.dtype:
    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev)
    return t.dtype


class ChunkedLinearCrossEntropy(torch.autograd.Function):
    """``sum_j CE(transform(h_j Wᵀ), t_j)`` over rows ``j`` (a float32 or float64 scalar), chunked (see module doc)."""

    @staticmethod
    def forward(ctx: Any, hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, chunk: int,
                transform: Callable[[torch.Tensor], torch.Tensor] | None) -> torch.Tensor:
        # hidden [T, H], weight [V, H], targets [T] (every row has a target)
        dev = hidden.device.type
        cdt = _compute_dtype(hidden)
        need_h, need_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        # Softmax in float32 at least (float64 inputs stay float64: the exactness tests use them).
        sdt = torch.promote_types(hidden.dtype, torch.float32)
        total = torch.zeros((), dtype=sdt, device=hidden.device)
        grad_h = torch.empty_like(hidden) if need_h else None  # [T, H]
        grad_w = torch.zeros_like(weight) if need_w else None  # [V, H]
        with torch.autocast(dev, enabled=False):
            w = weight.detach().to(cdt)  # [V, H]; a no-op without autocast
            h_all = hidden.detach().to(cdt)  # [T, H]
            for a in range(0, h_all.shape[0], chunk):
                h = h_all[a : a + chunk]  # [c, H]
                z = h @ w.t()  # [c, V] logits in the compute dtype
                if need_h or need_w:
                    with torch.enable_grad():
                        z.requires_grad_(True)
                        y = z.to(sdt)  # [c, V]
                        if transform is not None:
                            y = transform(y)
                        loss = F.cross_entropy(y, targets[a : a + chunk], reduction="sum")
                        (gz,) = torch.autograd.grad(loss, z)  # [c, V], compute dtype
                    if need_h:
                        grad_h[a : a + chunk] = (gz @ w).to(hidden.dtype)  # [c, H]
                    if need_w:
                        if gz.dtype == grad_w.dtype:
                            grad_w.addmm_(gz.t(), h)  # [V, H] += [V, c] @ [c, H]
                        else:
                            grad_w += (gz.t() @ h).to(grad_w.dtype)
                    del y, gz
                else:
                    y = z.to(sdt)
                    if transform is not None:
                        y = transform(y)
                    loss = F.cross_entropy(y, targets[a : a + chunk], reduction="sum")
                total += loss.detach()
                del z, loss
        ctx.save_for_backward(*(g for g in (grad_h, grad_w) if g is not None))
        ctx.has = (need_h, need_w)
        return total

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor):
        saved = iter(ctx.saved_tensors)
        need_h, need_w = ctx.has
        grad_h = next(saved) if need_h else None
        grad_w = next(saved) if need_w else None
        if grad_h is not None:
            grad_h = grad_h * grad_out.to(grad_h.dtype)
        if grad_w is not None:
            grad_w = grad_w * grad_out.to(grad_w.dtype)
        return grad_h, grad_w, None, None, None


def chunked_cross_entropy(hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, *, chunk: int,
                          transform: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Summed cross-entropy of ``targets`` [T] under logits ``transform(hidden @ weightᵀ)``, chunked."""
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1, got {chunk}")
    return ChunkedLinearCrossEntropy.apply(hidden, weight, targets, int(chunk), transform)


class CausalLMLoss(nn.Module):
    """A causal LM whose ``forward`` returns the summed next-token loss, never the logits.

    ``forward(input_ids, position_ids, targets, scale) -> (scale · nll_sum, nll_sum.detach())``:
    ``targets`` is ``[batch, seq]`` with ``-100`` where a position has no target; ``scale`` turns
    the sum into the share of the global mean this micro-batch contributes (see the loop).
    """

    def __init__(self, lm: nn.Module, *, chunk: int):
        super().__init__()
        self.lm = lm
        self.chunk = int(chunk)
        head = lm_head(lm)
        if getattr(head, "bias", None) is not None:
            raise ValueError("LM heads with a bias are not supported by the chunked loss")
        self._transform = logit_transform(getattr(lm, "config", None))
        # accelerate's FSDP auto-wrap reads the wrapped model's layer classes from here.
        self._no_split_modules = getattr(lm, "_no_split_modules", None)

    def forward(self, input_ids: torch.Tensor, position_ids: torch.Tensor, targets: torch.Tensor,
                scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
        # No attention mask: with restarting position ids transformers builds the document mask itself.
        out = decoder_body(self.lm)(input_ids=input_ids, position_ids=position_ids, use_cache=False)
        hidden = out.last_hidden_state if hasattr(out, "last_hidden_state") else out[0]  # [B, N, H]
        flat_t = targets.reshape(-1)  # [B·N]
        keep = (flat_t != -100).nonzero().squeeze(1)  # [T]
        h = hidden.reshape(-1, hidden.shape[-1]).index_select(0, keep)  # [T, H]
        nll = chunked_cross_entropy(h, lm_head(self.lm).weight, flat_t.index_select(0, keep),
                                    chunk=self.chunk, transform=self._transform)
        return nll * scale, nll.detach()
