"""Passkey retrieval (generated answer) and the teacher-forced needle score.

**The prompt** (docs/method.md §7), sized in tokens, not characters::

    [BOS] instruction  filler…  needle  filler…  question  [answer]

- instruction: "There is an important info hidden inside a lot of irrelevant text. Find it and
  memorize it. I will quiz you about the important information there."
- filler: "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back
  again." repeated; its token ids are tiled and cut at a token boundary, so the prompt has
  exactly the requested number of tokens. With ``haystack`` tokens (a real document, as
  LongRoPE2's needle-driven perplexity uses) the document's tokens are the filler instead.
- needle: "The pass key is K. Remember it. K is the pass key." with K a 5-digit number. The needle
  is planted once (K itself appears twice inside it, as in the standard prompt);
  ``depth`` ∈ [0, 1] is the share of the filler placed before it.
- question: "What is the pass key? The pass key is".
- answer (needle mode only): the tokens of " K." — the key and the full stop that ends it, as the
  needle itself writes it. The stop matters: a model that copies the key and then runs on with
  another digit ("251218") fails the greedy rule below, and a teacher-forced score of " K" alone
  would call it right.

Each piece is encoded separately and the ids are concatenated, which is what makes the size
exact. Whether a piece needs a leading space to read as continuing text depends on the tokenizer
(byte-level BPE: yes; SentencePiece with a prefix space: no); :func:`piece_joiner` decides by
checking which convention reproduces the encoding of a two-sentence probe.

**Generate mode**: ``BOS + prompt == length`` tokens, then greedy decoding with the KV cache
(``model.generate``, ``do_sample=False``) until the answer is decided (:func:`judge_answer`). The
answer is the *first integer* of the decoded continuation (special tokens dropped): its first
maximal run of ASCII digits ``0-9``, complete once a non-digit character follows it or the model
ends the text (EOS). A trial is correct when that integer is complete and its value equals K
(leading zeros do not matter: "012345" reads as 12345). Decoding stops as soon as the first
integer is complete, at EOS, or after :func:`answer_budget` new tokens — ``2·digits(K) + 2``, 12
for a 5-digit key: room for ``digits(K) + 1`` tokens before the number, one token per digit, and
one token to end it — and an answer still incomplete at that cap is wrong. The decision therefore
never depends on a caller's decode budget: "123456" is wrong however many tokens one would
otherwise have decoded (a 6-token budget used to cut it to "12345" and call it right).

**Needle mode**: ``BOS + prompt + answer == length``; one forward pass; the answer tokens are
scored teacher-forced: exact match of all of them under argmax, and their mean NLL. No
generation, so it is cheap and smooth, which is what a needle-driven fitness needs.

**Both** (``mode="both"``, what ``eval passkey`` and the demo report): every key is asked both
ways on the same prompt — greedy accuracy from the generate prompt (``length`` tokens), and the
teacher-forced answer NLL (and exact match) of the answer appended to that very prompt
(:func:`answer_prompt`, ``length + answer`` tokens; needle mode instead fits the answer inside
``length``). Both are continuations of one prompt, so the prompt is prefilled once with the KV cache
and shared (:func:`ask_both`, :mod:`longrope.evaluate.prefix`); where that would not be exact (the
prompt and prompt + answer on two sides of the short/long switch, sliding-window caches) the two are
forwarded separately, with the same numbers. Accuracy counts keys, so it moves in steps of 1/n; the
answer NLL is continuous and separates two sets that answer the same keys.
:meth:`PasskeyResult.summary` gives both with a 95 % Wilson interval.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

from longrope.errors import UserError, shown
from longrope.evaluate import lm
from longrope.evaluate.memory import out_of_memory
from longrope.evaluate.windows import check_bos_id, check_length, check_lengths, check_token_arrays
from longrope.options import (
    check_flag,
    check_loaded_model,
    check_loaded_tokenizer,
    check_seed,
    check_sequence,
    is_integer,
)
from longrope.settings import (
    PASSKEY_ANSWER,
    PASSKEY_DEPTHS,
    PASSKEY_MODES,
    check_passkey_depth,
    check_passkey_depths,
)

__all__ = [
    "MODES",
    "INSTRUCTION",
    "FILLER",
    "NEEDLE",
    "QUESTION",
    "ANSWER",
    "PasskeyPrompt",
    "PasskeyTrial",
    "PasskeyResult",
    "NeedleScore",
    "build_passkey_prompt",
    "check_passkey_lengths",
    "passkey_key",
    "passkey_accuracy",
    "needle_score",
    "needle_prompts",
    "first_integer",
    "judge_answer",
    "answer_budget",
    "generate_answer",
    "greedy_generate",
    "answer_prompt",
    "ask_both",
    "piece_joiner",
]

#: Passkey scoring modes (see the module doc).
MODES = PASSKEY_MODES

INSTRUCTION = ("There is an important info hidden inside a lot of irrelevant text. Find it and memorize it. "
               "I will quiz you about the important information there.")
FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again."
NEEDLE = "The pass key is {key}. Remember it. {key} is the pass key."
QUESTION = "What is the pass key? The pass key is"
ANSWER = PASSKEY_ANSWER


def _encode(tokenizer: Any, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def piece_joiner(tokenizer: Any) -> str:
    """``" "`` when a continuing piece must be encoded with a leading space, else ``""``.

    Byte-level BPE (GPT-2, SmolLM2) marks a word after a space inside the token (" The"), so a
    piece encoded alone needs its space; SentencePiece tokenizers that add a prefix space
    already encode "The" at the start as "▁The", and a leading space would double it.
    """
    a, b = "The grass is green.", "The sky is blue."
    joint = _encode(tokenizer, f"{a} {b}")
    if _encode(tokenizer, a) + _encode(tokenizer, " " + b) == joint:
        return " "
    if _encode(tokenizer, a) + _encode(tokenizer, b) == joint:
        return ""
    return " "  # neither reproduces it exactly; a leading space is the usual convention


def passkey_key(seed: int, length: int, depth_index: int, trial: int) -> int:
    """The 5-digit key of one trial, from its own seed sequence (independent of the run's order)."""
    rng = np.random.default_rng([int(seed), int(length), int(depth_index), int(trial)])
    return int(rng.integers(10_000, 100_000))


@dataclass(frozen=True)
class PasskeyPrompt:
    """A prompt of exactly ``length`` tokens (answer included in needle mode)."""

    input_ids: np.ndarray
    """int64 ``[length]``, BOS first when used."""
    key: int
    depth: float
    """Requested share of the filler before the needle."""
    needle_start: int
    """Token position where the needle begins."""
    answer_len: int
    """Number of trailing answer tokens (0 in generate mode)."""
    filler_spans: tuple[tuple[int, int], ...] = ()
    """``[start, end)`` token ranges of the filler (the haystack's own text) before and after the needle:
    what a joint fitness scores as perplexity."""

    @property
    def answer_ids(self) -> np.ndarray:
        return self.input_ids[len(self.input_ids) - self.answer_len :]


def build_passkey_prompt(
    tokenizer: Any,
    length: int,
    key: int,
    depth: float,
    *,
    bos_id: int | None,
    with_answer: bool = False,
    haystack: np.ndarray | None = None,
    joiner: str | None = None,
) -> PasskeyPrompt:
    """The standard passkey prompt, ``length`` tokens exactly (see the module doc)."""
    check_loaded_tokenizer(tokenizer, "build_passkey_prompt")
    length = check_length(length)
    depth = check_passkey_depth(depth)
    if not is_integer(key) or not 10_000 <= key <= 99_999:  # '12345' and 12345.7 were taken, 'abc' a ValueError
        raise UserError(f"the pass key must be a 5-digit integer, got {shown(key)}")
    key, bos_id, with_answer = int(key), check_bos_id(bos_id), check_flag(with_answer, "with_answer")
    if joiner is not None and not isinstance(joiner, str):
        raise UserError(f"joiner must be text (the piece between sentences) or None, got {type(joiner).__name__}")
    sep = piece_joiner(tokenizer) if joiner is None else joiner
    instr = _encode(tokenizer, INSTRUCTION)
    needle = _encode(tokenizer, sep + NEEDLE.format(key=key))
    question = _encode(tokenizer, sep + QUESTION)
    answer = _encode(tokenizer, ANSWER.format(key=key)) if with_answer else []
    head = [bos_id] if bos_id is not None else []
    budget = length - len(head) - len(instr) - len(needle) - len(question) - len(answer)
    if budget < 0:
        raise UserError(f"length {length} is too short for the passkey prompt; it needs at least "
                        f"{length - budget} tokens with this tokenizer")
    n_before = int(round(float(depth) * budget))
    n_after = budget - n_before
    if haystack is None:
        unit = np.asarray(_encode(tokenizer, sep + FILLER), dtype=np.int64)
        reps = budget // len(unit) + 2
        stream = np.tile(unit, reps)
        before, after = stream[:n_before], stream[:n_after]
    else:
        hay = haystack_ids(haystack)
        if len(hay) < budget:
            raise UserError(f"haystack has {len(hay)} tokens; the prompt of length {length} needs {budget} filler "
                            "tokens: give longer haystacks or a shorter length")
        before, after = hay[:n_before], hay[n_before:budget]
    parts = [np.asarray(head, np.int64), np.asarray(instr, np.int64), before, np.asarray(needle, np.int64),
             after, np.asarray(question, np.int64), np.asarray(answer, np.int64)]
    ids = np.concatenate(parts)
    assert len(ids) == length, (len(ids), length)
    needle_start = len(head) + len(instr) + n_before
    after_start = needle_start + len(needle)
    spans = ((len(head) + len(instr), needle_start), (after_start, after_start + n_after))
    return PasskeyPrompt(ids, int(key), float(depth), needle_start, len(answer), spans)


def haystack_ids(haystack: Any) -> np.ndarray:
    """A haystack (token ids, or a sample with ``.tokens``) as a 1-D int64 array; anything else is one line (floats
    were truncated, text a ValueError, a 2-D array a concatenate error)."""
    hay = np.asarray(getattr(haystack, "tokens", haystack))
    if hay.ndim != 1 or not (np.issubdtype(hay.dtype, np.integer) or hay.size == 0):
        raise UserError(f"a haystack must be a 1-D array of token ids, got shape {list(hay.shape)} of {hay.dtype}")
    return hay.astype(np.int64, copy=False)


_INT = re.compile(r"[0-9]+")


def first_integer(text: str) -> int | None:
    """The first maximal run of ASCII digits in ``text`` as an int, or None.

    Whether that run is complete (more digits could follow) is :func:`judge_answer`'s concern.
    """
    m = _INT.search(text)
    return int(m.group()) if m else None


def answer_budget(key: int) -> int:
    """The most tokens decoded for an answer to ``key``: ``2·digits(key) + 2`` (12 for 5 digits).

    ``digits + 1`` tokens of preamble (a space, "**", a short phrase), one token per digit (no
    tokenizer needs more), and one token to end the number. Derived from the key only, never
    from a caller's budget, so that the decision is the same whatever the caller asks.
    """
    return 2 * len(str(abs(int(key)))) + 2


def _first_integer_complete(text: str) -> bool:
    """Whether ``text`` holds a run of digits followed by a non-digit character."""
    m = _INT.search(text)
    return m is not None and m.end() < len(text)


def judge_answer(text: str, key: int, *, ended: bool) -> bool:
    """Whether a decoded continuation answers ``key`` (the generate-mode rule of the module doc).

    Correct iff ``text`` holds a first integer (maximal run of ASCII digits) that is *complete* —
    a non-digit character follows it in ``text``, or ``ended`` (the model emitted EOS right after
    ``text``) — and whose value equals ``key``. An integer still running at the end of a text
    that did not end is undecided, hence wrong: "12345" cut from "123456" does not count.
    """
    m = _INT.search(text)
    if m is None:
        return False
    complete = m.end() < len(text) or ended
    return complete and int(m.group()) == int(key)


@dataclass(frozen=True)
class PasskeyTrial:
    length: int
    depth: float
    trial: int
    key: int
    correct: bool
    output: str = ""
    """Generated text (generate and both modes)."""
    answer_nll: float = float("nan")
    """Mean NLL of the answer tokens (needle and both modes)."""
    forced_correct: bool | None = None
    """Both mode: every answer token is the argmax when teacher-forced (``correct`` is the greedy answer's)."""


@dataclass
class PasskeyResult:
    """Accuracy per (length, depth) cell, plus every trial."""

    mode: str
    trials: list[PasskeyTrial] = field(default_factory=list)
    seconds: float = 0.0

    def cells(self) -> list[dict]:
        """One row per (length, depth): trials, correct, accuracy (and mean answer NLL)."""
        groups: dict[tuple[int, float], list[PasskeyTrial]] = {}
        for t in self.trials:
            groups.setdefault((t.length, t.depth), []).append(t)
        rows = []
        for (length, depth), ts in sorted(groups.items()):
            row = {"length": length, "depth": depth, "trials": len(ts), "correct": sum(t.correct for t in ts),
                   "accuracy": sum(t.correct for t in ts) / len(ts)}
            if self.mode in ("needle", "both"):
                row["answer_nll"] = float(np.mean([t.answer_nll for t in ts]))
            if self.mode == "both":
                row["forced_correct"] = sum(bool(t.forced_correct) for t in ts)
            rows.append(row)
        return rows

    @property
    def accuracy(self) -> float:
        return sum(t.correct for t in self.trials) / len(self.trials) if self.trials else float("nan")

    def at(self, length: int) -> PasskeyResult:
        """The trials of one context length (a report pools keys of one length only)."""
        return PasskeyResult(self.mode, [t for t in self.trials if t.length == int(length)], self.seconds)

    @property
    def answer_nlls(self) -> list[float]:
        """Mean answer NLL per key, in trial order (needle and both modes; empty otherwise)."""
        return [t.answer_nll for t in self.trials] if self.mode in ("needle", "both") else []

    def summary(self) -> dict:
        """Keys, correct answers, accuracy with its 95 % Wilson interval, and (needle / both modes) the
        mean teacher-forced answer NLL and the teacher-forced accuracy."""
        from longrope.evaluate.stats import wilson_interval

        n, k = len(self.trials), sum(t.correct for t in self.trials)
        lo, hi = wilson_interval(k, n)
        out = {"mode": self.mode, "keys": n, "correct": k, "accuracy": k / n if n else float("nan"),
               "ci95": [lo, hi]}
        if self.answer_nlls:
            out["answer_nll"] = float(np.mean(self.answer_nlls))
        if self.mode == "both":
            out["forced_accuracy"] = sum(bool(t.forced_correct) for t in self.trials) / n if n else float("nan")
        return out

    def to_dict(self) -> dict:
        return {"mode": self.mode, "accuracy": self.accuracy, "summary": self.summary(), "cells": self.cells(),
                "trials": [asdict(t) for t in self.trials], "seconds": self.seconds}


@dataclass(frozen=True)
class NeedleScore:
    """Teacher-forced answer scores over a set of needle prompts."""

    n_prompts: int
    exact: int
    """Prompts whose every answer token is the argmax."""
    nll_sum: float
    n_tokens: int
    per_prompt: tuple[tuple[bool, float, int], ...] = ()
    """(exact, answer NLL sum, answer tokens) per prompt."""

    @property
    def accuracy(self) -> float:
        return self.exact / self.n_prompts if self.n_prompts else float("nan")

    @property
    def mean_nll(self) -> float:
        """Token-weighted mean NLL of the answer tokens (the needle-driven fitness)."""
        return self.nll_sum / self.n_tokens if self.n_tokens else float("nan")

    @property
    def ppl(self) -> float:
        from longrope.evaluate.stats import perplexity

        return perplexity(self.mean_nll)


def needle_prompts(
    tokenizer: Any,
    length: int,
    n: int,
    *,
    seed: int,
    bos_id: int | None,
    haystacks: Sequence[Any] | None = None,
    depths: Sequence[float] | None = None,
) -> list[PasskeyPrompt]:
    """``n`` answer-bearing prompts of ``length`` tokens for a needle-driven fitness (LongRoPE2).

    Build them once and call :func:`needle_score` per candidate. Keys and (unless ``depths`` is
    given, then cycled) depths come from ``np.random.default_rng([seed, length])``. With
    ``haystacks`` (token arrays or :class:`longrope.data.Sample` objects from the *search* split)
    prompt ``k`` plants its needle in haystack ``k mod len(haystacks)``; else the synthetic filler.
    """
    check_loaded_tokenizer(tokenizer, "needle_prompts")
    if not is_integer(n) or n < 1:
        raise UserError(f"n must be a positive integer, got {shown(n)}")
    n = int(n)
    check_seed(seed)
    length, bos_id = check_length(length), check_bos_id(bos_id)
    depths = check_passkey_depths(depths) if depths is not None else None
    if haystacks is not None:
        check_token_arrays(haystacks, "haystacks")
    rng = np.random.default_rng([int(seed), int(length)])
    joiner = piece_joiner(tokenizer)
    out = []
    for k in range(n):
        key = int(rng.integers(10_000, 100_000))
        depth = float(depths[k % len(depths)]) if depths else float(rng.uniform(0.0, 1.0))
        hay = None
        if haystacks:
            hay = haystack_ids(haystacks[k % len(haystacks)])
        out.append(build_passkey_prompt(tokenizer, length, key, depth, bos_id=bos_id, with_answer=True,
                                        haystack=hay, joiner=joiner))
    return out


def needle_score(model: torch.nn.Module, prompts: Sequence[PasskeyPrompt], *,
                 chunk_size: int | None = None) -> NeedleScore:
    """Score the answer tokens of needle-mode prompts: one forward each, no generation."""
    from longrope.models.generation import check_token_ids, evaluation_mode

    check_loaded_model(model, "needle_score")
    check_sequence(prompts, "prompts", "[prompt]")  # a generator scored nothing, one prompt was a TypeError
    lm.check_chunk_size(chunk_size)
    for k, p in enumerate(prompts):  # before any forward pass (an id without embedding was an IndexError)
        if not isinstance(p, PasskeyPrompt):
            raise UserError(f"needle_score takes the prompts needle_prompts built, got {type(p).__name__} (prompt {k})")
        check_token_ids(model, p.input_ids, what=f"needle prompt {k}",
                        fix="build the prompts with this model's tokenizer and BOS id")
    device = lm.model_device(model)
    transform = lm.logit_transform(getattr(model, "config", None))
    per = []
    with torch.inference_mode(), evaluation_mode(model):
        for p in prompts:
            if p.answer_len < 1:
                raise UserError("needle_score needs prompts built with with_answer=True")
            ids = torch.from_numpy(p.input_ids)[None].to(device)  # [1, T]
            hidden = lm.hidden_states(model, ids)[0]  # [T, H]
            t = len(p.input_ids)
            h = hidden[t - p.answer_len - 1 : t - 1]  # rows predicting the answer tokens
            labels = ids[0, t - p.answer_len :]
            nll, arg = lm.chunked_nll(model, h, labels, chunk_size=chunk_size or 16, transform=transform, return_argmax=True)
            per.append((bool(torch.equal(arg, labels)), float(nll.double().sum()), p.answer_len))
    return NeedleScore(len(per), sum(e for e, _, _ in per), sum(s for _, s, _ in per),
                       sum(n for _, _, n in per), tuple(per))


def greedy_generate(model: torch.nn.Module, input_ids: np.ndarray, max_new_tokens: int,
                    *, pad_token_id: int | None, stop: Callable[[list[int]], bool] | None = None,
                    cache: Any = None) -> list[int]:
    """Greedy continuation with the KV cache (``model.generate``); stops at EOS, after
    ``max_new_tokens``, or as soon as ``stop(new_ids)`` is true (checked after every token).

    ``cache``: a cache already holding a prefix of ``input_ids`` (:func:`longrope.evaluate.prefix.prefill`);
    ``generate`` then feeds only the rest (and grows that cache)."""
    from transformers import StoppingCriteria, StoppingCriteriaList

    device = lm.model_device(model)
    ids = torch.from_numpy(np.asarray(input_ids, dtype=np.int64))[None].to(device)  # [1, T]
    prompt_len = ids.shape[1]
    criteria = None
    if stop is not None:
        class _Stop(StoppingCriteria):
            def __call__(self, seq: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any) -> torch.BoolTensor:
                done = bool(stop(seq[0, prompt_len:].tolist()))  # seq: [1, T + new]
                return torch.full((seq.shape[0],), done, dtype=torch.bool, device=seq.device)

        criteria = StoppingCriteriaList([_Stop()])
    from longrope.models.generation import evaluation_mode, plain_decoding, quiet_length_reminder

    with torch.inference_mode(), evaluation_mode(model), quiet_length_reminder(), plain_decoding(model):
        out = model.generate(
            ids,
            attention_mask=torch.ones_like(ids),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=pad_token_id,
            stopping_criteria=criteria,
            **({"cache": cache} if cache is not None else {}),
        )
    return out[0, prompt_len:].tolist()


def _eos_ids(model: torch.nn.Module, tokenizer: Any) -> set[int]:
    """Token ids at which ``generate`` stops (the generation config's EOS, else the tokenizer's)."""
    eos = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    if eos is None:
        eos = getattr(tokenizer, "eos_token_id", None)
    if eos is None:
        return set()
    return {int(e) for e in (eos if isinstance(eos, (list, tuple)) else [eos])}


def generate_answer(model: torch.nn.Module, tokenizer: Any, input_ids: np.ndarray, key: int, *,
                    pad_token_id: int | None, cache: Any = None) -> tuple[str, bool]:
    """Decode the answer to a generate-mode prompt: ``(text, correct)`` by :func:`judge_answer`.

    Greedy with the KV cache, stopping once the first integer is complete, at EOS, or after
    :func:`answer_budget(key) <answer_budget>` tokens. ``cache``: as in :func:`greedy_generate`.
    """
    def decided(new: list[int]) -> bool:
        return _first_integer_complete(tokenizer.decode(new, skip_special_tokens=True))

    new = greedy_generate(model, input_ids, answer_budget(key), pad_token_id=pad_token_id, stop=decided,
                          cache=cache)
    ended = bool(new) and new[-1] in _eos_ids(model, tokenizer)
    text = tokenizer.decode(new, skip_special_tokens=True)
    return text, judge_answer(text, key, ended=ended)


def answer_prompt(tokenizer: Any, prompt: PasskeyPrompt) -> PasskeyPrompt:
    """A generate-mode prompt with its answer (" K.") appended: what mode "both" scores teacher-forced,
    the very prompt the greedy decoder reads followed by the answer (``len(prompt) + answer`` tokens)."""
    if prompt.answer_len:
        raise UserError("answer_prompt takes a generate-mode prompt (built without the answer)")
    answer = np.asarray(_encode(tokenizer, ANSWER.format(key=prompt.key)), dtype=np.int64)
    return dataclasses.replace(prompt, input_ids=np.concatenate([prompt.input_ids, answer]),
                               answer_len=len(answer))


def ask_both(model: torch.nn.Module, tokenizer: Any, prompt: PasskeyPrompt, *, pad_token_id: int | None
             ) -> tuple[str, bool, float, bool]:
    """Mode "both" for one key: ``(greedy text, greedy correct, mean answer NLL, teacher-forced exact)``.

    One forward over the prompt (:mod:`longrope.evaluate.prefix`): the answer is scored on the cached
    prompt, and the greedy decoder continues from the same cache. Where that shared prefill would not
    equal separate from-scratch forwards — the prompt and prompt + answer fall on the two sides of a
    LongRoPE patch's short/long switch, or the model's cache layers cannot be cropped (sliding window) —
    the two are run separately: :func:`generate_answer` on the prompt and :func:`needle_score` on
    :func:`answer_prompt`. Both ways give the same numbers (to float tolerance).
    """
    from longrope.evaluate import prefix
    from longrope.models.generation import evaluation_mode

    forced = answer_prompt(tokenizer, prompt)
    n = len(prompt.input_ids)
    cache = None
    if n > 1 and prefix.single_prefill_exact(model, n - 1, len(forced.input_ids)):
        ids = torch.from_numpy(prompt.input_ids)[None].to(lm.model_device(model))  # [1, n]
        with torch.inference_mode(), evaluation_mode(model):
            cache = prefix.prefill(model, ids[:, :-1])
            if cache is not None:
                answer = torch.from_numpy(forced.answer_ids).to(ids.device)
                exact, nll_sum = prefix.score_continuation(model, cache, ids[0, -1:], answer)
    if cache is None:
        s = needle_score(model, [forced])
        exact, nll_sum = s.exact == 1, s.nll_sum
    text, correct = generate_answer(model, tokenizer, prompt.input_ids, prompt.key, pad_token_id=pad_token_id,
                                    cache=cache)
    return text, correct, nll_sum / forced.answer_len, exact


def check_passkey_lengths(tokenizer: Any, lengths: Sequence[int], *, depths: Sequence[float], trials: int,
                          seed: int, bos_id: int | None, mode: str = "generate") -> None:
    """Build the prompts of the shortest length (tokenizer only, no model), so that a length too short
    for the passkey prompt fails before a model is loaded rather than after."""
    n = min(check_length(x) for x in lengths)
    joiner = piece_joiner(tokenizer)
    for di, depth in enumerate(depths):
        for k in range(trials):
            build_passkey_prompt(tokenizer, n, passkey_key(seed, n, di, k), float(depth), bos_id=bos_id,
                                 with_answer=mode == "needle", joiner=joiner)


def passkey_accuracy(
    model: torch.nn.Module,
    tokenizer: Any,
    lengths: Sequence[int],
    *,
    depths: Sequence[float] = PASSKEY_DEPTHS,
    trials: int = 5,
    seed: int = 0,
    bos_id: int | None,
    mode: str = "generate",
    haystacks: Sequence[Any] | None = None,
    progress: bool = False,
    before_length: Callable[[int], None] | None = None,
) -> PasskeyResult:
    """Passkey retrieval over a (length × depth) grid, ``trials`` seeded keys per cell.

    ``mode="generate"``: greedy decoding with the KV cache until the answer is decided; a trial
    is correct when the first integer of the continuation is complete (a non-digit or EOS
    follows it, within :func:`answer_budget` tokens) and equals the key — see
    :func:`judge_answer` and the module doc; the decode length is set by that rule, so the score
    cannot depend on a decoding budget. ``mode="needle"``: teacher-forced, correct when
    every answer token (" K.") is the argmax; the mean answer NLL is recorded too. ``mode="both"``:
    the greedy answer decides ``correct``, and the answer appended to the same prompt is scored
    teacher-forced (``answer_nll``, ``forced_correct``), from one prefill of the prompt (:func:`ask_both`). With
    ``haystacks`` (token arrays or samples with ``.tokens``, each long enough for the longest
    length) trial ``k`` of depth ``j`` hides its needle in haystack ``(j·trials + k) mod
    len(haystacks)`` instead of the synthetic filler. ``before_length(n)`` is called before length ``n`` is
    measured, after every check (:func:`~longrope.evaluate.suite.passkey_suite` installs a dynamic NTK set's factors
    of that length there).
    """
    lengths = check_lengths(lengths)
    if before_length is not None and not callable(before_length):
        raise UserError(f"before_length must be a function of the length or None, got {shown(before_length)}")
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {shown(mode)}")
    if not is_integer(trials) or trials < 1:
        raise UserError(f"trials must be a positive integer, got {shown(trials)}")
    trials = int(trials)
    check_seed(seed)
    depths = check_passkey_depths(depths)
    bos_id, progress = check_bos_id(bos_id), check_flag(progress, "progress")
    if haystacks is not None:
        check_token_arrays(haystacks, "haystacks")
    check_loaded_model(model, "passkey_accuracy")  # after the values: a bad depth is said before anything else
    check_loaded_tokenizer(tokenizer, "passkey_accuracy")
    from longrope.models.generation import check_token_ids

    if bos_id is not None:
        check_token_ids(model, [bos_id], what="bos_id", fix="give the BOS id of this model's tokenizer (None: no BOS)")
    for k, h in enumerate(haystacks or ()):  # before any forward (an id past the embeddings was an IndexError)
        check_token_ids(model, haystack_ids(h), what=f"haystack {k}", fix="give token ids of this model's tokenizer")
    joiner = piece_joiner(tokenizer)
    for length in dict.fromkeys((min(lengths), max(lengths))):  # the prompts of the ends, before any forward
        for *_, p in _cell_prompts(tokenizer, length, depths, trials, seed=seed, bos_id=bos_id, mode=mode,
                                   haystacks=haystacks, joiner=joiner):
            check_token_ids(model, p.input_ids, what=f"the passkey prompt of length {length}", tokenizer=tokenizer,
                            fix="give the tokenizer of this model")
    pad = getattr(tokenizer, "pad_token_id", None)
    if pad is None:
        pad = getattr(tokenizer, "eos_token_id", None)
    result = PasskeyResult(mode)
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(lengths) * len(depths) * trials, desc=f"passkey/{mode}", unit="trial", leave=False)
    t0 = time.perf_counter()
    device = lm.model_device(model)
    for length in lengths:
        if before_length is not None:
            before_length(length)
        with out_of_memory(f"passkey ({mode})", length, device):
            _passkey_cells(model, tokenizer, length, depths, trials, seed=seed, bos_id=bos_id, mode=mode,
                           haystacks=haystacks, joiner=joiner, pad=pad, result=result, bar=bar)
    if bar is not None:
        bar.close()
    result.seconds = time.perf_counter() - t0
    return result


