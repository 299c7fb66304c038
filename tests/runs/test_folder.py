"""One run-folder layout: checks before work, staged (atomic) folders, in-place resumable ones."""

from __future__ import annotations

import json
import os

import pytest

from longrope.errors import UserError
from longrope.evaluate.suite import PASSKEY_OUTPUTS, PPL_OUTPUTS
from longrope.runs.folder import RunFolder, read_run_config, recorded_paths_here


def test_staged_folder_appears_only_when_finished(tmp_path):
    out = tmp_path / "run"
    f = RunFolder.open(out, "eval ppl", staged=True)
    f.start({"a": 1})
    (f / "ppl.csv").write_text("x")
    assert not out.exists()  # nothing at the target while the run works
    f.finish({"ok": True})
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "ppl.csv", "run.json", "summary.json"]
    assert read_run_config(out) == ("eval ppl", {"a": 1})
    run = json.loads((out / "run.json").read_text())
    assert run["status"] == "done" and {"torch", "transformers", "python", "longrope"} <= set(run["versions"])
    assert not list(tmp_path.glob(".run.partial-*"))


def _finished_then_started_again(out):
    """A staged run finished at ``out`` ({"v": 1}), and a second one started to replace it ({"v": 2})."""
    f = RunFolder.open(out, "eval ppl", staged=True)
    f.start({"v": 1})
    f.finish({"v": 1})
    g = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    g.start({"v": 2})
    return g


def test_a_failed_staged_run_keeps_the_previous_complete_folder(tmp_path):
    out = tmp_path / "run"
    g = _finished_then_started_again(out)
    g.abandon()  # what a failure does
    assert json.loads((out / "summary.json").read_text()) == {"v": 1}
    h = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    h.start({"v": 3})
    h.finish({"v": 3})
    assert json.loads((out / "summary.json").read_text()) == {"v": 3}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_partial_folders_of_dead_processes_are_removed(tmp_path):
    stale = tmp_path / ".run.partial-999999999"
    stale.mkdir()
    (stale / "big.bin").write_bytes(b"0" * 10)
    RunFolder.open(tmp_path / "run", "demo", staged=True)
    assert not stale.exists()


@pytest.mark.parametrize("case", ["file", "foreign", "other-command", "parent-is-file"])
def test_bad_targets_are_refused_before_work(tmp_path, case):
    target = tmp_path / "out"
    if case == "file":
        target.write_text("x")
    elif case == "foreign":
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    elif case == "other-command":
        f = RunFolder.open(target, "search", staged=False)
        f.start({})
    else:
        (tmp_path / "f").write_text("x")
        target = tmp_path / "f" / "out"
    with pytest.raises(UserError, match="--output"):
        RunFolder.open(target, "eval ppl", staged=True, replace=PPL_OUTPUTS)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_parent_is_refused(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(UserError, match="cannot be written"):
            RunFolder.open(ro / "out", "demo", staged=True)
    finally:
        ro.chmod(0o700)


def test_in_place_folder_resume_rules(tmp_path):
    out = tmp_path / "s"
    with pytest.raises(UserError, match="nothing to resume"):
        RunFolder.open(out, "search", staged=False, resume=True)
    f = RunFolder.open(out, "search", staged=False)
    f.start({"x": 1})
    (f / "checkpoint.json").write_text("{}")  # work to protect (a folder without any is a stub: see test_setup_failures)
    f.close()  # the run is over (while it runs, its lock refuses any other open)
    with pytest.raises(UserError, match="add --resume"):
        RunFolder.open(out, "search", staged=False)
    g = RunFolder.open(out, "search", staged=False, resume=True)
    g.start({"x": 1})
    assert len(json.loads((out / "run.json").read_text())["previous_starts"]) == 1


def test_read_run_config_errors_are_one_line(tmp_path):
    with pytest.raises(UserError, match="not a run folder"):
        read_run_config(tmp_path)
    (tmp_path / "config.json").write_text('{"resolved": {}}')
    with pytest.raises(UserError, match="not a run configuration"):
        read_run_config(tmp_path)
    # a pipeline's manifest or a factor file given as --config was guessed 'written by an older longrope?'
    (tmp_path / "pipeline.json").write_text('{"format": "longrope-pipeline/1", "plan": {}}')
    with pytest.raises(UserError, match=r"pipeline.json is not a run configuration \(the config.json a longrope "
                                        r"command writes in its run folder\); give the run folder") as err:
        read_run_config(tmp_path / "pipeline.json")
    assert "older longrope" not in str(err.value)
    (tmp_path / "config.json").write_text('{"format": "longrope-run/9", "command": "search", "config": {}}')
    with pytest.raises(UserError, match="this longrope cannot read \\(format 'longrope-run/9'; it reads longrope-run/1"):
        read_run_config(tmp_path)
    (tmp_path / "config.json").write_text('{"model_type": "llama", "hidden_size": 64}')
    with pytest.raises(UserError, match="is a model folder .* not a run folder"):
        read_run_config(tmp_path)


def test_a_recorded_config_reads_its_relative_paths_where_the_run_was_started(tmp_path, monkeypatch):
    """``--config RUN`` from another folder: ``--data shards`` named the shards of the folder the run was
    started in, not of the current one; names that are not paths there (a model name, an output to come)
    stay as recorded."""
    started, elsewhere = tmp_path / "started", tmp_path / "elsewhere"
    (started / "shards").mkdir(parents=True)
    elsewhere.mkdir()
    run = started / "run"
    run.mkdir()
    saved = {"model": "tiny", "data": "shards", "factors": ["shards", "new.json"], "output": "out", "steps": 3}
    (run / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": saved,
                                                 "cwd": str(started)}))
    monkeypatch.chdir(elsewhere)
    here = recorded_paths_here(saved, run)
    assert here == {**saved, "data": str(started / "shards"), "factors": [str(started / "shards"), "new.json"]}
    monkeypatch.chdir(started)
    assert recorded_paths_here(saved, run) == saved


