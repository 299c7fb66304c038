"""Benchmark: the progressive pipeline (``longrope pipeline``), as a record.

Reads a finished pipeline folder — its ``summary.json`` (the comparison's tables and goals),
``pipeline.json`` (each stage's settings, metrics and time) and ``run.json`` — and writes the record
``bench/results/pipeline.json`` and ``pipeline.md`` rendered from it::

    OMP_NUM_THREADS=2 .venv/bin/longrope pipeline --model tiny -o runs/pipeline      # ~50 min on 2 idle cores
    .venv/bin/python -m bench.bench_pipeline --from-run runs/pipeline

The numbers are the run's; the record names the command that produced it (``source.command``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from bench._args import refusing
from bench._report import add_out_option, new_record, put_table, put_value, relative_paths, write_record
from bench._runs import command

DESCRIPTION = """\
`longrope pipeline` with the shipped plan (`longrope/embedded/assets/pipeline/tiny.json`) on the
embedded model (L = 256): a LongRoPE search at 8× on the base model; fine-tuning at 8× with the
searched factors and, as the fair baseline, with YaRN-8× (the same steps, learning-rate schedule and
documents: the shipped fine-tuning books and HOL Light files, disjoint from search and held-out);
a second search at 32× on the model fine-tuned with the searched factors (λ_final = λ_ft ⊙ λ');
short-factor recovery at 256 on that model. Every method is measured on the same held-out windows
(token-weighted perplexity, windows of BOS + length − 1 tokens) and the same seeded pass keys
(greedy decoding) at each ratio. At 1× each method runs with the factor set it would be deployed
with (a LongRoPE set uses its short factors below L, as transformers does)."""


def _read(path: Path) -> dict:
    from bench._runs import read_json
    from longrope.errors import UserError

    if not path.exists():
        raise UserError(f"{path.parent} is not a finished pipeline folder (no {path.name})")
    return read_json(path)


def _outcome(run: str, m: dict) -> str:
    """One line on what a stage produced (from its metrics)."""
    if run == "search":
        return (f"best search-split PPL {m.get('best_ppl', float('nan')):.2f}, {m.get('candidates')} candidates, "
                f"{m.get('full_evals') or 0:.1f} full evaluations")
    if run == "finetune":
        return f"{m.get('steps')} steps, {m.get('tokens') or 0:,} tokens, last loss {m.get('final_loss') or 0:.3f}"
    if run == "tokenize":
        return f"{m.get('documents')} documents, {m.get('tokens') or 0:,} tokens"
    return ""


def build_record(run_dir: str | Path, *, argv: list[str] | None = None) -> tuple[dict, dict]:
    from longrope.errors import UserError
    from longrope.evaluate.stats import wilson_interval

    folder = Path(run_dir)
    config = _read(folder / "config.json")
    if config.get("command") != "pipeline":
        raise UserError(f"--from-run {folder} holds a {config.get('command')!r} run, not a pipeline")
    run, summary, manifest = _read(folder / "run.json"), _read(folder / "summary.json"), _read(folder / "pipeline.json")
    if run.get("status") != "done" or not summary.get("complete"):
        raise UserError(f"--from-run {folder}: the pipeline has not finished; continue it with --resume")
    rec = new_record("pipeline", "`longrope pipeline`: the progressive recipe on the embedded model", script=__file__,
                     argv=argv, description=DESCRIPTION, settings=config["config"])
    rec["source"] = {"command": command(run),
                     "run_dir": str(run_dir), "started": run.get("started"), "finished": run.get("finished"),
                     "recorded": rec["utc"]}
    earlier = run.get("previous_starts")
    earlier = [t for t in earlier if isinstance(t, str)] if isinstance(earlier, list) else []
    rec["utc"] = (earlier or [run.get("started")])[0] or rec["utc"]  # the first start (a resumed run's is later)
    stage_seconds = sum(s.get("seconds") or 0.0 for s in manifest["stages"].values())
    rec["seconds"] = stage_seconds
    rec.pop("load_average_start", None)
    ratios = summary["ratios"] if "ratios" in summary else list(summary["heldout_ppl"])
    methods = list(summary["methods"])
    ppl, passkey = summary["heldout_ppl"], summary["passkey"]
    pk_ratios = [r for r in ratios if r in passkey]
    keys = summary.get("passkey_trials")

    def interval(r: str, m: str) -> list:  # the run's own 95 % Wilson interval, or from its counts (older runs)
        given = (summary.get("passkey_ci95") or {}).get(r, {}).get(m)
        if given is not None or passkey.get(r, {}).get(m) is None or not keys:
            return list(given or (None, None))
        return list(wilson_interval(round(passkey[r][m] * keys), keys))

    put_table(rec, "results", ["method"] + [f"PPL {r}" for r in ratios]
              + [c for r in pk_ratios for c in (f"passkey {r}", f"{r} low", f"{r} high")],
              [[m] + [ppl.get(r, {}).get(m) for r in ratios]
               + [v for r in pk_ratios for v in (passkey.get(r, {}).get(m), *interval(r, m))] for m in methods],
              formats=[None] + [".2f"] * len(ratios) + [".2f"] * 3 * len(pk_ratios),
              title="Held-out perplexity and passkey accuracy by context ratio, with the accuracy's 95 % Wilson "
                    "interval (— : not measured at that ratio)")
    for r in ratios:
        put_value(rec, f"tokens_{r}", summary["heldout_tokens"].get(r), ",d")
        put_value(rec, f"length_{r}", summary["lengths"][r], ",d")
        for m, v in ppl.get(r, {}).items():
            put_value(rec, f"ppl_{r}_{m}", v, ".2f")
        for m, v in passkey.get(r, {}).items():
            put_value(rec, f"passkey_{r}_{m}", v, ".2f")
    put_value(rec, "passkey_keys", summary.get("passkey_trials"))
    goals = summary.get("goals") or []
    put_table(rec, "goals", ["goal", "measured", "bound", "ratio to reference", "met"],
              [[g["name"], g["measured"], g["bound"], g.get("ratio_to_reference"), g["met"]] for g in goals],
              formats=[None, ".3f", ".3f", ".3f", "met|MISSED"], title="Goals")
    for i, g in enumerate(goals):
        put_value(rec, f"goal_{i}_met", g["met"], "met|MISSED")
        put_value(rec, f"goal_{i}_ratio", g.get("ratio_to_reference"), ".3f")
    rows = [[name, st["run"], st.get("seconds"), _outcome(st["run"], st.get("metrics") or {})]
            for name, st in manifest["stages"].items()]
    put_table(rec, "stages", ["stage", "run", "seconds", "outcome"], rows, formats=[None, None, ".0f", None],
              title="Stages (seconds of each stage's last attempt)")
    put_value(rec, "seconds_total", stage_seconds, ".0f")
    put_value(rec, "starts", 1 + len(earlier))  # a stopped run, resumed
    rec["data"] = {"summary": summary, "stages": {n: {k: s.get(k) for k in ("run", "config", "metrics", "seconds")}
                                                  for n, s in manifest["stages"].items()}}
    return rec, dict(run.get("versions") or {})


@refusing
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--from-run", metavar="RUN_DIR", required=True, help="a finished pipeline folder")
    add_out_option(ap, "pipeline", flag="--record")
    args = ap.parse_args(argv)
    rec, machine = build_record(args.from_run, argv=argv)
    write_record(relative_paths(rec), args.out, machine=machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
