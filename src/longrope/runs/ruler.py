"""``longrope eval ruler``: RULER accuracy by context length for several factor sets, resumable by cell.

The story of a run:

1. check what needs no weights: the factor files against the model's RoPE, the tokenizer (and its
   chat template when asked for), the haystack;
2. open the run folder in place (a folder holding an ``eval ruler`` run is continued: its measured
   cells are kept), then make the samples — lm-eval's RULER code generates them from the tokenizer
   (:mod:`longrope.data.ruler`), so a length too short for a task fails here, before any weight is
   read, and a folder this run created is removed — and save them, with the tokenizer lm-eval sized
   the prompts with when the model has no tokenizer folder of its own (a GGUF, a hub id);
3. load the model once and wrap it in lm-eval's ``HFLM``; for each factor set (swapped in the
   loaded model), each length and task, score the cell (:mod:`longrope.evaluate.ruler`) and save
   it at once (``cells.json``, atomically), so a killed run loses at most the cell in progress;
4. write ``ruler.json``, ``ruler.csv``, ``table.md``, ``ruler.png`` and ``summary.json``.

A cell is reused only when everything that decides its numbers matches: the factor set (its
factors, not only its name), the samples (by hash), the model (a local one by its content), dtype, attention implementation,
BOS and chat-template settings and the lm-eval release.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.data.ruler import DEFAULT_TASKS, MAX_SAMPLES, MIN_LENGTH, TASKS, canonical_task
from longrope.errors import ConfigError, UserError
from longrope.groups import bos_option, run_device
from longrope.io import seal_intact, sealed
from longrope.options import config_to_dict, option
from longrope.runs import RunSpec
from longrope.runs.evaluate import EvalConfig, factor_records, load_for_eval, prepare_eval

CELLS_FILE = "cells.json"
SAMPLES_DIR = "samples"
TOKENIZER_DIR = "tokenizer"


def _tasks(text: str) -> tuple[str, ...]:
    from longrope.options import parse_list

    return parse_list(text, str, "--tasks")


@dataclass(kw_only=True)
class RulerConfig(EvalConfig):
    """Everything ``longrope eval ruler`` does."""

    tasks: tuple[str, ...] = option(DEFAULT_TASKS, "RULER tasks, comma-separated (lm-eval's names; vt, cwe, fwe "
                                                   "also); tasks that need the hub (qa_*) are skipped",
                                    parse=_tasks, metavar="T,T", default_text="every task that runs offline")
    samples: int = option(10, f"samples per (factor set, length, task): the first N lm-eval generates (at most "
                              f"{MAX_SAMPLES})", metavar="N")
    haystack: str | None = option(None, "text for the essay haystack (RULER's is Paul Graham's essays from the "
                                        "hub): .txt/.jsonl/.parquet files, a folder of them, or a shard folder",
                                  metavar="PATH", default_text="the shipped books", path=True)
    bos: bool = bos_option("BOS as the tokenizer adds it (lm-eval's default); off: never")
    chat_template: bool = option(False, "wrap each prompt in the tokenizer's chat template (lm-eval's "
                                        "--apply_chat_template; for instruct models such as smollm2)")
    resume: bool = option(False, "continue the eval ruler run in --output (the same -o continues one too); "
                                 "measured cells are kept")

    def __post_init__(self) -> None:
        super().__post_init__()
        self.tasks = tuple(dict.fromkeys(canonical_task(t) for t in self.tasks))
        if not self.tasks:
            raise ConfigError("tasks", "{name} is empty; name at least one RULER task")
        if self.lengths[0] < MIN_LENGTH:
            raise ConfigError("lengths", f"{{name}}: RULER needs at least {MIN_LENGTH} tokens (up to 128 are kept "
                                         f"for the answer), got {self.lengths[0]}")
        if not 1 <= self.samples <= MAX_SAMPLES:
            raise ConfigError("samples", f"{{name}} must be between 1 and {MAX_SAMPLES} (lm-eval makes {MAX_SAMPLES} "
                                         f"per task and length), got {self.samples}")
        try:
            found = self.haystack is None or (bool(self.haystack.strip()) and Path(self.haystack).exists())
        except (OSError, ValueError):  # a name the OS cannot hold (a NUL byte ...)
            found = False
        if not found:
            raise ConfigError("haystack", f"{{name}} {self.haystack}: no such file or folder; give text files, a "
                                          "folder of them or a shard folder")


# ------------------------------------------------------------------------------------------------


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def _set_fingerprint(fs: Any) -> str:
    """What decides a factor set's numbers: its fields without the free-form provenance."""
    if fs is None:
        return "none"
    d = dict(fs.to_dict())
    d.pop("provenance", None)
    return _fingerprint(d)


