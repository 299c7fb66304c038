"""Every token read from a shard folder is verified; the index is never unpickled; meta is checked.

Small blocks (``BLOCK_BYTES`` patched to 4 KiB for the writer; readers take the size from
meta.json) give multi-block shards from a few thousand tokens.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from longrope.data import TokenCorpus, sample_documents, tokenize_corpus
from longrope.data import shards as shards_mod
from longrope.data.shards import ShardWriter, file_sha256, sample_sha256, write_meta
from longrope.errors import UserError
from tests.data.data_helpers import TEXTS

BLOCK = 4096  # bytes per block in these tests (2048 uint16 tokens)
DOC = 3000  # tokens per document: documents straddle block boundaries


def _write_folder(folder, n_docs=300, seed=0, monkeypatch=None):
    """A one-shard folder of ``n_docs`` random documents of DOC tokens (1.8 MB, 440 blocks by default)."""
    if monkeypatch is not None:
        monkeypatch.setattr(shards_mod, "BLOCK_BYTES", BLOCK)
    rng = np.random.default_rng(seed)
    w = ShardWriter(folder, np.dtype("<u2"), shard_tokens=1 << 24)
    docs = [rng.integers(0, 60000, DOC) for _ in range(n_docs)]
    for k, d in enumerate(docs):
        w.add(f"d{k}", d, None)
    files = w.finish()
    write_meta(folder, {"format": "longrope-token-shards", "version": 1, "dtype": "uint16", "n_docs": n_docs,
                        "n_tokens": w.n_tokens, "tokenizer": {"name": "t", "vocab_sha256": "x"}, **files})
    return docs


def _sampled_offsets(size: int) -> set[int]:
    """Byte offsets that sample_sha256 hashes (so a flip outside them passes verify='sample')."""
    span = size - (1 << 16)
    out = set()
    for k in range(16):
        start = span * k // 15
        out.update(range(start, start + (1 << 16)))
    return out


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x5A
    path.write_bytes(bytes(data))


def _unsampled_offset(path) -> int:
    size = path.stat().st_size
    sampled = _sampled_offsets(size)
    return next(o for o in range(size // 3, size) if o not in sampled)


def test_blocks_are_recorded_at_write_time(tmp_path, monkeypatch):
    _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    meta = json.loads((tmp_path / "s" / "meta.json").read_text())
    rec = meta["shards"][0]
    data = (tmp_path / "s" / rec["file"]).read_bytes()
    assert meta["block_bytes"] == BLOCK
    want = [hashlib.sha256(data[i : i + BLOCK]).hexdigest() for i in range(0, len(data), BLOCK)]
    assert rec["block_sha256"] == want and len(want) > 50
    assert rec["sha256"] == file_sha256(tmp_path / "s" / rec["file"])


def test_a_flip_the_sample_check_misses_is_caught_when_read(tmp_path, monkeypatch):
    docs = _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    shard = tmp_path / "s" / "shard-00000.bin"
    off = _unsampled_offset(shard)
    _flip(shard, off)
    assert sample_sha256(shard) == json.loads((tmp_path / "s" / "meta.json").read_text())["shards"][0]["sample_sha256"]
    c = TokenCorpus.open(tmp_path / "s")  # the default open-time check cannot see it ...
    bad_doc = off // 2 // DOC
    block = off // BLOCK
    # ... documents in clean blocks read fine and equal what was written ...
    clean = next(i for i in range(len(docs)) if (i + 1) * DOC * 2 <= block * BLOCK)
    assert np.array_equal(c.tokens(clean), docs[clean])
    # ... and the document over the flipped byte is refused, naming the block.
    with pytest.raises(UserError, match=rf"corrupted \(block {block}\b") as e:
        c.tokens(bad_doc)
    assert "\n" not in str(e.value) and "longrope tokenize" in str(e.value)
    # a window of the bad document that lies in clean blocks is fine: only what is read counts
    start = bad_doc * DOC * 2
    if (start + 100 - 1) // BLOCK < block:
        assert np.array_equal(c.tokens(bad_doc, 0, 50), docs[bad_doc][:50])
    # a full check at open catches it at once
    with pytest.raises(UserError, match="corrupted"):
        TokenCorpus.open(tmp_path / "s", verify="full")


def test_sampled_windows_are_verified(tmp_path, monkeypatch):
    _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    shard = tmp_path / "s" / "shard-00000.bin"
    _flip(shard, _unsampled_offset(shard))
    c = TokenCorpus.open(tmp_path / "s", verify="size")
    with pytest.raises(UserError, match="corrupted"):
        sample_documents(c, 100, 300 * 30, seed=0, split="all", windows_per_doc=30)


def test_a_block_rewritten_after_it_was_read_is_refused_on_the_next_read(tmp_path, monkeypatch):
    """Blocks were hashed once per open corpus and read again on every later call: a shard rewritten in place
    (cp over it) while a fine-tune read it gave its later steps tokens no checksum had seen (battery 22b)."""
    docs = _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    monkeypatch.setattr(shards_mod, "KEPT_BLOCKS", 1, raising=False)  # block 0 is read again from the file, not kept
    c = TokenCorpus.open(tmp_path / "s", verify="full")
    assert np.array_equal(c.tokens(0), docs[0])  # blocks 0 and 1
    shard = tmp_path / "s" / "shard-00000.bin"
    data = bytearray(shard.read_bytes())
    data[10:20] = bytes(reversed(data[10:20]))
    with open(shard, "r+b") as f:  # in place, same size: the open file sees the new bytes
        f.write(data)
    with pytest.raises(UserError, match=r"corrupted \(block 0\b") as e:
        c.tokens(0, 0, 50)
    assert "\n" not in str(e.value) and "leave the folder alone" in str(e.value)
    assert np.array_equal(c.tokens(1), docs[1])  # blocks 1 and 2 are untouched
    monkeypatch.setattr(shards_mod, "KEPT_BLOCKS", 8)
    assert np.array_equal(c.tokens(2), docs[2]) and np.array_equal(c.tokens(2), docs[2])  # a kept block


def test_full_verify_marks_everything(tmp_path, monkeypatch):
    _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    c = TokenCorpus.open(tmp_path / "s", verify="full")
    assert c._verified[0].all()


def test_legacy_folders_verify_the_whole_shard_on_first_read(tmp_path, monkeypatch):
    """Folders from before per-block sums stay readable: the whole shard is hashed once."""
    docs = _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    meta_path = tmp_path / "s" / "meta.json"
    meta = json.loads(meta_path.read_text())
    meta.pop("block_bytes")
    for rec in meta["shards"]:
        rec.pop("block_sha256")
    meta_path.write_text(json.dumps(meta))
    c = TokenCorpus.open(tmp_path / "s")
    assert np.array_equal(c.tokens(3), docs[3]) and c._verified[0] is True
    shard = tmp_path / "s" / "shard-00000.bin"
    _flip(shard, _unsampled_offset(shard))
    c = TokenCorpus.open(tmp_path / "s")
    with pytest.raises(UserError, match="SHA-256 differs"):
        c.tokens(0)  # any read: the whole shard is checked before the first token is used


def test_tokenize_rerun_detects_a_flip_anywhere(tokenizer, tmp_path, monkeypatch):
    """'Up to date' must not vouch for a shard with a flipped byte outside the sampled blocks."""
    monkeypatch.setattr(shards_mod, "BLOCK_BYTES", BLOCK)
    src = tmp_path / "in"
    src.mkdir()
    for k in range(60):  # > 1 MiB of tokens: more than the 16 sampled blocks of 64 KiB cover
        (src / f"{k:03d}.txt").write_text((TEXTS[k % len(TEXTS)] + f" {k}. ") * 200, encoding="utf-8")
    out = tmp_path / "out"
    first = tokenize_corpus(tokenizer, [str(src)], out, tokenizer_name="t", progress=False)
    shard = out / "shard-00000.bin"
    size = shard.stat().st_size
    assert size > 16 * (1 << 16), size  # a file the sample check does not cover whole
    rec = json.loads((out / "meta.json").read_text())["shards"][0]
    _flip(shard, _unsampled_offset(shard))
    assert sample_sha256(shard) == rec["sample_sha256"]  # the old rerun check would say "up to date"
    again = tokenize_corpus(tokenizer, [str(src)], out, tokenizer_name="t", progress=False)
    assert not again.up_to_date and again.n_tokens == first.n_tokens
    TokenCorpus.open(out, verify="full")
    third = tokenize_corpus(tokenizer, [str(src)], out, tokenizer_name="t", progress=False)
    assert third.up_to_date


def _rewrite_index(folder, array_bytes_writer):
    """Replace index.npy and record its new size and hash, as a crafted folder would."""
    p = folder / "index.npy"
    array_bytes_writer(p)
    meta = json.loads((folder / "meta.json").read_text())
    meta["index"].update(bytes=p.stat().st_size, sha256=file_sha256(p))
    (folder / "meta.json").write_text(json.dumps(meta))


def test_an_object_index_is_refused_not_unpickled(tmp_path, monkeypatch):
    _write_folder(tmp_path / "s", monkeypatch=monkeypatch)
    marker = tmp_path / "ran"
    _rewrite_index(tmp_path / "s", lambda p: np.save(p, np.array([_Evil(str(marker))], dtype=object),
                                                     allow_pickle=True))
    with pytest.raises(UserError, match="not a plain array") as e:
        TokenCorpus.open(tmp_path / "s")
    assert "\n" not in str(e.value) and not marker.exists()


class _Evil:
    """Unpickling this would create a file: proof that nothing was unpickled if it does not exist."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("case", ["dtype", "2d", "outside", "role", "shard"])
