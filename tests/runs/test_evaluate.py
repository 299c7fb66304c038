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
