"""The tiny model itself: a plain ``LlamaForCausalLM`` with standard RoPE, built fresh from a seed, and
its export as a normal Hugging Face folder."""

from __future__ import annotations

from pathlib import Path

from tools.train_tiny.config import TinyConfig


def build_model(cfg: TinyConfig, tokenizer):
    """A fresh ``LlamaForCausalLM`` for ``cfg`` (weights from ``torch.manual_seed(cfg.seed)``)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=cfg.hidden_size,
        intermediate_size=cfg.intermediate_size,
        num_hidden_layers=cfg.num_layers,
        num_attention_heads=cfg.num_heads,
        num_key_value_heads=cfg.num_heads,
        max_position_embeddings=cfg.context,
        rope_theta=cfg.rope_theta,
        rope_parameters={"rope_type": "default", "rope_theta": cfg.rope_theta},
        tie_word_embeddings=cfg.tie_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        attn_implementation="sdpa",
    )
    torch.manual_seed(cfg.seed)
    return LlamaForCausalLM(config)


def export(model, tokenizer, out_dir: Path, *, dtype: str = "float16") -> Path:
    """Save a normal HF folder (config.json, model.safetensors, tokenizer files) in ``dtype``."""
    import torch

    out_dir.mkdir(parents=True, exist_ok=True)
    half = model.to(getattr(torch, dtype))
    half.save_pretrained(out_dir)
    model.to(torch.float32)
    tokenizer.save_pretrained(out_dir)
    return out_dir