def test_bad_index_rows_are_refused(tmp_path, monkeypatch, case):
    _write_folder(tmp_path / "s", n_docs=4, monkeypatch=monkeypatch)
    index = np.load(tmp_path / "s" / "index.npy")
    if case == "dtype":
        bad = index["length"].astype(np.float64)
    elif case == "2d":
        bad = np.stack([index, index])
    else:
        bad = index.copy()
        if case == "outside":
            bad["length"][-1] += 1  # the last document would run past the end of its shard
        elif case == "role":
            bad["role"][1] = 7
        else:
            bad["shard"][0] = 3
    _rewrite_index(tmp_path / "s", lambda p: np.save(p, bad))
    with pytest.raises(UserError, match="index") as e:
        TokenCorpus.open(tmp_path / "s")
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("edit", [
    lambda m: m.pop("shards"),
    lambda m: m.update(dtype="object"),
    lambda m: m["shards"][0].update(file="../elsewhere.bin"),
    lambda m: m["shards"][0]["block_sha256"].pop(),
    lambda m: m.update(block_bytes=3),
    lambda m: m.update(n_docs="many"),
    lambda m: m["shards"][0].update(n_tokens=5),
])
def test_malformed_meta_is_one_line(tmp_path, monkeypatch, edit):
    _write_folder(tmp_path / "s", n_docs=3, monkeypatch=monkeypatch)
    meta_path = tmp_path / "s" / "meta.json"
    meta = json.loads(meta_path.read_text())
    edit(meta)
    meta_path.write_text(json.dumps(meta))
    with pytest.raises(UserError) as e:
        TokenCorpus.open(tmp_path / "s")
    assert "\n" not in str(e.value) and "meta.json" in str(e.value)


