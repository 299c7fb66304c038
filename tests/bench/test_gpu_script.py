"""The device script ``bench/gpu/smollm2_4x.py`` in its ``--smoke`` mode: the same steps on a CPU
with the embedded model (search, held-out PPL of every method at L and 4L, passkey), one folder."""

from __future__ import annotations

import json


def test_smoke_mode_runs_every_step_and_writes_the_summary(tmp_path, capsys, bench_script):
    out = tmp_path / "smoke"
    assert bench_script("gpu/smollm2_4x.py").main(["--smoke", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["smoke"] and set(summary["seconds"]) == {"tokenize", "search", "ppl", "passkey"}
    assert set(summary["heldout_ppl"]) == {"256", "1024"}
    assert set(summary["heldout_ppl"]["1024"]) == {"none", "pi", "ntk", "dynamic-ntk", "yarn", "search"}
    assert summary["heldout_tokens"]["1024"] == 2 * 1023
    assert set(summary["passkey"]) == {"none", "pi", "ntk", "dynamic-ntk", "yarn", "search"}
    ratio = summary["searched_vs_best_closed_form"]
    assert ratio > 0 and summary["best_closed_form"] in ("pi", "ntk", "dynamic-ntk", "yarn")
    printed = json.loads(capsys.readouterr().out)
    assert printed["target_length"] == 1024


def test_a_non_empty_folder_is_refused(tmp_path, capsys, bench_script):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert bench_script("gpu/smollm2_4x.py").main(["--smoke", "-o", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err


def test_stage_splits_and_joins_a_file_byte_for_byte(tmp_path, capsys, bench_script):
    stage = bench_script("gpu/stage.py")
    source = tmp_path / "model.gguf"
    source.write_bytes(bytes(range(256)) * 41 + b"tail")  # 10,500 bytes: the last part is shorter
    assert stage.main(["split", "--source", str(source), "--parts", "3", str(tmp_path / "parts")]) == 0
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert [p["size"] for p in manifest["parts"]] == [3500, 3500, 3500]
    assert stage.main(["join", str(tmp_path / "parts"), str(tmp_path / "out" / "joined.gguf")]) == 0
    assert (tmp_path / "out" / "joined.gguf").read_bytes() == source.read_bytes()


def test_stage_refuses_a_missing_or_altered_part_in_one_line(tmp_path, capsys, bench_script):
    stage = bench_script("gpu/stage.py")
    source = tmp_path / "f.bin"
    source.write_bytes(b"x" * 1000 + b"y" * 1001)
    parts = tmp_path / "parts"
    assert stage.main(["split", "--source", str(source), "--parts", "2", str(parts)]) == 0
    capsys.readouterr()
    (parts / "part-1").write_bytes(b"y" * 1000 + b"z")
    assert stage.main(["join", str(parts), str(tmp_path / "j")]) == 2
    err = capsys.readouterr().err
    assert "part-1 does not match the manifest" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "j").exists() and not (tmp_path / "j.part").exists()
    (parts / "part-0").unlink()
    assert stage.main(["join", str(parts), str(tmp_path / "j")]) == 2
    assert "part-0 is missing" in capsys.readouterr().err
    assert stage.main(["split", "--source", str(tmp_path / "nope"), str(parts)]) == 2
    assert "is not a file" in capsys.readouterr().err
