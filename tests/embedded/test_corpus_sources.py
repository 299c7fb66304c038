"""Reading R lazy-load data (how Austen and Moby Dick arrive) and local text folders."""

from __future__ import annotations

import gzip
import struct
import zlib

import numpy as np
import pytest

from longrope.embedded.corpus import read_r_lazyload, read_text_dir
from longrope.errors import UserError


def _write_lazyload(prefix, objects: dict) -> None:
    """Build an ``.rdx``/``.rdb`` pair the way R's lazy-load databases are laid out."""
    rdata = pytest.importorskip("rdata")
    from rdata.conversion import convert_python_to_r_data
    from rdata.unparser import unparse_data

    blob, index = b"", {}
    for name, obj in objects.items():
        raw = unparse_data(convert_python_to_r_data(obj))
        chunk = struct.pack(">I", len(raw)) + zlib.compress(raw)
        index[name] = np.array([len(blob), len(chunk)], dtype=np.int32)
        blob += chunk
    prefix.with_suffix(".rdb").write_bytes(blob)
    prefix.with_suffix(".rdx").write_bytes(
        gzip.compress(unparse_data(convert_python_to_r_data({"variables": index})))
    )
    del rdata


def test_read_r_lazyload_round_trip(tmp_path):
    lines = np.array(["PERSUASION", "", "Chapter 1", "Sir Walter Elliot, of Kellynch Hall,"])
    _write_lazyload(tmp_path / "Rdata", {"persuasion": lines, "mobydick": np.array(["Call me Ishmael."])})
    objs = read_r_lazyload(tmp_path / "Rdata")
    assert list(objs) == ["persuasion", "mobydick"]
    assert [str(x) for x in objs["persuasion"]] == list(lines)
    assert str(objs["mobydick"][0]) == "Call me Ishmael."


def test_read_text_dir(tmp_path):
    (tmp_path / "My Book.txt").write_text("line one  \r\nline two\r\n")
    (tmp_path / "ignored.md").write_text("not a book")
    books = read_text_dir(tmp_path)
    assert [(b.name, b.text, b.source) for b in books] == [("My_Book", "line one\nline two\n", "local")]
    with pytest.raises(UserError, match="is not a folder"):
        read_text_dir(tmp_path / "nothing_here")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="no .txt files"):
        read_text_dir(tmp_path / "empty")
