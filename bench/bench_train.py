"""Benchmark: a fine-tuning step with factors installed (our loop) vs a plain Hugging Face training step.

Part 1, the step's cost, on the embedded tiny model (4 layers, hidden 256, vocab 4096, L = 256) and
one window of ``--length`` tokens of real text (a shipped book, the tiny tokenizer):

- ``plain``: ``model(input_ids, labels=input_ids).loss.backward()`` and an AdamW step — stock
  transformers, no factors, full ``[N, vocab]`` logits;
- ``ours``: what :func:`longrope.train.finetune` runs per step — YaRN factors installed through
  the patch (and swapped in, as the loop does when the window kind changes), the decoder body plus
  the chunked LM-head loss (:class:`longrope.train.loss.CausalLMLoss`) under an ``Accelerator``,
  ``accelerator.backward``, the AdamW step;
- ``ours-packed``: the same with the window cut into 4 documents (position ids restart, so
  attention gets a block-diagonal mask instead of the plain causal kernel).

Every measurement runs in a fresh subprocess: one warm-up step (it allocates the optimizer state),
then ``--steps`` measured steps. Time: ``--repeats`` subprocesses per mode, modes interleaved; the
median step. Memory: torch has no CPU allocator statistics, so the measure is the process's peak RSS
over a step above its RSS just before it (the kernel's high-water mark ``VmHWM``, reset through
``/proc/self/clear_refs`` before each step), the largest over the steps. glibc keeps freed blocks and
raises its mmap threshold as it goes, which makes such deltas depend on what earlier steps left
behind; the memory subprocesses (``--memory-repeats`` per mode, separate from the timed ones) run
with ``MALLOC_MMAP_THRESHOLD_=65536``, so every large tensor is its own mapping, returned when freed,
and RSS follows the live tensors (the deltas then repeat to 0.1 MB from step to step).

Part 2, data parallel: ``finetune`` for ``--ddp-steps`` steps with one process and with
``accelerate launch --config_file cpu-ddp.yaml --num_processes 2`` (torchrun, gloo), the same
``tokens_per_step``, on the tiny model with seeded random documents: the per-step losses must agree
to float tolerance.

Run (writes bench/results/train.json and train.md)::

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_train --length 2048 --repeats 5 --threads 1
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench._args import count, names, refusing
from bench._child import run_module
from bench._report import add_out_option, new_record, put_table, put_value, write_record

MODES = ("plain", "ours", "ours-packed")
DESCRIPTION = __doc__.split("Run (writes")[0].split("\n", 2)[2].strip()


def _status_kb(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {key} in /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)


def _window(tokenizer, length: int):
    """``length`` tokens of a shipped book (BOS first), as a ``[1, length]`` tensor."""
    import numpy as np
    import torch

    from longrope.models.loading import embedded_tiny_path

    book = embedded_tiny_path().parent / "corpus" / "search" / "shakespeare_hamlet.txt"
    ids = tokenizer(book.read_text(encoding="utf-8"), add_special_tokens=False)["input_ids"]
    if len(ids) < length:
        raise SystemExit(f"the book has {len(ids)} tokens, fewer than --length {length}")
    return torch.from_numpy(np.array([tokenizer.bos_token_id] + ids[: length - 1], dtype=np.int64))[None]


def worker(mode: str, length: int, steps: int, threads: int) -> dict:
    import torch

    from longrope.models import install_factors, load_model
    from longrope.rope import make_baseline

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    model, tok = load_model("tiny")
    model.train()
    x = _window(tok, length)  # [1, N]
    if mode == "plain":
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)

        def step() -> float:
            loss = model(input_ids=x, labels=x).loss  # transformers shifts the labels itself
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(loss)
    else:
        from accelerate import Accelerator

        from longrope.train.loss import CausalLMLoss, default_loss_chunk

        c = model.config
        fs = make_baseline("yarn", rope_theta=c.rope_parameters["rope_theta"], rotary_dim=c.head_dim,
                           original_length=c.max_position_embeddings, target_length=max(length, 2048))
        long_fs = fs.with_(short_factor=fs.long_factor)  # the loop's forced long factors
        patch = install_factors(model, long_fs)
        acc = Accelerator(cpu=True)
        wrapper = CausalLMLoss(model, chunk=default_loss_chunk(c.vocab_size))
        opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
        wrapper, opt = acc.prepare(wrapper, opt)
        seg = length // 4 if mode == "ours-packed" else length
        pos = (torch.arange(length) % seg)[None]  # [1, N]
        targets = torch.full_like(x, -100)
        targets[:, :-1] = x[:, 1:]
        targets[0, seg - 1 :: seg] = -100  # a segment's last token has no target
        n_targets = int((targets != -100).sum())

        def step() -> float:
            patch.swap(long_fs)
            loss, nll = wrapper(x, pos, targets, 1.0 / n_targets)
            acc.backward(loss)
            opt.step()
            opt.zero_grad(set_to_none=True)
            return float(nll) / n_targets

    loss0 = step()  # warm-up: allocates AdamW's state
    times, peaks = [], []
    for _ in range(steps):
        gc.collect()
        before = _status_kb("VmRSS")
        _reset_peak()
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
        peaks.append((_status_kb("VmHWM") - before) * 1024)
    return {"mode": mode, "length": length, "times": times, "peaks": peaks, "first_loss": loss0}


def measure(mode: str, length: int, steps: int, threads: int, *, memory: bool = False) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    if memory:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"  # large blocks mapped and unmapped: RSS follows live tensors
    out = run_module(__spec__.name, ["--worker", mode, "--length", str(length), "--steps", str(steps),
                                     "--threads", str(threads)], env=env)
    if out.returncode != 0:
        raise SystemExit(f"worker {mode} failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


_TRAIN_ROLE = """
from longrope.data import shards
if "train" not in shards.ROLE_CODES:  # until longrope.data pins the training role itself
    shards.ROLE_CODES["train"] = max(shards.ROLE_NAMES) + 1
    shards.ROLE_NAMES[shards.ROLE_CODES["train"]] = "train"
