"""``tools.train_tiny.loop``: the schedule, warm starts, periodic scores, the induction phase, resuming."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.errors import UserError
from tools.train_tiny.config import TinyConfig
from tools.train_tiny.loop import lr_at, train
from tools.train_tiny.tokenizer import encode_docs, train_tokenizer


def test_lr_schedule_warms_up_then_decays_to_the_floor():
    cfg = TinyConfig(lr=1e-3, warmup_steps=10, max_steps=110, min_lr_ratio=0.1)
    lrs = [lr_at(s, cfg) for s in range(110)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(b <= a + 1e-15 for a, b in zip(lrs[9:], lrs[10:]))
    assert lr_at(110, cfg) == pytest.approx(1e-4)
    assert lr_at(60, cfg) == pytest.approx(1e-4 + 0.9e-3 * 0.5)


def test_init_from_starts_from_a_checkpoint_and_records_it(tok, tmp_path):
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


def test_periodic_evaluation_can_score_passkeys(tok):
    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 200)])
    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=256, batch_size=2, warmup_steps=1, eval_every=1, eval_windows=1, max_steps=1,
                     copy_fraction=0.5, eval_passkey_trials=2)
    _, log, _ = train(cfg, tok, docs, docs)
    assert log[-1]["step"] == 1 and 0.0 <= log[-1]["passkey_256"] <= 1.0


def test_training_starts_with_the_induction_phase_and_logs_its_end(tok):
    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 200)])
    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=64, batch_size=2, warmup_steps=1, eval_every=4, eval_windows=1, max_steps=4,
                     induction_steps=3)
    _, log, _ = train(cfg, tok, docs, docs)
    assert [(e["step"], e["phase"]) for e in log] == [(3, "induction"), (4, "mixed")]


def test_a_killed_run_resumes_from_its_checkpoint(tmp_path):
    """A run killed after step 3 and resumed ends with the weights of an uninterrupted run."""
    import dataclasses

    import torch

    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran to and fro in an old green park by the river".split()
    texts = [" ".join(rng.choice(words, 2500)) for _ in range(2)]
    cfg = TinyConfig(vocab_size=320, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=64, batch_size=2, max_steps=6, warmup_steps=2, eval_every=3, eval_windows=2)
    tok = train_tokenizer(texts[:2], cfg.vocab_size)
    docs = encode_docs(tok, texts[:2])
    full, full_log, _ = train(cfg, tok, docs, docs[:1])
    ckpt = tmp_path / "ck.pt"
    every_step = dataclasses.replace(cfg, checkpoint_every_s=0.0)  # same fingerprint, saves each step
    with pytest.raises(_Stop):
        train(every_step, tok, docs, docs[:1], checkpoint=ckpt, progress=_stop_after(3))
    assert ckpt.exists()
    resumed, log, summary = train(cfg, tok, docs, docs[:1], checkpoint=ckpt)
    assert summary["steps"] == 6
    assert [e["step"] for e in log] == [3, 6]
    assert [e["train_loss"] for e in log][-1] == full_log[-1]["train_loss"]
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # --stop-at-step cuts a run without changing its schedule; resuming it finishes the same run
    ckpt.unlink()
    _, cut_log, cut = train(dataclasses.replace(cfg, stop_at_step=4), tok, docs, docs[:1], checkpoint=ckpt)
    assert cut["steps"] == 4 and cut["stopped_early"] and [e["step"] for e in cut_log] == [3, 4]
    resumed, _, _ = train(cfg, tok, docs, docs[:1], checkpoint=ckpt)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # a checkpoint of another config is refused, not silently mixed in
    other = dataclasses.replace(cfg, lr=1e-4)
    ckpt.rename(tmp_path / "other.pt")
    import shutil

    shutil.copy(tmp_path / "other.pt", ckpt)
    with pytest.raises(UserError, match="different config"):
        train(other, tok, docs, docs[:1], checkpoint=ckpt)


class _Stop(Exception):
    pass


def _stop_after(step):
    def progress(entry):
        if entry["step"] >= step:
            raise _Stop

    return progress
