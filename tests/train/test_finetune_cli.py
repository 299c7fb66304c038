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
