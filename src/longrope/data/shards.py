"""Token shards on disk: the format, the writer and the reader.

A shard folder holds

- ``shard-00000.bin`` … : raw token ids, little-endian ``uint16`` when every id fits (vocabulary
  ≤ 65,536), else ``uint32``, documents back to back (a document never spans two shards);
- ``index.npy``: one row per document, ``(shard, offset, length, role)``; ``role`` is 0 (decided
  by the hash split), 1 (pinned to search) or 2 (pinned to held-out); a plain structured array
  (loaded with ``allow_pickle=False``);
- ``names.jsonl``: one JSON string per line, the stable document id of each row;
- ``meta.json`` (written last, atomically): the tokenizer's name and the SHA-256 of its
  vocabulary, the dtype, counts, the special-token policy, every file's size and SHA-256, a
  cheap *sample* SHA-256 per shard, the SHA-256 of every ``block_bytes`` (1 MiB) block of every
  shard, the inputs' fingerprint, and the files skipped.

No special tokens are stored: evaluation decides whether to prepend BOS.

**No token is used unverified.** :meth:`TokenCorpus.tokens` checks the blocks a read touches
against their recorded SHA-256 each time they are read (the bytes hashed are the bytes returned:
a shard rewritten while a command reads it is noticed), and raises a :class:`UserError`
naming the file and byte offset on a mismatch. Folders written before per-block sums existed
are still read: the first read from such a shard hashes the whole shard against its recorded
SHA-256. Measured cost: ``bench/results/shard_verify.md``.

Checks on open (:meth:`TokenCorpus.open`), before any long work: file sizes and the index always
(``index.npy`` and ``names.jsonl`` are hashed in full, and every index row must lie inside its
shard); ``verify="sample"`` (default) also hashes ≤ 1 MiB per shard (16 blocks of 64 KiB spread
over the file, or the whole of a small file), which catches truncation, padding and most
corruption in milliseconds; ``verify="full"`` hashes every byte now (the reads still hash what
they read). A mismatch is a :class:`UserError` that names the file and says to re-run
``longrope tokenize``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import (
    check_no_link_loop,
    file_sha256,
    is_record_of,
    open_regular,
    os_error_words,
    path_argument,
    path_kind,
    read_json,
    write_json,
)

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
    "BLOCK_BYTES",
    "content_hash",
]

FORMAT = "longrope-token-shards"
FORMAT_VERSION = 1
INDEX_DTYPE = np.dtype([("shard", "<u4"), ("offset", "<u8"), ("length", "<u8"), ("role", "u1")])
ROLE_CODES = {None: 0, "search": 1, "heldout": 2, "train": 3}
ROLE_NAMES = {v: k for k, v in ROLE_CODES.items()}
SPECIAL_TOKEN_POLICY = ("none stored: documents are encoded with add_special_tokens=False, a special token's "
                        "spelling in their text as its characters; evaluation prepends BOS itself")
_SAMPLE_BLOCKS = 16


def content_hash(tokens: np.ndarray) -> str:
    """Hash of a document's token ids (as little-endian uint32, so uint16 and uint32 shards agree): what "the same
    content" means for tokenize's role check and fine-tuning's leak check."""
    return hashlib.blake2b(np.asarray(tokens, dtype="<u4").tobytes(), digest_size=16).hexdigest()
_SAMPLE_BLOCK = 1 << 16
#: Bytes per checksummed block of a shard (a multiple of every token size). 1 MiB: one block
#: holds 512 Ki uint16 tokens, so reading a few long windows hashes only a few MiB, and the
#: per-block digests of a 100M-token shard take ~13 KB of meta.json.
BLOCK_BYTES = 1 << 20
_TOKEN_DTYPES = ("uint16", "uint32")


#: The token a GGUF writer puts in each unused slot of its token list (``[PAD{id}]``, UNUSED, as llama.cpp's
#: converter does) when the model has more embeddings than its tokenizer has tokens.
GGUF_PAD_TOKEN = "[PAD{}]"


