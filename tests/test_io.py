"""``longrope.io``: the build-aside-then-swap of a whole folder (``replace_folder``) and the one safe reader of
JSON records."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import pytest

from longrope.errors import UserError
from longrope.io import (
    aside_prefix,
    read_json,
    read_regular,
    remove_dead_leftovers,
    replace_folder,
    write_json,
)
from longrope.rope import FactorSet


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


def test_replace_folder_over_a_link_leaves_no_link_aside(tmp_path):
    """export -o LINK --overwrite (LINK -> an earlier export) left '.LINK.old-PID-…' behind: the link moved aside
    could not be removed by rmtree (battery 7). The link is replaced, its target kept."""
    target = _folder(tmp_path / "target", "kept")
    (tmp_path / "out").symlink_to(target)
    replace_folder(_folder(tmp_path / ".out.tmp-1", "new"), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out", "target"]
    assert (tmp_path / "out" / "f.txt").read_text() == "new" and (target / "f.txt").read_text() == "kept"


def test_replace_folder_over_a_dangling_link_replaces_the_link(tmp_path):
    """tokenize / export -o LINK where LINK points nowhere failed after all the work with 'Not a directory
    (.LINK.tmp-…)' (battery 9a): the link is replaced as a link to a folder is."""
    (tmp_path / "out").symlink_to(tmp_path / "nowhere")
    replace_folder(_folder(tmp_path / ".out.tmp-1", "new"), tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert not (tmp_path / "out").is_symlink() and (tmp_path / "out" / "f.txt").read_text() == "new"


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


def test_an_interrupted_swap_leaves_the_new_folder_in_place_and_its_leftovers_go_at_the_next(tmp_path, monkeypatch):
    """A Ctrl-C / SIGTERM between replace_folder's two renames left no folder at the output at all (the old one
    hidden aside, the new one removed by the caller's clean-up); one while the old folder was removed left the rest
    of it hidden for good next to an evaluation's run folder, which never cleaned such leftovers (battery 19)."""
    import signal

    dest = _folder(tmp_path / "out", "old")
    real = os.replace

    def interrupted_after_first(src, dst):
        real(src, dst)
        if Path(src) == dest:  # the old folder was just moved aside: Ctrl-C now
            os.kill(os.getpid(), signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    monkeypatch.setattr(os, "replace", interrupted_after_first)
    other = threading.Event()  # a second thread, as torch's or a reader's: the kernel may hand it the signal
    waiting = threading.Thread(target=other.wait, daemon=True)
    waiting.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            replace_folder(_folder(tmp_path / ".out.tmp-1", "new"), dest)
    finally:
        other.set()
        monkeypatch.undo()
        signal.signal(signal.SIGINT, previous)
    assert (dest / "f.txt").read_text() == "new"
    # what an interrupted removal of the old folder left, by a process that is gone: removed by the next swap
    left = _folder(tmp_path / f"{aside_prefix(dest)}999999999-abc", "old")
    replace_folder(_folder(tmp_path / ".out.tmp-2", "newer"), dest)
    assert not left.exists() and (dest / "f.txt").read_text() == "newer"


def test_a_folder_left_aside_by_a_dead_process_is_removed(tmp_path):
    dest = tmp_path / "out"
    dead = _folder(tmp_path / f"{aside_prefix(dest)}999999999-abc", "old")
    live = _folder(tmp_path / f"{aside_prefix(dest)}{os.getpid()}-abc", "old")
    assert remove_dead_leftovers(tmp_path, aside_prefix(dest)) == [dead]
    assert live.exists()


def test_a_file_that_cannot_be_replaced_is_named_with_its_fix_not_the_hidden_temporary(tmp_path, monkeypatch):
    """The last rename of an atomic write refused (a file bind-mounted into a container: EBUSY; an immutable one:
    EPERM) was 'Device or resource busy (.../.run.json.x1y2z3.tmp)': the hidden temporary, no fix (battery 19)."""
    import errno

    target = tmp_path / "run.json"
    write_json(target, {"old": 1})

    def busy(src, dst):
        raise OSError(errno.EBUSY, os.strerror(errno.EBUSY), str(src), None, str(dst))

    monkeypatch.setattr(os, "replace", busy)
    with pytest.raises(UserError) as e:
        write_json(target, {"new": 2})
    monkeypatch.undo()
    message = str(e.value)
    assert message.startswith(f"{target} cannot be replaced") and "mount point" in message and ".tmp" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"] and read_json(target) == {"old": 1}


def test_a_run_folders_file_replaced_by_a_folder_or_device_link_is_refused_with_a_fix_that_fits(tmp_path):
    """A search folder whose history.jsonl was a folder, or whose run.json a link to /dev/null, was refused on
    --resume with 'give the path of a file to write': a path the user never gave (battery 19)."""
    from longrope.io import check_writable_path

    (tmp_path / "history.jsonl").mkdir()
    (tmp_path / "run.json").symlink_to(os.devnull)
    for name in ("history.jsonl", "run.json"):
        with pytest.raises(UserError) as e:
            check_writable_path(tmp_path / name)
        assert str(e.value).startswith(str(tmp_path / name)) and "move it out of the way" in str(e.value)


def test_a_pipe_or_folder_where_a_record_belongs_is_one_line_and_never_blocks(tmp_path):
    """A named pipe planted where a record belongs would block a plain open() until something writes
    to it (a resume hung forever); a folder there is refused in the same words."""
    pipe = tmp_path / "checkpoint.json"
    os.mkfifo(pipe)
    result: list = []
    reader = threading.Thread(target=lambda: result.append(_error(lambda: read_json(pipe, what="search checkpoint"))),
                              daemon=True)
    reader.start()
    reader.join(10)
    if reader.is_alive():  # unblock the reader so the test process can end, then fail
        with open(pipe, "w"):
            pass
        pytest.fail("read_json blocked on a named pipe")
    assert "not a readable search checkpoint (a special file" in result[0] and "\n" not in result[0]
    (tmp_path / "dir.json").mkdir()
    assert "(a folder, not a file)" in _error(lambda: read_json(tmp_path / "dir.json"))
    # the other files a user names (a factor file, generate's --prompt-file) are read the same way
    assert "cannot read factor file" in _error(lambda: FactorSet.load(pipe))
    with pytest.raises(OSError, match="special file"):
        read_regular("/dev/zero")  # would never end


def test_a_key_given_twice_is_refused_in_records_and_factor_files(tmp_path):
    """Parsers disagree on which of two values of one key counts: a record or a factor file holding one is
    refused in one line naming the key, never read as the last value."""
    record = tmp_path / "config.json"
    record.write_text('{"command": "eval passkey", "config": {}, "command": "search"}')
    assert "the key 'command' appears twice" in _error(lambda: read_json(record))
    record.write_text('{"a": {"b": 1, "c": 2}, "d": [{"b": 1}, {"b": 2}]}')  # the same key in different objects
    assert read_json(record) == {"a": {"b": 1, "c": 2}, "d": [{"b": 1}, {"b": 2}]}
    factors = tmp_path / "factors.json"
    FactorSet(long_factor=[1.0] * 4, short_factor=[1.0] * 4, original_max_position_embeddings=32,
              max_position_embeddings=64, rope_theta=10000.0).save(factors)
    text = factors.read_text()
    factors.write_text(text.replace('"rope_theta"', '"rotary_dim": 2, "rope_theta"', 1))
    assert "the key 'rotary_dim' appears twice" in _error(lambda: FactorSet.load(factors))


def _error(call) -> str:
    with pytest.raises(UserError) as err:
        call()
    return str(err.value)


def test_a_sealed_record_tells_an_edit_from_the_original():
    from longrope.io import SEAL, seal_intact, sealed

    doc = sealed({"method": "yarn", "ppl": 12.5, "nested": {"a": [1, 2]}})
    assert seal_intact(doc) and seal_intact(json.loads(json.dumps(doc)))  # survives a JSON round trip
    assert not seal_intact({**doc, "ppl": 12.4})
    assert not seal_intact({k: v for k, v in doc.items() if k != SEAL})  # no seal: not intact
    assert not seal_intact([doc]) and not seal_intact({**doc, "x": object()})


def test_an_output_that_is_a_pipe_device_or_dash_is_refused_and_left_alone(tmp_path, monkeypatch):
    """Writing moves a temporary file into place, which would replace a named pipe or (as root) a device
    such as /dev/full with a regular file (battery 5: ``baseline -o /dev/full`` did, rc 0); '-' made a file
    named '-' though a user means stdout."""
    pipe = tmp_path / "out.json"
    os.mkfifo(pipe)
    message = _error(lambda: write_json(pipe, {"a": 1}))
    assert "is a special file (device, pipe or socket), not a regular file" in message and "\n" not in message
    assert pipe.exists() and not pipe.is_file()  # still the pipe
    assert "not a regular file" in _error(lambda: write_json("/dev/null", {"a": 1}))
    monkeypatch.chdir(tmp_path)
    assert "'-' is not an output file here" in _error(lambda: write_json("-", {"a": 1}))
    assert not os.path.lexists(tmp_path / "-")
    write_json(tmp_path / "-", {"a": 1})  # a file really named '-' is still one path away
    assert json.loads((tmp_path / "-").read_text()) == {"a": 1}


@pytest.mark.parametrize("argv", [
    ["eval", "passkey", "--model", "tiny", "--lengths", "512", "-o"],
    ["tokenize", "--tokenizer", "tiny", "--input", "search=doc.txt", "-o"],
    ["export", "--model", "tiny", "--factors", "yarn.json", "--overwrite", "-o"],
])
@pytest.mark.parametrize("out", [".", "..", "./"])
def test_a_whole_folder_output_that_is_the_current_folder_or_above_is_one_line(tmp_path, monkeypatch, capsys, argv,
                                                                                out):
    """Commands that build their output aside and rename it over the target: ``-o .`` was a ValueError traceback
    ("PosixPath('.') has an empty name"), ``export -o .. --overwrite`` said 'Device or resource busy' (battery 6)."""
    from longrope.cli import main

    work = tmp_path / "work"
    work.mkdir()
    (work / "doc.txt").write_text("mine")
    from longrope.rope import make_baseline

    make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512).save(
        work / "yarn.json")
    monkeypatch.chdir(work)
    assert main([*argv, out]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is the current folder or holds it" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["work"] and (work / "doc.txt").read_text() == "mine"
    assert sorted(p.name for p in work.iterdir()) == ["doc.txt", "yarn.json"]


@pytest.mark.parametrize("argv", [
    ["eval", "passkey", "--model", "tiny", "--lengths", "512", "-o"],
    ["tokenize", "--tokenizer", "tiny", "--input", "search=doc.txt", "-o"],
    ["export", "--model", "tiny", "--factors", "yarn.json", "-o"],
])
def test_a_whole_folder_output_that_is_a_mount_point_is_one_line_before_the_work(tmp_path, monkeypatch, capsys, argv):
    """``-o`` a folder mounted into a container (``docker -v host/out:/out``, a bind mount on the same file system,
    which ``os.path.ismount`` does not see): the swap's rename failed 'Device or resource busy' after all the work,
    worded three ways (battery 19). A bind mount is faked here through the mount table the check reads."""
    import builtins
    import io as stdio

    from longrope.cli import main
    from longrope.rope import make_baseline

    work = tmp_path / "work"
    (work / "out").mkdir(parents=True)
    (work / "doc.txt").write_text("mine")
    make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512).save(
        work / "yarn.json")
    table = f"36 25 8:1 /host/out {os.path.realpath(work / 'out')} rw,relatime shared:1 - ext4 /dev/vda rw\n"
    real_open = builtins.open

    def with_mount(file, *a, **k):
        return stdio.StringIO(table) if file == "/proc/self/mountinfo" else real_open(file, *a, **k)

    monkeypatch.setattr(builtins, "open", with_mount)
    monkeypatch.chdir(work)
    assert main([*argv, "out"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out is a mount point" in err and "out/NAME" in err, err
    assert sorted(p.name for p in work.iterdir()) == ["doc.txt", "out", "yarn.json"] and not any((work / "out").iterdir())


def test_read_json_accepts_a_utf8_bom(tmp_path):
    """Battery 8: pipeline --plan PLAN saved with a UTF-8 BOM (Notepad) was refused with Python's 'Unexpected UTF-8 BOM
    (decode using utf-8-sig)' while factor files with one were read; every JSON file the package reads takes it."""
    path = tmp_path / "plan.json"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps({"format": "x"}).encode())
    assert read_json(path, what="plan") == {"format": "x"}


@pytest.mark.parametrize("name", ["r" * 250, "é" * 127, "ü" * 120 + "x"])
def test_an_output_with_a_long_legal_name_gets_hidden_siblings_within_the_name_limit(tmp_path, name):
    """A legal name near 255 bytes took '.NAME.partial-PID' / '.NAME.tmp-…' siblings past the limit: every writer
    (tokenize, eval, export, baseline, inspect) failed 'File name too long' (battery 11a). The prefix is shortened,
    stays the same for the same name (the clean-up of a killed writer finds it) and differs between names."""
    from longrope.io import NAME_MAX, atomic_write, sibling_prefix

    prefix = sibling_prefix(tmp_path / name, "partial-")
    assert len(prefix.encode()) + 48 <= NAME_MAX and prefix == sibling_prefix(tmp_path / name, "partial-")
    assert prefix != sibling_prefix(tmp_path / (name[:-1] + "z"), "partial-")
    assert sibling_prefix(tmp_path / "short", "tmp-") == ".short.tmp-"
    atomic_write(tmp_path / name, lambda f: f.write("x"))
    new = tmp_path / "new"
    new.mkdir()
    (tmp_path / (name[:-1] + "d")).mkdir()  # an earlier output: moved aside under a hidden sibling's name
    replace_folder(new, tmp_path / (name[:-1] + "d"))
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([name, name[:-1] + "d"])


def test_a_record_is_read_within_a_tight_memory_limit(tmp_path):
    """read_json asked for its bound (256 MiB) in one read, which allocates it before reading a byte: under
    ``ulimit -v`` about 1 GB every command failed "out of memory ... use shorter sequences" on a 2 KB config.json
    (battery 17). Now a small record reads with 64 MiB of address space to spare."""
    import subprocess
    import sys

    (tmp_path / "r.json").write_text('{"a": 1}', encoding="utf-8")
    code = ("import resource, sys\n"
            "from longrope.io import read_json, read_regular\n"
            "with open('/proc/self/statm') as f:\n"
            "    size = int(f.read().split()[0]) * resource.getpagesize()\n"
            "resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))\n"
            "assert read_json(sys.argv[1]) == {'a': 1}\n"
            "assert read_regular(sys.argv[1], limit=512 << 20) == b'{\"a\": 1}'\n")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "r.json")], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_a_path_too_long_or_looping_is_said_with_its_fix(tmp_path, capsys):
    """'File name too long' and 'Too many levels of symbolic links' came bare from the command line, or with 'choose
    a writable folder' from the writers: no word of what to change (battery 18). The errno's own fix is said."""
    import errno

    from longrope.cli import main
    from longrope.io import os_error_fix

    assert "give a shorter one" in os_error_fix(OSError(errno.ENAMETOOLONG, "File name too long"), "other")
    assert "loops" in os_error_fix(OSError(errno.ELOOP, "Too many levels of symbolic links"))
    assert os_error_fix(OSError(errno.EACCES, "Permission denied"), "choose a writable folder") == \
        "choose a writable folder"
    long_name = str(tmp_path / ("a" * 300 + ".json"))
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "1024", "-o", long_name]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "File name too long" in err[0] and "give a shorter one" in err[0], err


