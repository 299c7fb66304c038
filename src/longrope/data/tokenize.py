"""Corpora → token shards: streamed, parallel, idempotent.

:func:`tokenize_corpus` reads documents one batch at a time (a reader thread fills a queue of
at most two batches while the main thread encodes the previous one), encodes each batch with
the Rust ``tokenizers`` backend (``encode_batch``, which spreads a batch over every core), and
appends the ids to the current shard. Memory stays flat: two text batches plus one batch of ids. A
document longer than :data:`PIECE_CHARS` is encoded in pieces cut where the tokenizer cuts anyway
(:func:`encode_documents`), so one huge document costs no more than a batch of ordinary ones.

Re-running with the same inputs (paths, sizes, modification times), tokenizer vocabulary and
options finds the fingerprint in ``meta.json``, hashes every byte of the folder against its
checksums, and does nothing; any difference (a flipped byte anywhere) rebuilds it. Hub datasets
have no sizes or dates to fingerprint, so inputs that include one are re-read on every run.

The output is one atomic unit: a new folder is built next to ``DIR`` in ``.DIR.tokenize-<pid>``
and renamed to ``DIR`` only when complete (the previous ``DIR``, if any, is moved aside first and
removed after). A failed run removes its build folder; a killed one leaves it behind, and the
next run on the same ``DIR`` removes it (only when its process is gone). So ``DIR`` is always
either the previous complete folder, the new complete folder, or (killed between two renames)
absent — never half-written, never an empty folder.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import queue
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from longrope.data.shards import (
    FORMAT,
    FORMAT_VERSION,
    SPECIAL_TOKEN_POLICY,
    ShardWriter,
    TokenCorpus,
    content_hash,
    encoding_sha256,
    token_dtype,
    vocab_sha256,
    write_meta,
)
from longrope.data.sources import (
    DEFAULT_SPLIT,
    SkipLog,
    Source,
    changed_while_read,
    links_read_twice,
    printable,
    resolve_sources,
)
from longrope.errors import UserError
from longrope.io import (
    aside_prefix,
    check_replaceable_target,
    holds_work,
    is_disk_full,
    is_file_too_large,
    is_system_dropping,
    os_error_fix,
    output_target,
    path_argument,
    place_new,
    read_json,
    remove_dead_leftovers,
    replace_folder,
    sibling_prefix,
)
from longrope.options import check_flag, check_loaded_tokenizer

__all__ = ["TokenizeReport", "tokenize_corpus", "make_encoder"]

# What a shard folder may hold; a folder with anything else is not replaced wholesale.
_OUR_NAMES = ("meta.json", "index.npy", "names.jsonl", "index.raw", ".building")


@dataclass
class TokenizeReport:
    """What a run did (also what ``longrope tokenize`` prints)."""

    out_dir: Path
    up_to_date: bool
    n_docs: int
    n_tokens: int
    n_shards: int
    seconds: float
    skipped: list[dict] = field(default_factory=list)
    ignored_files: int = 0

    @property
    def tokens_per_second(self) -> float:
        return self.n_tokens / self.seconds if self.seconds > 0 else float("nan")


def make_encoder(tokenizer: Any) -> Callable[[list[str]], list[np.ndarray]]:
    """A batch encoder without special tokens, using the Rust backend directly when there is one.

    A document's text is text: a special token's spelling in it (``</s>`` in an HTML page, ``<|endoftext|>`` in a
    post about tokenizers) is encoded as the characters it is made of, not as that token's id. Parsed, it put
    EOS and BOS ids inside documents whose shards say none are stored (battery 23c), and a corpus could plant
    what the model reads as a document boundary or a chat turn. The user's tokenizer is left as it was: the
    backend encoding the documents is a copy.

    ``backend.encode_batch_fast`` skips the offsets that ``tokenizer(...)`` computes and the
    Python-side BatchEncoding; it is checked against ``tokenizer(...)`` on the first batch by
    :func:`tokenize_corpus`, which falls back if they ever disagree.
    """
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is not None and hasattr(backend, "encode_special_tokens"):
        backend = copy.deepcopy(backend)
        backend.encode_special_tokens = True
    else:
        backend = None  # a backend that cannot be told so: the slow path, which can
    fast = getattr(backend, "encode_batch_fast", None) or getattr(backend, "encode_batch", None)
    if fast is not None:
        def encode(texts: list[str]) -> list[np.ndarray]:
            return [np.asarray(e.ids, dtype=np.int64) for e in fast(texts, add_special_tokens=False)]
        return encode
    return _slow_encoder(tokenizer)


def _slow_encoder(tokenizer: Any) -> Callable[[list[str]], list[np.ndarray]]:
    def encode(texts: list[str]) -> list[np.ndarray]:
        # verbose=False: a document longer than the tokenizer's model_max_length is what shards hold (the
        # windows are cut later), so transformers' 'Token indices sequence length is longer than ...' was noise
        backend = getattr(tokenizer, "backend_tokenizer", None)
        before = getattr(backend, "encode_special_tokens", None)
        try:
            out = tokenizer(texts, add_special_tokens=False, split_special_tokens=True, verbose=False)["input_ids"]
        finally:  # transformers leaves split_special_tokens set on the caller's backend until its next call
            if before is not None:
                backend.encode_special_tokens = before
        return [np.asarray(x, dtype=np.int64) for x in out]
    return encode


#: a document longer than this (characters) is encoded in pieces of at most about this size: encoded whole, one
#: 50 MB line took the tokenizer's own record of it (~120 bytes a character: 6 GB) and five minutes on one core,
#: the check against the slow tokenizer doubling both (battery 17)
PIECE_CHARS = 1 << 20
#: characters either side of a cut that are encoded whole and as two parts: the cut is taken when both agree
_CUT_CONTEXT = 256
_CUT_TRIES = 16
#: characters of the first document that the fast and the slow encoder must encode alike
_CHECK_CHARS = 1 << 16


def encode_documents(encode: Callable[[list[str]], list[np.ndarray]], texts: list[str], *,
                     piece_chars: int | None = None, group_chars: int = 4_000_000) -> list[np.ndarray]:
    """``encode(texts)``, with each text longer than ``piece_chars`` cut into pieces at whitespace where encoding
    the text around the cut whole and as two parts gives the same ids (so the ids are those of the whole text),
    and the pieces encoded in groups of at most ``group_chars`` characters. A text with no such cut in reach is
    encoded whole from there on, as before. ``piece_chars`` defaults to :data:`PIECE_CHARS`."""
    piece_chars = piece_chars or PIECE_CHARS
    pieces: list[tuple[int, str]] = []
    for i, text in enumerate(texts):
        bounds = [0, *_cuts(text, encode, piece_chars), len(text)]
        pieces += [(i, text[a:b]) for a, b in zip(bounds, bounds[1:])]
    parts: list[list[np.ndarray]] = [[] for _ in texts]
    group: list[tuple[int, str]] = []
    for k, piece in enumerate(pieces):
        group.append(piece)
        if k == len(pieces) - 1 or sum(len(t) for _, t in group) + len(pieces[k + 1][1]) > group_chars:
            for (i, _), ids in zip(group, encode([t for _, t in group])):
                parts[i].append(ids)
            group = []
    return [p[0] if len(p) == 1 else np.concatenate(p) if p else np.zeros(0, dtype=np.int64) for p in parts]


def _cuts(text: str, encode: Callable[[list[str]], list[np.ndarray]], piece_chars: int) -> list[int]:
    """Where to cut ``text`` into pieces of at most about ``piece_chars`` characters (see :func:`encode_documents`)."""
    cuts: list[int] = []
    start = 0
    while len(text) - start > piece_chars:
        cut = _safe_cut(text, encode, start + piece_chars, start + piece_chars // 2)
        if cut is None:
            break
        cuts.append(cut)
        start = cut
    return cuts


def _safe_cut(text: str, encode: Callable[[list[str]], list[np.ndarray]], at: int, lower: int) -> int | None:
    """A position in ``(lower, at]`` just before a whitespace character that follows another character, where the
    ids of the text around it equal those of its two sides encoded apart; None when none of the last
    :data:`_CUT_TRIES` such positions is one."""
    j = at
    for _ in range(_CUT_TRIES):
        j = max(text.rfind(" ", lower, j), text.rfind("\n", lower, j))
        while j > lower and text[j - 1].isspace():
            j -= 1
        if j <= lower:
            return None
        left, right = text[max(0, j - _CUT_CONTEXT):j], text[j:j + _CUT_CONTEXT]
        whole, a, b = encode([left + right, left, right])
        if np.array_equal(whole, np.concatenate([a, b])):
            return j
    return None


def _input_state(sources: list[Source]) -> list[dict]:
    """Each input's files: name, size, modification time (what the fingerprint sees), then device, inode and
    change time (what only the changed-while-read check sees: a file replaced by a rename or rewritten with its
    size and modification time kept, as ``rsync -t``/``cp -p`` do, kept both; battery 22b). A file gone since it
    was listed: all None."""
    items = []
    for s in sources:
        files = []
        if s.kind != "hub":
            root = Path(s.spec)
            for p in s.files():
                try:
                    st = p.stat()
                    facts = [st.st_size, st.st_mtime_ns, st.st_dev, st.st_ino, st.st_ctime_ns]
                except FileNotFoundError:
                    facts = [None] * 5
                files.append([p.relative_to(root).as_posix() if s.kind == "folder" else p.name, *facts])
        items.append({"spec": str(Path(s.spec).resolve()) if s.kind != "hub" else s.spec, "kind": s.kind,
                      "role": s.role, "files": files})
    return items


def _fingerprint(state: list[dict], vhash: str, options: dict) -> str:
    """The inputs' paths, sizes and modification times with the vocabulary and options (a copied or restored
    corpus with its dates kept is the same corpus: the identity facts of :func:`_input_state` are left out)."""
    sources = [{**item, "files": [f[:3] for f in item["files"]]} for item in state]
    blob = json.dumps({"v": FORMAT_VERSION, "vocab": vhash, "options": options, "sources": sources}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def _check_unchanged(sources: list[Source], before: list[dict]) -> None:
    """Refuse shards read from inputs that changed while they were read (a file rewritten, truncated, added or
    removed): they may hold half of an edit, under a fingerprint that vouched for the files as they were before
    (only the next run noticed; battery 19)."""
    after = _input_state(sources)
    for old, new in zip(before, after):
        if old == new:
            continue
        then, now = ({f[0]: f[1:] for f in x["files"]} for x in (old, new))
        changed = sorted(n for n in then.keys() | now.keys() if then.get(n) != now.get(n))
        raise changed_while_read(Path(old["spec"]) / changed[0] if old["kind"] == "folder" and changed
                                 else Path(old["spec"]))


def _batches(sources: list[Source], log: SkipLog, batch_docs: int, batch_chars: int,
             ) -> Iterator[list[tuple[str, str, str | None, int]]]:
    batch: list[tuple[str, str, str | None, int]] = []
    chars = 0
    links = links_read_twice(sources)
    seen: dict[str, Source] = {}
    for src in sources:
        for doc_id, text, nbytes in src.documents(log, links):
            _refuse_twice_named(doc_id, src, seen)
            batch.append((doc_id, text, src.role, nbytes))
            chars += len(text)
            if len(batch) >= batch_docs or chars >= batch_chars:
                yield batch
                batch, chars = [], 0
    if batch:
        yield batch


def _refuse_twice_named(doc_id: str, src: Source, seen: dict[str, Source]) -> None:
    """Refuse a document id already given to another document: two files of one name given as two inputs
    (``search=a/data.jsonl train=b/data.jsonl``), or --id-field values that repeat (``1`` and ``"1"``, or a missing one
    standing for its line number), were stored under one name, which the records name documents by and fine-tuning
    compares; a training document was refused as "the same id" as a search document it shared nothing with
    (battery 28b). ``seen``: id -> the input that gave it."""
    if doc_id not in seen:
        seen[doc_id] = src
        return
    other = seen[doc_id]
    if other is src:  # --id-field values that repeat
        where, fix = (f"twice in {printable(src.spec)}", "give --id-field values that are unique (a row without one is "
                      "named by its line or row number), or leave --id-field out")
    else:
        where, fix = (f"by {printable(other.spec)} and {printable(src.spec)}", "rename one of them (a file given "
                      "is named by its name, a folder's files by the folder's name and their path in it)")
    raise UserError(f"document id {printable(doc_id)!r} is given {where}; each document needs its own id (records name "
                    f"documents by it, and it decides their search/held-out role): {fix}")


def _prefetch(it: Iterator, depth: int = 2) -> Iterator:
    """Run ``it`` in a thread, ``depth`` items ahead; re-raise its exception here."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def put(msg) -> bool:
        while not stop.is_set():
            try:
                q.put(msg, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def work():
        try:
            for item in it:
                if not put(("item", item)):
                    return
            put(("end", done))
        except BaseException as exc:  # handed to the consumer, which re-raises it
            put(("error", exc))

    t = threading.Thread(target=work, name="longrope-read", daemon=True)
    t.start()
    try:
        while True:
            kind, item = q.get()
            if kind == "item":
                yield item
            elif kind == "error":
                raise item
            else:
                return
    finally:
        stop.set()
        t.join(timeout=5)


def _input_specs(inputs: Any) -> list[str]:
    """A library caller's ``inputs`` as the ``--input`` strings: a list of str or path-like values (a bare string
    was read letter by letter, "books" as the inputs 'b', 'o', ...; a Path item was an AttributeError)."""
    if isinstance(inputs, (str, bytes, os.PathLike)) or not isinstance(inputs, (list, tuple)):
        raise UserError(f"inputs must be a list of files, folders or dataset names, got {inputs!r}"
                        + (f" (write [{inputs!r}] for one)" if isinstance(inputs, (str, os.PathLike)) else ""))
    bad = [x for x in inputs if not isinstance(x, (str, os.PathLike))]
    if bad:
        raise UserError(f"inputs must be files, folders or dataset names (str or path), got {bad[0]!r}")
    return [os.fspath(x) for x in inputs]


def _check_arguments(**values: Any) -> None:
    """tokenize_corpus's settings, checked as ``longrope tokenize`` checks its flags (tools.TokenizeConfig): the API
    took shard_tokens 1.5 and batch_docs -1, recorded a tokenizer_name of None (a shard folder later refused as
    malformed), and batch_chars 'x' or out_dir None were TypeErrors (battery 19)."""
    from longrope.options import MAX_COUNT, int_problem, text_problem

    for name in ("tokenizer_name", "split", "text_field", "id_field"):
        if (problem := text_problem(values[name], optional=name in ("id_field", "split"))) is not None:
            raise UserError(f"{name} {problem}")
    for name in ("shard_tokens", "batch_docs", "batch_chars"):
        if (problem := int_problem(values[name], 1, MAX_COUNT)) is not None:
            raise UserError(f"{name} {problem}")


def tokenize_corpus(
    tokenizer: Any,
    inputs: list[str],
    out_dir: str | os.PathLike,
    *,
    tokenizer_name: str,
    split: str | None = None,
    text_field: str = "text",
    id_field: str | None = None,
    shard_tokens: int = 1 << 27,
    batch_docs: int = 256,
    batch_chars: int = 4_000_000,
    force: bool = False,
    progress: bool = True,
) -> TokenizeReport:
    """Tokenize ``inputs`` (see :mod:`longrope.data.sources`) into a shard folder ``out_dir``.

    Returns a :class:`TokenizeReport`; raises :class:`UserError` on an empty corpus or bad input.
    Files that cannot be read are skipped, listed in the report and in ``meta.json``.
    """
    t0 = time.perf_counter()
    force, progress = check_flag(force, "force"), check_flag(progress, "progress")
    _check_arguments(tokenizer_name=tokenizer_name, split=split, text_field=text_field, id_field=id_field,
                     shard_tokens=shard_tokens, batch_docs=batch_docs, batch_chars=batch_chars)
    # a link: the folder it points to is replaced, not the link
    out = output_target(path_argument(out_dir, "tokenize_corpus's out_dir (the shard folder to write)"))
    check_replaceable_target(out)
    sources = resolve_sources(_input_specs(inputs), split=split, text_field=text_field, id_field=id_field)
    check_loaded_tokenizer(tokenizer, "tokenize_corpus")
    _check_inputs_and_output(sources, out)
    vhash = vocab_sha256(tokenizer)
    dtype = token_dtype(tokenizer)
    options = {"split": DEFAULT_SPLIT if split is None else split, "text_field": text_field, "id_field": id_field,
               "shard_tokens": int(shard_tokens), "dtype": dtype.name,
               "special_tokens": SPECIAL_TOKEN_POLICY,  # a folder built when </s> in a text was stored as EOS: rebuilt
               "encoding_sha256": encoding_sha256(tokenizer)}  # one vocabulary, other rules: rebuilt
    state = _input_state(sources)
    fp = _fingerprint(state, vhash, options)
    replaces = out.is_dir() and holds_work(out)  # a shard folder rebuilt; a new one is placed, never swapped in
    if not force:
        current = _up_to_date(out, fp, sources, t0)
        if current is not None:
            return current

    building = _new_build_folder(out)
    log = SkipLog()
    writer, files = _write_shards(tokenizer, sources, building, log, dtype=dtype, shard_tokens=shard_tokens,
                                  batch_docs=batch_docs, batch_chars=batch_chars, progress=progress)
    try:
        _check_unchanged(sources, state)
    except UserError:
        shutil.rmtree(building, ignore_errors=True)
        raise
    if writer.n_docs == 0:
        shutil.rmtree(building, ignore_errors=True)
        raise UserError(f"empty corpus: no documents with text in {', '.join(printable(i) for i in inputs)}{log.said()}")
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "tokenizer": {
            "name": tokenizer_name,
            "vocab_sha256": vhash,
            "vocab_size": len(tokenizer),
            "max_token_id": writer.max_token_id,  # what a model's embeddings must cover (TokenCorpus.check_fits)
            "bos_token_id": getattr(tokenizer, "bos_token_id", None),
            "eos_token_id": getattr(tokenizer, "eos_token_id", None),
        },
        "special_tokens": SPECIAL_TOKEN_POLICY,
        "dtype": dtype.name,
        "n_docs": writer.n_docs,
        "n_tokens": writer.n_tokens,
        "inputs": [{"input": s.spec, "kind": s.kind, "role": s.role} for s in sources],
        "options": options,
        "fingerprint": fp,
        "skipped": log.skipped,
        "ignored_files": log.ignored_files,
        **files,
    }
    try:
        write_meta(building, meta)
        _install(building, out, replaces)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise
    return TokenizeReport(out, False, writer.n_docs, writer.n_tokens, len(files["shards"]),
                          time.perf_counter() - t0, log.skipped, log.ignored_files)


