"""Where documents come from: local files and folders, or Hugging Face datasets (streamed).

Every source yields ``(doc_id, text)`` pairs one at a time, so a multi-GB corpus never sits in
memory (a single ``.txt`` file is one document and is read whole). Document ids are stable
names that do not depend on where the corpus lives on disk or which tokenizer is used, because
the search / held-out split is a hash of them (:mod:`longrope.data.sampling`):

- ``.txt`` (also ``.txt.gz``): one document per file; id = the path relative to the input,
  prefixed by the input's own name (``books/austen/emma.txt``);
- ``.jsonl`` (``.jsonl.gz``): one document per line, text in ``text_field``; id = ``file#line``
  (or ``file#<id_field value>`` with ``id_field``);
- ``.parquet``: one document per row, streamed in record batches with pyarrow; id = ``file#row``;
- a folder: every file above inside it, recursively, in sorted order; other files are ignored
  (counted), unreadable ones are skipped and reported, and the run goes on;
- anything else that is not an existing path is taken as a Hugging Face dataset name
  (``pg19``, ``proof-pile`` or ``user/name``), loaded lazily with ``datasets`` in streaming mode;
  id = ``name/split#row``. Offline, that is a one-line :class:`UserError` saying to pass local files.

**One policy for what cannot be read**: a file that cannot be opened, is not valid UTF-8 (or not
valid gzip/parquet), or whose *name* is not valid UTF-8 (document ids are stored as UTF-8) is
skipped whole; a ``.jsonl`` line that is not JSON, lacks the text field, or holds text that is
not valid Unicode (an escaped lone surrogate such as ``"\\ud800"``) is skipped alone. Every skip
is listed (path and reason) in the report and in ``meta.json``; the run goes on, and fails with
one line only when nothing readable is left (``empty corpus``).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from longrope.errors import ConfigError, UserError
from longrope.hub import hub_offline
from longrope.hub import hub_reachable as _hub_reachable  # module-level name: tests monkeypatch it
from longrope.io import check_no_link_loop, open_regular, text_encoding_problem
from longrope.options import CONTROL_CHARACTER, check_sequence

__all__ = ["Source", "SkipLog", "check_fields", "links_read_twice", "resolve_sources", "HUB_ALIASES", "DOC_SUFFIXES"]

#: Short names for the paper's corpora → (hub id, default text field).
#: the split of a hub dataset read when none is given
DEFAULT_SPLIT = "train"

HUB_ALIASES = {
    "pg19": ("deepmind/pg19", "text"),
    "proof-pile": ("hoskinson-center/proof-pile", "text"),
}

DOC_SUFFIXES = (".txt", ".txt.gz", ".jsonl", ".jsonl.gz", ".parquet")

# Lone UTF-16 surrogates: what a non-UTF-8 file name (os.fsdecode) or an escaped "\ud800" in
# JSON turns into; such a str cannot be encoded as UTF-8 (names.jsonl) nor by the tokenizer.
_SURROGATE = re.compile("[\ud800-\udfff]")


def printable(text: object) -> str:
    """``text`` with lone surrogates and control characters written as escapes (``\\xff``, ``\\t``), safe to print
    on one line (a table's row, a message) and to store as UTF-8: a factor file named with a tab made an eval table's
    row a column wider (battery 21a)."""
    s = str(text)
    if _SURROGATE.search(s):
        try:  # a file name's undecodable bytes (surrogateescape) → their \xNN escapes
            s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
        except UnicodeEncodeError:
            s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return CONTROL_CHARACTER.sub(lambda m: repr(m.group())[1:-1], s)


def valid_text(text: str) -> bool:
    """Whether ``text`` is valid Unicode that UTF-8 (and a tokenizer) can encode."""
    return _SURROGATE.search(text) is None


def argument_text(text: str) -> str | None:
    """A command-line argument as the text typed: under an ASCII locale without UTF-8 mode (``LC_ALL=C
    PYTHONUTF8=0``) Python reads a UTF-8 argument's bytes as lone surrogates; they are the bytes again through
    ``os.fsencode``, and UTF-8 text when they are (battery 14b: such a prompt was refused as "not UTF-8 text").
    None when the argument is not UTF-8 at all."""
    if valid_text(text):
        return text
    try:
        return os.fsencode(text).decode("utf-8")
    except (UnicodeError, ValueError):
        return None


def _suffix(path: Path) -> str | None:
    name = path.name.lower()
    for s in DOC_SUFFIXES:
        if name.endswith(s):
            return s
    return None


@dataclass
class SkipLog:
    """Files and records that could not be read: reported at the end, never fatal on their own."""

    skipped: list[dict] = field(default_factory=list)
    ignored_files: int = 0
    """Files inside input folders whose type is not a document type (not an error)."""

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append({"path": printable(where), "reason": printable(reason)})

    def said(self) -> str:
        """``"; N file(s) skipped, first: PATH (REASON)"``, or '' when none was: what a refusal of too little text
        adds, since the text may be in the files skipped."""
        if not self.skipped:
            return ""
        first = self.skipped[0]
        return f"; {len(self.skipped)} file(s) skipped, first: {first['path']} ({first['reason']})"


@dataclass(frozen=True)
class Source:
    """One ``--input``: a local path or a hub dataset, with an optional fixed role."""

    spec: str
    """The input as given (without a role prefix)."""
    kind: str
    """``"file"``, ``"folder"`` or ``"hub"``."""
    role: str | None = None
    """``"search"``/``"heldout"``/``"train"`` to pin every document of this input to that role, else
    None (then the role comes from a hash of the document id: search or held-out)."""
    split: str = "train"
    text_field: str = "text"
    id_field: str | None = None

    @property
    def label(self) -> str:
        """The prefix of this source's document ids."""
        if self.kind == "hub":
            return f"{HUB_ALIASES.get(self.spec, (self.spec,))[0]}/{self.split}"
        return _own_name(Path(self.spec))

    def files(self) -> list[Path]:
        """The local document files (sorted), for fingerprints and progress totals."""
        p = Path(self.spec)
        if self.kind == "file":
            return [p]
        if self.kind == "folder":
            return sorted(q for q in _listing(p) if q.is_file() and _suffix(q) is not None
                          and not _hidden(q, p))
        return []

    def documents(self, log: SkipLog, links: Mapping[Path, Path] | None = None) -> Iterator[tuple[str, str, int]]:
        """Yield ``(doc_id, text, bytes_read)``; bytes feed the progress bar (0 for the hub). ``links``
        (:func:`links_read_twice`): the files not read, as links to a file read under another name."""
        if self.kind == "hub":
            yield from self._hub_documents(log)
            return
        root = Path(self.spec)
        if self.kind == "folder":
            unlisted: list[tuple[str, str]] = []
            for q in _listing(root, unlisted):
                hidden = _hidden(q, root)
                if q.is_file() and _suffix(q) is None and not hidden:
                    log.ignored_files += 1
                elif q.is_symlink() and not q.exists() and not hidden:  # is_file() is False: it would vanish
                    log.skip(str(q), "broken symbolic link (its target does not exist)")
                elif q.is_symlink() and q.is_dir() and not hidden:  # rglob does not enter it: its files vanished
                    log.skip(str(q), "a symbolic link to a folder, not followed (links may loop or repeat files); "
                                     "give its target as an --input of its own")
            for where, reason in unlisted:
                if not _hidden(Path(where), root):
                    log.skip(where, reason)
        for path in self.files():
            if links and path in links:
                log.skip(str(path), f"a symbolic link to {links[path]}, which is read under its own name: each file "
                                    "is stored once")
                continue
            rel = path.name if self.kind == "file" else path.relative_to(root).as_posix()
            name = rel if self.kind == "file" else f"{_own_name(root)}/{rel}"
            if not valid_text(name):
                log.skip(str(path), "file name is not valid UTF-8 (document ids are stored as UTF-8); rename it")
                continue
            yield from _file_documents(path, name, self, log)

    def preflight(self) -> None:
        """Fail in seconds, before any work, when a hub input cannot be read (offline)."""
        if self.kind != "hub":
            return
        switch = hub_offline(datasets=True)
        if switch:
            raise UserError(f"{self.spec!r} is not a local file or folder and the Hugging Face hub is offline "
                            f"({switch}); download the dataset and pass its files or folder as --input")
        if not _hub_reachable():
            raise UserError(f"{self.spec!r} is not a local file or folder and the Hugging Face hub is unreachable "
                            "(offline?); download the dataset and pass its files or folder as --input")

    def _hub_documents(self, log: SkipLog) -> Iterator[tuple[str, str, int]]:
        hub_id, default_field = HUB_ALIASES.get(self.spec, (self.spec, self.text_field))
        text_field = self.text_field if self.text_field != "text" else default_field
        self.preflight()
        try:
            import datasets  # lazy: only hub inputs need it
        except ImportError as exc:
            raise UserError(f"{self.spec!r} is not a local file or folder; reading hub datasets needs the "
                            "'datasets' package (pip install 'longrope[hub]') or pass local files") from exc
        try:
            ds = datasets.load_dataset(hub_id, split=self.split, streaming=True)
            rows = iter(ds)
            first = next(rows, None)
        except Exception as exc:  # network/hub errors have many types; all mean the same here
            raise UserError(f"cannot load {hub_id!r} (split {self.split!r}) from the Hugging Face hub "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0][:120] if str(exc) else 'no detail'}); "
                            "offline? pass local .txt/.jsonl/.parquet files or folders instead") from None
        if first is None:
            return
        if text_field not in first:
            raise UserError(f"dataset {hub_id!r} has no field {text_field!r} (fields: {', '.join(first)}); "
                            "pick one with --text-field")
        i = bad = 0
        for row in _chain_one(first, rows):
            text = row.get(text_field)
            rid = row.get(self.id_field) if self.id_field else None
            doc_id = f"{self.label}#{rid if rid is not None else i}"
            if _has_text(text) and valid_text(text) and valid_text(doc_id):
                yield doc_id, text, 0
            else:  # listed as .jsonl lines and parquet rows are (they were dropped without a word)
                bad += 1
            i += 1
        if bad:
            log.skip(self.label, f"{bad} row(s) whose {text_field!r} is not a string, is {_EMPTY}, or whose text or "
                                 "id is not valid Unicode")