def _passkey_cells(model: torch.nn.Module, tokenizer: Any, length: int, depths: Sequence[float], trials: int, *,
                   seed: int, bos_id: int | None, mode: str, haystacks: Sequence[Any] | None, joiner: str,
                   pad: int | None, result: PasskeyResult, bar: Any) -> None:
    """Every (depth, trial) of one length, appended to ``result``."""
    from longrope.models.generation import check_token_ids

    for depth, k, key, p in _cell_prompts(tokenizer, length, depths, trials, seed=seed, bos_id=bos_id, mode=mode,
                                          haystacks=haystacks, joiner=joiner):
        check_token_ids(model, p.input_ids, what=f"the passkey prompt of length {length}", tokenizer=tokenizer,
                        fix="give the tokenizer of this model")
        if mode == "needle":
            s = needle_score(model, [p])
            trial = PasskeyTrial(length, float(depth), k, key, s.exact == 1, answer_nll=s.mean_nll)
        elif mode == "both":  # the same prompt, greedy and teacher-forced, on one prefill
            text, correct, nll, exact = ask_both(model, tokenizer, p, pad_token_id=pad)
            trial = PasskeyTrial(length, float(depth), k, key, correct, output=text, answer_nll=nll,
                                 forced_correct=exact)
        else:
            text, correct = generate_answer(model, tokenizer, p.input_ids, key, pad_token_id=pad)
            trial = PasskeyTrial(length, float(depth), k, key, correct, output=text)
        result.trials.append(trial)
        if bar is not None:
            bar.update(1)


def _cell_prompts(tokenizer: Any, length: int, depths: Sequence[float], trials: int, *, seed: int,
                  bos_id: int | None, mode: str, haystacks: Sequence[Any] | None,
                  joiner: str) -> Iterator[tuple[float, int, int, PasskeyPrompt]]:
    """``(depth, trial, key, prompt)`` of every cell of one length: what is measured, and what
    :func:`passkey_accuracy` builds for the shortest and longest length before any forward (a haystack too short
    for the longest length, or a tokenizer with ids the model has no embedding for, was refused, or an IndexError,
    after the shorter lengths were measured; battery 20b)."""
    for di, depth in enumerate(depths):
        for k in range(trials):
            key = passkey_key(seed, length, di, k)
            hay = None
            if haystacks:
                hay = haystack_ids(haystacks[(di * trials + k) % len(haystacks)])
            p = build_passkey_prompt(tokenizer, length, key, float(depth), bos_id=bos_id,
                                     with_answer=mode == "needle", joiner=joiner, haystack=hay)
            yield float(depth), k, key, p
