"""``longrope eval ppl`` and ``longrope eval passkey``: one model, several factor sets, one run folder.

The model is loaded once; factors are installed once and swapped, so every set is measured on the
same windows (or the same seeded keys). The unscaled model is the set named ``none`` unless
``skip_none``. The run folder is staged: a killed evaluation leaves the previous complete folder
(or none), never files of two runs side by side.

- ``eval ppl``: token-weighted perplexity on windows of a shard folder — truncate mode (one window of
  ``BOS + length − 1`` tokens each, every prediction scored) or sliding windows (``stride``);
  ``ppl.{json,csv,png}``.
- ``eval passkey``: the standard passkey prompt sized exactly in tokens; greedy decoding with the KV
  cache (``generate``) or teacher-forced answer tokens (``needle``); ``passkey.{json,csv}`` and a
  heatmap per set.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError
from longrope.groups import (
    SPLIT_HELP,
    bos_option,
    check_groups,
    data_option,
    depths_option,
    device_option,
    dtype_option,
    heldout_fraction_option,
    mode_option,
    resolve_lengths,
    run_device,
    samples_option,
    seed_option,
    split_option,
    trials_option,
    windows_per_doc_option,
)
from longrope.io import json_safe
from longrope.options import (
    MAX_COUNT,
    MAX_TOKENS,
    check_int,
    config_to_dict,
    option,
    output_option,
    token_count,
)
from longrope.runs import RunSpec
from longrope.settings import HELDOUT_FRACTION, SPLIT


@dataclass(kw_only=True)
class EvalConfig:
    """Settings both evaluations share."""

    model: str = option(help='"tiny", "smollm2", a model folder, a .gguf file or a hub id', metavar="M",
                        path=True)
    lengths: tuple[int, ...] = option(help="context lengths in tokens, comma-separated: 4096, 4k, or 8x the "
                                           "model's original context", length=True, metavar="N,N")
    output: str = output_option("run folder (a finished eval run there is replaced when this one succeeds)",
                                metavar="OUT")
    factors: tuple[str, ...] = option((), "factor files (factors.json, HF config.json, reference CSV) or folders; "
                                          "'none' = unscaled", multiple=True, metavar="F",
                                      path=True)
    skip_none: bool = option(False, "do not add the unscaled model (a 'none' given in --factors is still evaluated)")
    seed: int = seed_option("seed of the window sample / the pass keys")
    dtype: str = dtype_option()
    device: str = device_option()
    attn_implementation: str | None = option(None, "attention implementation (sdpa, eager, ...)",
                                             default_text="the family's working one")
    bos: bool = bos_option()
    quiet: bool = option(False, "no progress bars")
    original_length: int | None = option(None, "L of reference-CSV factor files; for other factor files, accept "
                                               "this L when it differs from the model's (refused otherwise)",
                                         metavar="L", default_text="the model's", parse=token_count("--original-length"))

    def __post_init__(self) -> None:
        resolve_lengths(self)
        check_groups(self)
        self.lengths = tuple(sorted(set(int(n) for n in self.lengths)))
        # the bound of every length (MAX_TOKENS; float-exact integers here let 20,000,000 through to a later
        # "length must be at most" naming no field, battery 25c): a length under it too long for this machine is
        # refused by the memory estimate before the weights load, naming the memory it needs and the longest that fits
        if not self.lengths or self.lengths[0] < 2 or self.lengths[-1] > MAX_TOKENS:
            raise ConfigError("lengths", "{name} must be integers in " + f"[2, {MAX_TOKENS:,}] tokens, got "
                              + (str(list(self.lengths)) if len(str(self.lengths)) < 200 else "a larger one"))
        check_int(self, "original_length", 2, MAX_TOKENS, optional=True)
        if self.skip_none and not self.factors:
            raise ConfigError(("skip_none", "factors"), "nothing to evaluate: {name0} without {name1}")
        _check_distinct_factors(self.factors)


def _check_distinct_factors(specs: tuple[str, ...]) -> None:
    """One set given twice (the same file or folder, however spelled; 'none' twice) is refused: it was measured
    twice, as ``y`` and ``y-2``, doubling the run's time for a row that only repeats another (battery 20)."""
    import os

    seen: dict[str, str] = {}
    for spec in specs:
        if not isinstance(spec, str):
            continue  # the config's shape check names it
        key = spec if spec == "none" else os.path.realpath(spec)
        if key in seen:
            again = f"{spec!r} and {seen[key]!r} name one set" if seen[key] != spec else f"{spec!r} is given twice"
            raise ConfigError("factors", "{name}: " + again + "; give each factor set once")
        seen[key] = spec


