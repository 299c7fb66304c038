"""``longrope.formats.outputs``: which file a one-file output (baseline's factors.json, inspect's report) replaces."""

from __future__ import annotations

import json

import pytest

from longrope.errors import UserError
from longrope.formats.outputs import check_replaceable_file


def _own(doc):
    return isinstance(doc, dict) and "long_factor" in doc


def test_a_new_file_or_one_the_command_wrote_is_replaced(tmp_path):
    check_replaceable_file(tmp_path / "new.json", writes="a factors.json", is_own=_own)
    (tmp_path / "old.json").write_text(json.dumps({"long_factor": [1.0]}))
    check_replaceable_file(tmp_path / "old.json", writes="a factors.json", is_own=_own)


def test_another_file_or_one_inside_a_model_run_or_shard_folder_is_refused(tmp_path):
    # battery 9a: `baseline --model M -o M/config.json` overwrote the model's config.json, -o SHARDS/meta.json a
    # shard folder's metadata, `inspect -o model.gguf` the model
    (tmp_path / "model.gguf").write_bytes(b"GGUF\0\0\0\3")
    with pytest.raises(UserError, match="is not a factors.json"):
        check_replaceable_file(tmp_path / "model.gguf", writes="a factors.json", is_own=_own)
    folders = {"model": ("config.json", {"model_type": "llama"}, "a model folder"),
               "run": ("config.json", {"format": "longrope-run/1", "command": "search"}, "a search run folder"),
               "shards": ("meta.json", {"format": "longrope-token-shards", "version": 1}, "a shard folder")}
    for name, (record, doc, owner) in folders.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / record).write_text(json.dumps(doc))
        (tmp_path / name / "factors.json").write_text(json.dumps({"long_factor": [1.0]}))
        for target in (record, "factors.json", "new.json"):  # battery 10: a new file passed once, then not again
            with pytest.raises(UserError, match=owner):
                check_replaceable_file(tmp_path / name / target, writes="a factors.json", is_own=_own)
