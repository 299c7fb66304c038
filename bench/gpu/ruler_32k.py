"""Device benchmark: RULER by context length up to 32k on one GPU (issue 22), in one results folder.

Runs ``longrope eval ruler`` (lm-eval's own RULER tasks and metric, every factor set on the same
samples, resumable by cell) for the unscaled model at its trained lengths and, at the extended
length, the unscaled model, YaRN, NTK and the factor files given — the seed's results table
(a row per set, a column per length, Avg) — then writes ``OUT/summary.json`` (the table, seconds
per sample, peak GPU memory) and prints it. The device reaches nothing: the model and lm-eval's
samples come from what the call carries (how the SmolLM2 GGUF and the wheels travel:
``bench/gpu/smollm2_4x.py``, ``tools/stage.py``).

    python3 -m bench.gpu.ruler_32k --model .bench/smollm2.gguf --factors s4x/factors.json -o $OUT/ruler
    python3 -m bench.gpu.ruler_32k --smoke -o /tmp/ruler-smoke       # CPU, tiny model, a minute

Sizing on one H100/H200 (bfloat16, SmolLM2-135M): a 32k prompt prefills in about a second, so the
default 3 tasks × 20 samples × (2 trained lengths + 4 sets at 32k) fit one 10-minute call with room
to rerun; a killed call keeps its measured cells (run the same command again on the same machine).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from bench._args import count
from bench.gpu import cuda_ready

DEFAULT_TASKS = "niah_single_1,niah_multikey_1,vt"


def _settings(args: argparse.Namespace) -> dict:
    if args.smoke:  # the tiny model (L = 256): a fast task, one sample, lengths 256 and 512
        return {"model": args.model or "tiny", "ratio": 2, "device": "cpu", "dtype": "float32",
                "tasks": "niah_single_1", "samples": 1}
    return {"model": args.model or "smollm2", "ratio": args.ratio, "device": "cuda", "dtype": "bfloat16",
            "tasks": args.tasks, "samples": args.samples}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="results folder (a run there is continued)")
    ap.add_argument("--model", default=None, help="model (default smollm2; tiny with --smoke)")
    ap.add_argument("--factors", nargs="*", default=[], help="factor files measured at the extended length too")
    ap.add_argument("--ratio", type=count(), default=4, help="extended length as a multiple of L (default 4: 32k)")
    ap.add_argument("--tasks", default=DEFAULT_TASKS, help=f"RULER tasks (default {DEFAULT_TASKS})")
    ap.add_argument("--samples", type=count(), default=20, help="samples per cell (default 20)")
    ap.add_argument("--smoke", action="store_true", help="the same steps on a CPU with the tiny model")
    args = ap.parse_args(argv)

    from longrope.errors import UserError
    from longrope.models.loading import read_rope_info
    from longrope.options import config_from_dict
    from longrope.rope import make_baseline
    from longrope.runs.ruler import RulerConfig, run_ruler

    s = _settings(args)
    out = Path(args.output)
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if not cuda_ready("ruler_32k", s["device"]):
        return 2
    seconds: dict[str, float] = {}
    try:
        info = read_rope_info(s["model"])
        L = int(info.original_max_position_embeddings)
        target = s["ratio"] * L
        sets = []
        for method in ("yarn", "ntk"):
            fs = make_baseline(method, rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                               original_length=L, target_length=target)
            sets.append(str(fs.save(out / "sets" / method / "factors.json")))
        sets += list(args.factors)
        base = [n for n in (L // 2, L) if n >= 256]  # RULER's shortest (the tiny model: L alone)
        runs = {"base": {"lengths": base, "factors": [], "skip_none": False},
                "extended": {"lengths": [target], "factors": sets, "skip_none": False}}
        results = {}
        for name, run in runs.items():
            t = time.perf_counter()
            cfg = config_from_dict(RulerConfig, {
                "model": s["model"], "lengths": run["lengths"], "factors": run["factors"], "skip_none": run["skip_none"],
                "tasks": s["tasks"].split(","), "samples": s["samples"], "output": str(out / name), "device": s["device"],
                "dtype": s["dtype"], "quiet": True})
            results[name] = run_ruler(cfg, log=say)
            seconds[name] = time.perf_counter() - t
    except UserError as exc:
        print(f"ruler_32k: error: {exc}", file=sys.stderr)
        return 2
    table = {name: res["table"] for name, res in results.items()}
    per_sample = {name: [c["seconds_per_sample"] for c in res["cells"]] for name, res in results.items()}
    summary = {"settings": s, "original_length": L, "target_length": target, "table": table,
               "seconds": seconds, "seconds_per_sample": per_sample}
    if s["device"] == "cuda":
        import torch

        summary["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"target_length": target, "table": table,
                      "seconds": {k: round(v, 1) for k, v in seconds.items()}}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
