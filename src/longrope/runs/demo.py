"""``longrope demo``: the whole LongRoPE story on one model, in minutes, in one run folder.

On the embedded tiny Llama (trained at L = 256) and the shipped documents, by default at 8× its
trained length:

1. tokenize the shipped search and held-out documents with the model's tokenizer, one shard
   folder per domain — ``books`` (the PG19 stand-in) and ``maths`` (HOL Light proof scripts, the
   Proof-Pile stand-in) — with pinned roles: the search never sees a held-out document;
2. a LongRoPE evolution search at the target length on windows of every domain's *search*
   documents (interleaved, so no domain is fitted alone), scored by the joint fitness — document
   perplexity plus the answer loss of a pass key planted in each window — and ended by the strategy
   or by the time / evaluation budget;
3. perplexity vs context length (1× … 8×, and 16× as a stretch) on windows of each domain's
   *held-out* documents for the unscaled model, PI, NTK, YaRN and the searched factors;
4. passkey retrieval at the target length for the same five: 8 keys per depth, greedy accuracy with
   its 95 % interval and the teacher-forced answer NLL of the same keys;
5. the summary, with one verdict line per method against the best closed form (the CLI prints a
   table and, as its last line, the run folder).

Windows (``longrope.evaluate.windows.select_windows``): BOS + length − 1 tokens each, spread over
as many books as possible; every length gets its own windows. A length the held-out books cannot
fill is dropped with a note (the target itself must fit, else a one-line error).

Run folder (``runs/demo-<UTC timestamp>`` unless given; it appears when the demo finishes):
``config.json``, ``run.json`` (with the documents and notes), ``summary.json`` (``heldout_ppl`` at
the target on the headline domain, the ratio to the best baseline, per-domain numbers under
``domains``, passkey accuracy, timings), ``table.md``, ``ppl_vs_length.{json,csv,png}``
(+ ``ppl_vs_length_<domain>.png``), ``passkey.{json,csv,png}`` (+ ``passkey_<method>.png``),
``factors.json`` (searched), ``factors_{pi,ntk,yarn}.json``, ``factors.png``,
``search_history.jsonl``, and ``tokens/<domain>/`` (the shards used).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from longrope.embedded.corpus import DOMAINS
from longrope.errors import ConfigError
from longrope.groups import (
    check_groups,
    depths_option,
    device_option,
    dtype_option,
    resolve_lengths,
    run_device,
    samples_option,
    seed_option,
    trials_option,
)
from longrope.options import (
    MAX_TOKENS,
    check_int,
    config_to_dict,
    nested,
    option,
    output_option,
    renamed_keys,
)
from longrope.runs import RunSpec
from longrope.runs.search import fitness_option, recorded_config, resolve_fitness, retrieval_weight_option
from longrope.search.plan import BASELINE_NAMES, STRATEGY_NAMES
from longrope.search.strategies import StrategyConfig, search_strategy
from longrope.settings import check_budget

__all__ = ["DemoConfig", "METHODS", "GOAL_RATIO", "default_lengths", "run", "render_table", "SPEC"]

#: The rows of every table, in order: the model's own RoPE, the closed-form baselines, the search.
METHODS = ("none", *BASELINE_NAMES, "longrope")
#: The goal: held-out PPL of LongRoPE ≤ GOAL_RATIO × the best of PI, NTK and YaRN.
GOAL_RATIO = 0.90
#: Windows per length and domain (held-out) and search windows at the target: the demo's sizing of the shared
#: ``samples`` setting (``longrope.settings.WINDOW_SAMPLES`` elsewhere), for 2 CPU cores in minutes.
DEMO_SAMPLES = 8
#: Settings renamed since earlier demos recorded them: {old key: today's}.
RENAMED = {"budget_seconds": "max_seconds"}
SUMMARY_FORMAT = "longrope-demo/1"


def _demo_knobs() -> StrategyConfig:
    # Sized for a short run: fewer parents than the paper's 32, and racing against the 4th best (not
    # the worst parent), so a child that loses on its first window costs one window instead of all.
    # Patience 250: on the tiny model the search improves in bursts after long plateaus; stopping at
    # the first plateau left 0.90× YaRN where the full budget reaches 0.88× (bench/results/demo.md).
    return StrategyConfig(population=16, parents=8, mutations=8, crossovers=8, iterations=40, initial=16,
                          race_rank=4, patience=250)


#: the demo's search budget unless told: seconds, and full evaluations (on an idle 2-core machine the latter binds)
DEMO_MAX_SECONDS = 330.0
DEMO_MAX_EVALS = 150.0


@dataclass
class DemoConfig:
    """Everything ``longrope demo`` does. Sized for the embedded model on 2 CPU cores: the whole run
    stays well under 10 minutes (``bench/results/demo.md``)."""

    model: str = option("tiny", '"tiny" (embedded), "smollm2", a model folder or .gguf', path=True)
    target_length: int | None = option(None, "target context L' of the search and the headline: 2048, 2k or 8x",
                                       default_text="8x, 8 times the model's trained length", metavar="N",
                                       length=True)
    lengths: tuple[int, ...] | None = option(None, "perplexity-vs-length grid: 256,2k,4x ...", length=True,
                                             metavar="N,N", default_text="L, 2L, ... up to the target, then 2 x target")
    max_seconds: float | None = option(DEMO_MAX_SECONDS, "wall-clock budget of the search in seconds (0: no limit); "
                                                         "at least one candidate is always scored in full", metavar="S",
                                       default_text=f"{DEMO_MAX_SECONDS:g}",
                                       aliases=("--budget-seconds",))
    max_evals: float | None = option(DEMO_MAX_EVALS, "stop the search after this many full-fidelity evaluations, "
                                            "whichever of this and --max-seconds comes first (0: no limit); "
                                            "on an idle 2-core machine this cap binds and the run is reproducible",
                                     metavar="N", default_text=f"{DEMO_MAX_EVALS:g}")
    samples: int = samples_option("held-out windows per length and domain (perplexity)", default=DEMO_SAMPLES)
    search_samples: int = samples_option("search windows at the target length the fitness is computed on, shared "
                                         "out over the domains", default=DEMO_SAMPLES)
    passkey_trials: int = trials_option("keys per depth at the target length (0 = skip the passkey test)",
                                        skip_zero=True)
    passkey_depths: tuple[float, ...] = depths_option()
    strategy: str = option("steady", "search strategy; longrope2 scores candidates by the NLL of a pass key "
                                     "planted in each search window", choices=STRATEGY_NAMES)
    fitness: str | None = fitness_option("joint; needle for longrope2")
    retrieval_weight: float | None = retrieval_weight_option()
    critical_floor: bool = option(False, "install λ_i >= s for every pair from LongRoPE2's critical pair on "
                                         "(not with --strategy longrope2, which has its own)")
    knobs: StrategyConfig = nested(_demo_knobs, "the search's knobs (sized for the demo)")
    domains: tuple[str, ...] = option(DOMAINS, "domains searched on and reported: books (PG19 stand-in), maths "
                                               "(Proof-Pile stand-in); the first is the headline",
                                      metavar="D,D")
    seed: int = seed_option("seed of the windows, the search and the keys")
    output: str | None = output_option("run folder", metavar="DIR", default=None,
                                       default_text="runs/demo-<UTC timestamp>")
    device: str = device_option()
    dtype: str = dtype_option()
    attn_implementation: str | None = option(None, "attention implementation (sdpa, eager, ...)",
                                             default_text="the family's working one")
    quiet: bool = option(False, "no progress lines on stderr")

    def __post_init__(self) -> None:
        if not str(self.model).strip():
            raise ConfigError("model", "{name} is empty; give 'tiny', 'smollm2', a model folder or a .gguf file")
        for name in ("max_seconds", "max_evals"):  # first: the budget's own message says what 0 means
            setattr(self, name, check_budget(getattr(self, name), name))
        resolve_lengths(self)
        check_groups(self)
        check_int(self, "target_length", 2, MAX_TOKENS, optional=True)
        if self.lengths is not None:
            self.lengths = tuple(sorted({int(n) for n in self.lengths}))
            if not self.lengths or self.lengths[0] < 2:
                raise ConfigError("lengths", "{name} must be integers >= 2, got " + str(list(self.lengths)))
        self.domains = tuple(dict.fromkeys(str(d).strip() for d in self.domains if str(d).strip()))
        if not self.domains or any(d not in DOMAINS for d in self.domains):
            raise ConfigError("domains", "{name} must name some of " + f"{', '.join(DOMAINS)}, got {list(self.domains)}")
        if self.critical_floor and search_strategy(self.strategy).space == "critical":
            raise ConfigError(("critical_floor", "strategy"), "{name0} does not combine with {name1} longrope2 (it "
                                                              "has its own floor)")
        resolve_fitness(self, "long")


def recorded_demo(saved: dict) -> dict:
    """A recorded demo configuration in today's terms: ``budget_seconds`` is ``max_seconds`` (one spelling of a
    time budget in every command; 0 or null meant no limit then as now), and an unset fitness as
    :func:`longrope.runs.search.recorded_config` reads it."""
    return recorded_config(renamed_keys(saved, RENAMED))


def default_lengths(original_length: int, target_length: int) -> list[int]:
    """``L, 2L, 4L, …`` (≤ target), the target itself, then ``2 × target`` as the stretch point."""
    out, n = [], int(original_length)
    while n <= target_length:
        out.append(n)
        n *= 2
    return sorted({*out, int(target_length), 2 * int(target_length)})


@dataclass
class _Ctx:
    """What the steps of one demo share."""

    config: DemoConfig
    say: Any
    folder: Any
    L: int
    target: int
    lengths: list[int]
    device: str
    seconds: dict
    notes: list


def run(config: DemoConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run the demo; returns the summary (also in ``summary.json``)."""
    from longrope.options import require_config

    require_config(config, DemoConfig, "longrope.runs.demo.run")
    from longrope.runs.progress import Log

    ctx = _setup(config, Log(not config.quiet, log))
    try:
        model, tokenizer, bos = _step("load", ctx, _load_model)
        corpora = _step("tokenize", ctx, _tokenize, tokenizer)
        search_docs, heldout = _select_windows(ctx, corpora)
        ctx.folder.start(config_to_dict(config), device=ctx.device, extra=_record(ctx, search_docs, heldout, bos))
        best, search = _step("search", ctx, _search, model, tokenizer, bos, search_docs)
        sets = [("none", None), *[(m, search["plan"].baselines[m]) for m in BASELINE_NAMES], ("longrope", best)]
        tables = _step("ppl", ctx, _perplexity, model, bos, sets, heldout, search["rate"])
        passkey = _step("passkey", ctx, _passkey, model, tokenizer, bos, sets, search["rate"])
        summary = _summary(ctx, tables, heldout, passkey, search)
        from longrope.io import write_text

        write_text(ctx.folder / "table.md", render_table(summary) + "\n")
        ctx.folder.finish(summary)
    except BaseException:
        ctx.folder.abandon()
        raise
    ctx.say(f"done in {summary['seconds']['total']:.0f} s")
    return summary


