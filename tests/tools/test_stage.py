"""``tools.stage``: a file cut into parts with a SHA-256 manifest and joined byte for byte; a missing
or altered part refused in one line."""

from __future__ import annotations

import json

from tools import stage


def test_stage_splits_and_joins_a_file_byte_for_byte(tmp_path, capsys):
    source = tmp_path / "model.gguf"
    source.write_bytes(bytes(range(256)) * 41 + b"tail")  # 10,500 bytes: the last part is shorter
    assert stage.main(["split", "--source", str(source), "--parts", "3", str(tmp_path / "parts")]) == 0
    manifest = json.loads((tmp_path / "parts" / "manifest.json").read_text())
    assert [p["size"] for p in manifest["parts"]] == [3500, 3500, 3500]
    assert stage.main(["join", str(tmp_path / "parts"), str(tmp_path / "out" / "joined.gguf")]) == 0
    assert (tmp_path / "out" / "joined.gguf").read_bytes() == source.read_bytes()


def test_stage_refuses_a_missing_or_altered_part_in_one_line(tmp_path, capsys):
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
