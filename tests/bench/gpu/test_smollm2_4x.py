"""The device benchmark ``bench.gpu.smollm2_4x`` in its ``--smoke`` mode: the same steps on a CPU
with the embedded model (search, held-out PPL of every method at L and 4L, passkey), one folder."""

from __future__ import annotations

import json

from bench.gpu import smollm2_4x


def test_smoke_mode_runs_every_step_and_writes_the_summary(tmp_path, capsys):
    out = tmp_path / "smoke"
    assert smollm2_4x.main(["--smoke", "-o", str(out)]) == 0
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


def test_a_non_empty_folder_is_refused(tmp_path, capsys):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "f").write_text("")
    assert smollm2_4x.main(["--smoke", "-o", str(tmp_path / "x")]) == 2
    assert "not empty" in capsys.readouterr().err