def test_a_path_argument_of_another_type_is_one_error_naming_it(monkeypatch):
    """load_model(None) / read_rope_info(123) turned the argument into text and asked the hub for a model named
    'None' ('the hub is unreachable or the id is unknown'); TokenCorpus.open(123) and FactorSet.load(None) were
    pathlib's TypeError naming no argument (battery 18). Each is one UserError saying what the argument is."""
    import longrope.models.loading as loading
    from longrope.data import TokenCorpus
    from longrope.models import export_hf, read_rope_info

    monkeypatch.setattr(loading, "_hub_reachable", lambda *a, **k: pytest.fail("the hub was asked"))
    for call, named in ((lambda: read_rope_info(None), "the model"), (lambda: read_rope_info(123), "the model"),
                        (lambda: TokenCorpus.open(123), "a shard folder"),
                        (lambda: FactorSet.load(None), "a factor file"),
                        (lambda: export_hf(object(), None, None, None), "out_dir")):
        with pytest.raises(UserError, match=named) as err:
            call()
        assert "str or os.PathLike" in str(err.value)


def test_a_looping_link_given_as_an_input_is_said_to_loop_not_to_be_missing(tmp_path, monkeypatch):
    """exists() is False for a symbolic link that loops: --data LOOP was 'no such shard folder', --input LOOP 'no
    such file or folder', --model LOOP was asked of the hub ('the hub is unreachable or the id is unknown'; battery
    18). Each says the link loops and what to do."""
    import longrope.models.loading as loading
    from longrope.data import TokenCorpus
    from longrope.data.sources import resolve_sources
    from longrope.models import read_rope_info

    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    loop = str(tmp_path / "a")
    monkeypatch.setattr(loading, "_hub_reachable", lambda *a, **k: pytest.fail("the hub was asked"))
    for call in (lambda: TokenCorpus.open(loop), lambda: resolve_sources([loop]), lambda: read_rope_info(loop)):
        with pytest.raises(UserError, match="symbolic link on the path loops") as err:
            call()
        assert loop in str(err.value)


