"""Resolve ``--tokenizer`` the way ``--model`` is resolved, loading only the tokenizer.

A folder holding only tokenizer files (no ``config.json``) is loaded with ``AutoTokenizer``
directly. Anything else ("tiny", "smollm2", model folders, GGUF files, hub ids) is loaded as
``longrope.models.loading.load_model`` loads its tokenizer (``load_tokenizer_of``).
"""

from __future__ import annotations

import os
from typing import Any

from longrope.errors import UserError
from longrope.io import expand_user

__all__ = ["load_tokenizer"]

_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")


def _auto(location: str, name: object, **kwargs: Any) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(location, **kwargs)
    except (OSError, ValueError, KeyError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"cannot load a tokenizer from {str(name)!r}: {first[:200]}") from None


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """A Hugging Face tokenizer for a model name, folder, ``.gguf`` file or hub id."""
    from longrope.models import loading

    folder = expand_user(name_or_path)
    if folder.is_dir() and not (folder / "config.json").is_file() and any(
        (folder / n).is_file() for n in _TOKENIZER_FILES
    ):
        # a tokenizer-only folder (what AutoTokenizer accepts, but not a model folder)
        tok = loading.check_vocabulary(_auto(str(folder), name_or_path, local_files_only=True), str(name_or_path))
    else:  # as load_model loads it (transformers' notes on our exports' vLLM keys dropped); None: no tokenizer files
        tok = loading.load_tokenizer_of(name_or_path)
    if tok is None:
        raise UserError(f"{str(name_or_path)!r} has no tokenizer files; pass a model folder with a tokenizer")
    return tok
