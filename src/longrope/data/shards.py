"""Token shards on disk: the format, the writer and the memory-mapped reader.

A shard folder holds

- ``shard-00000.bin`` … : raw token ids, little-endian ``uint16`` when every id fits (vocabulary
  ≤ 65,536), else ``uint32``, documents back to back (a document never spans two shards);
- ``index.npy``: one row per document, ``(shard, offset, length, role)``; ``role`` is 0 (decided
  by the hash split), 1 (pinned to search) or 2 (pinned to held-out);
- ``names.jsonl``: one JSON string per line, the stable document id of each row;
- ``meta.json`` (written last, atomically): the tokenizer's name and the SHA-256 of its
  vocabulary, the dtype, counts, the special-token policy, every file's size and SHA-256, a
  cheap *sample* SHA-256 per shard, the inputs' fingerprint, and the files skipped.

No special tokens are stored: evaluation decides whether to prepend BOS.

Verification on open (:meth:`TokenCorpus.open`): file sizes always; ``verify="sample"``
(default) also hashes ≤ 1 MiB per shard (16 blocks of 64 KiB spread over the file, or the whole
of a small file) — this catches truncation, padding and most corruption in milliseconds;
``verify="full"`` hashes every byte. A mismatch is a :class:`UserError` that names the file and
says to re-run ``longrope tokenize``.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import write_json

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "INDEX_DTYPE",
    "ROLE_CODES",
    "TokenCorpus",
    "ShardWriter",
    "vocab_sha256",
    "token_dtype",
    "sample_sha256",
    "file_sha256",
]

FORMAT = "longrope-token-shards"
FORMAT_VERSION = 1
INDEX_DTYPE = np.dtype([("shard", "<u4"), ("offset", "<u8"), ("length", "<u8"), ("role", "u1")])
ROLE_CODES = {None: 0, "search": 1, "heldout": 2}
ROLE_NAMES = {v: k for k, v in ROLE_CODES.items()}
SPECIAL_TOKEN_POLICY = ("none stored: documents are encoded with add_special_tokens=False; "
                        "evaluation prepends BOS itself")
_SAMPLE_BLOCKS = 16
_SAMPLE_BLOCK = 1 << 16


def vocab_sha256(tokenizer: Any) -> str:
    """SHA-256 of the tokenizer's token→id map (added tokens included), order-independent.

    Two tokenizers with the same hash give every token the same id, which is what shards and
    a model must agree on.
    """
    vocab = tokenizer.get_vocab()
    blob = json.dumps(sorted(vocab.items(), key=lambda kv: (kv[1], kv[0])), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def token_dtype(tokenizer: Any) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    vocab = tokenizer.get_vocab()
    top = max(max(vocab.values(), default=0) + 1, len(tokenizer))
    return np.dtype("<u2") if top <= 1 << 16 else np.dtype("<u4")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def sample_sha256(path: Path, size: int | None = None) -> str:
    """SHA-256 of ≤ 16 blocks of 64 KiB at evenly spaced offsets (the whole file if small).

    The first and last blocks are always included, so truncation or appended bytes show even
    before the size check; the file size is mixed in too.
    """
    size = path.stat().st_size if size is None else size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        if size <= _SAMPLE_BLOCKS * _SAMPLE_BLOCK:
            h.update(f.read())
        else:
            span = size - _SAMPLE_BLOCK
            for k in range(_SAMPLE_BLOCKS):
                f.seek(span * k // (_SAMPLE_BLOCKS - 1))
                h.update(f.read(_SAMPLE_BLOCK))
    return h.hexdigest()


class ShardWriter:
    """Append documents' token arrays to shards in ``folder``; hashes as it writes.

    ``finish()`` writes ``index.npy`` and ``names.jsonl`` and returns the file records for
    ``meta.json`` (the caller writes that, last). Memory: one open file and the index rows.
    """

    def __init__(self, folder: Path, dtype: np.dtype, shard_tokens: int = 1 << 27):
        if shard_tokens < 1:
            raise UserError(f"shard_tokens must be positive, got {shard_tokens}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.dtype = np.dtype(dtype)
        self.shard_tokens = int(shard_tokens)
        self.shards: list[dict] = []
        # Index rows go to a raw file in blocks, so memory stays flat however many documents.
        self._rows: list[tuple[int, int, int, int]] = []
        self._index_raw = open(self.folder / "index.raw", "wb")
        self.n_docs = 0
        self._names = open(self.folder / "names.jsonl", "w", encoding="utf-8")
        self._f = None
        self._hash = None
        self._pos = 0
        self.n_tokens = 0
        self._limit = np.iinfo(self.dtype).max

    def _open_next(self) -> None:
        self._close_current()
        name = f"shard-{len(self.shards):05d}.bin"
        self._f = open(self.folder / name, "wb")
        self._hash = hashlib.sha256()
        self._pos = 0
        self.shards.append({"file": name})

    def _close_current(self) -> None:
        if self._f is None:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        rec = self.shards[-1]
        path = self.folder / rec["file"]
        size = path.stat().st_size
        rec.update(n_tokens=self._pos, bytes=size, sha256=self._hash.hexdigest(),
                   sample_sha256=sample_sha256(path, size))
        self._f = None

    def add(self, name: str, ids: np.ndarray, role: str | None = None) -> None:
        ids = np.asarray(ids)
        if ids.size and (int(ids.max()) > self._limit or int(ids.min()) < 0):
            raise ValueError(f"token id out of range for {self.dtype} in document {name}")
        if self._f is None or (self._pos > 0 and self._pos + len(ids) > self.shard_tokens):
            self._open_next()
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._f.write(data)
        self._hash.update(data)
        self._rows.append((len(self.shards) - 1, self._pos, len(ids), ROLE_CODES[role]))
        if len(self._rows) >= 1 << 16:
            self._flush_rows()
        self._names.write(json.dumps(name, ensure_ascii=False) + "\n")
        self._pos += len(ids)
        self.n_tokens += len(ids)
        self.n_docs += 1

    def _flush_rows(self) -> None:
        if self._rows:
            self._index_raw.write(np.array(self._rows, dtype=INDEX_DTYPE).tobytes())
            self._rows = []

    def abort(self) -> None:
        """Close open files without writing the index (the caller removes the folder)."""
        if self._f is not None:
            self._f.close()
            self._f = None
        self._names.close()
        self._index_raw.close()

    def finish(self) -> dict:
        self._close_current()
        self._names.close()
        self._flush_rows()
        self._index_raw.close()
        raw = self.folder / "index.raw"
        index = np.memmap(raw, dtype=INDEX_DTYPE, mode="r") if self.n_docs else np.zeros(0, INDEX_DTYPE)
        np.save(self.folder / "index.npy", index)  # streams from the map, no in-memory copy
        del index
        raw.unlink()
        files = {}
        for key, fname in (("index", "index.npy"), ("names", "names.jsonl")):
            p = self.folder / fname
            files[key] = {"file": fname, "bytes": p.stat().st_size, "sha256": file_sha256(p)}
        return {"shards": self.shards, **files}


@dataclass
class TokenCorpus:
    """A shard folder opened for reading; documents are zero-copy memory-mapped views."""

    path: Path
    meta: dict
    index: np.ndarray
    names: list[str]
    _maps: dict

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: str = "sample") -> TokenCorpus:
        """Open and check a shard folder (``verify``: ``"size"``, ``"sample"`` or ``"full"``)."""
        if verify not in ("size", "sample", "full"):
            raise UserError(f"verify must be 'size', 'sample' or 'full', got {verify!r}")
        path = Path(path)
        meta_path = path / "meta.json"
        if not path.is_dir():
            raise UserError(f"{path}: no such shard folder; create one with 'longrope tokenize'")
        if not meta_path.is_file():
            raise UserError(f"{path}: no meta.json (not a shard folder, or tokenization did not finish); "
                            f"run 'longrope tokenize ... -o {path}'")
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{meta_path}: corrupt metadata ({exc}); re-run 'longrope tokenize'") from None
        if meta.get("format") != FORMAT or meta.get("version") != FORMAT_VERSION:
            raise UserError(f"{path}: not a version-{FORMAT_VERSION} {FORMAT} folder "
                            f"(format {meta.get('format')!r} version {meta.get('version')!r}); re-run 'longrope tokenize'")
        _check_file(path, meta["index"], "full")
        _check_file(path, meta["names"], "full")
        for rec in meta["shards"]:
            _check_file(path, rec, verify)
        index = np.load(path / "index.npy", mmap_mode="r")
        with open(path / "names.jsonl", encoding="utf-8") as f:
            names = [json.loads(line) for line in f]
        if len(index) != meta["n_docs"] or len(names) != meta["n_docs"]:
            raise UserError(f"{path}: index has {len(index)} rows and {len(names)} names but meta.json says "
                            f"{meta['n_docs']} documents; re-run 'longrope tokenize'")
        return cls(path, meta, index, names, {})

    def verify(self, level: str = "full") -> None:
        """Re-check every shard now (``"full"`` hashes every byte)."""
        for rec in self.meta["shards"]:
            _check_file(self.path, rec, level)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.meta["dtype"])

    def __len__(self) -> int:
        return len(self.index)

    @property
    def lengths(self) -> np.ndarray:
        return self.index["length"].astype(np.int64)

    @property
    def n_tokens(self) -> int:
        return int(self.meta["n_tokens"])

    def pinned_role(self, i: int) -> str | None:
        return ROLE_NAMES[int(self.index["role"][i])]

    def _shard(self, k: int) -> np.ndarray:
        m = self._maps.get(k)
        if m is None:
            rec = self.meta["shards"][k]
            if rec["n_tokens"] == 0:
                m = np.zeros(0, self.dtype)
            else:
                m = np.memmap(self.path / rec["file"], dtype=self.dtype, mode="r", shape=(rec["n_tokens"],))
            self._maps[k] = m
        return m

    def tokens(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``start:stop`` of document ``i`` (a read-only memory-mapped view)."""
        row = self.index[i]
        n = int(row["length"])
        stop = n if stop is None else min(stop, n)
        off = int(row["offset"])
        return self._shard(int(row["shard"]))[off + start : off + stop]

    def check_tokenizer(self, tokenizer: Any, *, model_name: str | None = None) -> None:
        """Raise a UserError when ``tokenizer`` is not the one the shards were made with."""
        want = self.meta["tokenizer"]["vocab_sha256"]
        have = vocab_sha256(tokenizer)
        if have != want:
            who = f"the model {model_name!r}" if model_name else "this tokenizer"
            raise UserError(f"{self.path} was tokenized with {self.meta['tokenizer']['name']!r} but {who} has a "
                            f"different vocabulary (sha256 {have[:12]} ≠ {want[:12]}); re-run 'longrope tokenize "
                            f"--tokenizer <the model>' for this model")

    @property
    def tokenizer_info(self) -> dict:
        return self.meta["tokenizer"]


def _check_file(folder: Path, rec: dict, level: str) -> None:
    p = folder / rec["file"]
    hint = "re-run 'longrope tokenize' (add --force) to rebuild it"
    if not p.is_file():
        raise UserError(f"{p}: missing shard-folder file; {hint}")
    size = p.stat().st_size
    if size != rec["bytes"]:
        state = "truncated" if size < rec["bytes"] else "longer than recorded"
        raise UserError(f"{p}: {state} ({size} bytes, meta.json records {rec['bytes']}); {hint}")
    if level == "sample" and "sample_sha256" in rec:
        if sample_sha256(p, size) != rec["sample_sha256"]:
            raise UserError(f"{p}: corrupted (checksum of sampled blocks differs from meta.json); {hint}")
    elif level == "full" or (level == "sample" and "sample_sha256" not in rec):
        if file_sha256(p) != rec["sha256"]:
            raise UserError(f"{p}: corrupted (SHA-256 differs from meta.json); {hint}")


def write_meta(folder: Path, meta: dict) -> None:
    write_json(Path(folder) / "meta.json", meta)
