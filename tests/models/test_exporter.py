"""``longrope.models.exporter``: ``export_model``, the function behind ``longrope export``."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.errors import UserError
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