"""


def ddp_check(steps: int, seq_len: int) -> dict:
    """Losses of one process vs ``accelerate launch`` with two CPU processes, same global batch."""
    import numpy as np

    exec(_TRAIN_ROLE, {})

    from longrope.data.shards import FORMAT, FORMAT_VERSION, SPECIAL_TOKEN_POLICY, ShardWriter, write_meta
    from longrope.models import load_model
    from longrope.rope import make_baseline
    from longrope.train import FinetuneConfig, accelerate_config, finetune

    tmp = Path(tempfile.mkdtemp(prefix="bench-train-"))
    _, tok = load_model("tiny")
    from longrope.data import vocab_sha256

    writer = ShardWriter(tmp / "shards", np.dtype("<u2"))
    rng = np.random.default_rng(0)
    for k in range(8):  # seeded random documents: the check is about arithmetic, not learning
        writer.add(f"random/{k}", rng.integers(3, len(tok), size=int(rng.integers(100, 900))), "train")
    files = writer.finish()
    write_meta(tmp / "shards", {"format": FORMAT, "version": FORMAT_VERSION,
                                "tokenizer": {"name": "tiny", "vocab_sha256": vocab_sha256(tok)},
                                "special_tokens": SPECIAL_TOKEN_POLICY, "dtype": "uint16", "n_docs": writer.n_docs,
                                "n_tokens": writer.n_tokens, "inputs": [], "options": {}, "fingerprint": "bench",
                                **files})
    make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=1024).save(tmp / "f.json")
    base = dict(model="tiny", factors=str(tmp / "f.json"), data=str(tmp / "shards"), seq_len=seq_len, steps=steps,
                tokens_per_step=2 * seq_len, learning_rate=1e-3, warmup_steps=0, device="cpu", dtype="float32",
                quiet=True, export_dtype="float32")
    t0 = time.perf_counter()
    one = finetune(FinetuneConfig(**base, output=str(tmp / "one")))
    one_s = time.perf_counter() - t0
    cfg_file = tmp / "two.json"
    cfg_file.write_text(json.dumps(FinetuneConfig(**base, output=str(tmp / "two")).to_dict()))
    script = _TRAIN_ROLE + ("import json,sys,os;from longrope.train import FinetuneConfig,finetune;"
                            "r=finetune(FinetuneConfig(**json.load(open(sys.argv[1]))));"
                            "os.environ.get('RANK','0')=='0' and print(json.dumps(list(r.losses)))")
    (tmp / "run.py").write_text(script)
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config("cpu-ddp")),
           "--num_processes", "2", "--main_process_port", str(_free_port()), str(tmp / "run.py"), str(cfg_file)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    two_s = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"accelerate launch failed: {(out.stderr.strip().splitlines() or ['?'])[-1]}")
    two = json.loads(out.stdout.strip().splitlines()[-1])
    rel = [abs(a - b) / abs(a) for a, b in zip(one.losses, two)]
    return {"one": list(one.losses), "two": two, "max_rel_diff": max(rel), "one_s": one_s, "two_s": two_s,
            "tokens_per_step": one.tokens_per_step,
            "command": "accelerate launch --config_file src/longrope/embedded/assets/accelerate/cpu-ddp.yaml "
                       "--num_processes 2 SCRIPT"}


@refusing
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--length", type=count(2), default=2048)
    ap.add_argument("--repeats", type=count(), default=5, help="timed subprocesses per mode (interleaved)")
    ap.add_argument("--steps", type=count(), default=3, help="timed steps per subprocess (after one warm-up)")
    ap.add_argument("--memory-repeats", type=count(), default=2, help="memory subprocesses per mode")
    ap.add_argument("--threads", type=count(), default=1)
    ap.add_argument("--modes", type=names(MODES, required=("plain",)), default=",".join(MODES))
    ap.add_argument("--ddp-steps", type=count(0), default=3, help="steps of the 1- vs 2-process check (0: skip it)")
    ap.add_argument("--ddp-seq-len", type=count(2), default=256)
    add_out_option(ap, "train")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, args.length, args.steps, args.threads)))
        return
    modes = args.modes
    rec = new_record("train", "Fine-tuning step: factors + chunked loss vs a plain transformers step", script=__file__,
                     argv=argv, description=DESCRIPTION,
                     settings={"model": "tiny", "length": args.length, "repeats": args.repeats,
                               "memory_repeats": args.memory_repeats, "steps": args.steps,
                               "threads": args.threads, "modes": modes, "ddp_steps": args.ddp_steps,
                               "ddp_seq_len": args.ddp_seq_len})
    runs: dict[str, list[dict]] = {m: [] for m in modes}
    for r in range(args.repeats):
        for m in modes:  # interleaved, so drifting machine load hits every mode alike
            runs[m].append(measure(m, args.length, args.steps, args.threads))
            print(f"repeat {r + 1}/{args.repeats} {m}: {statistics.median(runs[m][-1]['times']):.3f} s", file=sys.stderr)
    mem: dict[str, list[dict]] = {m: [] for m in modes}
    for _ in range(args.memory_repeats):
        for m in modes:
            mem[m].append(measure(m, args.length, args.steps, args.threads, memory=True))
    mb = 1 / 2**20
    time_med = {m: statistics.median(t for run in runs[m] for t in run["times"]) for m in modes}
    peak_med = {m: statistics.median(max(run["peaks"]) for run in mem[m]) for m in modes}
    rows = []
    for m in modes:
        pair = [statistics.median(a["times"]) / statistics.median(b["times"]) for a, b in zip(runs[m], runs["plain"])]
        rows.append([m, time_med[m], time_med[m] / time_med["plain"], statistics.median(pair), peak_med[m] * mb,
                     peak_med[m] / peak_med["plain"]])
    put_table(rec, "step", ["mode", "step time (s, median)", "time / plain", "median of paired ratios",
                            "peak RSS over the step (MB, median)", "peak / plain"], rows,
              formats=[None, ".3f", ".3f", ".3f", ".1f", ".3f"],
              title=f"One training step at {args.length} tokens, tiny model, {args.threads} thread(s)",
              note="Goals: time / plain <= 1.05, peak / plain <= 1.0 (for `ours`).")
    if "ours" in modes:
        put_value(rec, "time_ratio", time_med["ours"] / time_med["plain"], ".3f")
        put_value(rec, "peak_ratio", peak_med["ours"] / peak_med["plain"], ".3f")
        put_value(rec, "time_goal_met", time_med["ours"] / time_med["plain"] <= 1.05, "met|NOT met")
        put_value(rec, "peak_goal_met", peak_med["ours"] / peak_med["plain"] <= 1.0, "met|NOT met")
    rec["data"]["runs"] = runs
    rec["data"]["memory_runs"] = mem
    if args.ddp_steps > 0:
        d = ddp_check(args.ddp_steps, args.ddp_seq_len)
        put_table(rec, "ddp", ["step", "loss, 1 process", "loss, 2 processes", "relative difference"],
                  [[i + 1, a, b, abs(a - b) / abs(a)] for i, (a, b) in enumerate(zip(d["one"], d["two"]))],
                  formats=[None, ".6f", ".6f", ".1e"],
                  title=f"Data parallel: same global batch ({d['tokens_per_step']} tokens per step)",
                  note=f"Two processes: `{d['command']}` (torchrun, gloo). One process: grad-accum 2.")
        put_value(rec, "ddp_max_rel_diff", d["max_rel_diff"], ".1e")
        rec["data"]["ddp"] = d
    write_record(rec, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