def test_a_record_s_version_is_an_integer_not_a_number_equal_to_it(tmp_path):
    """A shard folder's meta.json with "version": true (== 1) was opened, as a search checkpoint's was resumed
    (battery 19): io.is_record_of is the one test of a record's format and version."""
    import json

    from longrope.data import TokenCorpus
    from longrope.errors import UserError
    from longrope.io import is_record_of
    from tests.data.test_doc_sampling import make_corpus

    assert is_record_of({"format": "f", "version": 1}, "f", 1)
    assert not any(is_record_of({"format": "f", "version": v}, "f", 1) for v in (True, 1.0, "1"))
    folder = make_corpus(tmp_path / "c", [50]).path
    meta = json.loads((folder / "meta.json").read_text())
    (folder / "meta.json").write_text(json.dumps({**meta, "version": True}))
    with pytest.raises(UserError, match="not a version-1"):
        TokenCorpus.open(folder)


def test_an_integer_of_thousands_of_digits_is_refused_in_a_user_s_words(tmp_path):
    """A record or length holding an integer past Python's 4,300-digit limit was refused with "use
    sys.set_int_max_str_digits() to increase the limit" (a record), or as "not a whole number" (a length flag)
    (battery 19): the records' one parser (io.loads_record) and the length parser name its size."""
    from longrope.errors import UserError
    from longrope.io import read_json
    from longrope.options import parse_length
    from longrope.rope import FactorSet, make_baseline

    huge = "1" + "0" * 5000
    (tmp_path / "r.json").write_text('{"a": ' + huge + "}")
    fs = make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=64, target_length=128).to_dict()
    (tmp_path / "f.json").write_text(json.dumps(fs).replace('"start_tokens": 0', '"start_tokens": ' + huge))
    for call in (lambda: read_json(tmp_path / "r.json", what="record"), lambda: FactorSet.load(tmp_path / "f.json"),
                 lambda: parse_length(huge, "--target-length")):
        with pytest.raises(UserError, match="integer of 5,001 digits") as err:
            call()
        assert "set_int_max_str_digits" not in str(err.value)


