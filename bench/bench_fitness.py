"""Benchmark: which search fitness keeps retrieval while it lowers perplexity (the embedded model at 8x).

Every variant is a search on the demo's own windows (``longrope demo``'s: 8 windows at the target,
shared out over books and maths and interleaved; ``--domains books`` alone reproduces the search of
the demo before the joint fitness) with the same seed and the same evaluation budget
(``--max-evals``, no time cap, so the runs are deterministic). Then every searched set, a few sets
derived from one of them by hand (to test a rule without a search: λ raised to s from the critical
pair on, YaRN's attention temperature, n̂ = 0) and the closed forms are measured on the same
held-out windows and keys:

- perplexity at the target and at 2x the target on held-out books and maths (``--samples`` windows
  per domain and length, token-weighted);
- passkey at the target: ``--trials`` keys per depth × 5 depths, greedy accuracy (95 % Wilson
  interval) and the teacher-forced answer NLL of the same keys (``mode="both"``); paired answer-NLL
  wins against YaRN with a two-sided sign test.

Resumable: each search keeps its folder under ``--work`` (a finished one is not run again), and
each measured set its cell (``cells.json``); kill it and run the same command again.

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_fitness --work .bench/fitness
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

from bench._args import count, names, refusing
from bench._report import add_out_option, new_record, put_table, put_value, write_record
from longrope.search.plan import BASELINE_NAMES

DESCRIPTION = """\
Searches of the embedded tiny Llama (L = 256) at 8x (2048 tokens) that differ only in their fitness
or search space, on the demo's windows, seed and evaluation budget; then every set measured on the
same held-out windows (books and maths, at 2048 and 4096) and the same pass keys at 2048 (greedy
accuracy and teacher-forced answer NLL of each key). `joint-wX`: document perplexity + X × the mean
answer NLL of a key planted in each search window (one forward per window); `ppl`: perplexity only;
`needle`: answer NLL only; `books-ppl`: the search before this benchmark (perplexity of books windows
only); `constrained-wX`: document perplexity + X × how far each window's mean answer NLL lies above
YaRN's on the same window (zero at or below it). Derived sets (`*+floor`, `*+yarn-m`, `*+n0`) change one thing of a searched set by hand to
test a rule without searching it."""

#: name -> (DemoConfig overrides, what it tests)
VARIANTS = {
    "books-ppl": ({"fitness": "ppl", "domains": ("books",)}, "perplexity fitness on books windows (the old default)"),
    "ppl": ({"fitness": "ppl"}, "perplexity fitness on books + maths windows"),
    "joint-w0.03": ({"fitness": "joint", "retrieval_weight": 0.03}, "joint fitness, weight 0.03"),
    "joint-w0.1": ({"fitness": "joint", "retrieval_weight": 0.1}, "joint fitness, weight 0.1"),
    "joint-w0.3": ({"fitness": "joint", "retrieval_weight": 0.3}, "joint fitness, weight 0.3"),
    "joint-w1": ({"fitness": "joint", "retrieval_weight": 1.0}, "joint fitness, weight 1"),
    "needle": ({"fitness": "needle"}, "answer NLL only (LongRoPE2's needle fitness)"),
    "joint-w0.1-floor": ({"fitness": "joint", "retrieval_weight": 0.1, "critical_floor": True},
                         "joint fitness, weight 0.1, searched with lambda >= s installed from the critical pair on"),
    "constrained-w1": ({"fitness": "constrained", "retrieval_weight": 1.0},
                       "document perplexity, + 1 x each window's answer NLL above YaRN's (the constrained fitness)"),
    "constrained-w0.3": ({"fitness": "constrained", "retrieval_weight": 0.3},
                         "the constrained fitness with a softer penalty, 0.3"),
}
#: the searched set the derived sets are made from
DERIVE_FROM = "joint-w0.1"


def _search(name: str, overrides: dict, work: Path, max_evals: int, say) -> Path:
    from longrope.runs.demo import DemoConfig
    from longrope.runs.demo import run as run_demo

    folder = work / name
    if (folder / "summary.json").exists():
        say(f"{name}: searched before ({folder})")
        return folder
    cfg = DemoConfig(max_seconds=0, max_evals=max_evals, samples=1, passkey_trials=0, output=str(folder),
                     quiet=True, **overrides)
    cfg.lengths = None
    say(f"{name}: searching ({max_evals} full evaluations)")
    run_demo(cfg)
    return folder


def _derived(fs, plan_rope: dict, yarn) -> dict:
    """Sets made from ``fs`` by hand: λ floored at s from the critical pair on, YaRN's m, n̂ = 0."""
    import numpy as np

    from longrope.rope.critical import theoretical_critical_dim

    L, Lt = fs.original_max_position_embeddings, fs.max_position_embeddings
    s = Lt / L
    crit = theoretical_critical_dim(plan_rope["rope_theta"], plan_rope["rotary_dim"], L)
    lam = np.asarray(fs.long_factor, dtype=np.float64).copy()
    lam[int(crit):] = np.maximum(lam[int(crit):], s)
    return {"+floor": fs.with_(long_factor=lam), "+yarn-m": fs.with_(attention_factor=yarn.resolved_attention_factor()),
            "+n0": fs.with_(start_tokens=0)}


