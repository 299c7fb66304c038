"""The factor files of :class:`~longrope.rope.FactorSet`: ``factors.json``, the reference code's CSV, and
which format a file is (:func:`load`); a Hugging Face ``config.json`` is read by
:mod:`longrope.formats.hf_config`. Docs: docs/factors-format.md.

``factors.json`` (format_version 1)
-----------------------------------
A JSON object; :meth:`FactorSet.save` always writes every key below, in this order::

    {
      "format_version": 1,
      "method": "longrope",              # how the factors were made: "pi", "yarn", "longrope", ...
      "rope_theta": 10000.0,             # rope base b
      "original_max_position_embeddings": 4096,   # L
      "max_position_embeddings": 131072,          # L'  (scale s = L'/L)
      "rotary_dim": 96,                  # informational: 2 * len(long_factor); checked on load
      "start_tokens": 0,                 # n̂: positions p < n̂ keep the original angles
      "attention_factor": null,          # number, or null = sqrt(1 + ln s / ln L) (1 when s <= 1)
      "long_factor": [1.0, ...],         # d/2 numbers λ_i > 0, used when the sequence exceeds L
      "short_factor": [1.0, ...],        # d/2 numbers, used when the sequence fits in L
      "provenance": {...}                # free-form JSON object: command, options, fitness, dates
    }

On load, ``long_factor``, ``rope_theta``, ``original_max_position_embeddings`` and
``max_position_embeddings`` are required; ``short_factor`` defaults to ones, ``start_tokens`` to 0,
``attention_factor`` to null, ``method`` to "custom", ``provenance`` to {}; ``format_version``
must be 1 when present. Unknown keys are rejected (a misspelt "start_token" must not silently
mean n̂ = 0). Numbers must be JSON numbers (no strings, no booleans, no NaN/Infinity).

Every :class:`FactorSet` is usable as built (``__post_init__``): L' ≥ L (a factor set extends the
context; L' < L is refused), lengths and n̂ at most 2^40, factors finite and > 0 with finite,
positive rescaled frequencies ``θ_i/λ_i``. Files are UTF-8 (a byte-order mark is allowed and
ignored). Any problem with a file, whatever its bytes, is a one-line :class:`UserError`.

:meth:`FactorSet.load` also reads a Hugging Face ``config.json`` whose ``rope_scaling`` (4.x) or
``rope_parameters`` (5.x) has ``rope_type``/``type`` "longrope" (or the early Phi-3 name "su"),
and the reference code's CSV (one λ per line, long factors only). See docs/factors-format.md.
"""

from __future__ import annotations

import copy
import csv
import io
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from longrope.errors import UserError
from longrope.formats.hf_config import longrope_fields
from longrope.io import (
    decode_text,
    loads_record,
    os_error_words,
    path_argument,
    read_regular,
    write_json,
    write_text,
)
from longrope.rope.values import (
    FORMAT_VERSION,
    RotaryDimMismatch,
    check_list_lengths,
    factor_array,
    short_repr,
)

__all__ = ["FILE_KEYS", "FORMAT_VERSION", "REQUIRED_KEYS", "csv_fields", "factor_file", "run_record_command", "from_json", "load", "save_csv",
           "save_json", "to_json"]

T = TypeVar("T")

FILE_KEYS = (
    "format_version",
    "method",
    "rope_theta",
    "original_max_position_embeddings",
    "max_position_embeddings",
    "rotary_dim",
    "start_tokens",
    "attention_factor",
    "long_factor",
    "short_factor",
    "provenance",
)
REQUIRED_KEYS = ("long_factor", "rope_theta", "original_max_position_embeddings", "max_position_embeddings")