def _check_inputs_and_output(sources: list, out: Path) -> None:
    """One-line errors before any work: unreadable inputs, an output that is a file or lies inside an input."""
    for s in sources:
        s.preflight()
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} exists and is not a folder; choose another -o")
    for s in sources:
        if s.kind == "folder" and out.resolve().is_relative_to(Path(s.spec).resolve()):
            raise UserError(f"output folder {out} is inside input folder {s.spec}; its shards would be read as "
                            "input, choose an -o outside the inputs")


def _up_to_date(out: Path, fp: str, sources: list, t0: float) -> TokenizeReport | None:
    """The report of an intact shard folder at ``out`` made from the same inputs and options (the
    fingerprint ``fp``), else None (a hub input is never taken as unchanged)."""
    if not (out / "meta.json").is_file():
        return None
    try:
        old = read_json(out / "meta.json", what="shard folder's meta.json")
    except UserError:
        return None  # damaged: rebuilt
    if not (isinstance(old, dict) and old.get("fingerprint") == fp and not any(s.kind == "hub" for s in sources)):
        return None
    try:
        # every byte: "up to date" must not vouch for a shard with a flipped byte anywhere
        corpus = TokenCorpus.open(out, verify="full")
    except UserError:
        return None  # damaged: rebuilt
    return TokenizeReport(out, True, len(corpus), corpus.n_tokens, len(corpus.meta["shards"]),
                          time.perf_counter() - t0, corpus.meta.get("skipped", []),
                          corpus.meta.get("ignored_files", 0))


