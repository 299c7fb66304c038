"""``longrope baseline --original-length``: 0 and 1 are refused (0 used to mean "the config's")."""

from __future__ import annotations

import json

import pytest

from longrope.cli import main


@pytest.mark.parametrize("value", ["0", "1", "-4"])
def test_original_length_below_two_is_one_line_exit_2(capsys, tiny_model_dir, tmp_path, value):
    out = tmp_path / "f.json"
    capsys.readouterr()  # drop what the fixture printed (progress bars)
    code = main(["baseline", "--model", str(tiny_model_dir), "--method", "pi", "--target-length", "128",
                 "-o", str(out), "--original-length", value])
    err = capsys.readouterr().err
    assert code == 2 and "--original-length must be an integer in [2, " in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not out.exists()


def test_original_length_given_or_omitted(capsys, tiny_model_dir, tmp_path):
    for extra, want in (([], 32), (["--original-length", "16"], 16)):
        out = tmp_path / "f.json"
        assert main(["baseline", "--model", str(tiny_model_dir), "--method", "pi", "--target-length", "128",
                     "-o", str(out), *extra]) == 0
        assert json.loads(out.read_text())["original_max_position_embeddings"] == want
    capsys.readouterr()
