"""Passkey sequences in token space: the passkey rows of the tiny model's training batches.

The wording is the standard one (docs/method.md §7): an instruction, the filler "The grass is
green. ..." repeated, "The pass key is K. Remember it. K is the pass key." at a given depth, more
filler, then "What is the pass key? The pass key is". Prompts are sized in tokens, not characters.
Pieces are tokenized separately and concatenated; with a byte-level BPE whose pieces begin with a
space this is the same as tokenizing the joined string, and it lets a prompt hit an exact length.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from longrope.evaluate import passkey as _wording
from longrope.settings import PASSKEY_ANSWER

# The wording is :mod:`longrope.evaluate.passkey`'s; each piece after the intro begins with the space a
# byte-level BPE keeps inside its first token.
INTRO = _wording.INSTRUCTION
FILLER = " " + _wording.FILLER
NEEDLE = " " + _wording.NEEDLE
QUESTION = " " + _wording.QUESTION


@dataclass(frozen=True)
class PasskeyPieces:
    """Token ids of the fixed pieces (no BOS), computed once per tokenizer."""

    intro: list[int]
    filler: list[int]
    question: list[int]

    @classmethod
    def from_tokenizer(cls, encode) -> PasskeyPieces:
        """``encode(text) -> list[int]`` without special tokens."""
        return cls(encode(INTRO), encode(FILLER), encode(QUESTION))


def build_prompt(pieces: PasskeyPieces, encode, *, length: int, key: int, depth: float,
                 bos_id: int) -> list[int]:
    """BOS + intro + filler with the needle at ``depth`` + question, exactly ``length`` tokens.

    The filler is repeated and its last repetition cut so the prompt has exactly ``length`` ids.
    """
    needle = encode(NEEDLE.format(key=key))
    fixed = 1 + len(pieces.intro) + len(needle) + len(pieces.question)
    budget = length - fixed
    if budget < 0:
        raise ValueError(f"passkey prompt length {length} is below its fixed part ({fixed} tokens)")
    reps = -(-budget // len(pieces.filler)) if budget else 0
    filler = (pieces.filler * reps)[:budget]
    # Insert the needle at a filler-sentence boundary near the requested depth, so that it never
    # cuts a word in two: boundaries are the starts of the filler's repetitions.
    unit = len(pieces.filler)
    cut = min(int(round(depth * budget / unit)) * unit, budget) if budget else 0
    ids = [bos_id, *pieces.intro, *filler[:cut], *needle, *filler[cut:], *pieces.question]
    assert len(ids) == length
    return ids


def answer_ids(encode, key: int) -> list[int]:
    """The expected continuation ``" K."`` as ids."""
    return encode(PASSKEY_ANSWER.format(key=key))


def first_integer(text: str) -> int | None:
    """The first integer in a decoded continuation (the passkey score's parser)."""
    m = re.search(r"\d+", text)
    return int(m.group()) if m else None
