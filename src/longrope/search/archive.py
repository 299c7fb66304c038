"""The fitness cache: every genome ever evaluated and its per-document scores.

Scores are stored per document as ``(nll_sum, n_tokens, *parts)``: the fitness reads the first two;
``parts`` are what the fitness was made of (a joint fitness's document NLL and answer NLL, say),
kept for reports. ``(nll_sum, n_tokens)`` are additive, which is what makes
racing cheap and exact: a candidate scored on one document and later promoted is only evaluated on
the documents it lacks, and its fitness on any subset of documents is
``sum(nll_sum) / sum(n_tokens)`` over that subset (token-weighted mean NLL; with the paper's
equal-length truncated documents it equals the paper's mean of per-document means). PPL = exp(fitness).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

from longrope.errors import UserError, shown
from longrope.options import MAX_COUNT, int_problem
from longrope.search.space import Genome


def recordable_score(row: Any) -> bool:
    """Whether ``row`` (nll_sum, n_tokens, *parts) is a score a search records and checkpoints: a token count >= 1 and
    numbers that are not -inf. A diverged model's NaN or +inf NLL is measured, not damage (:meth:`Archive.add`
    records it as +inf, the worst fitness, and keeps its parts as they came): refusing it at ``--resume`` called the
    checkpoint of a search whose float16 candidate overflowed "malformed" and sent the user to delete the folder.
    Only -inf, the score that would win every race, and a count of no token are refused."""
    values = [float(x) for x in row]
    return len(values) >= 2 and math.isfinite(values[1]) and values[1] >= 1 and -math.inf not in values


class Archive:
    """Genome -> {doc index: (nll_sum, n_tokens, *parts)}, plus the ranking of fully evaluated genomes."""

    def __init__(self, n_docs: int) -> None:
        problem = int_problem(n_docs, 1, MAX_COUNT)
        if problem:  # a text was '<' between str and int (battery 21b)
            raise UserError(f"n_docs {problem}")
        self.n_docs = int(n_docs)
        self.scores: dict[Genome, dict[int, tuple]] = {}
        #: genomes proposed but not yet told back (so that no duplicate is proposed meanwhile).
        self.reserved: set[Genome] = set()
        self._ranked: list[Genome] | None = None

    # -- updates ---------------------------------------------------------------------------------
    def add(self, genome: Genome, docs: Iterable[int], scores: np.ndarray) -> None:
        """Record per-document ``scores`` ``[len(docs), 2 + parts]`` (nll_sum, n_tokens, *parts) of ``genome``."""
        docs = self._docs(docs)
        rows = np.asarray(scores, dtype=np.float64)
        if not docs and rows.size == 0:  # a ticket whose windows were all scored meanwhile: nothing to record
            return
        if rows.ndim != 2 or rows.shape[0] != len(docs) or rows.shape[1] < 2:  # zip() dropped the rows past the
            # shorter one without a word, 1-D scores were an IndexError (battery 21b)
            raise UserError(f"scores must be one row (nll_sum, n_tokens, ...) per document: {len(docs)} x 2 or more, "
                            f"got shape {list(rows.shape)}")
        entry = self.scores.setdefault(genome, {})
        for d, row in zip(docs, rows):
            nll = float(row[0])
            if not math.isfinite(nll):
                nll = math.inf  # a diverged model is the worst fitness, never a crash of the loop
            entry[int(d)] = (nll, int(row[1]), *(float(x) for x in row[2:]))
        self._ranked = None

    def parts(self, genome: Genome, docs: Iterable[int] | None = None) -> np.ndarray | None:
        """Sums over ``docs`` (default: all scored) of the parts recorded beside the fitness, or None
        when there are none (a fitness made of one thing) or a document is missing."""
        have = self.scores.get(genome)
        if not have:
            return None
        docs = sorted(have) if docs is None else list(docs)
        rows = [have.get(d) for d in docs]
        if any(r is None or len(r) <= 2 for r in rows):
            return None
        return np.sum([r[2:] for r in rows], axis=0)

    # -- queries ---------------------------------------------------------------------------------
    def known(self, genome: Genome) -> bool:
        """Evaluated (at any fidelity) or currently in flight: proposing it again would be a duplicate."""
        return genome in self.scores or genome in self.reserved

    def missing_docs(self, genome: Genome, docs: Iterable[int]) -> tuple[int, ...]:
        have = self.scores.get(genome, {})
        return tuple(d for d in docs if d not in have)

    def evaluated_docs(self, genome: Genome) -> tuple[int, ...]:
        return tuple(sorted(self.scores.get(genome, {})))

    def is_full(self, genome: Genome) -> bool:
        return len(self.scores.get(genome, {})) >= self.n_docs

    def fitness(self, genome: Genome, docs: Iterable[int] | None = None) -> float | None:
        """Mean NLL per token over ``docs`` (default: all docs); None when one of them is missing."""
        docs = range(self.n_docs) if docs is None else self._docs(docs)
        have = self.scores.get(genome)
        if have is None:
            return None
        if not docs:  # no document measured: no fitness (it was inf, the score of a diverged model, battery 21b)
            return None
        nll = 0.0
        ntok = 0
        for d in docs:
            if d not in have:
                return None
            nll += have[d][0]
            ntok += have[d][1]
        if ntok <= 0:
            return math.inf
        return nll / ntok

    def _docs(self, docs: Iterable[int]) -> list[int]:
        """``docs`` as a list of document indices of this archive: an index past n_docs was recorded as a document
        the search never has, a number alone was "'int' object is not iterable" (battery 21b)."""
        listed = not isinstance(docs, (str, bytes)) and hasattr(docs, "__iter__") and getattr(docs, "ndim", 1) != 0
        out = list(docs) if listed else None
        if out is None or any(int_problem(d, 0, self.n_docs - 1) for d in out):
            raise UserError(f"docs must be a list of document indices in [0, {self.n_docs - 1}], got {shown(docs)}")
        return [int(d) for d in out]

    def ranked(self) -> list[Genome]:
        """Fully evaluated genomes, best first; ties broken by the genome itself (deterministic)."""
        if self._ranked is None:
            full = [g for g, s in self.scores.items() if len(s) >= self.n_docs]
            self._ranked = sorted(full, key=lambda g: (self.fitness(g), g))
        return self._ranked

    def best(self) -> tuple[Genome, float] | None:
        ranked = self.ranked()
        if not ranked:
            return None
        return ranked[0], float(self.fitness(ranked[0]))

    def n_doc_evals(self) -> int:
        return sum(len(s) for s in self.scores.values())

    # -- (de)serialisation -----------------------------------------------------------------------
    def to_json(self) -> list:
        return [
            [g.to_json(), {str(d): list(v) for d, v in sorted(s.items())}] for g, s in self.scores.items()
        ]

    @classmethod
    def from_json(cls, n_docs: int, obj: list, space: Any = None) -> Archive:
        """The archive :meth:`to_json` wrote; a ``ValueError`` naming the first entry that no search could have
        written (a document index outside ``[0, n_docs)``, a non-finite score, a token count below 1, parts of
        another width, with ``space`` a genome outside it): such scores would count as documents that do not
        exist, win or lose every race, or make a best candidate the search could never have proposed."""
        arc = cls(n_docs)
        width = None
        for g_json, s in obj:
            g = Genome.from_json(g_json) if space is None else space.recorded_genome(g_json)
            entry = {}
            for d, v in s.items():
                doc, row = int(d), (float(v[0]), int(v[1]), *(float(x) for x in v[2:]))
                if not 0 <= doc < n_docs:
                    raise ValueError(f"a score of document {doc}, outside the {n_docs} window(s) searched")
                if not recordable_score(row) or math.isnan(row[0]):  # add() records a NaN NLL as +inf
                    raise ValueError(f"a score {list(v)[:4]} that is -inf, NaN or counts no token")
                if width is not None and len(row) != width:
                    raise ValueError("scores of different widths (parts of different fitnesses)")
                width = len(row)
                entry[doc] = row
            arc.scores[g] = entry
        return arc
