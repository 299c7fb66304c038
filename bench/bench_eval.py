"""Benchmark: chunked perplexity evaluation vs a bare forward and vs the naive full-logits way.

Each measurement runs in a fresh subprocess (so one mode's peak memory cannot hide another's):

- ``bare``:  ``model.model(input_ids)`` — the decoder body only, no LM head (the floor);
- ``eval``:  :func:`longrope.evaluate.evaluate_perplexity` (body + chunked LM head and loss);
- ``naive``: ``model(input_ids, labels=...)`` — transformers' own path, full ``[T, vocab]`` logits.

Time: best of ``--repeats`` timed calls (after one short warm-up) in each of ``--rounds``
subprocesses per mode, the modes interleaved round by round. Memory: the process's RSS high-water
mark (``ru_maxrss``) after the call, and that minus the RSS just before it (the call's own peak),
the highest over the rounds. torch has no CPU allocator statistics, and tracemalloc cannot see its buffers.

Model: ``--model tiny`` (the embedded model; needs its assets) or ``--model random32k``: a random
4-layer Llama, hidden 256, with a 32,000-token vocabulary, so the LM head's cost is visible.

Run (writes the record ``bench/results/eval_<model>.json`` and ``eval_<model>.md`` rendered from it)::

    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_eval --model tiny --lengths 4096,8192 --repeats 3 --threads 2
    OMP_NUM_THREADS=2 .venv/bin/python -m bench.bench_eval --model random32k --lengths 2048,8192 --threads 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time

from bench._args import count, length_list, names, refusing
from bench._child import run_module
from bench._report import RESULTS_DIR, new_record, put_table, put_value, write_record

DESCRIPTION = """\
`evaluate_perplexity` (truncate mode, one window of BOS + length − 1 tokens, batch 1, fp32, default
chunk size) against the bare decoder body `model.model(...)` (no LM head at all: the floor) and
against transformers' own `model(input_ids, labels=...)` (full `[T, vocab]` logits, "naive"). Each
measurement is a fresh subprocess, run in interleaved rounds (bare, eval, naive, bare, ...) so a
change in the machine's load hits every mode; time is the best timed call over all rounds (each
after a short warm-up); memory is the process's RSS high-water mark (`ru_maxrss`, the highest over
the rounds), and "own peak" is that minus the RSS just before the call. The LM-head share is an estimate from the model's shape (matrix multiplications of one
forward, causal attention): any exact evaluation pays for the head, the bare forward does not.
Goals (values `goal_*`): eval time and eval peak memory as multiples of the bare forward's."""
GOAL_TIME_RATIO = 1.05
GOAL_PEAK_RATIO = 1.10
#: What is timed: the decoder body alone (the floor), ``evaluate_perplexity``, transformers' full-logits loss.
MODES = ("bare", "eval", "naive")


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
    c = model.config
    heads, kv = int(c.num_attention_heads), int(getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
    head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // heads)
    return {"mode": mode, "length": length, "seconds": min(times), "times": times, "rss_before": before,
            "maxrss": _maxrss_bytes(), "vocab": vocab, "hidden": int(c.hidden_size), "layers": int(c.num_hidden_layers),
            "intermediate": int(c.intermediate_size), "heads": heads, "kv_heads": kv, "head_dim": head_dim}


def head_flop_share(r: dict, length: int) -> float:
    """Estimated share of the LM head in one forward's matmul FLOPs (per token; causal attention
    averages length / 2 keys per query)."""
    h, q, kv = r["hidden"], r["heads"] * r["head_dim"], r["kv_heads"] * r["head_dim"]
    per_layer = 2 * h * (2 * q + 2 * kv) + 2 * 3 * h * r["intermediate"] + 2 * 2 * (length / 2) * q
    head = 2 * h * r["vocab"]
    return head / (head + r["layers"] * per_layer)


def measure(mode: str, model: str, length: int, repeats: int, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    out = run_module(__spec__.name, ["--worker", mode, "--model", model, "--lengths", str(length),
                                     "--repeats", str(repeats), "--threads", str(threads)], env=env)
    if out.returncode != 0:
        return {"mode": mode, "length": length, "error": (out.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(out.stdout.strip().splitlines()[-1])


def combine(rounds: list[dict]) -> dict:
    """One mode's measurements over interleaved rounds: the best time, and the highest peak memory
    (with the RSS before the call of that same round)."""
    bad = [r for r in rounds if "error" in r]
    if bad:
        return bad[0]
    peak = max(rounds, key=lambda r: r["maxrss"])
    return {**peak, "seconds": min(r["seconds"] for r in rounds), "rounds": rounds}


@refusing
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="random32k", choices=["random32k", "tiny"])
    ap.add_argument("--lengths", type=length_list, default="2048,8192")
    ap.add_argument("--repeats", type=count(), default=2, help="timed calls per subprocess (best of)")
    ap.add_argument("--rounds", type=count(), default=2,
                    help="subprocesses per mode, interleaved (bare, eval, naive, bare, ...) so load drift hits all")
    ap.add_argument("--threads", type=count(), default=2)
    ap.add_argument("--modes", type=names(MODES), default=",".join(MODES))
    ap.add_argument("--out", default=None, metavar="PATH",
                    help="the record (JSON; the Markdown goes next to it) (default bench/results/eval_<model>.json)")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    lengths = args.lengths
    if args.worker:
        print(json.dumps(worker(args.worker, args.model, lengths[0], args.repeats, args.threads)))
        return
    modes = args.modes
    rec = new_record(f"eval_{args.model}", f"Perplexity evaluation cost: `{args.model}` model", script=__file__,
                     argv=argv, description=DESCRIPTION,
                     settings={"model": args.model, "lengths": lengths, "repeats": args.repeats, "rounds": args.rounds,
                               "threads": args.threads, "modes": modes})
    mb = 1 / 2**20
    rows, raw = [], []
    for length in lengths:
        rounds = [{m: measure(m, args.model, length, args.repeats, args.threads) for m in modes}
                  for _ in range(args.rounds)]
        res = {m: combine([r[m] for r in rounds]) for m in modes}
        raw += list(res.values())
        bare = res.get("bare")
        bare = bare if bare and "error" not in bare else None
        for m, r in res.items():
            if "error" in r:
                rec["notes"].append(f"`{m}` at length {length} failed: {r['error'][:200]}")
                continue
            own = (r["maxrss"] - r["rss_before"]) * mb
            b_own = (bare["maxrss"] - bare["rss_before"]) * mb if bare else None
            ratios = [r["seconds"] / bare["seconds"], r["maxrss"] / bare["maxrss"],
                      own / b_own if b_own and b_own > 0 else None] if bare else [None, None, None]
            rows.append([length, m, r["seconds"], ratios[0], r["maxrss"] * mb, ratios[1], own, ratios[2]])
            print(rows[-1], file=sys.stderr)
            if m != "bare" and bare:
                put_value(rec, f"{m}_over_bare_time_{length}", ratios[0], ".2f")
                put_value(rec, f"{m}_over_bare_peak_{length}", ratios[1], ".2f")
                put_value(rec, f"{m}_over_bare_own_peak_{length}", ratios[2], ".2f")
        ev, nv = res.get("eval"), res.get("naive")
        if ev and nv and "error" not in ev and "error" not in nv:
            put_value(rec, f"eval_over_naive_time_{length}", ev["seconds"] / nv["seconds"], ".2f")
        ok = next((r for r in res.values() if "error" not in r), None)
        if ok:
            put_value(rec, f"head_flop_share_{length}", head_flop_share(ok, length), ".0%")
    longest = max(lengths)
    put_value(rec, "longest_length", longest)
    put_value(rec, "goal_time_ratio", GOAL_TIME_RATIO, ".2f")
    put_value(rec, "goal_peak_ratio", GOAL_PEAK_RATIO, ".2f")
    if f"eval_over_bare_time_{longest}" in rec["values"]:
        put_value(rec, "time_goal_met", rec["values"][f"eval_over_bare_time_{longest}"] <= GOAL_TIME_RATIO,
                  "met|NOT met")
        put_value(rec, "peak_goal_met", rec["values"][f"eval_over_bare_peak_{longest}"] <= GOAL_PEAK_RATIO,
                  "met|NOT met")
    ok = next((r for r in raw if "error" not in r), None)
    if ok:
        rec["settings"].update({f"model_{k}": ok[k] for k in ("vocab", "hidden", "layers", "intermediate", "heads")})
    put_table(rec, "results", ["length", "mode", "time (s)", "time / bare", "peak RSS (MB)", "peak / bare",
                               "call's own peak (MB)", "own / bare"], rows,
              formats=[None, None, ".2f", ".2f", ".0f", ".2f", ".0f", ".2f"],
              title=f"`{args.model}`: chunked evaluation (eval) vs bare body vs full logits (naive)")
    rec["data"] = {"measurements": raw}
    write_record(rec, args.out or RESULTS_DIR / f"eval_{args.model}.json")


if __name__ == "__main__":
    raise SystemExit(main())