def test_a_log_shared_by_hard_links_is_changed_only_in_the_copy_written_to(tmp_path):
    """A run folder copied with ``cp -al`` shares its files with the original: a resume of the copy appended its
    lines (a comparison's cells, a search's history) to the original's log too, and dropped a torn last line from
    both, and the copy's lock (the same file) refused it while the original ran. The in-place writers and the lock
    give the file a copy of its own first (io.unlink_copy)."""
    import os

    from longrope.io import append_text
    from longrope.runs.compare import _read_cells

    original, copy = tmp_path / "run" / "cells.jsonl", tmp_path / "copy" / "cells.jsonl"
    original.parent.mkdir()
    copy.parent.mkdir()
    original.write_text('{"a": 1}\n{"torn')
    os.link(original, copy)
    _read_cells(copy)  # the torn line dropped, in the copy only
    append_text(copy, '{"b": 2}\n')
    assert original.read_text() == '{"a": 1}\n{"torn'
    assert copy.read_text() == '{"a": 1}\n{"b": 2}\n'
    assert original.stat().st_nlink == copy.stat().st_nlink == 1
    from longrope.runs.folder import LOCK_FILE, FolderLock

    (original.parent / LOCK_FILE).write_text("")
    os.link(original.parent / LOCK_FILE, copy.parent / LOCK_FILE)  # cp -al copies the lock file too
    with FolderLock.acquire(original.parent, "compare"), FolderLock.acquire(copy.parent, "compare"):
        pass  # the copy was refused "in use by another longrope process" while the original ran


