"""Training batches: random BOS-first windows of the training books, with shares of passkey, copy and
induction rows. All randomness comes from one ``numpy.random.Generator`` (a checkpoint stores its state)."""

from __future__ import annotations

import numpy as np

from longrope.errors import UserError
from tools.train_tiny.config import TinyConfig
from tools.train_tiny.passkey import NEEDLE, PasskeyPieces, answer_ids, build_prompt
from tools.train_tiny.tokenizer import encoder


class BatchSampler:
    """Random BOS-first windows of the training books, with a share of passkey sequences.

    A book is picked with probability proportional to its length (so every training token is
    equally likely), then a uniform offset. A passkey sequence has a random total length in
    [min, context], a random depth and a random 5-digit key; its answer " K." follows, and the rest
    of the window is more filler (predictable, harmless), so retrieval is practised at every
    position of the trained window, not only at its end.
    """

    def __init__(self, docs: list[np.ndarray], tokenizer, cfg: TinyConfig, rng: np.random.Generator):
        self.docs = [d for d in docs if len(d) >= cfg.context]
        if not self.docs:
            raise UserError(f"no training document has {cfg.context} tokens; give longer texts")
        lengths = np.array([len(d) - cfg.context + 2 for d in self.docs], dtype=np.float64)
        self.p = lengths / lengths.sum()
        self.cfg = cfg
        self.rng = rng
        self.bos = tokenizer.bos_token_id
        self.encode = encoder(tokenizer)
        self.pieces = PasskeyPieces.from_tokenizer(self.encode)
        self.min_passkey = (1 + len(self.pieces.intro) + len(self.encode(NEEDLE.format(key=12345)))
                            + len(self.pieces.question) + 8)
        if self.min_passkey + 8 > cfg.context:
            self.min_passkey = None  # context too short for passkeys (only in microscopic tests)
        self.digits = np.asarray([self.encode(str(d))[0] for d in range(10)], dtype=np.int64)
        self.vocab = len(tokenizer)

    def window(self) -> np.ndarray:
        c = self.cfg.context
        doc = self.docs[self.rng.choice(len(self.docs), p=self.p)]
        off = int(self.rng.integers(0, len(doc) - (c - 1) + 1))
        return np.concatenate([[self.bos], doc[off : off + c - 1]])

    def passkey(self) -> np.ndarray:
        return self._passkey()[0]

    def _passkey(self) -> tuple[np.ndarray, int]:
        """(ids, index of the answer's first token)."""
        c = self.cfg.context
        key = int(self.rng.integers(10000, 100000))
        length = int(self.rng.integers(self.min_passkey, c - 4 + 1))
        ids = build_prompt(self.pieces, self.encode, length=length, key=key,
                           depth=float(self.rng.random()), bos_id=self.bos)
        answer_at = len(ids)
        ids += answer_ids(self.encode, key)
        while len(ids) < c:
            ids += self.pieces.filler
        return np.asarray(ids[:c]), answer_at

    def _copy(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, target weights) of a copy row: BOS, a random string S of 5..``copy_max_length`` tokens (half the
        rows digits only, like a passkey; the others any non-special token), book text of random
        length, S again, more text. Target weights: 0 on S's first copy and on the first token of
        its second copy (neither is predictable), ``passkey_answer_weight`` on the rest of the
        second copy, 1 on the text. The gap spans the whole window, so copying is practised at
        every distance up to the context."""
        c = self.cfg.context
        n = int(self.rng.integers(5, max(5, min(self.cfg.copy_max_length, (c - 2) // 2)) + 1))
        if self.rng.random() < 0.5:
            s = self.digits[self.rng.integers(0, 10, n)]
        else:
            s = self.rng.integers(3, self.vocab, n)
        gap = int(self.rng.integers(0, c - 1 - 2 * n + 1))
        text = self.window()[1:]
        ids = np.concatenate([[self.bos], s, text[:gap], s, text[gap:]])[:c]
        w = np.ones(c, dtype=np.float32)
        w[1 : 1 + n] = 0.0
        second = 1 + n + gap
        w[second] = 0.0
        w[second + 1 : second + n] = self.cfg.passkey_answer_weight
        return ids, w

    def _induction(self, length: int) -> tuple[np.ndarray, np.ndarray]:
        """(ids, target weights) of one induction row of ``length`` tokens: BOS, then a random
        string S of 4..40 non-special tokens repeated to the end. Weights: 0 on S's first copy and
        on the first token of its second copy (not predictable), 1 on the rest, which only
        copying can predict."""
        n = int(self.rng.integers(4, max(4, min(40, (length - 1) // 2)) + 1))
        s = self.rng.integers(3, self.vocab, n)
        ids = np.concatenate([[self.bos], np.tile(s, -(-(length - 1) // n))[: length - 1]])
        w = np.zeros(length, dtype=np.float32)
        w[n + 2 :] = 1.0
        return ids, w

    def induction_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """([batch * k, context / k] ids, same-shape weights) of induction rows only, where k is
        ``induction_segments``: the same tokens per step as a text batch, in k times as many
        shorter rows (more distinct strings per step: the copy heads form in fewer steps)."""
        k = self.cfg.induction_segments
        rows, weights = zip(*(self._induction(self.cfg.context // k) for _ in range(self.cfg.batch_size * k)))
        return np.stack(rows).astype(np.int64), np.stack(weights)

    def _row(self) -> tuple[np.ndarray, np.ndarray]:
        """One row and its target weights; draws passkey / copy / text by their fractions."""
        w = np.ones(self.cfg.context, dtype=np.float32)
        if self.min_passkey is None:
            return self.window(), w
        u = self.rng.random()
        if u < self.cfg.passkey_fraction:
            ids, at = self._passkey()
            w[at + 1 : at + 6] = self.cfg.passkey_answer_weight  # " " then 5 digits, then "."
            return ids, w
        if u < self.cfg.passkey_fraction + self.cfg.copy_fraction:
            return self._copy()
        return self.window(), w

    def batch(self) -> np.ndarray:
        """[batch, context] int64 ids."""
        return self.weighted_batch()[0]

    def weighted_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """([batch, context] int64 ids, [batch, context] float32 loss weights of each token as a
        target): 1 everywhere except the 5 key digits of passkey answers (``passkey_answer_weight``).
        Copy rows (``copy_fraction``) carry their own weights (see :meth:`_copy`).
        Draws the same random numbers as :meth:`batch`, so both give the same ids."""
        rows, weights = zip(*(self._row() for _ in range(self.cfg.batch_size)))
        return np.stack(rows).astype(np.int64), np.stack(weights)
