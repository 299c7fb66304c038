"""Several factor sets × several lengths on one loaded model, and the files that record them.

The model is loaded once; factors are installed once and swapped per set
(``RopePatch.swap``), so PI, YaRN, LongRoPE … are compared on the same documents in one run.
The unscaled model is the set named ``none`` (``swap(None)``: the model's own RoPE).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from longrope.errors import UserError, shown
from longrope.evaluate.passkey import PasskeyResult, passkey_accuracy
from longrope.evaluate.perplexity import PerplexityResult, evaluate_perplexity
from longrope.evaluate.plots import plot_passkey_heatmap, plot_ppl_vs_length
from longrope.io import json_safe, write_csv, write_json

__all__ = ["NamedFactors", "check_sets", "factor_switch", "ppl_suite", "passkey_suite", "compare_at_length",
           "write_ppl_outputs", "write_passkey_outputs", "PPL_CSV_FIELDS"]

NamedFactors = tuple[str, Any]
"""``(name, FactorSet or None)``; None = the model's own RoPE."""


def check_sets(model: torch.nn.Module, sets: Any, who: str) -> list[NamedFactors]:
    """A suite's factor sets as ``[(name, FactorSet or None)]``, checked before any measurement: a list of pairs (or
    a ``{name: set}`` mapping), each name a distinct non-empty text, each set fitting ``model``. The one check of
    every suite: ``ppl_suite(sets={...})`` was "too many values to unpack", ``[fs]`` "cannot unpack", ``[]`` an empty
    result, two sets named alike one mixed curve, a set of another model refused after the others ran (battery 20b)."""
    from longrope.models.patch import check_factor_sets
    from longrope.options import check_loaded_model, check_sequence, text_problem

    check_loaded_model(model, who)
    if isinstance(sets, Mapping):
        sets = list(sets.items())
    check_sequence(sets, "sets", "[('none', None), ('yarn', FactorSet.load('yarn.json'))]")
    pairs: list[NamedFactors] = []
    for k, item in enumerate(sets):
        if not isinstance(item, tuple | list) or len(item) != 2:
            raise UserError(f"sets[{k}] must be a (name, FactorSet or None) pair, got {shown(item)}")
        name, fs = item
        if (problem := text_problem(name)) is not None:
            raise UserError(f"sets[{k}]: a factor set's name {problem}")
        if any(name == other for other, _ in pairs):
            raise UserError(f"sets: the name {name!r} is given twice; give each factor set its own name")
        pairs.append((name, fs))
    check_factor_sets(model, pairs)
    return pairs


def _check_lengths(lengths: Any) -> list[int]:
    """A suite's context lengths, each checked as ``length`` is, before the first is measured."""
    from longrope.evaluate.windows import check_lengths

    return check_lengths(lengths)


def _check_log(log: Any) -> None:
    if log is not None and not callable(log):
        raise UserError(f"log must be a function taking one line of text (e.g. print) or None, got {shown(log)}")


@contextmanager
def factor_switch(model: torch.nn.Module, sets: Sequence[NamedFactors]) -> Iterator[Callable[[Any], None]]:
    """Yield ``use(factor_set_or_None)``; on exit the model runs with what it ran with on entry.

    A patch installed before (by a search, say) is reused, so ``use(None)`` really gives the
    model's own RoPE rather than silently keeping the last factors; without one, the patch is
    installed at the first real set and removed at exit.
    """
    from longrope.models import current_patch, install_factors  # the only module touching transformers

    patch = current_patch(model)
    entry = patch.factor_set if patch is not None and patch.active else None

    def use(fs: Any) -> None:
        nonlocal patch
        if patch is None:
            if fs is not None:
                patch = install_factors(model, fs)
            return
        patch.swap(fs)

    try:
        yield use
    finally:
        if patch is not None:
            patch.swap(entry)


