"""Training windows: documents of the ``train`` role, packed into windows of N tokens.

**Which documents.** Only documents whose role (:func:`longrope.data.document_roles`) is
``"train"`` — pinned at tokenize time with ``--input train=PATH``. Search and held-out documents
measure the factors and the fine-tuned model; training on them would leak into both, so
:func:`training_documents` refuses (one-line :class:`UserError`) a training document that has the
same id or the same tokens as a search or held-out document of the same folder or of any
``exclude`` folder. Content is compared by a hash of the token ids, so the check needs every
folder tokenized with the model's tokenizer.

**Packing.** The training documents, in a seeded order that is reshuffled every epoch, form one
stream. Each window (a row of N tokens) is cut from it as *segments*: a segment is one document,
or the part of one that fits, preceded by BOS (``bos=True``, the layout of evaluation windows).
A long document continues in the next window (after a new BOS). Position ids restart at 0 in
every segment; transformers turns restarting position ids into a block-diagonal causal mask when
no attention mask is given (``find_packed_sequence_indices``: a new sequence wherever the id does
not grow by 1), and flash-attention kernels into varlen boundaries, so a token never attends to
another segment. The last token of a segment has no target (its successor is not in its context).

**Mixed context windows** (LongRoPE2): a *short* step cuts the same N-token rows into segments of at
most S ≤ L tokens (S = L by default), so tokens per step stay the same and every segment fits the
original window; the loop trains those with the short factors. Which steps are short is decided
by the step index alone (:func:`is_short_step`), so a resumed run makes the same choice.

**Synthetic passkey rows** (``passkey_share``): in long steps, each row of the global batch is, with
that probability (decided from the seed, the step and the row index alone, so resumes and several
processes agree), replaced by the standard passkey prompt of the row's length with its answer
(:func:`passkey_row`: a 5-digit key at a random depth of the filler). The packed row it replaces
is still consumed from the stream. This keeps retrieval in the mixture while positions are
re-learned, as the embedded model's own pre-training mixture did.

**Position in the data.** A :class:`Cursor` (epoch, place in the epoch's order, offset in the
document) is all the state; it is saved with each checkpoint, and every process computes the
same cursor (each builds the index spans of the whole global batch and reads only its own rows).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from longrope.data import TokenCorpus, document_roles
from longrope.data.shards import content_hash
from longrope.errors import ConfigError, UserError, shown
from longrope.options import MAX_COUNT, int_problem, is_number
from longrope.settings import HELDOUT_FRACTION

__all__ = [
    "TRAIN_ROLE",
    "IGNORE_INDEX",
    "Cursor",
    "Segment",
    "PackedWindows",
    "content_hash",
    "require_training_documents",
    "training_documents",
    "documents_with_targets",
    "is_short_step",
    "row_targets",
    "holds_target",
    "materialize",
    "passkey_rows",
    "passkey_row",
]

TRAIN_ROLE = "train"
IGNORE_INDEX = -100  # the target of positions without one (transformers' convention)

Segment = tuple[int, int, int]
"""``(j, start, stop)``: tokens ``start:stop`` of training document ``j`` (``j = -1``: a lone BOS)."""


def _guarded(corpus: TokenCorpus, roles: Sequence[str], ids: dict, hashes: dict) -> None:
    """Add the search/held-out documents of ``corpus`` to the id and content tables."""
    for i, role in enumerate(roles):
        if role == TRAIN_ROLE:
            continue
        where = (corpus.names[i], role, str(corpus.path))
        ids.setdefault(corpus.names[i], where)
        hashes.setdefault(content_hash(corpus.tokens(i)), where)


def require_training_documents(corpus: TokenCorpus, heldout_fraction: float = HELDOUT_FRACTION, *,
                               bos: bool = True) -> list[int]:
    """Rows of ``corpus`` with role ``train``; a corpus without any, or without one that holds a target
    (:func:`holds_target`: ``bos`` off makes a one-token document hold none), is refused in one line (read at a
    fine-tuning start and by a pipeline's plan check, before the stages in front of its fine-tuning stage)."""
    if not isinstance(corpus, TokenCorpus):  # a path was an AttributeError (battery 20d)
        raise UserError(f"require_training_documents takes an open TokenCorpus (TokenCorpus.open(path)), got "
                        f"{shown(corpus)}")
    train = [i for i, r in enumerate(document_roles(corpus, heldout_fraction)) if r == TRAIN_ROLE]
    if not train:
        raise UserError(f"{corpus.path} has no training documents (role '{TRAIN_ROLE}'); tokenize them "
                        "with 'longrope tokenize --input train=PATH ...'")
    lengths = corpus.lengths
    if not any(holds_target(lengths[i], bos) for i in train):
        if not any(holds_target(lengths[i], True) for i in train):
            raise UserError(f"{corpus.path}: every training document is empty (nothing to train on); tokenize the "
                            "texts to train on again, non-empty (train=PATH, or documents without a role)")
        raise ConfigError("bos", f"{corpus.path}: every training document has one token, which has no target when "
                          "segments begin without BOS (set by {name}): nothing to train on; begin them with BOS, or "
                          "tokenize longer training documents")
    return train


def training_documents(
    corpus: TokenCorpus, *, heldout_fraction: float = HELDOUT_FRACTION, exclude: Sequence[str] = (), bos: bool = True
) -> np.ndarray:
    """Rows of ``corpus`` with role ``train`` that hold a target, after refusing any overlap (see module doc).

    ``exclude``: more shard folders whose search/held-out documents must not be trained on; they must
    have been tokenized with the same tokenizer as ``corpus`` (content is compared as token ids).
    ``bos``: whether segments begin with BOS; without it a one-token document has no target and is left out
    (a corpus of them made a step of no targets, a ZeroDivisionError at the first step: battery 29b).
    """
    roles = document_roles(corpus, heldout_fraction)
    train = require_training_documents(corpus, heldout_fraction, bos=bos)
    ids: dict[str, tuple[str, str, str]] = {}
    hashes: dict[str, tuple[str, str, str]] = {}
    _guarded(corpus, roles, ids, hashes)
    for path in exclude:
        other = TokenCorpus.open(path)
        rules = (corpus.encoding_sha256, other.encoding_sha256)  # one vocabulary, other rules: one text, other ids
        if other.tokenizer_info.get("vocab_sha256") != corpus.tokenizer_info.get("vocab_sha256") \
                or (None not in rules and rules[0] != rules[1]):
            raise UserError(f"{other.path} was tokenized with another tokenizer than {corpus.path}, so their "
                            "contents cannot be compared; re-tokenize it with the model's tokenizer")
        _guarded(other, document_roles(other, heldout_fraction), ids, hashes)
    for i in train:
        name = corpus.names[i]
        hit, how = ids.get(name), "the same id"
        if hit is None:
            hit, how = hashes.get(content_hash(corpus.tokens(i))), "the same content"
        if hit is not None:
            other_name, role, folder = hit
            same = "" if other_name == name else f" {other_name!r}"
            raise UserError(f"training document {name!r} has {how} as {role} document{same} of {folder}: "
                            "training on it would leak into the search and the evaluation; drop it from "
                            "the train= input")
    return documents_with_targets(corpus, train, bos=bos)


def documents_with_targets(corpus: TokenCorpus, rows: Sequence[int], *, bos: bool) -> np.ndarray:
    """Those of ``rows`` whose document holds a target (:func:`holds_target`): the training rows
    :func:`training_documents` gives, of the training documents it checked."""
    lengths = corpus.lengths
    return np.array([i for i in rows if holds_target(lengths[i], bos)], dtype=np.int64)


def is_short_step(step: int, share: float) -> bool:
    """Whether optimizer step ``step`` (0-based) trains short windows: exactly ``floor(n·share)`` of the
    first n steps are short, spread evenly (no random draw, so a resumed run agrees)."""
    if share <= 0:
        return False
    return math.floor((step + 1) * share + 1e-9) > math.floor(step * share + 1e-9)


@dataclass(frozen=True)
class Cursor:
    """Where the next window starts: ``index`` into epoch ``epoch``'s document order, ``offset`` tokens in."""

    epoch: int = 0
    index: int = 0
    offset: int = 0

    def to_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "index": self.index, "offset": self.offset}

    @classmethod
    def from_dict(cls, d: dict) -> Cursor:
        return cls(int(d["epoch"]), int(d["index"]), int(d["offset"]))


