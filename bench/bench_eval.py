"""Benchmark: chunked perplexity evaluation vs a bare forward and vs the naive full-logits way.

Each measurement runs in a fresh subprocess (so one mode's peak memory cannot hide another's):

- ``bare``:  ``model.model(input_ids)`` — the decoder body only, no LM head (the floor);
- ``eval``:  :func:`longrope.evaluate.evaluate_perplexity` (body + chunked LM head and loss);
- ``naive``: ``model(input_ids, labels=...)`` — transformers' own path, full ``[T, vocab]`` logits.

Time: best of ``--repeats`` timed calls after one short warm-up. Memory: the process's RSS
high-water mark (``ru_maxrss``) after the call, and that minus the RSS just before it (the
call's own peak). torch has no CPU allocator statistics, and tracemalloc cannot see its buffers.

Model: ``--model tiny`` (the embedded model; needs its assets) or ``--model random32k``: a random
4-layer Llama, hidden 256, with a 32,000-token vocabulary, so the LM head's cost is visible.

Run (writes a Markdown table to stdout; ``--out`` writes it to a file as well)::

    OMP_NUM_THREADS=2 .venv/bin/python bench/bench_eval.py --model random32k --lengths 2048,8192 \\
        --threads 2 --out bench/results/eval.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _maxrss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux reports KiB


def _build_model(name: str):
    import torch

    if name == "tiny":
        from longrope.models.loading import load_model

        model, _ = load_model("tiny")
        return model
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(vocab_size=32000, hidden_size=256, intermediate_size=688, num_hidden_layers=4,
                      num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=4096,
                      tie_word_embeddings=False, bos_token_id=1, eos_token_id=2)
    model = LlamaForCausalLM(cfg).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.02)
    return model


def worker(mode: str, model_name: str, length: int, repeats: int, threads: int) -> dict:
    import numpy as np
    import torch

    from longrope.evaluate import evaluate_perplexity

    torch.set_num_threads(threads)
    model = _build_model(model_name)
    vocab = int(model.config.vocab_size)
    doc = np.random.default_rng(0).integers(3, vocab, size=length).astype(np.int64)
    ids = torch.from_numpy(np.concatenate([[1], doc[: length - 1]]))[None]

    def call(x):
        with torch.inference_mode():
            if mode == "bare":
                return model.model(input_ids=x, use_cache=False).last_hidden_state.sum()
            if mode == "naive":
                return model(input_ids=x, labels=x, use_cache=False).loss
            return evaluate_perplexity(model, [x[0, 1:].numpy()], x.shape[1], bos_id=1).nll_sum

    call(ids[:, :64])  # warm-up at a short length (so it cannot set the high-water mark)
    before = _rss_bytes()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        call(ids)
        times.append(time.perf_counter() - t0)
    return {"mode": mode, "length": length, "seconds": min(times), "rss_before": before,
            "maxrss": _maxrss_bytes(), "vocab": vocab}


def measure(mode: str, model: str, length: int, repeats: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = subprocess.run([sys.executable, __file__, "--worker", mode, "--model", model, "--lengths", str(length),
                          "--repeats", str(repeats), "--threads", str(threads)],
                         capture_output=True, text=True, env=env, check=False)
    if out.returncode != 0:
        return {"mode": mode, "length": length, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random32k", choices=["random32k", "tiny"])
    ap.add_argument("--lengths", default="2048,8192")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--modes", default="bare,eval,naive")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    lengths = [int(x) for x in args.lengths.split(",")]
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, lengths[0], args.repeats, args.threads)))
        return
    mb = 1 / 2**20
    lines = [
        f"Model `{args.model}`, {args.threads} thread(s), best of {args.repeats}; "
        f"{platform.processor() or platform.machine()}, torch threads {args.threads}.",
        "",
        "| length | mode | time (s) | time / bare | peak RSS (MB) | peak / bare | call's own peak (MB) | own / bare |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for length in lengths:
        res = {m: measure(m, args.model, length, args.repeats, args.threads) for m in args.modes.split(",")}
        bare = res.get("bare")
        for m, r in res.items():
            if "error" in r:
                lines.append(f"| {length} | {m} | failed: {r['error'][:80]} | | | | | |")
                continue
            own = (r["maxrss"] - r["rss_before"]) * mb
            if bare and "error" not in bare:
                b_own = (bare["maxrss"] - bare["rss_before"]) * mb
                t_ratio = f"{r['seconds'] / bare['seconds']:.2f}"
                p_ratio = f"{r['maxrss'] / bare['maxrss']:.2f}"
                o_ratio = f"{own / b_own:.2f}" if b_own > 0 else "–"
            else:
                t_ratio = p_ratio = o_ratio = "–"
            lines.append(f"| {length} | {m} | {r['seconds']:.2f} | {t_ratio} | {r['maxrss'] * mb:.0f} | {p_ratio} | "
                         f"{own:.0f} | {o_ratio} |")
            print(lines[-1], file=sys.stderr)
    from _record import command_line  # bench/ is on sys.path when a bench script runs

    lines += ["", command_line(__file__)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        from longrope.io import write_text

        write_text(args.out, text)


if __name__ == "__main__":
    main()
