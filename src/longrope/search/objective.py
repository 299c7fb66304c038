"""Model-backed objectives: the glue between the pure loop and a loaded model.

Imports torch/transformers only inside :meth:`ObjectiveSpec.__call__` (i.e. in the process that
evaluates), so the loop, the checkpoints and the Ray driver never need them.

An :class:`ObjectiveSpec` is a small picklable description (model, data, length, documents, how a
candidate λ becomes a :class:`~longrope.rope.FactorSet`). Calling it with a device builds the
objective there: the model is loaded once, the factors are installed once, and each request only
``swap`` s the factor tables (microseconds) and runs the forward passes.

Three fitnesses (:data:`FITNESSES`, the one registry every front end reads), each per-window
``(nll_sum, n_tokens, *parts)`` with the first two additive, so racing and the cache stay exact:

- ``joint`` (the default): perplexity and retrieval from one forward per window. A pass key is
  planted in the window's own document at a depth spread evenly over the windows (the prompt of
  :func:`longrope.evaluate.passkey.build_passkey_prompt`, the document as filler, the answer
  appended); the fitness is the document tokens' mean NLL plus ``retrieval_weight`` × the answer
  tokens' mean NLL. A perplexity-only fitness cannot see retrieval: on the embedded model it chose
  an attention temperature that answered 0.15 of 40 keys against YaRN's 0.53 at equal perplexity
  (docs/method.md §11 has the reasoning, BENCHMARKS.md the measurements of the weight);
- ``ppl``: perplexity at the target length on search-split documents, each truncated to
  BOS + L'−1 tokens (the LongRoPE protocol);
- ``needle``: LongRoPE2's needle-driven perplexity: the NLL of the answer tokens of a pass key
  planted in a real document (seeded keys, evenly spread depths), teacher-forced (one forward, no generation);
- ``constrained``: the joint fitness's forward, scored as perplexity subject to retrieval: the
  document tokens' mean NLL plus ``retrieval_weight`` × how far the window's mean answer NLL lies
  *above YaRN's on the same window* (a hinge: zero at or below it). YaRN's answer NLL per window is
  measured once when the objective is built (one forward per window, YaRN's λ and temperature
  installed as a candidate). Per window, so racing and the cache stay exact; extension searches only
  (the reference is YaRN for L → L').
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError, shown
from longrope.evaluate.stats import perplexity
from longrope.options import MAX_COUNT, int_problem
from longrope.settings import HELDOUT_FRACTION

MODES = ("long", "short", "progressive")


@dataclass(frozen=True)
class Fitness:
    """One way of scoring a candidate on a window (a row of :data:`FITNESSES`)."""

    name: str
    help: str
    """one line for ``--help``"""
    needs_tokenizer: bool
    parts: tuple[str, ...] = ()
    """what each window's score row holds after ``(nll_sum, n_tokens)``, summed over windows in reports"""
    default_weight: float | None = None
    """the ``retrieval_weight`` it runs with unless told; None: it takes no weight"""


#: Every fitness by name; front ends take their choices from here.
#: Nats of document NLL one nat of mean answer NLL is worth in the joint fitness. bench/bench_fitness.py
#: measured the alternatives (BENCHMARKS.md §1a: 0.03 ahead of 0.1 on every column at 60 evaluations) and
#: the demo at its 150 (BENCHMARKS.md §1: 0.03 meets every goal, 0.1 misses maths at 16x).
DEFAULT_RETRIEVAL_WEIGHT = 0.03

#: The constrained fitness's penalty: nats of document NLL per nat of mean answer NLL above YaRN's. At 1 an
#: answer 0.1 nat worse than YaRN's costs as much as 10 % more perplexity, more than candidates differ by in
#: perplexity, so the bound acts as a constraint; 0.3 did worse still (bench/bench_fitness.py, BENCHMARKS.md §1a).
DEFAULT_CONSTRAINT_WEIGHT = 1.0

_PLANTED = ("doc_nll", "doc_tokens", "answer_nll", "answer_tokens", "answer_exact")

#: Every fitness by name; front ends take their choices from here.
FITNESSES: dict[str, Fitness] = {f.name: f for f in (
    Fitness("joint", "document perplexity + retrieval_weight x the answer loss of a pass key planted in the same "
                     "window (one forward)", True, _PLANTED, DEFAULT_RETRIEVAL_WEIGHT),
    Fitness("ppl", "perplexity of the search windows (the LongRoPE paper)", False),
    Fitness("needle", "answer loss of a pass key planted in each window (LongRoPE2)", True,
            ("answer_nll", "answer_tokens", "answer_exact")),
    Fitness("constrained", "document perplexity, + retrieval_weight x the answer loss above YaRN's on each window "
                           "(extension searches; behind joint on the embedded model, BENCHMARKS.md 1a)", True, _PLANTED,
            DEFAULT_CONSTRAINT_WEIGHT),
)}

