"""``longrope demo``: the whole LongRoPE story on one model, in minutes, written to one run folder.

On the embedded tiny Llama (trained at L = 256) and the shipped documents, by default at 8× its
trained length:

1. tokenize the shipped search and held-out documents with the model's tokenizer, one token
   corpus per domain — ``books`` (the PG19 stand-in) and ``maths`` (HOL Light proof scripts, the
   Proof-Pile stand-in) — with pinned roles: the search never sees a held-out document
   (:mod:`longrope.data`);
2. run a LongRoPE evolution search at the target length on windows of the first domain's
   *search* documents (books, as the paper searched on PG19), within a wall-clock and/or
   evaluation budget (:mod:`longrope.search`);
3. perplexity vs context length (1× … 8×, and 16× as a stretch) on windows of each domain's
   *held-out* documents for the unscaled model, PI, NTK, YaRN and the searched factors
   (:mod:`longrope.evaluate`); the first domain is the headline;
4. passkey retrieval at the target length for the same five;
5. write everything into the run folder and return the summary (the CLI prints a table and, as
   its last line, the folder).

Run folder (``runs/demo-<UTC timestamp>`` unless given):

- ``config.json`` — the resolved configuration, model RoPE facts, documents, versions;
- ``summary.json`` — ``target_length``, ``heldout_ppl`` (method → PPL at the target length on the
  headline domain), the ratio of LongRoPE to the best closed-form baseline, the same per domain
  under ``domains``, passkey accuracy, timings;
- ``ppl_vs_length.{json,csv,png}`` (every domain in the JSON/CSV, the headline one in the PNG,
  ``ppl_vs_length_<domain>.png`` for the others), ``passkey.{json,csv,png}`` (+ ``passkey_<method>.png``);
- ``factors.json`` (the searched set) and ``factors_{pi,ntk,yarn}.json``, ``factors.png``;
- ``search_history.jsonl`` (every evaluated candidate), ``table.md`` (the printed table);
- ``tokens/<domain>/`` — the token shards the run used (a few MB).

Windows: each document is one window of ``BOS + length − 1`` tokens (the LongRoPE truncate
protocol). The shipped corpus has few but long books, so several non-overlapping windows are
taken per book (``sample_documents(windows_per_doc=…)``, book order seeded); each length gets its
own windows of exactly that length, so short lengths are not limited to prefixes of long windows.
A length for which the held-out books hold no window is dropped with a note (the target length
itself must fit, else a one-line error).

Everything here composes the other packages' public APIs; this module only decides what to run,
in which order, within which budget, and writes the results.
"""

from __future__ import annotations

import csv
import io
import math
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import write_json, write_text

__all__ = ["DemoConfig", "METHODS", "GOAL_RATIO", "default_lengths", "run_demo", "render_table"]

#: The rows of every table, in order: the model's own RoPE, the closed-form baselines, the search.
METHODS = ("none", "pi", "ntk", "yarn", "longrope")
BASELINE_METHODS = ("pi", "ntk", "yarn")
#: The issue's target: held-out PPL of LongRoPE ≤ GOAL_RATIO × the best of PI, NTK and YaRN.
GOAL_RATIO = 0.90
DEFAULT_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)
#: Domains of the shipped corpus: books (PG19 stand-in), formal maths (Proof-Pile stand-in).
DOMAINS = ("books", "maths")
SUMMARY_FORMAT = "longrope-demo/1"


