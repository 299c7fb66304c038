"""``longrope export`` as one function over both formats: a Hugging Face folder or a GGUF file.

It sits above :mod:`longrope.models.export` (the HF folder) and :mod:`longrope.models.gguf` (the GGUF
file, which builds on the former's shared pieces), so neither of those imports the other back.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.models.export import check_output_folder, check_target_length, export_hf
from longrope.models.families import require_supported
from longrope.models.gguf import NO_GGUF_FACTORS, no_factors_message

__all__ = ["check_export_options", "export_model"]


def check_export_options(fmt: str, dtype: str | None, *, source_kind: str | None, model_type: str | None,
                         spell: Callable[[str], str] = lambda key: "--" + key) -> None:
    """The export settings that cannot work, refused before anything is read: a format other than
    hf/gguf, a GGUF written in another dtype than float16/float32, a dtype for a GGUF source (its
    tensors are copied), LongRoPE factors for a model type llama.cpp does not apply them to.
    ``source_kind`` / ``model_type`` may be None (not known yet: the model is an earlier stage's
    output); ``spell`` writes a setting's name as the caller's user typed it (a flag, a plan key)."""
    import torch

    from longrope.models.loading import resolve_dtype

    if fmt not in ("hf", "gguf"):
        raise UserError(f"{spell('format')} must be hf or gguf, got {fmt!r}")
    if dtype is not None and not isinstance(dtype, str):
        raise UserError(f"{spell('dtype')} must be float32, bfloat16 or float16, got {dtype!r}")
    resolved = resolve_dtype(dtype) if dtype else None
    if fmt != "gguf":
        return
    if resolved is not None and resolved not in (torch.float16, torch.float32):
        raise UserError(f"{spell('dtype')} {dtype} does not fit {spell('format')} gguf, which writes float16 or "
                        f"float32 weights; give float16 or float32, or leave {spell('dtype')} out")
    if dtype and source_kind == "gguf":
        raise UserError(f"{spell('dtype')} does not apply to a GGUF source: its tensors are copied unchanged; "
                        f"leave {spell('dtype')} out")
    if model_type in NO_GGUF_FACTORS:
        raise UserError(no_factors_message(NO_GGUF_FACTORS[model_type], spell("format")))


def export_model(model: str, factors: str | os.PathLike, output: str | os.PathLike, *, fmt: str = "hf",
                 dtype: str | None = None, overwrite: bool = False, original_length: int | None = None,
                 target_length: int | None = None) -> dict[str, Any]:
    """``longrope export`` as a function: load ``model`` (a name, folder, ``.gguf`` or hub id), read
    ``factors`` against its RoPE and write a Hugging Face folder (``fmt="hf"``) or a GGUF file.

    The factor file and the output are checked before any weight is loaded. ``dtype`` (a name):
    the saved weights' dtype (hf default: as stored, float32 for GGUF sources; gguf default:
    float16). Returns ``{"output", "format", "tokenizer", "warnings"}``.
    """
    from longrope.io import path_argument
    from longrope.models.factor_files import load_factors_for
    from longrope.models.loading import read_rope_info, resolve_source

    path_argument(output, "export_model's output (the folder or .gguf file to write)")  # None was pathlib's TypeError
    if fmt == "hf" and Path(output).suffix.lower() == ".gguf":  # a folder named x.gguf, without a word (battery 11a)
        raise UserError(f"-o {output} names a GGUF file, but --format hf writes a Hugging Face folder: add --format "
                        "gguf, or give the folder a name without .gguf")
    source = resolve_source(model)
    info = require_supported(read_rope_info(model, original_length))
    check_export_options(fmt, dtype, source_kind=source.kind, model_type=info.model_type)
    factor_set = load_factors_for(factors, info, original_length=original_length, target_length=target_length,
                                  model=str(model), target_flag="--target-length")
    check_target_length(factor_set)
    with _said_by_the_caller():
        result, tokenizer_out = _write(model, source, factor_set, output, fmt, dtype, overwrite)
    return {"output": str(result.path), "format": fmt, "tokenizer": tokenizer_out, "warnings": list(result.warnings)}


@contextlib.contextmanager
def _said_by_the_caller() -> Iterator[None]:
    """The writers log their warnings (for whoever calls them alone); :func:`export_model` returns them and its
    callers say them (the CLI, a pipeline stage): logged as well, each was printed twice (battery 6)."""
    def not_a_warning(record: logging.LogRecord) -> bool:
        return record.levelno != logging.WARNING

    loggers = [logging.getLogger(name) for name in ("longrope.models.export", "longrope.models.gguf")]
    for logger in loggers:
        logger.addFilter(not_a_warning)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(not_a_warning)


def _check_not_the_source(source: Any, output: str | os.PathLike) -> None:
    """``-o`` is not the model being exported (nor a folder holding it): with --overwrite the source model was
    replaced by its export, the files export does not write (a user's notes, the original config) lost."""
    if source.kind == "hub":
        return
    src = (Path(source.location) / source.gguf_file if source.kind == "gguf" else Path(source.location)).resolve()
    out = Path(os.path.abspath(output)).resolve()
    if out == src or out in src.parents:
        raise UserError(f"-o {output} is the model being exported ({source.label}) or holds it; export writes a "
                        "new model and keeps the one it reads: choose another -o")


def _write(model: str, source: Any, factor_set: Any, output: str | os.PathLike, fmt: str, dtype: str | None,
           overwrite: bool) -> tuple[Any, Any]:
    """Load ``model`` and write it with ``factor_set`` in ``fmt``: ``(the writer's result, what the tokenizer
    became)``."""
    import torch

    from longrope.models.loading import load_config, load_model, resolve_dtype

    _check_not_the_source(source, output)
    if fmt == "gguf":
        from longrope.models.gguf import check_output_file, export_gguf, export_gguf_from_gguf

        check_output_file(Path(output), overwrite)
        torch_dtype = resolve_dtype(dtype or "float16")
        if source.kind == "gguf":
            from longrope.models.loading import load_tokenizer_of

            load_tokenizer_of(source)  # seconds: a tokenizer that cannot be built is not copied into a new file
            result = export_gguf_from_gguf(Path(source.location) / source.gguf_file, factor_set, output,
                                           overwrite=overwrite)
            tokenizer_out: Any = "copied from the source GGUF"
        else:
            loaded, tokenizer = load_model(model, dtype=torch.float32)
            result = export_gguf(loaded, tokenizer, factor_set, output,
                                 outtype="f16" if torch_dtype == torch.float16 else "f32", overwrite=overwrite)
            tokenizer_out = tokenizer is not None
    else:
        check_output_folder(Path(output), overwrite)
        if dtype:
            torch_dtype = resolve_dtype(dtype)
        elif source.kind == "gguf":  # dequantized weights: float32 (no stored dtype)
            torch_dtype = torch.float32
        else:  # keep the dtype the weights are stored in (fp16 stays fp16)
            stored = getattr(load_config(model), "dtype", None)
            torch_dtype = stored if isinstance(stored, torch.dtype) and stored.is_floating_point else torch.float32
        loaded, tokenizer = load_model(model, dtype=torch_dtype)
        result = export_hf(loaded, tokenizer, factor_set, output, dtype=torch_dtype, overwrite=overwrite)
        tokenizer_out = tokenizer is not None
    return result, tokenizer_out