def _read_json(path: Path) -> Any:
    """The JSON in ``path``, or None when it is absent or unreadable (read by the one safe reader: a pipe
    planted there is refused, not waited on)."""
    from longrope.io import read_json

    if not os.path.lexists(path):
        return None
    try:
        return read_json(path, expect=None)
    except UserError:
        return None


def _holds_ruler_run(out: Path) -> bool:
    doc = _read_json(out / "config.json")
    return isinstance(doc, dict) and doc.get("command") == SPEC.command


def _tokenizer_source(config: RulerConfig, tokenizer: Any, out: Path, scratch: Path) -> tuple[str, bool]:
    """``(path lm-eval loads the tokenizer from, whether it must be saved into the run folder)``.

    A model folder with tokenizer files (the embedded ``tiny`` included) is named directly, as stock
    lm-eval would be given it; a GGUF's tokenizer (``smollm2``) or a hub id's is saved as a folder —
    the run folder's when it holds one already, else a scratch folder copied in later."""
    from longrope.models.loading import _has_tokenizer, resolve_source

    source = resolve_source(config.model)
    if source.kind == "folder" and _has_tokenizer(Path(source.location)):
        return source.location, False
    saved = out / TOKENIZER_DIR
    if (saved / "tokenizer_config.json").is_file() and _same_vocabulary(saved, tokenizer):
        return str(saved.resolve()), False
    tokenizer.save_pretrained(str(scratch))
    return str(scratch), True


def _same_vocabulary(folder: Path, tokenizer: Any) -> bool:
    """Whether the tokenizer saved in ``folder`` (by an earlier run into the same -o) is ``tokenizer``."""
    from transformers import AutoTokenizer

    from longrope.data.shards import vocab_sha256

    try:
        return vocab_sha256(AutoTokenizer.from_pretrained(str(folder))) == vocab_sha256(tokenizer)
    except (OSError, ValueError):
        return False


def _samples_key(task: str, length: int, config: RulerConfig, vocab: str, haystack: Any) -> dict:
    from longrope.data.ruler import LM_EVAL_VERSION

    return {"task": task, "length": length, "seed": config.seed, "lm_eval": LM_EVAL_VERSION, "tokenizer": vocab,
            "haystack": haystack.sha256 if haystack is not None and TASKS[task].haystack == "essay" else None}


#: A cell whose longest sample is under this share of its length gets a note: it measures a shorter context.
SHORT_SAMPLES = 0.5


def _all_samples(config: RulerConfig, tasks: list[str], *, tokenizer: Any, tokenizer_path: str, haystack: Any,
                 out: Path, say: Callable[[str], None]) -> dict[tuple[str, int], dict]:
    """``{(task, length): {"key", "rows"}}``: samples stored in ``out`` when they match, else generated. Every
    (task, length) to be made is checked first: a length too short for vt (the default tasks at 512) was refused
    after the samples of every task before it were made, minutes at real lengths (battery 11a)."""
    from longrope.data.ruler import check_length, make_samples
    from longrope.data.shards import recorded_vocab_hashes

    vocab, *before = recorded_vocab_hashes(tokenizer)
    found: dict[tuple[str, int], dict] = {}
    missing = []
    for task in tasks:
        for length in config.lengths:
            key = _samples_key(task, length, config, vocab, haystack)
            stored = _read_json(out / SAMPLES_DIR / f"{task}-{length}.json")
            if isinstance(stored, dict) and isinstance(stored.get("key"), dict) \
                    and stored["key"].get("tokenizer") in before:  # the same tokenizer's hash of before (a GGUF's)
                stored = {**stored, "key": {**stored["key"], "tokenizer": vocab}}
            if _intact_samples(stored, key, config.samples):
                found[(task, length)] = {"key": key, "rows": stored["rows"][: config.samples], "stored": True}
            else:
                missing.append((task, length, key))
                if (why := _samples_changed(stored, key)) is not None:
                    say(f"note: the stored {task} samples at {length} tokens were made from {why}; made again, "
                        "and a cell whose samples differ is measured afresh")
    for task, length, _ in missing:
        check_length(task, length, tokenizer, samples=config.samples, haystack=haystack)
    announced = False
    for task, length, key in missing:
        if not announced and not config.quiet:
            say("making RULER samples with lm-eval's task code (importing it takes ~20 s on 2 cores)")
            announced = True
        t0 = time.perf_counter()
        rows = make_samples(task, length, config.samples, tokenizer_path=tokenizer_path, tokenizer=tokenizer,
                            seed=config.seed, haystack=haystack)
        if not config.quiet:
            say(f"samples: {task} at {length} tokens ({time.perf_counter() - t0:.1f} s)")
        longest = max(int(r["length"]) for r in rows)
        if longest > length:
            say(f"note: lm-eval's {task} samples at {length} take up to {longest} tokens with the answer "
                "budget (its sizing); evaluated as they are")
        elif longest < SHORT_SAMPLES * length:  # the essay haystack grows 500 words at a time (battery 13)
            say(f"note: lm-eval's {task} samples at {length} take at most {longest} tokens with the answer budget "
                "(its haystack grows in steps too large for this length): the cell measures a shorter context "
                "than its column says; use a longer length for this task")
        found[(task, length)] = {"key": key, "rows": rows, "stored": False}
    return found


