"""Export LongRoPE factors as a GGUF file that llama.cpp applies.

What llama.cpp reads (docs/method.md §8; checked with a real llama.cpp, see bench/bench_llamacpp.py):
the F32 tensors ``rope_factors_long.weight`` / ``rope_factors_short.weight`` ([d/2] each, λ_i of
pair i) and the keys ``{arch}.rope.scaling.type = "longrope"``,
``{arch}.rope.scaling.original_context_length = L`` and ``{arch}.rope.scaling.attn_factor = m``
(cos and sin are multiplied by it). It uses the long factors when the context size exceeds L and the
short ones otherwise — decided once per context, not per position — for the Llama architecture
too, although its own converter writes these tensors only for Phi-3-like models. We also set
``{arch}.context_length = L'``, so a context of the default size uses the long factors.
``{arch}.rope.scaling.factor`` is never written (llama.cpp would divide every frequency by it on top
of the factors), and a ``rope_freqs.weight`` tensor (Llama-3.1 style scaling, which llama.cpp would
prefer) is dropped: the installed factors replace the model's own scaling, as in
:func:`longrope.models.install_factors`. n̂ has no GGUF key: a warning says so when n̂ ≥ 2.

Which families: llama.cpp (the build node-llama-cpp 3.21.1 bundles, checked per family with tiny
random models) reads the factor tensors for its ``llama`` and ``phi3`` architectures only; a file
with them for ``qwen2``, ``qwen3``, ``gemma`` or ``gemma2`` fails to load ("wrong number of
tensors"), and so does one with ``rope_freqs.weight``. Llama and Mistral map to ``llama`` (as in
llama.cpp's converter), Phi-3 to ``phi3``, and Qwen2 — Llama with q/k/v biases, which the ``llama``
architecture accepts — is written as ``llama`` too. Qwen3 (q/k norms) and Gemma/Gemma 2 (GELU MLP,
embedding scale, soft-capping) have no such equivalent: exporting them to GGUF is refused with one
line (serve them with transformers or vLLM from ``--format hf``).

Two sources:

- :func:`export_gguf` — a loaded Hugging Face model → weights in f16 (2-D tensors; norms and biases
  stay f32) or f32, plus the tokenizer (byte-level BPE with the ``gpt-2``/``smollm`` pre-tokenizers,
  byte-fallback BPE and SentencePiece through the ``gguf`` package's vocab classes). Tensor names
  come from the ``gguf`` package's ``TensorNameMap``. llama.cpp's ``llama`` architecture rotates
  adjacent channel pairs while transformers rotates (i, i + d/2), so q/k rows (and biases) are
  permuted per head, as llama.cpp's own converter does; factor i then still applies to the pair
  (i, i + d/2) of the original model. ``phi3`` uses the (i, i + d/2) layout: nothing to permute.
- :func:`export_gguf_from_gguf` — an existing GGUF file: every field and tensor is copied unchanged
  (quantized ones included), only the rope keys above and the two factor tensors are added or
  replaced (no model is loaded; SmolLM2's 93 MB file takes seconds).
"""

from __future__ import annotations

import collections
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import (
    arrived_meanwhile,
    check_utf8_path,
    check_writable_path,
    give_default_modes,
    make_folder,
    os_error_words,
    output_target,
    path_argument,
    place_new,
)
from longrope.models.export import (
    ExportResult,
    check_export_tokenizer,
    check_target_length,
    check_writable_parent,
    longrope_config_entries,
    remove_stale_temporaries,
    temporary_sibling,
)
from longrope.models.factor_files import check_rotary_fit
from longrope.models.families import FAMILIES
from longrope.options import check_flag, check_loaded_model

__all__ = [
    "GGUF_ARCHES",
    "NO_GGUF_FACTORS",
    "check_output_file",
    "export_gguf",
    "export_gguf_from_gguf",
    "gguf_rope_facts",
    "longrope_gguf_keys",
    "no_factors_message",
]

log = logging.getLogger(__name__)

# transformers model_type -> llama.cpp architecture name, from the family rows (Family.gguf_arch,
# Family.gguf_factors): the families whose factors llama.cpp reads, and those it cannot run with them.
GGUF_ARCHES = {t: f.gguf_arch for t, f in FAMILIES.items() if f.gguf_factors}
NO_GGUF_FACTORS = {t: f.gguf_arch for t, f in FAMILIES.items() if not f.gguf_factors}
_INTERLEAVED_ARCHES = ("llama",)  # llama.cpp rope type "norm": pairs (2j, 2j+1); the others are "neox"
FACTOR_TENSORS = ("rope_factors_long.weight", "rope_factors_short.weight")
_DROPPED_TENSORS = (*FACTOR_TENSORS, "rope_freqs.weight")
OUTTYPES = ("f16", "f32")