# ------------------------------------------------------------------------------------------------
# the steps


def _step(name: str, ctx: _Ctx, fn: Callable, *args: Any) -> Any:
    t = time.perf_counter()
    out = fn(ctx, *args)
    ctx.seconds[name] = time.perf_counter() - t
    return out


def _setup(config: DemoConfig, say: Any) -> _Ctx:
    from longrope.models.loading import read_rope_info
    from longrope.runs.folder import RunFolder

    info = read_rope_info(config.model)
    if not info.supported:
        raise ConfigError("model", f"cannot run the demo on {{name}} {config.model}: {info.reason}")
    L = int(info.original_max_position_embeddings)
    target = int(config.target_length) if config.target_length is not None else 8 * L
    if target <= L:
        raise ConfigError("target_length", f"{{name}} {target} must exceed the model's original context {L}")
    lengths = sorted({*(config.lengths or default_lengths(L, target)), target})
    _check_tokenizer(config, target)
    device = run_device(config.device)
    out = config.output or _default_folder()
    folder = RunFolder.open(out, SPEC.command, staged=True)
    say(f"demo: {config.model} (L = {L}, rotary dim {info.rotary_dim}, theta {info.rope_theta:g}) → {target} tokens "
        f"({target / L:g}×) on {device}; run folder {out}")
    from longrope.runs.evaluate import none_note

    # the row 'none' of a model with its own scaling is that scaling, said as eval says it (and kept in the notes)
    notes = [note] if (note := none_note(config.model, info)) is not None else []
    return _Ctx(config, say, folder, L, target, lengths, device, {"started": time.perf_counter()}, notes)


