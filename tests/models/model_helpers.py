"""Tiny random transformers models of every supported family, seeded (used through tests/conftest.py).

Each model has 2 layers, hidden size 64, vocab 128, and a small original context length
``TINY_L`` so that tests can cross L with a few dozen tokens. Weights come from a seeded
``torch.Generator`` (never the global RNG), so the same fixture gives the same model every run.
"""

from __future__ import annotations

from pathlib import Path

TINY_VOCAB = 128
TINY_L = 32  # original context length of the tiny models (max_position_embeddings)
TINY_THETA = 10000.0

# family -> (config class name, extra config kwargs). head_dim 16 → rotary dim 16 → 8 factors,
# except Phi-3 with partial_rotary_factor 0.5 (rotates 8 of 16 channels → 4 factors), which
# exercises the partial-rotary path.
TINY_FAMILIES: dict[str, tuple[str, dict]] = {
    "llama": ("LlamaConfig", {}),
    "mistral": ("MistralConfig", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", {}),
    "qwen3": ("Qwen3Config", {"head_dim": 16}),
    "phi3": ("Phi3Config", {"pad_token_id": 0, "partial_rotary_factor": 0.5, "original_max_position_embeddings": TINY_L}),
    "gemma": ("GemmaConfig", {"head_dim": 16, "pad_token_id": 0}),
    "gemma2": ("Gemma2Config", {"head_dim": 16, "pad_token_id": 0, "sliding_window": 64}),
}
FAMILY_NAMES = tuple(TINY_FAMILIES)


def tiny_config(
    family: str, *, rope_parameters: dict | None = None, max_position_embeddings: int = TINY_L, **overrides
):
    """A 2-layer config of ``family`` (hidden 64, 4 heads of 16, 2 KV heads, vocab 128); ``overrides``
    replace any config field (e.g. ``head_dim=64`` for Gemma's head_dim ≠ hidden/heads layout)."""
    import transformers

    cls_name, extra = TINY_FAMILIES[family]
    cls = getattr(transformers, cls_name)
    params = {"rope_type": "default", "rope_theta": TINY_THETA}
    if extra.get("partial_rotary_factor") is not None:
        params["partial_rotary_factor"] = extra["partial_rotary_factor"]
    if rope_parameters is not None:
        params = {**params, **rope_parameters}
    kwargs = dict(
        vocab_size=TINY_VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_position_embeddings,
        bos_token_id=1,
        eos_token_id=2,
        tie_word_embeddings=False,
        rope_parameters=params,
    )
    kwargs.update({k: v for k, v in extra.items() if k != "partial_rotary_factor"})
    kwargs.update(overrides)
    config = cls(**kwargs)
    config._attn_implementation = "eager"  # deterministic reference path on CPU
    return config


def build_tiny(family: str, seed: int = 0, **config_kwargs):
    """A tiny random ``*ForCausalLM`` in eval mode, weights drawn from ``torch.Generator(seed)``."""
    import torch
    import transformers

    config = tiny_config(family, **config_kwargs)
    model = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
            else:  # norms: keep close to their init so activations stay tame
                p.add_(torch.randn(p.shape, generator=gen) * 0.02)
    return model.eval()


def clone_with_rope(model, family: str, rope_parameters: dict, max_position_embeddings: int = TINY_L, **overrides):
    """The same weights in a fresh model whose config has other rope parameters (HF's own scaling)."""
    import transformers

    config = tiny_config(
        family, rope_parameters=rope_parameters, max_position_embeddings=max_position_embeddings, **overrides
    )
    other = transformers.AutoModelForCausalLM.from_config(config, attn_implementation="eager")
    other.load_state_dict(model.state_dict())
    return other.eval()


def tiny_ids(length: int, seed: int = 1, batch: int = 1):
    """Random token ids [batch, length] from a seeded generator (ids ≥ 3 avoid bos/eos/pad)."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.randint(3, TINY_VOCAB, (batch, length), generator=gen)


def save_tiny(model, folder) -> Path:
    """Save a tiny model as a Hugging Face folder (config + safetensors, no tokenizer)."""
    folder = Path(folder)
    model.save_pretrained(folder)
    return folder


def byte_fallback_tokenizer(vocab_size: int = 600):
    """A Llama-2/Mistral-style tokenizer (BPE with byte fallback, ``▁`` for spaces), trained in a second on the start
    of a shipped book: transformers' ``LlamaTokenizer`` around it, BOS 1, EOS 2."""
    from tokenizers import Tokenizer, decoders, models, normalizers, processors, trainers
    from transformers import LlamaTokenizer

    from longrope.embedded import document_paths

    text = Path(document_paths("heldout")[0]).read_text(encoding="utf-8")[:60000]
    tk = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tk.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tk.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                    decoders.Strip(" ", 1, 0)])
    special = ["<unk>", "<s>", "</s>"] + [f"<0x{i:02X}>" for i in range(256)]
    tk.train_from_iterator([text], trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=special, limit_alphabet=100,
                                                        show_progress=False))
    tk.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    return LlamaTokenizer(tokenizer_object=tk, bos_token="<s>", eos_token="</s>", unk_token="<unk>", legacy=False)