def longrope_gguf_keys(arch: str, factor_set: Any) -> dict[str, tuple[Any, str]]:
    """``{key: (value, gguf type name)}`` for the rope keys this export sets (see module doc)."""
    from longrope.rope.factors import require_factor_set

    if arch not in set(GGUF_ARCHES.values()):
        raise UserError(f"arch must be a llama.cpp architecture longrope writes factors for "
                        f"({', '.join(sorted(set(GGUF_ARCHES.values())))}), got {arch!r}")
    require_factor_set(factor_set)
    return {
        f"{arch}.context_length": (int(factor_set.max_position_embeddings), "UINT32"),
        f"{arch}.rope.scaling.type": ("longrope", "STRING"),
        f"{arch}.rope.scaling.original_context_length": (int(factor_set.original_max_position_embeddings), "UINT32"),
        f"{arch}.rope.scaling.attn_factor": (float(factor_set.resolved_attention_factor()), "FLOAT32"),
    }


def _factor_arrays(factor_set: Any) -> dict[str, np.ndarray]:
    return {
        "rope_factors_long.weight": np.asarray(factor_set.long_factor, dtype=np.float32),
        "rope_factors_short.weight": np.asarray(factor_set.short_factor, dtype=np.float32),
    }


def _common_warnings(factor_set: Any) -> list[str]:
    n_hat = int(factor_set.start_tokens)
    if n_hat >= 2:
        return [f"n̂ = {n_hat} retained start tokens cannot be expressed in GGUF: llama.cpp rotates positions "
                f"1..{n_hat - 1} with the rescaled factors"]
    return []


def check_output_file(out: str | os.PathLike, overwrite: bool) -> None:
    """One-line errors for an output that cannot become the GGUF file (checked before any work); a link is judged
    by its target (:func:`~longrope.io.output_target`), which is what is written."""
    overwrite = check_flag(overwrite, "overwrite")
    out = output_target(path_argument(out, "check_output_file's out (the .gguf file)"))
    check_utf8_path(out.resolve())
    if out.exists() and out.is_dir():
        raise UserError(f"output {out} is a folder; --format gguf writes one file, give e.g. -o {out}.gguf")
    if out.suffix.lower() != ".gguf":  # written, then refused by --model as "a file but not a .gguf" (battery 11a)
        raise UserError(f"output {out} does not end in .gguf, the name GGUF files are read by (--model takes a .gguf "
                        f"file); give e.g. -o {out}.gguf")
    check_writable_path(out)  # a device or pipe there is never replaced, --overwrite or not
    if out.exists() and not overwrite:
        raise UserError(f"output file {out} already exists; pass --overwrite or another -o")
    if out.exists() and (why := _not_a_gguf_to_replace(out)) is not None:  # as for folders: an export, nothing else
        raise UserError(f"output file {out} {why}: --overwrite replaces only an exported model; choose another -o")
    check_writable_parent(out)


def _not_a_gguf_to_replace(out: Path) -> str | None:
    """Why ``--overwrite`` may not replace what is at ``out`` (None: a GGUF file, an empty one, or nothing): the
    rule of the check before the work and of the one when the file is put in place, where a file of the user's
    that arrived meanwhile was replaced and a folder was an IsADirectoryError (the review of battery 23b)."""
    if not os.path.lexists(out):
        return None
    if out.is_dir():
        return "is a folder"
    return None if not out.exists() or not out.stat().st_size or _is_gguf(out) else "is not a GGUF file"