def _check_tokenizer(config: DemoConfig, target: int) -> None:
    """The demo tokenizes the shipped books and plants pass keys: a model without tokenizer files is refused with
    the tokenizer alone, before its weights load (and the fitness's prompt must fit the target)."""
    from longrope.models.loading import load_tokenizer_of
    from longrope.runs.search import check_fitness_fits

    if load_tokenizer_of(config.model) is None:
        raise ConfigError("model", "{name} " + f"{config.model} has no tokenizer; the demo tokenizes the shipped "
                                               "books, give a model folder with tokenizer files")
    check_fitness_fits(config.model, config.fitness, target, config.seed)


def _load_model(ctx: _Ctx):
    from longrope.evaluate.windows import resolve_bos
    from longrope.models import load_model

    c = ctx.config
    ctx.say(f"loading {c.model} ({c.dtype})")
    model, tokenizer = load_model(c.model, dtype=c.dtype, device=ctx.device, attn_implementation=c.attn_implementation)
    if tokenizer is None:
        raise ConfigError("model", "{name} " + f"{c.model} has no tokenizer; the demo tokenizes the shipped books, "
                                               "give a model folder with tokenizer files")
    return model, tokenizer, resolve_bos(tokenizer, model=model)


def _tokenize(ctx: _Ctx, tokenizer: Any) -> dict:
    """One shard folder per domain of the shipped corpus (roles pinned by the shipped split)."""
    from longrope.data import TokenCorpus, tokenize_corpus
    from longrope.embedded import document_paths

    corpora = {}
    for dom in ctx.config.domains:
        if not document_paths("heldout", dom):
            raise ConfigError("domains", f"the shipped corpus has no held-out {dom} documents; drop {dom} from {{name}}")
        specs = [f"{role}={path}" for role in ("search", "heldout") for path in document_paths(role, dom)]
        tokenize_corpus(tokenizer, specs, ctx.folder / "tokens" / dom, tokenizer_name=ctx.config.model, progress=False)
        corpora[dom] = TokenCorpus.open(ctx.folder / "tokens" / dom)
    ctx.say("tokenized the shipped documents: " + "; ".join(
        f"{dom} {len(c)} documents, {c.n_tokens} tokens" for dom, c in corpora.items()))
    return corpora


