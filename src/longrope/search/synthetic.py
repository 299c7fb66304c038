"""A synthetic objective with a known optimum, for tests and for benchmarking the loop alone.

It mimics what matters about the real one: documents differ a lot in difficulty (a shared offset,
which paired racing cancels) and slightly in where their optimum lies (so one document is a noisy
proxy of the full set); the landscape is smooth in log λ, with a mild preference on n̂.
Picklable, so worker processes and Ray actors can build it too.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from longrope.rope.attention import longrope_attention_factor


def default_optimum(n_dims: int, scale: float) -> np.ndarray:
    """A monotone λ* from ~1 (fast dims) to ~1.1·s (slow dims), sigmoid-shaped like searched factors."""
    i = np.arange(n_dims, dtype=np.float64)
    ramp = 1.0 / (1.0 + np.exp(-(i - 0.55 * n_dims) / max(0.08 * n_dims, 0.5)))
    return 1.0 + (1.1 * scale - 1.0) * ramp + 0.003


@dataclass
class SyntheticObjective:
    """per-doc NLL/token = difficulty_d + mean_i w_i (log λ_i − log λ*_{d,i})² + n̂ term."""

    n_dims: int
    scale: float
    n_docs: int = 5
    seed: int = 0
    doc_noise: float = 0.03
    """spread (log units) of each document's own optimum around λ*"""
    best_start_tokens: int = 8
    tokens_per_doc: int = 1024
    seconds_per_doc: float = 0.0
    """sleep per document, to make evaluators and racing measurable in wall time"""
    optimum: np.ndarray = field(init=False)
    _difficulty: np.ndarray = field(init=False, repr=False)
    _shift: np.ndarray = field(init=False, repr=False)
    _weights: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng(self.seed)
        self.optimum = default_optimum(self.n_dims, self.scale)
        self._difficulty = rng.uniform(2.0, 3.5, size=self.n_docs)
        # Smooth per-document shifts (documents disagree on the optimum in a correlated way).
        base = rng.normal(0.0, self.doc_noise, size=(self.n_docs, self.n_dims))
        kernel = np.exp(-0.5 * (np.arange(-3, 4) / 1.5) ** 2)
        kernel /= kernel.sum()
        self._shift = np.stack([np.convolve(b, kernel, mode="same") for b in base])
        i = np.arange(self.n_dims, dtype=np.float64)
        self._weights = 0.5 + np.exp(-0.5 * ((i - 0.55 * self.n_dims) / (0.2 * self.n_dims)) ** 2)

    @property
    def default_attention(self) -> float:
        """What ``attention_factor=None`` stands for (LongRoPE's formula with L = 256)."""
        return longrope_attention_factor(self.scale, 256)

    def doc_nll(self, factors: np.ndarray, start_tokens: int, doc: int, attention_factor: float | None = None) -> float:
        """Mean NLL per token of one document; the best temperature is halfway between 1 and the default."""
        x = np.log(np.asarray(factors, dtype=np.float64))
        target = np.log(self.optimum) + self._shift[doc]
        shape = float(np.mean(self._weights * (x - target) ** 2))
        n_term = 0.002 * (np.log2(1 + start_tokens) - np.log2(1 + self.best_start_tokens)) ** 2
        m = self.default_attention if attention_factor is None else float(attention_factor)
        m_best = 1.0 + 0.5 * (self.default_attention - 1.0)
        return float(self._difficulty[doc] + shape + n_term + 0.2 * (m - m_best) ** 2)

    def full_nll(self, factors: np.ndarray, start_tokens: int, attention_factor: float | None = None) -> float:
        """Token-weighted NLL over all documents (what the loop calls the full-fidelity fitness)."""
        return float(np.mean([self.doc_nll(factors, start_tokens, d, attention_factor) for d in range(self.n_docs)]))

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray:
        out = np.empty((len(docs), 2), dtype=np.float64)
        for k, d in enumerate(docs):
            if self.seconds_per_doc:
                time.sleep(self.seconds_per_doc)
            nll = self.doc_nll(factors, start_tokens, int(d), attention_factor)
            out[k] = (nll * self.tokens_per_doc, self.tokens_per_doc)
        return out


@dataclass
class SyntheticFactory:
    """Picklable factory ``factory(device) -> objective`` for process and Ray evaluators."""

    n_dims: int
    scale: float
    n_docs: int = 5
    seed: int = 0
    seconds_per_doc: float = 0.0

    def __call__(self, device: str = "cpu") -> SyntheticObjective:
        return SyntheticObjective(
            self.n_dims, self.scale, n_docs=self.n_docs, seed=self.seed, seconds_per_doc=self.seconds_per_doc
        )
