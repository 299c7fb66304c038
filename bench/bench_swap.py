"""Benchmark: factor swap vs model reload, and the forward-pass cost of the injected rotary module.

What it measures, all in one run:

1. ``RopePatch.swap(factor_set)`` — validate + copy new tables into the preallocated buffers
   (the search's inner loop), over many distinct seeded factor sets; median and p99.
2. ``load_model`` from disk — the alternative to swapping (reload + re-patch), median of a few.
3. Forward time at long lengths, patched vs unpatched, interleaved (unpatched, patched, unpatched,
   ...) so drift in machine load hits both equally; the ratio of medians and the median of
   per-pair ratios are reported. Goal: ≤ 1.02×.
4. The rotary module alone (original vs ours) at the same lengths, to show where any cost sits.

Model: the embedded "tiny" model when it is there, else a random Llama of the same shape
(hidden 256, 4 layers, 4 heads of 64, vocab 4096, L = 256), saved to a temp folder so the
reload timing reads real files.

    python bench/bench_swap.py                      # CPU, lengths 2048 4096
    python bench/bench_swap.py --device cuda --lengths 4096 16384 --repeats 15
"""

from __future__ import annotations

import argparse
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path


def _random_llama(folder: Path) -> Path:
    import torch
    import transformers

    config = transformers.LlamaConfig(
        vocab_size=4096, hidden_size=256, intermediate_size=768, num_hidden_layers=4, num_attention_heads=4,
        num_key_value_heads=4, max_position_embeddings=256, rope_parameters={"rope_type": "default", "rope_theta": 1e4},
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)  # bench-only model; the library never uses the global RNG
    model = transformers.LlamaForCausalLM(config)
    model.save_pretrained(folder)
    return folder


