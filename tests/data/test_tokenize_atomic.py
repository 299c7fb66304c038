"""tokenize's output is one atomic unit; unreadable input is skipped and reported, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from longrope.data import TokenCorpus, tokenize_corpus
from longrope.data import tokenize as tokenize_mod
from longrope.errors import UserError
from tests.data.data_helpers import TEXTS


def _run(tok, inputs, out, **kw):
    return tokenize_corpus(tok, [str(p) for p in inputs], out, tokenizer_name="test-bpe", progress=False, **kw)


def _siblings(out):
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}."))


def test_a_failed_run_leaves_no_output_and_no_build_folder(tokenizer, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("  \n", encoding="utf-8")
    out = tmp_path / "out"
    with pytest.raises(UserError, match="empty corpus"):
        _run(tokenizer, [tmp_path / "empty"], out)
    assert not out.exists() and _siblings(out) == []


def test_an_interrupted_rebuild_keeps_the_previous_folder(tokenizer, corpus_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    _run(tokenizer, [corpus_dir], out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def boom(tok):
        def encode(texts):
            raise KeyboardInterrupt  # as a Ctrl-C in the middle of encoding
        return encode

    monkeypatch.setattr(tokenize_mod, "make_encoder", boom)
    with pytest.raises(KeyboardInterrupt):
        _run(tokenizer, [corpus_dir], out, force=True)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert _siblings(out) == []
    TokenCorpus.open(out, verify="full")


def test_an_input_rewritten_while_it_is_read_is_refused_and_nothing_written(tokenizer, corpus_dir, tmp_path,
                                                                            monkeypatch):
    """A file rewritten while tokenize read its inputs gave shards of whatever it read, under a fingerprint of the
    files as they were before: the change was noticed only by the next run (battery 19)."""
    out = tmp_path / "out"
    victim = sorted(p for p in corpus_dir.rglob("*") if p.is_file())[-1]

    def edit():
        if victim.read_text(encoding="utf-8") != "edited meanwhile":
            victim.write_text("edited meanwhile", encoding="utf-8")

    _refused_when_changed_by(edit, victim, tokenizer, corpus_dir, out, monkeypatch)


def _refused_when_changed_by(change, victim, tokenizer, corpus_dir, out, monkeypatch):
    """Tokenize ``corpus_dir`` into ``out`` with ``change()`` run before every encoding batch: refused in one line
    naming ``victim``, nothing left behind."""
    real = tokenize_mod.make_encoder

    def changing(tok):
        encode = real(tok)

        def encode_and_change(texts):
            change()
            return encode(texts)
        return encode_and_change

    monkeypatch.setattr(tokenize_mod, "make_encoder", changing)
    with pytest.raises(UserError, match="changed while it was read") as e:
        _run(tokenizer, [corpus_dir], out)
    assert victim.name in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and _siblings(out) == []


def test_an_input_replaced_with_its_size_and_date_kept_while_it_is_read_is_refused(tokenizer, corpus_dir, tmp_path,
                                                                                  monkeypatch):
    """The first file, already read, replaced by a rename with the same size and modification time (rsync -t,
    cp -p): the changed-while-read check saw only sizes and dates, the shards kept the old text, and the next run
    called them up to date (battery 22b)."""
    out = tmp_path / "out"
    victim = sorted(p for p in corpus_dir.rglob("*") if p.is_file() and p.suffix == ".txt")[0]

    def replace():
        old = victim.read_text(encoding="utf-8")
        if old != old.swapcase():
            st = victim.stat()
            spare = tmp_path / "spare.txt"
            spare.write_text(old.swapcase(), encoding="utf-8")
            os.utime(spare, ns=(st.st_atime_ns, st.st_mtime_ns))
            os.replace(spare, victim)

    _refused_when_changed_by(replace, victim, tokenizer, corpus_dir, out, monkeypatch)


def test_a_rebuild_replaces_the_folder_whole(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    _run(tokenizer, [corpus_dir], out, shard_tokens=40)
    assert len(list(out.glob("shard-*.bin"))) > 2
    (out / ".building").mkdir()  # leftovers of the earlier in-folder build scheme go too
    _run(tokenizer, [corpus_dir], out, force=True)
    assert sorted(p.name for p in out.iterdir()) == ["index.npy", "meta.json", "names.jsonl", "shard-00000.bin"]
    assert _siblings(out) == []


def test_an_empty_existing_folder_is_fine_and_a_foreign_one_is_refused(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    assert _run(tokenizer, [corpus_dir], out).n_docs == 7
    other = tmp_path / "mine"
    other.mkdir()
    (other / "thesis.tex").write_text("precious", encoding="utf-8")
    with pytest.raises(UserError, match="thesis.tex") as e:
        _run(tokenizer, [corpus_dir], other)
    assert "\n" not in str(e.value) and (other / "thesis.tex").read_text(encoding="utf-8") == "precious"


def test_a_folder_holding_what_a_file_browser_writes_is_empty_or_still_a_shard_folder(tokenizer, corpus_dir, tmp_path):
    """A shard folder looked at once in Finder (its .DS_Store) could not be tokenized again, and a new -o holding only
    one was refused (third review of battery 29)."""
    out = tmp_path / "out"
    _run(tokenizer, [corpus_dir], out)
    (out / ".DS_Store").write_bytes(b"x")
    assert _run(tokenizer, [corpus_dir], out, force=True).n_docs == 7
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    (fresh / ".DS_Store").write_bytes(b"x")
    assert _run(tokenizer, [corpus_dir], fresh).n_docs == 7


def test_stale_build_folders_of_dead_runs_are_removed(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    stale = tmp_path / f".out.tokenize-{dead_pid}"
    stale.mkdir()
    (stale / "shard-00000.bin").write_bytes(b"half")
    (tmp_path / f".out.tokenize-{dead_pid}.old").mkdir()
    live = tmp_path / f".out.tokenize-{os.getppid()}"  # a running process: maybe another tokenize
    live.mkdir()
    _run(tokenizer, [corpus_dir], out)
    assert _siblings(out) == [live.name]


def test_output_under_a_file_is_one_line(tokenizer, corpus_dir, tmp_path):
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    with pytest.raises(UserError, match="writable") as e:
        _run(tokenizer, [corpus_dir], tmp_path / "afile" / "out")
    assert "\n" not in str(e.value)


def test_unwritable_parent_is_one_line(tokenizer, corpus_dir, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="writable"):
            _run(tokenizer, [corpus_dir], ro / "out")
    finally:
        ro.chmod(0o700)


def test_non_utf8_names_and_text_are_skipped_and_reported(tokenizer, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    (src / "good.txt").write_text(TEXTS[0], encoding="utf-8")
    bad_name = os.fsdecode(b"caf\xe9.txt")  # a Latin-1 file name on a UTF-8 system
    (src / bad_name).write_text(TEXTS[1], encoding="utf-8")
    (src / "latin1.txt").write_bytes("café".encode("latin-1"))
    (src / "lines.jsonl").write_text(json.dumps({"text": "ok line"}) + "\n" + '{"text": "bad \\ud800 line"}\n',
                                     encoding="utf-8")
    rep = _run(tokenizer, [src], tmp_path / "out")
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in rep.skipped}
    assert "not UTF-8" in reasons["latin1.txt"]
    assert "file name is not valid UTF-8" in reasons["caf\\xe9.txt"]
    assert "not valid Unicode" in reasons["lines.jsonl"]
    c = TokenCorpus.open(tmp_path / "out")
    assert sorted(c.names) == ["in/good.txt", "in/lines.jsonl#0"]
    json.dumps(c.meta["skipped"]).encode("utf-8")  # the record itself is valid UTF-8
    assert np.asarray(c.tokens(0)).size > 0


def test_only_unreadable_input_is_one_line_naming_the_file(tokenizer, tmp_path):
    (tmp_path / "latin1.txt").write_bytes("café au lait".encode("latin-1"))
    with pytest.raises(UserError) as e:
        _run(tokenizer, [tmp_path / "latin1.txt"], tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and "latin1.txt" in msg and "not UTF-8" in msg
    assert not (tmp_path / "out").exists()


def test_disk_full_and_unlistable_inputs_are_one_line(tokenizer, corpus_dir, tmp_path, monkeypatch):
    import errno

    from longrope.data import sources
    from longrope.data.shards import ShardWriter

    out = tmp_path / "out"

    def full(self, name, ids, role=None):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(ShardWriter, "add", full)
        with pytest.raises(UserError, match="No space left on device.*free space") as e:
            _run(tokenizer, [corpus_dir], out)
    assert "\n" not in str(e.value) and not out.exists() and _siblings(out) == []

    def unlistable(self, log, links=None):
        raise PermissionError(errno.EACCES, "Permission denied", str(corpus_dir / "locked"))
        yield  # a generator, like the real one

    monkeypatch.setattr(sources.Source, "documents", unlistable)
    with pytest.raises(UserError, match="cannot read .*locked") as e:
        _run(tokenizer, [corpus_dir], out)
    assert "\n" not in str(e.value) and not out.exists() and _siblings(out) == []


def test_a_full_disk_that_fails_the_close_too_leaves_no_build_folder(tokenizer, corpus_dir, tmp_path, monkeypatch):
    """On a full disk, closing a shard flushes its buffer and fails again: the abort raised from inside the
    clean-up, so the build folder (and its space) stayed and the error had no path or fix (battery 6)."""
    import errno

    from longrope.data.shards import ShardWriter

    class Full:
        def write(self, data=b""):  # close() flushes the buffer: it fails like the write did
            raise OSError(errno.ENOSPC, "No space left on device")

        close = flush = write

    def add(self, name, ids, role=None):
        self._f = Full()
        self._f.write(b"")

    monkeypatch.setattr(ShardWriter, "add", add)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="No space left on device.*free space"):
        _run(tokenizer, [corpus_dir], out)
    assert not out.exists() and _siblings(out) == []


def test_a_shard_past_the_file_size_limit_is_left_to_the_cli_line(tokenizer, corpus_dir, tmp_path, monkeypatch):
    """`ulimit -f`: EFBIG was worded 'cannot write shards ... (File too large); free space or choose another -o' (the
    wrong fix, battery 13); it now reaches the CLI's one line naming the limit, with no build folder left."""
    import errno

    from longrope.data.shards import ShardWriter

    out = tmp_path / "out"

    def too_large(self, name, ids, role=None):
        raise OSError(errno.EFBIG, "File too large")

    monkeypatch.setattr(ShardWriter, "add", too_large)
    with pytest.raises(OSError, match="File too large"):
        _run(tokenizer, [corpus_dir], out)
    assert not out.exists() and _siblings(out) == []