def recorded_vocab_hashes(tokenizer: Any) -> tuple[str, ...]:
    """The vocabulary hashes a record made with ``tokenizer`` may carry: :func:`vocab_sha256` now, and for a GGUF
    with ``[PAD{id}]`` slots the hash that counted them, which shards and RULER samples made from it before
    recorded (one rule for every reader of a recorded hash)."""
    now, before = vocab_sha256(tokenizer), vocab_sha256(tokenizer, pad_slots=True)
    return (now,) if before == now else (now, before)


def vocab_sha256(tokenizer: Any, *, pad_slots: bool = False) -> str:
    """SHA-256 of the tokenizer's token→id map (added tokens included), order-independent.

    Two tokenizers with the same hash give every token the same id, which is what shards and
    a model must agree on. The ``[PAD{id}]`` placeholders of a GGUF's unused slots are left out (no text
    encodes to them): a GGUF exported from a folder has the folder's hash, so the folder's shards serve it
    (they were refused as "a different vocabulary", battery 27c); ``pad_slots`` keeps them, the hash shards
    made from such a GGUF before recorded.
    """
    vocab = tokenizer.get_vocab()
    items = vocab.items() if pad_slots else [(t, i) for t, i in vocab.items() if t != GGUF_PAD_TOKEN.format(i)]
    blob = json.dumps(sorted(items, key=lambda kv: (kv[1], kv[0])), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def encoding_sha256(tokenizer: Any) -> str | None:
    """SHA-256 of how the tokenizer turns text into ids: its backend's whole definition (normalizer, pre-tokenizer,
    merges, vocabulary), None for a tokenizer without a Rust backend. Two tokenizers of one vocabulary can encode a
    text apart (a normalizer or a merge changed, ``legacy`` spacing): tokenize's up-to-date check knew only the
    vocabulary, and kept shards encoded by a tokenizer that was replaced (battery 28b)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    to_str = getattr(backend, "to_str", None)
    if to_str is None:
        return None
    return hashlib.sha256(to_str().encode("utf-8")).hexdigest()


def token_dtype(tokenizer: Any) -> np.dtype:
    """uint16 when every id fits in 16 bits, else uint32."""
    vocab = tokenizer.get_vocab()
    top = max(max(vocab.values(), default=0) + 1, len(tokenizer))
    return np.dtype("<u2") if top <= 1 << 16 else np.dtype("<u4")




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
        self._block_hash = None
        self._block_fill = 0
        self._blocks: list[str] = []
        self._pos = 0
        self.n_tokens = 0
        self.max_token_id: int | None = None  # the largest id written (None: none yet)
        self._limit = np.iinfo(self.dtype).max

    def _open_next(self) -> None:
        self._close_current()
        name = f"shard-{len(self.shards):05d}.bin"
        self._f = open(self.folder / name, "wb")
        self._hash = hashlib.sha256()
        self._block_hash = hashlib.sha256()
        self._block_fill = 0
        self._blocks = []
        self._pos = 0
        self.shards.append({"file": name})

    def _hash_blocks(self, data: bytes) -> None:
        """Feed ``data`` to the per-block hashes, closing a block every BLOCK_BYTES bytes."""
        view = memoryview(data)
        while len(view):
            take = min(BLOCK_BYTES - self._block_fill, len(view))
            self._block_hash.update(view[:take])
            self._block_fill += take
            view = view[take:]
            if self._block_fill == BLOCK_BYTES:
                self._blocks.append(self._block_hash.hexdigest())
                self._block_hash = hashlib.sha256()
                self._block_fill = 0

    def _close_current(self) -> None:
        if self._f is None:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        if self._block_fill:
            self._blocks.append(self._block_hash.hexdigest())
        rec = self.shards[-1]
        path = self.folder / rec["file"]
        size = path.stat().st_size
        rec.update(n_tokens=self._pos, bytes=size, sha256=self._hash.hexdigest(),
                   sample_sha256=sample_sha256(path, size), block_sha256=self._blocks)
        self._f = None

    def add(self, name: str, ids: np.ndarray, role: str | None = None) -> None:
        ids = np.asarray(ids)
        if ids.size:
            top = int(ids.max())
            if top > self._limit or int(ids.min()) < 0:
                raise ValueError(f"token id out of range for {self.dtype} in document {name}")
            self.max_token_id = top if self.max_token_id is None else max(self.max_token_id, top)
        if self._f is None or (self._pos > 0 and self._pos + len(ids) > self.shard_tokens):
            self._open_next()
        data = ids.astype(self.dtype, copy=False).tobytes()
        self._f.write(data)
        self._hash.update(data)
        self._hash_blocks(data)
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
        """Close open files without writing the index (the caller removes the folder). Never raises: closing
        flushes what is buffered, which on a full disk fails again (and the build folder was left behind)."""
        for f in (self._f, self._names, self._index_raw):
            if f is not None:
                with contextlib.suppress(OSError):
                    f.close()
        self._f = None

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
        return {"block_bytes": BLOCK_BYTES, "shards": self.shards, **files}


#: verified blocks a TokenCorpus keeps in memory (1 MiB each): a scan of small documents hashes each once
KEPT_BLOCKS = 8

_HINT = "re-run 'longrope tokenize' (add --force) to rebuild it"


def _close_files(files: dict) -> None:
    """Close and forget the open shard files of a :class:`TokenCorpus` (its ``_maps``)."""
    while files:
        files.popitem()[1].close()


@dataclass
class TokenCorpus:
    """A shard folder opened for reading; documents are read from the shard files as they are asked for.

    Every view :meth:`tokens` returns has been checked against the checksums in ``meta.json``
    (see the module doc), as it was read.
    """

    path: Path
    meta: dict
    index: np.ndarray
    names: list[str]
    _maps: dict
    _kept: dict = field(default_factory=dict)
    """(shard, block) → the bytes of one of the last blocks read and verified, oldest first."""
    _verified: dict = field(default_factory=dict)
    """shard number → bool array over its blocks (True = hashed and matching), or True for a
    whole shard checked against its file SHA-256 (folders without per-block sums)."""

    def __post_init__(self) -> None:
        # the shard files opened by reads are closed when the corpus goes (or by close()): they were left to the
        # garbage collector, one descriptor per shard per corpus opened (a pipeline opens its data at each stage), and
        # a ResourceWarning each under PYTHONWARNINGS / -W (battery 23a)
        self._closer = weakref.finalize(self, _close_files, self._maps)

    def close(self) -> None:
        """Close the shard files opened by reads (a later read opens them again)."""
        _close_files(self._maps)

    def __enter__(self) -> TokenCorpus:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @classmethod
    def open(cls, path: str | os.PathLike, *, verify: str = "sample") -> TokenCorpus:
        """Open and check a shard folder (``verify``: ``"size"``, ``"sample"`` or ``"full"``).

        ``verify`` only sets how much is hashed now; whatever is hashed now or not, every token
        is verified before :meth:`tokens` hands it out.
        """
        if verify not in ("size", "sample", "full"):
            raise UserError(f"verify must be 'size', 'sample' or 'full', got {verify!r}")
        path = path_argument(path, "a shard folder")
        meta_path = path / "meta.json"
        if path.exists() and not path.is_dir():
            raise UserError(f"{path} is {path_kind(path)}, not a folder; give a shard folder made by 'longrope tokenize'")
        if not path.is_dir():
            check_no_link_loop(path, "shard folder")
            raise UserError(f"{path}: no such shard folder; create one with 'longrope tokenize'")
        if not meta_path.is_file():
            raise UserError(f"{path}: no meta.json (not a shard folder, or tokenization did not finish); "
                            f"run 'longrope tokenize ... -o {path}'")
        meta = read_json(meta_path, what="shard folder's meta.json", fix=_HINT)
        if not is_record_of(meta, FORMAT, FORMAT_VERSION):
            raise UserError(f"{path}: not a version-{FORMAT_VERSION} {FORMAT} folder "
                            f"(format {meta.get('format')!r} version {meta.get('version')!r}); re-run 'longrope tokenize'")
        _check_meta(path, meta)
        _check_file(path, meta["index"], "full")
        _check_file(path, meta["names"], "full")
        for rec in meta["shards"]:
            _check_file(path, rec, "size" if verify == "full" else verify)
        index = _load_index(path / "index.npy")
        try:
            with open(path / "names.jsonl", encoding="utf-8") as f:
                names = [json.loads(line) for line in f]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise UserError(f"{path / 'names.jsonl'}: unreadable ({exc}); {_HINT}") from None
        if len(index) != meta["n_docs"] or len(names) != meta["n_docs"]:
            raise UserError(f"{path}: index has {len(index)} rows and {len(names)} names but meta.json says "
                            f"{meta['n_docs']} documents; {_HINT}")
        _check_rows(path, index, meta["shards"])
        corpus = cls(path, meta, index, names, {})
        if verify == "full":
            corpus.verify("full")
        return corpus

    def verify(self, level: str = "full") -> None:
        """Re-check every shard now; ``"full"`` hashes every byte (reads still hash the blocks they read)."""
        if level not in ("size", "sample", "full"):
            raise UserError(f"verify must be 'size', 'sample' or 'full', got {level!r}")
        for k, rec in enumerate(self.meta["shards"]):
            _check_file(self.path, rec, "size" if level == "full" else level)
            if level == "full":
                self._verified.pop(k, None)
                self._verify_range(k, 0, int(rec["n_tokens"]))

    @property
    def content_digest(self) -> str:
        """SHA-256 naming the folder's content: its token dtype, tokenizer vocabulary, and the
        checksums of its index, names and shards (which every token read is verified against). A folder
        rebuilt at the same path with other documents, roles or tokens has another digest."""
        m = self.meta
        ident = {"dtype": m["dtype"], "n_docs": m["n_docs"], "n_tokens": m["n_tokens"],
                 "vocab_sha256": m["tokenizer"]["vocab_sha256"], "index": m["index"]["sha256"],
                 "names": m["names"]["sha256"], "shards": [r["sha256"] for r in m["shards"]]}
        return hashlib.sha256(json.dumps(ident, sort_keys=True).encode("utf-8")).hexdigest()

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

    def _bytes(self, k: int, lo: int, hi: int) -> bytes:
        """Bytes ``lo:hi`` of shard ``k``, read now from the file opened at its first read. Read, not memory-mapped:
        a mapped shard truncated or rewritten in place while a command ran (``cp`` over it, ``truncate``) ended the
        process with SIGBUS, silently, or handed out bytes other than the ones verified (battery 19); a short read
        is said in one line."""
        if hi <= lo:
            return b""
        rec = self.meta["shards"][k]
        f = self._maps.get(k)
        if f is None:  # opened at the first read, maybe minutes after the checks of open(): a regular file only
            try:  # (a named pipe put in its place waited for a writer for ever; battery 22b)
                f = self._maps[k] = open_regular(self.path / rec["file"])
            except OSError as exc:
                raise UserError(f"{self.path / rec['file']}: changed while it was read ({os_error_words(exc)}); "
                                f"{_HINT}, and leave the folder alone while a command reads it") from None
        parts, at = [], lo
        while at < hi:
            part = os.pread(f.fileno(), min(hi - at, 1 << 30), at)
            if not part:
                size = os.fstat(f.fileno()).st_size
                raise UserError(f"{self.path / rec['file']}: changed while it was read (now {size} bytes, meta.json "
                                f"records {rec['bytes']}); {_HINT}, and leave the folder alone while a command reads it")
            parts.append(part)
            at += len(part)
        return b"".join(parts)

    def _verify_range(self, k: int, lo: int, hi: int) -> None:
        """Check tokens ``lo:hi`` of shard ``k`` against meta.json, hashing each block once."""
        if hi <= lo:
            return
        state = self._verified.get(k)
        if state is True:
            return
        rec = self.meta["shards"][k]
        p = self.path / rec["file"]
        total = int(rec["bytes"])
        blocks = rec.get("block_sha256")
        if blocks is None:  # a folder from before per-block sums: the whole shard, once
            h = hashlib.sha256()
            for at in range(0, total, BLOCK_BYTES):
                h.update(self._bytes(k, at, min(at + BLOCK_BYTES, total)))
            if h.hexdigest() != rec["sha256"]:
                raise UserError(f"{p}: corrupted (SHA-256 differs from meta.json); {_HINT}")
            self._verified[k] = True
            return
        size = self.meta["block_bytes"]
        if state is None:
            state = self._verified[k] = np.zeros(len(blocks), dtype=bool)
        item = self.dtype.itemsize
        for b in range(lo * item // size, (hi * item - 1) // size + 1):
            if state[b]:
                continue
            if hashlib.sha256(self._bytes(k, b * size, min((b + 1) * size, total))).hexdigest() != blocks[b]:
                raise UserError(f"{p}: corrupted (block {b}, bytes {b * size}-{min((b + 1) * size, total) - 1}, "
                                f"differs from its SHA-256 in meta.json); {_HINT}")
            state[b] = True

    def tokens(self, i: int, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Tokens ``start:stop`` of document ``i`` (a read-only array), verified.

        The blocks under the view are checked against their SHA-256 as they are read;
        a mismatch is a :class:`UserError`. ``i`` is a document index in ``[0, len)``, ``start``/``stop`` token
        offsets >= 0 (cut to the document): 100 was numpy's IndexError, -1 the last document, a text stop a
        TypeError (battery 19).
        """
        from longrope.options import int_problem

        for name, value, lo, hi in (("document index i", i, 0, len(self) - 1), ("start", start, 0, 1 << 62),
                                    ("stop", 0 if stop is None else stop, 0, 1 << 62)):
            if (problem := int_problem(value, lo, hi)) is not None:
                raise UserError(f"{self.path}: {name} {problem}")
        i, start = int(i), int(start)
        row = self.index[i]
        n = int(row["length"])
        stop = n if stop is None else min(int(stop), n)
        start = max(0, min(start, stop))
        off = int(row["offset"])
        k = int(row["shard"])
        item = self.dtype.itemsize
        return np.frombuffer(self._checked_bytes(k, (off + start) * item, (off + stop) * item), dtype=self.dtype)

    def _checked_bytes(self, k: int, lo: int, hi: int) -> bytes:
        """Bytes ``lo:hi`` of shard ``k``, cut from whole blocks hashed as they were read: the bytes checked are the
        bytes returned. Blocks were hashed once per open and read again on each later call, so a shard rewritten in
        place while a command read it (a fine-tune's later steps read the same blocks) gave tokens no checksum had
        seen (battery 22b). The last :data:`KEPT_BLOCKS` verified blocks are kept: reads of many small documents
        in a row hash each block once, as before."""
        rec = self.meta["shards"][k]
        blocks = rec.get("block_sha256")
        if hi <= lo or blocks is None:  # a folder from before per-block sums: the whole shard, once per open
            self._verify_range(k, lo // self.dtype.itemsize, -(-hi // self.dtype.itemsize))
            return self._bytes(k, lo, hi)
        size, total = self.meta["block_bytes"], int(rec["bytes"])
        first, last = lo // size, (hi - 1) // size
        parts = [self._checked_block(k, b, size, total, blocks[b]) for b in range(first, last + 1)]
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        return data[lo - first * size:hi - first * size]

    def _checked_block(self, k: int, b: int, size: int, total: int, want: str) -> bytes:
        kept = self._kept.pop((k, b), None)
        if kept is None:
            kept = self._bytes(k, b * size, min((b + 1) * size, total))
            if hashlib.sha256(kept).hexdigest() != want:
                raise UserError(f"{self.path / self.meta['shards'][k]['file']}: corrupted (block {b}, bytes "
                                f"{b * size}-{min((b + 1) * size, total) - 1}, differs from its SHA-256 in meta.json); "
                                f"{_HINT}, and leave the folder alone while a command reads it")
        self._kept[(k, b)] = kept  # the most recent last
        while len(self._kept) > KEPT_BLOCKS:
            self._kept.pop(next(iter(self._kept)))
        return kept

    def check_tokenizer(self, tokenizer: Any, *, model_name: str | None = None) -> None:
        """Raise a UserError when ``tokenizer`` is not the one the shards were made with."""
        want = self.meta["tokenizer"]["vocab_sha256"]
        hashes = recorded_vocab_hashes(tokenizer)
        have = hashes[0]
        if want not in hashes:
            who = f"the model {model_name!r}" if model_name else "this tokenizer"
            raise UserError(f"{self.path} was tokenized with {self.meta['tokenizer']['name']!r} but {who} has a "
                            f"different vocabulary (sha256 {have[:12]} ≠ {want[:12]}); re-run 'longrope tokenize "
                            f"--tokenizer <the model>' for this model")

    def check_fits(self, vocab_size: Any) -> None:
        """Raise a ConfigError (``data``, ``model``) when the shards hold a token id past the model's ``vocab_size``
        embeddings (None or 0: unknown, not judged), before any weight is read: fine-tuning found it at its first
        batch, in a run folder that then asked for --resume (battery 27c). Judged by the largest id the shards hold,
        not the tokenizer's length: a model's own tokenizer may add special tokens past its embeddings that no text
        in the shards became (CodeLlama, Gemma 3; the review of battery 27c). ``tokenize`` records that id
        (``tokenizer.max_token_id``); for shards made before, it is read from the shards when their tokenizer is
        longer than the embeddings (a verified pass over every token, only then)."""
        from longrope.errors import ConfigError

        vocab = int(vocab_size or 0)
        if not vocab:
            return
        top = self.tokenizer_info.get("max_token_id")
        if top is None and int(self.tokenizer_info.get("vocab_size") or 0) > vocab:
            top = max((int(np.max(self.tokens(i))) for i in range(len(self)) if int(self.index[i]["length"])),
                      default=None)
        if top is not None and top >= vocab:
            raise ConfigError(("data", "model"), f"{{name0}} holds token id {top:,} but {{name1}} has {vocab:,} token "
                                                 "embeddings; tokenize with the model's tokenizer")

    @property
    def tokenizer_info(self) -> dict:
        return self.meta["tokenizer"]

    @property
    def encoding_sha256(self) -> str | None:
        """:func:`encoding_sha256` of the tokenizer the folder was made with (None: not recorded, made before)."""
        options = self.meta.get("options")
        value = options.get("encoding_sha256") if isinstance(options, dict) else None
        return value if isinstance(value, str) else None


def _check_meta(folder: Path, meta: dict) -> None:
    """meta.json's structure, so that a damaged or hand-edited file gives one line, not a KeyError."""
    def bad(what: str) -> UserError:
        return UserError(f"{folder / 'meta.json'}: malformed ({what}); {_HINT}")

    def file_rec(rec: Any, what: str) -> None:
        if not isinstance(rec, dict) or not isinstance(rec.get("file"), str) or "/" in rec["file"] \
                or rec["file"] in ("", ".", "..") or not _is_count(rec.get("bytes")) \
                or not isinstance(rec.get("sha256"), str):
            raise bad(f"{what} is not a file record")

    for key in ("n_docs", "n_tokens"):
        if not _is_count(meta.get(key)):
            raise bad(f"{key!r} is not a count")
    if meta.get("dtype") not in _TOKEN_DTYPES:
        raise bad(f"dtype {meta.get('dtype')!r} is not one of {', '.join(_TOKEN_DTYPES)}")
    tok = meta.get("tokenizer")
    if not isinstance(tok, dict) or not isinstance(tok.get("vocab_sha256"), str) or not isinstance(tok.get("name"), str):
        raise bad("no tokenizer record with a name and a vocabulary hash")
    for key in ("bos_token_id", "eos_token_id", "vocab_size", "max_token_id"):
        if tok.get(key) is not None and not _is_count(tok[key]):
            raise bad(f"the tokenizer's {key} {tok[key]!r} is not a token id")
    file_rec(meta.get("index"), "'index'")
    file_rec(meta.get("names"), "'names'")
    shards = meta.get("shards")
    if not isinstance(shards, list):
        raise bad("'shards' is not a list")
    item = np.dtype(meta["dtype"]).itemsize
    if any("block_sha256" in rec for rec in shards if isinstance(rec, dict)):
        if meta.get("block_bytes") is None or not _is_count(meta["block_bytes"]) \
                or meta["block_bytes"] < item or meta["block_bytes"] % item:
            raise bad("'block_bytes' is not a positive multiple of the token size")
    for k, rec in enumerate(shards):
        file_rec(rec, f"shards[{k}]")
        if not _is_count(rec.get("n_tokens")) or rec["n_tokens"] * item != rec["bytes"]:
            raise bad(f"shards[{k}] n_tokens does not match its size")
        blocks = rec.get("block_sha256")
        if blocks is not None:
            want = -(-rec["bytes"] // meta["block_bytes"])
            if not isinstance(blocks, list) or len(blocks) != want or not all(isinstance(b, str) for b in blocks):
                raise bad(f"shards[{k}] needs {want} block checksums")


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _load_index(p: Path) -> np.ndarray:
    """index.npy as a plain structured array (never unpickled), read whole (a memory map of it truncated under a
    running command ended the process with SIGBUS)."""
    try:
        index = np.load(p, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{p}: not a plain array of index rows ({first}); {_HINT}") from None
    if not isinstance(index, np.ndarray) or index.ndim != 1 or index.dtype != INDEX_DTYPE:
        raise UserError(f"{p}: index rows have dtype {getattr(index, 'dtype', type(index).__name__)} and "
                        f"shape {getattr(index, 'shape', '?')}, expected a 1-D array of {INDEX_DTYPE}; {_HINT}")
    return index


def _check_rows(folder: Path, index: np.ndarray, shards: list[dict]) -> None:
    """Every row must point inside its shard and have a known role (else reads would be silently cut)."""
    if not len(index):
        return
    sizes = np.array([rec["n_tokens"] for rec in shards] + [0], dtype=np.uint64)
    shard = np.asarray(index["shard"]).astype(np.int64)
    bad = (shard >= len(shards)) | (np.asarray(index["role"]) > max(ROLE_NAMES))
    ends = np.asarray(index["offset"]) + np.asarray(index["length"])
    bad |= (ends < np.asarray(index["offset"])) | (ends > sizes[np.minimum(shard, len(shards))])
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise UserError(f"{folder / 'index.npy'}: row {i} points outside its shard or has an unknown role; {_HINT}")


def _check_file(folder: Path, rec: dict, level: str) -> None:
    p = folder / rec["file"]
    if not p.is_file():
        raise UserError(f"{p}: missing shard-folder file; {_HINT}")
    size = p.stat().st_size
    if size != rec["bytes"]:
        state = "truncated" if size < rec["bytes"] else "longer than recorded"
        raise UserError(f"{p}: {state} ({size} bytes, meta.json records {rec['bytes']}); {_HINT}")
    if level == "sample" and "sample_sha256" in rec:
        if sample_sha256(p, size) != rec["sample_sha256"]:
            raise UserError(f"{p}: corrupted (checksum of sampled blocks differs from meta.json); {_HINT}")
    elif level == "full" or (level == "sample" and "sample_sha256" not in rec):
        if file_sha256(p) != rec["sha256"]:
            raise UserError(f"{p}: corrupted (SHA-256 differs from meta.json); {_HINT}")


def write_meta(folder: Path, meta: dict) -> None:
    write_json(Path(folder) / "meta.json", meta)
