"""Builders for the run tests (``tests.runs.run_helpers``; fixtures in ``conftest.py``)."""

from __future__ import annotations

import numpy as np

#: The original context of the ``tiny`` model.
L = 32


def _tokenizer():
    """A byte-level BPE trained in memory on the passkey sentences (BOS ``<s>`` = id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrope.evaluate.passkey import FILLER, INSTRUCTION, NEEDLE, QUESTION

    texts = [INSTRUCTION, FILLER, NEEDLE.format(key=12345), QUESTION, "0123456789 " * 3]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=300, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def build_tiny(root):
    """``root/model`` (a random Llama with its tokenizer) and ``root/data`` (a shard folder)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from longrope.data.shards import ShardWriter, vocab_sha256, write_meta

    tok = _tokenizer()
    vocab = len(tok)
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=L,
                      bos_token_id=1, eos_token_id=2, rope_parameters={"rope_type": "default", "rope_theta": 10000.0})
    model = LlamaForCausalLM(cfg)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for _, p in sorted(model.named_parameters()):
            if p.ndim >= 2:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.08)
    model.save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    # documents: a repeating pattern with noise, so that position handling matters to the loss
    rng = np.random.default_rng(0)
    w = ShardWriter(root / "data", np.dtype("<u2"))
    for k in range(10):
        base = rng.integers(3, vocab, size=17)
        ids = np.tile(base, 20)[:300]
        noise = rng.random(300) < 0.2
        ids[noise] = rng.integers(3, vocab, size=int(noise.sum()))
        w.add(f"doc{k}", ids, "search" if k < 5 else "heldout")
    files = w.finish()
    write_meta(root / "data", {"format": "longrope-token-shards", "version": 1, "dtype": "uint16",
                               "n_docs": w.n_docs, "n_tokens": w.n_tokens,
                               "tokenizer": {"name": "tiny-bpe", "vocab_sha256": vocab_sha256(tok)}, **files})
    return root