def ppl_suite(
    model: torch.nn.Module,
    docs: Sequence[Any],
    sets: Sequence[NamedFactors],
    lengths: Sequence[int],
    *,
    bos_id: int | None,
    stride: int | None = None,
    max_tokens: int | None = None,
    chunk_size: int | None = None,
    batch_size: int = 1,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> list[tuple[str, PerplexityResult]]:
    """``evaluate_perplexity`` for every (factor set, length), the same documents throughout."""
    from longrope.evaluate.lm import model_device
    from longrope.evaluate.memory import out_of_memory
    from longrope.rope.baselines import at_length

    sets, lengths = check_sets(model, sets, "ppl_suite"), _check_lengths(lengths)
    _check_log(log)
    out = []
    with factor_switch(model, sets) as use:
        for name, fs in sets:
            for length in lengths:
                use(at_length(fs, length))  # a dynamic NTK set follows the length; the others are one swap
                with out_of_memory(f"perplexity with factors {name!r}", length, model_device(model)):
                    r = evaluate_perplexity(model, docs, length, bos_id=bos_id, stride=stride, max_tokens=max_tokens,
                                            chunk_size=chunk_size, batch_size=batch_size, progress=progress)
                if log:
                    log(f"{name:>16s}  {length:>8d}  ppl {ppl_text(r.ppl)}  ({r.n_tokens} tokens, {r.seconds:.1f} s)")
                out.append((name, r))
    return out


def ppl_text(value: float | None, spec: str = "10.4f") -> str:
    """A perplexity or a loss as the tables print it; a non-finite one (None in the records) said in words, not as
    'nan'."""
    if value is None or not math.isfinite(value):
        return "not finite (NaN or inf; with a 16-bit --dtype, an overflow: try float32)"
    return format(value, spec)


def compare_at_length(model: torch.nn.Module, docs: Sequence[Any], length: int, sets: dict[str, Any], *,
                      bos_id: int | None, subject: str = "searched") -> dict:
    """Token-weighted PPL of each named factor set on the same ``docs`` at ``length``, and the ratio
    of ``subject`` (one of the sets' names) to the best of the others (the search's held-out report)."""
    import time

    from longrope.evaluate.stats import lowest

    pairs = check_sets(model, sets, "compare_at_length")
    if subject not in [name for name, _ in pairs]:
        raise UserError(f"subject {shown(subject)} is none of the sets' names {[name for name, _ in pairs]}; give the "
                        "name of the set to compare with the others")
    t0 = time.perf_counter()
    results = ppl_suite(model, docs, pairs, [length], bos_id=bos_id)
    ppl = {name: r.ppl for name, r in results}
    others = {k: v for k, v in ppl.items() if k != subject}
    best = lowest(others)
    return {
        "length": length,
        "docs": [getattr(d, "doc_id", str(i)) for i, d in enumerate(docs)],
        "scored_tokens_per_set": results[0][1].n_tokens if results else 0,
        "ppl": ppl,
        "best_baseline": best,
        "ratio_to_best_baseline": ppl[subject] / others[best] if best and subject in ppl else None,
        "seconds": time.perf_counter() - t0,
    }


def passkey_suite(model: torch.nn.Module, tokenizer: Any, sets: Sequence[NamedFactors], lengths: Sequence[int],
                  *, log: Callable[[str], None] | None = None, **kwargs: Any) -> list[tuple[str, PasskeyResult]]:
    """``passkey_accuracy`` for every factor set (same seeded keys and depths for each)."""
    sets = check_sets(model, sets, "passkey_suite")
    _check_log(log)
    out = []
    from longrope.rope.baselines import at_length, follows_length

    with factor_switch(model, sets) as use:
        for name, fs in sets:
            use(fs)
            # dynamic NTK: recomputed for each length (the keys the same, seeded per length), within one call so
            # that the lengths are checked together and the prompts of the ends built before any forward (one call
            # per length measured [400, 400] twice and [] was an IndexError: the review of battery 27b)
            each = (lambda n, fs=fs: use(at_length(fs, n))) if follows_length(fs) else None
            r = passkey_accuracy(model, tokenizer, lengths, before_length=each, **kwargs)
            if log:
                for c in r.cells():
                    log(f"{name:>16s}  {c['length']:>8d}  depth {c['depth']:.2f}  accuracy {c['accuracy']:.2f}")
            out.append((name, r))
    return out


PPL_CSV_FIELDS = ["factors", "length", "mode", "stride", "bos", "n_docs", "n_tokens", "nll_sum", "mean_nll", "ppl",
                  "ppl_doc_mean", "seconds"]


#: the files :func:`write_ppl_outputs` writes, by kind; the one place their names are made (a rerun into a run
#: folder replaces only the files :data:`PPL_OUTPUTS` names)
PPL_FILES = {"json": "ppl.json", "csv": "ppl.csv", "png": "ppl.png"}
#: the files :func:`write_ppl_outputs` writes (shell patterns): an eval ppl run folder holds these besides its records
PPL_OUTPUTS = tuple(PPL_FILES.values())
#: the files :func:`write_passkey_outputs` writes besides a heatmap per set, by kind
PASSKEY_FILES = {"json": "passkey.json", "csv": "passkey.csv"}
#: the name of a set's heatmap (``stem``: the set's file-name stem)
PASSKEY_HEATMAP = "passkey_{stem}.png"
#: the files :func:`write_passkey_outputs` writes (shell patterns)
PASSKEY_OUTPUTS = (*PASSKEY_FILES.values(), PASSKEY_HEATMAP.format(stem="*"))


def write_ppl_outputs(out_dir: str | os.PathLike, results: list[tuple[str, PerplexityResult]], config: dict, *,
                      original_length: int | None = None) -> dict[str, Path]:
    """``ppl.json`` (config + every result with per-document sums), ``ppl.csv``, ``ppl.png``."""
    out = Path(out_dir)
    rows = []
    for name, r in results:
        d = r.to_dict()
        d["factors"] = name
        rows.append(d)
    paths = {kind: out / name for kind, name in PPL_FILES.items()}
    write_json(paths["json"], json_safe({"config": config, "results": rows}))  # NaN is no JSON: null
    write_csv(paths["csv"], rows, PPL_CSV_FIELDS)
    series: dict[str, list[tuple[int, float]]] = {}
    for name, r in results:
        series.setdefault(name, []).append((r.length, r.ppl))
    mode = results[0][1].mode if results else "truncate"
    plot_ppl_vs_length(series, paths["png"], original_length=original_length,
                       title=f"Perplexity vs context length ({mode})")
    return paths


def write_passkey_outputs(out_dir: str | os.PathLike, results: list[tuple[str, PasskeyResult]],
                          config: dict) -> dict[str, Path]:
    """``passkey.json``, ``passkey.csv`` (one row per set × length × depth), a heatmap per set."""
    out = Path(out_dir)
    rows = []
    for name, r in results:
        for c in r.cells():
            rows.append({"factors": name, "mode": r.mode, **c})
    fields = ["factors", "mode", "length", "depth", "trials", "correct", "accuracy"]
    if any("answer_nll" in r for r in rows):
        fields.append("answer_nll")
    paths = {kind: out / name for kind, name in PASSKEY_FILES.items()}
    write_json(paths["json"], json_safe({"config": config, "results": [{"factors": n, **r.to_dict()} for n, r in results]}))
    write_csv(paths["csv"], rows, fields)
    for (name, r), stem in zip(results, _file_stems([name for name, _ in results])):
        p = out / PASSKEY_HEATMAP.format(stem=stem)
        plot_passkey_heatmap(r.cells(), p, title=f"Passkey accuracy ({r.mode}) — {name}")
        paths[f"png:{name}"] = p
    return paths


def _file_stems(names: Sequence[str]) -> list[str]:
    """A distinct file-name stem for each set name (letters, digits, ``-_.``; another character is ``_``): sets named
    "a b" and "a_b" (factor files ``a b.json`` and ``a_b.json``) wrote one heatmap over the other (battery 20b)."""
    stems: list[str] = []
    for name in names:
        base = "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else "_" for ch in str(name)) or "_"
        stem, k = base, 2
        while stem in stems:
            stem, k = f"{base}-{k}", k + 1
        stems.append(stem)
    return stems