@dataclass
class DemoConfig:
    """Everything ``longrope demo`` does; validated in ``__post_init__`` (errors name the flag).

    The defaults are sized for the embedded tiny model on 2 CPU cores: the whole run stays well
    under 10 minutes (see ``bench/results/demo.md`` for a measured run).
    """

    model: str = "tiny"
    """"tiny" (embedded), "smollm2", a model folder, a .gguf file or a hub id."""
    target_length: int | None = None
    """L' of the search and of the held-out/passkey headline; default 8 × the model's L."""
    lengths: tuple[int, ...] | None = None
    """Perplexity-vs-length grid; default L, 2L, 4L, … up to the target, then 2 × target (stretch)."""
    budget_seconds: float | None = 420.0
    """Wall-clock budget of the search (None: no time limit). At least one candidate is always
    scored in full, so the search ends with a result even on a tiny budget."""
    max_evals: float | None = 250.0
    """Stop the search after this many full-fidelity evaluations (racing counts fractions);
    None: only the time budget and the strategy's own stopping rule apply. Whichever of this and
    ``budget_seconds`` comes first ends the search: on an idle 2-core machine the evaluation cap
    binds and the run is exactly reproducible; on a slower or busier one the time cap keeps the
    demo under its time limit (and the result depends on how far the search got)."""
    samples: int = 3
    """Held-out windows per length (perplexity); 3 = one per shipped held-out book when they are
    long enough (windows spread over books before a second one is taken from any book)."""
    search_samples: int = 8
    """Search-split windows at the target length the fitness is computed on."""
    passkey_trials: int = 2
    """Seeded keys per depth at the target length."""
    passkey_depths: tuple[float, ...] = DEFAULT_DEPTHS
    seed: int = 0
    """Seeds the document sample, the search and the pass keys."""
    out: str | None = None
    """Run folder; default ``runs/demo-<UTC timestamp>`` under the current directory."""
    device: str = "auto"
    """"auto" (CUDA when available, else CPU), "cpu", "cuda", "cuda:1", …"""
    dtype: str = "float32"
    strategy: str = "steady"
    """Search strategy: "steady" (ours, racing), "paper" (Algorithm 1 as published) or "longrope2"
    (LongRoPE2: critical-dimension space, fitness = NLL of a pass key planted in each search window,
    which rewards keeping retrieval rather than perplexity over all tokens)."""
    progress: bool = True
    """Progress lines with ETA on stderr."""
    domains: tuple[str, ...] = ("books", "maths")
    """Domains of the shipped corpus to report held-out perplexity on: ``books`` (PG19 stand-in)
    and/or ``maths`` (Proof-Pile stand-in). The first is the headline: the search runs on its
    search documents, and ``heldout_ppl`` and the goal are its numbers."""

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise UserError("--model is empty; give 'tiny', 'smollm2', a model folder or a .gguf file")
        if self.target_length is not None and (isinstance(self.target_length, bool) or int(self.target_length) < 2):
            raise UserError(f"--target-length must be an integer >= 2, got {self.target_length!r}")
        if self.lengths is not None:
            self.lengths = tuple(sorted({int(n) for n in self.lengths}))
            if not self.lengths or self.lengths[0] < 2:
                raise UserError(f"--lengths must be integers >= 2, got {list(self.lengths)}")
        if self.budget_seconds is not None and not self.budget_seconds > 0:
            raise UserError(f"--budget-seconds must be > 0, got {self.budget_seconds}")
        if self.max_evals is not None and not self.max_evals > 0:
            raise UserError(f"--max-evals must be > 0, got {self.max_evals}")
        for name, flag in (("samples", "--samples"), ("search_samples", "--search-samples"),
                           ("passkey_trials", "--passkey-trials")):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 0 or (v == 0 and name != "passkey_trials"):
                low = 0 if name == "passkey_trials" else 1
                raise UserError(f"{flag} must be an integer >= {low}, got {v!r}")
        self.passkey_depths = tuple(float(d) for d in self.passkey_depths)
        if not self.passkey_depths or any(not 0.0 <= d <= 1.0 for d in self.passkey_depths):
            raise UserError(f"--passkey-depths must be numbers in [0, 1], got {list(self.passkey_depths)}")
        if self.strategy not in ("steady", "paper", "longrope2"):
            raise UserError(f"--strategy must be steady, paper or longrope2, got {self.strategy!r}")
        self.domains = tuple(dict.fromkeys(str(d).strip() for d in self.domains if str(d).strip()))
        if not self.domains or any(d not in DOMAINS for d in self.domains):
            raise UserError(f"--domains must name some of {', '.join(DOMAINS)}, got {list(self.domains)}")