def changed_while_read(where: str | os.PathLike) -> UserError:
    """The refusal of inputs that changed while they were listed or read (the one wording of it)."""
    return UserError(f"input {printable(os.fspath(where))} changed while it was read; nothing was written: run tokenize "
                     "again once the inputs no longer change")


def _hidden(path: Path, root: Path) -> bool:
    """Whether ``path`` lies in a hidden place under the input folder ``root`` (a name starting with '.'): not read."""
    return any(part.startswith(".") for part in path.relative_to(root).parts)


def _listing(root: Path, unlisted: list[tuple[str, str]] | None = None) -> list[Path]:
    """Everything under the input folder ``root``, sorted, as ``root.rglob("*")`` lists it (links to folders listed,
    not entered). A folder inside it removed or replaced by a file while it was listed is a change of the inputs,
    refused (it was "No such file or directory (PATH)" with no fix, battery 23b). A folder that cannot be listed (a
    path past the system's length limit, no permission) is skipped: ``(folder, reason)`` appended to ``unlisted``; a
    path too long stopped the whole run with the rest of the inputs unread (battery 31c)."""
    import errno

    out: list[Path] = []

    def cannot_list(exc: OSError, what: str = "folder") -> None:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            raise changed_while_read(exc.filename or root) from None
        if unlisted is not None:
            why = " (the path passes the system's length limit)" if exc.errno == errno.ENAMETOOLONG else ""
            unlisted.append((os.fspath(exc.filename or root), f"{what} not read: {exc.strerror or exc}{why}"))

    for folder, dirs, files in os.walk(root, onerror=cannot_list):
        for name in (*dirs, *files):
            path = Path(folder, name)
            try:
                os.lstat(path)  # a name that puts the path past the length limit lists but cannot be looked at
            except OSError as exc:
                cannot_list(exc, "folder" if name in dirs else "file")
                if name in dirs:
                    dirs.remove(name)  # not entered: its path is the one that cannot be used
                continue
            out.append(path)
    return sorted(out)