#: the help of ``--retrieval-weight`` (search, demo)
WEIGHT_HELP = ("joint fitness: nats of document NLL one nat of mean answer NLL is worth (default "
               f"{DEFAULT_RETRIEVAL_WEIGHT:g}); constrained: nats per nat of answer NLL above YaRN's (default "
               f"{DEFAULT_CONSTRAINT_WEIGHT:g})")


def answer_protocol(fitness: str) -> str | None:
    """The answer text a fitness's planted keys are scored on (None for a fitness that plants none): part of
    what a window score means, so a resume or a reuse across a change of it is refused."""
    from longrope.settings import PASSKEY_ANSWER

    return PASSKEY_ANSWER if FITNESSES[fitness].needs_tokenizer else None


#: The answer text of records written before :func:`answer_protocol` was recorded (the key alone).
LEGACY_ANSWER = " {key}"


def named_parts(fitness: str, parts: Any, n_windows: int) -> dict:
    """What a fitness's summed parts mean, for reports: the document perplexity, the mean answer NLL per key
    and the keys answered exactly (teacher-forced) over ``n_windows`` windows; empty when it has none."""
    check_fitness(fitness, None)  # an unknown name was a KeyError
    names = FITNESSES[fitness].parts
    if parts is None or not hasattr(parts, "__len__") or len(parts) != len(names):
        return {}
    got = dict(zip(names, (float(x) for x in parts)))
    out: dict[str, Any] = {}
    if got.get("doc_tokens"):
        out["doc_ppl"] = perplexity(got["doc_nll"] / got["doc_tokens"])
    if "answer_nll" in got and n_windows:
        out["answer_nll"] = got["answer_nll"] / got["answer_tokens"] if got["answer_tokens"] else float("nan")
        out["answer_exact"] = int(round(got["answer_exact"]))
        out["keys"] = int(n_windows)
    return out


def default_fitness(strategy: str, short: bool = False) -> str:
    """The fitness a search uses unless told, from the strategy's row: LongRoPE2's needle fitness for its
    strategy, plain perplexity for short-factor recovery (at most L tokens: no long-range retrieval to keep),
    else the joint fitness."""
    from longrope.search.strategies import search_strategy

    kind = search_strategy(strategy)
    return kind.short_fitness if short else kind.fitness


def legacy_fitness(strategy: str) -> str:
    """What an unset fitness meant in records written before the joint fitness existed."""
    from longrope.search.strategies import search_strategy

    return search_strategy(strategy).legacy_fitness


