"""Perplexity of a loaded model on token documents, exactly and without full logits.

:func:`evaluate_perplexity` is what the search calls in its inner loop: it takes an already
loaded (and patched) model and token arrays already in memory (or memory-mapped), so nothing is
re-read or re-loaded between candidates. The numbers are token-weighted:

``ppl = exp(Σ nll / Σ n)`` over every scored prediction of every document.

The LongRoPE fitness (docs/method.md §4) is ``exp(mean over docs of each doc's mean NLL)``; it is
reported too as ``ppl_doc_mean``. In truncate mode every document contributes the same
``length − 1`` predictions, so the two agree; in sliding mode they differ and we say which is which.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from longrope.errors import UserError, shown
from longrope.evaluate import lm
from longrope.evaluate.stats import perplexity
from longrope.evaluate.windows import (
    Window,
    check_length,
    check_stride,
    check_token_arrays,
    document_windows,
    max_tokens_below,
)
from longrope.options import check_flag, check_loaded_model, is_integer

__all__ = ["DocNLL", "PerplexityResult", "evaluate_perplexity", "doc_tokens_and_id"]


@dataclass(frozen=True)
class DocNLL:
    """One document's share of the total."""

    doc_id: str
    nll_sum: float
    n_tokens: int

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.n_tokens if self.n_tokens else float("nan")


@dataclass(frozen=True)
class PerplexityResult:
    """Perplexity at one context length over a set of documents."""

    length: int
    """Window length in tokens (BOS included)."""
    mode: str
    """``"truncate"`` or ``"sliding"``."""
    stride: int | None
    bos: bool
    """Whether a BOS token was prepended."""
    n_docs: int
    n_tokens: int
    """Scored predictions in total (the weights of the token-weighted mean)."""
    nll_sum: float
    """Σ NLL in nats over all scored predictions (accumulated in float64)."""
    doc_mean_nll: float = float("nan")
    """Mean over documents of each document's mean NLL (the LongRoPE fitness, before exp)."""
    per_doc: tuple[DocNLL, ...] = field(default=())
    seconds: float = 0.0

    @property
    def mean_nll(self) -> float:
        return self.nll_sum / self.n_tokens if self.n_tokens else float("nan")

    @property
    def ppl(self) -> float:
        """Token-weighted perplexity ``exp(Σ nll / Σ n)``."""
        return perplexity(self.mean_nll) if self.n_tokens else float("nan")

    @property
    def ppl_doc_mean(self) -> float:
        """``exp(mean over documents of each one's mean NLL)`` — the LongRoPE paper's fitness."""
        return perplexity(self.doc_mean_nll)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["per_doc"] = [asdict(x) for x in self.per_doc]
        d.update(mean_nll=self.mean_nll, ppl=self.ppl, ppl_doc_mean=self.ppl_doc_mean)
        return d


def doc_tokens_and_id(doc: Any, index: int) -> tuple[np.ndarray, str]:
    """Accept a bare token array/list/tensor or anything with ``.tokens`` (and ``.doc_id``)."""
    tokens = getattr(doc, "tokens", doc)
    doc_id = getattr(doc, "doc_id", None)
    if isinstance(tokens, torch.Tensor):
        tokens = tokens.detach().cpu().numpy()
    tokens = np.asarray(tokens)
    if tokens.ndim != 1 or not np.issubdtype(tokens.dtype, np.integer):
        raise UserError(f"document {doc_id if doc_id is not None else index} must be a 1-D array of "
                        f"integer token ids, got shape {tokens.shape} dtype {tokens.dtype}")
    return tokens, str(doc_id if doc_id is not None else index)


def _check_ids(model: torch.nn.Module, windows: list[Window], ids: list[str], bos_id: int | None) -> None:
    """Every token of every window has an embedding (before any forward pass; was an IndexError traceback)."""
    from longrope.models.generation import check_token_ids

    if bos_id is not None:
        check_token_ids(model, [bos_id], what="bos_id", fix="give the BOS id of this model's tokenizer (None: no BOS)")
    for w in windows:
        check_token_ids(model, w.tokens, what=f"document {ids[w.doc]}",
                        fix="tokenize the documents with this model's tokenizer")


def _batches(windows: list[Window], batch_size: int) -> list[list[Window]]:
    """Consecutive windows of equal length grouped up to ``batch_size`` (no padding needed)."""
    out: list[list[Window]] = []
    for w in windows:
        if out and len(out[-1]) < batch_size and len(out[-1][0].tokens) == len(w.tokens):
            out[-1].append(w)
        else:
            out.append([w])
    return out


