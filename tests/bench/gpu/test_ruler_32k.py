"""The device benchmark ``bench.gpu.ruler_32k`` in its ``--smoke`` mode: the same two ``eval ruler`` runs
(the model at its trained lengths; every set at the extended length) on a CPU with the embedded model."""

from __future__ import annotations

import json

import pytest

from bench.gpu import ruler_32k


@pytest.mark.slow  # two eval ruler runs (lm-eval builds its tasks each time): minutes on 2 cores
def test_smoke_mode_measures_the_model_and_every_set_and_writes_the_table(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert ruler_32k.main(["--smoke", "-o", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["original_length"] == 256 and summary["target_length"] == 512
    assert set(summary["table"]["base"]) == {"none"}
    assert set(summary["table"]["base"]["none"]["by_length"]) == {"256"}
    assert set(summary["table"]["extended"]) == {"none", "yarn", "ntk"}
    for row in summary["table"]["extended"].values():
        assert 0.0 <= row["avg"] <= 1.0
    assert (out / "extended" / "table.md").is_file()
    assert json.loads(capsys.readouterr().out)["target_length"] == 512