def check_fitness(fitness: str, retrieval_weight: float | None) -> float | None:
    """The retrieval weight a fitness runs with (its row's default when unset); a weight given to a fitness
    that has none, or outside [0, 100], is a one-line :class:`UserError` naming it."""
    if not isinstance(fitness, str) or fitness not in FITNESSES:  # a list was "unhashable type"
        raise UserError(f"fitness must be one of {', '.join(FITNESSES)}, got {shown(fitness)}")
    default = FITNESSES[fitness].default_weight
    if default is None:
        if retrieval_weight is not None:
            weighted = " and ".join(f.name for f in FITNESSES.values() if f.default_weight is not None)
            raise UserError(f"a retrieval weight applies to the {weighted} fitnesses only, not {fitness!r}")
        return None
    w = default if retrieval_weight is None else retrieval_weight
    if isinstance(w, bool) or not isinstance(w, (int, float)) or not 0.0 <= float(w) <= 100.0:
        raise UserError(f"the retrieval weight must be a number in [0, 100], got {shown(w)}")
    return float(w)


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
    floor_from: int | None = None
    """long mode: λ_i of pairs ``i ≥ floor_from`` are raised to at least ``s = L'/L`` when installed
    (LongRoPE2's rule above the critical pair; ``--critical-floor``); None: no floor"""

    def __post_init__(self) -> None:
        if not isinstance(self.mode, str) or self.mode not in MODES:
            raise UserError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.mode != "long" and self.base is None:
            raise UserError(f"mode {self.mode!r} needs base factors")

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
        if self.floor_from is not None and self.mode == "long":
            lam = lam.copy()
            lam[self.floor_from:] = np.maximum(lam[self.floor_from:], self.target_length / self.original_length)
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
    retrieval_weight: float | None = None
    """joint fitness: weight of the answer NLL (None: :data:`DEFAULT_RETRIEVAL_WEIGHT`)"""
    reference_file: str | None = None
    """constrained fitness: where YaRN's per-window answer NLL is kept between starts (None: measured each time)"""
    model_sha256: str | None = None
    """the model's digest when the search started (``model_digest``; None: not checked, a hub model)"""
    data_digest: str | None = None
    """the shard folder's ``content_digest`` when the search started (None: not checked)"""
    model_facts: tuple | None = None
    """the model files' stat facts when ``model_sha256`` was taken (``loading.digest_facts``): a worker that finds
    them unchanged does not read the weights again to check them"""

    def __post_init__(self) -> None:
        self.retrieval_weight = check_fitness(self.fitness, self.retrieval_weight)
        if int_problem(self.n_docs, 1, MAX_COUNT):  # a text was '<' between str and int
            raise UserError(f"n_docs must be an integer >= 1, got {shown(self.n_docs)}")

    def to_dict(self) -> dict:
        return asdict(self)

    def __call__(self, device: str = "cpu") -> PerplexityObjective | NeedleObjective:
        import torch

        from longrope.data import TokenCorpus
        from longrope.evaluate.windows import resolve_bos, select_windows
        from longrope.models.loading import load_model, trust_digest

        if self.threads:
            torch.set_num_threads(int(self.threads))
        trust_digest(self.model_facts, self.model_sha256)
        check_inputs_unchanged(self.model, None, model_sha256=self.model_sha256)  # before a replaced model loads
        model, tokenizer = load_model(self.model, dtype=self.dtype, device=device,
                                      attn_implementation=self.attn_implementation)
        corpus = TokenCorpus.open(self.data)
        check_inputs_unchanged(self.model, corpus, data_digest=self.data_digest)
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
                               seed=self.seed, retrieval_weight=self.retrieval_weight,
                               reference_file=self.reference_file)


def check_inputs_unchanged(model: str, corpus: Any, *, model_sha256: str | None = None,
                           data_digest: str | None = None) -> None:
    """Refuse a model or shard folder loaded again during a search (a worker started or restarted, the held-out
    report) that is not the one the search started with: one replaced or rebuilt at the same path meanwhile was
    used without a word, a restarted worker scoring candidates on another model and the report measuring the
    searched factors on another model (battery 23b). The digests are the start's (None: not checked; ``corpus``
    is asked only for a ``data_digest``)."""
    from longrope.data.sources import printable
    from longrope.models.loading import model_digest

    fix = "put back the one it started with and run the same command with --resume, or start a new search"
    if data_digest is not None and corpus.content_digest != data_digest:
        raise UserError(f"the shard folder {corpus.path} changed while the search ran (rebuilt or replaced since it "
                        f"started); {fix}")
    if model_sha256 is not None and model_digest(model) != model_sha256:
        raise UserError(f"the model {printable(model)} changed while the search ran (its files are not those it started "
                        f"with); {fix}")


def build_objective(model: Any, tokenizer: Any, mapper: CandidateMapper, docs: Sequence, length: int,
                    bos_id: int | None, *, fitness: str = "ppl", seed: int = 0,
                    retrieval_weight: float | None = None,
                    reference_file: str | os.PathLike | None = None) -> PerplexityObjective | NeedleObjective | JointObjective:
    """The objective over ``docs`` on a loaded model (factors installed here, swapped per request);
    ``reference_file``: see :meth:`JointObjective.bound_by`."""
    from longrope.models import install_factors

    weight = check_fitness(fitness, retrieval_weight)
    if FITNESSES[fitness].needs_tokenizer and tokenizer is None:
        raise UserError(f"the {fitness} fitness plants pass keys and needs a tokenizer, and this model has none; "
                        "use --fitness ppl")
    patch = install_factors(model, mapper.factor_set(_identity_like(mapper, model), 0))
    if fitness == "needle":
        return NeedleObjective(model, patch, mapper, docs, length, bos_id, tokenizer, seed)
    if fitness == "joint":
        return JointObjective(model, patch, mapper, docs, length, bos_id, tokenizer, seed, weight)
    if fitness == "constrained":
        objective = JointObjective(model, patch, mapper, docs, length, bos_id, tokenizer, seed, weight)
        try:
            objective.bound_by(yarn_reference(mapper, model), cache=reference_file)
        except BaseException:  # the caller's model is left as it came (a refused reference, Ctrl-C, out of memory)
            patch.restore()
            raise
        return objective
    return PerplexityObjective(model, patch, mapper, docs, length, bos_id)


