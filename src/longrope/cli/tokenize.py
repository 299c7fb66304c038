"""``longrope tokenize``: corpora → memory-mapped token shards with a verified index."""

from __future__ import annotations

import sys

from longrope.tools import TokenizeConfig

CONFIG = TokenizeConfig

COMMAND = "tokenize"
HELP = "tokenize text files, folders or a hub dataset into token shards for evaluation and search"
DESCRIPTION = """\
Tokenize documents into a shard folder: token ids (uint16 when the vocabulary fits, else
uint32, memory-mapped on load), a document index, and meta.json with the tokenizer's
vocabulary hash and SHA-256 checksums (per shard and per 1 MiB block; every token is checked
when it is first read). No special tokens are stored (one spelled in a document, such as
</s>, is stored as its characters); evaluation adds BOS.

Inputs: .txt (one document per file), .jsonl (one per line, --text-field), .parquet, folders
of those (recursive), or a Hugging Face dataset name (pg19, proof-pile, user/name; needs the
hub). Files that cannot be read — not UTF-8, bad gzip/parquet, a file name that is not UTF-8 —
are skipped and listed (as are bad .jsonl lines); the run fails only when nothing is left.
Prefix an input with search=, heldout= or train= (fine-tuning documents) to pin all its documents
to that role; others are split by a stable hash of their id.

The output folder appears only when complete (built next to it, then renamed; a failed run
leaves the previous folder or none). Re-running with unchanged inputs re-hashes every byte and
does nothing if all match; any damage rebuilds the folder."""
EXAMPLE = """\
example:
  longrope tokenize --tokenizer tiny --input books/ notes.jsonl -o shards/tiny"""


def run(args: TokenizeConfig) -> int:
    rep = args.tokenize(lambda w: print(f"longrope tokenize: warning: {w}", file=sys.stderr))
    if rep.up_to_date:
        print(f"{rep.out_dir}: up to date ({rep.n_docs} documents, {rep.n_tokens} tokens, {rep.n_shards} shard(s))")
    else:
        print(f"{rep.out_dir}: {rep.n_docs} documents, {rep.n_tokens} tokens in {rep.n_shards} shard(s) "
              f"in {rep.seconds:.1f} s ({rep.tokens_per_second:,.0f} tokens/s)"
              + (f"; {len(rep.skipped)} skipped" if rep.skipped else ""))
    return 0
