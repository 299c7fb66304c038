"""The embedded default: a tiny Llama trained from scratch and an offline corpus of long documents.

Everything here ships inside the package, so ``longrope demo`` and the tests need no network:

- ``assets/tiny/``: a normal Hugging Face folder (config.json, model.safetensors in fp16,
  tokenizer.json, tokenizer_config.json) plus ``training.json`` (the exact training
  command, seed, resolved config, held-out report) and ``train_log.jsonl``. Load it with
  ``AutoModelForCausalLM.from_pretrained(TINY_MODEL_DIR)`` / ``AutoTokenizer.from_pretrained(...)``
  or ``longrope.models.load_model("tiny")``. Trained at 256 tokens with standard RoPE (theta 1e4,
  head_dim 64), so every longer context is an extension.
- ``assets/corpus/``: ``split.json`` (every document, its role, domain and the SHA-256 of its text)
  and the search and held-out documents as text: books (the PG19 stand-in) and HOL Light proof
  scripts (the Proof-Pile stand-in). Of the training documents only the fine-tuning ones
  (``split.json``'s ``finetune``: six books and three HOL Light files) are shipped, gzip'd under
  ``train/``; the others' hashes are.

Both are rebuilt by the maintainer tool ``python -m tools.train_tiny``, run from a checkout of the
repository (it is not part of the installed package; it uses :mod:`longrope.embedded.corpus`, which is).
At import this module needs only the standard library
(:func:`document_paths` imports the light :mod:`longrope.embedded.corpus`).
"""

from __future__ import annotations

import json
from pathlib import Path

ASSETS_DIR = Path(__file__).resolve().parent / "assets"
TINY_MODEL_DIR = ASSETS_DIR / "tiny"
CORPUS_DIR = ASSETS_DIR / "corpus"

__all__ = [
    "ASSETS_DIR",
    "CORPUS_DIR",
    "TINY_MODEL_DIR",
    "document_paths",
    "heldout_texts",
    "load_split",
    "search_texts",
    "training_info",
]


def load_split(corpus_dir: str | Path = CORPUS_DIR) -> dict:
    """The corpus manifest ``split.json``: ``roles`` (train/search/heldout -> names), ``books``
    (name, role, source, chars, sha256), ``train_sha256`` and token counts under ``notes``."""
    path = Path(corpus_dir) / "split.json"
    if not path.exists():
        from longrope.errors import UserError

        raise UserError(f"{path} is missing; reinstall longrope, or rebuild it from a checkout of the repository "
                        "with `python -m tools.train_tiny`")
    return json.loads(path.read_text(encoding="utf-8"))


def document_paths(role: str, domain: str | None = None, corpus_dir: str | Path = CORPUS_DIR) -> list[Path]:
    """Shipped text files of one role, optionally of one domain (``books`` or ``maths``), in manifest
    order: ``search`` and ``heldout`` as ``.txt``; ``train``: the fine-tuning documents
    (``.txt.gz``; the other training books are not shipped)."""
    from longrope.embedded.corpus import SOURCE_DOMAINS  # source -> domain, for manifests without the field

    corpus_dir = Path(corpus_dir)
    split = load_split(corpus_dir)
    shipped_train = set(split.get("finetune", []))
    books = [(entry, entry.get("domain") or SOURCE_DOMAINS.get(entry.get("source"), "local")) for entry in split["books"]]
    # a role or domain the manifest does not have ('Search', 'math') was an empty list, read as "no documents"
    for name, value, known in (("role", role, sorted({e["role"] for e, _ in books})),
                               ("domain", domain, sorted({d for _, d in books}))):
        if (value is not None or name == "role") and value not in known:  # (a list: [1] is no role, not a TypeError)
            from longrope.errors import UserError, shown

            raise UserError(f"the shipped corpus has no {name} {shown(value)}; its {name}s: {', '.join(known)}")
    out = []
    for entry, dom in books:
        if entry["role"] != role or (domain is not None and dom != domain):
            continue
        if role == "train":
            if entry["name"] in shipped_train:
                out.append(corpus_dir / "train" / f"{entry['name']}.txt.gz")
        else:
            out.append(corpus_dir / role / f"{entry['name']}.txt")
    return out


def _texts(role: str, corpus_dir: str | Path) -> dict[str, str]:
    corpus_dir = Path(corpus_dir)
    names = load_split(corpus_dir)["roles"][role]
    return {n: (corpus_dir / role / f"{n}.txt").read_text(encoding="utf-8") for n in names}


def heldout_texts(corpus_dir: str | Path = CORPUS_DIR) -> dict[str, str]:
    """Held-out books (name -> text), in manifest order: only for final reports, never searched."""
    return _texts("heldout", corpus_dir)


def search_texts(corpus_dir: str | Path = CORPUS_DIR) -> dict[str, str]:
    """Search books (name -> text), in manifest order: what a LongRoPE search scores factors on."""
    return _texts("search", corpus_dir)


def training_info(model_dir: str | Path = TINY_MODEL_DIR) -> dict:
    """``training.json`` of the tiny model (or of ``model_dir``, a folder ``python -m tools.train_tiny`` wrote):
    command, seed, config, run summary and report. A folder without one is a one-line UserError (it was a
    FileNotFoundError traceback, battery 29a)."""
    from longrope.io import read_json

    return read_json(Path(model_dir) / "training.json", what="training record of python -m tools.train_tiny",
                     fix="give the folder tools.train_tiny wrote (its tiny/), or leave model_dir out for the shipped model")
