"""``longrope search``: evolution search of LongRoPE rescale factors (and n̂) for a target length.

Thin: parse flags into a :class:`longrope.search.job.SearchJob`, run it, print where the results are.
"""

from __future__ import annotations

import argparse
import sys

COMMAND = "search"
HELP = "search LongRoPE rescale factors for a target length (evolution search, resumable)"
DESCRIPTION = """\
Evolution search of per-dimension RoPE rescale factors λ (and retained start tokens n̂) that
minimise perplexity at --target-length on documents of the search split of a shard folder
(LongRoPE, arXiv 2402.13753). Writes factors.json (the best set), history.jsonl (every
evaluated candidate), config.json, factors.png and report.json (held-out PPL of the result
beside PI, NTK and YaRN on the same documents). A checkpoint is written after every
evaluation: --resume continues a killed run exactly where it stopped.

strategies:
  steady     (default) ours: steady-state, racing on one document first, fitness cache,
             smooth mutations with adaptive step, more seeds, the attention temperature
             searched too (--fixed-attention: LongRoPE's), stops when the best stalls
  paper      the published algorithm: seeds PI/NTK/YaRN, (μ+λ) generations, 1,344
             evaluations with the default knobs
  longrope2  LongRoPE2: λ_i in [s, 2s] for i >= d_rcd, NTK-style below, d_rcd searched,
             needle-driven fitness (answer-token loss of planted pass keys)

modes:
  --short --base-factors F        search F's short factors at the original length
  --base-factors F (no --short)   progressive: search λ' on a model fine-tuned with F;
                                  writes λ_F ⊙ λ'"""
EXAMPLE = """\
examples:
  longrope tokenize --tokenizer tiny --input search=corpus/search --input heldout=corpus/heldout -o shards/tiny
  longrope search --model tiny --data shards/tiny --target-length 2048 --iterations 10 -o runs/tiny-2k
  longrope search --model tiny --data shards/tiny --target-length 2048 -o runs/tiny-2k --resume"""


def _ints(text: str, flag: str) -> tuple[int, ...]:
    from longrope.errors import UserError

    try:
        vals = tuple(sorted({int(t) for t in str(text).split(",") if t.strip()}))
    except ValueError:
        raise UserError(f"{flag} must be comma-separated integers, got {text!r}") from None
    if not vals or vals[0] < 0:
        raise UserError(f"{flag} must be comma-separated integers >= 0, got {text!r}")
    return vals


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help='"tiny", "smollm2", a model folder, a .gguf file or a hub id')
    p.add_argument("--data", required=True, metavar="DIR", help="shard folder from 'longrope tokenize'")
    p.add_argument("--target-length", type=int, default=None, metavar="N", help="target context L' in tokens")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder (created)")
    p.add_argument("--resume", action="store_true", help="continue the search saved in RUN_DIR")
    p.add_argument("--strategy", default="steady", choices=["steady", "paper", "longrope2"],
                   help="search strategy (default steady)")
    p.add_argument("--seed", type=int, default=0, help="seed of the search and of the document sample (default 0)")
    g = p.add_argument_group("the paper's knobs (LongRoPE Table 4 defaults)")
    g.add_argument("--population", type=int, default=64, help="initial population P (default 64)")
    g.add_argument("--parents", type=int, default=32, help="parents k (default 32)")
    g.add_argument("--mutations", type=int, default=16, help="mutants per iteration N1 (default 16)")
    g.add_argument("--crossovers", type=int, default=16, help="crossovers per iteration N2 (default 16)")
    g.add_argument("--iterations", type=int, default=40, help="iterations T (default 40)")
    g.add_argument("--mutation-prob", type=float, default=0.3, help="per-gene mutation probability p (default 0.3)")
    g.add_argument("--step", type=float, default=0.01, help="grid of λ (default 0.01)")
    g.add_argument("--samples", type=int, default=5, help="search documents per fitness (default 5)")
    g.add_argument("--max-factor", type=float, default=None,
                   help="upper bound of λ (default 1.25·s; 2.0 with --short; 2·s for longrope2)")
    g.add_argument("--min-factor", type=float, default=None, help="lower bound of λ (default 1.0)")
    g.add_argument("--start-tokens", default="0,1,2,4,8,12,16,20,24,28,32,64,128,256",
                   help="n̂ values searched (default: the paper's set)")
    o = p.add_argument_group("ours (--strategy steady / longrope2)")
    o.add_argument("--race", default="1", help="racing stages: documents scored before the full set, "
                                                "comma-separated; 'none' scores every candidate fully (default 1)")
    o.add_argument("--patience", type=int, default=None,
                   help="stop after this many candidates without improvement "
                        "(default max(3·(N1+N2), budget/8); paper: never)")
    o.add_argument("--initial", type=int, default=16, help="initial set: seeds + smooth mutants (default 16)")
    o.add_argument("--fixed-attention", action="store_true",
                   help="steady: keep LongRoPE's attention temperature instead of searching it")
    o.add_argument("--fitness", default=None, choices=["ppl", "needle"],
                   help="fitness: ppl, or needle (answer-token loss; default for longrope2)")
    m = p.add_argument_group("modes")
    m.add_argument("--short", action="store_true", help="search the short factors of --base-factors at length L")
    m.add_argument("--base-factors", default=None, metavar="F",
                   help="factor file the model was fine-tuned with (progressive search), or whose short "
                        "factors to fill (--short)")
    e = p.add_argument_group("evaluation")
    e.add_argument("--workers", type=int, default=0, help="CPU worker processes (default 0: in this process)")
    e.add_argument("--devices", default=None, help="one worker process per device, e.g. cuda:0,cuda:1")
    e.add_argument("--ray-address", default=None, help="Ray cluster address ('auto', 'ray://host:10001'); "
                                                        "needs pip install longrope[ray]")
    e.add_argument("--device", default="cpu", help="device of the in-process evaluator (default cpu)")
    e.add_argument("--dtype", default="float32", help="model dtype (default float32)")
    e.add_argument("--unordered", action="store_true",
                   help="parallel evaluators: tell results as they arrive (never idle, not reproducible)")
    e.add_argument("--heldout-samples", type=int, default=5, help="held-out documents in report.json (default 5)")
    e.add_argument("--windows-per-doc", type=int, default=1,
                   help="non-overlapping windows taken from each long document (default 1)")
    e.add_argument("--heldout-fraction", type=float, default=0.5, help="share of documents held out (default 0.5)")
    e.add_argument("--no-report", action="store_true", help="skip the held-out report")
    e.add_argument("--quiet", action="store_true", help="no progress bar")