@dataclass(kw_only=True)
class PplConfig(EvalConfig):
    """Everything ``longrope eval ppl`` does."""

    data: str = data_option()
    samples: int = samples_option("windows to evaluate per length (at most --windows-per-doc from one document; each "
                                  "window is BOS + length-1 tokens in truncate mode)")
    stride: int | None = option(None, "sliding-window mode with this stride (tokens: 512, 1k)", metavar="S",
                                parse=token_count("--stride"),
                                default_text="truncate mode")
    max_tokens: int | None = option(None, "sliding mode: evaluate at most N tokens of each document (64k ...)",
                                    metavar="N", parse=token_count("--max-tokens"))
    split: str = split_option()
    heldout_fraction: float = heldout_fraction_option()
    windows_per_doc: int = windows_per_doc_option()
    batch_size: int = option(1, "windows per forward pass")
    chunk_size: int | None = option(None, "positions per LM-head chunk", default_text="auto", metavar="N",
                                    parse=token_count("--chunk-size"))

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self, "batch_size")
        # 0 is not "no cap" (that is leaving it out)
        check_int(self, "max_tokens", 1, MAX_COUNT, optional=True)
        if self.max_tokens is not None and self.stride is None:
            raise ConfigError(("max_tokens", "stride"), "{name0} needs {name1} (it applies to sliding windows)")
        from longrope.evaluate.windows import max_tokens_below

        if max_tokens_below(self.max_tokens, max(self.lengths)):
            raise ConfigError(("max_tokens", "lengths"), "{name0} " + f"{self.max_tokens} is below one window of the "
                              "longest of {name1} " + f"({max(self.lengths)} tokens); give at least that or leave it out")
        if self.stride is not None and not 1 <= self.stride <= min(self.lengths):
            raise ConfigError("stride", f"{{name}} must be between 1 and the shortest length ({min(self.lengths)}), "
                                        f"got {self.stride}")
        if self.stride is not None and self.windows_per_doc != 1:  # (the stride had nothing to slide over; battery 28b)
            raise ConfigError(("windows_per_doc", "stride"), "{name0} cuts documents into windows of the longest "
                              "length, over which {name1} has nothing to slide (each was scored as in truncate mode and "
                              "recorded as sliding); drop {name0}: sliding mode scores each sampled document whole")
        check_int(self, "chunk_size", 1, MAX_TOKENS, optional=True)


@dataclass(kw_only=True)
class PasskeyConfig(EvalConfig):
    """Everything ``longrope eval passkey`` does."""

    trials: int = trials_option()
    depths: tuple[float, ...] = depths_option()
    mode: str = mode_option()
    reference: str | None = option(None, "the factor set every verdict compares with (its name as printed)",
                                   metavar="NAME", default_text="the set named yarn, else the first YaRN set given, else the first set")
    data: str | None = data_option("hide the needle in real documents of this shard folder instead of the filler",
                                   required=False)
    split: str = split_option("with --data: " + SPLIT_HELP)
    heldout_fraction: float = heldout_fraction_option("with --data: share of documents held out")

    def __post_init__(self) -> None:
        super().__post_init__()
        # Both choose documents of --data; without it they would be silently ignored.
        if self.data is None and self.split != SPLIT:
            raise ConfigError(("split", "data"), "{name0} needs {name1} (it chooses which documents hide the "
                                                 "needle); without {name1} the synthetic filler is used")
        if self.data is None and self.heldout_fraction != HELDOUT_FRACTION:
            raise ConfigError(("heldout_fraction", "data"), "{name0} needs {name1} (it splits the documents "
                                                            "that hide the needle)")