def _new_build_folder(out: Path) -> Path:
    """The empty folder the shards are built in, next to ``out`` (after the checks that ``out`` may be
    replaced, and removing what killed builds left)."""
    _check_replaceable(out)
    _remove_stale_builds(out)
    building = out.parent / f"{sibling_prefix(out, _BUILD_TAG)}{os.getpid()}"
    try:
        building.mkdir(parents=True)
    except OSError as exc:
        raise UserError(f"cannot create {building} next to the output folder ({exc.strerror or exc}); "
                        f"{os_error_fix(exc, 'choose an -o in a writable folder')}") from None
    return building


def _write_shards(tokenizer: Any, sources: list, building: Path, log: SkipLog, *, dtype: Any, shard_tokens: int,
                  batch_docs: int, batch_chars: int, progress: bool) -> tuple[ShardWriter, dict]:
    """Tokenize every document of ``sources`` into shards in ``building``; ``(writer, its files)``. On any
    failure ``building`` is removed (an OS error becomes one line)."""
    writer = None
    encode = make_encoder(tokenizer)
    checked = False
    pinned: dict[str, tuple[str, str]] = {}
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = sum(_size(p) for s in sources for p in s.files()) or None
        bar = tqdm(total=total, unit="B", unit_scale=True, desc="tokenize", file=sys.stderr, disable=None)
    try:
        writer = ShardWriter(building, dtype, shard_tokens)
        for batch in _prefetch(_batches(sources, log, batch_docs, batch_chars)):
            texts = [b[1] for b in batch]
            if not checked:  # the fast tokenizer must give the slow one's ids, else the slow one is used
                sample = [texts[0][:_CHECK_CHARS]]
                if not np.array_equal(_slow_encoder(tokenizer)(sample)[0], encode(sample)[0]):
                    encode = _slow_encoder(tokenizer)
                checked = True
            ids = encode_documents(encode, texts, group_chars=batch_chars)
            for (doc_id, _, role, _), arr in zip(batch, ids):
                if len(arr):
                    _refuse_across_roles(doc_id, role, arr, pinned)
                    writer.add(doc_id, arr, role)
                else:
                    log.skip(doc_id, "no tokens")
            if bar is not None:
                bar.update(sum(b[3] for b in batch))
                bar.set_postfix(docs=writer.n_docs, tokens=writer.n_tokens, refresh=False)
        return writer, writer.finish()
    except BaseException as exc:
        if writer is not None:
            writer.abort()
        shutil.rmtree(building, ignore_errors=True)
        if isinstance(exc, OSError) and not is_file_too_large(exc):  # the limit's line is the CLI's (battery 13)
            raise _os_error(exc, building) from None
        raise
    finally:
        if bar is not None:
            bar.close()


