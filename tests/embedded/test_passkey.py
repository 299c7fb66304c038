"""The tiny model's passkey pieces: the wording of ``eval passkey`` (one text), in token space."""

from __future__ import annotations

from longrope.embedded import passkey as tiny
from longrope.evaluate import passkey as evaluation
from longrope.settings import PASSKEY_ANSWER


def test_the_tiny_models_passkey_wording_is_the_evaluations():
    assert tiny.INTRO == evaluation.INSTRUCTION
    assert [tiny.FILLER, tiny.NEEDLE, tiny.QUESTION] == [
        " " + evaluation.FILLER, " " + evaluation.NEEDLE, " " + evaluation.QUESTION]
    words = []
    assert tiny.answer_ids(lambda text: words.append(text) or [1], 12345) == [1]
    assert words == [PASSKEY_ANSWER.format(key=12345)] == [" 12345."]