# ------------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def factor_sets(specs: tuple[str, ...], *, skip_none: bool, info: Any, target: int, model: str | None = None,
                original_length: int | None = None) -> list[tuple[str, Any]]:
    """``[(name, FactorSet | None)]``: 'none' first unless skipped, names from file/folder names.

    Files are read and checked against the model's RoPE (``info``: rotary dim, base, L) by
    :func:`longrope.models.factor_files.load_factors_for`, the one judge of whether a set fits a model;
    ``target`` is L' of a reference CSV (which carries none)."""
    from longrope.data.sources import printable
    from longrope.models.factor_files import load_factors_for

    sets: list[tuple[str, Any]] = []
    seen: set[str] = set()

    def add(name: str, fs: Any) -> None:
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        sets.append((name, fs))

    if not skip_none and "none" not in specs:
        add("none", None)
    for spec in specs:
        if spec == "none":
            add("none", None)
            continue
        p = Path(spec)
        fs = load_factors_for(spec, info, original_length=original_length, target_length=target, model=model)
        fs = fs.with_(provenance={**fs.provenance, "source": printable(spec)})  # the file given: records' "file"
        name = p.name if p.is_dir() else (p.parent.name if p.name in ("factors.json", "config.json") and
                                          p.parent.name else p.stem)
        add(printable(name or spec), fs)  # a file name's non-UTF-8 bytes: escaped (the CSV write was a traceback)
    return sets


def default_reference(sets: list[tuple[str, Any]]) -> str:
    """The set passkey verdicts compare with when --reference is not given: the one named yarn, else the first whose
    factors are YaRN's (a file named otherwise: the demo's factors_yarn.json was not taken for it, and every verdict
    compared with 'none'; battery 30a), else the first set."""
    names = [n for n, _ in sets]
    if "yarn" in names:
        return "yarn"
    return next((n for n, fs in sets if fs is not None and fs.method == "yarn"), names[0])


def factor_records(sets: list[tuple[str, Any]]) -> list[dict]:
    return [{"name": n, "file": None if fs is None else (fs.provenance or {}).get("source"),
             "method": None if fs is None else fs.method,
             "target_length": None if fs is None else fs.max_position_embeddings} for n, fs in sets]


def prepare_eval(config: EvalConfig, *, kv_cache: bool, batch: int = 1) -> tuple[Any, Any, list[tuple[str, Any]]]:
    """``(model config, RopeInfo, factor sets)`` from the model's config alone (no weights): the model
    must have RoPE, every factor file must fit it, every length must fit in the device's memory.

    Runs first, so that a mistake costs seconds, not minutes of weight loading or a finished
    evaluation of the unscaled model."""
    from longrope.evaluate.memory import check_lengths_fit
    from longrope.models.families import require_rope
    from longrope.models.loading import check_attn_implementation, load_config, read_rope_info

    hf_config = load_config(config.model)
    require_rope(hf_config, label=config.model)
    info = read_rope_info(config.model)  # the facts every command uses (a GGUF's own L included)
    if not info.supported:
        raise ConfigError("model", f"{{name}} {config.model} cannot be evaluated with RoPE factors: {info.reason}")
    check_attn_implementation(hf_config, config.attn_implementation, config.model)
    sets = factor_sets(config.factors, skip_none=config.skip_none, info=info, target=max(config.lengths),
                       model=config.model, original_length=config.original_length)
    check_lengths_fit(config.lengths, hf_config, rotary_dim=info.rotary_dim, dtype=config.dtype,
                      device=run_device(config.device), kv_cache=kv_cache, batch=batch)
    if any(fs is None for _, fs in sets) and (note := none_note(config.model, info)) is not None:
        _say(f"note: {note}")
    return hf_config, info, sets


def none_note(model: str, info: Any, factors: str = "--factors") -> str | None:
    """What the row 'none' is when the model is not the unscaled one (its RoPE facts ``info``), or None: one wording
    for eval, demo and a pipeline's compare (demo labelled a Phi-3-128k's own scaling 'none' without a word, battery
    26a; compare too, battery 27c). ``factors``: where the caller's user gives a factor file instead."""
    scaling = info.rope_scaling or {}
    own = scaling.get("rope_type") or scaling.get("type")
    if scaling.get("applied_by_transformers") is False:  # a GGUF's header
        return (f"{model} declares RoPE scaling ({own}) that transformers' GGUF reader does not apply: 'none' is the "
                f"model without it (llama.cpp applies it); to measure it, give {factors} the factor file it was "
                "exported from")
    if own not in (None, "default"):  # e.g. a folder longrope export wrote, a published long-context config
        return f"{model} carries its own RoPE scaling ({own}): 'none' is the model as it loads, with that scaling, " \
               "not the unscaled model"
    return None