def _refuse_across_roles(doc_id: str, role: str | None, tokens: np.ndarray, pinned: dict) -> None:
    """A document pinned to a role whose content is a document pinned to another (the same book under train= and
    search=, under two names): fine-tuning refused the folder only when its stage started, in a pipeline after the
    searches before it (battery 12a); a held-out copy of a searched document was never refused. ``pinned``: content
    hash -> (document, role) so far."""
    if role is None:
        return
    other = pinned.setdefault(content_hash(tokens), (doc_id, role))
    if other[1] != role:
        raise UserError(f"document {printable(doc_id)!r} (role {role}) has the same content as {printable(other[0])!r} "
                        f"(role {other[1]}): a document under two roles would be both held out and searched or "
                        "trained on; give it under one role only")


_BUILD_TAG = "tokenize-"


def _os_error(exc: OSError, building: Path) -> UserError:
    """One line for an OS failure while building: writing the shards (disk full, permissions) or
    reading an input the per-file skipping could not catch (a folder that cannot be listed)."""
    where = exc.filename
    why = exc.strerror or str(exc)
    if where is None or str(where).startswith(str(building)):
        fix = "free space or choose another -o" if is_disk_full(exc) else "choose a writable -o"
        return UserError(f"cannot write shards next to {building.parent} ({why}); {os_error_fix(exc, fix)}")
    return UserError(f"cannot read {printable(where)} ({why}); "
                     f"{os_error_fix(exc, 'fix its permissions or leave it out of --input')}")