def _cell_context(config: RulerConfig) -> dict:
    from longrope.data.ruler import LM_EVAL_VERSION
    from longrope.models.loading import model_digest

    # a local model by its content (one rebuilt or fine-tuned again at the same path is another model whose
    # cells are measured afresh), a hub model by its id
    digest = model_digest(config.model)
    return {"model": config.model if digest is None else {"sha256": digest}, "dtype": config.dtype, "attn_implementation": config.attn_implementation,
            "bos": config.bos, "chat_template": config.chat_template, "lm_eval": LM_EVAL_VERSION}


def run_ruler(config: RulerConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """RULER accuracy of every factor set × length × task (same samples for each set); see the module doc."""
    from longrope.options import require_config

    require_config(config, RulerConfig, "longrope.runs.ruler.run_ruler")
    from longrope.data.ruler import check_lm_eval
    from longrope.evaluate.ruler import averages, write_ruler_outputs
    from longrope.io import json_safe

    say = log or _say
    check_lm_eval()
    tasks = _runnable_tasks(config, say)
    _, info, sets = prepare_eval(config, kv_cache=True)  # factor files, RoPE, memory: no weights read
    tokenizer, haystack = _tokenizer_and_haystack(config, tasks, say)
    folder, tokenizer_path, samples = _open(config, tasks, tokenizer, haystack, say)
    try:
        context = _cell_context(config)
        record = {"model": config.model, "factors": factor_records(sets), "tasks": tasks,
                  "skipped_tasks": {t: TASKS[t].why_not for t in config.tasks if t not in tasks},
                  "lengths": list(config.lengths), "samples": config.samples, "seed": config.seed,
                  "haystack": haystack.record() if haystack is not None else None,
                  "tokenizer": tokenizer_path, "lm_eval": context["lm_eval"],
                  "hflm_max_length": max(config.lengths) + 256,
                  "original_max_position_embeddings": info.original_max_position_embeddings,
                  "scored_by": "lm-eval's RULER process_results: per sample, the share of expected answers found "
                               "in the greedy output; accuracy = mean over samples; 95 % Wilson interval"}
        cells = _measure(config, folder, sets, tasks, samples, context, record["hflm_max_length"], say)
        names = [n for n, _ in sets]
        write_ruler_outputs(folder.path, cells, sets=names, lengths=list(config.lengths), tasks=tasks, record=record)
        avg = averages(cells, names, list(config.lengths), tasks)
        summary = json_safe({"kind": "ruler", **record,
                             "table": {n: {"by_length": {str(k): v for k, v in a["by_length"].items()},
                                           "avg": a["avg"]} for n, a in avg.items()},
                             "cells": [c.row() for c in cells]})
        folder.finish(summary)
    except BaseException:
        folder.abandon()
        raise
    return summary


def _runnable_tasks(config: RulerConfig, say: Callable[[str], None]) -> list[str]:
    """The tasks asked for that can run here; one line for each that cannot."""
    tasks = []
    for t in config.tasks:
        if TASKS[t].offline:
            tasks.append(t)
        else:
            say(f"skipping {t}: it {TASKS[t].why_not}, which is not available offline")
    if not tasks:
        raise ConfigError("tasks", "{name}: every task asked for needs the hub; choose from "
                          + ", ".join(DEFAULT_TASKS))
    return tasks


def _tokenizer_and_haystack(config: RulerConfig, tasks: list[str], say: Callable[[str], None]) -> tuple:
    from longrope.data.ruler import load_haystack
    from longrope.models.loading import load_tokenizer_of
    from longrope.options import check_chat_template

    tokenizer = load_tokenizer_of(config.model)
    if tokenizer is None:
        raise ConfigError("model", "{name} " + f"{config.model} has no tokenizer files; RULER sizes its prompts "
                                               "with the model's tokenizer")
    if config.chat_template:
        check_chat_template(tokenizer, config.model)
    essay = [t for t in tasks if TASKS[t].haystack == "essay"]
    if config.haystack is not None and not essay:
        say("note: --haystack is used by the essay tasks only, and none is asked for")
    return tokenizer, load_haystack(config.haystack, tokenizer) if essay else None


def store_samples(samples: dict, folder: Path) -> None:
    """Write the samples a run made (those reused are on disk already) into ``folder``'s samples/, one
    file per (task, length), with the digest a later run checks before reusing them."""
    from longrope.data.ruler import samples_sha256
    from longrope.io import write_json

    for (task, length), s in samples.items():
        if not s["stored"]:
            write_json(folder / SAMPLES_DIR / f"{task}-{length}.json",
                       {"key": s["key"], "rows": s["rows"], "sha256": samples_sha256(s["rows"])})


def samples_for(config: RulerConfig, tokenizer: Any, out: Path, say: Callable[[str], None]) -> dict:
    """``{(task, length): rows}``: ``config``'s samples for ``tokenizer``, those stored under ``out``
    reused and the others made and stored there (the compare stage's RULER cells use this)."""
    _, haystack = _tokenizer_and_haystack(config, list(config.tasks), say)
    with tempfile.TemporaryDirectory(prefix="longrope-ruler-tok-") as scratch:
        path, _ = _tokenizer_source(config, tokenizer, out, Path(scratch))
        found = _all_samples(config, list(config.tasks), tokenizer=tokenizer, tokenizer_path=path,
                             haystack=haystack, out=out, say=say)
    store_samples(found, out)
    return {k: s["rows"] for k, s in found.items()}


def _open(config: RulerConfig, tasks: list[str], tokenizer: Any, haystack: Any,
          say: Callable[[str], None]) -> tuple[Any, str, dict]:
    """The run folder (checked first: a wrong -o costs nothing), the samples (stored ones reused, the
    rest generated; a length too short for a task fails here and leaves no new folder behind), then
    the run's records (config.json, run.json), and only then the tokenizer and the samples written into
    the folder: a run killed while it wrote them left samples/ (or tokenizer/) without the config.json
    that says whose folder it is, which every later run refused, --resume included (battery 14c)."""
    import shutil

    from longrope.io import give_default_modes
    from longrope.runs.folder import RunFolder

    out = Path(config.output)
    folder = RunFolder.open(out, SPEC.command, staged=False, resume=config.resume or _holds_ruler_run(out))
    try:
        with tempfile.TemporaryDirectory(prefix="longrope-ruler-tok-") as scratch:
            tokenizer_path, save_tokenizer = _tokenizer_source(config, tokenizer, out, Path(scratch))
            samples = _all_samples(config, tasks, tokenizer=tokenizer, tokenizer_path=tokenizer_path,
                                   haystack=haystack, out=out, say=say)
            folder.start(config_to_dict(config), device=run_device(config.device))
            if save_tokenizer:
                dest = folder.path / TOKENIZER_DIR
                shutil.rmtree(dest, ignore_errors=True)
                shutil.copytree(scratch, dest)
                give_default_modes(dest)  # copytree kept mkdtemp's 0700: the group could read the run but not it
                tokenizer_path = str(dest.resolve())
        store_samples(samples, folder.path)
    except BaseException:
        folder.abandon()  # removes a folder this run created while it holds nothing
        raise
    return folder, tokenizer_path, samples


def _entry_key(context: dict, factors: str, fingerprint: str, length: int, task: str, samples: str) -> tuple:
    return (_fingerprint(context), factors, fingerprint, int(length), task, samples)


#: what made a (task, length)'s samples, as its key names it, and how a change of it is said
_SAMPLE_INPUTS = {"haystack": "another haystack (--haystack, or the text of its files, changed since)",
                  "tokenizer": "another tokenizer", "lm_eval": "another lm-eval version", "seed": "another --seed"}


def _samples_changed(stored: Any, key: dict) -> str | None:
    """Why samples stored for the same (task, length) are not reused, in words, when a rerun would otherwise re-measure
    their cells without a word: one of the inputs they were made from differs (a haystack whose files changed between
    two runs into one folder, battery 25c), or their rows were edited since. None when nothing was stored."""
    if not (isinstance(stored, dict) and isinstance(stored.get("key"), dict)):
        return None
    old = stored["key"]
    changed = [words for field, words in _SAMPLE_INPUTS.items() if old.get(field) != key.get(field)]
    if changed:
        return " and ".join(changed)
    if old == key and not _intact_samples(stored, key, 0):
        return "rows edited since they were written"
    return None


def _intact_samples(stored: Any, key: dict, n: int) -> bool:
    """Whether a samples file holds at least ``n`` samples made with ``key`` and unchanged since: its rows
    match the digest written with them (an edited prompt or answer, or a file without the digest, is made
    again; the cells measured on the original samples still match those)."""
    from longrope.data.ruler import samples_sha256

    if not (isinstance(stored, dict) and stored.get("key") == key and isinstance(stored.get("rows"), list)
            and len(stored["rows"]) >= n):
        return False
    try:
        return stored.get("sha256") == samples_sha256(stored["rows"])
    except (KeyError, TypeError, AttributeError):
        return False


def _intact_cell(entry: dict) -> Any:
    """The :class:`~longrope.evaluate.ruler.Cell` of a ``cells.json`` entry, or a ``ValueError`` (or the
    like) when it is not one a measurement writes: its own fields disagree with the entry's key, its count
    with its scores, its sum with their sum, or a score lies outside [0, 1]."""
    from longrope.evaluate.ruler import Cell

    if not seal_intact(entry):
        raise ValueError("a cell whose fields do not match their digest (edited, or written without one)")
    cell = Cell.from_dict(entry["cell"])
    scores = cell.scores
    if ((cell.factors, cell.length, cell.task, cell.samples_sha256)
            != (entry["factors"], entry["length"], entry["task"], entry["samples_sha256"])
            or cell.n != len(scores) or cell.n != len(cell.responses) or cell.n < 1
            or not all(0.0 <= x <= 1.0 for x in scores) or not abs(cell.score_sum - sum(scores)) <= 1e-5
            or not (math.isfinite(cell.seconds) and cell.seconds >= 0)):
        raise ValueError("a cell that disagrees with itself")
    return cell


def _stored_cells(folder: Any) -> dict[tuple, dict]:
    """Every intact cell ``cells.json`` holds (other configurations' too: the file keeps them), by key;
    a damaged or hand-edited entry is left out, so its cell is measured again."""
    stored = _read_json(folder.path / CELLS_FILE)
    kept: dict[tuple, dict] = {}
    for entry in stored.get("cells", []) if isinstance(stored, dict) else []:
        try:
            key = _entry_key(entry["context"], entry["factors"], entry["fingerprint"], entry["length"],
                             entry["task"], entry["samples_sha256"])
            _intact_cell(entry)
        except (KeyError, TypeError, ValueError, AttributeError):
            continue  # a damaged entry: its cell is measured again
        kept[key] = entry
    return kept


def _measure(config: RulerConfig, folder: Any, sets: list, tasks: list[str], samples: dict, context: dict,
             max_length: int, say: Callable[[str], None]) -> list:
    """Score the cells not stored yet, saving ``cells.json`` after each; every cell of this config."""
    from longrope.data.ruler import samples_sha256
    from longrope.evaluate import ruler as scoring  # module attribute: tests replace score_cell
    from longrope.evaluate.suite import factor_switch
    from longrope.io import check_writable_path, write_json
    from longrope.rope.baselines import at_length

    entries = _stored_cells(folder)
    todo, cells = [], []
    for name, fs in sets:
        for length in config.lengths:
            for task in tasks:
                rows = samples[(task, length)]["rows"]
                # the set measured at this length: a dynamic NTK file's own set only at its ℓ (cells measured with the
                # file's set at every length, before, are measured again: the review of battery 27b)
                key = _entry_key(context, name, _set_fingerprint(at_length(fs, length)), length, task,
                                 samples_sha256(rows))
                if key in entries:
                    cells.append(scoring.Cell.from_dict(entries[key]["cell"]))
                else:
                    todo.append((name, fs, length, task, rows, key))
    if cells and not config.quiet:
        say(f"kept {len(cells)} measured cell(s) of {folder.final}; {len(todo)} to measure")
    if not todo:
        return cells
    check_writable_path(folder.path / CELLS_FILE)  # a folder planted there: refused before the work, not after
    model, tokenizer = load_for_eval(config)
    lm = scoring.ruler_lm(model, tokenizer, max_length=max_length)
    if not config.bos:
        lm.add_bos_token = False
    bar = None
    if not config.quiet:
        from tqdm.auto import tqdm

        bar = tqdm(total=sum(len(t[4]) for t in todo), desc="ruler", unit="sample", dynamic_ncols=True,
                   file=sys.stderr)
    try:
        with factor_switch(model, sets) as use:
            current = object()
            for name, fs, length, task, rows, key in todo:
                applied = at_length(fs, length)  # a dynamic NTK set follows the length (a new set each cell)
                if applied is not current:
                    use(applied)  # a swap of the installed factors (None: the model's own RoPE)
                    current = applied
                if bar is not None:
                    bar.set_postfix_str(f"{name} {length} {task}")
                cell = scoring.score_cell(lm, name, task, length, rows, chat_template=config.chat_template,
                                          on_sample=(lambda: bar.update(1)) if bar is not None else None)
                cells.append(cell)
                entry = {"factors": name, "fingerprint": key[2], "length": length, "task": task,
                         "samples_sha256": key[5], "context": context, "cell": cell.to_dict()}
                entries[key] = sealed(entry)
                write_json(folder.path / CELLS_FILE, {"cells": list(entries.values())})
                if bar is not None:
                    lo, hi = cell.interval
                    bar.write(f"{name:>16s}  {length:>7d}  {task:<16s} accuracy {cell.accuracy:.2f} [{lo:.2f}, "
                              f"{hi:.2f}] ({cell.n} samples, {cell.seconds / max(cell.n, 1):.1f} s/sample)",
                              file=sys.stderr)
    finally:
        if bar is not None:
            bar.close()
    return cells


def _render(result: dict) -> str:
    """The printed table: accuracy in % as table.md has it (the unit said: the cell lines print fractions)."""
    lengths = result["lengths"]
    head = f"{'factors':>16s}  " + "  ".join(f"{n:>7d}" for n in lengths) + "      avg"
    lines = [f"RULER accuracy in % (a length: the mean over {len(result['tasks'])} task(s) of {result['samples']} "
             f"samples each; avg: over lengths; per-task 95 % intervals in table.md)", head]
    for name, row in result["table"].items():
        vals = [row["by_length"].get(str(n)) for n in lengths] + [row["avg"]]
        lines.append(f"{name:>16s}  " + "  ".join("      –" if v is None else f"{100 * v:7.1f}" for v in vals))
    return "\n".join(lines)


SPEC = RunSpec(
    command="eval ruler",
    help="RULER accuracy by context length (lm-evaluation-harness's tasks, in process)",
    description="""\
Evaluate one model with several factor sets on RULER (lm-evaluation-harness's own task code and
metric, run in this process on the loaded model; factors swapped, same samples for every set;
greedy decoding with the KV cache). The unscaled model is included as 'none' unless --skip-none.

Every RULER task whose data can be made offline runs by default: niah_* with the repeat and needle
haystacks, vt, cwe, fwe, and the essay tasks with --haystack (the shipped books by default) in
place of the hub's Paul Graham essays; the QA tasks need the hub and are skipped. Needs the
'ruler' extra: pip install 'longrope[ruler]'.

The run folder is resumable by cell: a killed run keeps the cells it measured, and running the
same command again (or with --resume) measures only the missing ones. It holds config.json,
run.json, summary.json, ruler.json (every cell with its per-sample scores and answers), ruler.csv,
table.md (a row per factor set, a column per length, Avg; then per task with 95 % Wilson
intervals), ruler.png (task x length per set), samples/ (the prompts) and cells.json.""",
    example="""\
example:
  longrope eval ruler --model tiny --factors runs/yarn.json --lengths 1024,2048 --tasks niah_single_1,vt \\
      --samples 5 -o results/ruler""",
    config=RulerConfig,
    run=run_ruler,
    render=_render,
)
