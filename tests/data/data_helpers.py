"""A tiny byte-level BPE tokenizer trained in memory (no download) and sample texts."""

from __future__ import annotations

TEXTS = [
    "It is a truth universally acknowledged, that a single man in possession of a good fortune, "
    "must be in want of a wife.\n\nHowever little known the feelings or views of such a man may be",
    "Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse",
    "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suffer",
    "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. 0123456789",
    "Ünïcödé works too: naïve café, 東京, emoji 🙂 and tabs\tand trailing spaces   ",
]


def make_tokenizer(vocab_size: int = 400):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(TEXTS * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
