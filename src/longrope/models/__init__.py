"""The adapter to transformers: the only package that touches its internals.

- :func:`load_model` / :func:`read_rope_info` (``loading``): "tiny", "smollm2", HF folders, GGUF, hub ids.
- :class:`RopeInfo`, :func:`inspect_model` (``families``): supported families and their RoPE facts.
- :func:`install_factors` → :class:`RopePatch` (``patch``): inject, swap, restore LongRoPE factors.
- :func:`export_hf` (``export``): a Hugging Face folder stock transformers (and vLLM) loads without longrope;
  :func:`export_gguf` (``gguf``): a GGUF file llama.cpp applies the factors from;
  ``exporter.export_model``: `longrope export` over both formats (above the two, so neither imports the other).
- :func:`generate` (``generation``, with ``cache_switch``): generation that stays exact when a sequence
  crosses L (re-prefill at the switch by default; re-rotation of the cached keys on request).

Importing this package imports torch (``patch``) but not transformers (imported on first use);
the CLI imports it inside ``run`` only.
"""

from longrope.models.export import ExportResult, export_hf, longrope_config_entries
from longrope.models.families import (
    FAMILIES,
    RopeInfo,
    inspect_model,
    rope_info_from_config,
    supported_families_text,
)
from longrope.models.generation import generate
from longrope.models.gguf import export_gguf
from longrope.models.loading import (
    auto_device,
    load_config,
    load_model,
    read_rope_info,
    resolve_device,
    resolve_dtype,
)
from longrope.models.patch import LongRopeRotaryEmbedding, RopePatch, current_patch, install_factors

__all__ = [
    "FAMILIES",
    "ExportResult",
    "LongRopeRotaryEmbedding",
    "RopeInfo",
    "RopePatch",
    "current_patch",
    "export_gguf",
    "export_hf",
    "generate",
    "inspect_model",
    "install_factors",
    "load_config",
    "load_model",
    "longrope_config_entries",
    "read_rope_info",
    "auto_device",
    "resolve_device",
    "resolve_dtype",
    "rope_info_from_config",
    "supported_families_text",
]