def _chain_one(first, rest):
    yield first
    yield from rest


def _open_text(path: Path):
    """A .txt/.jsonl file as UTF-8 text; a byte-order mark (Windows tools write one) is not text: it skipped a
    .jsonl's first line as "not JSON" and began a .txt document with U+FEFF (battery 11a)."""
    return io.TextIOWrapper(_open_bytes(path), encoding="utf-8-sig", errors="strict", newline="")


def _open_bytes(path: Path):
    """A document file's bytes (a .gz file's, unpacked), opened as a regular file only: a file listed as one and
    replaced while the inputs were read by a named pipe (open waited for a writer for ever) or a link to a device
    (/dev/zero read until memory ran out) is an OSError, skipped, and the change refused (battery 22b)."""
    raw = open_regular(path)
    return _GzipReader(raw) if path.name.lower().endswith(".gz") else raw


class _GzipReader(gzip.GzipFile):
    """A .gz file unpacked from an open file, which closing it closes too (GzipFile leaves a given one open)."""

    def __init__(self, raw) -> None:
        super().__init__(fileobj=raw, mode="rb")
        self._raw = raw

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._raw.close()


def _leading_bytes(path: Path) -> bytes:
    """The first bytes of a document file's text (a .gz file's, unpacked), for what its encoding is."""
    try:
        with _open_bytes(path) as f:
            return f.read(4)
    except (OSError, EOFError):
        return b""


