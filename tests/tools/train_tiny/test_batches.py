"""``tools.train_tiny.batches``: BOS-first windows, passkey, copy and induction rows with their weights; seeded."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.errors import UserError
from longrope.evaluate.passkey import first_integer
from tools.train_tiny.batches import BatchSampler
from tools.train_tiny.config import TinyConfig
from tools.train_tiny.passkey import INTRO
from tools.train_tiny.tokenizer import encode_docs


def test_sampler_windows_start_with_bos_and_passkeys_carry_their_answer(tok):
    cfg = TinyConfig(context=512, batch_size=64, passkey_fraction=0.5, vocab_size=400)
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    sampler = BatchSampler(docs, tok, cfg, np.random.default_rng(3))
    batch = sampler.batch()
    assert batch.shape == (64, 512) and batch.dtype == np.int64
    assert (batch[:, 0] == tok.bos_token_id).all()
    texts = [tok.decode(row[1:]) for row in batch]
    pk = [t for t in texts if t.startswith(INTRO)]
    assert 16 <= len(pk) <= 48  # ~half, seeded
    for t in pk:
        key = first_integer(t)
        assert 10000 <= key <= 99999
        assert f"The pass key is {key}. Remember it. {key} is the pass key." in t
        assert f"What is the pass key? The pass key is {key}." in t
    # same seed, same batches
    again = BatchSampler(docs, tok, cfg, np.random.default_rng(3)).batch()
    np.testing.assert_array_equal(batch, again)


def test_weighted_batch_draws_the_same_rows_and_weights_only_the_key_digits(tok):
    cfg = TinyConfig(context=512, batch_size=32, passkey_fraction=0.5, vocab_size=400,
                     passkey_answer_weight=8.0)
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    plain = BatchSampler(docs, tok, cfg, np.random.default_rng(5)).batch()
    ids, w = BatchSampler(docs, tok, cfg, np.random.default_rng(5)).weighted_batch()
    np.testing.assert_array_equal(ids, plain)
    for row, wrow in zip(ids, w):
        hot = np.nonzero(wrow != 1.0)[0]
        if tok.decode(row[1:]).startswith(INTRO):
            assert len(hot) == 5 and np.all(wrow[hot] == 8.0)
            key = tok.decode(row[hot])
            assert key.isdigit() and f"What is the pass key? The pass key is {key}." in tok.decode(row)
        else:
            assert len(hot) == 0
    with pytest.raises(UserError, match="passkey_answer_weight"):
        TinyConfig(passkey_answer_weight=0)


def test_copy_rows_repeat_a_random_string_and_weight_only_its_second_copy(tok):
    cfg = TinyConfig(context=256, batch_size=64, passkey_fraction=0.25, copy_fraction=0.25, vocab_size=400,
                     passkey_answer_weight=3.0)
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    ids, w = BatchSampler(docs, tok, cfg, np.random.default_rng(7)).weighted_batch()
    assert ids.shape == w.shape == (64, 256) and (ids[:, 0] == tok.bos_token_id).all()
    copies = 0
    for row, wrow in zip(ids, w):
        if not (wrow == 0).any():
            continue
        copies += 1
        n = int(np.argmax(wrow[1:] != 0))  # the first copy: targets 1..n weigh 0
        assert 5 <= n <= 32 and np.all(wrow[1 : 1 + n] == 0)
        hot = np.nonzero(wrow == 3.0)[0]
        assert len(hot) == n - 1
        second = hot[0] - 1
        assert wrow[second] == 0  # the copy's first token cannot be predicted
        np.testing.assert_array_equal(row[second : second + n], row[1 : 1 + n])
        assert np.all(np.delete(wrow, np.r_[1 : 1 + n, second : second + n]) == 1.0)
    assert 6 <= copies <= 26  # ~a quarter, seeded
    # same seed, same rows
    again = BatchSampler(docs, tok, cfg, np.random.default_rng(7)).batch()
    np.testing.assert_array_equal(ids, again)


def test_copy_max_length_sets_the_longest_string(tok):
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    lengths = []
    for max_len in (8, 100):
        cfg = TinyConfig(context=256, batch_size=64, copy_fraction=0.9, passkey_fraction=0.0, vocab_size=400,
                         copy_max_length=max_len, passkey_answer_weight=2.0)
        _, w = BatchSampler(docs, tok, cfg, np.random.default_rng(1)).weighted_batch()
        lengths.append([int(np.argmax(r[1:] != 0)) for r in w if (r == 0).any()])
    assert max(lengths[0]) <= 8 and min(lengths[0]) >= 5
    assert max(lengths[1]) > 32 and max(lengths[1]) <= 100


def test_induction_rows_repeat_one_string_and_weight_every_later_repeat(tok):
    cfg = TinyConfig(context=256, batch_size=32, vocab_size=400, induction_steps=10)
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    ids, w = BatchSampler(docs, tok, cfg, np.random.default_rng(3)).induction_batch()
    assert ids.shape == w.shape == (32, 256) and (ids[:, 0] == tok.bos_token_id).all()
    periods = []
    for row, wrow in zip(ids, w):
        n = int(np.argmax(wrow != 0)) - 2  # weights start at the second repeat's second token
        assert 4 <= n <= 40 and (row[1:] >= 3).all()  # no special token inside the string
        np.testing.assert_array_equal(row[1 + n :], row[1 : 256 - n])  # period n all the way
        assert np.all(wrow[: n + 2] == 0) and np.all(wrow[n + 2 :] == 1)
        periods.append(n)
    assert len(set(periods)) > 5  # lengths vary, so no fixed-offset shortcut copies them


def test_induction_segments_make_more_shorter_rows(tok):
    cfg = TinyConfig(context=256, batch_size=8, vocab_size=400, induction_steps=10, induction_segments=2)
    docs = encode_docs(tok, [" ".join(["the old green park"] * 400)])
    ids, w = BatchSampler(docs, tok, cfg, np.random.default_rng(5)).induction_batch()
    assert ids.shape == w.shape == (16, 128) and (ids[:, 0] == tok.bos_token_id).all()
    for row, wrow in zip(ids, w):
        n = int(np.argmax(wrow != 0)) - 2
        assert 4 <= n <= 40
        np.testing.assert_array_equal(row[1 + n :], row[1 : 128 - n])
        assert np.all(wrow[: n + 2] == 0) and np.all(wrow[n + 2 :] == 1)
    with pytest.raises(UserError, match="induction_segments"):
        TinyConfig(context=256, induction_segments=17)