def _select_windows(ctx: _Ctx, corpora: dict) -> tuple[list, dict]:
    """Search windows at the target from every domain (shared out, then interleaved) and held-out windows
    per domain and length."""
    from longrope.evaluate.windows import select_windows, windows_across

    c, main = ctx.config, ctx.config.domains[0]
    search, got = windows_across({d: corpora[d] for d in c.domains}, ctx.target, c.search_samples, split="search",
                                 seed=c.seed)
    if len(search) < c.search_samples:
        ctx.notes.append(f"search: only {len(search)} window(s) of {ctx.target} tokens (of {c.search_samples} asked: "
                         + ", ".join(f"{d} {k}" for d, k in got.items()) + ")")
    if not search:
        raise ConfigError("target_length", f"the shipped search documents hold no window of {ctx.target} "
                                           "tokens with this tokenizer; lower {name}")
    heldout: dict[str, dict[int, list]] = {}
    for dom, corpus in corpora.items():
        heldout[dom] = {}
        for n in ctx.lengths:
            docs = select_windows(corpus, n, c.samples, split="heldout", seed=c.seed, windows_per_doc=None)
            if not docs and n == ctx.target and dom == main:
                raise ConfigError("target_length", f"the shipped held-out {dom} documents hold no window of "
                                                   f"{ctx.target} tokens with this tokenizer; lower {{name}}")
            if not docs:
                ctx.notes.append(f"{dom}: length {n} dropped: no held-out document has {n - 1} tokens")
                continue
            if len(docs) < c.samples:
                ctx.notes.append(f"{dom}: length {n}: only {len(docs)} held-out window(s) (of {c.samples} asked)")
            heldout[dom][n] = docs
    ctx.lengths = sorted(heldout[main])
    for note in ctx.notes:
        ctx.say(f"note: {note}")
    return search, heldout


def _record(ctx: _Ctx, search_docs: list, heldout: dict, bos: int | None) -> dict:
    from longrope.embedded import load_split

    return {"resolved": {"target_length": ctx.target, "lengths": ctx.lengths, "device": ctx.device},
            "bos_id": bos, "split": load_split()["roles"], "notes": ctx.notes,
            "documents": {"protocol": "truncate: BOS + length-1 tokens per window, spread over the documents "
                                      "(longrope.evaluate.windows.select_windows)",
                          "search": {"length": ctx.target, "ids": [d.doc_id for d in search_docs],
                                     "domains": list(ctx.config.domains)},
                          "heldout": {dom: {str(n): [d.doc_id for d in docs] for n, docs in by.items()}
                                      for dom, by in heldout.items()}}}