def test_a_run_moved_with_the_folder_it_was_started_in_reads_its_relative_paths_there(tmp_path, monkeypatch):
    """Battery 16: ``mv project project2`` (run and shards inside), then ``rerun project2/runs/a`` or ``--config``
    from elsewhere: the recorded folder is gone, so ``--data sh`` was read against the current folder ("not a
    shard folder", or another folder of that name). The run's place below its recorded ``-o`` stands for it."""
    started, moved, elsewhere = tmp_path / "project", tmp_path / "project2", tmp_path / "elsewhere"
    (started / "sh").mkdir(parents=True)
    (started / "runs" / "a").mkdir(parents=True)
    elsewhere.mkdir()
    saved = {"model": "tiny", "data": "sh", "output": "runs/a"}
    (started / "runs" / "a" / "config.json").write_text(json.dumps(
        {"format": "longrope-run/1", "command": "search", "config": saved, "cwd": str(started)}))
    started.rename(moved)
    monkeypatch.chdir(elsewhere)
    assert recorded_paths_here(saved, moved / "runs" / "a")["data"] == str(moved / "sh")


_HOLDER = """
import sys
from longrope.runs.folder import RunFolder
folder = RunFolder.open(sys.argv[1], "search", staged=False)
print("locked", flush=True)
sys.stdin.read()  # hold the folder until the test closes stdin (or kills this process)
"""


def _holder(out):
    """A second process that opened ``out`` in place and holds it."""
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER, str(out)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            text=True, env=env)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_an_in_place_folder_takes_one_process_and_a_dead_holder_leaves_no_stale_lock(tmp_path):
    out = tmp_path / "run"
    proc = _holder(out)
    try:
        for resume in (False, True):
            with pytest.raises(UserError, match=rf"--output {out} is in use by another longrope process \(pid "
                                                rf"{proc.pid}\)"):
                RunFolder.open(out, "search", staged=False, resume=resume)
    finally:
        proc.kill()  # SIGKILL: the OS drops the lock with the process
        proc.wait()
    assert (out / ".lock").exists()  # the file stays; it does not block
    folder = RunFolder.open(out, "search", staged=False)
    folder.start({})
    with pytest.raises(UserError, match="in use by another longrope process"):  # even from this same process
        RunFolder.open(out, "search", staged=False, resume=True)
    folder.close()
    again = RunFolder.open(out, "search", staged=False, resume=True)
    again.close()


