"""A run refused while it sets up leaves nothing that blocks the next try: run folders that hold no
work (stubs) are taken over by a fresh start, a search refused before its first evaluation leaves no
folder; folders with a checkpoint stay protected. And ``finetune``'s default warm-up fits a short run."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys

import pytest

from longrope.errors import ConfigError, UserError
from longrope.runs.folder import RunFolder


def _stub(out, command="search", **run):
    """What a run that stopped during its set-up leaves: config.json and run.json "running"."""
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": command, "config": {}}))
    (out / "run.json").write_text(json.dumps({"command": command, "status": "running", **run}))


def test_a_stub_is_taken_over_by_a_fresh_start_and_its_records_go(tmp_path):
    out = tmp_path / "s"
    _stub(out, started="2020-01-01T00:00:00Z")  # an older stub: no pid recorded
    f = RunFolder.open(out, "search", staged=False)
    assert not (out / "config.json").exists() and not (out / "run.json").exists()
    f.start({"x": 1})
    run = json.loads((out / "run.json").read_text())
    assert run["previous_starts"] == [] and run["pid"] == os.getpid() and run["host"] == platform.node()


@pytest.mark.parametrize("command", ["search", "finetune", "pipeline"])
def test_a_stub_of_a_dead_process_is_taken_over(tmp_path, command):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True)
    out = tmp_path / "s"
    _stub(out, command, pid=int(dead.stdout), host=platform.node())
    RunFolder.open(out, command, staged=False)


def test_a_stub_is_judged_by_the_lock_not_by_a_reused_pid(tmp_path):
    """A run in its set-up holds the folder's lock: a second start is refused by it. A stub whose pid now
    belongs to another, unrelated process (pids are reused: after a reboot, in a new container) was refused
    as "in use by a search run still setting up (pid N); wait for it" for ever (battery 9b); it is taken
    over."""
    from longrope.runs.folder import FolderLock

    out = tmp_path / "s"
    with subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"]) as proc:
        try:
            _stub(out, pid=proc.pid, host=platform.node())
            with FolderLock.acquire(out, "search"):  # the run setting up holds the lock
                with pytest.raises(UserError, match="in use by another longrope process"):
                    RunFolder.open(out, "search", staged=False)
            assert (out / "run.json").exists()
            RunFolder.open(out, "search", staged=False).close()  # a live pid without the lock: not that run
        finally:
            proc.kill()
    assert not (out / "run.json").exists()


@pytest.mark.parametrize("work", ["checkpoint.json", "summary.json", "checkpoints", "done", "other-command"])
def test_a_folder_with_work_stays_protected(tmp_path, work):
    out = tmp_path / "s"
    _stub(out, "finetune" if work == "other-command" else "search",
          **({"status": "done"} if work == "done" else {}))
    if work == "checkpoints":
        (out / work).mkdir()
    elif work.endswith(".json"):
        (out / work).write_text("{}")
    with pytest.raises(UserError, match="already exists and holds a"):
        RunFolder.open(out, "search", staged=False)
    assert (out / "config.json").exists()


def test_abandon_removes_only_an_in_place_folder_it_created_without_work(tmp_path):
    new = RunFolder.open(tmp_path / "new", "search", staged=False)
    new.start({})
    new.abandon()
    assert not (tmp_path / "new").exists()
    (tmp_path / "mine").mkdir()  # made by the user: kept
    RunFolder.open(tmp_path / "mine", "search", staged=False).abandon()
    assert (tmp_path / "mine").is_dir()
    worked = RunFolder.open(tmp_path / "worked", "search", staged=False)
    (worked / "checkpoint.json").write_text("{}")
    worked.abandon()
    assert (tmp_path / "worked" / "checkpoint.json").exists()


def test_abandon_never_removes_the_records_of_another_process(tmp_path):
    # two starts raced into one empty folder: the second's records are there when the first gives up
    first = RunFolder.open(tmp_path / "race", "search", staged=False)
    first.start({})
    run = json.loads((tmp_path / "race" / "run.json").read_text())
    (tmp_path / "race" / "run.json").write_text(json.dumps({**run, "pid": os.getppid()}))
    first.abandon()
    assert (tmp_path / "race" / "run.json").exists()


# -- longrope search ------------------------------------------------------------------------------

KNOBS = ["--population", "6", "--parents", "3", "--mutations", "2", "--crossovers", "2", "--iterations", "1",
         "--samples", "2", "--heldout-samples", "2", "--quiet", "--initial", "6", "--target-length", "128",
         "--fitness", "ppl"]


def _search(tiny, out, *extra, model=None, data=None):
    from longrope.cli import main

    return main(["search", "--model", str(model or tiny / "model"), "--data", str(data or tiny / "data"), "-o",
                 str(out), *KNOBS, *extra])


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="needs a machine without CUDA")
def test_a_search_refused_for_its_device_leaves_no_folder_and_a_retry_runs(tiny, tmp_path, capsys):
    out = tmp_path / "s39"
    assert _search(tiny, out, "--device", "cuda") == 2
    err = capsys.readouterr().err.strip()
    assert "--device cuda" in err and "CUDA is not available" in err and len(err.splitlines()) == 1
    assert not out.exists()
    assert _search(tiny, out, "--max-evals", "1", "--no-report") == 0
    assert (out / "checkpoint.json").exists()
    # a folder with a real checkpoint stays protected
    capsys.readouterr()
    assert _search(tiny, out, "--max-evals", "1", "--no-report") == 2
    assert "add --resume" in capsys.readouterr().err


def test_a_search_failing_in_its_set_up_leaves_no_folder(tiny, tmp_path, capsys, monkeypatch):
    """Any set-up failure after the folder was opened (here: the evaluators, as with an unreachable
    Ray cluster) removes the folder the run created."""
    import longrope.search.backends as backends

    def refuse(*args, **kwargs):
        raise UserError("cannot connect to the Ray cluster at 'auto'")

    monkeypatch.setattr(backends, "make_evaluator", refuse)
    out = tmp_path / "s40"
    assert _search(tiny, out, "--ray-address", "auto") == 2
    assert "Ray cluster" in capsys.readouterr().err
    assert not out.exists()


def test_a_search_stub_left_by_an_earlier_version_does_not_block_a_retry(tiny, tmp_path, capsys):
    out = tmp_path / "s39"
    _stub(out)
    assert _search(tiny, out, "--resume") == 2  # nothing to resume, and the hint works:
    assert "run without --resume" in capsys.readouterr().err
    assert _search(tiny, out, "--max-evals", "1", "--no-report") == 0
    assert json.loads((out / "run.json").read_text())["status"] == "done"


# -- finetune: the default warm-up --------------------------------------------------------------


def test_the_default_warmup_is_clamped_to_the_steps_and_an_explicit_one_is_checked():
    from longrope.train.config import WARMUP_STEPS, FinetuneConfig

    req = {"model": "tiny", "factors": "f.json", "data": "d", "output": "o"}
    assert FinetuneConfig(**req, steps=1).warmup == 0  # a warm-up starts from 0: the only step trains at the peak
    assert FinetuneConfig(**req, steps=10).warmup == 9
    assert FinetuneConfig(**req, steps=400).warmup == WARMUP_STEPS
    assert FinetuneConfig(**req, steps=1, warmup_steps=0).warmup == 0
    # not given stays not given in the saved config: started again with more steps, the default applies
    short = FinetuneConfig(**req, steps=10)
    assert short.to_dict()["warmup_steps"] is None
    assert FinetuneConfig(**{**short.to_dict(), "steps": 100}).warmup == WARMUP_STEPS
    with pytest.raises(ConfigError, match=r"warmup_steps must be in \[0, steps\], got 20"):
        FinetuneConfig(**req, steps=1, warmup_steps=20)
    with pytest.raises(ConfigError, match="warmup_steps must be an integer"):
        FinetuneConfig(**req, warmup_steps=2.5)


def test_finetune_steps_1_without_warmup_passes_the_command_line(tmp_path):
    """``longrope finetune --steps 1`` builds its config (the flags' defaults come from the dataclass)."""
    from longrope.cli import build_parser
    from longrope.options import config_from_args
    from longrope.train.config import FinetuneConfig

    args = build_parser().parse_args(["finetune", "--model", "tiny", "--factors", "f.json", "--data", "d",
                                      "--steps", "1", "-o", str(tmp_path / "ft")])
    assert config_from_args(FinetuneConfig, args).warmup == 0
    args = build_parser().parse_args(["finetune", "--model", "tiny", "--factors", "f.json", "--data", "d",
                                      "--steps", "1", "--warmup-steps", "20", "-o", str(tmp_path / "ft")])
    with pytest.raises(ConfigError, match="warmup_steps"):
        config_from_args(FinetuneConfig, args)


def test_a_search_on_shards_of_a_larger_vocabulary_is_refused_before_its_folder(tiny, tmp_path, capsys):
    """Battery 27c: a model without tokenizer files searched on shards holding ids past its embeddings failed at
    its first evaluations ("failed 3 times in a row ... fix it and --resume"), its folder left for a --resume
    that the re-tokenized data would refuse; it is one line before any folder or weight."""
    import shutil

    model, data = tmp_path / "model", tmp_path / "data"
    shutil.copytree(tiny / "model", model)
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"):
        (model / name).unlink(missing_ok=True)
    shutil.copytree(tiny / "data", data)
    meta = json.loads((data / "meta.json").read_text())
    meta["tokenizer"].update(vocab_size=1000, max_token_id=999)  # made with a larger tokenizer than the model's
    (data / "meta.json").write_text(json.dumps(meta))
    out = tmp_path / "s41"
    assert _search(tiny, out, "--fitness", "ppl", model=model, data=data) == 2
    err = capsys.readouterr().err.strip()
    assert "--data holds token id 999 but --model has" in err and len(err.splitlines()) == 1, err
    assert not out.exists()