def _search(ctx: _Ctx, model: Any, tokenizer: Any, bos: int | None, docs: list) -> tuple[Any, dict]:
    """The search through the one entry point (``run_search``) on the loaded model."""
    from longrope.evaluate.plots import plot_factors
    from longrope.runs.search import result_curve
    from longrope.search import InProcessEvaluator
    from longrope.search.loop import StopRules, run_search
    from longrope.search.objective import build_objective
    from longrope.search.plan import loop_strategy, plan_search

    c = ctx.config
    from longrope.models import inspect_model

    info = inspect_model(model)
    rope = {"family": info.family, "rope_theta": float(info.rope_theta), "rotary_dim": int(info.rotary_dim),
            "original_length": ctx.L}
    plan = plan_search(rope, target_length=ctx.target, strategy=c.strategy, critical_floor=c.critical_floor)
    for m in BASELINE_NAMES:
        plan.baselines[m].save(ctx.folder / f"factors_{m}.json")
    fitness = c.fitness
    objective = build_objective(model, tokenizer, plan.mapper, docs, ctx.target, bos, fitness=fitness, seed=c.seed,
                                retrieval_weight=c.retrieval_weight)
    weight = f", retrieval weight {c.retrieval_weight:g}" if c.retrieval_weight is not None else ""
    ctx.say(f"search ({c.strategy}, {fitness} fitness{weight}): {len(plan.seeds)} seeds, {len(docs)} search windows "
            f"of {ctx.target} tokens ({', '.join(c.domains)}), budget {c.max_seconds or '∞'} s / "
            f"{c.max_evals or '∞'} full evaluations")
    last = [0.0]

    def on_progress(p: Any) -> None:
        if time.perf_counter() - last[0] >= 5.0:
            last[0] = time.perf_counter()
            ctx.say(f"search: {p.done} candidates, {p.full_evals:.1f} full evaluations, best score "
                    f"{p.best_ppl:.4g}")

    result = run_search(plan.space, plan.seeds, InProcessEvaluator(objective), n_docs=len(docs),
                        strategy=loop_strategy(c.strategy), config=c.knobs,
                        stop=StopRules(c.max_evals, c.max_seconds), seed=c.seed,
                        history=ctx.folder / "search_history.jsonl", on_progress=on_progress)
    objective.patch.restore()  # the evaluation suites install and swap on their own
    from longrope.runs.search import describe_best
    from longrope.search.objective import named_parts

    parts = named_parts(fitness, result.parts, result.n_docs)
    best = plan.mapper.factor_set(result.factors, result.start_tokens, attention_factor=result.attention_factor,
                                  provenance={"demo": {"model": c.model, "strategy": c.strategy, "fitness": fitness,
                                                       "retrieval_weight": c.retrieval_weight, "seed": c.seed,
                                                       "target_length": ctx.target, "best_search_score": result.ppl,
                                                       **parts, "search_docs": [d.doc_id for d in docs]}})
    best.save(ctx.folder / "factors.json")
    curve, label = result_curve(best, plan, c.strategy)
    plot_factors(ctx.folder / "factors.png", curve, label, references=plan.references,
                 title=f"{c.model}: L'={ctx.target}")
    ctx.say(f"search: best {describe_best(fitness, result.ppl, parts)} (n̂ = {result.start_tokens}) after "
            f"{result.n_candidates} candidates, {result.full_evals:.1f} full evaluations, {result.seconds:.0f} s "
            f"({result.stop_reason})")
    rate = result.n_doc_evals * ctx.target / max(result.seconds, 1e-9)  # tokens/s, for the ETAs below
    return best, {"plan": plan, "result": result, "fitness": fitness, "parts": parts, "windows": len(docs),
                  "rate": rate}


