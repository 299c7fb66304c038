"""Benchmark: the demo (``longrope demo``), as a record.

Either runs the demo — with exactly the flags of ``longrope demo`` (they come from its config
dataclass ``DemoConfig``, the only home of their defaults) — or reads a finished demo run folder
(``--from-run RUN_DIR``: its ``summary.json``, ``run.json`` and ``config.json``), then writes the
record ``bench/results/demo.json`` and ``demo.md`` rendered from it (``--record`` elsewhere; the
demo's own ``--out`` names its run folder).

    .venv/bin/python -m bench.bench_demo --max-seconds 0             # run the demo, then record it
    .venv/bin/python -m bench.bench_demo --from-run runs/demo-20261130T043200Z   # record a finished run

The record's numbers are the run's: held-out perplexity by length per domain, passkey accuracy,
the search's cost, the step timings, the machine of the run (``run.json``), and the command that
produced the run (``source.command``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from bench._args import refusing
from bench._report import add_out_option, fmt, new_record, put_table, put_value, write_record

DESCRIPTION = """\
`longrope demo`: a LongRoPE search at the target length on windows of the search books and proof
scripts (the joint fitness: document perplexity plus the answer loss of a pass key planted in each
window), then held-out perplexity against context length on books (the PG19 stand-in) and HOL Light
proof scripts (the Proof-Pile stand-in) for the unscaled model, PI, NTK, YaRN and the searched
factors, and passkey retrieval at the target length (greedy accuracy with its 95 % interval and the
teacher-forced answer NLL of the same keys). Search and held-out documents are
disjoint (the shipped split); windows are BOS + length − 1 tokens, perplexity is token-weighted
(truncate protocol). The search is deterministic in-process: with no time cap
(`--max-seconds 0`) the numbers do not depend on the machine's speed."""

STEPS = ("load", "tokenize", "search", "ppl", "passkey", "total")


def _read_json(path: Path, what: str) -> dict:
    from bench._runs import read_json
    from longrope.errors import UserError

    if not path.exists():
        raise UserError(f"{path.parent} is not a finished demo run folder (no {path.name}); {what}")
    return read_json(path, what)


def read_run(run_dir: str | Path) -> tuple[dict, dict, dict]:
    """``(summary, run, config)`` of a finished demo run folder; one-line errors otherwise."""
    from longrope.errors import UserError
    from longrope.runs.demo import SUMMARY_FORMAT

    folder = Path(run_dir)
    if not folder.is_dir():
        raise UserError(f"--from-run {folder} is not a folder; give a demo run folder")
    hint = "give the folder of a demo that has finished"
    config = _read_json(folder / "config.json", hint)
    if config.get("command") != "demo":
        raise UserError(f"--from-run {folder} holds a {config.get('command')!r} run, not a demo run")
    run = _read_json(folder / "run.json", hint)
    if run.get("status") != "done":
        raise UserError(f"--from-run {folder}: the run's status is {run.get('status')!r}, not 'done'; {hint}")
    summary = _read_json(folder / "summary.json", hint)
    if summary.get("format") != SUMMARY_FORMAT:
        raise UserError(f"--from-run {folder}: summary.json is {summary.get('format')!r}, not {SUMMARY_FORMAT!r}")
    return summary, run, config["config"]


