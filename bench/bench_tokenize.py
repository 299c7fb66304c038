"""Benchmark: ``tokenize_corpus`` throughput (tokens/s) and memory on a corpus of real text.

The corpus is built in a temporary folder from text already on the machine: the CPython
standard library's ``.py`` files (one document each, as ``.jsonl``) and the embedded corpus
books (``.txt``), replicated to ``--mb`` megabytes. Each run is a fresh subprocess:

- all cores (the ``tokenizers`` backend's own thread pool, the default), and
- one core (``RAYON_NUM_THREADS=1``), to show what the parallel batch encoding buys;
- the same at twice the corpus size, to show that peak memory does not grow with the corpus.

Run (writes the record ``bench/results/tokenize.json`` and ``tokenize.md`` rendered from it)::

    .venv/bin/python -m bench.bench_tokenize --tokenizer tiny --mb 20
    .venv/bin/python -m bench.bench_tokenize --tokenizer smollm2 --mb 40 --out /tmp/tokenize-smollm2.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

from bench._args import amount, refusing
from bench._child import run_module
from bench._report import add_out_option, new_record, put_table, put_value, write_record

ROOT = Path(__file__).resolve().parent.parent
DESCRIPTION = """\
`tokenize_corpus` (what `longrope tokenize` runs) on a corpus built in a temporary folder from text
already on the machine: the CPython standard library's `.py` files (one document each, as `.jsonl`)
and the embedded corpus books, replicated to the asked size. Each run is a fresh subprocess: with
all cores (the `tokenizers` backend's own thread pool), with one (`RAYON_NUM_THREADS=1`), and at
twice the corpus size (peak memory should not grow with the corpus). Time includes reading,
encoding, writing and hashing the shards; peak RSS is the worker process's high-water mark."""


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
    with open("/proc/self/statm") as f:  # the process before any text: interpreter, libraries, tokenizer
        rss_start_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    t0 = time.perf_counter()
    rep = tokenize_corpus(tok, [corpus], out, tokenizer_name=tokenizer, progress=False, force=True)
    secs = time.perf_counter() - t0
    return {"docs": rep.n_docs, "tokens": rep.n_tokens, "seconds": secs,
            "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "rss_start_mb": rss_start_mb}


def run_one(tokenizer: str, corpus: Path, out: Path, threads: int | None) -> dict:
    env = dict(os.environ)
    if threads:
        env["RAYON_NUM_THREADS"] = str(threads)
    r = run_module(__spec__.name, ["--worker", "--tokenizer", tokenizer, "--corpus", str(corpus), "--shards", str(out)],
                   env=env, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


@refusing
def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokenizer", default="smollm2")
    ap.add_argument("--mb", type=amount, default=40)
    add_out_option(ap, "tokenize")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--corpus", help=argparse.SUPPRESS)
    ap.add_argument("--shards", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.tokenizer, args.corpus, args.shards)))
        return
    rec = new_record("tokenize", "Tokenization throughput (`longrope tokenize` / `tokenize_corpus`)", script=__file__,
                     argv=argv, description=DESCRIPTION, settings={"tokenizer": args.tokenizer, "mb": args.mb})
    cores = os.cpu_count()
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench-tok-") as tmp:
        small, big = Path(tmp, "small"), Path(tmp, "big")
        n_small = build_corpus(small, args.mb)
        n_big = build_corpus(big, 2 * args.mb)
        for key, corpus, nbytes, threads in (("small_all", small, n_small, None), ("small_one", small, n_small, 1),
                                             ("big_all", big, n_big, None)):
            r = run_one(args.tokenizer, corpus, Path(tmp, "out"), threads)
            runs[key] = {**r, "bytes": nbytes, "threads": threads or cores}
            print(key, r, file=sys.stderr)
    rows = [[r["bytes"] / 2**20, r["threads"], r["docs"], r["tokens"], r["seconds"], r["tokens"] / r["seconds"],
             r["bytes"] / 2**20 / r["seconds"], r["rss_start_mb"], r["maxrss_mb"]] for r in runs.values()]
    put_table(rec, "runs", ["corpus (MB)", "threads", "documents", "tokens", "seconds", "tokens/s", "MB/s",
                            "RSS before any text (MB)", "peak RSS (MB)"], rows,
              formats=[".0f", None, None, ",d", ".1f", ",.0f", ".1f", ".0f", ".0f"],
              title="Throughput and memory (threads: the tokenizer backend's; all = every core)")
    for key, r in runs.items():
        put_value(rec, f"tokens_per_s_{key}", r["tokens"] / r["seconds"], ",.0f")
        put_value(rec, f"mtokens_per_s_{key}", r["tokens"] / r["seconds"] / 1e6, ".2f")
        put_value(rec, f"peak_rss_mb_{key}", r["maxrss_mb"], ".0f")
        put_value(rec, f"start_rss_mb_{key}", r["rss_start_mb"], ".0f")
        put_value(rec, f"corpus_mb_{key}", r["bytes"] / 2**20, ".0f")
    put_value(rec, "speedup_all_over_one", runs["small_one"]["seconds"] / runs["small_all"]["seconds"], ".2f")
    rec["settings"]["cores"] = cores
    rec["data"] = {"runs": runs}
    write_record(rec, args.out)


if __name__ == "__main__":
    raise SystemExit(main())
