"""Export a model with LongRoPE factors as a Hugging Face folder that stock transformers loads.

The folder (weights as safetensors, tokenizer, ``config.json``) needs no longrope at load time:
the factors travel in the config's standard ``longrope`` rope type (LONGROPE.md §8), written in
both spellings so transformers 4.51+ and 5.x read the same thing:

- top-level ``rope_theta``, ``max_position_embeddings = L'``, ``original_max_position_embeddings = L``;
- ``rope_scaling`` (what 4.x reads, and what 5.x reads first when present):
  ``{rope_type: "longrope", short_factor, long_factor, original_max_position_embeddings: L,
  factor: s, attention_factor: m}``;
- ``rope_parameters`` (5.x): the same keys plus ``rope_theta``.

Version facts this relies on (checked in the 4.51.3 and 5.24.0 sources):

- 5.x: ``rope_scaling`` in config.json takes precedence over ``rope_parameters``; ``rope_theta`` and
  ``partial_rotary_factor`` are filled in from the top level. The rotary module picks the long
  factors when ``max(position_ids)+1 > L`` and scales cos/sin by ``attention_factor``.
- 4.51 non-Phi-3 models use the top-level ``original_max_position_embeddings`` as L and
  ``factor = max/original``; they honour ``attention_factor``.
- 4.51 Phi-3 refuses a ``rope_scaling`` with anything but exactly ``type``, ``short_factor`` and
  ``long_factor``, and always derives m = sqrt(1 + ln s / ln L). So for Phi-3 we write those three
  keys when m equals that default (the usual case); with a custom m we write the full dict, which
  5.x honours and 4.x Phi-3 rejects loudly (never a silently different m) — a warning says so.

n̂ (retained start tokens) has no key in any runtime. It is stored as ``longrope_start_tokens``
in config.json, and the whole factor set (n̂ and provenance included) as ``factors.json`` next to
it, which ``FactorSet.load(folder)`` reads first; stock runtimes ignore both. Position 0 has angle 0 under any factors, so
n̂ = 1 changes nothing and the export is exact for n̂ ≤ 1. For n̂ ≥ 2 the exported model rotates
positions 1 … n̂−1 with the rescaled factors instead of the original ones: its logits equal the
patched model's only at position 0 (every later query sees those keys). A warning says so.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.io import write_json
from longrope.models.families import FAMILIES, RopeInfo, inspect_model, require_supported
from longrope.rope.factors import START_TOKENS_CONFIG_KEY

__all__ = ["ExportResult", "export_hf", "longrope_config_entries", "START_TOKENS_KEY"]

log = logging.getLogger(__name__)

START_TOKENS_KEY = START_TOKENS_CONFIG_KEY
FACTORS_FILE = "factors.json"  # FactorSet.load(folder) reads it first: n̂ and provenance survive


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_hf` wrote."""

    path: Path
    """The output folder."""
    warnings: tuple[str, ...]
    """Caveats for the user (n̂ ignored by stock runtimes, Phi-3 and 4.x, ...)."""


def _default_attention(scale: float, original: int) -> float:
    """transformers' longrope default m (the same formula as :mod:`longrope.rope.attention`)."""
    return 1.0 if scale <= 1.0 else math.sqrt(1.0 + math.log(scale) / math.log(original))


def longrope_config_entries(factor_set: Any, info: RopeInfo) -> tuple[dict[str, Any], list[str]]:
    """The top-level config.json keys that carry ``factor_set``, and the warnings that go with them.

    Pure (no torch): the keys of LONGROPE.md §8 for the family described by ``info``.
    """
    half = info.rotary_dim // 2
    long_f = [float(x) for x in factor_set.long_factor]
    short_f = [float(x) for x in factor_set.short_factor]
    if len(long_f) != half or len(short_f) != half:
        raise UserError(
            f"factor set has {len(long_f)} long / {len(short_f)} short factors but this {info.family} model "
            f"needs {half} (rotary dim {info.rotary_dim}); use a factor file made for this model"
        )
    if not math.isclose(float(factor_set.rope_theta), float(info.rope_theta), rel_tol=1e-9):
        raise UserError(
            f"factor set is for rope_theta={factor_set.rope_theta:g} but the model has {info.rope_theta:g}"
        )
    L = int(factor_set.original_max_position_embeddings)
    L_target = int(factor_set.max_position_embeddings)
    s = L_target / L
    m = float(factor_set.resolved_attention_factor())
    n_hat = int(factor_set.start_tokens)
    warnings: list[str] = []
    scaling: dict[str, Any] = {
        "rope_type": "longrope",
        "short_factor": short_f,
        "long_factor": long_f,
        "original_max_position_embeddings": L,
        "factor": s,
        "attention_factor": m,
    }
    prf = info.rotary_dim / info.head_dim
    family = FAMILIES[info.model_type]
    entries: dict[str, Any] = {
        "rope_theta": float(info.rope_theta),
        "max_position_embeddings": L_target,
        "original_max_position_embeddings": L,
    }
    if family.honours_partial_rotary:
        scaling["partial_rotary_factor"] = prf
        entries["partial_rotary_factor"] = prf
    parameters = {**scaling, "rope_theta": float(info.rope_theta)}
    if info.model_type == "phi3":
        if math.isclose(m, _default_attention(s, L), rel_tol=1e-12):
            # transformers 4.x Phi-3 accepts exactly these three keys and derives the same m.
            scaling = {"type": "longrope", "short_factor": short_f, "long_factor": long_f}
        else:
            warnings.append(
                f"attention factor {m:.6g} differs from Phi-3's built-in sqrt(1+ln s/ln L) = "
                f"{_default_attention(s, L):.6g}: transformers 5.x honours it, transformers 4.x refuses this "
                "config (its Phi-3 rope_scaling allows only type/short_factor/long_factor)"
            )
    entries["rope_scaling"] = scaling
    entries["rope_parameters"] = parameters
    if n_hat > 0:
        entries[START_TOKENS_KEY] = n_hat
    if n_hat >= 2:
        warnings.append(
            f"n̂ = {n_hat} retained start tokens cannot be expressed in a Hugging Face config: stock "
            f"runtimes ignore '{START_TOKENS_KEY}' and rotate positions 1..{n_hat - 1} with the rescaled "
            "factors, so their logits match the patched model only at position 0"
        )
    return entries, warnings


