"""The passkey decision: independent of any decode budget, decided by the first complete integer."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrope.evaluate import passkey as pk
from tests.evaluate.eval_helpers import make_tokenizer


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.mark.parametrize("text, ended, right", [
    (" 12345.", False, True),
    (" 12345 is the key", False, True),
    ("12345", True, True),  # EOS right after the digits ends the number
    ("12345", False, False),  # still running: "123456" would look the same so far
    (" 123456.", False, False),
    (" 123456", True, False),
    (" 1234.", False, False),
    (" 012345.", False, True),  # the integer's value is the key
    (" the key: 12345\n", False, True),
    ("12345 67890", False, True),  # only the first integer counts
    ("67890 12345", False, False),
    (" no digits here", True, False),
    ("", True, False),
])
def test_judge_answer(text, ended, right):
    assert pk.judge_answer(text, 12345, ended=ended) is right


def test_answer_budget_comes_from_the_key():
    assert pk.answer_budget(12345) == 12 and pk.answer_budget(99999) == 12
    assert pk.answer_budget(1234567) == 16


class _Scripted(torch.nn.Module):
    """A stand-in model whose greedy continuation is scripted (a list, or a function of the prompt
    ids), produced through the real ``generate`` contract: it honours ``max_new_tokens``, EOS and
    the stopping criteria, and records how many tokens it produced."""

    def __init__(self, script, eos: int = 2):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.script = script
        self.generation_config = type("G", (), {"eos_token_id": eos})()
        self.produced = 0

    def get_input_embeddings(self):  # the token-id check reads the embedding rows; any id fits here
        return type("E", (), {"num_embeddings": 10**9})()

    def generate(self, ids, *, max_new_tokens, stopping_criteria=None, **kwargs):
        script = self.script(ids[0].tolist()) if callable(self.script) else self.script
        seq = ids
        self.produced = 0
        for t in script[:max_new_tokens]:
            seq = torch.cat([seq, torch.tensor([[t]])], dim=1)
            self.produced += 1
            if t == self.generation_config.eos_token_id:
                break
            if stopping_criteria is not None and all(bool(c(seq, None)[0]) for c in stopping_criteria):
                break
        return seq


def _chars(tok, text):
    """One token per character (byte-level BPE), so budgets can cut between any two digits."""
    return [i for ch in text for i in tok(ch, add_special_tokens=False)["input_ids"]]


def test_a_wrong_sixth_digit_is_wrong(tok):
    """A 6-token budget used to cut " 123456" to " 12345" and score it right; decoding now runs until
    the number is complete."""
    def answer_with_an_extra_digit(prompt_ids):
        key = tok.decode(prompt_ids).split("The pass key is ")[1][:5]
        return _chars(tok, f" {key}6. Remember")

    model = _Scripted(answer_with_an_extra_digit)
    res = pk.passkey_accuracy(model, tok, [120], depths=[0.0, 1.0], trials=2, seed=1, bos_id=1)
    assert res.accuracy == 0.0
    assert all(t.output.endswith("6.") for t in res.trials)
    right = _Scripted(lambda ids: _chars(tok, f" {tok.decode(ids).split('The pass key is ')[1][:5]}. Remember"))
    res = pk.passkey_accuracy(right, tok, [120], depths=[0.5], trials=3, seed=1, bos_id=1)
    assert res.accuracy == 1.0
    assert right.produced == 7  # " 12345." and not a token more: the number is complete


def test_eos_ends_the_number_and_the_cap_ends_a_ramble(tok):
    prompt = np.array([1, 5], dtype=np.int64)
    model = _Scripted([*_chars(tok, " 12345"), 2, *_chars(tok, "9")])
    text, correct = pk.generate_answer(model, tok, prompt, 12345, pad_token_id=0)
    assert correct and text == " 12345"
    model = _Scripted(_chars(tok, " the key is surely 12345."))
    text, correct = pk.generate_answer(model, tok, prompt, 12345, pad_token_id=0)
    assert model.produced == pk.answer_budget(12345) and not correct  # capped before the number
