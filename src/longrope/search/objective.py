"""Model-backed objectives: the glue between the pure loop and a loaded model.

Imports torch/transformers only inside :meth:`ObjectiveSpec.__call__` (i.e. in the process that
evaluates), so the loop, the checkpoints and the Ray driver never need them.

An :class:`ObjectiveSpec` is a small picklable description (model, data, length, documents, how a
candidate λ becomes a :class:`~longrope.rope.FactorSet`). Calling it with a device builds the
objective there: the model is loaded once, the factors are installed once, and each request only
``swap`` s the factor tables (microseconds) and runs the forward passes.

Two fitnesses, both per-document ``(nll_sum, n_tokens)`` so that they are additive:

- ``ppl``: perplexity at the target length on search-split documents, each truncated to
  BOS + L'−1 tokens (the LongRoPE protocol);
- ``needle``: LongRoPE2's needle-driven perplexity: the NLL of the answer tokens of a pass key
  planted in a real document at a seeded depth, teacher-forced (one forward, no generation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.settings import HELDOUT_FRACTION

MODES = ("long", "short", "progressive")
FITNESSES = ("ppl", "needle")


@dataclass(frozen=True)
class CandidateMapper:
    """How a searched λ (and n̂) becomes the factor set installed in the model. Pure numpy.

    - ``long``: λ are the long factors for L → L'; attention factor None (LongRoPE's
      ``sqrt(1 + ln s / ln L)``, the same for every candidate).
    - ``short``: λ are the short factors of ``base`` (used when the sequence fits in L); the rest of
      ``base`` is kept.
    - ``progressive``: λ' is relative to ``base`` (the set the model was fine-tuned with); the
      installed factors are ``λ_base ⊙ λ'`` for the new target length (``FactorSet.compose``).
    """

    mode: str
    rope_theta: float
    original_length: int
    """L of the model"""
    target_length: int
    """the length the factors are for (L' of the result)"""
    base: dict | None = None
    """``FactorSet.to_dict()`` of the base factors (short / progressive modes)"""

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "long" and self.base is None:
            raise ValueError(f"mode {self.mode!r} needs base factors")

    def factor_set(
        self,
        factors: np.ndarray,
        start_tokens: int,
        provenance: dict | None = None,
        attention_factor: float | None = None,
    ):
        """The factor set to install; ``attention_factor`` None keeps the default (LongRoPE's formula;
        the short mode keeps the base file's)."""
        from longrope.rope import FactorSet

        lam = np.asarray(factors, dtype=np.float64)
        prov = dict(provenance or {})

        def long_set(original_length: int, rope_theta: float, provenance: dict) -> FactorSet:
            return FactorSet(
                long_factor=lam,
                start_tokens=int(start_tokens),
                attention_factor=attention_factor,
                original_max_position_embeddings=original_length,
                max_position_embeddings=self.target_length,
                rope_theta=rope_theta,
                method="longrope",
                provenance=provenance,
            )

        if self.mode == "long":
            return long_set(self.original_length, self.rope_theta, prov)
        base = FactorSet.from_dict(self.base)
        if self.mode == "short":
            return base.with_(short_factor=lam, method="longrope", provenance={**base.provenance, **prov})
        # λ' of the progressive search is relative to the fine-tuned model, whose length is L'_F.
        relative = long_set(base.max_position_embeddings, base.rope_theta, {})
        out = base.compose(relative)
        return out.with_(provenance={**out.provenance, **prov, "relative_factor": lam.tolist()})


@dataclass
class ObjectiveSpec:
    """Picklable recipe for a model objective; ``spec(device)`` builds it (loads the model once)."""

    model: str
    data: str
    length: int
    """evaluation length in tokens, BOS included"""
    n_docs: int
    mapper: CandidateMapper
    fitness: str = "ppl"
    seed: int = 0
    """seed of the document sample (and of the needle keys/depths)"""
    split: str = "search"
    heldout_fraction: float = HELDOUT_FRACTION
    dtype: str = "float32"
    attn_implementation: str | None = None
    """None: the family's working implementation (``load_model``)"""
    threads: int | None = None
    """torch threads in this process (CPU workers share the cores)"""
    windows_per_doc: int | None = 1
    """at most this many non-overlapping windows per document; None spreads the windows over as many
    documents as possible (``longrope.evaluate.windows.select_windows``)"""

    def __post_init__(self) -> None:
        if self.fitness not in FITNESSES:
            raise ValueError(f"fitness must be one of {FITNESSES}, got {self.fitness!r}")
        if self.n_docs < 1:
            raise ValueError(f"n_docs must be >= 1, got {self.n_docs}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, device: str = "cpu") -> PerplexityObjective | NeedleObjective:
        import torch

        from longrope.data import TokenCorpus
        from longrope.evaluate.windows import resolve_bos, select_windows
        from longrope.models.loading import load_model

        if self.threads:
            torch.set_num_threads(int(self.threads))
        model, tokenizer = load_model(self.model, dtype=self.dtype, device=device,
                                      attn_implementation=self.attn_implementation)
        corpus = TokenCorpus.open(self.data)
        if tokenizer is not None:
            corpus.check_tokenizer(tokenizer, model_name=self.model)
        bos_id = resolve_bos(tokenizer, corpus=corpus, model=model)
        docs = select_windows(corpus, self.length, self.n_docs, split=self.split, seed=self.seed,
                              heldout_fraction=self.heldout_fraction, windows_per_doc=self.windows_per_doc,
                              bos=bos_id is not None)
        if len(docs) < self.n_docs:
            raise UserError(f"{self.data} holds only {len(docs)} {self.split} window(s) of {self.length} tokens, "
                            f"{self.n_docs} are needed")
        return build_objective(model, tokenizer, self.mapper, docs, self.length, bos_id, fitness=self.fitness,
                               seed=self.seed)


def build_objective(model: Any, tokenizer: Any, mapper: CandidateMapper, docs: Sequence, length: int,
                    bos_id: int | None, *, fitness: str = "ppl", seed: int = 0) -> PerplexityObjective | NeedleObjective:
    """The objective over ``docs`` on a loaded model (factors installed here, swapped per request)."""
    from longrope.models import install_factors

    patch = install_factors(model, mapper.factor_set(_identity_like(mapper, model), 0))
    if fitness == "needle":
        if tokenizer is None:
            raise UserError("the needle fitness needs a tokenizer, and this model has none")
        return NeedleObjective(model, patch, mapper, docs, length, bos_id, tokenizer, seed)
    return PerplexityObjective(model, patch, mapper, docs, length, bos_id)


def _identity_like(mapper: CandidateMapper, model: Any) -> np.ndarray:
    """Factors of ones of the model's size (a valid first install; every request swaps anyway)."""
    from longrope.models import inspect_model

    info = inspect_model(model)
    if not info.supported:
        raise UserError(f"cannot search factors for this model: {info.reason}")
    return np.ones(int(info.rotary_dim) // 2)


class PerplexityObjective:
    """Per-document (nll_sum, n_tokens) at ``length`` (truncate mode: BOS + length−1 tokens)."""

    def __init__(self, model: Any, patch: Any, mapper: CandidateMapper, docs: Sequence, length: int,
                 bos_id: int | None) -> None:
        self.model, self.patch, self.mapper = model, patch, mapper
        self.docs = list(docs)
        self.length = length
        self.bos_id = bos_id
        self.n_docs = len(self.docs)

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray:
        from longrope.evaluate import evaluate_perplexity

        self.patch.swap(self.mapper.factor_set(factors, start_tokens, attention_factor=attention_factor))
        res = evaluate_perplexity(self.model, [self.docs[d] for d in docs], self.length, bos_id=self.bos_id)
        return np.asarray([[p.nll_sum, p.n_tokens] for p in res.per_doc], dtype=np.float64)


class NeedleObjective:
    """LongRoPE2's needle-driven fitness: answer-token NLL of a pass key planted in document d."""

    def __init__(self, model: Any, patch: Any, mapper: CandidateMapper, docs: Sequence, length: int,
                 bos_id: int | None, tokenizer: Any, seed: int) -> None:
        from longrope.evaluate.passkey import build_passkey_prompt

        self.model, self.patch, self.mapper = model, patch, mapper
        self.bos_id = bos_id
        self.n_docs = len(docs)
        rng = np.random.default_rng([seed, 0x6E65])  # seeded keys; depths spread evenly over the docs
        self.prompts = []
        for k, doc in enumerate(docs):
            key = int(rng.integers(10_000, 100_000))
            depth = (k + 0.5) / len(docs)
            self.prompts.append(
                build_passkey_prompt(tokenizer, length, key, depth, bos_id=bos_id, with_answer=True,
                                     haystack=np.asarray(doc.tokens, dtype=np.int64))
            )

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray:
        from longrope.evaluate.passkey import needle_score

        self.patch.swap(self.mapper.factor_set(factors, start_tokens, attention_factor=attention_factor))
        res = needle_score(self.model, [self.prompts[d] for d in docs])
        return np.asarray([[nll, n] for _, nll, n in res.per_prompt], dtype=np.float64)
