"""Fixtures for the data tests: a tiny in-memory tokenizer and a small mixed-format corpus."""

from __future__ import annotations

import gzip
import json

import pytest

from tests.data.data_helpers import TEXTS, make_tokenizer


@pytest.fixture(scope="session")
def tokenizer():
    return make_tokenizer()


@pytest.fixture
def corpus_dir(tmp_path):
    """A folder with .txt, .jsonl(.gz), .parquet documents, a stray file and an unreadable one."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    root = tmp_path / "books"
    (root / "sub").mkdir(parents=True)
    (root / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    (root / "sub" / "b.txt").write_text(TEXTS[1], encoding="utf-8")
    with open(root / "c.jsonl", "w", encoding="utf-8") as f:
        f.write(json.dumps({"text": TEXTS[2], "id": "hamlet"}) + "\n")
        f.write("\n")
        f.write(json.dumps({"text": TEXTS[3]}) + "\n")
    with gzip.open(root / "d.jsonl.gz", "wt", encoding="utf-8") as f:
        f.write(json.dumps({"text": TEXTS[4]}) + "\n")
    pq.write_table(pa.table({"text": [TEXTS[0] + " again", TEXTS[1] + " again"]}), root / "e.parquet")
    (root / "notes.md").write_text("not a document type", encoding="utf-8")
    (root / "broken.txt").write_bytes(b"caf\xe9 latin-1, not UTF-8")
    return root