def _check_arguments(model: Any, docs: Any, length: Any, *, stride: Any, max_tokens: Any, chunk_size: Any,
                     batch_size: Any) -> tuple[int, int | None]:
    """:func:`evaluate_perplexity`'s arguments checked before any work (a :class:`UserError` naming the bad one);
    the window length and the stride as the ints they are (a numpy stride was kept in the result, whose to_dict()
    JSON could not hold)."""
    check_loaded_model(model, "evaluate_perplexity")
    check_token_arrays(docs, "docs")
    length = check_length(length)
    if not is_integer(batch_size) or batch_size < 1:
        raise UserError(f"batch_size must be a positive integer, got {shown(batch_size)}")
    if max_tokens is not None and stride is None:
        raise UserError("max_tokens only applies to sliding-window mode (give a stride)")
    if max_tokens is not None and (not is_integer(max_tokens) or max_tokens < 1):
        raise UserError(f"max_tokens must be an integer >= 1 (leave it out for no cap), got {shown(max_tokens)}")
    if max_tokens_below(max_tokens, length):
        raise UserError(f"max_tokens {max_tokens} is below one window of {length} tokens; give at least {length} "
                        "or leave it out")
    lm.check_chunk_size(chunk_size)
    return length, (None if stride is None else check_stride(stride, length))


def evaluate_perplexity(
    model: torch.nn.Module,
    docs: Sequence[Any],
    length: int,
    *,
    bos_id: int | None,
    stride: int | None = None,
    max_tokens: int | None = None,
    chunk_size: int | None = None,
    batch_size: int = 1,
    per_doc: bool = True,
    progress: bool = False,
) -> PerplexityResult:
    """Token-weighted perplexity of ``model`` on ``docs`` at context ``length``.

    Args:
        model: a causal LM (``…ForCausalLM``) already on its device, patched as wanted.
        docs: token-id arrays without special tokens (or objects with ``.tokens``/``.doc_id``,
            such as :class:`longrope.data.Sample`); each needs ≥ ``length − 1`` tokens with BOS.
        length: window length in tokens, BOS included.
        bos_id: the id prepended to every document (``None``: no BOS, windows are raw tokens).
        stride: ``None`` for truncate mode (one window per document, the LongRoPE protocol);
            an int for sliding windows with overlapping labels masked (see :mod:`.windows`).
        max_tokens: sliding mode only: evaluate at most this many tokens of each document.
        chunk_size: positions per LM-head/loss chunk; default: :func:`lm.default_chunk_size`
            (≤ 2^24 logits and no larger than the window's hidden states).
        batch_size: windows per forward (only equal-length windows are batched; 1 at long lengths).
        per_doc: keep per-document sums in the result.
        progress: show a tqdm bar over windows.

    Deterministic for a given model and inputs; runs under ``torch.inference_mode()``.
    """
    length, stride = _check_arguments(model, docs, length, stride=stride, max_tokens=max_tokens, chunk_size=chunk_size,
                                      batch_size=batch_size)
    per_doc, progress = check_flag(per_doc, "per_doc"), check_flag(progress, "progress")
    ids: list[str] = []
    windows: list[Window] = []
    for i, doc in enumerate(docs):
        tokens, doc_id = doc_tokens_and_id(doc, i)
        ids.append(doc_id)
        windows.extend(document_windows(i, tokens, length, bos_id=bos_id, stride=stride,
                                        max_tokens=max_tokens, doc_name=doc_id))

    _check_ids(model, windows, ids, bos_id)
    device = lm.model_device(model)
    transform = lm.logit_transform(getattr(model, "config", None))
    nll_sums = np.zeros(len(docs), dtype=np.float64)
    counts = np.zeros(len(docs), dtype=np.int64)
    batches = _batches(windows, batch_size)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(windows), desc=f"ppl@{length}", unit="win", leave=False)
    from longrope.models.generation import evaluation_mode

    t0 = time.perf_counter()
    with torch.inference_mode(), evaluation_mode(model):
        for batch in batches:
            input_ids = torch.from_numpy(np.stack([w.tokens for w in batch])).to(device)  # [B, T]
            hidden = lm.hidden_states(model, input_ids)  # [B, T, H]
            for b, w in enumerate(batch):
                # hidden row t predicts token t+1: rows score_start-1 … T-2 predict the scored labels.
                h = hidden[b, w.score_start - 1 : -1]  # [n_scored, H]
                labels = input_ids[b, w.score_start :]  # [n_scored]
                chunk = chunk_size or lm.default_chunk_size(model, len(w.tokens))
                nll, _ = lm.chunked_nll(model, h, labels, chunk_size=chunk, transform=transform)
                nll_sums[w.doc] += float(nll.double().sum())
                counts[w.doc] += w.n_scored
            del hidden
            if bar is not None:
                bar.update(len(batch))
    if bar is not None:
        bar.close()
    seconds = time.perf_counter() - t0
    per = tuple(DocNLL(ids[i], float(nll_sums[i]), int(counts[i])) for i in range(len(docs)))
    return PerplexityResult(
        length=length,
        mode="truncate" if stride is None else "sliding",
        stride=stride,
        bos=bos_id is not None,
        n_docs=len(docs),
        n_tokens=int(counts.sum()),
        nll_sum=float(nll_sums.sum()),
        doc_mean_nll=float(np.mean(nll_sums / np.maximum(counts, 1))),
        per_doc=per if per_doc else (),
        seconds=seconds,
    )