def _size(p: Path) -> int:
    try:
        return p.stat().st_size
    except OSError:
        return 0  # vanished or unreadable: the reader skips and reports it


def _check_replaceable(out: Path) -> None:
    """Refuse to replace a folder that holds anything but a shard folder's files."""
    if (why := _not_replaceable(out)) is not None:
        raise UserError(f"output folder {out} {why}; choose a new -o (tokenize replaces its output folder as a whole)")


def _not_replaceable(out: Path) -> str | None:
    """Why ``out`` is not a shard folder tokenize may replace (a file, or a folder holding other files), or None:
    checked before the work and again at the swap (what arrived meanwhile is not replaced; battery 23b)."""
    if not out.is_dir():
        return "is not a folder" if out.exists() or out.is_symlink() else None
    for entry in out.iterdir():
        if entry.name in _OUR_NAMES or (entry.name.startswith("shard-") and entry.name.endswith(".bin")) \
                or is_system_dropping(entry.name):
            continue
        return f"holds {entry.name!r}, which is not part of a shard folder"
    return None


def _remove_stale_builds(out: Path) -> None:
    """Remove build folders of killed runs on the same output (their process is gone)."""
    for prefix in (sibling_prefix(out, _BUILD_TAG), aside_prefix(out)):
        remove_dead_leftovers(out.parent, prefix)


def _install(building: Path, out: Path, replaces: bool) -> None:
    """Put the complete folder ``building`` at ``out``: in place of the shard folder that was there when the run
    began (:func:`~longrope.io.replace_folder`), or where there was none (:func:`~longrope.io.place_new`: two
    tokenize runs into one new -o both succeeded, the first reporting documents the folder no longer held)."""
    try:
        if replaces:
            replace_folder(building, out, problem=_not_replaceable)
        else:
            place_new(building, out)
    except OSError as exc:
        raise UserError(f"cannot move the new shards into {out} ({exc.strerror or exc}); "
                        "check the permissions of its parent folder") from None