def _perplexity(ctx: _Ctx, model: Any, bos: int | None, sets: list, heldout: dict, rate: float) -> dict:
    """Held-out PPL of every set at every length, per domain; writes ppl_vs_length.* ."""
    from longrope.evaluate.plots import plot_ppl_vs_length
    from longrope.evaluate.suite import PPL_CSV_FIELDS, ppl_suite
    from longrope.io import json_safe, write_csv, write_json
    from longrope.runs.progress import eta

    total = sum(len(sets) * len(docs) * n for by in heldout.values() for n, docs in by.items())
    ctx.say(f"held-out perplexity: {len(sets)} methods × lengths {ctx.lengths}, estimated {eta(total / rate)}")
    rows, tables = [], {}
    for dom, by_len in heldout.items():
        tables[dom] = {name: {} for name, _ in sets}
        for n, docs in by_len.items():
            for name, r in ppl_suite(model, docs, sets, [n], bos_id=bos, log=lambda s, d=dom: ctx.say(f"ppl [{d}] {s}")):
                tables[dom][name][r.length] = r.ppl
                rows.append({"domain": dom, **r.to_dict(), "factors": name})
    write_json(ctx.folder / "ppl_vs_length.json", json_safe({
        "protocol": "truncate (BOS + length-1 tokens per window), token-weighted", "original_length": ctx.L,
        "target_length": ctx.target, "domains": list(ctx.config.domains), "results": rows}))
    write_csv(ctx.folder / "ppl_vs_length.csv", rows, ("domain", *PPL_CSV_FIELDS))
    for dom, table in tables.items():
        name = "ppl_vs_length.png" if dom == ctx.config.domains[0] else f"ppl_vs_length_{dom}.png"
        plot_ppl_vs_length({m: sorted(v.items()) for m, v in table.items()}, ctx.folder / name, original_length=ctx.L,
                           title=f"{ctx.config.model}: held-out {dom} perplexity vs length (L' = {ctx.target})")
    return tables


def _passkey(ctx: _Ctx, model: Any, tokenizer: Any, bos: int | None, sets: list, rate: float) -> dict:
    """Passkey accuracy at the target for every set; writes passkey.* ."""
    from longrope.evaluate.plots import plot_passkey_methods
    from longrope.evaluate.suite import passkey_suite, write_passkey_outputs

    c = ctx.config
    if c.passkey_trials == 0:
        return {}
    ctx.say(f"passkey at {ctx.target}: {len(sets)} methods × {len(c.passkey_depths)} depths × {c.passkey_trials} "
            f"trial(s)")
    results = passkey_suite(model, tokenizer, sets, [ctx.target], depths=c.passkey_depths, trials=c.passkey_trials,
                            seed=c.seed, bos_id=bos, mode="both", log=lambda s: ctx.say(f"passkey {s}"))
    write_passkey_outputs(ctx.folder.path, results, {"model": c.model, "length": ctx.target, "seed": c.seed,
                                                     "depths": list(c.passkey_depths), "trials": c.passkey_trials,
                                                     "mode": "both"})
    cells = [{"factors": name, **cell} for name, r in results for cell in r.cells()]
    plot_passkey_methods(cells, ctx.folder / "passkey.png", length=ctx.target, methods=[n for n, _ in sets])
    return {name: {**r.summary(), "answer_nlls": r.answer_nlls} for name, r in results}


def _summary(ctx: _Ctx, tables: dict, heldout: dict, passkey: dict, search: dict) -> dict:
    from longrope.evaluate.stats import lowest
    from longrope.io import json_safe

    target, main, r = ctx.target, ctx.config.domains[0], search["result"]
    per_domain = {}
    for dom, table in tables.items():
        if not all(target in row for row in table.values()):
            continue  # this domain's held-out documents hold no window of the target length (noted)
        at = {name: row[target] for name, row in table.items()}
        base = lowest(at, BASELINE_NAMES) or BASELINE_NAMES[0]  # none finite: the ratio is NaN whichever is named
        per_domain[dom] = {
            "heldout_ppl": at, "heldout_windows": len(heldout[dom][target]), "best_baseline": base,
            "longrope_vs_best_baseline": at["longrope"] / at[base] if at[base] > 0 else float("nan"),
            "ppl_vs_length": {name: {str(n): v for n, v in sorted(row.items())} for name, row in table.items()}}
    head = per_domain[main]
    verdicts = _verdicts(per_domain, passkey, head["best_baseline"], target)
    ctx.seconds["total"] = time.perf_counter() - ctx.seconds.pop("started")
    return json_safe({
        "format": SUMMARY_FORMAT, "model": ctx.config.model, "original_length": ctx.L, "target_length": target,
        "scale": target / ctx.L, "lengths": ctx.lengths, "domain": main, "heldout_ppl": head["heldout_ppl"],
        "heldout_windows": head["heldout_windows"], "best_baseline": head["best_baseline"],
        "longrope_vs_best_baseline": head["longrope_vs_best_baseline"],
        "goal": {"ratio": GOAL_RATIO, "met": bool(head["longrope_vs_best_baseline"] <= GOAL_RATIO),
                 "statement": f"held-out PPL at {target}: longrope <= {GOAL_RATIO} x best of pi, ntk, yarn"},
        "ppl_vs_length": head["ppl_vs_length"], "domains": per_domain,
        "passkey_length": target, "passkey_accuracy": {m: p["accuracy"] for m, p in passkey.items()},
        "passkey": {m: {k: v for k, v in p.items() if k != "answer_nlls"} for m, p in passkey.items()},
        "verdicts": verdicts,
        "search": {"strategy": ctx.config.strategy, "fitness": search["fitness"],
                   "retrieval_weight": ctx.config.retrieval_weight, "best_search_score": r.ppl, **search["parts"],
                   "start_tokens": r.start_tokens,
                   "attention_factor": search["plan"].mapper.factor_set(
                       r.factors, r.start_tokens, attention_factor=r.attention_factor).resolved_attention_factor(),
                   "candidates": r.n_candidates, "full_evals": r.full_evals, "doc_evals": r.n_doc_evals,
                   "search_windows": search["windows"], "stop_reason": r.stop_reason, "seconds": r.seconds},
        "notes": ctx.notes, "seconds": ctx.seconds, "run_dir": str(ctx.folder.final)})


