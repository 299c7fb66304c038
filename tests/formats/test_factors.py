"""``longrope.formats.factors``: the factor files, read into whatever value class it is given."""

from __future__ import annotations

import pytest

from longrope.errors import UserError
from longrope.formats import factors as files
from longrope.rope import FactorSet, make_baseline


def _set():
    return make_baseline("yarn", rope_theta=1e4, rotary_dim=16, original_length=64, target_length=256)


def test_json_csv_and_folder_round_trip(tmp_path):
    fs = _set()
    path = files.save_json(fs, tmp_path / "f" / "factors.json")
    assert files.load(FactorSet, path) == fs
    assert files.load(FactorSet, tmp_path / "f") == fs  # a folder means its factors.json
    assert files.from_json(FactorSet, files.to_json(fs)) == fs
    csv = files.save_csv(fs, tmp_path / "f.csv")
    back = files.load(FactorSet, csv, rope_theta=1e4, original_length=64, target_length=256)
    assert (back.long_factor == fs.long_factor).all() and back.provenance["format"] == "reference-csv"


def test_load_gives_the_fields_to_the_class_it_is_given(tmp_path):
    class Tagged(FactorSet):
        pass

    path = files.save_json(_set(), tmp_path / "factors.json")
    got = files.load(Tagged, path)
    assert type(got) is Tagged and got.same_factors(_set())
    assert type(Tagged.load(path)) is Tagged  # FactorSet.load is this, with its own class


def test_a_csv_without_its_lengths_is_one_line(tmp_path):
    path = files.save_csv(_set(), tmp_path / "f.csv")
    with pytest.raises(UserError, match="reference-code CSV .* give --original-length, --target-length"):
        files.load(FactorSet, path, rope_theta=1e4)