def test_a_refused_open_keeps_no_lock(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty"):
        RunFolder.open(out, "search", staged=False)
    (out / "notes.txt").unlink()
    RunFolder.open(out, "search", staged=False).close()  # a folder holding only a lock file counts as empty


def test_a_refused_folder_keeps_no_trace_of_the_refusal(tmp_path):
    """A folder refused as output (someone's own files; nothing to resume) is left exactly as it was: no lock
    file of ours in it. A lock file that was there before (a run folder's) stays."""
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(UserError, match="is not empty"):
        RunFolder.open(out, "search", staged=False)
    with pytest.raises(UserError, match="nothing to resume"):
        RunFolder.open(out, "search", staged=False, resume=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    run = tmp_path / "run"
    RunFolder.open(run, "search", staged=False).close()
    with pytest.raises(UserError, match="nothing to resume"):
        RunFolder.open(run, "finetune", staged=False, resume=True)
    assert (run / ".lock").exists()


def test_a_lock_file_planted_as_a_symlink_is_refused_and_its_target_kept(tmp_path):
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me")
    out = tmp_path / "run"
    out.mkdir()
    (out / ".lock").symlink_to(precious)
    with pytest.raises(UserError, match="its lock file .*/run/.lock is a link, not the plain file longrope makes; "
                                        "remove it"):
        RunFolder.open(out, "search", staged=False)
    assert precious.read_text() == "keep me"


@pytest.mark.parametrize("make", [os.mkdir, os.mkfifo])
def test_a_lock_path_that_is_no_plain_file_is_named_with_its_fix(tmp_path, make):
    """A folder or a pipe where the lock file goes was "--output RUN cannot be written (Is a directory); choose a
    writable folder" (battery 9b): the hidden file was not named, and the fix given abandoned the run. The lock
    path and its removal are named; once removed, the run folder opens."""
    out = tmp_path / "run"
    out.mkdir()
    make(out / ".lock")
    with pytest.raises(UserError, match=r"its lock file .*\.lock is a (folder|special file), not the plain file") as err:
        RunFolder.open(out, "search", staged=False)
    assert "remove it" in str(err.value) and "\n" not in str(err.value)
    (os.rmdir if make is os.mkdir else os.unlink)(out / ".lock")
    RunFolder.open(out, "search", staged=False).close()


def test_an_output_given_as_a_symlink_writes_into_its_target_and_keeps_the_link(tmp_path):
    """-o LINK means the folder the link names: a staged run replaces the target (the link stays a link, no
    leftover beside it), a dangling link gets its target created, and the work starts only after these checks."""
    target = tmp_path / "runs" / "first"
    target.parent.mkdir()
    link = tmp_path / "latest"
    link.symlink_to(target)  # dangling
    for _ in range(2):  # created, then replaced
        folder = RunFolder.open(link, "eval passkey", staged=True, replace=PASSKEY_OUTPUTS)
        folder.start({"x": 1})
        folder.finish({"ok": True})
        assert link.is_symlink() and (target / "summary.json").exists()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["latest", "runs"]
        assert sorted(p.name for p in target.parent.iterdir()) == ["first"]
    in_place = tmp_path / "search-link"
    in_place.symlink_to(tmp_path / "search")
    RunFolder.open(in_place, "search", staged=False).close()
    assert in_place.is_symlink() and (tmp_path / "search" / ".lock").exists()


def test_a_resume_whose_config_json_is_lost_names_it(tmp_path):
    """A run folder whose config.json was deleted (or damaged) beside its intact work was "nothing to resume in
    RUN: it holds no search run; run without --resume", and the fresh start then "already exists and is not
    empty" (battery 9b): the lost record is named, with where its command line is kept. A folder that is no
    run keeps the plain refusal."""
    out = tmp_path / "run"
    f = RunFolder.open(out, "search", staged=False)
    f.start({"x": 1})
    (out / "checkpoint.json").write_text("{}")
    f.close()
    (out / "config.json").unlink()
    with pytest.raises(UserError, match="its config.json, the record of the run that wrote it, is missing; restore "
                                        "it \\(its command line is in run.json's argv\\)"):
        RunFolder.open(out, "search", staged=False, resume=True)
    (out / "config.json").mkdir()
    with pytest.raises(UserError, match="config.json, the record of the run that wrote it, is unreadable"):
        RunFolder.open(out, "search", staged=False, resume=True)
    other = tmp_path / "notes"
    other.mkdir()
    (other / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="it holds no search run and is not empty; give the folder of the search run"):
        RunFolder.open(other, "search", staged=False, resume=True)  # a fresh start refuses it too (battery 12a)


def test_nothing_to_resume_in_a_folder_a_fresh_start_refuses_does_not_say_run_without_resume(tmp_path, capsys):
    """battery 12a: `search -o M --resume` with M a model folder (or another command's run) said "run without
    --resume", and that said "M already exists and is not empty; choose a new folder" (pipeline the same)."""
    from longrope.cli import main

    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")  # a model folder's, say
    run = tmp_path / "run"
    folder = RunFolder.open(run, "eval ppl", staged=False)
    folder.start({})
    folder.close()
    for out, said in ((mine, "holds no search run and is not empty"), (run, "holds an eval ppl run")):
        with pytest.raises(UserError) as e:
            RunFolder.open(out, "search", staged=False, resume=True)
        assert said in str(e.value) and "run without --resume" not in str(e.value), e.value
        assert "a new folder to start one" in str(e.value)
    assert main(["pipeline", "-o", str(mine), "--resume"]) == 2
    err = capsys.readouterr().err
    assert "holds no pipeline run and is not empty" in err and "run without" not in err, err
    with pytest.raises(UserError, match="run without --resume"):  # an empty or missing folder: start it
        RunFolder.open(tmp_path / "new", "search", staged=False, resume=True)


def test_a_run_killed_while_writing_its_config_leaves_a_folder_a_fresh_start_takes(tmp_path, capsys):
    """Battery 14c: a run SIGKILLed while it wrote config.json (its temporary written, not yet renamed) left
    .lock and .config.json.XXXXXXXX.tmp: a fresh start refused the folder as not empty, --resume said there
    was nothing to resume, 'run without --resume'. Those leftovers are no one's work: the fresh start takes
    the folder and removes them."""
    import longrope.io as lio
    from longrope.runs.folder import CONFIG_FILE, LOCK_FILE

    out = tmp_path / "run"
    out.mkdir()
    (out / LOCK_FILE).write_text("12345\n")
    (out / f"{lio.sibling_prefix(out / CONFIG_FILE, '')}3z7sc7_8.tmp").write_text('{"form')
    with pytest.raises(UserError, match="without --resume"):
        RunFolder.open(out, "search", staged=False, resume=True)
    f = RunFolder.open(out, "search", staged=False)
    f.start({"a": 1})
    f.close()
    assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE, CONFIG_FILE, "run.json"]
    # someone's own hidden temporary is still someone's: not taken
    other = tmp_path / "other"
    other.mkdir()
    (other / ".notes.abcdefgh.tmp").write_text("mine")
    with pytest.raises(UserError, match="not empty"):
        RunFolder.open(other, "search", staged=False)


def test_the_temporaries_of_writes_a_kill_cut_short_are_removed_when_the_folder_is_next_taken(tmp_path):
    """Battery 14c: a search killed while it wrote checkpoint.json kept its temporary (.checkpoint.json.*.tmp, a
    copy of the checkpoint) after every later run, one more per such kill. The next run that takes the folder's
    lock removes them; the run's own files stay."""
    out = tmp_path / "run"
    f = RunFolder.open(out, "search", staged=False)
    f.start({"a": 1})
    (out / "checkpoint.json").write_text("{}")
    f.close()
    (out / ".checkpoint.json.6bdyayly.tmp").write_text('{"half')
    (out / ".cells.json.ef76xaj6.tmp").write_text("")
    (out / "samples").mkdir()
    (out / "samples" / ".niah_single_1-256.json.qzl9g99g.tmp").write_text("")
    (out / "stages" / "s").mkdir(parents=True)  # another run's folder (its own lock): another process's to clean
    (out / "stages" / "s" / ".lock").write_text("")
    (out / "stages" / "s" / ".checkpoint.json.abcdefgh.tmp").write_text("")
    g = RunFolder.open(out, "search", staged=False, resume=True)
    g.close()
    assert sorted(p.name for p in out.iterdir()) == [".lock", "checkpoint.json", "config.json", "run.json", "samples",
                                                    "stages"]
    assert not list((out / "samples").iterdir())
    assert (out / "stages" / "s" / ".checkpoint.json.abcdefgh.tmp").exists()


@pytest.mark.parametrize("how", ["moved", "removed"])
def test_a_folder_moved_or_removed_under_its_run_is_not_rebuilt_by_the_next_write(tmp_path, how):
    """battery 16: `mv f9 f9mv` while a finetune worked in f9: its writers rebuilt f9 by path (checkpoints, logs,
    the model, run.json; no config.json, no lock) and it ended "done" there, its first steps left in f9mv; a
    search stopped with a bare "No such file or directory". Every writer of the project now asks the folder's lock
    first: the run stops with one line, and nothing appears at the old path."""
    import shutil

    from longrope.io import append_text, make_folder, write_text

    out = tmp_path / "f9"
    folder = RunFolder.open(out, "finetune", staged=False)
    folder.start({"x": 1})
    write_text(out / "train_state.json", "{}")  # in place: writes go on
    append_text(out / "train_log.jsonl", "{}\n")
    if how == "moved":
        out.rename(tmp_path / "f9mv")
    else:
        shutil.rmtree(out)
    try:
        for write in (lambda: write_text(out / "train_state.json", "{}"),
                      lambda: append_text(out / "train_log.jsonl", "{}\n"),
                      lambda: make_folder(out / "checkpoints" / "step-00000004")):
            with pytest.raises(UserError, match=f"the run folder {out} was moved or removed while this run worked"):
                write()
        assert not out.exists()
        write_text(tmp_path / "elsewhere.txt", "x")  # writes outside the folder are not its business
    finally:
        folder.close()
    write_text(out / "after.txt", "x")  # once the run let go of the folder, the path is anyone's
    if how == "moved":
        assert (tmp_path / "f9mv" / "train_log.jsonl").read_text() == "{}\n"


def test_a_run_that_stops_before_its_end_says_how_in_run_json(tmp_path):
    """An interrupted or failed in-place run (a search, a pipeline, a fine-tuning with work kept for --resume) left
    run.json at "running" with the pid of a process long gone (battery 20): now "interrupted", or "failed" with its
    error's one line; a resume starts it "running" again."""
    for exc, status in ((KeyboardInterrupt(), "interrupted"), (UserError("the data changed:\nrebuild"), "failed")):
        out = tmp_path / status
        folder = RunFolder.open(out, "search", staged=False)
        folder.start({"a": 1})
        (out / "checkpoint.json").write_text("{}")  # work to keep
        try:
            raise exc
        except BaseException:
            folder.abandon()
        run = json.loads((out / "run.json").read_text())
        assert run["status"] == status and run["stopped"]
        assert run.get("error") == (None if status == "interrupted" else "the data changed:\\nrebuild")
        again = RunFolder.open(out, "search", staged=False, resume=True)
        again.start({"a": 1})
        assert json.loads((out / "run.json").read_text())["status"] == "running"
        again.close()


@pytest.mark.parametrize("argv0,program", [("/venv/lib/python3.11/site-packages/longrope/__main__.py",
                                            ["python", "-m", "longrope"]), ("/venv/bin/longrope", ["longrope"])])
def test_run_json_records_the_command_as_it_can_be_typed(tmp_path, monkeypatch, argv0, program):
    """Under python -m longrope, run.json's argv began with "__main__.py", which no one can type (battery 20c)."""
    monkeypatch.setattr("sys.argv", [argv0, "eval", "ppl", "--model", "tiny"])
    f = RunFolder.open(tmp_path / "run", "eval ppl", staged=True)
    f.start({"a": 1})
    f.finish({"ok": True})
    assert json.loads((tmp_path / "run" / "run.json").read_text())["argv"] == [*program, "eval", "ppl", "--model",
                                                                                "tiny"]


@pytest.mark.parametrize("arrived", ["a folder of the user's files", "a file"])
def test_what_arrived_at_the_output_while_a_run_worked_is_not_replaced(tmp_path, tokenizer_for_swap, arrived):
    """Battery 23b: a writer that replaces its output (eval's finished run, tokenize's shard folder) checked what was
    there when it began; what arrived while it worked (the user's notes in a folder of that name, a file) was moved
    aside at the swap and removed without a word. The writer's check is made again at the swap."""
    import shutil

    from longrope.data import tokenize as tokenize_mod
    from longrope.data import tokenize_corpus

    def arrive(out):
        shutil.rmtree(out)
        if arrived == "a file":
            out.write_text("my notes")
        else:
            out.mkdir()
            (out / "notes.txt").write_text("my notes")

    def kept(out):
        return (out if arrived == "a file" else out / "notes.txt").read_text() == "my notes"

    out = tmp_path / "run"
    g = _finished_then_started_again(out)
    arrive(out)
    with pytest.raises(UserError, match="changed while this run worked: it now (is not|holds).* it is kept at "
                                        f"{tmp_path / 'run.kept-1'}; move it where you want it, or run again"):
        g.finish({"v": 2})
    g.abandon()
    assert kept(out) and sorted(p.name for p in tmp_path.iterdir()) == ["run", "run.kept-1"]
    assert json.loads((tmp_path / "run.kept-1" / "summary.json").read_text()) == {"v": 2}  # this run's work, kept
    shutil.rmtree(tmp_path / "run.kept-1")

    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("some words to tokenize " * 20)
    shards = tmp_path / "shards"
    tokenize_corpus(tokenizer_for_swap, [str(texts)], shards, tokenizer_name="t", progress=False)
    real = tokenize_mod.make_encoder

    def arriving(tok):
        encode = real(tok)

        def encode_after(batch):
            if shards.is_dir() and (shards / "meta.json").exists():  # once: the shard folder there is replaced
                arrive(shards)
            return encode(batch)
        return encode_after

    tokenize_mod.make_encoder = arriving
    try:
        with pytest.raises(UserError, match="changed while this run worked"):
            tokenize_corpus(tokenizer_for_swap, [str(texts)], shards, tokenizer_name="t", progress=False, force=True)
    finally:
        tokenize_mod.make_encoder = real
    assert kept(shards) and sorted(p.name for p in tmp_path.iterdir()) == ["run", "shards", "shards.kept-1", "texts"]
    assert (tmp_path / "shards.kept-1" / "meta.json").is_file()


@pytest.fixture
def tokenizer_for_swap():
    from longrope.data.tokenizer_loading import load_tokenizer

    return load_tokenizer("tiny")


def _finished_eval_run_holding(tmp_path, name: str):
    """A finished eval ppl run at ``tmp_path/run`` with ``name`` put into it afterwards (a folder when it ends with
    '/', else a file); returns the run folder and that path."""
    out = tmp_path / "run"
    f = RunFolder.open(out, "eval ppl", staged=True)
    f.start({"v": 1})
    (f.path / "ppl.json").write_text("{}")
    f.finish({"v": 1})
    there = out / name.rstrip("/")
    there.mkdir() if name.endswith("/") else there.write_text("x")
    return out, there


@pytest.mark.parametrize("extra", ["notes.txt", "search-run/", ".notes", ".git/"])
def test_a_finished_eval_run_holding_anything_else_is_not_replaced(tmp_path, extra):
    """An eval run replaces a finished one of its command as a whole: a file or folder put there since (notes, a
    search run made inside it with -o RUN/sub) went with the old results without a word; now refused before the
    work, and at the swap when it arrived meanwhile. A hidden one too: a .git or .notes went without a word
    (battery 29e)."""
    out, mine = _finished_eval_run_holding(tmp_path, extra)
    with pytest.raises(UserError, match=f"holds '{mine.name}', which is not part of an eval ppl run"):
        RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    mine.rename(tmp_path / "aside")
    g = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)  # its own outputs alone: replaced
    g.start({"v": 2})
    (tmp_path / "aside").rename(mine)  # arrived while the new run worked
    with pytest.raises(UserError, match=f"holds '{mine.name}', which is not part of an eval ppl run"):
        g.finish({"v": 2})
    g.abandon()
    assert mine.exists() and json.loads((out / "summary.json").read_text()) == {"v": 1}


