"""``longrope finetune``: the command writes a run folder (config.json, run.json, summary.json) around
the fine-tuning outputs, and ``longrope rerun`` repeats it to the same loss curve."""

from __future__ import annotations

import json

from longrope.cli import main


def test_finetune_command_writes_a_run_folder_and_reruns_identically(tiny_dir, factors_file, corpus_dir, tmp_path,
                                                                      capsys):
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "3", "--warmup-steps", "1", "--seq-len", "64", "--batch-size", "1", "--quiet", "-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    for name in ("config.json", "run.json", "summary.json", "train_log.jsonl", "loss.png"):
        assert (out / name).exists(), name
    assert (out / "model" / "config.json").exists()
    first = json.loads((out / "summary.json").read_text())
    assert json.loads((out / "run.json").read_text())["status"] == "done" and first["steps"] == 3
    assert main(["rerun", str(out), "-o", str(tmp_path / "again")]) == 0
    again = json.loads((tmp_path / "again" / "summary.json").read_text())
    assert (again["first_loss"], again["final_loss"]) == (first["first_loss"], first["final_loss"])

    def curve(folder):
        return [json.loads(line)["loss"] for line in (folder / "train_log.jsonl").read_text().splitlines()]

    assert curve(tmp_path / "again") == curve(out)
    # a finished run is not overwritten without --resume: one line, exit 2
    capsys.readouterr()
    assert main(argv) == 2
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert len(err) == 1 and "--resume" in err[0]


def test_a_second_finetune_into_a_working_folder_is_refused(tiny_dir, factors_file, corpus_dir, tmp_path, capsys):
    """``finetune --resume`` while the same fine-tuning still runs: one line, exit 2, nothing written."""
    from longrope.runs.folder import FolderLock

    out = tmp_path / "ft"
    out.mkdir()
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "2", "--seq-len", "64", "--quiet", "-o", str(out)]
    with FolderLock.acquire(out, "finetune"):
        for extra in ([], ["--resume"]):
            assert main(argv + extra) == 2
            err = capsys.readouterr().err.strip().splitlines()
            assert len(err) == 1 and "in use by another longrope process" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]
    assert main(argv + ["--resume"]) == 0  # released: the run starts (nothing to resume yet)


def test_a_set_up_failure_leaves_no_stub_folder(tiny_dir, factors_file, tmp_path, capsys):
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(tmp_path / "nowhere"),
            "--steps", "2", "--seq-len", "64", "--quiet", "-o", str(out)]
    assert main(argv) == 2
    assert "nowhere" in capsys.readouterr().err
    assert not out.exists()  # no "running" run.json of a dead process left behind