@refusing
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default=".bench/fitness", help="folder of the searches and the measured cells")
    ap.add_argument("--max-evals", type=count(), default=60, help="full evaluations per search")
    ap.add_argument("--samples", type=count(), default=8, help="held-out windows per domain and length")
    ap.add_argument("--trials", type=count(), default=8, help="keys per depth (5 depths)")
    ap.add_argument("--variants", type=names(tuple(VARIANTS)), default=",".join(VARIANTS),
                    help="comma-separated subset of the variants")
    ap.add_argument("--closed-forms", type=names(BASELINE_NAMES), default="yarn,ntk,pi",
                    help="closed forms measured beside them (yarn first)")
    ap.add_argument("--name", default="fitness", help="record name (default fitness; give --out beside another)")
    add_out_option(ap, "fitness")
    args = ap.parse_args(argv)
    variants = args.variants

    def say(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    rec = new_record(args.name, "Search fitness: perplexity and retrieval (embedded model, 8x)", script=__file__,
                     argv=argv, description=DESCRIPTION,
                     settings={"max_evals": args.max_evals, "samples": args.samples, "trials": args.trials,
                               "variants": variants, "derived_from": DERIVE_FROM})
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    folders = {n: _search(n, VARIANTS[n][0], work, args.max_evals, say) for n in variants}
    cells = _measure(folders, work, args, say)
    _put(rec, cells, folders)
    write_record(rec, args.out)
    return 0


def _measure(folders: dict, work: Path, args, say) -> dict:
    """Every set's held-out perplexity and passkey, one cell per set kept in ``cells.json``."""
    from longrope.data import TokenCorpus
    from longrope.evaluate.passkey import passkey_accuracy
    from longrope.evaluate.perplexity import evaluate_perplexity
    from longrope.evaluate.suite import factor_switch
    from longrope.evaluate.windows import resolve_bos, select_windows
    from longrope.io import write_json
    from longrope.models import inspect_model, load_model
    from longrope.rope import FactorSet

    first = next(iter(folders.values()))
    model, tok = load_model("tiny")
    bos = resolve_bos(tok, model=model)
    info = inspect_model(model)
    rope = {"rope_theta": float(info.rope_theta), "rotary_dim": int(info.rotary_dim)}
    summary = json.loads((first / "summary.json").read_text())
    target = int(summary["target_length"])
    yarn = FactorSet.load(first / "factors_yarn.json")
    sets = {m: FactorSet.load(first / f"factors_{m}.json") for m in args.closed_forms}
    for n, f in folders.items():
        sets[n] = FactorSet.load(f / "factors.json")
    if DERIVE_FROM in folders:
        for suffix, fs in _derived(sets[DERIVE_FROM], rope, yarn).items():
            sets[DERIVE_FROM + suffix] = fs
    heldout = {}
    for dom in ("books", "maths"):
        corpus = TokenCorpus.open(Path(first) / "tokens" / dom) if (Path(first) / "tokens" / dom).exists() else None
        if corpus is None:  # a books-only variant came first: any folder with both domains will do
            other = next(f for f in folders.values() if (f / "tokens" / dom).exists())
            corpus = TokenCorpus.open(other / "tokens" / dom)
        for n in (target, 2 * target):
            heldout[(dom, n)] = select_windows(corpus, n, args.samples, split="heldout", seed=0, windows_per_doc=None)
    cells_path = work / "cells.json"
    cells = json.loads(cells_path.read_text()) if cells_path.exists() else {}
    with factor_switch(model, list(sets.items())) as use:
        for name, fs in sets.items():
            digest = json.dumps(fs.to_dict(), sort_keys=True, default=str)
            if name in cells and cells[name].get("factors") == digest and cells[name].get("samples") == args.samples \
                    and cells[name].get("trials") == args.trials:
                continue
            use(fs)
            say(f"measuring {name}")
            ppl = {}
            for (dom, n), docs in heldout.items():
                r = evaluate_perplexity(model, docs, n, bos_id=bos)
                ppl[f"{dom}@{n}"] = {"ppl": r.ppl, "tokens": r.n_tokens, "windows": len(docs)}
            pk = passkey_accuracy(model, tok, [target], trials=args.trials, seed=0, bos_id=bos, mode="both")
            cells[name] = {"factors": digest, "samples": args.samples, "trials": args.trials, "ppl": ppl,
                           "passkey": pk.summary(), "answer_nlls": pk.answer_nlls,
                           "attention_factor": fs.resolved_attention_factor(), "start_tokens": fs.start_tokens}
            write_json(cells_path, cells)
    return {n: cells[n] for n in sets}


def _put(rec: dict, cells: dict, folders: dict) -> None:
    from longrope.evaluate.stats import paired_wins, sign_test_p, verdict

    yarn = cells["yarn"]
    keys = sorted(next(iter(cells.values()))["ppl"])
    rows = []
    for name, c in cells.items():
        p = c["passkey"]
        ratios = {k: c["ppl"][k]["ppl"] / yarn["ppl"][k]["ppl"] for k in keys}
        wins, losses = paired_wins(c["answer_nlls"], yarn["answer_nlls"]) if name != "yarn" else (0, 0)
        target_keys = [k for k in keys if k.endswith(f"@{min(int(x.split('@')[1]) for x in keys)}")]
        worst_at_target = max(ratios[k] for k in target_keys)
        label = "—" if name == "yarn" else verdict(worst_at_target, 1.0, p["accuracy"], yarn["passkey"]["accuracy"],
                                                    p.get("answer_nll"), yarn["passkey"].get("answer_nll"))
        search = {}
        if name in folders:
            search = json.loads((folders[name] / "summary.json").read_text())["search"]
        rows.append([name, *(c["ppl"][k]["ppl"] for k in keys), *(ratios[k] for k in keys), p["accuracy"],
                     p["ci95"][0], p["ci95"][1], p.get("answer_nll"), f"{wins}/{wins + losses}" if name != "yarn" else "—",
                     sign_test_p(wins, losses) if name != "yarn" else None, c["attention_factor"], c["start_tokens"],
                     search.get("full_evals"), label])
        slug = name.replace("+", "_plus_")
        for k in keys:
            put_value(rec, f"{slug}.ppl.{k.replace('@', '_')}", c["ppl"][k]["ppl"], ".2f")
            put_value(rec, f"{slug}.ratio.{k.replace('@', '_')}", ratios[k], ".3f")
        put_value(rec, f"{slug}.passkey", p["accuracy"], ".2f")
        put_value(rec, f"{slug}.answer_nll", p.get("answer_nll"), ".3f")
        put_value(rec, f"{slug}.verdict", label)
        if name != "yarn":
            put_value(rec, f"{slug}.nll_wins", f"{wins}/{wins + losses}")
    n_keys = next(iter(cells.values()))["passkey"]["keys"]
    tokens = {k: next(iter(cells.values()))["ppl"][k]["tokens"] for k in keys}
    put_value(rec, "keys", n_keys)
    for k in keys:
        put_value(rec, f"tokens.{k.replace('@', '_')}", tokens[k])
    put_table(rec, "sets", ["set", *(f"ppl {k}" for k in keys), *(f"x YaRN {k}" for k in keys), "passkey",
                            "CI low", "CI high", "answer NLL", "NLL wins vs YaRN", "sign p", "m", "n̂", "full evals",
                            "verdict vs YaRN"], rows,
              formats=[None] + [".2f"] * len(keys) + [".3f"] * len(keys) + [".2f", ".2f", ".2f", ".3f", None, ".2g",
                                                                           ".3f", None, ".1f", None],
              title="Every set on the same held-out windows and keys",
              note=f"{n_keys} keys per set at the target (8 per depth); perplexity on "
                   + ", ".join(f"{tokens[k]:,} tokens at {k}" for k in keys)
                   + ". Verdict: perplexity lower than YaRN's on both domains at the target; retrieval: accuracy at "
                     "least YaRN's and mean answer NLL at most YaRN's.")
    for name, (_overrides, what) in VARIANTS.items():
        if name in folders:
            rec["notes"].append(f"`{name}`: {what}.")
    rec["data"]["cells"] = {n: {k: v for k, v in c.items() if k != "factors"} for n, c in cells.items()}
    if not all(math.isfinite(r[1]) for r in rows):
        rec["notes"].append("A set diverged (infinite perplexity) on some window.")


if __name__ == "__main__":
    raise SystemExit(main())