def test_a_folder_in_use_is_refused_naming_the_run_that_holds_it(tmp_path):
    """A finetune refused in a folder a search held said "(one finetune run per folder)", as if a fine-tuning ran
    there; the refusal names the holder's command where its records say it."""
    out = tmp_path / "run"
    folder = RunFolder.open(out, "search", staged=False)
    folder.start({})
    try:
        with pytest.raises(UserError, match=rf"in use by another longrope process \(pid {os.getpid()}, a search run\);"
                                            r".*\(one run per folder\)$"):
            RunFolder.open(out, "finetune", staged=False)
    finally:
        folder.close()


def test_a_finished_eval_run_with_its_own_writers_leftovers_is_still_replaced(tmp_path):
    """What a writer of the run's own files leaves (a temporary of ppl.json or run.json, a write probe, a lock) is
    no one's work: it does not stop the run being replaced, while the user's hidden files do (battery 29e)."""
    out = tmp_path / "run"
    f = RunFolder.open(out, "eval ppl", staged=True)
    f.start({"v": 1})
    f.finish({"v": 1})
    for name in (".ppl.json.abcd_123.tmp", ".run.json.k2j4h5g6.tmp", ".write-test-123", ".lock"):
        (out / name).write_text("")
    g = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    g.start({"v": 2})
    g.finish({"v": 2})
    assert json.loads((out / "summary.json").read_text()) == {"v": 2}
    (out / ".notes.txt.abcd_123.tmp").write_text("")  # not the run's file: the user's editor, another tool
    with pytest.raises(UserError, match="holds '.notes.txt.abcd_123.tmp', which is not part of an eval ppl run"):
        RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)