def default_lengths(original_length: int, target_length: int) -> list[int]:
    """``L, 2L, 4L, …`` (≤ target), the target itself, then ``2 × target`` as the stretch point.

    With the default target 8L this is the issue's grid ``[L, 2L, 4L, 8L, 16L]``.
    """
    out = []
    n = int(original_length)
    while n <= target_length:
        out.append(n)
        n *= 2
    out += [int(target_length), 2 * int(target_length)]
    return sorted(set(out))


# ------------------------------------------------------------------------------------------------
# progress


class _Log:
    """Timestamped progress lines on stderr (stdout is kept for the table and the run folder)."""

    def __init__(self, enabled: bool, sink: Callable[[str], None] | None = None) -> None:
        self.enabled = enabled
        self.sink = sink
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{self.elapsed():7.1f}s] {msg}"
        if self.sink is not None:
            self.sink(line)
        else:
            print(line, file=sys.stderr, flush=True)


def _eta(seconds: float) -> str:
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


class _Budget:
    """Wraps a search strategy so that it stops proposing work when the demo's budget is spent.

    The search package bounds a run by candidates and patience; the demo also needs wall-clock
    time and a full-evaluation count. This proxy refuses to ``ask`` once either is used up —
    but never before one candidate has been scored on every document, so a result always exists.
    Everything else (state, progress, stop reason) is the wrapped strategy's.
    """

    def __init__(self, inner: Any, *, deadline: float | None, max_evals: float | None, budget_seconds: float | None):
        self._inner = inner
        self._deadline = deadline
        self._max_evals = max_evals
        self._budget_seconds = budget_seconds

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    def _spent(self) -> str | None:
        arc = self._inner.archive
        if arc.best() is None:
            return None
        if self._deadline is not None and time.perf_counter() >= self._deadline:
            return f"used the time budget of {self._budget_seconds:g} s"
        if self._max_evals is not None and arc.n_doc_evals() / arc.n_docs >= self._max_evals:
            return f"used the budget of {self._max_evals:g} full evaluations"
        return None

    def ask(self, rng: np.random.Generator, n_pending: int) -> Any:
        reason = self._spent()
        if reason is not None:
            if n_pending == 0 and not self._inner.finished:
                self._inner.finished, self._inner.stop_reason = True, reason
            return None
        return self._inner.ask(rng, n_pending)


# ------------------------------------------------------------------------------------------------
# documents


def _windows(corpus: Any, length: int, n: int, *, split: str, seed: int) -> list:
    """Up to ``n`` non-overlapping windows of ``length − 1`` tokens (BOS is prepended at
    evaluation), spread over the books of ``split``: the fewest windows per book that yield ``n``.

    ``sample_documents`` takes up to ``windows_per_doc`` windows from each book in a seeded order;
    starting from ``ceil(n / books)`` and raising it only when short books cannot supply their
    share keeps the sample spread over as many books as possible.
    """
    from longrope.data import document_roles, sample_documents

    need = length - 1
    roles = document_roles(corpus)
    lengths = np.asarray(corpus.lengths)
    eligible = [i for i, r in enumerate(roles) if r == split and lengths[i] >= need]
    if not eligible:
        return []
    per = max(1, math.ceil(n / len(eligible)))
    while True:
        docs = sample_documents(corpus, need, n, seed=seed, split=split, windows_per_doc=per)
        if len(docs) >= n or per >= n:
            return docs
        per += 1


# ------------------------------------------------------------------------------------------------
# outputs


