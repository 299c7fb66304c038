"""``longrope.formats.factors``: the factor files, read into whatever value class it is given."""

from __future__ import annotations

import json

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
    with pytest.raises(UserError, match="reference-code CSV: long factors only, without the trained length L, the target length L'"):
        files.load(FactorSet, path, rope_theta=1e4)


def test_a_model_file_or_a_huge_file_named_as_factors_is_one_line_and_not_read_whole(tmp_path, monkeypatch):
    """A GGUF named by --factors said 'not UTF-8 text ... save it as UTF-8'; a 1 GB file of zeros was read whole
    (2.4 GB of memory) and called a reference CSV (battery 6)."""
    (tmp_path / "m.gguf").write_bytes(b"GGUF\x03\x00\x00\x00" + bytes(64))
    (tmp_path / "model.safetensors").write_bytes((16).to_bytes(8, "little") + b'{"a": 1}' + bytes(32))
    monkeypatch.setattr(files, "MAX_FACTOR_FILE_BYTES", 1024)
    (tmp_path / "big.json").write_text(" " * 2000 + "{}")
    for name, says in (("m.gguf", "(a GGUF model file)"), ("model.safetensors", "(binary data)"),
                       ("big.json", "(more than 1,024 bytes)")):
        with pytest.raises(UserError, match=f"is not a factor file {says.replace('(', '[(]').replace(')', '[)]')}"):
            files.load(FactorSet, tmp_path / name)
    (tmp_path / "utf16.json").write_bytes('{"long_factor": [1]}'.encode("utf-16"))
    with pytest.raises(UserError, match="is UTF-16 text, not UTF-8; convert it"):  # text: said how to convert it
        files.load(FactorSet, tmp_path / "utf16.json")


def test_a_folder_without_factors_says_what_to_give_instead(tmp_path):
    """battery 9a: "--factors sets" (a folder of factor files) said only "is a folder without factors.json or
    config.json" (no fix), also when its factors.json was a broken link."""
    sets = tmp_path / "sets"
    sets.mkdir()
    files.save_json(_set(), sets / "yarn.json")
    with pytest.raises(UserError, match=r"give its factor files themselves \(e.g. .*sets/yarn.json\)"):
        files.load(FactorSet, sets)
    (sets / "factors.json").symlink_to(tmp_path / "gone.json")
    with pytest.raises(UserError, match=r"sets/factors.json is a broken link"):
        files.load(FactorSet, sets)
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="give a factor file, a search run folder or a model folder"):
        files.load(FactorSet, tmp_path / "empty")


def test_a_field_of_another_type_or_a_commented_json_file_is_named_as_such(tmp_path):
    """battery 9a: format_version "1" said "unsupported format_version '1'; this longrope reads 1", rotary_dim "64"
    "rotary_dim '64' does not match long_factor (32 values → 64)", and a .json file opening with a // comment was
    read as a reference CSV ("'// yarn' is not a number")."""
    doc = files.to_json(_set())
    for key, value, match in (("format_version", "1", "format_version must be the integer 1, got '1'"),
                              ("rotary_dim", "16", "rotary_dim must be an integer, got '16'")):
        with pytest.raises(UserError, match=match):
            files.from_json(FactorSet, {**doc, key: value})
    assert files.from_json(FactorSet, {**doc, "rotary_dim": 16.0}) == _set()
    path = tmp_path / "commented.json"
    path.write_text("// yarn\n" + json.dumps(doc), encoding="utf-8")
    with pytest.raises(UserError, match="is not valid JSON"):
        files.load(FactorSet, path)


def test_an_empty_factor_file_name_is_refused_not_read_as_the_current_folder():
    """battery 9a: --factors '' was Path('') = '.', "'.' is a folder without factors.json ... (e.g. bp.json)"."""
    for empty in ("", "  "):
        with pytest.raises(UserError, match="factor file name .* is empty"):
            files.load(FactorSet, empty)


def test_an_unfinished_search_folder_given_as_factors_says_how_to_finish_it(tmp_path):
    """A search folder killed before factors.json was refused as "a search run folder without factors.json; give a
    factor file, a search run folder ..." (it is one; battery 12b): the refusal says how to finish the search."""
    run = tmp_path / "s"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": {}}))
    with pytest.raises(UserError, match="finish it with 'longrope search --config .* --resume'"):
        files.factor_file(run)


def test_a_file_is_written_only_under_a_name_it_is_read_back_by(tmp_path):
    """FactorSet.save('f.csv') wrote JSON that FactorSet.load('f.csv') read as a reference CSV, save_csv('f.json') a
    CSV that load read as broken JSON, and save(None) was pathlib's TypeError (battery 19): the loader's suffix rule
    decides what each writer may write, before anything is written."""
    fs = make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=64, target_length=128)
    for write, name in ((fs.save, "f.csv"), (fs.save_csv, "f.json"), (fs.save, None)):
        with pytest.raises(UserError, match="would be read back as|str or os.PathLike"):
            write(tmp_path / name if name else name)
    assert list(tmp_path.iterdir()) == []
    assert FactorSet.load(fs.save(tmp_path / "f.json")).same_factors(fs)
    assert FactorSet.load(fs.save(tmp_path / "f")).same_factors(fs)  # no suffix: the content decides


@pytest.mark.parametrize("value", [[], 0, False, ""])
def test_provenance_that_is_no_json_object_is_refused_even_when_empty(tmp_path, value):
    """docs/factors-format.md: `provenance` is a JSON object (default {} when absent); `[]`, `0`, `false` and
    `""` were read as {} while `[1]` and `"x"` were refused (battery 26b)."""
    d = files.to_json(_set())
    d["provenance"] = value
    with pytest.raises(UserError, match="provenance must be a JSON object"):
        files.from_json(FactorSet, d)
    d["provenance"] = None  # null stands for an absent key
    assert files.from_json(FactorSet, d).provenance == {}
