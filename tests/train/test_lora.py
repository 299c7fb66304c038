"""``longrope.train.lora``: LoRA through peft."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("peft")


def test_wrapping_a_model_warns_nothing(build_tiny_model):
    """finetune --lora is a default path: peft's own use of a name transformers deprecated must not reach the
    user as a FutureWarning they cannot act on."""
    from longrope.train.lora import apply_lora

    model = build_tiny_model("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "v_proj"],
                             trainable=["norm"])
    assert any("lora_" in name for name, _ in wrapped.named_parameters())
