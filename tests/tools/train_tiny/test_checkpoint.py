"""``tools.train_tiny.checkpoint``: safetensors + JSON; pickles (old .pt files) are refused, never loaded."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from longrope.errors import UserError
from tools.train_tiny.checkpoint import CHECKPOINT_FORMAT, load_checkpoint
from tools.train_tiny.config import TinyConfig
from tools.train_tiny.loop import train
from tools.train_tiny.tokenizer import encode_docs, train_tokenizer

SMALL = dict(vocab_size=320, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64, context=64,
             batch_size=2, warmup_steps=1, eval_every=2, eval_windows=1)


@pytest.fixture(scope="module")
def tok_docs():
    text = " ".join(["the cat sat on a mat by the old green park while dogs ran"] * 300)
    tok = train_tokenizer([text], 320)
    return tok, encode_docs(tok, [text])


class _Evil:
    """Unpickling this creates a file: its absence proves nothing was unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def _torch_save(path, obj):
    import torch

    torch.save(obj, path)


def test_a_checkpoint_is_safetensors_with_json_state(tok_docs, tmp_path):
    from safetensors import safe_open

    tok, docs = tok_docs
    cfg = TinyConfig(max_steps=2, **SMALL)
    ckpt = tmp_path / "run.safetensors"
    train(cfg, tok, docs, docs, checkpoint=ckpt)
    head = ckpt.read_bytes()[:9]
    assert head[8:9] == b"{"  # an 8-byte header length, then the JSON header: not a pickle
    with safe_open(str(ckpt), framework="pt") as f:
        state = json.loads(f.metadata()["longrope"])
        keys = set(f.keys())
    assert state["format"] == CHECKPOINT_FORMAT and state["step"] == 2
    assert state["fingerprint"] == cfg.fingerprint() and state["config"]["max_steps"] == 2
    assert state["rng"]["bit_generator"] == "PCG64" and isinstance(state["rng"]["state"]["state"], int)
    assert any(k.startswith("model.") for k in keys) and any(k.startswith("optimizer.") for k in keys)
    tensors, again = load_checkpoint(ckpt, what="checkpoint")
    assert again == state and set(tensors) == keys


def test_old_pickle_checkpoints_are_refused_without_running_them(tok_docs, tmp_path):
    tok, docs = tok_docs
    marker = tmp_path / "code-ran"
    old = tmp_path / "old.pt"
    _torch_save(old, {"fingerprint": "x", "model": {}, "step": 1, "log": [], "evil": _Evil(str(marker))})
    with pytest.raises(UserError, match="old pickle-format checkpoint") as e:
        train(TinyConfig(max_steps=1, init_from=str(old), **SMALL), tok, docs, docs)
    assert "\n" not in str(e.value) and "--init-from" in str(e.value)
    cfg = TinyConfig(max_steps=1, **SMALL)
    with pytest.raises(UserError, match="no-resume") as e:
        train(cfg, tok, docs, docs, checkpoint=old)
    bare = tmp_path / "bare.pt"
    bare.write_bytes(pickle.dumps(_Evil(str(marker)), protocol=2))  # a bare pickle, not a zip
    with pytest.raises(UserError, match="pickle"):
        load_checkpoint(bare, what="--init-from")
    assert not marker.exists()


@pytest.mark.parametrize("data", [b"", b"garbage", b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\": 1}      "])
def test_other_files_are_one_line(tmp_path, data):
    p = tmp_path / "x.safetensors"
    p.write_bytes(data)
    with pytest.raises(UserError, match="not a train-tiny checkpoint") as e:
        load_checkpoint(p, what="--init-from")
    assert "\n" not in str(e.value)


def test_a_safetensors_file_without_our_state_is_refused(tmp_path):
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, tmp_path / "model.safetensors", metadata={"longrope": json.dumps({"a": 1})})
    with pytest.raises(UserError, match="version-1 train-tiny checkpoint"):
        load_checkpoint(tmp_path / "model.safetensors", what="--init-from")


def test_init_from_a_checkpoint_of_another_shape_is_one_line(tok_docs, tmp_path):
    tok, docs = tok_docs
    ckpt = tmp_path / "wide.safetensors"
    train(TinyConfig(max_steps=1, **{**SMALL, "hidden_size": 64, "intermediate_size": 96}), tok, docs, docs,
          checkpoint=ckpt)
    with pytest.raises(UserError, match="does not fit this model") as e:
        train(TinyConfig(max_steps=1, init_from=str(ckpt), **SMALL), tok, docs, docs)
    assert "\n" not in str(e.value)


def test_resume_restores_optimizer_and_generator_exactly(tok_docs, tmp_path):
    import torch

    tok, docs = tok_docs
    cfg = TinyConfig(max_steps=4, **SMALL)
    full, _, _ = train(cfg, tok, docs, docs)
    ckpt = tmp_path / "c.safetensors"
    train(TinyConfig(max_steps=4, stop_at_step=2, **SMALL), tok, docs, docs, checkpoint=ckpt)
    resumed, _, summary = train(cfg, tok, docs, docs, checkpoint=ckpt)
    assert summary["steps"] == 4
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    _, state = load_checkpoint(ckpt, what="checkpoint")
    assert state["step"] == 4 and np.isfinite(state["elapsed_s"])