def _file_documents(path: Path, name: str, src: Source, log: SkipLog) -> Iterator[tuple[str, str, int]]:
    suffix = _suffix(path)
    try:
        size = path.stat().st_size
    except OSError as exc:
        log.skip(str(path), f"{type(exc).__name__}: {exc.strerror or exc}")
        return
    try:
        if suffix in (".txt", ".txt.gz"):
            with _open_text(path) as f:
                text = f.read()
            if (problem := text_encoding_problem(text, path=path)) is not None:  # UTF-16 without a BOM
                log.skip(str(path), problem)
            elif _has_text(text):
                yield name, text, size
            else:
                log.skip(str(path), f"the document is {_EMPTY}")
        elif suffix in (".jsonl", ".jsonl.gz"):
            yield from _jsonl_documents(path, name, src, log, size)
        elif suffix == ".parquet":
            yield from _parquet_documents(path, name, src, log, size)
    except UnicodeDecodeError as exc:
        log.skip(str(path), text_encoding_problem(_leading_bytes(path), exc, path) or "not UTF-8 text")
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        log.skip(str(path), f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or exc}")


def _jsonl_documents(path, name, src, log, size) -> Iterator[tuple[str, str, int]]:
    bad = invalid = empty = 0
    with _open_text(path) as f:
        for lineno, line in enumerate(f):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                text = row[src.text_field]
            except (json.JSONDecodeError, KeyError, TypeError, IndexError, ValueError, RecursionError):
                bad += 1
                continue
            if not isinstance(text, str):
                bad += 1
                continue
            if not text.strip():
                empty += 1
                continue
            rid = row.get(src.id_field) if src.id_field and isinstance(row, dict) else None
            doc_id = f"{name}#{rid if rid is not None else lineno}"
            if not valid_text(text) or not valid_text(doc_id):
                invalid += 1
                continue
            # progress counts characters, not bytes: close enough for a bar, and no re-encoding
            yield doc_id, text, len(line)
    if bad:
        log.skip(f"{path}", f"{bad} line(s) without a string field {src.text_field!r} or not JSON")
    if empty:
        log.skip(f"{path}", f"{empty} line(s) whose {src.text_field!r} is {_EMPTY}")
    if invalid:
        log.skip(f"{path}", f"{invalid} line(s) whose text or id is not valid Unicode (lone surrogate escapes)")