@pytest.mark.parametrize("dropping", [".DS_Store", "._ppl.csv", "Thumbs.db", ".ipynb_checkpoints/"])
def test_a_finished_eval_run_holding_what_a_file_browser_or_notebook_writes_is_still_replaced(tmp_path, dropping):
    """Hidden names count as the user's work, and so Finder's .DS_Store (written again whenever the folder is
    looked at) or Jupyter's .ipynb_checkpoints/ refused every rerun into an eval folder (review of battery 29)."""
    out, _ = _finished_eval_run_holding(tmp_path, dropping)
    g = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    g.start({"v": 2})
    (g.path / "ppl.json").write_text("{}")
    g.finish({"v": 2})
    assert json.loads((out / "summary.json").read_text()) == {"v": 2}


@pytest.mark.parametrize("staged", [True, False])
def test_a_new_output_folder_holding_only_what_a_file_browser_writes_is_empty(tmp_path, staged):
    """A new -o folder holding only Finder's .DS_Store was refused as 'already exists and is not empty' (in place) or,
    staged, only when the run had finished ('changed while this run worked'; third review of battery 29)."""
    out = tmp_path / "fresh"
    out.mkdir()
    (out / ".DS_Store").write_text("x")
    f = RunFolder.open(out, "eval ppl" if staged else "search", staged=staged, replace=PPL_OUTPUTS if staged else ())
    f.start({"v": 1})
    f.finish({"v": 1})
    assert json.loads((out / "summary.json").read_text()) == {"v": 1}


