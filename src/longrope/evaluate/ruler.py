"""RULER cells scored by lm-evaluation-harness in process, on a loaded (patched) model.

A *cell* is (factor set, length, task): the samples of :func:`longrope.data.ruler.make_samples`,
answered by greedy decoding with the KV cache and scored by lm-eval's own RULER metric
(``common_utils.process_results``: the share of expected answers found in the output). lm-eval runs
the model through its ``HFLM`` wrapper around the model object we loaded and patched, so the
factors, n̂ and the short/long switch at L (a re-prefill when generation crosses it, see
:mod:`longrope.models.cache_switch`) are the ones every other longrope command uses.

Each cell records the mean score (``accuracy``), the number of samples and a 95 % Wilson interval.
Scores of multi-answer tasks are fractions; the interval treats their sum as the count of
successes, which is what the Wilson formula needs and is exact for single-answer tasks.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from longrope.evaluate.stats import wilson_interval
from longrope.io import json_safe, write_csv, write_json, write_text

__all__ = ["Cell", "wilson", "ruler_lm", "score_cell", "averages", "write_ruler_outputs", "RULER_CSV_FIELDS"]

#: the Wilson interval of a cell: the one of every proportion the project reports
wilson = wilson_interval


@dataclasses.dataclass
class Cell:
    """One (factor set, length, task) result."""

    factors: str
    length: int
    task: str
    n: int
    score_sum: float
    """sum of the per-sample scores (lm-eval's metric, 0..1 each)"""
    seconds: float
    samples_sha256: str
    scores: list[float]
    responses: list[str]

    @property
    def accuracy(self) -> float:
        return self.score_sum / self.n if self.n else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        return wilson(self.score_sum, self.n)

    def row(self) -> dict:
        lo, hi = self.interval
        return {"factors": self.factors, "length": self.length, "task": self.task, "n": self.n,
                "score_sum": round(self.score_sum, 6), "accuracy": self.accuracy, "ci95_low": lo, "ci95_high": hi,
                "seconds": round(self.seconds, 3), "seconds_per_sample": round(self.seconds / max(self.n, 1), 3)}

    def to_dict(self) -> dict:
        return json_safe({**self.row(), "samples_sha256": self.samples_sha256, "scores": self.scores,
                          "responses": self.responses})

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        return cls(str(d["factors"]), int(d["length"]), str(d["task"]), int(d["n"]), float(d["score_sum"]),
                   float(d["seconds"]), str(d["samples_sha256"]), [float(s) for s in d["scores"]],
                   [str(r) for r in d["responses"]])


class _SampleHook:
    """lm-eval's per-request hook (``LM.set_cache_hook``), used as a progress callback: lm-eval calls
    ``add_partial`` once per answered request."""

    def __init__(self, on_sample: Callable[[], None]) -> None:
        self.on_sample = on_sample

    def add_partial(self, attr: str, req: Any, res: Any) -> None:
        self.on_sample()


def ruler_lm(model: Any, tokenizer: Any, *, max_length: int) -> Any:
    """lm-eval's ``HFLM`` around an already loaded model (batch 1: no padding inside a prompt).

    ``max_length`` is where lm-eval would cut prompts from the left; it must exceed the longest
    prompt plus the answer budget (RULER's gen_prefix comes on top of its sized input)."""
    from lm_eval.models.huggingface import HFLM

    from longrope.data.ruler import lm_eval_quiet

    with lm_eval_quiet():
        return HFLM(pretrained=model, tokenizer=tokenizer, max_length=int(max_length), batch_size=1,
                    backend="causal")


def _cell_task(task: str, length: int, rows: Sequence[dict]) -> Any:
    """lm-eval's task config for ``task`` with the given samples as its data set and the metric of
    this length (RULER's config lists 4096 … 131072 only; its process_results scores a sample under
    its own length and 4096 always)."""
    import datasets
    from lm_eval.api.task import ConfigurableTask

    from longrope.data.ruler import task_config

    cfg = task_config(task)
    data = list(rows)
    cfg["custom_dataset"] = lambda **_: {"test": datasets.Dataset.from_list(data, split=datasets.Split.TEST)}
    template = dict(cfg["metric_list"][0])
    cfg["metric_list"] = [{**template, "metric": m} for m in dict.fromkeys(["4096", str(length)])]
    cfg["metadata"] = {**(cfg.get("metadata") or {}), "max_seq_lengths": [int(length)]}
    cfg.pop("tag", None)
    return ConfigurableTask(config=cfg)


def score_cell(lm: Any, factors: str, task: str, length: int, rows: Sequence[dict], *, chat_template: bool = False,
               on_sample: Callable[[], None] | None = None) -> Cell:
    """Run lm-eval's ``evaluate`` for one cell on ``lm`` (whatever factors the model carries now);
    ``chat_template``: lm-eval's ``apply_chat_template``. Decoding is lm-eval's own, the model's
    ``generation_config.json`` included (unlike ``generate`` and passkey, which decode plainly): the numbers
    must be the ones stock ``lm_eval`` gives on the same export."""
    from lm_eval.api.model import CacheHook
    from lm_eval.evaluator import evaluate

    from longrope.data.ruler import lm_eval_quiet, samples_sha256
    from longrope.models.generation import reset_dynamic_rope

    model = getattr(lm, "model", None)
    reset_dynamic_rope(model.modules() if callable(getattr(model, "modules", None)) else ())
    t0 = time.perf_counter()
    lm.set_cache_hook(_SampleHook(on_sample) if on_sample else CacheHook(None))
    try:
        with lm_eval_quiet():
            task_obj = _cell_task(task, length, rows)
            out = evaluate(lm=lm, task_dict={"tasks": {task: task_obj}}, log_samples=True, bootstrap_iters=0,
                           apply_chat_template=chat_template)
    finally:
        lm.set_cache_hook(CacheHook(None))
    seconds = time.perf_counter() - t0
    logged = sorted(out["samples"][task], key=lambda s: int(s["doc_id"]))
    scores = [float(s[str(length)]) for s in logged]
    responses = [str(s["filtered_resps"][0]) for s in logged]
    return Cell(factors, int(length), task, len(scores), float(sum(scores)), seconds, samples_sha256(rows),
                scores, responses)


# ------------------------------------------------------------------------------------------------
# outputs

RULER_CSV_FIELDS = ["factors", "length", "task", "n", "score_sum", "accuracy", "ci95_low", "ci95_high", "seconds",
                    "seconds_per_sample"]


def _pct(x: float | None) -> str:
    return "–" if x is None or not math.isfinite(x) else f"{100 * x:.1f}"


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def averages(cells: Sequence[Cell], sets: Sequence[str], lengths: Sequence[int],
             tasks: Sequence[str]) -> dict[str, dict]:
    """Per factor set: the mean over tasks at each length (None until every task is measured there)
    and ``avg`` over lengths (None until every length is complete) — the paper table's numbers. Each set, length
    and task given once."""
    _check_axes(sets, lengths, tasks)
    by = {(c.factors, c.length, c.task): c for c in cells}
    out: dict[str, dict] = {}
    for s in sets:
        per_length: dict[int, float | None] = {}
        for n in lengths:
            got = [by[(s, n, t)].accuracy for t in tasks if (s, n, t) in by]
            per_length[n] = _mean(got) if len(got) == len(tasks) else None
        done = [v for v in per_length.values() if v is not None]
        out[s] = {"by_length": per_length, "avg": _mean(done) if len(done) == len(lengths) else None}
    return out


def _check_axes(sets: Sequence[str], lengths: Sequence[int], tasks: Sequence[str]) -> None:
    """A table's rows, columns and tasks given once: lengths [4096, 4096] left every average None for good, a task
    given twice counted twice in its length's mean (battery 27)."""
    from longrope.evaluate.windows import check_lengths
    from longrope.options import check_once, check_sequence

    check_lengths(lengths)
    for values, name, what in ((sets, "sets", "factor set"), (tasks, "tasks", "task")):
        check_sequence(values, name, "['none']" if name == "sets" else "['niah_single_1']")
        check_once(values, name, what)


def _table_md(cells: Sequence[Cell], sets: Sequence[str], lengths: Sequence[int], tasks: Sequence[str],
              record: dict) -> str:
    avg = averages(cells, sets, lengths, tasks)
    by = {(c.factors, c.length, c.task): c for c in cells}
    from longrope.evaluate.plots import _length_label  # the plots' column labels: 4k, 8k, ...

    cols = [_length_label(n) for n in lengths]
    lines = [f"# RULER: {record.get('model')}", "",
             f"lm-eval {record.get('lm_eval')} RULER tasks ({', '.join(tasks)}); {record.get('samples')} samples "
             f"per cell; essay haystack: {(record.get('haystack') or {}).get('name', 'not used')}. Accuracy in % "
             "(mean of lm-eval's per-sample score); a length's column is the mean over the tasks, Avg the mean "
             "over lengths (– = not measured yet).", "",
             "| Factors | " + " | ".join(cols) + " | Avg |",
             "|---|" + "---:|" * (len(cols) + 1)]
    for s in sets:
        lines.append(f"| {s} | " + " | ".join(_pct(avg[s]["by_length"][n]) for n in lengths)
                     + f" | {_pct(avg[s]['avg'])} |")
    lines += ["", "## Per task", "", "Accuracy in % with its 95 % Wilson interval and the number of samples.", ""]
    for s in sets:
        lines += [f"### {s}", "", "| Task | " + " | ".join(cols) + " | Avg |", "|---|" + "---:|" * (len(cols) + 1)]
        for t in tasks:
            row = []
            accs = []
            for n in lengths:
                c = by.get((s, n, t))
                if c is None:
                    row.append("–")
                    continue
                lo, hi = c.interval
                accs.append(c.accuracy)
                row.append(f"{_pct(c.accuracy)} [{_pct(lo)}, {_pct(hi)}] n={c.n}")
            t_avg = _mean(accs) if len(accs) == len(lengths) else None
            lines.append(f"| {t} | " + " | ".join(row) + f" | {_pct(t_avg)} |")
        lines.append("")
    return "\n".join(lines)


def write_ruler_outputs(out_dir: str | os.PathLike, cells: Sequence[Cell], *, sets: Sequence[str],
                        lengths: Sequence[int], tasks: Sequence[str], record: dict,
                        plot: bool = True) -> dict[str, Path]:
    """``ruler.json`` (record, averages, every cell with its per-sample scores), ``ruler.csv`` (a row
    per cell), ``table.md`` (the paper's layout, then per task) and ``ruler.png`` (a task × length
    heatmap per factor set). Cells of sets, lengths or tasks not asked for now are left out."""
    from longrope.evaluate.plots import plot_ruler_heatmaps

    _check_axes(sets, lengths, tasks)
    out = Path(out_dir)
    keep = [c for c in cells if c.factors in sets and c.length in lengths and c.task in tasks]
    keep.sort(key=lambda c: (list(sets).index(c.factors), c.length, list(tasks).index(c.task)))
    avg = averages(keep, sets, lengths, tasks)
    paths = {"json": out / "ruler.json", "csv": out / "ruler.csv", "md": out / "table.md", "png": out / "ruler.png"}
    write_json(paths["json"], json_safe({
        "config": record,
        "averages": {s: {"by_length": {str(n): v for n, v in a["by_length"].items()}, "avg": a["avg"]}
                     for s, a in avg.items()},
        "cells": [c.to_dict() for c in keep]}))
    write_csv(paths["csv"], [json_safe(c.row()) for c in keep], RULER_CSV_FIELDS)
    write_text(paths["md"], _table_md(keep, sets, lengths, tasks, record) + "\n")
    if plot:
        grids = {s: {(c.task, c.length): c.accuracy for c in keep if c.factors == s} for s in sets}
        plot_ruler_heatmaps(grids, list(tasks), list(lengths), paths["png"],
                            title=f"RULER accuracy — {record.get('model')}")
    return paths