def load_for_eval(config: EvalConfig):
    """The model and its tokenizer (after :func:`prepare_eval`); the loaded model's structure is checked too."""
    from longrope.models import inspect_model
    from longrope.models.loading import load_model

    if config.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=run_device(config.device),
                                  attn_implementation=config.attn_implementation)
    info = inspect_model(model)
    if not info.supported:
        raise ConfigError("model", f"{{name}} {config.model} cannot be evaluated with RoPE factors: {info.reason}")
    return model, tokenizer


def run_ppl(config: PplConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Perplexity of every factor set at every length on the same windows; returns the result."""
    from longrope.options import require_config

    require_config(config, PplConfig, "longrope.runs.evaluate.run_ppl")
    from types import SimpleNamespace

    from longrope.data import TokenCorpus
    from longrope.evaluate.suite import PPL_OUTPUTS, ppl_suite, write_ppl_outputs
    from longrope.evaluate.windows import resolve_bos, select_windows
    from longrope.models.loading import load_tokenizer_of
    from longrope.runs.folder import RunFolder

    say = log or _say
    hf_config, info, sets = prepare_eval(config, kv_cache=False, batch=min(config.batch_size, config.samples))
    corpus = TokenCorpus.open(config.data)

    def windows(bos: int | None) -> list:
        return select_windows(corpus, max(config.lengths), config.samples, split=config.split, seed=config.seed,
                              heldout_fraction=config.heldout_fraction, windows_per_doc=config.windows_per_doc,
                              bos=bos is not None, empty_ok=False)

    # Windows, tokenizer and vocabulary before the weights (a length no document holds, shards made
    # with another tokenizer: seconds, not minutes).
    tokenizer = load_tokenizer_of(config.model)
    if tokenizer is not None:
        corpus.check_tokenizer(tokenizer, model_name=config.model)
    else:
        say(f"warning: {config.model} has no tokenizer; cannot check that {config.data} was tokenized for it")
    corpus.check_fits(getattr(hf_config, "vocab_size", 0))
    bos = resolve_bos(tokenizer, corpus=corpus, model=SimpleNamespace(config=hf_config)) if config.bos else None
    if config.bos and bos is None:
        say("note: the tokenizer has no BOS token; windows start with document tokens")
    docs = windows(bos)
    if len(docs) < config.samples:
        which = "" if config.split == "all" else f" {config.split}"  # ("only 1 all window(s)" with --split all)
        say(f"warning: only {len(docs)}{which} window(s) of {max(config.lengths)} tokens; evaluating "
            f"those (asked for {config.samples})")
    folder = RunFolder.open(config.output, PPL_SPEC.command, staged=True, replace=PPL_OUTPUTS)
    try:
        model, _ = load_for_eval(config)
        folder.start(config_to_dict(config), device=run_device(config.device))
        results = ppl_suite(model, docs, sets, config.lengths, bos_id=bos, stride=config.stride,
                            max_tokens=config.max_tokens, chunk_size=config.chunk_size, batch_size=config.batch_size,
                            progress=not config.quiet, log=say)
        record = {"model": config.model, "factors": factor_records(sets), "data": str(config.data),
                  "tokenizer": corpus.tokenizer_info, "bos_id": bos, "documents": [d.doc_id for d in docs],
                  "mode": "truncate" if config.stride is None else "sliding",
                  # sliding mode scores each document whole, over many windows: "per-window" named the wrong unit
                  "weighting": "ppl = exp(sum of NLL / number of scored tokens); ppl_doc_mean = exp(mean of "
                               + ("per-window mean NLL)" if config.stride is None else
                                  "per-document mean NLL, each document scored over its sliding windows)"),
                  "original_max_position_embeddings": info.original_max_position_embeddings}
        write_ppl_outputs(folder.path, results, record, original_length=info.original_max_position_embeddings)
        result = {"kind": "ppl", **record,
                  "results": [{"factors": n, "length": r.length, "ppl": r.ppl, "n_tokens": r.n_tokens,
                               "n_docs": r.n_docs} for n, r in results]}
        result = json_safe(result)  # a non-finite number is no JSON: null in summary.json
        folder.finish(result)
    except BaseException:
        folder.abandon()
        raise
    return result


def run_passkey(config: PasskeyConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Passkey accuracy of every factor set over lengths × depths (same seeded keys for each)."""
    from longrope.options import require_config

    require_config(config, PasskeyConfig, "longrope.runs.evaluate.run_passkey")
    from types import SimpleNamespace

    from longrope.errors import UserError
    from longrope.evaluate.passkey import check_passkey_lengths
    from longrope.evaluate.suite import PASSKEY_OUTPUTS, passkey_suite, write_passkey_outputs
    from longrope.evaluate.windows import resolve_bos
    from longrope.models.loading import load_tokenizer_of
    from longrope.runs.folder import RunFolder

    say = log or _say
    hf_config, info, sets = prepare_eval(config, kv_cache=config.mode != "needle")
    from longrope.data.sources import printable

    names = [n for n, _ in sets]
    given = printable(config.reference) if config.reference is not None else None  # as factor_sets names the sets
    if given is not None and given not in names:
        raise ConfigError("reference", "{name} " + f"{given!r} is not among the evaluated sets "
                                       f"({', '.join(names)}); give one of them")
    reference = given or default_reference(sets)
    # The prompts and the haystacks need only the tokenizer: checked before the weights load.
    tokenizer = load_tokenizer_of(config.model)
    if tokenizer is None:
        raise ConfigError("model", "{name} " + f"{config.model} has no tokenizer files; the passkey prompt needs one")
    bos = resolve_bos(tokenizer, model=SimpleNamespace(config=hf_config)) if config.bos else None
    try:
        check_passkey_lengths(tokenizer, config.lengths, depths=config.depths, trials=config.trials,
                              seed=config.seed, bos_id=bos, mode=config.mode)
    except UserError as exc:
        raise ConfigError("lengths", "{name}: " + str(exc)) from None
    haystacks = None
    if config.data:
        from longrope.data import TokenCorpus, sample_documents

        corpus = TokenCorpus.open(config.data)
        corpus.check_tokenizer(tokenizer, model_name=config.model)
        haystacks = sample_documents(corpus, max(config.lengths), len(config.depths) * config.trials,
                                     seed=config.seed, split=config.split,
                                     heldout_fraction=config.heldout_fraction)
    folder = RunFolder.open(config.output, PASSKEY_SPEC.command, staged=True, replace=PASSKEY_OUTPUTS)
    try:
        model, tokenizer = load_for_eval(config)
        folder.start(config_to_dict(config), device=run_device(config.device))
        results = passkey_suite(model, tokenizer, sets, list(config.lengths), depths=list(config.depths),
                                trials=config.trials, seed=config.seed, bos_id=bos, mode=config.mode,
                                haystacks=haystacks,
                                progress=not config.quiet, log=say)
        # per set and length: keys of different lengths are never pooled into one interval or verdict
        retrieval = {n: {str(L): r.at(L).summary() for L in config.lengths} for n, r in results}
        verdicts = {n: {str(L): v for L, v in by_length.items()} for n, by_length in
                    _passkey_verdicts(results, reference, config.lengths).items()}
        record = {"model": config.model, "factors": factor_records(sets), "bos_id": bos, "mode": config.mode,
                  "haystack": "synthetic filler" if haystacks is None else
                  {"data": str(config.data), "split": config.split, "documents": [d.doc_id for d in haystacks]},
                  "correct_if": "every answer token is the argmax (teacher-forced)" if config.mode == "needle"
                  else "the first number of the greedy output, decoded until complete, equals the key"}
        write_passkey_outputs(folder.path, results, record)
        result = {"kind": "passkey", **record,
                  "accuracy": {n: r.accuracy for n, r in results}, "retrieval": retrieval,
                  "reference": reference, "verdicts": verdicts,
                  "cells": [{"factors": n, **c} for n, r in results for c in r.cells()]}
        result = json_safe(result)  # a non-finite number is no JSON: null in summary.json
        folder.finish(result)
    except BaseException:
        folder.abandon()
        raise
    return result


def _render_ppl(result: dict) -> str:
    from longrope.evaluate.suite import ppl_text

    return "\n".join(f"{r['factors']:>16s}  {r['length']:>8d}  ppl {ppl_text(r['ppl'])}  ({r['n_tokens']} tokens)"
                     for r in result["results"])


def _passkey_verdicts(results: list, reference: str, lengths: tuple[int, ...]) -> dict:
    """Per set but the reference, per length: its retrieval verdict and, with answer NLLs, paired wins and the
    sign test over the same keys."""
    from longrope.evaluate.stats import paired_test, retrieval_verdict

    out: dict = {}
    for length in lengths:
        ref = dict(results)[reference].at(length)
        rs = ref.summary()
        for name, whole in results:
            if name == reference:
                continue
            r = whole.at(length)
            s = r.summary()
            row = {"label": retrieval_verdict(s["accuracy"], rs["accuracy"], s.get("answer_nll"),
                                              rs.get("answer_nll"), reference=reference)}
            row.update(paired_test(r.answer_nlls, ref.answer_nlls))
            out.setdefault(name, {})[length] = row
    return out


def _render_passkey(result: dict) -> str:
    from longrope.evaluate.stats import paired_test_text
    from longrope.evaluate.suite import ppl_text

    retrieval = result.get("retrieval")
    if not retrieval:  # results written before intervals were recorded
        return "\n".join(f"{name:>16s}  accuracy {acc:.2f}" for name, acc in result["accuracy"].items())
    lines = []
    for name, by_length in retrieval.items():
        for length, s in by_length.items():
            lo, hi = s["ci95"]
            nll = f"  answer NLL {ppl_text(s['answer_nll'], '.3f')}" if "answer_nll" in s else ""
            v = ((result.get("verdicts") or {}).get(name) or {}).get(length)
            tail = "  (reference)" if name == result.get("reference") else ""
            if v:
                test = f"; {paired_test_text(v)}" if "nll_wins" in v else ""
                tail = f"  — {v['label']}{test}"
            lines.append(f"{name:>16s}  {length:>8s}  accuracy {s['accuracy']:.2f} [{lo:.2f}, {hi:.2f}] "
                         f"({s['correct']}/{s['keys']} keys){nll}{tail}")
    return "\n".join(lines)


_EVAL_DESCRIPTION = """\
Evaluate one model with several factor sets in one run (the model is loaded once; factors are
installed once and swapped). The unscaled model is always included as 'none' unless
--skip-none. The run folder holds config.json, run.json, summary.json and the files below; it
appears only when the evaluation succeeded (a finished eval folder at -o is replaced)."""

PPL_SPEC = RunSpec(
    command="eval ppl",
    help="perplexity vs length on windows of a shard folder",
    description=_EVAL_DESCRIPTION + """

eval ppl: token-weighted perplexity (truncate mode: BOS + the first length-1 tokens of each
window; --stride: sliding windows); ppl.json, ppl.csv, ppl.png.""",
    example="""\
example:
  longrope eval ppl --model tiny --data shards/tiny --lengths 256,512,1024 --samples 3 \\
      --factors runs/yarn.json runs/search/factors.json -o results/ppl""",
    config=PplConfig,
    run=run_ppl,
    render=_render_ppl,
)

PASSKEY_SPEC = RunSpec(
    command="eval passkey",
    help="passkey retrieval accuracy over length x depth",
    description=_EVAL_DESCRIPTION + """

eval passkey: the standard passkey prompt, sized exactly in tokens; --mode both (default: greedy
decoding with the KV cache, and the same keys' answer tokens teacher-forced), generate or needle;
40 keys per set and length by default, accuracy with its 95 % Wilson interval, the mean answer
NLL, and one verdict line per set against --reference (the YaRN set when evaluated); passkey.json,
passkey.csv and a heatmap per factor set.""",
    example="""\
example:
  longrope eval passkey --model tiny --lengths 512,1024 --trials 3 --factors runs/yarn.json -o results/passkey""",
    config=PasskeyConfig,
    run=run_passkey,
    render=_render_passkey,
)

