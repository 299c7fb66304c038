"""``longrope.models.exporter``: ``export_model``, the function behind ``longrope export``."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.errors import UserError
from longrope.evaluate.suite import PPL_OUTPUTS
from longrope.models.exporter import export_model
from longrope.rope import FactorSet


def test_the_model_being_exported_is_not_its_own_output(tiny_model_dir, tmp_path):
    """export --model M -o M --overwrite replaced the source model by its export (rc 0): the files export does
    not write (a user's notes, the original config) were lost; the same for a GGUF exported onto itself
    (battery 7). Refused in one line; the source is left as it was."""
    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4).save(tmp_path / "f.json")
    (tiny_model_dir / "NOTES.md").write_text("mine")
    for out in (tiny_model_dir, f"{tiny_model_dir}/", tiny_model_dir.parent):
        with pytest.raises(UserError, match="is the model being exported .* or holds it"):
            export_model(str(tiny_model_dir), factors, out, overwrite=True)
    assert (tiny_model_dir / "NOTES.md").read_text() == "mine"
    gguf = tmp_path / "m.gguf"
    export_model(str(tiny_model_dir), factors, gguf, fmt="gguf")
    with pytest.raises(UserError, match="is the model being exported"):
        export_model(str(gguf), factors, gguf, fmt="gguf", overwrite=True)


def test_an_output_name_of_the_other_format_is_refused_before_the_model_is_read(tiny_model_dir, tmp_path, monkeypatch):
    """export --format gguf -o m wrote a GGUF that --model then refused ("a file but not a .gguf"); export -o
    m.gguf (format hf by default) wrote a folder named like a GGUF file, without a word (battery 11a)."""
    import longrope.models.loading as loading

    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4).save(tmp_path / "f.json")
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    with pytest.raises(UserError, match=r"does not end in \.gguf.*give e\.g\. -o .*m\.gguf"):
        export_model(str(tiny_model_dir), factors, tmp_path / "m", fmt="gguf")
    with pytest.raises(UserError, match="names a GGUF file, but --format hf .* add --format gguf"):
        export_model(str(tiny_model_dir), factors, tmp_path / "m.GGUF")
    assert not (tmp_path / "m").exists() and not (tmp_path / "m.GGUF").exists()


def test_two_writers_of_one_new_output_the_second_is_refused_not_written_over(tiny_model_dir, tmp_path, monkeypatch):
    """Two ``export --format gguf -o NEW.gguf`` at once both succeeded, the second replacing the first's file; two
    ``rerun RUN -o NEW`` the same with folders (battery 19a). An output new when the work began is placed only
    where nothing arrived meanwhile (io.place_new): the second writer is refused in one line, the first's result
    stays, and no temporary is left."""
    import json

    import longrope.models.export as export_mod
    import longrope.models.gguf as gguf_mod
    from longrope.runs.folder import RunFolder

    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4).save(tmp_path / "f.json")
    gguf = tmp_path / "m.gguf"
    add_weights = gguf_mod._add_weights

    def another_export_finishes_first(*args, **kwargs):
        gguf.write_bytes(b"GGUF the other export")
        return add_weights(*args, **kwargs)

    monkeypatch.setattr(gguf_mod, "_add_weights", another_export_finishes_first)
    with pytest.raises(UserError, match="was written by another process while this one worked") as info:
        export_model(str(tiny_model_dir), factors, gguf, fmt="gguf")
    assert gguf.read_bytes() == b"GGUF the other export"
    # the second writer's result is kept beside, not removed with its temporaries (battery 23's review)
    kept = tmp_path / "m.kept-1.gguf"
    assert f"it is kept at {kept}; move it where you want it" in str(info.value)
    assert kept.read_bytes()[:4] == b"GGUF" and kept.stat().st_size > 1000
    hf = tmp_path / "hf"
    readme = export_mod.serving_readme

    def another_folder_first(*args, **kwargs):
        hf.mkdir(exist_ok=True)
        (hf / "config.json").write_text("{}")
        return readme(*args, **kwargs)

    monkeypatch.setattr(export_mod, "serving_readme", another_folder_first)
    with pytest.raises(UserError, match="already exists and is not empty|was written by another process"):
        export_model(str(tiny_model_dir), factors, hf)
    assert [p.name for p in hf.iterdir()] == ["config.json"]
    run = tmp_path / "run"
    folder = RunFolder.open(run, "eval ppl", staged=True, replace=PPL_OUTPUTS)
    folder.start({})
    run.mkdir()
    (run / "summary.json").write_text("{}")  # another rerun into the same new folder, finished first
    with pytest.raises(UserError, match="was written by another process while this one worked"):
        folder.finish({"mine": 1})
    folder.abandon()
    assert (run / "summary.json").read_text() == "{}"
    assert json.loads((tmp_path / "run.kept-1" / "summary.json").read_text()) == {"mine": 1}
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporaries


def test_an_overwrite_export_checks_again_at_the_swap_what_it_checked_before_the_work(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    """``export --overwrite`` refuses, before the work, a run folder or a folder of the user's files, and a file that
    is no GGUF; what arrived there while it worked was replaced all the same (a folder export checked only that a
    folder was there, a GGUF export nothing, and a folder there was an IsADirectoryError). The one rule of each is
    made again when the output is put in place, and the export is kept beside (review of battery 23b)."""
    import longrope.models.export as export_mod
    import longrope.models.gguf as gguf_mod
    from longrope.models.export import check_output_folder
    from longrope.runs.folder import RunFolder

    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4).save(tmp_path / "f.json")
    hf = tmp_path / "hf"
    export_model(str(tiny_model_dir), factors, hf)
    readme = export_mod.serving_readme

    def a_search_arrives(*args, **kwargs):
        import shutil

        shutil.rmtree(hf)
        run = RunFolder.open(hf, "search", staged=False)
        run.start({})
        run.close()
        return readme(*args, **kwargs)

    monkeypatch.setattr(export_mod, "serving_readme", a_search_arrives)
    with pytest.raises(UserError, match=f"{hf} changed while this run worked: it now is a search run folder.* "
                                        f"kept at {tmp_path / 'hf.kept-1'}"):
        export_model(str(tiny_model_dir), factors, hf, overwrite=True)
    assert (hf / "run.json").is_file() and (tmp_path / "hf.kept-1" / "config.json").is_file()
    monkeypatch.undo()

    gguf = tmp_path / "m.gguf"
    export_model(str(tiny_model_dir), factors, gguf, fmt="gguf")
    add_weights = gguf_mod._add_weights

    def notes_arrive(*args, **kwargs):
        gguf.write_text("my notes")
        return add_weights(*args, **kwargs)

    monkeypatch.setattr(gguf_mod, "_add_weights", notes_arrive)
    with pytest.raises(UserError, match="it now is not a GGUF file.* kept at"):
        export_model(str(tiny_model_dir), factors, gguf, fmt="gguf", overwrite=True)
    assert gguf.read_text() == "my notes" and (tmp_path / "m.kept-1.gguf").read_bytes()[:4] == b"GGUF"
    monkeypatch.undo()

    # a link is judged by what it names, by the early check as by the writer: a link to the current folder passed
    (tmp_path / "here").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "here")
    monkeypatch.chdir(tmp_path / "here")
    with pytest.raises(UserError, match="is the current folder or holds it"):
        check_output_folder(tmp_path / "link", True)


def test_the_public_export_and_gguf_functions_refuse_what_they_cannot_take_in_one_line(tmp_path):
    """Battery 23c: the public functions of longrope.models.export and .gguf beside the two writers raised pathlib's
    TypeError for a path given as None or a number, and AttributeError for a str where a Path was typed or for no
    factor set / model facts at all; each is now one UserError naming the argument."""
    from longrope.models import export, gguf

    fs = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                   max_position_embeddings=128, rope_theta=1e4)
    calls = [
        ("export_gguf_from_gguf's src", lambda: gguf.export_gguf_from_gguf(None, fs, tmp_path / "a.gguf")),
        ("export_gguf_from_gguf's out", lambda: gguf.export_gguf_from_gguf(tmp_path / "s.gguf", fs, 3)),
        ("a GGUF file's path", lambda: gguf.gguf_rope_facts(None)),
        ("arch must be", lambda: gguf.longrope_gguf_keys(5, fs)),
        ("expected a FactorSet", lambda: gguf.longrope_gguf_keys("llama", None)),
        ("check_output_file's out", lambda: gguf.check_output_file(7, False)),
        ("check_output_folder's out", lambda: export.check_output_folder(None, False)),
        ("expected a FactorSet", lambda: export.check_target_length(None)),
        ("remove_stale_temporaries's out", lambda: export.remove_stale_temporaries(None)),
        ("expected the model's RopeInfo", lambda: export.serving_readme(fs, None, "x")),
    ]
    for said, call in calls:
        with pytest.raises(UserError, match=said):
            call()
    export.check_output_folder(str(tmp_path / "new"), False)  # a str where the hint said Path: taken
    gguf.check_output_file(str(tmp_path / "new.gguf"), False)
    assert export.remove_stale_temporaries(str(tmp_path / "new")) == []
