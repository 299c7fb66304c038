"""Benchmark: our search strategy against the paper's, on one model and one target length.

In one run, on the same objective (the model is loaded once; both strategies score the same
search documents with the same full-fidelity fitness):

(a) the paper strategy with its knobs runs to completion; our strategy (same knobs, same candidate
    budget) runs too; we record the document evaluations and the wall time ours needed to reach the
    paper's final best fitness (goal: ≤ 25 % of the paper's);
(b) the held-out PPL of both results beside PI, NTK and YaRN on the same held-out documents
    (goal: ours ≤ 0.90 × the best of the three).

The paper's full defaults (1,344 evaluations) are too many for a CPU; pass a scaled budget with
--population/--parents/--mutations/--crossovers/--iterations. The exact command, seeds, versions
and timings are written to the markdown and JSON results.

    .venv/bin/python bench/bench_search.py --model tiny --factor 8 --population 32 --parents 16 \\
        --mutations 8 --crossovers 8 --iterations 10 --out bench/results/search.md

``--synthetic`` runs the same protocol on the synthetic objective (no model; seconds) to test the
script itself; its numbers say nothing about a real model.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shlex
import sys
import tempfile
import time
from pathlib import Path

from longrope.io import write_json, write_text
from longrope.search.archive import Archive
from longrope.search.evaluators import InProcessEvaluator
from longrope.search.loop import SearchLoop
from longrope.search.strategies import StrategyConfig, make_strategy

#: strategies run, in order: the paper's; ours; ours with LongRoPE's fixed temperature (isolates the
#: algorithm's speed-up from the extra gene).
VARIANTS = ("paper", "steady", "steady-fixed-m")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="tiny")
    p.add_argument("--data", default=None, help="shard folder (default: tokenize the embedded corpus)")
    p.add_argument("--domain", default="books", choices=["books", "maths"],
                   help="embedded corpus domain when --data is not given (default books)")
    p.add_argument("--factor", type=float, default=8.0, help="target length = factor × L (default 8)")
    p.add_argument("--population", type=int, default=32)
    p.add_argument("--parents", type=int, default=16)
    p.add_argument("--mutations", type=int, default=8)
    p.add_argument("--crossovers", type=int, default=8)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--samples", type=int, default=5)
    p.add_argument("--heldout-samples", type=int, default=5)
    p.add_argument("--windows-per-doc", type=int, default=4,
                   help="windows per book (the embedded corpus has few, long books)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--synthetic", action="store_true", help="synthetic objective instead of a model")
    p.add_argument("--synthetic-dims", type=int, default=32)
    p.add_argument("--out", default="bench/results/search.md", help="markdown result (the raw record is embedded)")
    p.add_argument("--json", default=None, help="also write the raw record to this JSON file")
    p.add_argument("--note", default=None, help="a paragraph placed under the title (e.g. what model this is)")
    p.add_argument("--quiet", action="store_true")
    return p.parse_args(argv)


def embedded_shards(model: str, cache: Path, domain: str = "books") -> str:
    """Tokenize one domain of the embedded corpus (search/held-out documents pinned) with the
    model's tokenizer."""
    from longrope.data import tokenize_corpus
    from longrope.embedded import document_paths
    from longrope.models.loading import load_model

    _, tok = load_model(model)
    inputs = [f"{role}={path}" for role in ("search", "heldout") for path in document_paths(role, domain)]
    tokenize_corpus(tok, inputs, cache, tokenizer_name=model, progress=False)
    return str(cache)


class Clock:
    """Progress line every few seconds (stderr)."""

    def __init__(self, name: str, quiet: bool) -> None:
        self.name, self.quiet, self.last = name, quiet, 0.0

    def __call__(self, p) -> None:
        if self.quiet or p.elapsed - self.last < 5:
            return
        self.last = p.elapsed
        print(f"  {self.name}: {p.done}/{p.budget} candidates, best ppl {p.best_ppl:.4f}, "
              f"{p.full_evals:.1f} evals, {p.elapsed:.0f} s", file=sys.stderr, flush=True)


