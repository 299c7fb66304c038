"""``longrope.data.tokenizer_loading``: ``--tokenizer`` loaded as ``--model`` is, the tokenizer only."""

from __future__ import annotations

import json
import shutil

import pytest

from longrope.data.tokenizer_loading import load_tokenizer
from longrope.embedded import TINY_MODEL_DIR
from longrope.errors import UserError


def _export_like(folder, *, tokenizer: bool):
    """A model folder as `longrope export` writes it (longrope scaling with vLLM's mscale keys), no weights."""
    folder.mkdir()
    config = json.loads((TINY_MODEL_DIR / "config.json").read_text())
    scaling = {"rope_type": "longrope", "short_factor": [1.0] * 32, "long_factor": [2.0] * 32,
               "original_max_position_embeddings": 256, "factor": 2.0, "short_mscale": 1.0, "long_mscale": 1.0}
    config.update(rope_scaling=scaling, rope_parameters={**scaling, "rope_theta": 10000.0}, max_position_embeddings=512)
    (folder / "config.json").write_text(json.dumps(config))
    if tokenizer:
        for name in ("tokenizer.json", "tokenizer_config.json"):
            shutil.copy(TINY_MODEL_DIR / name, folder / name)
    return folder


def test_an_exported_model_folder_loads_quietly_and_one_without_tokenizer_is_one_line(tmp_path, capfd):
    # battery 9a: `tokenize --tokenizer EXPORT` printed transformers' "Unrecognized keys in rope_parameters ...
    # {'short_mscale', 'long_mscale'}" (load_model drops it); without tokenizer files the error was transformers'
    # first line, cut off: "Couldn't instantiate the backend tokenizer from one of: "
    tok = load_tokenizer(_export_like(tmp_path / "export", tokenizer=True))
    assert tok("hello")["input_ids"]
    assert "mscale" not in capfd.readouterr().err
    with pytest.raises(UserError, match="has no tokenizer files"):
        load_tokenizer(_export_like(tmp_path / "bare", tokenizer=False))