def test_a_checkpoint_the_disk_cannot_take_is_one_line_and_leaves_no_partial(tiny_dir, factors_file, corpus_dir,
                                                                             tmp_path, capsys, monkeypatch):
    """torch's zip writer (accelerate's save_state) fails without an errno on a full disk or past ``ulimit -f``:
    "basic_ios::clear: iostream error", then "unexpected pos N vs M" — a 60-line traceback, exit 1, half a
    checkpoint left holding the space (battery 17). Now the disk's free space or the file-size limit names it."""
    import collections
    import resource
    import shutil

    import accelerate.checkpointing as acc_checkpointing

    real_save = acc_checkpointing.save

    def save_fails_midway(obj, path, **kwargs):
        if not kwargs.get("safe_serialization", True):  # the optimizer's torch.save
            with open(path, "wb") as f:
                f.write(b"\0" * 1000)
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 12070272 vs 12070164")
        return real_save(obj, path, **kwargs)

    monkeypatch.setattr(acc_checkpointing, "save", save_fails_midway)
    usage = collections.namedtuple("usage", "total used free")
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "2", "--checkpoint-every", "2", "--seq-len", "64", "--quiet"]
    cases = [(usage(1 << 30, 1 << 30, 4096), resource.getrlimit(resource.RLIMIT_FSIZE), "no space left on the disk"),
             (usage(1 << 40, 1 << 30, 1 << 39), (1 << 20, resource.RLIM_INFINITY), "past the file-size limit")]
    real = resource.getrlimit
    for i, (disk, fsize, said) in enumerate(cases):
        monkeypatch.setattr(shutil, "disk_usage", lambda path, disk=disk: disk)
        monkeypatch.setattr(resource, "getrlimit", lambda which, fsize=fsize: fsize
                            if which == resource.RLIMIT_FSIZE else real(which))
        out = tmp_path / f"ft{i}"
        assert main(argv + ["-o", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and said in err[0] and "checkpoints" in err[0], err
        assert [p.name for p in (out / "checkpoints").iterdir()] == ["run-id"]  # no .partial left holding the space


def test_a_checkpoint_save_interrupted_leaves_no_partial(tiny_dir, factors_file, corpus_dir, tmp_path, capsys,
                                                         monkeypatch):
    """A Ctrl-C (or, since battery 18, SIGTERM) while accelerate's save_state wrote a checkpoint left its hidden
    '.step-N.partial' folder, a copy of the weights and optimizer, until a later save of the same run; a run never
    resumed kept it for good. The interrupted save removes it; the finished checkpoints stay."""
    import accelerate.checkpointing as acc_checkpointing

    real_save = acc_checkpointing.save

    def interrupted_midway(obj, path, **kwargs):
        real_save(obj, path, **kwargs)
        if ".step-00000004.partial" in str(path):  # the second checkpoint: a file of it written, then the signal
            raise KeyboardInterrupt

    monkeypatch.setattr(acc_checkpointing, "save", interrupted_midway)
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "4", "--checkpoint-every", "2", "--seq-len", "64", "--quiet", "-o", str(out)]
    assert main(argv) == 130
    assert "longrope finetune: interrupted" in capsys.readouterr().err.strip().splitlines()[-1]
    assert [p.name for p in sorted((out / "checkpoints").iterdir())] == ["run-id", "step-00000002"]


def test_a_refused_resume_leaves_the_run_records_as_they_were(tiny_dir, factors_file, corpus_dir, tmp_path, capsys):
    """``finetune --resume --seed 5`` on a run made with seed 0 is refused; it rewrote config.json (seed 5) and
    run.json (status "running", its argv) before the refusal, and ``rerun`` then repeated the refused settings."""
    out = tmp_path / "ft"
    argv = ["finetune", "--model", str(tiny_dir), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "2", "--seq-len", "64", "--batch-size", "1", "--quiet", "-o", str(out)]
    assert main(argv) == 0, capsys.readouterr().err
    records = {name: (out / name).read_bytes() for name in ("config.json", "run.json")}
    capsys.readouterr()
    assert main([*argv, "--resume", "--seed", "5"]) == 2
    assert "--seed is 5 but the checkpoint was made with 0" in capsys.readouterr().err
    assert {name: (out / name).read_bytes() for name in records} == records


def test_finetune_takes_the_familys_attention_by_default(build_tiny_model, factors_file, corpus_dir, tmp_path, capsys):
    """Gemma 2 runs only with eager attention: finetune's default was 'sdpa' for every family, so a Gemma 2 model
    was refused unless --attn-implementation was given, with 'omit it' advice for an option nobody gave (battery
    20c). The default is the family's (as eval's and search's)."""
    model = tmp_path / "tiny-gemma2"
    build_tiny_model("gemma2").save_pretrained(model)
    argv = ["finetune", "--model", str(model), "--factors", str(factors_file), "--data", str(corpus_dir),
            "--steps", "1", "--seq-len", "64", "--quiet", "-o", str(tmp_path / "ft")]
    assert main(argv) == 0, capsys.readouterr().err
    assert (tmp_path / "ft" / "model" / "config.json").exists()


def test_a_fine_tuning_the_python_api_ran_is_resumed_by_the_command(make_config, tmp_path, capsys):
    """``longrope.train.finetune`` writes checkpoints but no run record: ``finetune --resume`` on that folder said
    "already exists and is not empty; choose a new folder", not why. It is taken up, checked as any resume is, and
    becomes a run folder; the Python API's ``quiet`` draws no transformers bars either."""
    from transformers.utils import logging as hf_logging

    from longrope.train import finetune

    cfg = make_config(steps=4, checkpoint_every=2, warmup_steps=1)
    hf_logging.enable_progress_bar()
    finetune(cfg)
    assert "Writing model shards" not in capsys.readouterr().err
    assert hf_logging.is_progress_bar_enabled()  # the caller's own setting, back when the run ends
    out = cfg.output
    argv = ["finetune", "--model", cfg.model, "--factors", cfg.factors, "--data", cfg.data, "--seq-len", "64",
            "--learning-rate", "3e-3", "--warmup-steps", "1", "--checkpoint-every", "2", "--quiet", "-o", out,
            "--resume"]
    assert main([*argv, "--steps", "6"]) == 2  # the checkpoint's own settings are still checked
    assert "checkpoint was made with 4" in capsys.readouterr().err
    assert main([*argv, "--steps", "4"]) == 0, capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "run.json").read_text())["status"] == "done"