def job_from_args(args: argparse.Namespace):
    from longrope.errors import UserError
    from longrope.search.job import SearchJob
    from longrope.search.strategies import StrategyConfig

    race: tuple[int, ...] = () if str(args.race).strip().lower() in ("none", "") else _ints(args.race, "--race")
    try:
        config = StrategyConfig(
            population=args.population, parents=args.parents, mutations=args.mutations,
            crossovers=args.crossovers, iterations=args.iterations, mutation_prob=args.mutation_prob,
            initial=args.initial, race=race, patience=args.patience,
        )
    except ValueError as exc:
        raise UserError(f"bad search knob: {exc} (see --population/--parents/--mutations/...)") from None
    devices = tuple(d.strip() for d in args.devices.split(",") if d.strip()) if args.devices else ()
    return SearchJob(
        model=args.model, data=args.data, output=args.output, target_length=args.target_length,
        strategy=args.strategy, seed=args.seed, samples=args.samples, heldout_samples=args.heldout_samples,
        windows_per_doc=args.windows_per_doc, heldout_fraction=args.heldout_fraction, config=config,
        step=args.step, min_factor=args.min_factor, max_factor=args.max_factor,
        start_tokens=_ints(args.start_tokens, "--start-tokens"), short=args.short,
        base_factors=args.base_factors, fitness=args.fitness, workers=args.workers, devices=devices,
        ray_address=args.ray_address, device=args.device, dtype=args.dtype,
        ordered=False if args.unordered else None, resume=args.resume, report=not args.no_report,
        progress=not args.quiet, search_attention=not args.fixed_attention,
    )


def run(args: argparse.Namespace) -> int:
    from longrope.search.job import run_job

    job = job_from_args(args)
    report = run_job(job)
    s = report["search"]
    print(f"best ppl {s['best_ppl']:.4f} at length {s['length']} ({s['candidates']} candidates, "
          f"{s['full_evals']:.1f} full evaluations, {s['seconds']:.1f} s); results in {args.output}/",
          file=sys.stdout)
    return 0
