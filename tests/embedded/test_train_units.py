"""Pieces of the tiny model's training: config checks, schedule, sampler, baselines, RoPE edits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from longrope.embedded.passkey import FILLER, INTRO, NEEDLE, QUESTION
from longrope.embedded.train import (
    BatchSampler,
    TinyConfig,
    build_model,
    encode_docs,
    lr_at,
    train_tokenizer,
)
from longrope.errors import ConfigError, UserError
from longrope.evaluate.passkey import first_integer
from longrope.options import field_flags


@pytest.fixture(scope="module")
def tok():
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran to and fro in an old green park".split()
    texts = [" ".join(rng.choice(words, 2000)) for _ in range(2)]
    texts.append((INTRO + FILLER * 5 + NEEDLE.format(key=12345) + QUESTION) * 20)
    return train_tokenizer(texts, 400)


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"hidden_size": 100, "num_heads": 3}, "--hidden-size"), ({"max_steps": 0}, "--max-steps"),
     ({"passkey_fraction": 1.0}, "--passkey-fraction"), ({"context": 16}, "--context"),
     ({"vocab_size": 100}, "--vocab-size"), ({"time_budget_s": 0}, "--time-budget")],
)
def test_config_errors_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        TinyConfig(**kwargs)
    assert flag in err.value.render(field_flags(TinyConfig).get)


def test_fingerprint_ignores_budget_but_not_shape():
    a = TinyConfig()
    assert a.fingerprint() == TinyConfig(time_budget_s=10, checkpoint_every_s=1, threads=2).fingerprint()
    assert a.fingerprint() != TinyConfig(seed=1).fingerprint()
    assert a.fingerprint() != TinyConfig(max_steps=10).fingerprint()


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TinyConfig(lr=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(b <= a + 1e-15 for a, b in zip(lrs[9:], lrs[10:]))
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_tokenizer_has_llama_special_ids_and_bos(tok):
    assert (tok.unk_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)
    assert tok("the cat")["input_ids"][0] == 1
    assert tok.decode(tok("the cat sat 90210")["input_ids"], skip_special_tokens=True) == "the cat sat 90210"


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


def test_report_numbers_are_what_longrope_eval_gives(tok):
    """The training report goes through the shared stack: its PI/YaRN numbers equal ppl_suite's with
    make_baseline's factors on the same spans."""
    from longrope.embedded.train import eval_spans, report
    from longrope.evaluate.suite import ppl_suite
    from longrope.rope import make_baseline

    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64, context=64)
    model = build_model(cfg, tok).eval()
    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 150)])
    rep = report(model, tok, docs, cfg, per_doc=2, target=256, passkey_trials=0)
    spans = eval_spans(docs, 256, 2)
    sets = [(m, make_baseline(m, rope_theta=1e4, rotary_dim=32, original_length=64, target_length=256))
            for m in ("pi", "yarn")]
    for name, r in ppl_suite(model, spans, sets, [256], bos_id=tok.bos_token_id):
        assert rep[f"ppl_256_{name}"] == pytest.approx(r.ppl, rel=1e-9)
    assert rep["ppl_256_unscaled"] != rep["ppl_256_pi"] and math.isfinite(rep["ppl_64"])
    # the model is left as it was: no patch active after the report
    from longrope.models import current_patch

    patch = current_patch(model)
    assert patch is None or not patch.active


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