def _verdicts(per_domain: dict, passkey: dict, reference: str, target: int) -> dict:
    """Per method, against ``reference`` (the best closed form at the target on the headline domain): the
    :func:`~longrope.evaluate.stats.verdict` label, where perplexity counts as better only when it is lower
    on every domain at the target, and the paired answer-NLL wins and sign test over the same keys."""
    from longrope.evaluate.stats import paired_test, verdict

    if not passkey or reference not in passkey:
        return {}
    ref = passkey[reference]
    out = {}
    for m, p in passkey.items():
        if m == reference:
            continue
        ratios = {dom: d["heldout_ppl"][m] / d["heldout_ppl"][reference] for dom, d in per_domain.items()}
        # NaN-safe: a ratio that is not a number makes the whole comparison unknown, never a win
        worst = float("nan") if not ratios or any(r != r for r in ratios.values()) else max(ratios.values())
        row = {"reference": reference, "ppl_ratio": ratios,
               "label": verdict(worst, 1.0, p["accuracy"], ref["accuracy"], p.get("answer_nll"), ref.get("answer_nll"))}
        row.update(paired_test(p.get("answer_nlls") or [], ref.get("answer_nlls") or []))
        out[m] = row
    return out


# ------------------------------------------------------------------------------------------------
# helpers


def _default_folder() -> str:
    """``runs/demo-<UTC timestamp>``, or ``...-2``, ``...-3``: the first name that neither exists nor is being made by
    another demo (its staged folder beside it). Two demos started in one folder in the same second both chose the
    same name; the one that finished second was refused after all its work ("written by another process ... run
    again with another -o", though none was given), its results set aside (battery 29c)."""
    from longrope.io import sibling_prefix

    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = path = Path("runs") / f"demo-{stamp}"
    staging = [p.name for p in base.parent.iterdir()] if base.parent.is_dir() else []

    def taken(p: Path) -> bool:
        return p.exists() or any(n.startswith(sibling_prefix(p, "partial-")) for n in staging)

    k = 1
    while taken(path):
        k += 1
        path = base.with_name(f"{base.name}-{k}")
    return str(path)


def _fmt(x: Any, spec: str = ".2f") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    if isinstance(x, float) and abs(x) >= 1e5:
        return f"{x:.3g}"
    return format(x, spec)