@pytest.mark.parametrize("new", ["absent", "holding only a .DS_Store"])
def test_a_second_run_into_one_new_output_is_refused_not_swapped_in(tokenizer, corpus_dir, tmp_path, monkeypatch,
                                                                    new):
    """Two ``tokenize -o NEW`` at once (other inputs) both succeeded: the second swapped its shards in for the
    first's, whose report named documents the folder no longer held. A folder new when the run began is placed
    only where nothing arrived meanwhile (io.place_new); a shard folder there at the start is rebuilt as before.
    A new folder holding only a file browser's .DS_Store is new too (it was swapped; fourth review of battery 29)."""
    import shutil

    out = tmp_path / "out"
    if new != "absent":
        out.mkdir()
        (out / ".DS_Store").write_bytes(b"x")
    first = tmp_path / "first"
    _run(tokenizer, [corpus_dir], first)
    write_meta = tokenize_mod.write_meta

    def the_other_run_finishes_first(building, meta):
        shutil.rmtree(out, ignore_errors=True)  # (the other run's place_new clears a folder of droppings)
        os.rename(first, out)
        return write_meta(building, meta)

    monkeypatch.setattr(tokenize_mod, "write_meta", the_other_run_finishes_first)
    one = tmp_path / "one.txt"
    one.write_text(TEXTS[0], encoding="utf-8")
    with pytest.raises(UserError, match="was written by another process while this one worked"):
        _run(tokenizer, [one], out)
    assert len(TokenCorpus.open(out, verify="full").lengths) > 1  # the other run's folder, not this one's
    assert _siblings(out) == []


@pytest.mark.parametrize("replacement", ["nothing", "a file"])
def test_a_folder_removed_while_the_inputs_are_listed_is_refused_as_a_changed_input(tokenizer, tmp_path, monkeypatch,
                                                                                   replacement):
    """Battery 23b: a folder inside an input folder removed (or replaced by a file) between its parent's listing and
    its own made the listing raise: tokenize said "No such file or directory (PATH)" with no fix."""
    import shutil

    inputs = tmp_path / "in"
    (inputs / "sub").mkdir(parents=True)
    (inputs / "a.txt").write_text(TEXTS[0], encoding="utf-8")
    (inputs / "sub" / "b.txt").write_text(TEXTS[1], encoding="utf-8")
    real = os.scandir
    removed = []

    def scandir(path="."):
        if not isinstance(path, int) and os.fspath(path) == str(inputs / "sub") and not removed:
            removed.append(path)
            shutil.rmtree(path)
            if replacement == "a file":
                (inputs / "sub").write_text("now a file", encoding="utf-8")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="changed while it was read") as e:
        _run(tokenizer, [inputs], out)
    assert removed and "sub" in str(e.value) and "\n" not in str(e.value)
    assert not out.exists() and _siblings(out) == []
