"""``longrope export``: --format gguf, the reference CSV, and one-line errors for bad targets."""

from __future__ import annotations

import json

import gguf
import numpy as np
import pytest

from longrope.cli import main


def _run(capsys, *argv):
    capsys.readouterr()
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def _factors(tmp_path, *, target=128, original=32, n=8):
    from longrope.rope import FactorSet

    return FactorSet(long_factor=np.linspace(1, 4, n), original_max_position_embeddings=original,
                     max_position_embeddings=target, rope_theta=1e4).save(tmp_path / "f.json")


def test_reference_csv_exports_with_lengths_from_the_model_and_the_flag(capsys, tiny_model_dir, tmp_path):
    csv = tmp_path / "factors.csv"
    csv.write_text("".join(f"{float(x)!r}\n" for x in np.linspace(1.0, 3.5, 8)))
    code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(csv), "-o",
                        str(tmp_path / "a"))
    assert code == 2 and err.count("\n") == 1 and "--target-length" in err
    code, out, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(csv),
                          "--target-length", "256", "-o", str(tmp_path / "a"))
    assert code == 0, err
    config = json.loads((tmp_path / "a" / "config.json").read_text())
    assert config["rope_scaling"]["long_factor"] == list(np.linspace(1.0, 3.5, 8))
    assert config["original_max_position_embeddings"] == 32 and config["max_position_embeddings"] == 256
    code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(csv),
                        "--target-length", "256", "--original-length", "64", "--format", "gguf",
                        "-o", str(tmp_path / "a.gguf"))
    assert code == 0, err
    kv = {f.name: f.contents() for f in gguf.GGUFReader(tmp_path / "a.gguf").fields.values()}
    assert kv["llama.rope.scaling.original_context_length"] == 64 and kv["llama.context_length"] == 256


def test_target_below_original_is_one_line(capsys, tiny_model_dir, tmp_path):
    f = tmp_path / "f.json"
    f.write_text(json.dumps({"long_factor": [1.0] * 8, "original_max_position_embeddings": 32,
                             "max_position_embeddings": 16, "rope_theta": 1e4}))
    for fmt, out in (("hf", "x"), ("gguf", "x.gguf")):
        code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(f), "--format", fmt,
                            "-o", str(tmp_path / out))
        assert code == 2 and err.count("\n") == 1 and "below" in err
    assert not (tmp_path / "x").exists() and not (tmp_path / "x.gguf").exists()


def test_gguf_from_hf_then_from_gguf(capsys, tiny_model_dir, tmp_path):
    f = _factors(tmp_path)
    code, out, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(f), "--format", "gguf",
                          "--dtype", "float32", "-o", str(tmp_path / "m.gguf"))
    assert code == 0, err
    assert json.loads(out)["format"] == "gguf"
    first = {t.name: t for t in gguf.GGUFReader(tmp_path / "m.gguf").tensors}
    assert first["token_embd.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    f2 = tmp_path / "g"
    f2.mkdir()
    f2 = _factors(f2, target=256)
    code, out, err = _run(capsys, "export", "--model", str(tmp_path / "m.gguf"), "--factors", str(f2), "--format",
                          "gguf", "-o", str(tmp_path / "m2.gguf"))
    assert code == 0, err
    kv = {f.name: f.contents() for f in gguf.GGUFReader(tmp_path / "m2.gguf").fields.values()}
    assert kv["llama.context_length"] == 256
    code, _, err = _run(capsys, "export", "--model", str(tmp_path / "m.gguf"), "--factors", str(f2), "--format",
                        "gguf", "--dtype", "float16", "-o", str(tmp_path / "m3.gguf"))
    assert code == 2 and "--dtype" in err and err.count("\n") == 1


@pytest.mark.parametrize("fmt, out, needle", [
    ("gguf", "folder", "is a folder"),
    ("hf", "file.txt", "is a file"),
])
def test_bad_outputs_are_one_line(capsys, tiny_model_dir, tmp_path, fmt, out, needle):
    (tmp_path / "folder").mkdir()
    (tmp_path / "file.txt").write_text("x")
    code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(_factors(tmp_path)),
                        "--format", fmt, "-o", str(tmp_path / out))
    assert code == 2 and err.count("\n") == 1 and needle in err


