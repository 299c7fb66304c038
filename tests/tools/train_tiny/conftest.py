"""A small tokenizer shared by the unit tests of the trainer's pieces."""

from __future__ import annotations

import numpy as np
import pytest

from tools.train_tiny.passkey import FILLER, INTRO, NEEDLE, QUESTION
from tools.train_tiny.tokenizer import train_tokenizer


@pytest.fixture(scope="module")
def tok():
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran to and fro in an old green park".split()
    texts = [" ".join(rng.choice(words, 2000)) for _ in range(2)]
    texts.append((INTRO + FILLER * 5 + NEEDLE.format(key=12345) + QUESTION) * 20)
    return train_tokenizer(texts, 400)
