"""``longrope.data.sources.resolve_sources``: what an ``--input`` string names."""

from __future__ import annotations

import pytest

from longrope.data.sources import resolve_sources
from longrope.errors import UserError


@pytest.mark.parametrize("spec", ["", " ", "search=", "heldout=", "train= "])
def test_an_input_that_names_nothing_is_refused_not_read_as_the_current_folder(spec, tmp_path, monkeypatch):
    """'' is Path('.'): ``--input search=$DIR`` with DIR unset tokenized the whole current folder (battery 5)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a document that must not be read", encoding="utf-8")
    with pytest.raises(UserError) as err:
        resolve_sources([spec])
    message = str(err.value)
    assert "names no file, folder or dataset" in message and "\n" not in message
    assert [s.kind for s in resolve_sources(["."])] == ["folder"]  # the current folder, when named, still is one