def test_a_record_json_cannot_hold_is_one_line_and_nothing_written(tmp_path):
    """write_ppl_outputs(out, results, config={"x": object()}) was json's TypeError after the evaluation it records,
    and a path in the config (config={"data": Path(...)}, how a notebook holds one) the same (battery 20 open
    item). A path is written as its text; what JSON cannot hold is one UserError naming the file, nothing written."""
    from pathlib import Path

    from longrope.errors import UserError
    from longrope.evaluate.suite import write_ppl_outputs
    from longrope.io import json_safe, write_json

    assert json_safe({"data": Path("shards/a")}) == {"data": "shards/a"}
    loop: list = []
    loop.append(loop)
    for bad in ({"x": object()}, loop):
        with pytest.raises(UserError, match=r"r\.json cannot be written: .* \(a record holds text"):
            write_json(tmp_path / "r.json", bad)
    with pytest.raises(UserError, match="ppl.json cannot be written"):
        write_ppl_outputs(tmp_path / "e", [], {"x": object()})
    assert sorted(p.name for p in tmp_path.iterdir()) == []
    write_ppl_outputs(tmp_path / "e", [], {"data": Path("shards")})
    assert json.loads((tmp_path / "e" / "ppl.json").read_text())["config"] == {"data": "shards"}