def test_init_from_starts_from_a_checkpoint_and_records_it(tok, tmp_path):
    from longrope.embedded.train import train

    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 200)])
    small = dict(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                 context=64, batch_size=2, warmup_steps=1, eval_every=2, eval_windows=1)
    first = TinyConfig(max_steps=2, **small)
    ckpt = tmp_path / "first.pt"
    trained, _, _ = train(first, tok, docs, docs, checkpoint=ckpt)
    assert first.fingerprint() == TinyConfig(max_steps=2, passkey_answer_weight=1.0, **small).fingerprint()
    second = TinyConfig(max_steps=1, lr=1e-9, init_from=str(ckpt), **small)
    assert second.fingerprint() != TinyConfig(max_steps=1, lr=1e-9, **small).fingerprint()
    model, _, summary = train(second, tok, docs, docs)
    assert summary["init_from"]["step"] == 2 and summary["init_from"]["fingerprint"] == first.fingerprint()
    assert len(summary["init_from"]["sha256"]) == 64
    # lr 1e-9 for one step: the weights are (almost exactly) the checkpoint's
    for (k, a), (_, b) in zip(trained.state_dict().items(), model.state_dict().items()):
        assert (a - b).abs().max() < 1e-6, k
    with pytest.raises(UserError, match="init_from"):
        train(TinyConfig(max_steps=1, init_from=str(tmp_path / "nope.pt"), **small), tok, docs, docs)


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
    # same seed, same rows; copy_fraction 0 keeps the old draws (resumable older checkpoints)
    again = BatchSampler(docs, tok, cfg, np.random.default_rng(7)).batch()
    np.testing.assert_array_equal(ids, again)
    old = TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400)
    assert old.fingerprint() == TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400,
                                           copy_fraction=0.0, eval_passkey_trials=0).fingerprint()
    assert old.fingerprint() != TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400,
                                           copy_fraction=0.1).fingerprint()


@pytest.mark.parametrize("kwargs, flag", [({"copy_fraction": -0.1}, "--copy-fraction"),
                                          ({"copy_fraction": 0.5, "passkey_fraction": 0.5}, "--copy-fraction"),
                                          ({"copy_max_length": 4}, "--copy-max-length"),
                                          ({"eval_passkey_trials": -1}, "--eval-passkey-trials")])
def test_copy_and_eval_passkey_options_are_checked(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        TinyConfig(**kwargs)
    assert flag in err.value.render(field_flags(TinyConfig).get)


def test_periodic_evaluation_can_score_passkeys(tok):
    from longrope.embedded.train import train

    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 200)])
    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=256, batch_size=2, warmup_steps=1, eval_every=1, eval_windows=1, max_steps=1,
                     copy_fraction=0.5, eval_passkey_trials=2)
    _, log, _ = train(cfg, tok, docs, docs)
    assert log[-1]["step"] == 1 and 0.0 <= log[-1]["passkey_256"] <= 1.0


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


def test_training_starts_with_the_induction_phase_and_logs_its_end(tok):
    from longrope.embedded.train import train

    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 200)])
    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=64, batch_size=2, warmup_steps=1, eval_every=4, eval_windows=1, max_steps=4,
                     induction_steps=3)
    _, log, _ = train(cfg, tok, docs, docs)
    assert [(e["step"], e["phase"]) for e in log] == [(3, "induction"), (4, "mixed")]


def test_induction_steps_and_tokenizer_are_checked(tok, tmp_path):
    from longrope.embedded.train import load_tokenizer

    with pytest.raises(UserError, match="induction_steps"):
        TinyConfig(max_steps=10, induction_steps=11)
    assert TinyConfig().fingerprint() == TinyConfig(induction_steps=0, tokenizer=None).fingerprint()
    assert TinyConfig().fingerprint() != TinyConfig(induction_steps=5).fingerprint()
    tok.save_pretrained(tmp_path / "tok")
    again = load_tokenizer(tmp_path / "tok", len(tok))
    text = "the cat sat on 12345 mats"
    assert again(text)["input_ids"] == tok(text)["input_ids"] and again(text)["input_ids"][0] == tok.bos_token_id
    assert load_tokenizer(tmp_path / "tok" / "tokenizer.json", len(tok)).vocab_size == tok.vocab_size
    with pytest.raises(UserError, match="vocab_size"):
        load_tokenizer(tmp_path / "tok", len(tok) + 1)
    with pytest.raises(UserError, match="tokenizer"):
        load_tokenizer(tmp_path / "missing", len(tok))


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
