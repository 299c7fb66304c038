"""``longrope.io``: the build-aside-then-swap of a whole folder (``replace_folder``)."""

from __future__ import annotations

import os

import pytest

from longrope.io import aside_prefix, remove_dead_leftovers, replace_folder


def _folder(path, text):
    path.mkdir()
    (path / "f.txt").write_text(text)
    return path


def test_replace_folder_puts_the_new_folder_in_place_and_removes_the_old(tmp_path):
    dest = tmp_path / "out"
    assert replace_folder(_folder(tmp_path / ".out.tmp-1", "one"), dest) == dest
    assert (dest / "f.txt").read_text() == "one"
    replace_folder(_folder(tmp_path / ".out.tmp-2", "two"), dest)
    assert (dest / "f.txt").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # nothing aside, nothing left over


def test_replace_folder_puts_the_old_folder_back_when_the_rename_fails(tmp_path, monkeypatch):
    dest = _folder(tmp_path / "out", "old")
    new = _folder(tmp_path / ".out.tmp-1", "new")
    real = os.replace
    calls = []

    def failing_second(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", failing_second)
    with pytest.raises(PermissionError):
        replace_folder(new, dest)
    monkeypatch.undo()
    assert (dest / "f.txt").read_text() == "old" and (new / "f.txt").read_text() == "new"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(aside_prefix(dest))]


def test_a_folder_left_aside_by_a_dead_process_is_removed(tmp_path):
    dest = tmp_path / "out"
    dead = _folder(tmp_path / f"{aside_prefix(dest)}999999999-abc", "old")
    live = _folder(tmp_path / f"{aside_prefix(dest)}{os.getpid()}-abc", "old")
    assert remove_dead_leftovers(tmp_path, aside_prefix(dest)) == [dead]
    assert live.exists()
