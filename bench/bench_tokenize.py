"""Benchmark: ``tokenize_corpus`` throughput (tokens/s) and memory on a corpus of real text.

The corpus is built in a temporary folder from text already on the machine: the CPython
standard library's ``.py`` files (one document each, as ``.jsonl``) and the embedded corpus
books (``.txt``), replicated to ``--mb`` megabytes. Each run is a fresh subprocess:

- all cores (the ``tokenizers`` backend's own thread pool, the default), and
- one core (``RAYON_NUM_THREADS=1``), to show what the parallel batch encoding buys;
- the same at twice the corpus size, to show that peak memory does not grow with the corpus.

Run::

    .venv/bin/python bench/bench_tokenize.py --tokenizer smollm2 --mb 40 --out bench/results/tokenize.md
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def build_corpus(folder: Path, mb: float) -> int:
    """Write ≈ ``mb`` MB of documents into ``folder``; returns the bytes written."""
    import glob

    folder.mkdir(parents=True, exist_ok=True)
    docs: list[str] = []
    for p in sorted(glob.glob("/usr/lib/python3*/**/*.py", recursive=True))[:4000]:
        try:
            docs.append(Path(p).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError):
            continue
    books = sorted((ROOT / "src/longrope/embedded/assets/corpus").rglob("*.txt"))
    docs += [b.read_text(encoding="utf-8") for b in books]
    target = int(mb * 2**20)
    written, rep = 0, 0
    while written < target:
        with open(folder / f"part{rep:03d}.jsonl", "w", encoding="utf-8") as f:
            for d in docs:
                line = json.dumps({"text": d}) + "\n"
                f.write(line)
                written += len(line.encode())
                if written >= target:
                    break
        rep += 1
    return written


def worker(tokenizer: str, corpus: str, out: str) -> dict:
    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer

    tok = load_tokenizer(tokenizer)
    t0 = time.perf_counter()
    rep = tokenize_corpus(tok, [corpus], out, tokenizer_name=tokenizer, progress=False, force=True)
    secs = time.perf_counter() - t0
    return {"docs": rep.n_docs, "tokens": rep.n_tokens, "seconds": secs,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def run_one(tokenizer: str, corpus: Path, out: Path, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    r = subprocess.run([sys.executable, __file__, "--worker", "--tokenizer", tokenizer, "--corpus", str(corpus),
                        "--shards", str(out)], capture_output=True, text=True, env=env, check=False)
    if r.returncode != 0:
        raise SystemExit(r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--mb", type=float, default=40)
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--shards", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.tokenizer, args.corpus, args.shards)))
        return
    cores = os.cpu_count()
    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        small, big = Path(tmp, "small"), Path(tmp, "big")
        n_small = build_corpus(small, args.mb)
        n_big = build_corpus(big, 2 * args.mb)
        for label, corpus, nbytes, threads in (
            (f"{n_small / 2**20:.0f} MB, all {cores} cores", small, n_small, None),
            (f"{n_small / 2**20:.0f} MB, 1 core", small, n_small, 1),
            (f"{n_big / 2**20:.0f} MB, all {cores} cores", big, n_big, None),
        ):
            r = run_one(args.tokenizer, corpus, Path(tmp, "out"), threads)
            rows.append((label, r, nbytes))
            print(label, r, file=sys.stderr)
    lines = [f"Tokenizer `{args.tokenizer}`; corpus: CPython stdlib sources + the embedded books as .jsonl; "
             f"{cores} cores (shared machine). Time includes reading, encoding, writing and hashing the shards.",
             "", "| run | documents | tokens | seconds | tokens/s | MB/s | peak RSS (MB) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for label, r, nbytes in rows:
        lines.append(f"| {label} | {r['docs']} | {r['tokens']} | {r['seconds']:.1f} | {r['tokens'] / r['seconds']:,.0f} | "
                     f"{nbytes / 2**20 / r['seconds']:.1f} | {r['maxrss_mb']:.0f} |")
    from _record import command_line  # bench/ is on sys.path when a bench script runs

    lines += ["", command_line(__file__)]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        sys.path.insert(0, str(ROOT / "src"))
        from longrope.io import write_text

        write_text(args.out, text)


if __name__ == "__main__":
    main()