class PackedWindows:
    """Cuts rows of segments from the seeded document stream (index arithmetic only, no token reads)."""

    def __init__(self, lengths: np.ndarray, *, seed: int, bos: bool):
        self.lengths = np.asarray(lengths, dtype=np.int64)  # [n_docs], all >= 1
        if self.lengths.size == 0 or int(self.lengths.min()) < 1:
            raise ValueError("PackedWindows needs at least one document, all non-empty")
        self.seed = int(seed)
        self.bos = bool(bos)
        self._order_epoch = -1
        self._order = np.zeros(0, dtype=np.int64)

    def order(self, epoch: int) -> np.ndarray:
        """The document order of ``epoch`` (a permutation seeded by ``(seed, epoch)``)."""
        if epoch != self._order_epoch:
            rng = np.random.default_rng([self.seed, epoch])
            self._order = rng.permutation(self.lengths.size)
            self._order_epoch = epoch
        return self._order

    def cursor_problem(self, cursor: Cursor) -> str | None:
        """Why ``cursor`` cannot be a position in this stream (None if it can): an epoch beyond any run,
        a document index past the documents, or an offset past that document's end."""
        n_docs = self.lengths.size
        if cursor.epoch >= 2**31:
            return "has an epoch beyond any run"
        if cursor.index >= n_docs:
            return f"points at document {cursor.index} of {n_docs}"
        length = int(self.lengths[int(self.order(cursor.epoch)[cursor.index])])
        if cursor.offset >= length:
            return f"points {cursor.offset} tokens into a document of {length}"
        return None

    def rows(self, cursor: Cursor, n_rows: int, row_len: int, max_segment: int) -> tuple[list[list[Segment]], Cursor]:
        """``n_rows`` rows of exactly ``row_len`` tokens, segments of at most ``max_segment`` tokens (BOS
        included), and the cursor after them."""
        if max_segment < 1 or row_len < 1:
            raise ValueError("row_len and max_segment must be >= 1")
        epoch, index, offset = cursor.epoch, cursor.index, cursor.offset
        n_docs = self.lengths.size
        out: list[list[Segment]] = []
        for _ in range(n_rows):
            row: list[Segment] = []
            used = 0
            while used < row_len:
                want = min(row_len - used, max_segment) - int(self.bos)
                if want <= 0:  # one slot left and BOS takes it: a lone BOS, no target
                    row.append((-1, 0, 0))
                    used += 1
                    continue
                j = int(self.order(epoch)[index])
                take = min(want, int(self.lengths[j]) - offset)
                row.append((j, offset, offset + take))
                used += int(self.bos) + take
                offset += take
                if offset == self.lengths[j]:
                    offset, index = 0, index + 1
                    if index == n_docs:
                        epoch, index = epoch + 1, 0
            out.append(row)
        return out, Cursor(epoch, index, offset)