def test_a_shard_truncated_under_an_open_corpus_is_one_error_not_a_bus_error(tmp_path):
    """A shard truncated in place (``truncate``, ``cp`` over it) while a command read it: the memory-mapped reader
    ended the process with SIGBUS, silently (a fine-tune died with status -7 and no line; battery 19). Run in a
    process of its own, which such a crash would end."""

    _write_folder(tmp_path / "s")
    script = (
        "import os, sys\n"
        "from longrope.data import TokenCorpus\n"
        "from longrope.errors import UserError\n"
        f"c = TokenCorpus.open({str(tmp_path / 's')!r}, verify='full')\n"
        "c.tokens(0)\n"
        f"os.truncate({str(tmp_path / 's' / 'shard-00000.bin')!r}, 4096)\n"
        "try:\n"
        "    print(int(c.tokens(len(c) - 1).sum()))\n"
        "except UserError as e:\n"
        "    print('refused:', e)\n"
    )
    _refused_in_a_child(script, timeout=120)


@pytest.mark.parametrize("replacement", ["pipe", "deleted"])
def test_a_shard_replaced_before_its_first_read_is_one_error_not_a_hang(tmp_path, replacement):
    """A shard file is opened at the first read, maybe minutes after the checks of open(): one replaced meanwhile
    by a named pipe waited for a writer for ever, one deleted was a FileNotFoundError (battery 22b). In a child
    process: the old code never returned."""

    _write_folder(tmp_path / "s")
    shard = tmp_path / "s" / "shard-00000.bin"
    make = f"os.mkfifo({str(shard)!r})\n" if replacement == "pipe" else ""
    script = (
        "import os\n"
        "from longrope.data import TokenCorpus\n"
        "from longrope.errors import UserError\n"
        f"c = TokenCorpus.open({str(tmp_path / 's')!r})\n"
        f"os.remove({str(shard)!r})\n" + make +
        "try:\n"
        "    c.tokens(0)\n"
        "except UserError as e:\n"
        "    print('refused:', e)\n"
    )
    assert _refused_in_a_child(script, timeout=30).count("\n") == 1


def _refused_in_a_child(script, *, timeout):
    """Run ``script`` in a child Python (a hang is a timeout, SIGBUS a status, not this test process's end): it prints
    'refused: ...' with the one line of a read of a folder changed while it was read. Returns what it printed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, (done.returncode, done.stderr[-500:])
    assert done.stdout.startswith("refused:") and "changed while it was read" in done.stdout
    return done.stdout


def test_a_corpus_closes_its_shard_files_when_it_goes(tmp_path):
    """The shard files a corpus opened to read were left to the garbage collector: a descriptor per shard per corpus
    opened (a pipeline opens its data at every stage) and, under ``PYTHONWARNINGS``/``-W``, a ResourceWarning each
    (battery 23a). They close when the corpus is dropped, or by ``close()``."""
    import gc
    import warnings

    _write_folder(tmp_path / "s", n_docs=4)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        corpus = TokenCorpus.open(tmp_path / "s")
        corpus.tokens(0)
        files = list(corpus._maps.values())
        del corpus
        gc.collect()
    assert files and all(f.closed for f in files)
    assert not [w for w in seen if issubclass(w.category, ResourceWarning)]
    with TokenCorpus.open(tmp_path / "s") as corpus:
        first = corpus.tokens(1).copy()
    assert not corpus._maps
    assert (corpus.tokens(1) == first).all()  # opened again on a later read
