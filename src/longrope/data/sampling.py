"""Seeded document sampling with a search / held-out split that a search can never cross.

**The split.** Every document has a role, ``"search"`` or ``"heldout"``:

- pinned at tokenize time (``--input search=PATH`` / ``heldout=PATH``; ``train=PATH`` pins
  fine-tuning documents, which neither split ever samples), or else
- by hash: ``u = int(blake2b(SALT ‖ 0 ‖ doc_id)[:8]) / 2^64`` and the document is held out when
  ``u < heldout_fraction`` (default :data:`longrope.settings.HELDOUT_FRACTION`, the one every
  command shares).

The hash depends only on the document's stable id (see :mod:`longrope.data.sources`), so the role
of a document does not change with the seed, the sample size, the tokenizer, the order of the
inputs, or which other documents the corpus holds; a search sampling ``split="search"`` and the
final report sampling ``split="heldout"`` (with the same fraction) can never share a document.
Raising the fraction only moves documents from search to held-out.

**The sample.** ``n`` counts *windows* (the :class:`Sample` objects returned), not documents.
Documents of the split with at least ``min_tokens`` tokens are shuffled by a
``np.random.default_rng(seed)`` permutation and walked in that order; each gives up to
``windows_per_doc = k`` non-overlapping windows of ``min_tokens`` tokens at offsets
``0, min_tokens, 2·min_tokens, …`` (``min(k, length // min_tokens)`` of them), until ``n``
windows are taken or the documents run out (then fewer are returned). So ``n`` windows come from
``ceil(n / k)`` documents or more — exactly ``n`` documents only when ``k = 1``. Windows of one
document are not independent samples, so prefer more documents when the corpus has them. With
one window per document (``k = 1``) the sample's tokens are the whole document (a free
memory-mapped view), so sliding-window evaluation can use all of it; truncate mode reads only
the first tokens. Every window's tokens are checksum-verified when the sample is drawn
(:meth:`longrope.data.TokenCorpus.tokens`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from longrope.data.shards import TokenCorpus
from longrope.errors import UserError, shown
from longrope.options import MAX_COUNT, MAX_TOKENS, check_seed, int_problem
from longrope.settings import HELDOUT_FRACTION, check_heldout_fraction

__all__ = ["SPLIT_SALT", "SPLITS", "Sample", "document_role", "document_roles", "empty_split", "none_in_split",
           "sample_documents"]

SPLIT_SALT = "longrope-split-v1"
SPLITS = ("search", "heldout", "all")


@dataclass(frozen=True)
class Sample:
    """One sampled window of a document; ``tokens`` is a verified memory-mapped view (no copy).

    With one window per document the window is the whole document (``offset`` 0)."""

    doc_index: int
    """Row of the document in the corpus index."""
    doc_id: str
    """Stable id; ``id@offset`` for windows after the first."""
    offset: int
    tokens: np.ndarray
    role: str


def document_role(doc_id: str, heldout_fraction: float = HELDOUT_FRACTION, *, salt: str = SPLIT_SALT) -> str:
    """``"heldout"`` or ``"search"`` for a document id, by a stable hash (see the module doc). The id is a string, as
    a shard folder's names are: b"x" or 3 was hashed as its repr ("b'x'"), a role other than the name's (battery
    20b)."""
    if not isinstance(doc_id, str) or not isinstance(salt, str):
        bad, what = (doc_id, "doc_id") if not isinstance(doc_id, str) else (salt, "salt")
        raise UserError(f"{what} must be a string (a document's name in its shard folder), got {shown(bad)}")
    f = check_heldout_fraction(heldout_fraction)
    digest = hashlib.blake2b(f"{salt}\0{doc_id}".encode(), digest_size=8).digest()
    u = int.from_bytes(digest, "big") / 2.0**64
    return "heldout" if u < f else "search"


def document_roles(corpus: TokenCorpus, heldout_fraction: float = HELDOUT_FRACTION) -> list[str]:
    """Role of every document of ``corpus`` (pinned roles win over the hash)."""
    return [corpus.pinned_role(i) or document_role(name, heldout_fraction) for i, name in enumerate(corpus.names)]


def empty_split(corpus: TokenCorpus, split: str, heldout_fraction: float) -> tuple[int, dict[str, int]] | None:
    """None when ``split`` holds a document of ``corpus``; else ``(documents pinned, {role: count})``: what the
    refusals say, since documents pinned at tokenize time keep their role whatever the fraction."""
    if split == "all" or split in document_roles(corpus, heldout_fraction):
        return None
    pinned = [r for r in (corpus.pinned_role(i) for i in range(len(corpus))) if r is not None]
    return len(pinned), {r: pinned.count(r) for r in sorted(set(pinned))}


def none_in_split(corpus: TokenCorpus, split: str, heldout_fraction: float, *, fraction: str = "the fraction",
                  other: str = "use --split all or ") -> str:
    """Why ``split`` holds no document of ``corpus`` (:func:`empty_split` says it holds none), and the fix: with every
    document pinned to train, "change the fraction" was no fix (battery 11a); ``search`` said "lower
    --heldout-fraction, raise --windows-per-doc or add longer documents" for a corpus whose every document was pinned
    to heldout (battery 28b). ``fraction``: how the caller's heldout fraction is spelled; ``other``: the caller's other
    way out, or ''."""
    n_pinned, counts = empty_split(corpus, split, heldout_fraction) or (0, {})
    if n_pinned < len(corpus):
        return (f"{corpus.path}: no {split} documents among {len(corpus)} (heldout fraction {heldout_fraction:g}"
                + (f"; {n_pinned} pinned to other roles at tokenize time" if n_pinned else "")
                + f"); {other}change {fraction}")
    shown = ", ".join(f"{c} to {r}" for r, c in counts.items())
    return (f"{corpus.path}: no {split} documents among {len(corpus)}: every document was pinned to a role at tokenize "
            f"time ({shown}; {fraction} moves none of them); tokenize documents as {split}=PATH or without a role"
            + (", or use --split all" if other else ""))


def sample_documents(
    corpus: TokenCorpus,
    min_tokens: int,
    n: int,
    *,
    seed: int,
    split: str = "heldout",
    heldout_fraction: float = HELDOUT_FRACTION,
    windows_per_doc: int = 1,
) -> list[Sample]:
    """``n`` seeded windows of ≥ ``min_tokens`` tokens from one split (see the module doc).

    ``n`` is the number of :class:`Sample` windows returned, not of documents: with
    ``windows_per_doc = k`` they come from at least ``ceil(n / k)`` documents, each giving up to
    ``k`` consecutive non-overlapping windows of exactly ``min_tokens`` tokens; with ``k = 1``
    each window is one whole document of at least ``min_tokens`` tokens. Raises
    :class:`UserError` when no document of the split is long enough, naming the longest.
    Returns fewer than ``n`` windows when the split's long-enough documents run out (the caller
    may warn).
    """
    if not isinstance(corpus, TokenCorpus):  # a path was "'str' object has no attribute 'names'" (battery 18)
        raise UserError(f"sample_documents takes an open shard folder (TokenCorpus.open(path)), got "
                        f"{type(corpus).__name__}")
    if split not in SPLITS:
        raise UserError(f"split must be one of {', '.join(SPLITS)}, got {shown(split)}")
    for name, v, hi in (("min_tokens", min_tokens, MAX_TOKENS), ("n", n, MAX_COUNT),
                        ("windows_per_doc", windows_per_doc, MAX_COUNT)):
        if (problem := int_problem(v, 1, hi)) is not None:  # 10**400 tokens was echoed whole in the refusal
            raise UserError(f"{name} {problem}")
    check_seed(seed)
    heldout_fraction = check_heldout_fraction(heldout_fraction)  # checked when every document's role is pinned too
    if len(corpus) == 0:
        raise UserError(f"{corpus.path} holds no documents")
    roles = document_roles(corpus, heldout_fraction)
    lengths = corpus.lengths
    in_split = np.array([split == "all" or r == split for r in roles], dtype=bool)
    if not in_split.any():
        raise UserError(none_in_split(corpus, split, heldout_fraction))
    eligible = np.flatnonzero(in_split & (lengths >= min_tokens))
    if eligible.size == 0:
        longest = int(np.argmax(np.where(in_split, lengths, -1)))
        which = "" if split == "all" else f"{split} "
        raise UserError(f"no {which}document has {min_tokens} tokens; the longest is {corpus.names[longest]!r} "
                        f"with {int(lengths[longest])} tokens; use shorter lengths or longer documents")
    rng = np.random.default_rng(seed)
    order = eligible[rng.permutation(eligible.size)]
    out: list[Sample] = []
    for i in order:
        i = int(i)
        k = min(int(windows_per_doc), int(lengths[i]) // min_tokens)
        for w in range(k):
            off = w * min_tokens
            name = corpus.names[i] if off == 0 else f"{corpus.names[i]}@{off}"
            stop = None if windows_per_doc == 1 else off + min_tokens
            out.append(Sample(i, name, off, corpus.tokens(i, off, stop), roles[i]))
            if len(out) == n:
                return out
    return out
