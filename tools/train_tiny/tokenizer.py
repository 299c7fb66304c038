"""The tiny model's tokenizer: a byte-level BPE with Llama's special ids, trained on the training books
(or reused from an earlier stage), and the ``text -> ids`` helpers the sampler and the report use."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from longrope.errors import ConfigError

BOS, EOS, UNK = "<s>", "</s>", "<unk>"


def train_tokenizer(texts: Sequence[str], vocab_size: int):
    """Train a byte-level BPE (``<unk>``=0, ``<s>``=1, ``</s>``=2) and wrap it for transformers.

    Digits are split one per token (as Llama's tokenizer does): books hold few numbers, and a
    5-digit passkey must be copyable digit by digit. The post-processor prepends BOS, so
    ``tokenizer(text)`` gives the BOS-first layout the model was trained on.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[UNK, BOS, EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(texts), trainer=trainer)
    bos_id = tok.token_to_id(BOS)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, bos_id)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
        model_max_length=1 << 30,  # long-context tool: no truncation warnings at 2M tokens
        clean_up_tokenization_spaces=False,
    )


def load_tokenizer(path: str | Path, vocab_size: int):
    """A saved tokenizer (a folder holding ``tokenizer.json``, or that file) for reuse by a later
    training stage; its vocabulary must have ``vocab_size`` entries (the model's embedding rows)."""
    from transformers import PreTrainedTokenizerFast

    path = Path(path)
    file = path / "tokenizer.json" if path.is_dir() else path
    if not file.is_file():
        raise ConfigError("tokenizer", f"{{name}} {path}: no tokenizer.json there; give a tiny model folder or its "
                                       "tokenizer.json")
    tok = PreTrainedTokenizerFast(tokenizer_file=str(file), bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                  model_max_length=1 << 30, clean_up_tokenization_spaces=False)
    if len(tok) != vocab_size:
        raise ConfigError(("tokenizer", "vocab_size"), f"{{name0}} {path} has {len(tok)} tokens but {{name1}} is "
                                                       f"{vocab_size}; make them agree")
    return tok


def encoder(tokenizer) -> Callable[[str], list[int]]:
    """``text -> ids`` without special tokens, via the fast backend."""
    backend = tokenizer.backend_tokenizer

    def encode(text: str) -> list[int]:
        return backend.encode(text, add_special_tokens=False).ids

    return encode


def encode_docs(tokenizer, texts: Sequence[str]) -> list[np.ndarray]:
    """Token ids of each document (no BOS), as int32 arrays."""
    out = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    return [np.asarray(e.ids, dtype=np.int32) for e in out]
