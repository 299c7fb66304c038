"""Shared fixtures: tiny random transformers models of every supported family, seeded.

The builders live in ``tests/models/model_helpers.py``. Each model has 2 layers, hidden size 64,
vocab 128 and an original context of ``TINY_L`` = 32 tokens so tests cross L with a few dozen
tokens. Weights come from a seeded ``torch.Generator``. Nothing here imports torch at collection time.
"""

from __future__ import annotations

import pytest

from tests.models import model_helpers as tiny


@pytest.fixture(params=tiny.FAMILY_NAMES)
def family(request) -> str:
    """Every supported family, one test per family."""
    return request.param


@pytest.fixture
def tiny_model(family):
    """A tiny random ``*ForCausalLM`` of ``family`` in eval mode (seed 0)."""
    return tiny.build_tiny(family)


@pytest.fixture
def build_tiny_model():
    """Factory: ``build_tiny_model(family, seed=0, **config_kwargs)``."""
    return tiny.build_tiny


@pytest.fixture
def tiny_model_dir(tmp_path):
    """A tiny random Llama saved as a Hugging Face folder (config + safetensors, no tokenizer)."""
    return tiny.save_tiny(tiny.build_tiny("llama"), tmp_path / "tiny-llama")


@pytest.fixture
def no_weights(monkeypatch):
    """Fail the test if the command reads model weights: what it checks must be checked before they load."""
    import longrope.models
    import longrope.models.loading

    def refuse(*a, **k):
        raise AssertionError("model weights were loaded before the input was checked")

    monkeypatch.setattr(longrope.models.loading, "load_model", refuse)
    monkeypatch.setattr(longrope.models, "load_model", refuse)