def render_table(summary: dict) -> str:
    """The demo's result as a Markdown table (what the CLI prints and ``table.md`` holds)."""
    from longrope.evaluate.stats import paired_test_text

    target, L = summary["target_length"], summary["original_length"]
    lengths = [int(n) for n in summary["lengths"]]
    head = ["method"] + [f"{n}{' (target)' if n == target else ''}" for n in lengths]
    passkey = summary.get("passkey") or {}
    if passkey:
        head += [f"passkey@{target} [95 % CI]", "answer NLL"]
    elif summary.get("passkey_accuracy"):  # summaries written before the teacher-forced scores
        head.append(f"passkey@{target}")
    lines = [
        f"Held-out {summary.get('domain', 'books')} perplexity of {summary['model']} (trained at L = {L}) by context "
        f"length; {summary['heldout_windows']} held-out window(s) at the target, truncate protocol, token-weighted.",
        "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, row in summary["ppl_vs_length"].items():
        cells = [m] + [_fmt(row.get(str(n))) for n in lengths]
        if passkey:
            p = passkey.get(m, {})
            lo, hi = p.get("ci95", [None, None])
            cells += [f"{_fmt(p.get('accuracy'))} [{_fmt(lo)}, {_fmt(hi)}]", _fmt(p.get("answer_nll"), ".3f")]
        elif summary.get("passkey_accuracy"):
            cells.append(_fmt(summary["passkey_accuracy"].get(m)))
        lines.append("| " + " | ".join(cells) + " |")
    if passkey:
        keys = next(iter(passkey.values())).get("keys")
        lines += ["", f"Passkey at {target}: {keys} keys per method (the same keys for each), greedy accuracy with its "
                      "95 % Wilson interval; answer NLL: mean teacher-forced NLL of the same keys' answer tokens."]
    for dom, d in summary.get("domains", {}).items():
        if dom == summary.get("domain"):
            continue
        lines += ["", f"Held-out {dom} perplexity (same factors; {d['heldout_windows']} window(s) at the target):", "",
                  "| " + " | ".join(head[: 1 + len(lengths)]) + " |", "|" + "---|" * (1 + len(lengths))]
        for m, row in d["ppl_vs_length"].items():
            lines.append("| " + " | ".join([m] + [_fmt(row.get(str(n))) for n in lengths]) + " |")
        lines.append(f"{dom}: LongRoPE / best baseline ({d['best_baseline']}) at {target}: "
                     f"{_fmt(d['longrope_vs_best_baseline'], '.3f')}")
    goal, s = summary["goal"], summary["search"]
    verdicts = summary.get("verdicts") or {}
    if verdicts:
        lines += ["", f"Verdicts against {next(iter(verdicts.values()))['reference']} (perplexity: lower on every "
                      f"domain at {target}; retrieval: accuracy at least its and answer NLL at most its):"]
        for m, v in verdicts.items():
            ratios = ", ".join(f"{dom} {r:.3f}x" for dom, r in v["ppl_ratio"].items())
            test = f"; {paired_test_text(v)}" if "nll_wins" in v else ""
            lines.append(f"- {m}: {v['label']} (ppl {ratios}{test})")
    lines += [
        "",
        f"LongRoPE / best baseline ({summary['best_baseline']}) at {target}: "
        f"{_fmt(summary['longrope_vs_best_baseline'], '.3f')} (goal ≤ {goal['ratio']:.2f}: "
        f"{'met' if goal['met'] else 'NOT met'})",
        f"Search ({s['strategy']}, {s.get('fitness', 'ppl')} fitness): {s['candidates']} candidates, "
        f"{_fmt(s['full_evals'], '.1f')} full evaluations on "
        f"{s['search_windows']} search window(s), {_fmt(s['seconds'], '.0f')} s ({s['stop_reason']}); "
        f"n̂ = {s['start_tokens']}, attention factor {_fmt(s.get('attention_factor'), '.4g')}; whole run "
        f"{_fmt(summary['seconds']['total'], '.0f')} s.",
    ]
    return "\n".join(lines)


SPEC = RunSpec(
    command="demo",
    help="the whole LongRoPE demo: search vs PI/NTK/YaRN, perplexity vs length, passkey (minutes on a CPU)",
    description="""\
On the embedded tiny model (trained at 256 tokens) and the shipped books, at 8x the trained
length by default: a LongRoPE evolution search on the search books within a time budget, then
held-out perplexity vs context length (1x ... 8x, and 16x as a stretch) for the unscaled model,
PI, NTK, YaRN and the searched factors, and passkey accuracy at the target length. Search and
held-out books are disjoint (the shipped split). With the defaults the whole run takes a few
minutes on 2 CPU cores.

Writes the run folder (default runs/demo-<UTC timestamp>; it appears when the demo finishes):
config.json, run.json, summary.json (target_length, heldout_ppl per method, ratio to the best
baseline, passkey), table.md, ppl_vs_length.{json,csv,png}, passkey.{json,csv,png},
factors.json (searched) and factors_{pi,ntk,yarn}.json, factors.png, search_history.jsonl. The
last line printed is the run folder.

--model smollm2 runs the same on SmolLM2-135M (L = 8192): a GPU is recommended (--device cuda);
on a CPU it works, slowly (each evaluation at 32k tokens takes minutes).""",
    example="""\
examples:
  longrope demo
  longrope demo --max-seconds 60 --samples 2 -o runs/quick-demo
  longrope demo --model smollm2 --target-length 32768 --device cuda --max-seconds 1800
  longrope rerun runs/quick-demo -o runs/quick-demo-again""",
    config=DemoConfig,
    run=run,
    render=render_table,
    upgrade=recorded_demo,
)