def run_strategy(name, space, seeds, objective, cfg, seed, n_docs, quiet):
    arc = Archive(n_docs)
    strat = make_strategy(name, space, arc, cfg)
    loop = SearchLoop(space, strat, InProcessEvaluator(objective), seed=seed, on_progress=Clock(name, quiet))
    t0 = time.perf_counter()
    res = loop.run(seeds)
    wall = time.perf_counter() - t0
    return res, wall


def reach(history: list[dict], target: float):
    """(doc evaluations, seconds) when a full-fidelity fitness ≤ target was first told; None if never."""
    for h in history:
        if h["full"] and h["fitness"] is not None and h["fitness"] <= target + 1e-12:
            return h["doc_evals_total"], h["elapsed"]
    return None


def main(argv=None) -> int:
    args = parse_args(argv)
    cfg = StrategyConfig(population=args.population, parents=args.parents, mutations=args.mutations,
                         crossovers=args.crossovers, iterations=args.iterations)
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    if args.synthetic:
        from longrope.search.seeds import extended_seeds, long_space, paper_seeds
        from longrope.search.synthetic import SyntheticObjective

        theta, d, L = 10000.0, 2 * args.synthetic_dims, 256
        Lt = int(args.factor * L)
        objective = SyntheticObjective(d // 2, Lt / L, n_docs=args.samples, seed=args.seed)
        heldout_obj = SyntheticObjective(d // 2, Lt / L, n_docs=args.heldout_samples, seed=args.seed + 1000)
        from longrope.search.seeds import attention_choices

        space = long_space(d // 2, Lt / L)
        ours_space = long_space(d // 2, Lt / L, attention=attention_choices(Lt / L, L))
        seeds = {"paper": paper_seeds(space, theta, d, L, Lt), "steady": extended_seeds(ours_space, theta, d, L, Lt),
                 "steady-fixed-m": extended_seeds(space, theta, d, L, Lt)}
        spaces = {"paper": space, "steady": ours_space, "steady-fixed-m": space}
        model_desc = f"synthetic objective (d/2 = {d // 2}, s = {Lt / L:g})"
    else:
        import torch

        from longrope.search.job import SearchJob, plan
        from longrope.search.objective import ObjectiveSpec

        if args.threads:
            torch.set_num_threads(args.threads)
        data = args.data
        if data is None:
            data = embedded_shards(args.model, Path(tempfile.gettempdir())
                                   / f"longrope-bench-{args.model}-{args.domain}-shards", args.domain)
        from longrope.models.loading import read_rope_info

        L = int(read_rope_info(args.model).original_max_position_embeddings)
        Lt = int(round(args.factor * L))
        plans = {}
        for name in VARIANTS:
            job = SearchJob(model=args.model, data=data, output="-", target_length=Lt,
                            strategy="steady" if name.startswith("steady") else name,
                            search_attention=name == "steady", seed=args.seed, samples=args.samples,
                            heldout_samples=args.heldout_samples, windows_per_doc=args.windows_per_doc, config=cfg)
            plans[name] = plan(job)
        p0 = plans["paper"]
        spec = ObjectiveSpec(model=args.model, data=data, length=p0.length, n_docs=args.samples, mapper=p0.mapper,
                             seed=args.seed, windows_per_doc=args.windows_per_doc, threads=args.threads)
        t_load = time.perf_counter()
        objective = spec("cpu")
        t_load = time.perf_counter() - t_load
        seeds = {k: v.seeds for k, v in plans.items()}
        spaces = {k: v.space for k, v in plans.items()}
        model_desc = f"{args.model} (L = {L}, d/2 = {p0.space.n_dims}), target {Lt} (s = {Lt / L:g})"

    results = {}
    for name in VARIANTS:
        print(f"running {name} ...", file=sys.stderr, flush=True)
        strategy = "paper" if name == "paper" else "steady"
        res, wall = run_strategy(strategy, spaces[name], seeds[name], objective, cfg, args.seed, args.samples,
                                 args.quiet)
        results[name] = (res, wall)
        print(f"  {name}: best ppl {res.ppl:.4f}, {res.n_candidates} candidates, {res.n_doc_evals} doc evals, "
              f"{wall:.1f} s ({res.stop_reason})", file=sys.stderr, flush=True)
    paper, paper_wall = results["paper"]
    ours, ours_wall = results["steady"]
    fixed, fixed_wall = results["steady-fixed-m"]
    speed = {"paper_doc_evals": paper.n_doc_evals, "paper_seconds": paper_wall, "paper_best_ppl": paper.ppl}
    for key, (res, wall) in (("ours", (ours, ours_wall)), ("fixed", (fixed, fixed_wall))):
        hit = reach(res.history, paper.fitness)
        speed.update({
            f"{key}_doc_evals": res.n_doc_evals,
            f"{key}_seconds": wall,
            f"{key}_best_ppl": res.ppl,
            f"{key}_attention_factor": res.attention_factor,
            f"{key}_doc_evals_to_reach": hit[0] if hit else None,
            f"{key}_seconds_to_reach": hit[1] if hit else None,
            f"{key}_evals_ratio": hit[0] / paper.n_doc_evals if hit else None,
            f"{key}_time_ratio": hit[1] / paper_wall if hit else None,
        })

    # (b) held-out PPL of both results and the baselines on the same held-out documents
    if args.synthetic:
        from longrope.rope import make_baseline

        def held(lam, n_hat, m=None):
            return math.exp(heldout_obj.full_nll(lam, n_hat, m))

        ppl = {"paper": held(paper.factors, paper.start_tokens, paper.attention_factor),
               "ours": held(ours.factors, ours.start_tokens, ours.attention_factor),
               "ours-fixed-m": held(fixed.factors, fixed.start_tokens, fixed.attention_factor)}
        for m in ("pi", "ntk", "yarn"):
            fs = make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
            ppl[m] = held(fs.long_factor, 0, fs.resolved_attention_factor())
    else:
        from longrope.search.job import heldout_ppl
        from longrope.search.objective import load_documents

        docs = load_documents(data, p0.length, args.heldout_samples, seed=args.seed, split="heldout",
                              windows_per_doc=args.windows_per_doc)
        sets = {"paper": p0.mapper.factor_set(paper.factors, paper.start_tokens),
                "ours": p0.mapper.factor_set(ours.factors, ours.start_tokens, attention_factor=ours.attention_factor),
                "ours-fixed-m": p0.mapper.factor_set(fixed.factors, fixed.start_tokens), **p0.baselines}
        h = heldout_ppl(objective.model, objective.patch, objective.bos_id, docs, p0.length, sets)
        ppl = h["ppl"]
    best_base = min(ppl[m] for m in ("pi", "ntk", "yarn"))
    heldout = {"ppl": ppl, "best_baseline": min(("pi", "ntk", "yarn"), key=ppl.get),
               "ours_ratio": ppl["ours"] / best_base, "paper_ratio": ppl["paper"] / best_base}

    given = list(argv if argv is not None else sys.argv[1:])
    if "--note" in given:  # the note is printed under the title; keep the command readable
        i = given.index("--note")
        given[i + 1 : i + 2] = ["'<the note above>'"] if i + 1 < len(given) else []
    command = "python " + " ".join([shlex.quote(sys.argv[0]), *(a if a.startswith("'<") else shlex.quote(a) for a in given)])
    record = {
        "command": command,
        "started": started,
        "model": model_desc,
        "knobs": cfg.to_dict(),
        "seed": args.seed,
        "samples": args.samples,
        "heldout_samples": args.heldout_samples,
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform()},
        "speed": speed,
        "heldout": heldout,
        "stop_reasons": {"paper": paper.stop_reason, "ours": ours.stop_reason, "ours-fixed-m": fixed.stop_reason},
        "best": {"paper": {"factors": paper.factors.tolist(), "start_tokens": paper.start_tokens,
                           "attention_factor": paper.attention_factor},
                 "ours": {"factors": ours.factors.tolist(), "start_tokens": ours.start_tokens,
                          "attention_factor": ours.attention_factor},
                 "ours-fixed-m": {"factors": fixed.factors.tolist(), "start_tokens": fixed.start_tokens}},
    }
    record["note"] = args.note
    if args.json:
        write_json(args.json, record)
    write_text(Path(args.out), render(record))
    print(render(record))
    return 0


def _f(x, fmt=".4f"):
    return "—" if x is None or (isinstance(x, float) and not math.isfinite(x)) else format(x, fmt)


def render(r: dict) -> str:
    s, h = r["speed"], r["heldout"]
    k = r["knobs"]
    budget = k["population"] + k["iterations"] * (k["mutations"] + k["crossovers"])
    lines = [
        "# Search benchmark: ours (steady) vs the paper's strategy",
        "",
        *([r["note"], ""] if r.get("note") else []),
        f"- model: {r['model']}",
        f"- command: `{r['command']}`",
        f"- started: {r['started']}; seed {r['seed']}; {r['samples']} search docs, {r['heldout_samples']} held-out docs",
        f"- knobs (all): P={k['population']}, k={k['parents']}, N1={k['mutations']}, N2={k['crossovers']}, "
        f"T={k['iterations']} → budget {budget} candidates; p={k['mutation_prob']}",
        f"- machine: {r['machine']['platform']}, {r['machine']['cpus']} CPUs, Python {r['machine']['python']}",
        "- ours = steady-state + racing + cache + extended seeds + smooth adaptive mutation + searched attention "
        "temperature; ours (fixed m) = the same with LongRoPE's temperature, as the paper",
        "",
        "## (a) cost to reach the paper strategy's final best (same full-fidelity fitness)",
        "",
        "| | best search PPL | doc evals (total) | wall s (total) | doc evals to reach paper's best | "
        "wall s to reach | evals ratio | time ratio (goal ≤ 0.25) |",
        "|---|---|---|---|---|---|---|---|",
        f"| paper | {_f(s['paper_best_ppl'])} | {s['paper_doc_evals']} | {_f(s['paper_seconds'], '.1f')} | | | | |",
    ]
    for key, label in (("ours", "ours"), ("fixed", "ours (fixed m)")):
        reached = s[f"{key}_doc_evals_to_reach"]
        lines.append(
            f"| {label} | {_f(s[f'{key}_best_ppl'])} | {s[f'{key}_doc_evals']} | {_f(s[f'{key}_seconds'], '.1f')} | "
            f"{reached if reached is not None else '— (not reached)'} | {_f(s[f'{key}_seconds_to_reach'], '.1f')} | "
            f"{_f(s[f'{key}_evals_ratio'], '.3f')} | {_f(s[f'{key}_time_ratio'], '.3f')} |"
        )
    stops = "; ".join(f"{k} — {v}" for k, v in r["stop_reasons"].items())
    lines += [
        "",
        f"Stop reasons: {stops}. Ours picked attention temperature m = {s['ours_attention_factor']}.",
        "",
        "## (b) held-out perplexity (same documents for every row)",
        "",
        "| factors | held-out PPL | ÷ best of PI/NTK/YaRN (goal ≤ 0.90 for ours) |",
        "|---|---|---|",
    ]
    best = min(h["ppl"][m] for m in ("pi", "ntk", "yarn"))
    for name in ("ours", "ours-fixed-m", "paper", "pi", "ntk", "yarn"):
        lines.append(f"| {name} | {_f(h['ppl'][name])} | {_f(h['ppl'][name] / best, '.3f')} |")
    lines += ["", "<details><summary>raw record (JSON)</summary>", "", "```json",
              json.dumps(r, indent=1), "```", "", "</details>", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