# --------------------------------------------------------------------- factors.json
def to_json(fs: Any) -> dict[str, Any]:
    """The ``factors.json`` object of a factor set (plain Python types; floats round-trip exactly through JSON)."""
    return {
        "format_version": FORMAT_VERSION,
        "method": fs.method,
        "rope_theta": fs.rope_theta,
        "original_max_position_embeddings": fs.original_max_position_embeddings,
        "max_position_embeddings": fs.max_position_embeddings,
        "rotary_dim": fs.rotary_dim,
        "start_tokens": fs.start_tokens,
        "attention_factor": fs.attention_factor,
        "long_factor": [float(x) for x in fs.long_factor],
        "short_factor": [float(x) for x in fs.short_factor],
        "provenance": copy.deepcopy(fs.provenance),  # the caller's to edit: it was the set's own (battery 29a)
    }


def from_json(make: Callable[..., T], d: Mapping[str, Any], *, rotary_dim: int | None = None) -> T:
    """``make(**fields)`` (the FactorSet class) of a ``factors.json`` object; any problem → :class:`UserError`
    naming the key. ``rotary_dim``: the model's, when known: a list of another length is a
    :class:`RotaryDimMismatch` naming that list. Without it, the file's own ``rotary_dim`` names the list
    that was cut when the two lists differ."""
    if not isinstance(d, Mapping):
        raise UserError(f"a factor file must hold a JSON object, got {type(d).__name__}")
    unknown = sorted(set(d) - set(FILE_KEYS))
    if unknown:
        raise UserError(
            f"unknown key(s) {', '.join(map(repr, unknown))} in factor file; known: {', '.join(FILE_KEYS)}"
        )
    missing = [k for k in REQUIRED_KEYS if k not in d]
    if missing:
        raise UserError(f"factor file is missing required key(s): {', '.join(missing)}")
    version = d.get("format_version", FORMAT_VERSION)
    if isinstance(version, bool) or not isinstance(version, int):  # '1' was "unsupported '1'; this longrope reads 1"
        raise UserError(f"format_version must be the integer {FORMAT_VERSION}, got {short_repr(version)}")
    if version != FORMAT_VERSION:
        raise UserError(
            f"unsupported factor file format_version {version!r}; this longrope reads {FORMAT_VERSION}"
        )
    check_list_lengths(d, rotary_dim, "the model's rotary dim", error=RotaryDimMismatch)
    long_raw, short_raw = d.get("long_factor"), d.get("short_factor")
    if (isinstance(long_raw, (list, tuple)) and isinstance(short_raw, (list, tuple))
            and len(long_raw) != len(short_raw)):
        check_list_lengths(d, d.get("rotary_dim"), "the file's rotary_dim")
    fs = make(
        long_factor=d["long_factor"],
        short_factor=d.get("short_factor"),
        start_tokens=d.get("start_tokens", 0),
        attention_factor=d.get("attention_factor"),
        original_max_position_embeddings=d["original_max_position_embeddings"],
        max_position_embeddings=d["max_position_embeddings"],
        rope_theta=d["rope_theta"],
        method=d.get("method", "custom"),
        # null means absent (docs/factors-format.md: a JSON object, default {}); [], 0, false, "" are no object
        provenance={} if d.get("provenance") is None else d["provenance"],
    )
    dim = d.get("rotary_dim")
    if "rotary_dim" in d and (isinstance(dim, bool) or not (isinstance(dim, int) or (
            isinstance(dim, float) and dim.is_integer()))):  # as the lengths are read: 64.0 is 64
        raise UserError(f"rotary_dim must be an integer, got {short_repr(d['rotary_dim'])}")
    if "rotary_dim" in d and d["rotary_dim"] != fs.rotary_dim:
        raise UserError(
            f"rotary_dim {d['rotary_dim']!r} does not match long_factor ({fs.long_factor.size} values → {fs.rotary_dim})"
        )
    return fs


def _named_as(path: Path) -> str | None:
    """The format :func:`load` reads a file of this name as, by its suffix alone: "csv", "json", or None (then the
    content decides). The one rule of the loader and of both writers."""
    return {".csv": "csv", ".json": "json"}.get(path.suffix.lower())


