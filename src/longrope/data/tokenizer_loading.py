"""Resolve ``--tokenizer`` the way ``--model`` is resolved, loading only the tokenizer.

Prefers ``longrope.models.loading.load_tokenizer`` (the model loader's own resolver: "tiny",
"smollm2", folders, GGUF files, hub ids) when that exists; otherwise resolves the name with
``longrope.models.loading.resolve_source`` and calls ``AutoTokenizer.from_pretrained`` here.
"""

from __future__ import annotations

import os
from typing import Any

from longrope.errors import UserError

__all__ = ["load_tokenizer"]


def load_tokenizer(name_or_path: str | os.PathLike) -> Any:
    """A Hugging Face tokenizer for a model name, folder, ``.gguf`` file or hub id."""
    from longrope.models import loading

    own = getattr(loading, "load_tokenizer", None)
    if callable(own):
        tok = own(name_or_path)
    else:
        from transformers import AutoTokenizer

        source = loading.resolve_source(name_or_path)
        kwargs: dict[str, Any] = {}
        if source.gguf_file:
            kwargs["gguf_file"] = source.gguf_file
        if source.kind != "hub" or os.environ.get("HF_HUB_OFFLINE", "") not in ("", "0"):
            kwargs["local_files_only"] = True
        try:
            tok = AutoTokenizer.from_pretrained(source.location, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot load a tokenizer from {str(name_or_path)!r}: {first[:200]}") from None
    if tok is None:
        raise UserError(f"{str(name_or_path)!r} has no tokenizer files; pass a model folder with a tokenizer")
    return tok
