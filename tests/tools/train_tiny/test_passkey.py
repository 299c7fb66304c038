"""``tools.train_tiny.passkey``: the wording of ``eval passkey`` (one text), in token space, laid out with the
shipped tokenizer."""

from __future__ import annotations

from longrope.evaluate import passkey as evaluation
from longrope.settings import PASSKEY_ANSWER
from tools.train_tiny import passkey as tiny


def test_the_tiny_models_passkey_wording_is_the_evaluations():
    assert tiny.INTRO == evaluation.INSTRUCTION
    assert [tiny.FILLER, tiny.NEEDLE, tiny.QUESTION] == [
        " " + evaluation.FILLER, " " + evaluation.NEEDLE, " " + evaluation.QUESTION]
    words = []
    assert tiny.answer_ids(lambda text: words.append(text) or [1], 12345) == [1]
    assert words == [PASSKEY_ANSWER.format(key=12345)] == [" 12345."]


def test_passkey_prompt_layout_with_the_shipped_tokenizer():
    from transformers import AutoTokenizer

    from longrope.embedded import TINY_MODEL_DIR
    from tools.train_tiny.tokenizer import encoder

    tok = AutoTokenizer.from_pretrained(TINY_MODEL_DIR)
    enc = encoder(tok)
    pieces = tiny.PasskeyPieces.from_tokenizer(enc)
    for length in (256, 2048):
        for depth in (0.0, 0.5, 1.0):
            ids = tiny.build_prompt(pieces, enc, length=length, key=12345, depth=depth, bos_id=tok.bos_token_id)
            assert len(ids) == length and ids[0] == tok.bos_token_id
            text = tok.decode(ids[1:])
            assert text.count("The pass key is 12345. Remember it. 12345 is the pass key.") == 1
            assert text.endswith("What is the pass key? The pass key is")
    assert all(i > 2 for i in enc("0123456789"))  # digits are tokens of their own, not specials