def _check_written_as(path: Any, fmt: str) -> Path:
    """``path`` as a Path when a file written there in ``fmt`` is read back as ``fmt``: save('f.csv') wrote JSON that
    FactorSet.load('f.csv') then read as a reference CSV ("'{' is not a number"), save_csv('f.json') a CSV it read as
    broken JSON (battery 19)."""
    path = path_argument(path, f"the factor file to write ({fmt})")
    named = _named_as(path)
    if named is not None and named != fmt:
        raise UserError(f"{path} ends in {path.suffix}, so it would be read back as {named.upper()}, not the "
                        f"{fmt.upper()} written; give a name ending in .{fmt}")
    return path


def save_json(fs: Any, path: str | os.PathLike) -> Path:
    """Write ``factors.json`` atomically (a killed process never leaves half a file)."""
    path = _check_written_as(path, "json")
    try:
        json.dumps(fs.provenance, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UserError(f"provenance is not JSON-serialisable: {e}") from None
    return write_json(path, to_json(fs))


# --------------------------------------------------------------------- reference CSV
def save_csv(fs: Any, path: str | os.PathLike) -> Path:
    """Write ``long_factor`` in the reference code's CSV (one λ per line; everything else is lost)."""
    path = _check_written_as(path, "csv")
    return write_text(path, "".join(f"{float(x)!r}\n" for x in fs.long_factor))


def csv_fields(
    path: str | os.PathLike,
    *,
    rope_theta: float,
    original_length: int,
    target_length: int,
    method: str = "longrope",
    start_tokens: int = 0,
    rotary_dim: int | None = None,
) -> dict[str, Any]:
    """The FactorSet fields of the reference code's CSV (one λ per line → ``long_factor``; short factors
    are ones). The CSV carries no lengths or base, so they must be given. Blank lines and ``#`` comments
    are skipped; a row with several numbers (the per-layer 32×64 variant) is rejected."""
    path = path_argument(path, "a factor CSV")  # the one check of a path argument (a number was Path()'s TypeError)
    values = _parse_csv_column(_read_text(path, "factor CSV"), str(path))
    check_list_lengths({"long_factor": list(values)}, rotary_dim, "the model's rotary dim", prefix=f"{path}: ",
                       error=RotaryDimMismatch)
    return dict(
        long_factor=values,
        start_tokens=start_tokens,
        original_max_position_embeddings=original_length,
        max_position_embeddings=target_length,
        rope_theta=rope_theta,
        method=method,
        provenance={"source": str(path), "format": "reference-csv"},
    )


# --------------------------------------------------------------------- any file
class CsvWithoutLengths(UserError):
    """A reference CSV read without the values it does not hold (``missing``: rope_theta, original_length,
    target_length). A command that has a flag for the target length names it
    (:func:`longrope.models.factor_files.load_factors_for`); the message here is right where none has: it named
    ``--rope-theta`` (no command has it) and ``--target-length`` to finetune (which has none) and to search
    (whose --target-length is not the base file's L'; battery 12a)."""

    def __init__(self, path: Path, missing: list[str]) -> None:
        self.path, self.missing = path, missing
        words = {"rope_theta": "the rope base", "original_length": "the trained length L",
                 "target_length": "the target length L'"}
        super().__init__(
            f"{path} is a reference-code CSV: long factors only, without {', '.join(words[m] for m in missing)}; "
            f"use a factors.json here (`longrope export --model MODEL --factors {path} --target-length N -o DIR` "
            "writes one as DIR/factors.json; in Python: FactorSet.load(path, rope_theta=..., original_length=..., "
            "target_length=...))")


def load(
    make: Callable[..., T],
    path: str | os.PathLike,
    *,
    rope_theta: float | None = None,
    original_length: int | None = None,
    target_length: int | None = None,
    rotary_dim: int | None = None,
) -> T:
    """``factors.json``, a Hugging Face ``config.json`` with longrope scaling, or a reference CSV, as
    ``make(**fields)``; see :meth:`longrope.rope.FactorSet.load`."""
    path = factor_file(path)
    text = _read_text(path, "factor file")
    stripped = text.lstrip()
    # a .json file is JSON (one starting with a // comment was read as a CSV: "'// yarn' is not a number")
    if _named_as(path) == "csv" or (stripped and stripped[0] not in "{[" and _named_as(path) != "json"):
        missing = [name for name, v in (("rope_theta", rope_theta), ("original_length", original_length),
                                        ("target_length", target_length)) if v is None]
        if missing:
            raise CsvWithoutLengths(path, missing)
        return make(**csv_fields(
            path, rope_theta=rope_theta, original_length=original_length, target_length=target_length,
            rotary_dim=rotary_dim,
        ))
    obj = _parse_json(text, path)
    if not isinstance(obj, dict):
        raise UserError(f"{path} must hold a JSON object, got {type(obj).__name__}")
    if "long_factor" in obj:
        try:
            fs = from_json(make, obj, rotary_dim=rotary_dim)
        except UserError as e:  # name the file the problem is in (keeping a mismatch a mismatch)
            raise (RotaryDimMismatch if isinstance(e, RotaryDimMismatch) else UserError)(f"{path}: {e}") from None
    elif "rope_scaling" in obj or "rope_parameters" in obj:
        fs = make(**longrope_fields(obj, source=str(path), rotary_dim=rotary_dim))
    else:
        raise UserError(
            f"{path} is neither a factors.json (no 'long_factor') nor a Hugging Face config.json "
            "(no 'rope_scaling'/'rope_parameters')"
        )
    return fs


# --------------------------------------------------------------------- reading files
def factor_file(path: str | os.PathLike) -> Path:
    """The file a factor path names: itself, or a folder's ``factors.json`` (else its ``config.json``) —
    what :func:`load` reads, and what a fingerprint of the factors' content must hash."""
    if isinstance(path, str) and not path.strip():  # Path('') is '.': --factors '' read the current folder
        raise UserError(f"the factor file name {path!r} is empty; give a factors.json, a model's config.json with "
                        "longrope scaling, a reference CSV or a folder holding one")
    path = path_argument(path, "a factor file (factors.json, a model's config.json, a reference CSV or a folder)")
    if path.is_dir():
        for name in ("factors.json", "config.json"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise UserError(_no_factors_in(path))
        if path.name == "config.json" and run_record_command(path):  # e.g. a fine-tuning or eval run folder
            if run_record_command(path) == "a search":  # "give ... a search run folder" of one: its fix is to finish it
                raise UserError(f"{path.parent} is a search run folder without factors.json (a search writes it when "
                                f"it ends): finish it with 'longrope search --config {path.parent} --resume', or give "
                                "another factor file")
            raise UserError(f"{path.parent} is {run_record_command(path)} run folder without factors.json; give "
                            "a factor file, a search run folder or a fine-tuned model folder (its model/)")
    return path


def applied_by_its_config(path: Path, long_factor: Any) -> bool:
    """Whether ``path`` is a model folder's ``factors.json`` whose ``config.json`` beside it applies ``long_factor``
    (the longrope scaling ``longrope export`` writes): that folder's runtimes apply the set as made at every length."""
    config = path.with_name("config.json")
    if path.name != "factors.json" or not config.is_file():
        return False
    from longrope.formats.hf_config import rope_parameters
    from longrope.io import read_json

    try:
        params = rope_parameters(read_json(config, what="config.json"))
        written = np.asarray((params or {}).get("long_factor"), dtype=np.float64)
    except (UserError, TypeError, ValueError):
        return False
    return written.shape == np.shape(long_factor) and bool(np.array_equal(written, np.asarray(long_factor)))


def _no_factors_in(folder: Path) -> str:
    """Why a folder given as factors holds none, and what to give instead (it said only "is a folder without
    factors.json or config.json": no fix, and false of a factors.json that is a broken link)."""
    broken = [folder / n for n in ("factors.json", "config.json") if (folder / n).is_symlink()]
    if broken:
        return f"{broken[0]} is a broken link (its target does not exist); fix the link or give the factor file itself"
    files = sorted(p.name for p in folder.iterdir() if p.suffix.lower() in (".json", ".csv") and p.is_file())
    if files:
        return (f"{folder} is a folder without factors.json or config.json; give its factor files themselves "
                f"(e.g. {folder / files[0]})")
    return (f"{folder} is a folder without factors.json or config.json; give a factor file, a search run folder or "
            "a model folder")


def run_record_command(path: Path) -> str | None:
    """'a finetune' when ``path`` is the config.json of a longrope run folder (of that command), else None."""
    from longrope.io import read_json

    try:
        doc = read_json(path, what="run configuration")
    except UserError:
        return None
    command = doc.get("command") if doc.get("format") == "longrope-run/1" else None
    return f"{'an' if str(command)[:1] in 'aeiou' else 'a'} {command}" if isinstance(command, str) else None


#: the largest factor file read (a 128k-context model's config.json is a few kB; the factors of rotary dim 512
#: in CSV text under 100 kB): a model file named by mistake is not read whole into memory
MAX_FACTOR_FILE_BYTES = 16 << 20


def _read_text(path: Path, what: str) -> str:
    """A file's text as UTF-8; a byte-order mark is dropped (editors on Windows write one). A file of more than
    :data:`MAX_FACTOR_FILE_BYTES` or binary data (a GGUF or weights file named by mistake) is no factor file: it
    was read whole (a 1 GB file took 2.4 GB of memory, a model's GGUF all of it) and called a reference CSV."""
    try:
        data = read_regular(path, limit=MAX_FACTOR_FILE_BYTES)  # a pipe or device: refused, never waited on
    except (OSError, ValueError) as e:  # ValueError: a NUL byte in the path
        raise UserError(f"cannot read {what} {path}: {os_error_words(e)}") from None
    utf16 = data[:2] in (b"\xff\xfe", b"\xfe\xff")  # text all the same: said below to be saved as UTF-8
    kind = ("a GGUF model file" if data[:4] == b"GGUF" else "binary data" if b"\0" in data[:4096] and not utf16
            else f"more than {MAX_FACTOR_FILE_BYTES:,} bytes" if len(data) > MAX_FACTOR_FILE_BYTES else None)
    if kind:
        raise UserError(f"{path} is not a {what} ({kind}); give a factors.json, a model's config.json with longrope "
                        "scaling or a reference CSV")
    try:
        return decode_text(data, path)
    except ValueError as e:
        raise UserError(f"{what} {path} is {e}") from None


def _parse_json(text: str, path: Path) -> Any:
    # NaN/Infinity literals parse (to floats) so that the field check can name the key they sit in.
    try:
        return loads_record(text)
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON (line {e.lineno}: {e.msg})") from None
    except (ValueError, RecursionError) as e:  # a number too long to parse, nesting too deep
        raise UserError(f"{path} is not a usable JSON file ({str(e).splitlines()[0][:80] or type(e).__name__})") from None


def _parse_csv_column(text: str, source: str) -> np.ndarray:
    values: list[float] = []
    try:
        rows = list(csv.reader(io.StringIO(text)))
    except csv.Error as e:
        raise UserError(f"{source} is not a readable CSV ({e})") from None
    for lineno, row in enumerate(rows, start=1):
        cells = [c.strip() for c in row if c.strip()]
        if not cells or cells[0].startswith("#"):
            continue
        if len(cells) > 1:
            raise UserError(
                f"{source}:{lineno} has {len(cells)} values; only the one-λ-per-line CSV is supported "
                "(not the per-layer variant)"
            )
        try:
            values.append(float(cells[0]))
        except ValueError:
            raise UserError(f"{source}:{lineno}: {short_repr(cells[0])} is not a number") from None
    if not values:
        raise UserError(f"{source} holds no factors")
    return factor_array(values, f"{source}: factor")