def check_constrained(fitness: str, mode: str) -> None:
    """The constrained fitness bounds retrieval by YaRN's for L → L': an extension search's (``long``) only; a
    ``ValueError`` naming the fitness otherwise."""
    if fitness == "constrained" and mode != "long":
        raise UserError("the constrained fitness bounds retrieval by YaRN's extension of the model, so it scores "
                         f"extension searches only, not a {mode} search; use joint or ppl")


def yarn_reference(mapper: CandidateMapper, model: Any) -> tuple[np.ndarray, float]:
    """YaRN's ``(λ, attention factor)`` for the mapper's L → L' on ``model``'s rotary dimension: the candidate
    whose answer NLL bounds the constrained fitness."""
    from longrope.models import inspect_model
    from longrope.rope import make_baseline

    check_constrained("constrained", mapper.mode)
    yarn = make_baseline("yarn", rope_theta=mapper.rope_theta, rotary_dim=int(inspect_model(model).rotary_dim),
                         original_length=mapper.original_length, target_length=mapper.target_length)
    return np.asarray(yarn.long_factor, dtype=np.float64), float(yarn.resolved_attention_factor())


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
        self.model, self.patch, self.mapper = model, patch, mapper
        self.bos_id = bos_id
        self.tokenizer = tokenizer
        self.n_docs = len(docs)
        self.prompts = planted_prompts(tokenizer, docs, length, bos_id, seed)

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray:
        from longrope.evaluate.passkey import needle_score

        self.patch.swap(self.mapper.factor_set(factors, start_tokens, attention_factor=attention_factor))
        res = needle_score(self.model, [self.prompts[d] for d in docs])
        return np.asarray([[nll, n, nll, n, float(exact)] for exact, nll, n in res.per_prompt], dtype=np.float64)


def planted_prompts(tokenizer: Any, docs: Sequence, length: int, bos_id: int | None, seed: int) -> list:
    """One answer-bearing passkey prompt of ``length`` tokens per window, the window's own document as the
    filler: keys seeded, depths spread evenly over the windows (``(k + 0.5) / n``), as the needle fitness
    plants them."""
    from longrope.evaluate.passkey import build_passkey_prompt, piece_joiner

    rng = np.random.default_rng([seed, 0x6E65])
    joiner = piece_joiner(tokenizer)
    out = []
    for k, doc in enumerate(docs):
        key = int(rng.integers(10_000, 100_000))
        out.append(build_passkey_prompt(tokenizer, length, key, (k + 0.5) / len(docs), bos_id=bos_id,
                                        with_answer=True, haystack=np.asarray(doc.tokens, dtype=np.int64),
                                        joiner=joiner))
    return out