def test_a_device_or_pipe_where_a_file_or_folder_belongs_is_named_as_what_it_is(tmp_path, capsys):
    """/dev/null as an output folder was 'is a file', /dev/zero as a shard folder 'is a file', and /dev/zero or a
    named pipe called model.gguf as the model 'no such model file or folder' (it exists; battery 21). One wording of
    what stands there (io.path_kind), whoever refuses it."""
    from longrope.cli import main
    from longrope.io import SPECIAL_FILE, path_kind

    pipe = tmp_path / "model.gguf"
    os.mkfifo(pipe)
    assert (path_kind(pipe), path_kind(tmp_path), path_kind(tmp_path / "none")) == (SPECIAL_FILE, "a folder", None)
    factors = tmp_path / "pi.json"
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512", "-o", str(factors)]) == 0
    capsys.readouterr()
    cases = [(["inspect", "--model", str(pipe)], f"{pipe} is {SPECIAL_FILE}, not a model"),
             (["inspect", "--model", "/dev/zero"], f"/dev/zero is {SPECIAL_FILE}, not a model"),
             (["export", "--model", "tiny", "--factors", str(factors), "-o", "/dev/null"],
              f"output /dev/null is {SPECIAL_FILE}, not a folder"),
             (["eval", "ppl", "--model", "tiny", "--data", "/dev/zero", "--lengths", "256", "-o", str(tmp_path / "e")],
              f"/dev/zero is {SPECIAL_FILE}, not a folder"),
             (["demo", "--model", "tiny", "--out", "/dev/null"], f"/dev/null is {SPECIAL_FILE}, not a folder")]
    for argv, said in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and said in err, (argv, err)