def test_gguf_of_a_family_llamacpp_cannot_run_is_refused_before_loading(capsys, build_tiny_model, tmp_path):
    build_tiny_model("gemma").save_pretrained(tmp_path / "gemma")
    code, _, err = _run(capsys, "export", "--model", str(tmp_path / "gemma"), "--factors",
                        str(_factors(tmp_path)), "--format", "gguf", "-o", str(tmp_path / "g.gguf"))
    assert code == 2 and err.count("\n") == 1 and "llama.cpp" in err and "--format hf" in err


def test_factors_for_another_original_length_are_refused_unless_asked_for(capsys, tmp_path):
    """A file for another model's L (8192 → 32768) on tiny (L = 256) used to export a config claiming
    original_max_position_embeddings 8192 for a 256-token model, with exit 0."""
    from longrope.models import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    f = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=8192,
                      target_length=32768).save(tmp_path / "f.json")
    for fmt, out in (("hf", "x"), ("gguf", "x.gguf")):
        code, _, err = _run(capsys, "export", "--model", "tiny", "--factors", str(f), "--format", fmt,
                            "-o", str(tmp_path / out))
        assert code == 2 and err.count("\n") == 1, err
        assert "L=8192" in err and "L=256" in err and "--original-length 8192" in err
        assert not (tmp_path / out).exists()
    code, _, err = _run(capsys, "export", "--model", "tiny", "--factors", str(f), "--original-length", "8192",
                        "-o", str(tmp_path / "x"))
    assert code == 0, err
    assert json.loads((tmp_path / "x" / "config.json").read_text())["original_max_position_embeddings"] == 8192


def test_overwrite_of_a_run_folder_another_process_works_in_is_refused(capsys, tiny_model_dir, tmp_path):
    """``export -o RUN --overwrite`` while a search worked in RUN replaced the folder under it: the search finished
    rc 0 into the removed folder, its checkpoint and results gone (battery 5). The run's lock now refuses it."""
    from longrope.runs.folder import FolderLock

    run = tmp_path / "run"
    run.mkdir()
    (run / "checkpoint.json").write_text("{}")
    with FolderLock.acquire(run, "search"):  # the search's hold on its folder (a lock is per open file)
        code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(_factors(tmp_path)),
                            "-o", str(run), "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "is in use by another longrope process" in err
    assert (run / "checkpoint.json").exists()
    (run / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": {}}))
    code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(_factors(tmp_path)),
                        "-o", str(run), "--overwrite")  # once the search is done: still a run folder, not a model
    assert code == 2 and err.count("\n") == 1 and "is a search run folder" in err
    assert (run / "checkpoint.json").exists()


def test_overwrite_replaces_an_exported_model_and_nothing_else(capsys, tiny_model_dir, tmp_path):
    """--overwrite replaced any folder whole: an idle search folder (its checkpoint and results) or a folder of
    the user's files given by a mistyped -o (battery 6). It replaces a model folder, an earlier export."""
    out = tmp_path / "out"
    argv = ["export", "--model", str(tiny_model_dir), "--factors", str(_factors(tmp_path)), "-o", str(out)]
    assert _run(capsys, *argv)[0] == 0
    (out / "stale.txt").write_text("x")
    code, _, err = _run(capsys, *argv, "--overwrite")
    assert code == 0 and not (out / "stale.txt").exists() and (out / "config.json").exists(), err
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep")
    code, _, err = _run(capsys, *argv[:-1], str(mine), "--overwrite")
    assert code == 2 and err.count("\n") == 1 and "holds no model" in err
    assert (mine / "notes.txt").read_text() == "keep"
    notes = tmp_path / "notes.gguf"
    notes.write_text("keep")
    code, _, err = _run(capsys, *argv[:-1], str(notes), "--format", "gguf", "--overwrite")
    assert code == 2 and "is not a GGUF file" in err and notes.read_text() == "keep"


