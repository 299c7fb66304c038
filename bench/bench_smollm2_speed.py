"""Benchmark: what one SmolLM2 evaluation costs on this CPU, by length and dtype.

The search's unit of work is one window's perplexity (``evaluate_perplexity``: the decoder and the
chunked LM head, no ``[T, vocab]`` logits). This times it for SmolLM2-135M (the dequantized Q4_1
GGUF) in float32 and bfloat16 at a few lengths, one subprocess per dtype (each loads the model
once, warms up at 256 tokens, then takes the best of ``--repeats`` calls per length), and records
the process's peak RSS. Writes ``bench/results/smollm2_speed.json`` / ``.md``::

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_smollm2_speed --lengths 1024,2048,4096 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time

from bench._args import count, length_list, refusing
from bench._child import run_module
from bench._report import add_out_option, new_record, put_table, put_value, write_record

DESCRIPTION = """\
One window of real text (a shipped held-out book, SmolLM2's tokenizer), BOS + length − 1 tokens,
scored with `evaluate_perplexity` (truncate mode, default chunk size, sdpa attention) on the
dequantized SmolLM2-135M; float32 and bfloat16 each in their own subprocess; best of the repeats
after a warm-up. Peak RSS is the subprocess's high-water mark (model loading included)."""


def _child(dtype: str, lengths: list[int], repeats: int) -> dict:
    import torch

    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.embedded import document_paths
    from longrope.evaluate import evaluate_perplexity
    from longrope.models.loading import load_model

    torch.set_num_threads(max(1, torch.get_num_threads()))
    model, _ = load_model("smollm2", dtype=dtype)
    tok = load_tokenizer("smollm2")
    text = document_paths("heldout", "books")[0].read_text(encoding="utf-8")
    ids = tok(text, add_special_tokens=False)["input_ids"]
    out = {"dtype": dtype, "seconds": {}}
    evaluate_perplexity(model, [ids[:4096]], 256, bos_id=tok.bos_token_id)  # warm-up
    for n in lengths:
        best = float("inf")
        for _ in range(repeats):
            t = time.perf_counter()
            evaluate_perplexity(model, [ids[: n + 8]], n, bos_id=tok.bos_token_id)
            best = min(best, time.perf_counter() - t)
        out["seconds"][str(n)] = best
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


@refusing
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=length_list, default="1024,2048,4096", help="window lengths in tokens (comma-separated)")
    ap.add_argument("--repeats", type=count(), default=2, help="timed calls per length (best is kept)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--model-only", action="store_true", help=argparse.SUPPRESS)  # a child scoring no window
    add_out_option(ap, "smollm2_speed")
    args = ap.parse_args(argv)
    lengths = args.lengths
    if args.child:
        print(json.dumps(_child(args.child, [] if args.model_only else lengths, args.repeats)))
        return 0
    rec = new_record("smollm2_speed", "SmolLM2-135M on this CPU: one window's evaluation by length and dtype",
                     script=__file__, argv=argv, description=DESCRIPTION,
                     settings={"lengths": lengths, "repeats": args.repeats})
    results = {}
    for dtype in ("float32", "bfloat16"):
        proc = run_module(__spec__.name, ["--child", dtype, "--lengths", ",".join(map(str, lengths)),
                                           "--repeats", str(args.repeats)],
                          check=True)
        results[dtype] = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = []
    for n in lengths:
        f32, b16 = results["float32"]["seconds"][str(n)], results["bfloat16"]["seconds"][str(n)]
        rows.append([n, f32, b16, b16 / f32])
        put_value(rec, f"f32_seconds_{n}", f32, ".2f")
        put_value(rec, f"bf16_over_f32_{n}", b16 / f32, ".2f")
    put_table(rec, "time", ["tokens", "float32 (s)", "bfloat16 (s)", "bfloat16 / float32"], rows,
              formats=[",d", ".2f", ".2f", ".2f"], title="One window's evaluation (best of the repeats)")
    for dtype in results:
        put_value(rec, f"peak_rss_mb_{dtype}", results[dtype]["peak_rss_mb"], ",.0f")
    rec["data"] = results
    write_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