def _finite(obj: Any) -> Any:
    """JSON-safe copy: non-finite floats become None (strict JSON has no NaN/Infinity)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    if isinstance(obj, np.generic):
        return _finite(obj.item())
    return obj


def _csv_text(rows: list[dict], fields: Sequence[str]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(fields), extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow(r)
    return buf.getvalue()


def _new_run_dir(out: str | None) -> Path:
    if out is not None:
        path = Path(out)
        if path.exists() and (not path.is_dir() or any(path.iterdir())):
            raise UserError(f"--out {path} already exists and is not an empty folder; choose a new one")
        path.mkdir(parents=True, exist_ok=True)
        return path
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = Path("runs") / f"demo-{stamp}"
    path, k = base, 1
    while path.exists():
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    path.mkdir(parents=True)
    return path


def _resolve_device(device: str) -> str:
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    from longrope.models import resolve_device

    return str(resolve_device(device))


# ------------------------------------------------------------------------------------------------
# the run


def run_demo(config: DemoConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the demo described by ``config``; returns the summary (also in ``summary.json``).

    ``log`` receives the progress lines (default: stderr when ``config.progress``).
    """
    say = _Log(config.progress or log is not None, log)
    t_start = time.perf_counter()
    seconds: dict[str, float] = {}

    from longrope.models.loading import read_rope_info

    info = read_rope_info(config.model)
    if not info.supported:
        raise UserError(f"cannot run the demo on {config.model}: {info.reason}")
    L = int(info.original_max_position_embeddings)
    target = int(config.target_length) if config.target_length is not None else 8 * L
    if target <= L:
        raise UserError(f"--target-length {target} must exceed the model's original context {L}")
    lengths = list(config.lengths) if config.lengths is not None else default_lengths(L, target)
    if target not in lengths:
        lengths = sorted({*lengths, target})
    device = _resolve_device(config.device)
    out = _new_run_dir(config.out)
    say(f"demo: {config.model} (L = {L}, rotary dim {info.rotary_dim}, theta {info.rope_theta:g}) → "
        f"{target} tokens ({target / L:g}×) on {device}; run folder {out}")

    # 1. model and tokens ----------------------------------------------------------------------
    t = time.perf_counter()
    from longrope.models import install_factors, load_model
    from longrope.search.objective import resolve_bos

    say(f"loading {config.model} ({config.dtype})")
    model, tokenizer = load_model(config.model, dtype=config.dtype, device=device)
    if tokenizer is None:
        raise UserError(f"{config.model} has no tokenizer; the demo tokenizes the shipped books, give a model "
                        f"folder with tokenizer files")
    bos_id = resolve_bos(model, tokenizer)
    seconds["load"] = time.perf_counter() - t

    t = time.perf_counter()
    from longrope.data import TokenCorpus, tokenize_corpus
    from longrope.embedded import document_paths, load_split

    split = load_split()
    tokens_dir = out / "tokens"
    corpora: dict[str, Any] = {}
    for dom in config.domains:
        specs = [f"{role}={path}" for role in ("search", "heldout") for path in document_paths(role, dom)]
        if not document_paths("heldout", dom):
            raise UserError(f"the shipped corpus has no held-out {dom} documents; drop {dom} from --domains")
        tokenize_corpus(tokenizer, specs, tokens_dir / dom, tokenizer_name=config.model, progress=False)
        corpora[dom] = TokenCorpus.open(tokens_dir / dom)
    seconds["tokenize"] = time.perf_counter() - t
    main = config.domains[0]
    say("tokenized the shipped documents: " + "; ".join(
        f"{dom} {len(c)} documents, {c.n_tokens} tokens" for dom, c in corpora.items())
        + f" (search: {', '.join(p.stem for p in document_paths('search', main))}; held-out: "
        + ", ".join(p.stem for dom in config.domains for p in document_paths("heldout", dom)) + ")")

    search_docs = _windows(corpora[main], target, config.search_samples, split="search", seed=config.seed)
    if not search_docs:
        raise UserError(f"the shipped {main} search documents hold no window of {target} tokens with this "
                        f"tokenizer; lower --target-length")
    notes: list[str] = []
    domain_docs: dict[str, dict[int, list]] = {}
    for dom, corpus in corpora.items():
        docs_by_len: dict[int, list] = {}
        for n in lengths:
            docs = _windows(corpus, n, config.samples, split="heldout", seed=config.seed)
            if not docs:
                if n == target and dom == main:
                    raise UserError(f"the shipped held-out {dom} documents hold no window of {target} tokens with "
                                    f"this tokenizer; lower --target-length")
                notes.append(f"{dom}: length {n} dropped: no held-out document has {n - 1} tokens")
                continue
            if len(docs) < config.samples:
                notes.append(f"{dom}: length {n}: only {len(docs)} held-out window(s) (of {config.samples} asked)")
            docs_by_len[n] = docs
        domain_docs[dom] = docs_by_len
    heldout_docs = domain_docs[main]
    lengths = sorted(heldout_docs)
    if len(search_docs) < config.search_samples:
        notes.append(f"search: only {len(search_docs)} window(s) of {target} tokens (of {config.search_samples} asked)")
    for note in notes:
        say(f"note: {note}")

    # 2. search ----------------------------------------------------------------------------------
    from longrope.search import Archive, InProcessEvaluator, SearchLoop, StrategyConfig, make_strategy
    from longrope.search.job import SearchJob, plan, plot_factors
    from longrope.search.objective import PerplexityObjective

    # Sized for a short run: fewer parents than the paper's 32, and racing against the 4th best
    # (not the worst parent), so that a child that loses on its first window costs one window
    # instead of all of them. Patience 250 (not the default 82): on the tiny model the search
    # improves in bursts after long plateaus; stopping at the first plateau left 0.90× YaRN where
    # the full 656-candidate budget reaches 0.88× (bench/results/demo.md).
    strategy_config = StrategyConfig(population=16, parents=8, mutations=8, crossovers=8, iterations=40, initial=16,
                                     race_rank=4, patience=250)
    job = SearchJob(model=config.model, data=str(tokens_dir / main), output=str(out), target_length=target,
                    strategy=config.strategy, seed=config.seed, samples=len(search_docs), config=strategy_config,
                    device=device, dtype=config.dtype, progress=config.progress)
    p = plan(job)
    for m in BASELINE_METHODS:
        p.baselines[m].save(out / f"factors_{m}.json")

    write_json(out / "config.json", _finite({
        "command": "longrope demo",
        "argv": sys.argv,
        "resolved": {**asdict(config), "target_length": target, "lengths": lengths, "device": device,
                     "out": str(out)},
        "model": {"name": config.model, "rope": info.to_dict(), "bos_id": bos_id,
                  "source": getattr(model, "_longrope_source", None)},
        "corpus": {"split": split["roles"], "domains": list(config.domains), "tokens_dir": str(tokens_dir),
                   "n_tokens": {dom: c.n_tokens for dom, c in corpora.items()}},
        "documents": {
            "protocol": "truncate: BOS + length-1 tokens per window; non-overlapping windows per book, book order "
                        "seeded (longrope.data.sample_documents)",
            "search": {"length": target, "ids": [d.doc_id for d in search_docs]},
            "heldout": {dom: {str(n): [d.doc_id for d in docs] for n, docs in by_len.items()}
                        for dom, by_len in domain_docs.items()},
        },
        "search": {"strategy": config.strategy, "knobs": strategy_config.to_dict(), "space": p.space.to_dict(),
                   "seeds": [g.to_json() for g in p.seeds], "budget_seconds": config.budget_seconds,
                   "max_evals": config.max_evals},
        "passkey": {"length": target, "depths": list(config.passkey_depths), "trials": config.passkey_trials,
                    "mode": "generate"},
        "notes": notes,
        "versions": _versions(),
    }))

    t = time.perf_counter()
    patch = install_factors(model, p.baselines["pi"])
    if job.fitness == "needle":
        from longrope.search.objective import NeedleObjective

        objective = NeedleObjective(model, patch, p.mapper, search_docs, target, bos_id, tokenizer, config.seed)
    else:
        objective = PerplexityObjective(model, patch, p.mapper, search_docs, target, bos_id)
    archive = Archive(len(search_docs))
    deadline = t + config.budget_seconds if config.budget_seconds is not None else None
    strategy = _Budget(make_strategy(job.loop_strategy, p.space, archive, strategy_config), deadline=deadline,
                       max_evals=config.max_evals, budget_seconds=config.budget_seconds)
    last = [0.0]

    def on_search(pr: Any) -> None:
        now = time.perf_counter()
        if now - last[0] < 5.0:
            return
        last[0] = now
        eta = f", ETA {_eta(deadline - now)}" if deadline is not None else ""
        say(f"search: {pr.done} candidates, {pr.full_evals:.1f} full evaluations, best search ppl "
            f"{pr.best_ppl:.4g}{eta}")

    budget_txt = " and ".join(x for x in (
        f"{config.budget_seconds:g} s" if config.budget_seconds is not None else "",
        f"{config.max_evals:g} full evaluations" if config.max_evals is not None else "") if x) or "no limit"
    say(f"search ({config.strategy}): {len(p.seeds)} seeds, {len(search_docs)} search windows of {target} tokens, "
        f"budget {budget_txt}")
    loop = SearchLoop(p.space, strategy, InProcessEvaluator(objective), seed=config.seed,
                      history_path=out / "search_history.jsonl", on_progress=on_search)
    result = loop.run(p.seeds)
    seconds["search"] = time.perf_counter() - t
    say(f"search: best search ppl {result.ppl:.4f} (n̂ = {result.start_tokens}, "
        f"attention factor {_fmt(getattr(result, 'attention_factor', None), '.4g')}) after {result.n_candidates} "
        f"candidates, {result.full_evals:.1f} full evaluations, {seconds['search']:.0f} s ({result.stop_reason})")
    best = p.mapper.factor_set(result.factors, result.start_tokens, provenance={"demo": {
        "model": config.model, "strategy": config.strategy, "seed": config.seed, "target_length": target,
        "search_docs": [d.doc_id for d in search_docs], "best_search_ppl": result.ppl,
        "candidates": result.n_candidates, "full_evals": result.full_evals, "seconds": result.seconds,
        "stop_reason": result.stop_reason}}, attention_factor=getattr(result, "attention_factor", None))
    best.save(out / "factors.json")
    plot_factors(out / "factors.png", best, p, job)
    # Put the model's own RoPE back: the evaluation suites install and swap on their own, and their
    # "none" row means "no patch active", which would otherwise still be the last search candidate.
    patch.restore()
    # Throughput of this model here, for the ETAs below (forward passes dominate everything).
    rate = archive.n_doc_evals() * target / max(seconds["search"], 1e-9)  # tokens / s

    sets = [("none", None), *[(m, p.baselines[m]) for m in BASELINE_METHODS], ("longrope", best)]

    # 3. perplexity vs length ------------------------------------------------------------------
    from longrope.evaluate.suite import PPL_CSV_FIELDS, passkey_suite, ppl_suite, write_passkey_outputs

    t = time.perf_counter()
    total = sum(len(sets) * len(docs) * n for by_len in domain_docs.values() for n, docs in by_len.items())
    done = [0.0]
    say(f"held-out perplexity ({', '.join(config.domains)}): {len(sets)} methods × lengths "
        f"{', '.join(map(str, lengths))}, {config.samples} window(s) each; estimated {_eta(total / rate)}")
    rows: list[dict] = []
    tables: dict[str, dict[str, dict[int, float]]] = {}
    for dom, by_len in domain_docs.items():
        table: dict[str, dict[int, float]] = {name: {} for name, _ in sets}
        for n, docs in by_len.items():
            def on_ppl(line: str, n: int = n, k: int = len(docs), dom: str = dom) -> None:
                done[0] += k * n
                elapsed = time.perf_counter() - t
                eta = (total - done[0]) * elapsed / done[0] if done[0] else float("nan")
                say(f"ppl [{dom}] {line}  [ETA {_eta(eta)}]")

            for name, r in ppl_suite(model, docs, sets, [n], bos_id=bos_id, log=on_ppl):
                table[name][r.length] = r.ppl
                rows.append({"domain": dom, **r.to_dict(), "factors": name})
        tables[dom] = table
    seconds["ppl"] = time.perf_counter() - t
    ppl_table = tables[main]
    write_json(out / "ppl_vs_length.json", _finite({
        "protocol": "truncate (BOS + length-1 tokens per window), token-weighted",
        "original_length": L, "target_length": target, "domains": list(config.domains), "results": rows}))
    write_text(out / "ppl_vs_length.csv", _csv_text(rows, ("domain", *PPL_CSV_FIELDS)))
    from longrope.evaluate.plots import plot_passkey_methods, plot_ppl_vs_length

    for dom, table in tables.items():
        name = "ppl_vs_length.png" if dom == main else f"ppl_vs_length_{dom}.png"
        plot_ppl_vs_length({m: sorted(v.items()) for m, v in table.items()}, out / name, original_length=L,
                           title=f"{config.model}: held-out {dom} perplexity vs length (L' = {target})")

    # 4. passkey ---------------------------------------------------------------------------------
    t = time.perf_counter()
    passkey: dict[str, float | None] = {}
    pk_rows: list[dict] = []
    if config.passkey_trials > 0:
        n_depths = len(config.passkey_depths)
        n_cells = len(sets) * n_depths
        cells_done = [0]
        est = n_cells * config.passkey_trials * (target + 8) / rate
        say(f"passkey at {target}: {len(sets)} methods × {n_depths} depths × "
            f"{config.passkey_trials} trial(s); estimated {_eta(est)}")

        def on_pk(line: str) -> None:
            # passkey_suite reports a method's cells together once it is done: ETA per method.
            cells_done[0] += 1
            tail = ""
            if cells_done[0] % n_depths == 0:
                elapsed = time.perf_counter() - t
                tail = f"  [ETA {_eta((n_cells - cells_done[0]) * elapsed / cells_done[0])}]"
            say(f"passkey {line}{tail}")

        pk_results = passkey_suite(model, tokenizer, sets, [target], depths=config.passkey_depths,
                                   trials=config.passkey_trials, seed=config.seed, bos_id=bos_id, mode="generate",
                                   log=on_pk)
        write_passkey_outputs(out, pk_results, {"model": config.model, "length": target, "seed": config.seed,
                                                "depths": list(config.passkey_depths),
                                                "trials": config.passkey_trials})
        for name, r in pk_results:
            passkey[name] = r.accuracy
            pk_rows += [{"factors": name, **c} for c in r.cells()]
        plot_passkey_methods(pk_rows, out / "passkey.png", length=target, methods=[n for n, _ in sets])
    seconds["passkey"] = time.perf_counter() - t

    # 5. summary ---------------------------------------------------------------------------------
    per_domain = {}
    for dom, table in tables.items():
        if not all(target in table[name] for name, _ in sets):
            continue  # this domain's held-out documents hold no window of the target length (noted)
        at = {name: table[name][target] for name, _ in sets}
        base = min(BASELINE_METHODS, key=lambda m: at[m] if math.isfinite(at[m]) else math.inf)
        per_domain[dom] = {
            "heldout_ppl": at, "heldout_windows": len(domain_docs[dom][target]), "best_baseline": base,
            "longrope_vs_best_baseline": at["longrope"] / at[base] if at[base] > 0 else float("nan"),
            "ppl_vs_length": {name: {str(n): v for n, v in sorted(row.items())} for name, row in table.items()},
        }
    heldout = per_domain[main]["heldout_ppl"]
    best_base = per_domain[main]["best_baseline"]
    ratio = per_domain[main]["longrope_vs_best_baseline"]
    seconds["total"] = time.perf_counter() - t_start
    summary = _finite({
        "format": SUMMARY_FORMAT,
        "model": config.model,
        "original_length": L,
        "target_length": target,
        "scale": target / L,
        "lengths": lengths,
        "domain": main,
        "heldout_ppl": heldout,
        "heldout_windows": len(heldout_docs[target]),
        "best_baseline": best_base,
        "longrope_vs_best_baseline": ratio,
        "goal": {"ratio": GOAL_RATIO, "met": bool(ratio <= GOAL_RATIO),
                 "statement": f"held-out PPL at {target}: longrope <= {GOAL_RATIO} x best of pi, ntk, yarn"},
        "ppl_vs_length": {name: {str(n): v for n, v in sorted(row.items())} for name, row in ppl_table.items()},
        "domains": per_domain,
        "passkey_length": target,
        "passkey_accuracy": passkey,
        "search": {"strategy": config.strategy, "fitness": job.fitness, "best_search_ppl": result.ppl,
                   "start_tokens": result.start_tokens,
                   "attention_factor": best.resolved_attention_factor(),
                   "candidates": result.n_candidates, "full_evals": result.full_evals,
                   "doc_evals": result.n_doc_evals, "search_windows": len(search_docs),
                   "stop_reason": result.stop_reason, "seconds": result.seconds},
        "notes": notes,
        "seconds": seconds,
        "run_dir": str(out),
    })
    write_text(out / "table.md", render_table(summary) + "\n")
    write_json(out / "summary.json", summary)
    say(f"done in {_eta(seconds['total'])} (min:s)")
    return summary