def _parquet_documents(path, name, src, log, size) -> Iterator[tuple[str, str, int]]:
    import pyarrow.parquet as pq

    with open_regular(path) as raw:
        yield from _parquet_rows(pq, raw, path, name, src, log, size)


def _parquet_rows(pq, raw, path, name, src, log, size) -> Iterator[tuple[str, str, int]]:
    try:
        pf = pq.ParquetFile(raw)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid etc. for corrupt files
        log.skip(str(path), f"unreadable parquet ({type(exc).__name__}: {str(exc)[:100]})")
        return
    cols = [src.text_field] + ([src.id_field] if src.id_field else [])
    missing = [c for c in cols if c not in pf.schema_arrow.names]
    if missing:
        log.skip(str(path), f"no column {missing[0]!r} (columns: {', '.join(pf.schema_arrow.names)})")
        return
    n_rows = max(pf.metadata.num_rows, 1)
    row = bad = 0
    for batch in pf.iter_batches(columns=cols, batch_size=1024):
        texts = batch.column(0).to_pylist()
        ids = batch.column(1).to_pylist() if src.id_field else [None] * len(texts)
        for text, rid in zip(texts, ids):
            if _has_text(text):
                yield f"{name}#{rid if rid is not None else row}", text, size // n_rows
            else:  # listed as .jsonl lines are (rows of numbers or nulls were dropped without a word)
                bad += 1
            row += 1
    if bad:
        log.skip(str(path), f"{bad} row(s) whose {src.text_field!r} is not a string or is {_EMPTY}")


#: what a document without text is: skipped whatever its format (a .jsonl line or a parquet row of spaces was stored as a
#: document, where a .txt file of them was skipped as empty; battery 28b)
_EMPTY = "empty or only whitespace"


def _has_text(text: object) -> bool:
    """Whether a document's text is text: a string with more than whitespace in it (one policy for every format)."""
    return isinstance(text, str) and bool(text.strip())


def _own_name(path: Path) -> str:
    """The name a folder input gives its documents' ids: its own name, also when spelled '.', '..' or 'a/..'
    (their ``name`` is empty: ids began with '/', and the search/held-out split of the same folder changed
    with the way it was named)."""
    return path.name if path.name not in ("", ".", "..") else path.resolve().name


def check_fields(text_field: object, id_field: object) -> None:
    """Refuse an id field that is the text field: a parquet input was an IndexError traceback (the column read once),
    a .jsonl input named each document by its whole text (battery 28b)."""
    if id_field is not None and id_field == text_field:
        raise ConfigError(("id_field", "text_field"), "{name0} " + f"{printable(id_field)!r} is the text field "
                          "({name1}): documents would be named by their whole text; give another field, or leave {name0} "
                          "out (documents are then named by their line or row number)")