def _model_facts(rec: dict, model: str) -> None:
    """Shape of the model and, for the embedded one, what its training report says at 256."""
    from longrope.models.loading import read_rope_info

    info = read_rope_info(model)
    put_value(rec, "model_rope_theta", float(info.rope_theta), ",.0f")
    put_value(rec, "model_rotary_pairs", int(info.rotary_dim) // 2)
    if model != "tiny":
        return
    from longrope.embedded import TINY_MODEL_DIR, training_info

    cfg = json.loads((TINY_MODEL_DIR / "config.json").read_text(encoding="utf-8"))
    train = training_info()
    put_value(rec, "model_parameters", train["parameters"], ",d")
    put_value(rec, "model_parameters_m", train["parameters"] / 1e6, ".2f")
    for key in ("num_hidden_layers", "hidden_size", "num_attention_heads", "head_dim", "vocab_size"):
        put_value(rec, f"model_{key}", cfg[key])
    report = train["report"]
    put_value(rec, "train_ppl_256_books", report["ppl_256"], ".1f")
    put_value(rec, "train_ppl_256_maths", report["domains"]["maths"]["ppl_256"], ".2f")
    put_value(rec, "train_passkey_256", report["passkey_256"], ".0%")
    put_value(rec, "train_passkey_trials", train["config"].get("report_passkey_trials")
              or _report_trials(train))


def _report_trials(train: dict) -> int | None:
    """``--report-passkey-trials`` of the recorded train-tiny command (not every version saved it in config)."""
    argv = shlex.split(train.get("command", ""))
    if "--report-passkey-trials" in argv:
        return int(argv[argv.index("--report-passkey-trials") + 1])
    return None


def build_record(run_dir: str | Path, source_command: str, *, argv: list[str] | None = None) -> tuple[dict, dict]:
    """The demo record of a finished run folder, and the machine its run.json names."""
    summary, run, config = read_run(run_dir)
    rec = new_record("demo", "`longrope demo`: LongRoPE vs PI / NTK / YaRN", script=__file__, argv=argv,
                     description=DESCRIPTION, settings=config)
    target = int(summary["target_length"])
    lengths = [int(n) for n in summary["lengths"]]
    rec["settings"].update({"resolved.target_length": target, "resolved.lengths": lengths})
    rec["source"] = {"command": source_command, "run_dir": str(run_dir), "started": run.get("started"),
                     "finished": run.get("finished")}
    if run.get("rerun"):
        rec["source"]["rerun"] = run["rerun"]
    rec["source"]["recorded"] = rec["utc"]
    rec["utc"] = run.get("started") or rec["utc"]  # the numbers are the run's: its start, its wall time
    rec["seconds"] = run.get("seconds")
    rec.pop("load_average_start", None)  # this process's load says nothing about the run's

    put_value(rec, "original_length", summary["original_length"])
    put_value(rec, "target_length", target)
    put_value(rec, "scale", summary["scale"], "g")
    put_value(rec, "domain", summary["domain"])
    put_value(rec, "ratio", summary["longrope_vs_best_baseline"], ".3f")
    put_value(rec, "best_baseline", summary["best_baseline"])
    put_value(rec, "goal_ratio", summary["goal"]["ratio"], ".2f")
    put_value(rec, "goal_met", summary["goal"]["met"], "met|NOT met")
    passkey = summary.get("passkey_accuracy") or {}
    n_keys = int(config["passkey_trials"]) * len(config["passkey_depths"])
    put_value(rec, "passkey_length", summary.get("passkey_length"))
    put_value(rec, "passkey_keys", n_keys)
    for m, acc in passkey.items():
        put_value(rec, f"passkey_{m}", acc, ".2f")
        put_value(rec, f"passkey_keys_{m}", round(acc * n_keys))
    _retrieval(rec, summary)
    for dom, d in summary["domains"].items():
        put_value(rec, f"{dom}_ratio", d["longrope_vs_best_baseline"], ".3f")
        put_value(rec, f"{dom}_best_baseline", d["best_baseline"])
        put_value(rec, f"{dom}_windows", d["heldout_windows"])
        for m, ppl in d["heldout_ppl"].items():
            put_value(rec, f"{dom}_ppl_{m}", ppl, ".2f")
        head = ["method"] + [f"{fmt(n)}{' (target)' if n == target else ''}" for n in lengths]
        with_passkey = dom == summary["domain"] and passkey
        rows = [[m] + [row.get(str(n)) for n in lengths] + ([passkey.get(m)] if with_passkey else [])
                for m, row in d["ppl_vs_length"].items()]
        put_table(rec, dom, head + ([f"passkey@{fmt(target)}"] if with_passkey else []), rows,
                  formats=[None] + [".2f"] * len(lengths) + ([".2f"] if with_passkey else []),
                  title=f"Held-out {dom} perplexity by context length"
                        + (" (and passkey accuracy at the target)" if with_passkey else ""))
    s = summary["search"]
    for key, spec in (("strategy", None), ("fitness", None), ("retrieval_weight", "g"), ("best_search_score", ".2f"),
                      ("doc_ppl", ".2f"), ("answer_nll", ".3f"), ("answer_exact", None), ("keys", None),
                      ("start_tokens", None),
                      ("attention_factor", ".3f"), ("candidates", None), ("full_evals", ".1f"),
                      ("doc_evals", ",d"), ("search_windows", None), ("stop_reason", None), ("seconds", ".0f")):
        put_value(rec, key if key.startswith("search_") else f"search_{key}", s.get(key), spec)
    yarn = Path(run_dir) / "factors_yarn.json"
    if yarn.exists():
        from longrope.rope import FactorSet

        put_value(rec, "yarn_attention_factor", FactorSet.load(yarn).resolved_attention_factor(), ".3f")
    secs = summary["seconds"]
    for step in STEPS:
        put_value(rec, f"seconds_{step}", secs.get(step), ".1f" if step != "total" else ".0f")
    put_table(rec, "time", list(STEPS), [[secs.get(k) for k in STEPS]], formats=[".1f"] * len(STEPS),
              title="Time (seconds; imports and start-up not included)")
    for note in summary.get("notes") or []:
        rec["notes"].append(note)
    _model_facts(rec, config["model"])
    rec["data"] = {"summary": summary, "documents": run.get("documents")}
    machine = dict(run.get("versions") or {})
    return rec, machine


def _retrieval(rec: dict, summary: dict) -> None:
    """The passkey with its intervals and answer NLLs, the verdicts, and the goals of the joint search:
    at the target <= 0.90 x the best closed form on books and <= 1.00 x on maths; at 2 x the target <= 1.00 x
    YaRN on both; passkey accuracy >= YaRN's and mean answer NLL <= YaRN's."""
    target = int(summary["target_length"])
    pk, verdicts = summary.get("passkey") or {}, summary.get("verdicts") or {}
    rows = []
    for m, p in pk.items():
        v = verdicts.get(m, {})
        wins = f"{v['nll_wins']}/{v['nll_wins'] + v['nll_losses']}" if "nll_wins" in v else None
        rows.append([m, p["correct"], p["keys"], p["accuracy"], p["ci95"][0], p["ci95"][1], p.get("answer_nll"), wins,
                     v.get("sign_p"), v.get("label", "reference" if m == summary["best_baseline"] else None)])
        put_value(rec, f"passkey_ci_low_{m}", p["ci95"][0], ".2f")
        put_value(rec, f"passkey_ci_high_{m}", p["ci95"][1], ".2f")
        put_value(rec, f"answer_nll_{m}", p.get("answer_nll"), ".3f")
        if v:
            put_value(rec, f"verdict_{m}", v["label"])
    if rows:
        put_table(rec, "retrieval", ["method", "correct", "keys", "accuracy", "95 % CI low", "95 % CI high",
                                     "answer NLL", f"lower NLL than {summary['best_baseline']}", "sign p", "verdict"],
                  rows, formats=[None, None, None, ".2f", ".2f", ".2f", ".3f", None, ".2g", None],
                  title=f"Passkey at {target}: greedy accuracy and teacher-forced answer NLL of the same keys")
    dom = summary.get("domains") or {}
    goals = []
    for name, ratio, limit in (("books", dom.get("books", {}).get("longrope_vs_best_baseline"), 0.90),
                               ("maths", dom.get("maths", {}).get("longrope_vs_best_baseline"), 1.00)):
        if ratio is not None:
            goals.append((f"held-out PPL at {target} on {name} <= {limit:.2f} x the best closed form", ratio, limit))
    for name, d in dom.items():
        row = d["ppl_vs_length"]
        hi = str(2 * target)
        if hi in row.get("longrope", {}) and hi in row.get("yarn", {}):
            goals.append((f"held-out PPL at {hi} on {name} <= 1.00 x YaRN", row["longrope"][hi] / row["yarn"][hi], 1.0))
    if "longrope" in pk and "yarn" in pk:
        goals.append(("passkey accuracy >= YaRN's", pk["longrope"]["accuracy"] - pk["yarn"]["accuracy"], None))
        if pk["longrope"].get("answer_nll") is not None and pk["yarn"].get("answer_nll") is not None:
            goals.append(("mean answer NLL <= YaRN's", pk["longrope"]["answer_nll"] - pk["yarn"]["answer_nll"], 0.0))
    grows = []
    for k, (what, value, limit) in enumerate(goals):
        met = value >= 0 if limit is None else value <= limit
        grows.append([what, value, "met" if met else "MISSED"])
        put_value(rec, f"goal_{k}_met", met, "met|MISSED")
    if grows:
        put_table(rec, "goals", ["goal", "value (ratio, or difference to YaRN)", "status"], grows,
                  formats=[None, ".3f", None], title="Goals of the default search (issue 21)")


def _demo_command(argv: list[str]) -> str:
    """``longrope demo ...``: the bench's own argv without ``--record`` (the flags are the same)."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
            continue
        if a == "--record":
            skip = True
            continue
        if a.startswith("--record="):
            continue
        out.append(a)
    return shlex.join(["longrope", "demo", *out])


@refusing
def main(argv: list[str] | None = None) -> int:
    from longrope.errors import ConfigError, UserError
    from longrope.options import add_options, config_from_args, field_flags
    from longrope.runs.demo import DemoConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-run", metavar="RUN_DIR", default=None,
                    help="record this finished demo run folder instead of running the demo")
    add_out_option(ap, "demo", flag="--record")
    add_options(ap, DemoConfig)
    args = ap.parse_args(argv)
    given_argv = list(sys.argv[1:] if argv is None else argv)
    flags = field_flags(DemoConfig)
    try:
        if args.from_run:
            demo_flags = [flags[f] for f in flags if hasattr(args, f)]
            if demo_flags:
                raise UserError(f"{', '.join(demo_flags)} cannot be combined with --from-run (the run folder "
                                f"already fixed them); drop them")
            _, run, _ = read_run(args.from_run)
            cmd = run.get("argv") or []
            source = shlex.join(cmd) if cmd else "unknown (run.json has no argv)"
            run_dir = args.from_run
        else:
            from longrope.runs.demo import run as run_demo

            summary = run_demo(config_from_args(DemoConfig, args))
            run_dir, source = summary["run_dir"], _demo_command(given_argv)
        rec, machine = build_record(run_dir, source, argv=argv)
    except ConfigError as exc:
        print(f"bench_demo.py: error: {exc.render(lambda f: flags.get(f, f))}", file=sys.stderr)
        return 2
    write_record(rec, args.out, machine=machine)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
