"""``longrope.runs.evaluate``: what the eval commands say about the sets they compare."""

from __future__ import annotations

import json
import shutil

from longrope.cli import main


def test_none_on_a_model_with_its_own_scaling_is_said_to_be_that_model(tiny, tmp_path, capsys):
    """On a folder ``longrope export`` wrote, 'none' (documented as unscaled) is the model as it loads, with the
    scaling in its config: its row equalled the searched set's, under the name of the unscaled model (battery 5)."""
    scaled = tmp_path / "scaled"
    shutil.copytree(tiny / "model", scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32}
    config["max_position_embeddings"] = 64
    (scaled / "config.json").write_text(json.dumps(config))
    for model, said in ((scaled, True), (tiny / "model", False)):
        assert main(["eval", "ppl", "--model", str(model), "--data", str(tiny / "data"), "--lengths", "32",
                     "--samples", "1", "--quiet", "-o", str(tmp_path / f"ppl-{said}")]) == 0
        err = capsys.readouterr().err
        assert ("carries its own RoPE scaling (yarn): 'none' is the model as it loads" in err) is said, err


def test_a_factor_file_named_in_bytes_that_are_not_utf8_gets_a_printable_set_name(tmp_path):
    """battery 9a: eval ppl --factors $'y\\xff.json' ran the whole evaluation, then writing ppl.csv was a
    UnicodeEncodeError traceback (the set's name held a lone surrogate) and the run folder was lost."""
    import os

    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.evaluate import factor_sets

    info = read_rope_info("tiny")
    path = tmp_path / os.fsdecode(b"y\xff.json")
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(path)
    names = [n for n, _ in factor_sets((str(path),), skip_none=False, info=info, target=512)]
    assert names == ["none", "y\\xff"] and all(n.encode("utf-8") for n in names)


def test_the_records_name_the_factor_file_each_set_came_from(tmp_path, capsys):
    """summary.json's "factors" said "file": null for every factors.json given (only an HF config.json or a CSV
    carried its path), so a record did not say which file a row measured (battery 20c)."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    path = tmp_path / "yarn.json"
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(path)
    out = tmp_path / "pk"
    assert main(["eval", "passkey", "--model", "tiny", "--lengths", "256", "--trials", "1", "--depths", "0.5",
                 "--mode", "needle", "--factors", str(path), "--quiet", "-o", str(out)]) == 0, capsys.readouterr().err
    records = json.loads((out / "summary.json").read_text())["factors"]
    assert [(r["name"], r["file"]) for r in records] == [("none", None), ("yarn", str(path))]
