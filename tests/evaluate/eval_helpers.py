"""Tiny random models and naive reference computations for the evaluation tests."""

from __future__ import annotations

import numpy as np
import torch


def tiny_llama(vocab: int = 97, hidden: int = 64, layers: int = 2, max_pos: int = 256, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_pos,
        bos_token_id=1,
        eos_token_id=2,
        pad_token_id=0,
        tie_word_embeddings=False,
    )
    model = LlamaForCausalLM(cfg).eval()
    reinit(model, seed)
    return model


def reinit(model, seed: int, head_scale: float = 8.0):
    """Seeded weights from a private generator (the global RNG is never used).

    A default init predicts near-uniformly; the head is scaled up so the NLLs vary between tokens
    and a wrong label or position would show.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for _name, p in model.named_parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
        model.get_output_embeddings().weight.mul_(head_scale)
    return model


def naive_nll(model, tokens: np.ndarray, score_start: int) -> tuple[float, int]:
    """Σ NLL of labels ``score_start…`` of one window from the full ``[T, vocab]`` logits."""
    ids = torch.as_tensor(tokens, dtype=torch.long)[None]
    with torch.no_grad():
        logits = model(input_ids=ids).logits[0].double()  # [T, vocab]
    logp = torch.log_softmax(logits, dim=-1)
    labels = ids[0, score_start:]
    picked = logp[score_start - 1 : -1].gather(1, labels[:, None])[:, 0]
    return float(-picked.sum()), len(labels)


def make_tokenizer(vocab_size: int = 400):
    """A byte-level BPE tokenizer trained in memory on the passkey sentences (BOS ``<s>`` = id 1)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrope.evaluate.passkey import FILLER, INSTRUCTION, NEEDLE, QUESTION

    texts = [INSTRUCTION, FILLER, NEEDLE.format(key=12345), QUESTION, "0123456789 " * 3]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