def resolve_sources(
    specs: list[str],
    *,
    split: str | None = None,
    text_field: str = "text",
    id_field: str | None = None,
) -> list[Source]:
    """Turn ``--input`` strings into sources. ``search=PATH`` / ``heldout=PATH`` / ``train=PATH`` pin a
    role (``train``: fine-tuning documents, never sampled for a search or a held-out report). ``split`` picks a
    hub dataset's split (``train`` when not given); given with no hub input it is refused (it would be ignored)."""
    out = []
    if not specs:
        raise UserError("no --input given; pass files, folders or a dataset name")
    check_fields(text_field, id_field)
    check_sequence(specs, "specs", '["search=PATH"]')  # a number was "'int' object is not iterable" (battery 21b)
    for spec in specs:
        if isinstance(spec, os.PathLike):
            spec = os.fspath(spec)
        if not isinstance(spec, str):  # a number among them was an AttributeError on startswith
            raise UserError(f"each input must be a path or dataset name (text), got {type(spec).__name__} in specs")
        role, given = None, spec
        for r in ROLES:
            if spec.startswith(r + "=") and not Path(spec).exists():
                role, spec = r, spec[len(r) + 1 :]
        if not spec.strip():  # '' is Path('.'): an unset variable ("search=$DIR") would read the current folder
            raise UserError(f"--input {given!r} names no file, folder or dataset; give one"
                            + (f" after '{role}='" if role else "") + " ('.' for the current folder)")
        prefix = re.match(r"([A-Za-z_][\w-]*)=", spec)
        if role is None and prefix and not Path(spec).exists():
            raise UserError(f"{spec}: unknown role {prefix.group(1)!r}; prefix an input with "
                            f"{', '.join(r + '=' for r in ROLES)} or nothing")
        p = Path(spec)
        check_no_link_loop(p, "--input")  # (exists() is False for it: said missing, or read as a dataset name)
        if p.is_dir():
            if (p / "meta.json").is_file() and (p / "index.npy").is_file():  # was "empty corpus: ... names.jsonl"
                raise UserError(f"{spec} is a shard folder from 'longrope tokenize' (already tokens): pass it as "
                                "--data to search, eval or finetune, or give the text files it was made from")
            kind = "folder"
        elif p.is_file():
            if _suffix(p) is None:
                raise UserError(f"{spec}: unsupported file type; use .txt, .jsonl or .parquet "
                                "(optionally .txt.gz/.jsonl.gz)")
            kind = "file"
        elif p.exists():
            from longrope.io import SPECIAL_FILE

            raise UserError(f"{spec} is {SPECIAL_FILE}, not a text file or a folder of them: give the files "
                            "(.txt, .jsonl, .parquet) or their folder")
        elif spec in HUB_ALIASES or (spec.count("/") == 1 and not spec.startswith((".", "/"))
                                     and _suffix(p) is None):
            kind = "hub"
        else:
            raise UserError(f"{spec}: no such file or folder (and not a dataset name like 'pg19' or 'user/name')")
        out.append(Source(spec, kind, role, DEFAULT_SPLIT if split is None else split, text_field, id_field))
    if split is not None and not any(s.kind == "hub" for s in out):
        raise ConfigError(("split", "input"), "{name0} picks a split of a hub dataset and no {name1} is one; drop "
                          "{name0}")
    given = [name for name, set_ in (("text_field", text_field != "text"), ("id_field", id_field is not None)) if set_]
    if given and not any(s.kind == "hub" or any(_suffix(f) not in (".txt", ".txt.gz") for f in s.files()) for s in out):
        raise ConfigError((given[0], "input"), "{name0} names a field of .jsonl/.parquet/hub rows and no {name1} holds "
                          "rows (a .txt file is one document); drop {name0}")
    _refuse_overlaps(out)
    return out


def links_read_twice(sources: list[Source]) -> dict[Path, Path]:
    """The symbolic links among the inputs' files that lead to a file read anyway, each mapped to that file (the
    one reached without a link, else the first link to it). A link in a folder to another file of the inputs
    stored the document twice, under two names and possibly two roles: with ``search=A heldout=B`` and a link in A
    to a file of B, a held-out document was also searched on (battery 11a)."""
    listed = [p for s in sources if s.kind != "hub" for p in s.files()]
    first = {p.resolve(): p for p in reversed(listed) if not p.is_symlink()}
    twice = {}
    for p in listed:
        if p.is_symlink():
            target = p.resolve()
            if target in first:
                twice[p] = first[target]
            else:
                first[target] = p
    return twice


#: the roles an ``--input`` may be pinned to (``role=PATH``)
ROLES = ("search", "heldout", "train")


def _refuse_overlaps(sources: list[Source]) -> None:
    """Two local inputs that hold the same file (the same path twice, or a file inside a folder also
    given) would store its documents twice, under two roles when they are pinned differently: a
    held-out document that is also searched on or trained on is no longer held out."""
    local = [(s, Path(s.spec).resolve()) for s in sources if s.kind != "hub"]
    for i, (a, pa) in enumerate(local):
        for b, pb in local[i + 1:]:
            if pa == pb or pa in pb.parents or pb in pa.parents:
                def show(x: Source) -> str:
                    return f"{x.role}={x.spec}" if x.role else x.spec
                raise UserError(f"--input {show(a)} and {show(b)} hold the same files; give each file once "
                                "(a document under two roles would be both held out and searched or trained on)")