def test_a_permission_refused_under_a_umask_that_takes_the_owners_own_is_told_the_umask(tmp_path):
    """``umask 377``: the folder a command had just made could not be written in, and the line said 'choose a
    writable folder' (tokenize: 'free space or choose another -o'), never the umask (battery 23a). Only where the
    entry refused is this user's and lacks what the umask takes; the umask as it is now, not at import (review)."""
    import errno
    import os

    from longrope import io
    from longrope.data import tokenize

    made = tmp_path / "made"
    made.mkdir(mode=0o500)  # as `umask 377` makes a folder: no write for its owner
    denied = PermissionError(errno.EACCES, "Permission denied", str(made / ".out.tokenize-1"))
    readable = tmp_path / "readable"
    readable.write_text("x")
    other = PermissionError(errno.EACCES, "Permission denied", str(readable))  # its owner's bits are whole
    before = os.umask(0o377)
    try:
        assert io.current_umask() == 0o377
        assert "umask (377)" in io.os_error_fix(denied, "choose a writable folder")
        assert "umask (377)" in str(tokenize._os_error(denied, made / ".out.tokenize-1"))
        assert io.os_error_fix(other, "choose a writable folder") == "choose a writable folder"
        assert io.os_error_fix(PermissionError(errno.EACCES, "no name"), "x") == "x"
        os.umask(0o022)
        assert io.os_error_fix(denied, "choose a writable folder") == "choose a writable folder"
        said = str(tokenize._os_error(denied, made / ".out.tokenize-1"))
        assert "choose a writable -o" in said and "free space" not in said
    finally:
        os.umask(before)
        made.chmod(0o700)


def test_a_utf8_output_name_read_under_an_ascii_locale_is_told_the_locale():
    """Under ``LC_ALL=C PYTHONUTF8=0`` Python reads a UTF-8 name ('ü') as lone surrogates: an export to it was refused
    as 'the path holds bytes that are not UTF-8', which they are (battery 23a). The line names the locale; bytes that
    are not UTF-8 keep their own words."""
    from longrope.io import check_utf8_path

    with pytest.raises(UserError, match="reads file names as ASCII.*PYTHONUTF8=1"):
        check_utf8_path("/x/\udcc3\udcbc dir/out")  # 'ü' (c3 bc) as the C locale reads it
    with pytest.raises(UserError, match="bytes that are not UTF-8"):
        check_utf8_path("/x/\udcff/out")


def test_a_leftover_whose_pid_another_later_process_took_is_removed(tmp_path):
    """Battery 25b: a killed run's hidden leftover (``.NAME.partial-PID``) was kept for as long as any process held
    its pid, a pid the system had given again to an unrelated process; one written after its process started (a
    live writer's) is kept."""
    import subprocess
    import time

    other = subprocess.Popen(["sleep", "60"])
    try:
        dead = tmp_path / f".out.partial-{other.pid}"
        (dead / "model").mkdir(parents=True)
        an_hour_ago = time.time() - 3600  # written by the dead writer, long before the sleep took its pid
        os.utime(dead, (an_hour_ago, an_hour_ago))
        live = tmp_path / f".out.partial-{os.getpid()}x"
        live.mkdir()
        assert remove_dead_leftovers(tmp_path, ".out.partial-") == [dead]
        assert not dead.exists() and live.exists()
        fresh = tmp_path / f".out.partial-{other.pid}y"
        fresh.mkdir()  # written now, by a process that started before: its own
        assert remove_dead_leftovers(tmp_path, ".out.partial-") == [] and fresh.exists()
    finally:
        other.kill()
        other.wait()


def test_a_live_swap_s_aside_folder_is_not_taken_for_a_dead_writer_s(tmp_path, monkeypatch):
    """The review of battery 25b: the previous output renamed aside kept its old date, so another writer's
    remove_dead_leftovers, run between this swap's two renames, took this live process for a later one that reused
    a dead writer's pid and removed the aside folder the swap puts back when its second rename fails."""
    import subprocess
    import sys
    import time

    from longrope.io import aside_prefix, replace_folder

    dest = tmp_path / "out"
    (dest / "a").mkdir(parents=True)
    two_days_ago = time.time() - 2 * 86400
    os.utime(dest, (two_days_ago, two_days_ago))
    new = tmp_path / "new"
    new.mkdir()
    real, removed = os.replace, []

    def replace(src, dst):
        real(src, dst)
        if Path(dst).name.startswith(aside_prefix(dest)):  # another writer's clean-up, between the two renames
            removed.append(subprocess.run(
                [sys.executable, "-c", "import sys; from pathlib import Path; from longrope.io import "
                 "remove_dead_leftovers as r; print(r(Path(sys.argv[1]), sys.argv[2]))", str(tmp_path),
                 aside_prefix(dest)], capture_output=True, text=True, check=True).stdout.strip())

    monkeypatch.setattr(os, "replace", replace)
    replace_folder(new, dest)
    assert removed == ["[]"]
