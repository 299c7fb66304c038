"""The one rule for a command that writes a single JSON file at ``-o`` (``baseline``'s factors.json,
``inspect``'s report): which file already there it may replace.

No output goes inside a model, run or shard folder (new file or not: a command that worked once must work
again, and the folder's own files are not this command's to write), and a file there is replaced only when
it is one such a command writes (``is_own`` of its JSON). Before, any file was replaced: ``baseline --model M
-o M/config.json`` overwrote the model's own config.json (output = input), ``-o SHARDS/meta.json`` broke a
shard folder and ``inspect -o model.gguf`` replaced the model with its report.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.io import check_writable_path, output_target, read_json

__all__ = ["check_replaceable_file", "folder_owner"]


def folder_owner(folder: Path) -> str | None:
    """What ``folder`` is when longrope reads it as a whole ('a model folder', 'an eval ppl run folder', 'a shard
    folder'), else None: a file in it belongs to it."""
    from longrope.formats.factors import run_record_command
    from longrope.formats.hf_config import is_model_config

    config, meta = folder / "config.json", folder / "meta.json"
    if config.is_file():
        command = run_record_command(config)
        if command is not None:
            return f"{command} run folder"
        try:
            if is_model_config(read_json(config, expect=None)):
                return "a model folder"
        except UserError:
            pass
    if meta.is_file():
        try:
            if str(read_json(meta).get("format", "")).startswith("longrope-token-shards"):
                return "a shard folder"
        except UserError:
            pass
    return None


def check_replaceable_file(path: str | os.PathLike, *, writes: str, is_own: Callable[[Any], bool]) -> Path:
    """Refuse, in one line before any work, an output file the command must not replace (see the module doc); returns
    the file to write (a link's target: :func:`~longrope.io.output_target`).

    ``writes``: what the command writes ("a factors.json"); ``is_own(doc)``: whether a parsed JSON document is
    one such file."""
    check_writable_path(path)  # as given: 'runs/' ends in a folder's '/'
    path = output_target(path)
    owner = folder_owner(path.resolve().parent)
    if owner is not None:
        raise UserError(f"{path} is inside {path.resolve().parent}, {owner}; writing {writes} there would change "
                        "it: choose an -o outside that folder")
    if not path.exists():
        return path
    try:
        doc = read_json(path, expect=None)
    except UserError:
        doc = None
    if path.stat().st_size and not is_own(doc):
        raise UserError(f"{path} exists and is not {writes}, which this command would replace; choose another -o "
                        "(or delete the file first)")
    return path
