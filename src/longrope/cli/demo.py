"""``longrope demo``: the main job (``make demo``) — search, baselines, perplexity, passkey, one folder.

Thin: parse flags into a :class:`longrope.demo.DemoConfig`, run it, print the table and, as the
last line of stdout, the run folder. Progress lines go to stderr.
"""

from __future__ import annotations

import argparse

from longrope.cli._parse import parse_lengths

COMMAND = "demo"
HELP = "the whole LongRoPE demo: search vs PI/NTK/YaRN, perplexity vs length, passkey (minutes on a CPU)"
DESCRIPTION = """\
On the embedded tiny model (trained at 256 tokens) and the shipped books, at 8x the trained
length by default: a LongRoPE evolution search on the search books within a time budget, then
held-out perplexity vs context length (1x ... 8x, and 16x as a stretch) for the unscaled model,
PI, NTK, YaRN and the searched factors, and passkey accuracy at the target length. Search and
held-out books are disjoint (the shipped split). With the defaults the whole run takes a few
minutes on 2 CPU cores.

Writes into the run folder (default runs/demo-<UTC timestamp>): config.json, summary.json
(target_length, heldout_ppl per method, ratio to the best baseline, passkey), table.md,
ppl_vs_length.{json,csv,png}, passkey.{json,csv,png}, factors.json (searched) and
factors_{pi,ntk,yarn}.json, factors.png, search_history.jsonl. The last line printed is the
run folder.

--model smollm2 runs the same on SmolLM2-135M (L = 8192): a GPU is recommended (--device cuda);
on a CPU it works, slowly (each evaluation at 32k tokens takes minutes). The shipped books hold
few windows of 64k SmolLM2 tokens, so lengths the held-out books cannot fill are dropped with a
note."""
EXAMPLE = """\
examples:
  longrope demo
  longrope demo --budget-seconds 60 --samples 2 --out runs/quick-demo
  longrope demo --model smollm2 --target-length 32768 --device cuda --budget-seconds 1800"""


def _depths(text: str) -> list[float]:
    from longrope.errors import UserError

    try:
        return [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise UserError(f"--passkey-depths must be comma-separated numbers in [0, 1], got {text!r}") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="tiny", help='"tiny" (default, embedded), "smollm2", a model folder or .gguf')
    p.add_argument("--target-length", type=int, default=None, metavar="N",
                   help="target context L' (default 8 x the model's trained length)")
    p.add_argument("--lengths", default=None, metavar="N,N,...",
                   help="perplexity-vs-length grid (default L, 2L, ... up to the target, then 2 x target)")
    p.add_argument("--budget-seconds", type=float, default=420.0, metavar="S",
                   help="wall-clock budget of the search (default 420; 0 = no time limit)")
    p.add_argument("--max-evals", type=float, default=250.0, metavar="N",
                   help="stop the search after N full-fidelity evaluations, whichever of this and "
                        "--budget-seconds comes first (default 250; 0 = no cap)")
    p.add_argument("--samples", type=int, default=3, help="held-out windows per length (default 3)")
    p.add_argument("--search-samples", type=int, default=8, help="search windows at the target length (default 8)")
    p.add_argument("--passkey-trials", type=int, default=2, help="keys per depth at the target length (default 2; 0 = skip)")
    p.add_argument("--passkey-depths", default="0,0.25,0.5,0.75,1", metavar="D,D,...",
                   help="needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    p.add_argument("--strategy", default="steady", choices=["steady", "paper", "longrope2"],
                   help="search strategy (default steady); longrope2 scores candidates by the NLL of a pass key "
                        "planted in each search window")
    p.add_argument("--seed", type=int, default=0, help="seed of the documents, the search and the keys (default 0)")
    p.add_argument("--out", "-o", default=None, metavar="DIR", help="run folder (default runs/demo-<UTC timestamp>)")
    p.add_argument("--device", default="auto", help='"auto" (default: CUDA if available), "cpu", "cuda", "cuda:1"')
    p.add_argument("--dtype", default="float32", help="float32 (default), bfloat16 or float16")
    p.add_argument("--domains", default="books,maths", metavar="D,D",
                   help="held-out domains to report: books (PG19 stand-in), maths (Proof-Pile stand-in); the "
                        "first is searched on and is the headline (default books,maths)")
    p.add_argument("--quiet", action="store_true", help="no progress lines on stderr")


def run(args: argparse.Namespace) -> int:
    from longrope.demo import DemoConfig, render_table, run_demo

    config = DemoConfig(
        model=args.model,
        target_length=args.target_length,
        lengths=tuple(parse_lengths(args.lengths)) if args.lengths else None,
        budget_seconds=args.budget_seconds if args.budget_seconds else None,
        max_evals=args.max_evals if args.max_evals else None,
        samples=args.samples,
        search_samples=args.search_samples,
        passkey_trials=args.passkey_trials,
        passkey_depths=tuple(_depths(args.passkey_depths)),
        seed=args.seed,
        out=args.out,
        device=args.device,
        dtype=args.dtype,
        strategy=args.strategy,
        progress=not args.quiet,
        domains=tuple(d for d in args.domains.split(",") if d.strip()),
    )
    summary = run_demo(config)
    print(render_table(summary))
    print(summary["run_dir"], flush=True)
    return 0
