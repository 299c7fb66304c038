"""Fixtures for the evaluation tests: tiny random models built in memory (no download)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.evaluate.eval_helpers import tiny_llama


@pytest.fixture(scope="session")
def llama():
    return tiny_llama()


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