def _is_quantized(model: Any) -> bool:
    return bool(getattr(model, "hf_quantizer", None) or getattr(model, "is_quantized", False))


def _clean_copy(model: Any, dtype: Any) -> Any:
    """A plain (non-quantized) model of the same class and config holding ``model``'s weights.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model ("quantized with gguf"); the
    weights are already dequantized in memory, so a fresh module with the same state dict saves.
    """
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = type(model)._from_config(config, dtype=dtype)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    # Non-persistent buffers never appear; tied lm_head may be absent from one side only.
    tied = {k for k in missing if k.endswith("lm_head.weight")} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"state dict mismatch while copying the model: missing {missing}, unexpected {unexpected}")
    if getattr(model, "generation_config", None) is not None:
        fresh.generation_config = copy.deepcopy(model.generation_config)
    return fresh.eval()


def _default_permissions(folder: Path) -> None:
    """mkdtemp/mkstemp create 0700/0600 entries; give the export the modes a plain save would have."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.iterdir():
        if path.is_file():
            path.chmod(0o666 & ~umask)


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` (atomic rename when ``out`` does not exist)."""
    if out.exists():
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif overwrite and out.is_dir():
            trash = out.with_name(f".{out.name}.old-{os.getpid()}")
            os.replace(out, trash)
            os.replace(tmp, out)
            shutil.rmtree(trash, ignore_errors=True)
            return
        else:
            raise UserError(f"output folder {out} already exists and is not empty; pass --overwrite or another -o")
    os.replace(tmp, out)


def export_hf(
    model: Any,
    tokenizer: Any,
    factor_set: Any,
    out_dir: str | os.PathLike,
    *,
    dtype: Any = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``model`` + ``factor_set`` as a Hugging Face folder stock transformers loads.

    ``model`` may be patched or not (the export never reads the rotary module; the factors go into
    the config). ``dtype`` (default: the model's) is the dtype of the saved weights. Everything is
    written into a temporary sibling folder and renamed into place at the end.
    """
    import torch
    from transformers import AutoConfig

    info = require_supported(inspect_model(model))
    entries, warnings = longrope_config_entries(factor_set, info)
    out = Path(out_dir)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not overwrite)):
        raise UserError(f"output folder {out} already exists and is not empty; pass --overwrite or another -o")
    out.parent.mkdir(parents=True, exist_ok=True)
    weights_dtype = dtype if dtype is not None else next(model.parameters()).dtype
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        src = model
        if _is_quantized(model) or weights_dtype != next(model.parameters()).dtype:
            src = _clean_copy(model, weights_dtype)
        with torch.no_grad():
            src.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        cfg_path = tmp / "config.json"
        config = json.loads(cfg_path.read_text())
        config.update(entries)
        write_json(cfg_path, config)
        factors = factor_set.to_dict() if hasattr(factor_set, "to_dict") else None
        if factors is not None:
            write_json(tmp / FACTORS_FILE, factors)
        # Read back with the installed transformers: the factors must arrive where its rotary reads them.
        loaded = AutoConfig.from_pretrained(tmp)
        params = loaded.rope_parameters
        if (
            params.get("rope_type") != "longrope"
            or [float(x) for x in params["long_factor"]] != entries["rope_parameters"]["long_factor"]
            or int(loaded.max_position_embeddings) != entries["max_position_embeddings"]
        ):
            raise RuntimeError(f"exported config is not read back as longrope by this transformers: {params}")
        _default_permissions(tmp)
        _swap_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in warnings:
        log.warning(w)
    return ExportResult(out, tuple(warnings))
