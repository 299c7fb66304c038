"""Benchmark: SmolLM2-135M's forward time and memory at long lengths on this CPU (float32).

What a user asks before a long run: how one window's perplexity grows with its length, and how much
memory a 16k or 32k window needs. Each length runs in its own subprocess (the scoring of
``bench_smollm2_speed.py``: the dequantized Q4_1 GGUF, ``evaluate_perplexity``, sdpa attention), so
each peak RSS is that length's alone; the model with no window scored is measured the same way, so
the table also says what the window itself adds. Writes ``bench/results/smollm2_long.json`` /
``.md``::

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_smollm2_long --lengths 4096,8192,16384,32768
"""

from __future__ import annotations

import argparse
import json
import sys

from bench._args import length_list, refusing
from bench._child import run_module
from bench._report import add_out_option, new_record, put_table, put_value, write_record

DESCRIPTION = """\
One window of real text (the first shipped held-out book, SmolLM2's tokenizer), BOS + length − 1
tokens, scored once with `evaluate_perplexity` (truncate mode, default chunk size, sdpa attention)
on the dequantized SmolLM2-135M in float32, after a warm-up at 256 tokens; each length in its own
subprocess. Peak RSS is that subprocess's high-water mark (model loading included); `model only` is
a subprocess that loads the model and scores only the warm-up window. Time per token is the
window's seconds over its length; `× previous` compares a row's time with the row above it."""


def _measure(dtype: str, length: int | None) -> dict:
    """One subprocess of ``bench.bench_smollm2_speed``'s child: ``length`` None scores no window."""
    args = ["--child", dtype, "--repeats", "1", *(["--lengths", str(length)] if length else ["--model-only"])]
    proc = run_module("bench.bench_smollm2_speed", args, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@refusing
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lengths", type=length_list, default="4096,8192,16384,32768", help="window lengths in tokens (comma-separated)")
    add_out_option(ap, "smollm2_long")
    args = ap.parse_args(argv)
    lengths = args.lengths
    rec = new_record("smollm2_long", "SmolLM2-135M on this CPU: one window's time and memory at long lengths",
                     script=__file__, argv=argv, description=DESCRIPTION,
                     settings={"lengths": lengths, "dtype": "float32"})
    base = _measure("float32", None)
    put_value(rec, "peak_rss_mb_model_only", base["peak_rss_mb"], ",.0f")
    rows, data, prev = [], {"model_only": base}, None
    for n in lengths:
        got = _measure("float32", n)
        data[str(n)] = got
        sec, rss = got["seconds"][str(n)], got["peak_rss_mb"]
        rows.append([n, sec, 1000 * sec / n, None if prev is None else sec / prev, rss,
                     rss - base["peak_rss_mb"]])
        put_value(rec, f"seconds_{n}", sec, ",.1f")
        put_value(rec, f"peak_rss_mb_{n}", rss, ",.0f")
        prev = sec
    put_table(rec, "length", ["tokens", "seconds", "ms / token", "× previous", "peak RSS (MiB)",
                              "over model only (MiB)"], rows,
              formats=[",d", ",.1f", ".2f", ".2f", ",.0f", ",.0f"],
              title="One window's evaluation in float32 (one subprocess per length)")
    rec["data"] = data
    write_record(rec, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
