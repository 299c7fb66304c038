"""Which tokens a perplexity evaluation feeds and which predictions it scores (pure numpy).

Kept apart from the model plumbing so the bookkeeping (BOS, truncation, sliding-window label
masking) can be read and tested without a model.

A :class:`Window` is one forward pass: ``tokens`` (the model input, BOS included when used) and
``score_start``: the labels at positions ``score_start … len(tokens)−1`` are scored, each predicted
from the hidden state one position earlier. Position 0 is never a label (nothing predicts it).

Two modes (docs/method.md §7):

- **truncate** (the LongRoPE protocol): one window per document, ``[BOS] + doc[:length−1]``
  (``doc[:length]`` without BOS); every prediction in it is scored, i.e. ``length − 1`` tokens.
- **sliding** (``stride`` given; YaRN uses 256): the sequence ``[BOS] + doc`` (optionally cut to
  ``max_tokens``) is covered by windows of ``length`` tokens starting at ``0, stride, 2·stride, …``
  until one reaches the end; the last window is shorter when the sequence does not divide evenly.
  Each window scores only the labels no earlier window scored, so with ``stride < length`` every
  token after the first is scored exactly once, with at least ``length − stride`` tokens of
  context (except at the start). With ``stride == length`` (disjoint windows) a window cannot
  score its own first token, so one token per later window goes unscored. Later windows start mid-document and get no BOS: that matches the usual Hugging Face
  recipe (slices of one encoded sequence), and is why sliding PPL is not comparable to truncate PPL.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from longrope.errors import UserError, shown
from longrope.settings import HELDOUT_FRACTION

__all__ = ["Window", "document_windows", "check_length", "check_lengths", "check_stride", "check_token_arrays", "resolve_bos",
           "select_windows", "windows_across"]


def resolve_bos(tokenizer: object = None, *, corpus: object = None, model: object = None) -> int | None:
    """The BOS token every evaluation prepends: one policy for every command.

    The tokenizer decides when there is one (a tokenizer without BOS, e.g. Qwen's, means no BOS,
    whatever the model config says); without a tokenizer, the BOS recorded in the shard folder's
    metadata (the tokenizer the documents were encoded with); else the model config's.
    """
    if tokenizer is not None:
        bos = getattr(tokenizer, "bos_token_id", None)
    elif corpus is not None and getattr(corpus, "tokenizer_info", {}).get("bos_token_id") is not None:
        bos = corpus.tokenizer_info["bos_token_id"]
    else:
        bos = getattr(getattr(model, "config", None), "bos_token_id", None)
    return int(bos) if bos is not None else None


def select_windows(corpus: object, length: int, n: int, *, split: str, seed: int,
                   heldout_fraction: float = HELDOUT_FRACTION, windows_per_doc: int | None = 1, bos: bool = True,
                   empty_ok: bool = True) -> list:
    """Up to ``n`` seeded, non-overlapping windows for evaluations at ``length`` (BOS included when
    ``bos``) from one split of a shard folder: one policy for the search, ``eval`` and the demo.

    ``windows_per_doc``: at most this many windows per document (documents in a seeded order);
    None spreads the sample over as many documents as possible — the fewest windows per document
    that yield ``n`` (for corpora of few, long books). Fewer than ``n`` come back when the split
    cannot supply them; none when no document of the split is long enough (``empty_ok``; else a
    one-line error naming the split's longest document).
    """
    from longrope.data import document_roles, sample_documents

    length = check_length(length)  # a text was "unsupported operand type(s) for -" (battery 21b)
    need = length - 1 if bos else length
    roles = document_roles(corpus, heldout_fraction)
    lengths = np.asarray(corpus.lengths)
    eligible = [i for i, r in enumerate(roles) if (split == "all" or r == split) and lengths[i] >= need]
    if not eligible and empty_ok:
        return []
    per = windows_per_doc if windows_per_doc is not None else max(1, -(-n // max(1, len(eligible))))
    while True:
        docs = sample_documents(corpus, need, n, seed=seed, split=split, heldout_fraction=heldout_fraction,
                                windows_per_doc=per)
        if windows_per_doc is not None or len(docs) >= n or per >= n:
            return docs
        per += 1


def windows_across(corpora: dict, length: int, n: int, *, split: str, seed: int) -> tuple[list, dict[str, int]]:
    """``n`` windows shared out over several shard folders (domains, in the order given; the first get the
    remainder), each drawn by :func:`select_windows` (spread over as many documents as possible), then
    interleaved — first of each domain, second of each, … — so that any prefix of them and a search's planted
    depths mix the domains. Returns the windows and how many each domain gave (fewer than its share
    when its documents run out)."""
    from longrope.options import MAX_COUNT, int_problem

    problem = int_problem(n, 0, MAX_COUNT)
    if problem:  # a text was "unsupported operand type(s) for //" (battery 21b)
        raise UserError(f"n (the number of windows) {problem}")
    names = list(corpora)
    groups, got = [], {}
    for k, name in enumerate(names):
        share = n // len(names) + (k < n % len(names))
        ws = select_windows(corpora[name], length, share, split=split, seed=seed, windows_per_doc=None) if share else []
        groups.append(ws)
        got[name] = len(ws)
    out = []
    for i in range(max((len(g) for g in groups), default=0)):
        out += [g[i] for g in groups if i < len(g)]
    return out, got


@dataclass(frozen=True)
class Window:
    """One model input and the part of it that is scored."""

    doc: int
    """Index of the document (in the caller's list) this window belongs to."""
    tokens: np.ndarray
    """Token ids fed to the model, int64 ``[T]``."""
    score_start: int
    """First scored label position (``1 ≤ score_start < T``)."""

    @property
    def n_scored(self) -> int:
        return len(self.tokens) - self.score_start


def check_lengths(lengths: object, name: str = "lengths") -> list[int]:
    """The context lengths of a measurement over several (a suite's, passkey's): a non-empty list, each checked as
    :func:`check_length`, each given once: [128, 128] measured every key twice and counted it as two (an interval
    too narrow), and a perplexity suite failed at its plot after measuring both (battery 25c)."""
    from longrope.options import check_once, check_sequence

    check_sequence(lengths, name, "[4096]")
    out = [check_length(n, name=name[:-1] if name.endswith("s") else name) for n in lengths]
    check_once(out, name, "length")
    return out


def check_length(length: object, *, name: str = "length") -> int:
    """A context length must be an integer ≥ 2 (a window needs one prediction at least) and at most
    :data:`~longrope.options.MAX_TOKENS`, as every length flag (10**400 was echoed in full by the next check)."""
    from longrope.options import MAX_TOKENS

    if isinstance(length, bool) or not isinstance(length, (int, np.integer)):
        raise UserError(f"{name} must be a positive integer number of tokens, got {shown(length)}")
    if int(length) < 2:
        raise UserError(f"{name} must be at least 2 tokens, got {shown(int(length))}")
    if int(length) > MAX_TOKENS:
        raise UserError(f"{name} must be at most {MAX_TOKENS:,} tokens, got {shown(int(length))}")
    return int(length)


def check_token_arrays(value: object, name: str) -> None:
    """A list of token arrays (documents, haystacks) is a non-empty list, not one array: ``haystacks=tokens`` was
    numpy's "truth value of an array is ambiguous", ``docs=tokens`` "document 0 must be a 1-D array ..., got
    shape ()" for its first token, ``haystacks=[]`` the synthetic filler without a word (battery 20b)."""
    from longrope.options import check_sequence

    if getattr(value, "ndim", None) == 1 and str(getattr(value, "dtype", "object")) != "object":  # numpy or torch
        raise UserError(f"{name} is one array of token ids; give a list of them ([tokens] for one)")
    check_sequence(value, name, "[tokens]")


def check_bos_id(bos_id: object) -> int | None:
    """The BOS id prepended to a window or prompt: None (no BOS) or an integer token id. The one check of its type
    in every function that takes one ('x' was int()'s ValueError, 1.5 and True were taken as ids 1, battery 19);
    whether the model has that id (not -1, not past its embeddings) is
    :func:`longrope.models.generation.check_token_ids`'."""
    if bos_id is None:
        return None
    if isinstance(bos_id, bool) or not isinstance(bos_id, (int, np.integer)) or abs(int(bos_id)) >= 1 << 63:
        # past int64: numpy's OverflowError when the window was built (battery 21b)
        raise UserError(f"bos_id must be an integer token id or None for no BOS, got {shown(bos_id)}")
    return int(bos_id)


def check_stride(stride: object, length: int) -> int:
    """A stride must be a positive integer no larger than the window (else tokens go unscored)."""
    length = check_length(length)
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or int(stride) < 1:
        raise UserError(f"stride must be a positive integer number of tokens, got {shown(stride)}")
    if int(stride) > length:
        raise UserError(f"stride {int(stride)} is larger than the window length {length}; "
                        "tokens between windows would never be scored, use a stride ≤ the length")
    return int(stride)


def max_tokens_below(max_tokens: object, length: int) -> bool:
    """Whether a sliding-mode cap of ``max_tokens`` tokens per document is below one window of ``length`` (the rule
    both evaluate_perplexity and ``eval ppl`` refuse: the cap was silently raised to one window, --max-tokens 100
    at 512 scored 511 tokens a document)."""
    length = check_length(length)
    return max_tokens is not None and not isinstance(max_tokens, bool) and isinstance(max_tokens, int) \
        and max_tokens < length


def document_windows(
    doc_index: int,
    tokens: np.ndarray,
    length: int,
    *,
    bos_id: int | None,
    stride: int | None = None,
    max_tokens: int | None = None,
    doc_name: object = None,
) -> list[Window]:
    """The windows of one document; raises :class:`UserError` if it is shorter than ``length``.

    ``tokens`` are the document's ids without special tokens (as the shards store them).
    ``max_tokens`` (sliding mode only) cuts the BOS-prefixed sequence before windowing.
    """
    length = check_length(length)
    bos_id = check_bos_id(bos_id)
    tokens = np.asarray(tokens)
    need = length - 1 if bos_id is not None else length
    if len(tokens) < need:
        name = doc_name if doc_name is not None else doc_index
        raise UserError(f"document {name} has {len(tokens)} tokens, fewer than the {need} a window of "
                        f"{length} needs; sample documents with at least that many tokens")
    if stride is None:
        body = np.asarray(tokens[:need], dtype=np.int64)
        seq = body if bos_id is None else np.concatenate([np.array([bos_id], np.int64), body])
        return [Window(doc_index, seq, 1)]

    stride = check_stride(stride, length)
    if max_tokens is not None:  # a text or a tensor was an arithmetic error on slicing (battery 21b)
        max_tokens = check_length(max_tokens, name="max_tokens")
    body = np.asarray(tokens if max_tokens is None else tokens[: max(need, max_tokens - (bos_id is not None))],
                      dtype=np.int64)
    seq = body if bos_id is None else np.concatenate([np.array([bos_id], np.int64), body])
    n = len(seq)
    windows: list[Window] = []
    prev_end = 1  # label position 0 has no prediction
    begin = 0
    while True:
        end = min(begin + length, n)
        first = max(prev_end, begin + 1)
        if end > first:
            windows.append(Window(doc_index, seq[begin:end], first - begin))
        prev_end = end
        if end >= n:
            break
        begin += stride
    return windows