def test_an_output_given_as_a_link_exports_into_the_folder_it_names(capsys, tiny_model_dir, tmp_path):
    """``-o LINK`` (LINK -> a folder on another disk, say): export failed 'Not a directory' after all the work when
    the folder was empty, and swapped its folder in for the link otherwise, where eval and tokenize write into the
    folder a link names (battery 19)."""
    elsewhere = tmp_path / "disk" / "out"
    elsewhere.mkdir(parents=True)
    link = tmp_path / "out"
    link.symlink_to(elsewhere)
    argv = ["export", "--model", str(tiny_model_dir), "--factors", str(_factors(tmp_path)), "-o", str(link)]
    code, _, err = _run(capsys, *argv)
    assert code == 0, err
    code, _, err = _run(capsys, *argv, "--overwrite")
    assert code == 0, err
    assert link.is_symlink() and (elsewhere / "config.json").is_file()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # nothing aside, no temporary
    assert sorted(p.name for p in elsewhere.parent.iterdir()) == ["out"]


@pytest.mark.parametrize("fmt", ["hf", "gguf"])
def test_each_export_warning_is_said_once(capsys, caplog, tiny_model_dir, tmp_path, fmt):
    """The writers logged their warnings and the command printed them too: on a terminal every warning (n̂ that
    no runtime expresses) came twice, once bare (battery 6)."""
    import logging

    from longrope.rope import FactorSet

    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4, start_tokens=4).save(tmp_path / "n4.json")
    out = tmp_path / ("m.gguf" if fmt == "gguf" else "m")
    with caplog.at_level(logging.WARNING, logger="longrope"):
        code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(factors), "--format",
                            fmt, "--quiet", "-o", str(out))
    assert code == 0, err
    assert err.count("n̂ = 4") == 1 and err.startswith("longrope export: warning: n̂ = 4"), err
    assert not [r for r in caplog.records if r.name.startswith("longrope.models")]


def test_a_file_output_given_as_a_link_is_written_at_its_target(capsys, tiny_model_dir, tmp_path):
    """A link given as -o names where the output goes, as it does for folders (``ln -s /big/disk/x.gguf x.gguf``):
    baseline and a GGUF export with --overwrite replaced the link with their file, the target left as it was; a GGUF
    export to a dangling link said after all its work that another process had written it (battery 23a)."""
    big, here = tmp_path / "big", tmp_path / "here"
    big.mkdir()
    here.mkdir()
    (big / "old.gguf").write_bytes(b"GGUF")  # an earlier export, to be replaced
    for name, target in (("y.json", "y.json"), ("old.gguf", "old.gguf"), ("new.gguf", "new.gguf")):
        (here / name).symlink_to(big / target)
    code, _, err = _run(capsys, "baseline", "--model", str(tiny_model_dir), "--method", "yarn", "--target-length",
                        "128", "-o", str(here / "y.json"))
    assert code == 0, err
    f = _factors(tmp_path)
    for name, extra in (("old.gguf", ["--overwrite"]), ("new.gguf", [])):
        code, _, err = _run(capsys, "export", "--model", str(tiny_model_dir), "--factors", str(f), "--format", "gguf",
                            "--dtype", "float32", "-o", str(here / name), *extra)
        assert code == 0, err
    assert all((here / name).is_symlink() for name in ("y.json", "old.gguf", "new.gguf"))
    assert json.loads((big / "y.json").read_text())["method"] == "yarn"
    assert all(gguf.GGUFReader(big / name).fields for name in ("old.gguf", "new.gguf"))


def test_export_and_rerun_take_a_new_folder_holding_only_a_file_browsers_dropping(capsys, tmp_path):
    """export -o FOLDER with only Finder's .DS_Store in it was 'already exists and is not empty; pass --overwrite', and
    with --overwrite 'holds no model'; rerun -o likewise refused it (fourth review of battery 29)."""
    factors = tmp_path / "y.json"
    assert _run(capsys, "baseline", "--model", "tiny", "--method", "yarn", "--target-length", "512",
                "-o", str(factors))[0] == 0
    out = tmp_path / "fresh"
    out.mkdir()
    (out / ".DS_Store").write_text("x")
    code, _, err = _run(capsys, "export", "--model", "tiny", "--factors", str(factors), "-o", str(out))
    assert code == 0, err
    assert (out / "config.json").is_file() and not (out / ".DS_Store").exists()
    from longrope.cli import _check_rerun_output

    again = tmp_path / "again"
    again.mkdir()
    (again / ".DS_Store").write_text("x")
    _check_rerun_output(str(again), str(tmp_path), "eval ppl", resumable=False)  # no refusal