def _is_gguf(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(4) == b"GGUF"
    except OSError:
        return False


def _check_factor_fit(factor_set: Any, rotary_dim: int, rope_theta: float, what: str) -> None:
    check_rotary_fit(factor_set, rotary_dim, rope_theta, source="factor set", who=what,
                     fix="use a factor file made for this model")
    check_target_length(factor_set)


def _finish(tmp: Path, out: Path, overwrite: bool) -> None:
    give_default_modes(tmp)
    if overwrite:
        if (why := _not_a_gguf_to_replace(out)) is not None:
            raise arrived_meanwhile(tmp, out, why)
        os.replace(tmp, out)
    else:  # a file that another export put there meanwhile is not replaced
        place_new(tmp, out)


# --------------------------------------------------------------------------- reading
def open_gguf(path: str | os.PathLike) -> Any:
    """A ``gguf.GGUFReader`` on ``path`` once its header parses and every tensor lies inside the file;
    a truncated or damaged file is a one-line :class:`UserError` (the readers raise struct, numpy and
    index errors of many kinds on one). Parsed once per file version (its place, size, times and inode, and the
    SHA-256 of its header, checked on every call: milliseconds): loading the ``smollm2`` tokenizer parsed its
    49k-token header six times (5 s each, 29 s in all), and every command given a GGUF paid it (battery 31c). The
    reader is shared: read it, never write through it. A kept reader whose file was since replaced or deleted is
    dropped at the next call (its memory map held the old file's disk space); callers may be threads."""
    path = path_argument(path, "a GGUF file's path")
    with _READERS_LOCK:
        _drop_stale_readers()
        try:
            key = _version_key(path)
            if key in _READERS:
                reader, digest = _READERS[key]
                if _header_digest(path, reader.data_offset) == digest:
                    _READERS.move_to_end(key)
                    return reader
        except OSError as exc:
            raise UserError(f"cannot read {path}: {os_error_words(exc)}") from None
        reader = _parse_gguf(path)
        try:
            _READERS[key] = (reader, _header_digest(path, reader.data_offset))
        except OSError as exc:
            raise UserError(f"cannot read {path}: {os_error_words(exc)}") from None
        while len(_READERS) > 4:
            _READERS.popitem(last=False)
        return reader


#: the readers :func:`open_gguf` parsed, newest last: (place, size, times, inode) -> (reader, header SHA-256)
_READERS: collections.OrderedDict[tuple, tuple[Any, str]] = collections.OrderedDict()
_READERS_LOCK = threading.RLock()


def _version_key(path: Path) -> tuple:
    """What names one version of a file: its place (as given and resolved), size, times, inode and device."""
    st = path.stat()  # (realpath, not Path.resolve: a link loop made between the two was a RuntimeError)
    return (str(path), os.path.realpath(path), st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino, st.st_dev)


def _drop_stale_readers() -> None:
    """Forget the kept readers whose file is no longer the version they read (replaced, rewritten, deleted)."""
    for key in list(_READERS):
        try:
            current = _version_key(Path(key[0]))
        except OSError:
            current = None
        if current != key:
            del _READERS[key]


def _header_digest(path: Path, size: int) -> str:
    """The SHA-256 of a GGUF file's first ``size`` bytes (its header: keys and tensor infos)."""
    with open(path, "rb") as f:
        return hashlib.sha256(f.read(size)).hexdigest()


def _parse_gguf(path: Path) -> Any:
    """:func:`open_gguf`'s parse and checks, uncached."""
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        size = path.stat().st_size
        end = max((int(t.data_offset) + int(t.n_bytes) for t in reader.tensors), default=0)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {os_error_words(exc)}") from None
    except Exception as exc:  # noqa: BLE001 - any parse failure of a file means the same thing here
        detail = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise UserError(f"{path} is not a readable GGUF file (truncated or damaged: {detail}); give the complete "
                        "file") from None
    if end > size:
        raise UserError(f"{path} is truncated: its tensors need {end:,} bytes, the file has {size:,}; give the "
                        "complete file")
    return reader


def check_gguf_file(path: str | os.PathLike) -> None:
    """Refuse a truncated or damaged GGUF in one line before anything else reads it (checked once per
    file version, as :func:`open_gguf` reads it)."""
    open_gguf(path)


def check_gguf_dequantizable(path: str | os.PathLike) -> None:
    """Refuse, before its weights are read, a GGUF holding tensors of a type transformers' reader cannot dequantize
    (gguf's dequantizer has none for Q8_1, Q8_K, Q1_0, I8-I64, F64): loading it was a NotImplementedError traceback
    after the tokenizer and config had loaded (battery 25a). ``export --format gguf`` of such a file copies its
    tensors unchanged and needs no such check."""
    path = path_argument(path, "a GGUF file's path")
    reader = open_gguf(path)
    types = sorted({t.tensor_type.name: t.name for t in reader.tensors if not _dequantizable(int(t.tensor_type))}.items())
    if types:
        shown = ", ".join(f"{kind} (e.g. {name})" for kind, name in types[:3])
        raise UserError(f"{path} holds tensors of a type the GGUF reader cannot dequantize: {shown}; convert it to "
                        "another type (llama.cpp's llama-quantize, e.g. to Q8_0 or F16), or pass the model's Hugging "
                        "Face folder")


@functools.lru_cache(maxsize=64)
def _dequantizable(kind: int) -> bool:
    """Whether gguf's dequantizer (the one transformers' GGUF reader calls) reads tensors of this type."""
    import gguf

    qtype = gguf.GGMLQuantizationType(kind)
    block, size = gguf.GGML_QUANT_SIZES[qtype]
    try:
        gguf.quants.dequantize(np.zeros((1, size), np.uint8), qtype)
    except NotImplementedError:
        return False
    except Exception:  # noqa: BLE001 - one block of zeros is no real tensor; only the missing dequantizer is told
        return True
    return True


# --------------------------------------------------------------------------- GGUF -> GGUF
def gguf_rope_facts(path: str | os.PathLike) -> dict[str, Any]:
    """``{arch, rotary_dim, rope_theta, context_length}`` of a GGUF file (header only)."""
    reader = open_gguf(path)
    arch = _field(reader, "general.architecture")
    if arch in NO_GGUF_FACTORS.values():
        raise UserError(no_factors_message(arch))
    if arch not in set(GGUF_ARCHES.values()):
        raise UserError(
            f"{path} is a {arch!r} GGUF; longrope writes LongRoPE factors for the architectures "
            f"{', '.join(sorted(set(GGUF_ARCHES.values())))}"
        )
    heads = _field(reader, f"{arch}.attention.head_count")
    emb = _field(reader, f"{arch}.embedding_length")
    rotary = _field(reader, f"{arch}.rope.dimension_count")
    if rotary is None:
        key_len = _field(reader, f"{arch}.attention.key_length")
        rotary = key_len if key_len is not None else emb // heads
    theta = _field(reader, f"{arch}.rope.freq_base")
    return {
        "arch": arch,
        "rotary_dim": int(rotary),
        "rope_theta": float(theta) if theta is not None else 10000.0,
        "context_length": _field(reader, f"{arch}.context_length"),
    }


def no_factors_message(arch: str, format_flag: str = "--format") -> str:
    """The one-line refusal of a GGUF export for an architecture llama.cpp applies no factors to
    (``format_flag``: how the caller's user spells the format setting)."""
    return (f"llama.cpp's {arch} architecture does not read LongRoPE factors (a GGUF carrying them fails to load), "
            f"so this model cannot be served with them by llama.cpp; use {format_flag} hf (transformers, vLLM)")


def _field(reader: Any, key: str) -> Any:
    field = reader.get_field(key)
    return field.contents() if field is not None else None


def _flat_scores_warning(reader: Any) -> str | None:
    """A warning where the source's SentencePiece-style vocabulary scores every piece alike: llama.cpp then joins
    the leftmost pair first and tokenizes text otherwise than transformers (a GGUF longrope wrote from a byte-fallback
    BPE before its pieces were scored by merge rank, battery 29b); a copy keeps those scores (review of battery 29b)."""
    import numpy as np

    if _field(reader, "tokenizer.ggml.model") != "llama":
        return None
    field = reader.get_field("tokenizer.ggml.scores")
    if field is None or len(field.data) < 2:
        return None
    scores = np.asarray([field.parts[i][0] for i in field.data], dtype=np.float64)
    if np.ptp(scores) > 0:
        return None
    return ("the source's tokenizer scores every piece alike (a GGUF longrope wrote before 2026-12-07 from a byte-fallback "
            "BPE, or another tool's): llama.cpp tokenizes text otherwise than transformers with it; export the "
            "Hugging Face model to GGUF instead")


def check_gguf_source(path: Path, reader: Any, arch: str) -> None:
    """Refuse, in one line, a GGUF whose header and tensors disagree, before it is copied: the GGUF -> GGUF export
    reads no weight through transformers, so a file whose header said 6 blocks over 4 blocks' tensors or whose attn_q
    rows were not heads x head size was copied into a new, as broken, file, and the export said it was written
    (battery 21c; its tokenizer is checked by :func:`longrope.models.exporter.export_model`, above both modules)."""
    fix = "write the source file again from its model"

    def header_int(key: str) -> int | None:
        value = _field(reader, f"{arch}.{key}")
        return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None

    blocks, emb, heads = header_int("block_count"), header_int("embedding_length"), header_int("attention.head_count")
    if blocks is None or emb is None or heads is None:
        raise UserError(f"{path}: its header has no positive {arch}.block_count, embedding_length and "
                        f"attention.head_count; {fix}")
    head = header_int("attention.key_length") or emb // heads
    found = {int(m.group(1)) for t in reader.tensors if (m := re.match(r"blk\.(\d+)\.", t.name))}
    if found != set(range(blocks)):
        raise UserError(f"{path}: its header says {blocks} blocks but its tensors are of {len(found)} "
                        f"(blk.{min(found, default=0)}..blk.{max(found, default=-1)}); {fix}")
    per_block: dict[int, set[str]] = {i: set() for i in found}
    for t in reader.tensors:
        if m := re.match(r"blk\.(\d+)\.(.+)", t.name):
            per_block[int(m.group(1))].add(m.group(2))
    every = set().union(*per_block.values())
    for i, names in sorted(per_block.items()):
        if names != every:
            raise UserError(f"{path}: its block {i} lacks tensor(s) the other blocks have (e.g. blk.{i}."
                            f"{sorted(every - names)[0]}); {fix}")
    shapes = {t.name: [int(n) for n in t.shape] for t in reader.tensors}  # ne order: [input, output]
    for name, shape in shapes.items():
        if name == "token_embd.weight":
            fits = len(shape) == 2 and shape[0] == emb
        elif re.fullmatch(r"blk\.\d+\.attn_q\.weight", name):
            fits = shape == [emb, heads * head]
        else:
            continue
        if not fits:
            raise UserError(f"{path}: its tensor {name} has shape {shape}, which its header's sizes do not give "
                            f"({arch}.embedding_length {emb}, {heads} heads of {head}); {fix}")


def export_gguf_from_gguf(
    src: str | os.PathLike, factor_set: Any, out: str | os.PathLike, *, overwrite: bool = False
) -> ExportResult:
    """Copy the GGUF ``src`` to ``out`` with ``factor_set`` added (see module doc)."""
    import gguf

    out = output_target(path_argument(out, "export_gguf_from_gguf's out (the .gguf file to write)"))
    src = path_argument(src, "export_gguf_from_gguf's src (the GGUF file to copy)")
    check_output_file(out, overwrite)
    if out.resolve() == src.resolve():
        raise UserError(f"-o {out} is the source model itself; write to another file")
    facts = gguf_rope_facts(src)
    arch = facts["arch"]
    _check_factor_fit(factor_set, facts["rotary_dim"], facts["rope_theta"], f"{src.name}")
    warnings = _common_warnings(factor_set)
    reader = open_gguf(src)
    check_gguf_source(src, reader, arch)
    if (flat := _flat_scores_warning(reader)) is not None:
        warnings.append(flat)
    dropped = [t.name for t in reader.tensors if t.name == "rope_freqs.weight"]
    if dropped:
        warnings.append("the source's rope_freqs.weight (its own RoPE scaling) is replaced by the LongRoPE factors")
    new_keys = longrope_gguf_keys(arch, factor_set)
    make_folder(out.parent)
    remove_stale_temporaries(out)
    tmp = temporary_sibling(out, folder=False)
    try:
        writer = gguf.GGUFWriter(tmp, arch=arch, endianess=reader.endianess)
        alignment = _field(reader, "general.alignment")
        if alignment is not None:
            writer.data_alignment = alignment
        for field in reader.fields.values():
            name = field.name
            if name.startswith("GGUF.") or name == "general.architecture" or name in new_keys:
                continue
            if name.startswith(f"{arch}.rope.scaling."):
                continue  # any earlier scaling (linear, yarn, ...) is replaced by ours
            vtype = field.types[0]
            sub = field.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
            writer.add_key_value(name, field.contents(), vtype, sub_type=sub)
        for key, (value, tname) in new_keys.items():
            writer.add_key_value(key, value, gguf.GGUFValueType[tname])
        kept = [t for t in reader.tensors if t.name not in _DROPPED_TENSORS]
        factors = _factor_arrays(factor_set)
        for name, arr in factors.items():
            writer.add_tensor_info(name, arr.shape, arr.dtype, arr.nbytes, gguf.GGMLQuantizationType.F32)
        for t in kept:
            writer.add_tensor_info(t.name, t.data.shape, t.data.dtype, t.data.nbytes, t.tensor_type)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        for arr in factors.values():
            writer.write_tensor_data(arr)
        for t in kept:
            writer.write_tensor_data(t.data, tensor_endianess=reader.endianess)
        writer.close()
        _finish(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    for w in warnings:
        log.warning(w)
    return ExportResult(out, tuple(warnings))


# --------------------------------------------------------------------------- HF model -> GGUF
def _permute_rows(t: Any, n_head: int) -> Any:
    """``rotate_half`` row order → llama.cpp's adjacent-pair order, per head (rows i, i+d/2 → 2i, 2i+1)."""
    rows = t.shape[0]
    return t.reshape(n_head, 2, rows // n_head // 2, *t.shape[1:]).swapaxes(1, 2).reshape(t.shape)


def _hparams(writer: Any, config: Any, info: Any, arch: str, warnings: list[str]) -> None:
    heads = int(config.num_attention_heads)
    kv = int(getattr(config, "num_key_value_heads", None) or heads)
    writer.add_embedding_length(int(config.hidden_size))
    writer.add_block_count(int(config.num_hidden_layers))
    writer.add_feed_forward_length(int(config.intermediate_size))
    writer.add_head_count(heads)
    writer.add_head_count_kv(kv)
    writer.add_layer_norm_rms_eps(float(config.rms_norm_eps))
    writer.add_rope_freq_base(float(info.rope_theta))
    writer.add_rope_dimension_count(int(info.rotary_dim))
    writer.add_key_length(int(info.head_dim))
    writer.add_value_length(int(info.head_dim))
    writer.add_vocab_size(int(config.vocab_size))
    window = getattr(config, "sliding_window", None)
    if arch == "phi3" and window:
        writer.add_sliding_window(int(window))
    elif window and getattr(config, "use_sliding_window", True) and int(window) < int(config.max_position_embeddings):
        warnings.append(f"llama.cpp's {arch} architecture has no sliding window; the model's window of {window} "
                        "tokens is not applied")


def _tokenizer_vocab(tokenizer: Any, vocab_size: int, workdir: Path, warnings: list[str]) -> dict | None:
    """Tokens, types, scores and the tokenizer model name for GGUF, or None (tokenizer not convertible)."""
    import gguf

    tokenizer.save_pretrained(workdir)
    tj_path = workdir / "tokenizer.json"
    if tj_path.is_file():
        tj = json.loads(tj_path.read_text(encoding="utf-8"))
        model = tj.get("model", {})
        byte_level = (tj.get("decoder") or {}).get("type") == "ByteLevel"
        if model.get("type") == "BPE" and not model.get("byte_fallback", False) and byte_level:
            return _gpt2_vocab(tokenizer, tj, vocab_size, warnings)
        if model.get("type") == "BPE" and model.get("byte_fallback", False):
            return _vocab_from(gguf.LlamaHfVocab(workdir), "llama", vocab_size, _merge_scores(model))
    if (workdir / "tokenizer.model").is_file():
        return _sentencepiece_vocab(workdir, vocab_size, warnings)
    warnings.append(f"the {type(tokenizer).__name__} tokenizer is not a kind this export converts (byte-level "
                    "BPE, byte-fallback BPE, SentencePiece); the GGUF has no vocabulary")
    return None


def _sentencepiece_vocab(workdir: Path, vocab_size: int, warnings: list[str]) -> dict | None:
    """The vocabulary of ``workdir/tokenizer.model`` with SentencePiece's scores, or None (said in ``warnings``)."""
    import gguf

    try:
        vocab = gguf.SentencePieceVocab(workdir)
    except (ImportError, RuntimeError, TypeError) as e:  # sentencepiece missing
        warnings.append(f"the SentencePiece tokenizer was not converted ({e}); the GGUF has no vocabulary")
        return None
    return _vocab_from(vocab, "llama", vocab_size)


def _merge_scores(model: dict) -> dict[str, float]:
    """Scores of a byte-fallback BPE's pieces for llama.cpp's SentencePiece tokenizer, which joins the adjacent pair
    whose joined piece scores highest: minus the rank of the first merge that makes the piece. The ``gguf`` package's
    ``LlamaHfVocab`` gives every piece -1000, so llama.cpp joined the leftmost pair first: "Anne Elliot was a very
    fine gentleman" was 13 tokens in llama.cpp and 11 in transformers and SentencePiece (battery 29b)."""
    scores: dict[str, float] = {}
    for rank, pair in enumerate(model.get("merges") or []):
        left, right = pair.split(" ", 1) if isinstance(pair, str) else pair
        scores.setdefault(left + right, -float(rank))
    return scores


def _vocab_from(vocab: Any, model_name: str, vocab_size: int, merge_scores: dict[str, float] | None = None) -> dict:
    """The GGUF vocabulary of a ``gguf`` vocab class; ``merge_scores`` (:func:`_merge_scores`) replace its scores, a piece
    no merge makes scoring below every merge."""
    import gguf

    from longrope.data.shards import GGUF_PAD_TOKEN

    floor = min(merge_scores.values(), default=0.0) - 1.0 if merge_scores is not None else 0.0
    tokens, scores, types = [], [], []
    for text, score, ttype in vocab.all_tokens():
        tokens.append(text)
        if merge_scores is not None:
            score = merge_scores.get(text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text, floor)
        scores.append(score)
        types.append(ttype)
    for i in range(len(tokens), vocab_size):
        tokens.append(GGUF_PAD_TOKEN.format(i).encode())
        scores.append(-1000.0)
        types.append(gguf.TokenType.UNUSED)
    return {"model": model_name, "tokens": tokens, "scores": scores, "types": types, "pre": None}


def _gpt2_pre(tj: dict) -> str | None:
    """llama.cpp's pre-tokenizer name for the byte-level BPE pre-tokenizers it shares with HF."""
    pre = tj.get("pre_tokenizer") or {}

    def is_byte_level(p: dict) -> bool:
        return p.get("type") == "ByteLevel" and not p.get("add_prefix_space", False) and p.get("use_regex", True)

    if is_byte_level(pre):
        return "gpt-2"
    parts = pre.get("pretokenizers") if pre.get("type") == "Sequence" else None
    if parts and len(parts) == 2 and parts[0].get("type") == "Digits" and parts[0].get("individual_digits") \
            and is_byte_level(parts[1]):
        return "smollm"  # digits split one by one, then GPT-2's regex (SmolLM's tokenizer)
    return None


def _gpt2_vocab(tokenizer: Any, tj: dict, vocab_size: int, warnings: list[str]) -> dict:
    import gguf

    from longrope.data.shards import GGUF_PAD_TOKEN

    vocab = tokenizer.get_vocab()
    reverse = {i: t for t, i in vocab.items()}
    added = {int(i): tok for i, tok in getattr(tokenizer, "added_tokens_decoder", {}).items()}
    special_ids = set(getattr(tokenizer, "all_special_ids", []) or [])
    size = max(vocab_size, max(reverse) + 1)
    tokens, types = [], []
    for i in range(size):
        if i not in reverse:
            tokens.append(GGUF_PAD_TOKEN.format(i))
            types.append(gguf.TokenType.UNUSED)
        elif i in special_ids or (i in added and getattr(added[i], "special", False)):
            tokens.append(reverse[i])
            types.append(gguf.TokenType.CONTROL)
        elif i in added:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.USER_DEFINED)
        else:
            tokens.append(reverse[i])
            types.append(gguf.TokenType.NORMAL)
    pre = _gpt2_pre(tj)
    if pre is None:
        pre = "default"
        warnings.append("this byte-level BPE pre-tokenizer has no llama.cpp name; wrote 'default': llama.cpp may "
                        "split text differently from transformers (token ids fed directly are unaffected)")
    return {"model": "gpt2", "tokens": tokens, "scores": None, "types": types, "pre": pre}


def _add_vocab(writer: Any, vocab: dict | None, workdir: Path) -> None:
    """The tokenizer keys (``tokenizer.ggml.*``) of :func:`_tokenizer_vocab`'s result; model "none" without one."""
    import gguf

    if vocab is None:
        writer.add_tokenizer_model("none")
        return
    writer.add_tokenizer_model(vocab["model"])
    if vocab["pre"]:
        writer.add_tokenizer_pre(vocab["pre"])
    writer.add_token_list(vocab["tokens"])
    writer.add_token_types(vocab["types"])
    if vocab["scores"] is not None:
        writer.add_token_scores(vocab["scores"])
    pair_notes = logging.getLogger("gguf.vocab")
    pair_notes.addFilter(_no_pair_template_notes)
    try:
        special = gguf.SpecialVocab(workdir, load_merges=vocab["model"] == "gpt2", n_vocab=len(vocab["tokens"]))
    finally:
        pair_notes.removeFilter(_no_pair_template_notes)
    special.add_to_gguf(writer, quiet=True)


def _no_pair_template_notes(record: logging.LogRecord) -> bool:
    """gguf's reader of ``tokenizer.json`` warns of any token between the two sequences of a *pair*
    template ("Unknown separator token '<s>' in TemplateProcessing<pair>" for every Llama-style
    tokenizer); llama.cpp uses that only to encode sentence pairs (rerankers), never for generation or
    perplexity, so the warning is noise on every export of such a tokenizer."""
    return "TemplateProcessing<pair>" not in record.getMessage()


def _add_weights(writer: Any, model: Any, arch: str, outtype: str) -> None:
    """Every weight of ``model`` under its llama.cpp name (a tied ``lm_head`` left out), q/k rows permuted for
    the interleaved architectures, 2-D tensors in f16 when ``outtype`` says so."""
    import gguf
    import torch

    config = model.config
    tied = bool(getattr(config, "tie_word_embeddings", False))
    heads = int(config.num_attention_heads)
    kv_heads = int(getattr(config, "num_key_value_heads", None) or heads)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH[arch.upper()], int(config.num_hidden_layers))
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and tied:
            continue
        gguf_name = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise UserError(f"no GGUF tensor name for {hf_name} in llama.cpp's {arch} architecture")
        data = tensor.detach().to(device="cpu", dtype=torch.float32)
        if arch in _INTERLEAVED_ARCHES and hf_name.endswith(("q_proj.weight", "q_proj.bias")):
            data = _permute_rows(data, heads)
        elif arch in _INTERLEAVED_ARCHES and hf_name.endswith(("k_proj.weight", "k_proj.bias")):
            data = _permute_rows(data, kv_heads)
        arr = data.numpy()
        arr = arr.astype(np.float16) if (outtype == "f16" and arr.ndim >= 2) else np.ascontiguousarray(arr)
        writer.add_tensor(gguf_name, arr)


def _model_name(config: Any) -> str:
    """The GGUF's ``general.name`` for a model loaded from ``config._name_or_path``: a hub id as it is, a local folder
    by its name. The folder's whole absolute path was written: a file made to be shared told where it was made,
    llama.cpp showed the path as the model's name, and transformers read it back into a re-export's config.json
    (battery 23c)."""
    given = str(getattr(config, "_name_or_path", "") or "")
    if given and (os.path.isabs(given) or os.path.exists(given)):
        return Path(given).name
    return given


def export_gguf(
    model: Any,
    tokenizer: Any,
    factor_set: Any,
    out: str | os.PathLike,
    *,
    outtype: str = "f16",
    overwrite: bool = False,
    name: str | None = None,
) -> ExportResult:
    """Write a loaded Hugging Face ``model`` (+ ``tokenizer``) with ``factor_set`` as one GGUF file."""
    import gguf

    from longrope.models.families import inspect_model, require_no_adapters, require_supported

    if outtype not in OUTTYPES:
        raise UserError(f"GGUF weights type must be one of {', '.join(OUTTYPES)}, got {outtype!r}")
    out = output_target(path_argument(out, "export_gguf's out (the .gguf file to write)"))
    check_output_file(out, overwrite)
    require_no_adapters(model, "export_gguf")
    check_loaded_model(model, "export_gguf")  # on the meta device: "Cannot copy out of meta tensor" while writing (battery 23c)
    info = require_supported(inspect_model(model))
    check_export_tokenizer(model, tokenizer, "export_gguf", every_token=True)
    if info.model_type in NO_GGUF_FACTORS:
        raise UserError(no_factors_message(NO_GGUF_FACTORS[info.model_type]))
    longrope_config_entries(factor_set, info)  # validates the set against the model (its caveats are HF's)
    warnings = _common_warnings(factor_set)
    config = model.config
    arch = GGUF_ARCHES[info.model_type]
    make_folder(out.parent)
    remove_stale_temporaries(out)
    tmp = temporary_sibling(out, folder=False)
    # named as the file's own temporary (.{name}.tmp-{pid}-...): an export killed meanwhile (SIGKILL, OOM) left a
    # '.{name}.tok-...' folder that no later export removed, as it carried no pid (battery 23c)
    workdir = temporary_sibling(out, folder=True)
    try:
        writer = gguf.GGUFWriter(tmp, arch=arch)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_name(str(name or _model_name(config) or out.stem))
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if outtype == "f16" else gguf.LlamaFileType.ALL_F32)
        _hparams(writer, config, info, arch, warnings)
        for key, (value, tname) in longrope_gguf_keys(arch, factor_set).items():
            writer.add_key_value(key, value, gguf.GGUFValueType[tname])
        vocab = _tokenizer_vocab(tokenizer, int(config.vocab_size), workdir, warnings) if tokenizer else None
        _add_vocab(writer, vocab, workdir)
        for key, arr in _factor_arrays(factor_set).items():
            writer.add_tensor(key, arr)
        _add_weights(writer, model, arch, outtype)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        _finish(tmp, out, overwrite)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    for w in warnings:
        log.warning(w)
    return ExportResult(out, tuple(warnings))
