"""``tools.train_tiny.tokenizer``: Llama's special ids, BOS first, digits one per token; reuse of a saved one."""

from __future__ import annotations

import pytest

from longrope.errors import UserError
from tools.train_tiny.tokenizer import load_tokenizer


def test_tokenizer_has_llama_special_ids_and_bos(tok):
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok("the cat")["input_ids"][0] == 1
    assert tok.decode(tok("the cat sat 90210")["input_ids"], skip_special_tokens=True) == "the cat sat 90210"


def test_a_saved_tokenizer_is_reused_and_checked(tok, tmp_path):
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok", len(tok))
    text = "the cat sat on 12345 mats"
    assert again(text)["input_ids"] == tok(text)["input_ids"] and again(text)["input_ids"][0] == tok.bos_token_id
    assert load_tokenizer(tmp_path / "tok" / "tokenizer.json", len(tok)).vocab_size == tok.vocab_size
    with pytest.raises(UserError, match="vocab_size"):
        load_tokenizer(tmp_path / "tok", len(tok) + 1)
    with pytest.raises(UserError, match="tokenizer"):
        load_tokenizer(tmp_path / "missing", len(tok))