class JointObjective:
    """Perplexity and retrieval in one forward per window (the ``joint`` fitness of the module doc).

    Window ``d`` is the needle prompt of :func:`planted_prompts`; one forward scores every position, from
    which the document tokens (the two filler spans) give ``doc_nll`` / ``doc_tokens`` and the trailing
    answer tokens ``answer_nll`` / ``answer_tokens`` (and whether all of them are the argmax). The row
    the loop sees is ``(doc_nll + w · doc_tokens · answer_nll / answer_tokens, doc_tokens, *parts)``:
    summed over windows of equal length and divided by the tokens, that is the mean document NLL plus
    ``w`` × the mean answer NLL per key — additive, so racing on a subset of windows stays exact.
    """

    def __init__(self, model: Any, patch: Any, mapper: CandidateMapper, docs: Sequence, length: int,
                 bos_id: int | None, tokenizer: Any, seed: int, weight: float) -> None:
        import torch

        self.model, self.patch, self.mapper = model, patch, mapper
        self.bos_id = bos_id
        self.tokenizer = tokenizer
        self.n_docs = len(docs)
        self.weight = float(weight)
        self.bound: np.ndarray | None = None
        """per window, the mean answer NLL above which the weight applies (None: from zero, the joint fitness)"""
        self.prompts = planted_prompts(tokenizer, docs, length, bos_id, seed)
        self._masks = []
        for p in self.prompts:
            mask = torch.zeros(len(p.input_ids), dtype=torch.bool)  # label positions that are document text
            for a, b in p.filler_spans:
                mask[max(a, 1):b] = True
            self._masks.append(mask[1:])  # aligned with the predictions of positions 1 … T-1

    def __call__(
        self, factors: np.ndarray, start_tokens: int, docs: Sequence[int], attention_factor: float | None = None
    ) -> np.ndarray:
        import torch

        from longrope.evaluate import lm

        self.patch.swap(self.mapper.factor_set(factors, start_tokens, attention_factor=attention_factor))
        device = lm.model_device(self.model)
        transform = lm.logit_transform(getattr(self.model, "config", None))
        rows = []
        with torch.inference_mode():
            for d in docs:
                p, mask = self.prompts[d], self._masks[d]
                ids = torch.from_numpy(p.input_ids)[None].to(device)  # [1, T]
                hidden = lm.hidden_states(self.model, ids)[0, :-1]  # [T-1, H]: row j predicts token j+1
                nll, arg = lm.chunked_nll(self.model, hidden, ids[0, 1:],
                                          chunk_size=lm.default_chunk_size(self.model, len(p.input_ids)),
                                          transform=transform, return_argmax=True)
                nll, arg, mask = nll.double().cpu(), arg.cpu(), mask
                a = p.answer_len
                doc_nll, doc_n = float(nll[mask].sum()), int(mask.sum())
                ans_nll = float(nll[-a:].sum())
                exact = bool(torch.equal(arg[-a:], ids[0, -a:].cpu()))
                excess = ans_nll / a if self.bound is None else max(0.0, ans_nll / a - float(self.bound[d]))
                combined = doc_nll + self.weight * doc_n * excess
                rows.append([combined, doc_n, doc_nll, doc_n, ans_nll, a, float(exact)])
        return np.asarray(rows, dtype=np.float64)

    def bound_by(self, reference: tuple[np.ndarray, float], cache: str | os.PathLike | None = None) -> None:
        """Score from now on as the constrained fitness: the answer NLL counts only above the reference
        candidate's (``(λ, attention factor)``, start tokens 0) on the same window, measured here once.

        ``cache``: a file (a search's run folder holds it) keeping those per-window values for the same
        reference, windows and dtype, so that a resumed search does not measure them again (one forward per
        window: minutes at 16k on a CPU). A damaged, edited or foreign one is measured afresh and replaced."""
        factors, attention = reference
        key = self._reference_key(factors, attention)
        self.bound = _read_reference(cache, key, self.n_docs) if cache is not None else None
        if self.bound is not None:
            return
        rows = self(factors, 0, range(self.n_docs), attention)
        bound = rows[:, 4] / rows[:, 5]
        if not np.isfinite(bound).all():  # max(0, x - NaN) is 0: the constraint vanished on that window (battery 27)
            from longrope.errors import UserError
            from longrope.evaluate.suite import ppl_text

            d = int(np.flatnonzero(~np.isfinite(bound))[0])
            raise UserError(f"the constrained fitness's reference (YaRN) has an answer loss on window {d} that is "
                            f"{ppl_text(float(bound[d]))}; without it the constraint cannot be measured")
        self.bound = bound
        if cache is not None and Path(cache).parent.is_dir():  # a worker on another machine has no such folder
            from longrope.io import sealed, write_json

            write_json(cache, sealed({**key, "answer_nll": [float(x) for x in self.bound]}))

    def _reference_key(self, factors: np.ndarray, attention: float) -> dict:
        """What a kept reference must match: the candidate, the windows' tokens (keys planted) and the dtype."""
        import hashlib

        h = hashlib.sha256()
        for p in self.prompts:
            h.update(np.ascontiguousarray(p.input_ids, dtype=np.int64).tobytes())
            h.update(repr((p.answer_len, tuple(p.filler_spans))).encode())
        dtype = next((str(t.dtype) for t in self.model.parameters()), "none")
        return {"format": REFERENCE_FORMAT, "factors": [float(x) for x in np.asarray(factors, dtype=np.float64)],
                "attention_factor": float(attention), "windows": h.hexdigest(), "dtype": dtype}


#: the layout of a kept reference (:meth:`JointObjective.bound_by`), and its name in a search's run folder
REFERENCE_FORMAT = "longrope-yarn-reference/1"
REFERENCE_FILE = "yarn_reference.json"


def _read_reference(path: str | os.PathLike, key: dict, n_docs: int) -> np.ndarray | None:
    """The per-window answer NLL kept in ``path`` for ``key``, or None when it is missing, not intact, made for
    another key or not ``n_docs`` finite numbers >= 0."""
    from longrope.errors import UserError
    from longrope.io import read_json, seal_intact

    if not Path(path).is_file():
        return None
    try:
        doc = read_json(path, what="kept YaRN reference")
    except UserError:
        return None
    if not seal_intact(doc) or any(doc.get(k) != v for k, v in key.items()):
        return None
    values = doc.get("answer_nll")
    if not (isinstance(values, list) and len(values) == n_docs
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) and x >= 0
                    for x in values)):
        return None
    return np.asarray(values, dtype=np.float64)
