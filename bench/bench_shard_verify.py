"""Benchmark: what verifying every token read from a shard folder costs.

Builds a synthetic shard folder of ``--tokens`` random uint16 tokens (one shard, documents of
``--doc-tokens`` tokens) with :class:`longrope.data.shards.ShardWriter`, then times, on a warm
page cache (the file was just written; evaluation reads it the same way):

- opening it at each ``verify`` level (``size``, ``sample`` = the default, ``full`` = what a
  re-run of ``longrope tokenize`` does before calling a folder up to date);
- reading every document and converting it to int64 (what evaluation does with a window):
  unverified (the same reads of the shard file without hashing, ``TokenCorpus._bytes``), verified
  (``TokenCorpus.tokens``: each 1 MiB block hashed as it is read), and read again in the same open corpus
  (the bytes returned are the bytes hashed: only the last ``KEPT_BLOCKS`` blocks are kept, any other block
  is read and hashed again, so a shard rewritten while a command reads it is caught);
- a typical evaluation sample: ``--windows`` windows of ``--window`` tokens from random
  documents, unverified vs verified (first read);
- the same folder without per-block sums (written before they existed): the first read
  hashes the whole shard.

Times are the best of ``--repeats`` runs (each on a freshly opened corpus). Writes a Markdown
table to stdout and, with ``--out``, to a file::

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.bench_shard_verify --out bench/results/shard_verify.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from bench._args import count, refusing
from bench._record import command_line


def build(folder: Path, n_tokens: int, doc_tokens: int, seed: int) -> float:
    from longrope.data.shards import ShardWriter, write_meta

    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    w = ShardWriter(folder, np.dtype("<u2"), shard_tokens=max(n_tokens, 1))
    n_docs = 0
    left = n_tokens
    while left > 0:
        n = min(doc_tokens, left)
        w.add(f"doc{n_docs}", rng.integers(0, 50000, n, dtype=np.uint16), None)
        left -= n
        n_docs += 1
    files = w.finish()
    write_meta(folder, {"format": "longrope-token-shards", "version": 1, "dtype": "uint16", "n_docs": n_docs,
                        "n_tokens": w.n_tokens, "tokenizer": {"name": "synthetic", "vocab_sha256": "-"}, **files})
    return time.perf_counter() - t


def best(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


@refusing
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=count(), default=100_000_000)
    ap.add_argument("--doc-tokens", type=count(), default=100_000)
    ap.add_argument("--windows", type=count(), default=20)
    ap.add_argument("--window", type=count(2), default=8192)
    ap.add_argument("--repeats", type=count(), default=3)
    ap.add_argument("--seed", type=count(0), default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from longrope.data import TokenCorpus
    from longrope.data.shards import BLOCK_BYTES, KEPT_BLOCKS

    rows: list[tuple[str, float, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "shards"
        built = build(folder, args.tokens, args.doc_tokens, args.seed)
        mb = args.tokens * 2 / 2**20
        rows.append(("write the folder (ShardWriter: whole + per-block SHA-256)", built, ""))

        for level in ("size", "sample", "full"):
            rows.append((f"open, verify={level!r}", best(lambda lv=level: TokenCorpus.open(folder, verify=lv),
                                                         args.repeats), ""))

        def read_all_unverified() -> None:
            c = TokenCorpus.open(folder, verify="size")
            for i in range(len(c)):
                row = c.index[i]
                off, n, item = int(row["offset"]), int(row["length"]), c.dtype.itemsize
                np.frombuffer(c._bytes(int(row["shard"]), off * item, (off + n) * item), dtype=c.dtype).astype(np.int64)

        def read_all_verified(corpus=None) -> None:
            c = corpus or TokenCorpus.open(folder, verify="size")
            for i in range(len(c)):
                np.array(c.tokens(i), dtype=np.int64)

        warm = TokenCorpus.open(folder, verify="size")
        read_all_verified(warm)
        unv = best(read_all_unverified, args.repeats)
        ver = best(read_all_verified, args.repeats)
        again = best(lambda: read_all_verified(warm), args.repeats)
        rows.append((f"read all {args.tokens:,} tokens → int64, unverified", unv, f"{mb / unv:,.0f} MB/s"))
        rows.append(("… verified, first read (every block hashed)", ver, f"+{ver - unv:.2f} s ({ver / unv:.2f}×)"))
        rows.append((f"… read again in the same open corpus (the last {KEPT_BLOCKS} blocks kept, others hashed again)",
                     again, f"{again / unv:.2f}×"))

        rng = np.random.default_rng(args.seed + 1)
        n_docs = len(warm)
        picks = [(int(d), int(rng.integers(0, max(1, args.doc_tokens - args.window))))
                 for d in rng.integers(0, n_docs, args.windows)]

        def windows(verified: bool) -> None:
            c = TokenCorpus.open(folder, verify="size")
            for d, off in picks:
                if verified:
                    view = c.tokens(d, off, off + args.window)
                else:
                    row, item = c.index[d], c.dtype.itemsize
                    o = int(row["offset"]) + off
                    view = np.frombuffer(c._bytes(int(row["shard"]), o * item, (o + args.window) * item), dtype=c.dtype)
                np.array(view, dtype=np.int64)

        w_unv = best(lambda: windows(False), args.repeats)
        w_ver = best(lambda: windows(True), args.repeats)
        rows.append((f"{args.windows} windows of {args.window} tokens, unverified", w_unv, ""))
        rows.append(("… verified, first read", w_ver, f"+{(w_ver - w_unv) * 1e3:.0f} ms"))

        meta_path = folder / "meta.json"
        meta = json.loads(meta_path.read_text())
        meta.pop("block_bytes")
        for rec in meta["shards"]:
            rec.pop("block_sha256")
        meta_path.write_text(json.dumps(meta))
        legacy = best(lambda: TokenCorpus.open(folder, verify="size").tokens(0, 0, args.window), args.repeats)
        rows.append(("folder without per-block sums: first read of one window (whole shard hashed)", legacy, ""))
    full = next(sec for name, sec, _ in rows if name == "open, verify='full'")
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())

    lines = [
        "# Shard verification cost (`TokenCorpus`: every token checked before use)",
        "",
        f"Synthetic folder: {args.tokens:,} uint16 tokens ({mb:,.0f} MB, one shard), documents of "
        f"{args.doc_tokens:,} tokens; blocks of {BLOCK_BYTES // 2**20} MiB, SHA-256. Warm page cache; "
        f"best of {args.repeats}. Python {platform.python_version()}, numpy {np.__version__}, "
        f"{platform.machine()}.",
        "",
        "| step | seconds | note |",
        "|---|---:|---|",
        *[f"| {name} | {sec:.3f} | {note} |" for name, sec, note in rows],
        "",
        f"Hashing runs at ≈ {mb / full:,.0f} MB/s here (the full check), i.e. ≈ {full / mb * 1e3:.1f} ms per MB of "
        f"tokens read (a block is hashed again unless it is one of the last {KEPT_BLOCKS} read). A sample of "
        f"{args.windows} windows of {args.window} tokens pays for the {BLOCK_BYTES // 2**20} MiB blocks under it "
        f"({(w_ver - w_unv) * 1e3:.0f} ms), which is small next to one forward pass over those windows. Load "
        f"average during the run (1/5/15 min): {load}.",
        "",
        command_line(__file__),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