def _segment_length(seg: Segment, bos: bool) -> int:
    return int(bos) + (seg[2] - seg[1])


def row_targets(row: Sequence[Segment], bos: bool) -> int:
    """Positions of ``row`` that have a target: every token but the last of each segment."""
    return sum(_segment_length(s, bos) - 1 for s in row)


def holds_target(length: int, bos: bool) -> bool:
    """Whether a document of ``length`` tokens, a segment of its own, has a target (:func:`row_targets`'s rule:
    without BOS a one-token document has none)."""
    return row_targets([(0, 0, int(length))], bos) > 0


def materialize(
    rows: Sequence[Sequence[Segment]],
    tokens: Callable[[int, int, int], np.ndarray],
    *,
    row_len: int,
    bos_id: int | None,
    vocab_size: int,
) -> dict[str, np.ndarray]:
    """Token arrays for ``rows``: ``input_ids``, ``position_ids`` and ``targets`` (IGNORE_INDEX where a
    position has none), each ``[len(rows), row_len]`` int64. ``tokens(j, start, stop)`` reads a document."""
    bos = bos_id is not None
    n = len(rows)
    input_ids = np.empty((n, row_len), dtype=np.int64)
    position_ids = np.empty((n, row_len), dtype=np.int64)
    targets = np.full((n, row_len), IGNORE_INDEX, dtype=np.int64)
    for r, row in enumerate(rows):
        p = 0
        for j, a, b in row:
            seg = np.asarray(tokens(j, a, b), dtype=np.int64) if j >= 0 else np.zeros(0, dtype=np.int64)
            if bos:
                seg = np.concatenate(([bos_id], seg))
            m = seg.size
            input_ids[r, p : p + m] = seg  # [m]
            position_ids[r, p : p + m] = np.arange(m)
            targets[r, p : p + m - 1] = seg[1:]
            p += m
        if p != row_len:
            raise AssertionError(f"row holds {p} tokens, expected {row_len}")
    top = int(input_ids.max()) if input_ids.size else 0
    if top >= vocab_size or int(input_ids.min()) < 0:
        raise UserError(f"token id {top} is outside the model's vocabulary ({vocab_size}); the shards were "
                        "tokenized for another model — re-run 'longrope tokenize --tokenizer <the model>'")
    return {"input_ids": input_ids, "position_ids": position_ids, "targets": targets}


def passkey_rows(seed: int, step: int, n_rows: int, share: float) -> set[int]:
    """Indices of the global batch's rows that are synthetic passkey prompts at ``step``."""
    for name, value, lo in (("seed", seed, 0), ("step", step, 0), ("n_rows", n_rows, 0)):
        if (problem := int_problem(value, lo, MAX_COUNT)) is not None:  # -4 rows was numpy's ValueError
            raise UserError(f"passkey_rows: {name} {problem}")
    if not is_number(share) or not 0 <= share <= 1:
        raise UserError(f"passkey_rows: share must be a number in [0, 1], got {shown(share)}")
    if share <= 0:
        return set()
    u = np.random.default_rng([int(seed), 0x9A55, int(step)]).random(n_rows)
    return {int(i) for i in np.flatnonzero(u < share)}


def passkey_row(tokenizer: object, length: int, *, seed: int, step: int, row: int,
                bos_id: int | None) -> dict[str, np.ndarray]:
    """One synthetic row: the passkey prompt of ``length`` tokens ending with its answer; every
    position but the last has a target. Key and depth come from ``(seed, step, row)``."""
    from longrope.evaluate.passkey import build_passkey_prompt

    rng = np.random.default_rng([int(seed), 0x9A56, int(step), int(row)])
    key, depth = int(rng.integers(10_000, 100_000)), float(rng.random())
    ids = build_passkey_prompt(tokenizer, length, key, depth, bos_id=bos_id, with_answer=True).input_ids
    targets = np.full(length, IGNORE_INDEX, dtype=np.int64)
    targets[:-1] = ids[1:]
    return {"input_ids": ids.astype(np.int64), "position_ids": np.arange(length, dtype=np.int64), "targets": targets}