def _sync(device) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn, device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="tiny", help="model to use (default: embedded tiny, else random Llama)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--lengths", type=int, nargs="+", default=[2048, 4096])
    parser.add_argument("--repeats", type=int, default=7, help="interleaved forward pairs per length")
    parser.add_argument("--swaps", type=int, default=2000, help="distinct factor sets swapped in")
    parser.add_argument("--reloads", type=int, default=3)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("OMP_NUM_THREADS", "0") or 0),
                        help="torch CPU threads (0 = torch default)")
    parser.add_argument("-o", "--output", default=str(Path(__file__).parent / "results" / "swap.md"))
    args = parser.parse_args(argv)

    import numpy as np
    import torch
    import transformers

    from longrope.errors import UserError
    from longrope.io import write_text
    from longrope.models import inspect_model, install_factors
    from longrope.models.loading import load_model, resolve_device
    from longrope.rope import make_baseline

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    tmp = tempfile.TemporaryDirectory()
    source = args.model
    try:
        model, _ = load_model(source, dtype=args.dtype, device=device)
    except UserError as e:
        if args.model != "tiny":
            raise
        print(f"note: {e}; using a random Llama of the same shape", file=sys.stderr)
        source = str(_random_llama(Path(tmp.name) / "random-llama"))
        model, _ = load_model(source, dtype=args.dtype, device=device)
    info = inspect_model(model)
    L, d = info.original_max_position_embeddings, info.rotary_dim
    target = max(args.lengths)
    rows: list[tuple[str, str]] = []

    # 1. swap time over distinct factor sets (seeded, monotone, within the search space [1, 1.25 s])
    base = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=d, original_length=L, target_length=target)
    rng = np.random.default_rng(0)
    s = target / L
    sets = [
        base.with_(long_factor=np.sort(rng.uniform(1.0, 1.25 * s, d // 2)), start_tokens=int(rng.integers(0, 64)))
        for _ in range(args.swaps)
    ]
    patch = install_factors(model, base)
    for fs in sets[:20]:  # warm-up
        patch.swap(fs)
    swap_times = [_timed(lambda fs=fs: patch.swap(fs), device) for fs in sets]
    swap_med, swap_p99 = statistics.median(swap_times), float(np.quantile(swap_times, 0.99))
    rows.append(("factor swap (validate + copy into buffers), median", f"{swap_med * 1e6:.1f} µs"))
    rows.append(("factor swap, p99", f"{swap_p99 * 1e6:.1f} µs"))

    # 2. reload from disk (what a search without swap would pay per candidate)
    def reload():
        m, _ = load_model(source, dtype=args.dtype, device=device)
        install_factors(m, base)

    transformers.logging.disable_progress_bar()
    reload_times = [_timed(reload, device) for _ in range(args.reloads)]
    reload_med = statistics.median(reload_times)
    rows.append(("model reload + install, median", f"{reload_med * 1e3:.1f} ms"))
    rows.append(("reload / swap", f"{reload_med / swap_med:,.0f}×"))

    # 3./4. forward and rotary-module time, patched vs unpatched, interleaved
    fwd_rows = []
    gen = torch.Generator().manual_seed(0)
    vocab = model.config.vocab_size
    patch.swap(base)
    for n in args.lengths:
        ids = torch.randint(3, vocab, (1, n), generator=gen).to(device)
        pos = torch.arange(n, device=device)[None]
        x = torch.zeros(1, n, model.config.hidden_size, device=device, dtype=next(model.parameters()).dtype)
        with torch.no_grad():
            for which in (None, base):  # warm-up both paths
                patch.swap(which)
                model(ids)
            t_orig, t_ours, r_orig, r_ours = [], [], [], []
            def fwd(ids=ids):
                return model(ids)

            def rot(module, x=x, pos=pos):
                return lambda: module(x, pos)

            for _ in range(args.repeats):
                patch.swap(None)
                t_orig.append(_timed(fwd, device))
                patch.swap(base)
                t_ours.append(_timed(fwd, device))
            # the rotary modules alone: cheap, so more interleaved repeats after a warm-up
            orig_rot, ours_rot = rot(patch.original), rot(patch.module)
            for _ in range(3):
                orig_rot(), ours_rot()
            for _ in range(5 * args.repeats):
                r_orig.append(_timed(orig_rot, device))
                r_ours.append(_timed(ours_rot, device))
        ratio_of_medians = statistics.median(t_ours) / statistics.median(t_orig)
        median_ratio = statistics.median(a / b for a, b in zip(t_ours, t_orig))
        fwd_rows.append((n, statistics.median(t_orig), statistics.median(t_ours), ratio_of_medians, median_ratio,
                         statistics.median(r_orig), statistics.median(r_ours)))
    patch.restore()

    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    env = (f"device {device} ({torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or platform.machine()}), "
           f"torch {torch.__version__}, transformers {transformers.__version__}, threads {torch.get_num_threads()}, "
           f"dtype {args.dtype}, load average at the end {load} (shared machine: timings are noisy)")
    model_desc = (f"{args.model if source == args.model else 'random Llama (embedded tiny model missing)'}: "
                  f"{info.family}, {model.config.num_hidden_layers} layers, hidden {model.config.hidden_size}, "
                  f"rotary dim {d}, L = {L}")
    lines = [
        "## Factor swap vs reload; patched forward overhead",
        "",
        f"Command: `{shlex.join([sys.executable.split('/')[-1], *sys.argv])}`  ",
        f"Model: {model_desc}  ",
        f"Environment: {env}",
        "",
        "| measure | value |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in rows],
        "",
        f"Forward pass, {args.repeats} interleaved pairs per length (median; rotary modules alone: "
        f"{5 * args.repeats} interleaved pairs):",
        "",
        "| tokens | unpatched | patched | ratio of medians | median of pair ratios | rotary module orig "
        "| rotary module ours | (ours − orig) / forward |",
        "|---|---|---|---|---|---|---|---|",
        *[
            f"| {n} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {r:.3f}× | {mr:.3f}× | {ra * 1e3:.2f} ms | {rb * 1e3:.2f} ms "
            f"| {(rb - ra) / a * 100:+.3f} % |"
            for n, a, b, r, mr, ra, rb in fwd_rows
        ],
        "",
        "The patch changes only the rotary module, called once per forward; the last column is its extra",
        "cost relative to the whole forward, the deterministic part of the overhead. The forward ratios",
        "also carry machine noise (they can swing by several percent on a loaded shared machine).",
        "",
    ]
    text = "\n".join(lines)
    print(text)
    write_text(args.output, text)
    tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
