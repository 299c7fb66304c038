"""Corpora → token shards on disk, and seeded document sampling with a search/held-out split.

- :func:`tokenize_corpus` (``longrope tokenize``): local ``.txt``/``.jsonl``/``.parquet`` files and
  folders, or Hugging Face datasets, streamed into memory-mapped ``uint16``/``uint32`` shards with a
  document index and a ``meta.json`` that records the tokenizer's vocabulary hash and checksums.
- :class:`TokenCorpus`: opens and verifies a shard folder; documents are zero-copy views.
- :func:`sample_documents`: documents with ≥ N tokens, chosen with a seeded generator, from the
  ``search`` or ``heldout`` role of a stable hash split (:func:`document_role`).
"""

from longrope.data.sampling import SPLITS, Sample, document_role, document_roles, sample_documents
from longrope.data.shards import TokenCorpus, vocab_sha256
from longrope.data.tokenize import TokenizeReport, tokenize_corpus

__all__ = [
    "SPLITS",
    "Sample",
    "TokenCorpus",
    "TokenizeReport",
    "document_role",
    "document_roles",
    "sample_documents",
    "tokenize_corpus",
    "vocab_sha256",
]