def _versions() -> dict:
    import torch
    import transformers

    import longrope

    return {"longrope": getattr(longrope, "__version__", None), "python": platform.python_version(),
            "torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "platform": platform.platform(), "threads": torch.get_num_threads()}


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float) and abs(x) >= 1e5:
        return f"{x:.3g}"
    return format(x, spec)


def render_table(summary: dict) -> str:
    """The demo's result as a Markdown table (what the CLI prints and ``table.md`` holds)."""
    target = summary["target_length"]
    lengths = [int(n) for n in summary["lengths"]]
    L = summary["original_length"]
    head = ["method"] + [f"{n}{' (target)' if n == target else ''}" for n in lengths]
    if summary.get("passkey_accuracy"):
        head.append(f"passkey@{target}")
    lines = [
        f"Held-out {summary.get('domain', 'books')} perplexity of {summary['model']} (trained at L = {L}) by context length; "
        f"{summary['heldout_windows']} held-out window(s) at the target, truncate protocol, token-weighted.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for m, row in summary["ppl_vs_length"].items():
        cells = [m] + [_fmt(row.get(str(n))) for n in lengths]
        if summary.get("passkey_accuracy"):
            cells.append(_fmt(summary["passkey_accuracy"].get(m)))
        lines.append("| " + " | ".join(cells) + " |")
    ratio = summary["longrope_vs_best_baseline"]
    goal = summary["goal"]
    s = summary["search"]
    for dom, d in summary.get("domains", {}).items():
        if dom == summary.get("domain"):
            continue
        lines += ["", f"Held-out {dom} perplexity (same factors; {d['heldout_windows']} window(s) at the target):", "",
                  "| " + " | ".join(head[: 1 + len(lengths)]) + " |", "|" + "---|" * (1 + len(lengths))]
        for m, row in d["ppl_vs_length"].items():
            lines.append("| " + " | ".join([m] + [_fmt(row.get(str(n))) for n in lengths]) + " |")
        lines.append(f"{dom}: LongRoPE / best baseline ({d['best_baseline']}) at {target}: "
                     f"{_fmt(d['longrope_vs_best_baseline'], '.3f')}")
    lines += [
        "",
        f"LongRoPE / best baseline ({summary['best_baseline']}) at {target}: {_fmt(ratio, '.3f')} "
        f"(goal ≤ {goal['ratio']:.2f}: {'met' if goal['met'] else 'NOT met'})",
        f"Search ({s['strategy']}): {s['candidates']} candidates, {_fmt(s['full_evals'], '.1f')} full evaluations on "
        f"{s['search_windows']} search window(s), {_fmt(s['seconds'], '.0f')} s ({s['stop_reason']}); "
        f"n̂ = {s['start_tokens']}, attention factor {_fmt(s.get('attention_factor'), '.4g')}; whole run {_fmt(summary['seconds']['total'], '.0f')} s.",
    ]
    return "\n".join(lines)