def test_a_second_run_into_a_new_folder_holding_only_a_dropping_is_refused_not_swapped_in(tmp_path):
    """A new -o holding only a .DS_Store counted as empty at the start but as a run to replace at the swap: a run of
    the same command that finished there meanwhile was replaced without a word (fourth review of battery 29). It is
    placed as into a new folder: the second to finish is refused, its result kept beside."""
    out = tmp_path / "fresh"
    out.mkdir()
    (out / ".DS_Store").write_text("x")
    a = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    a.start({"v": "a"})
    b = RunFolder.open(out, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    b.start({"v": "b"})
    b.finish({"v": "b"})
    with pytest.raises(UserError, match="written by another process while this one worked"):
        a.finish({"v": "a"})
    assert json.loads((out / "summary.json").read_text()) == {"v": "b"}


def test_the_rerun_command_run_json_records_runs_as_written(tmp_path):
    """battery 32a: run.json said `longrope rerun runs/ft2`, which stops at 'the following arguments are required:
    -o/--output'; the command it records names a new folder, quoted for the shell."""
    import shlex

    from longrope.cli import build_parser

    out = tmp_path / "my run"
    f = RunFolder.open(out, "eval ppl", staged=True)
    f.start({"a": 1})
    f.finish({"ok": True})
    argv = shlex.split(json.loads((out / "run.json").read_text())["rerun"])
    assert argv[0] == "longrope"
    args = build_parser().parse_args(argv[1:])
    assert (args.run_dir, args.output) == (str(out), f"{out}-again")
