"""The corpus split never leaks held-out or search books into training (names and contents)."""

from __future__ import annotations

import pytest

from longrope.embedded import CORPUS_DIR, heldout_texts, load_split, search_texts
from longrope.embedded.corpus import (
    Book,
    clean_gutenberg,
    split_books,
    text_sha256,
    verify_manifest,
    write_corpus,
)
from longrope.errors import UserError


def test_shipped_roles_are_disjoint_by_name():
    roles = load_split()["roles"]
    train, search, heldout = set(roles["train"]), set(roles["search"]), set(roles["heldout"])
    assert train and search and heldout
    assert not train & search
    assert not train & heldout
    assert not search & heldout
    books = load_split()["books"]
    assert len({b["name"] for b in books}) == len(books)  # every book exactly once


def test_shipped_texts_are_not_training_texts_by_content():
    split = load_split()
    train_hashes = set(split["train_sha256"])
    assert len(train_hashes) == len(split["roles"]["train"])
    recorded = {b["name"]: b["sha256"] for b in split["books"]}
    for texts in (search_texts(), heldout_texts()):
        for name, text in texts.items():
            digest = text_sha256(text)
            assert digest == recorded[name], f"{name} differs from its manifest hash"
            assert digest not in train_hashes, f"{name} is a training text"
    # and no paragraph-sized piece of a held-out book appears in a search book
    search_blob = "\n".join(search_texts().values())
    for name, text in heldout_texts().items():
        for start in range(0, len(text) - 400, len(text) // 7):
            assert text[start : start + 400] not in search_blob, name
    assert verify_manifest(split, CORPUS_DIR) == []


def test_only_the_finetune_training_books_are_shipped():
    split = load_split()
    shipped = {p.stem for p in CORPUS_DIR.rglob("*.txt")}
    assert shipped == set(split["roles"]["search"]) | set(split["roles"]["heldout"])
    assert {p.name for p in (CORPUS_DIR / "train").iterdir()} == {f"{n}.txt.gz" for n in split["finetune"]}


def _books():
    return [Book(n, f"text of {n}\n" * 5, "local") for n in ("a", "b", "c", "d")]


def test_split_books_assigns_the_rest_to_training():
    s = split_books(_books(), ["b"], ["c", "d"])
    assert [b.name for b in s.train] == ["a"]
    assert [b.name for b in s.search] == ["b"] and [b.name for b in s.heldout] == ["c", "d"]
    m = s.manifest()
    assert m["train_sha256"] == [text_sha256("text of a\n" * 5)]


def test_split_rejects_a_book_in_two_roles_or_unknown_names():
    with pytest.raises(UserError, match="both search and held-out"):
        split_books(_books(), ["b"], ["b"])
    with pytest.raises(UserError, match="not in the corpus"):
        split_books(_books(), ["zz"], ["c"])
    with pytest.raises(UserError, match="no train books"):
        split_books(_books()[1:], ["b"], ["c", "d"])


def test_split_rejects_a_held_out_copy_of_a_training_text():
    books = _books() + [Book("a_copy", "text of a\n" * 5, "local")]
    with pytest.raises(UserError, match="same text as a training book"):
        split_books(books, ["b"], ["a_copy"])


def test_verify_manifest_catches_tampering(tmp_path):
    s = split_books(_books(), ["b"], ["c"])
    write_corpus(s, tmp_path)
    manifest = s.manifest()
    assert verify_manifest(manifest, tmp_path) == []
    (tmp_path / "heldout" / "c.txt").write_text("text of a\n" * 5)  # now a training text
    problems = verify_manifest(manifest, tmp_path)
    assert any("manifest hash" in p for p in problems)
    assert any("training book" in p for p in problems)


def test_clean_gutenberg_strips_header_and_licence():
    raw = (
        "\ufeffThe Project Gutenberg EBook of X\r\n\r\nLicence words.\r\n"
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\nCall me Ishmael.  \r\n\r\n\r\n\r\n\r\n\r\n"
        "The end.\r\n*** END OF THIS PROJECT GUTENBERG EBOOK X ***\r\nMore licence.\r\n"
    )
    out = clean_gutenberg(raw)
    assert out == "Call me Ishmael.\n\n\nThe end.\n"
    assert "Gutenberg" not in out


def test_shipped_texts_carry_no_gutenberg_boilerplate():
    for text in list(search_texts().values()) + list(heldout_texts().values()):
        assert "*** START OF" not in text and "PROJECT GUTENBERG" not in text.upper()[:2000]
        assert "\r" not in text


def test_shipped_split_has_books_and_formal_maths_in_every_role():
    """Books are the PG19 stand-in, HOL Light proof scripts the Proof-Pile stand-in."""
    from longrope.embedded import document_paths

    split = load_split()
    for role in ("train", "search", "heldout"):
        domains = {b["domain"] for b in split["books"] if b["role"] == role}
        assert domains == {"books", "maths"}, role
    assert {b["source"] for b in split["books"] if b["domain"] == "maths"} == {"hol-light"}
    for role in ("search", "heldout"):
        for dom in ("books", "maths"):
            paths = document_paths(role, dom)
            assert paths and all(p.is_file() and p.parent.name == role for p in paths), (role, dom)
        assert sorted(document_paths(role)) == sorted(document_paths(role, "books") + document_paths(role, "maths"))


def test_hol_light_documents_are_named_by_folder_and_cleaned(tmp_path):
    from longrope.embedded.corpus import _HOL_EXTRA, _HOL_TRAIN_DIR, hol_light_documents

    root = tmp_path / "usr/share/hol-light"
    (root / _HOL_TRAIN_DIR).mkdir(parents=True)
    (root / _HOL_TRAIN_DIR / "Fourier.ml").write_text("let X = prove\r\n (`T`,   \r\n\n\n\n\n  SIMP_TAC[]);;\r\n")
    for rel in _HOL_EXTRA:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(f"(* {rel} *)\n")
    docs = hol_light_documents(root)
    assert [d.name for d in docs][:1] == [f"hol_{_HOL_TRAIN_DIR.lower()}_fourier"]
    assert docs[0].text == "let X = prove\n (`T`,\n\n\n  SIMP_TAC[]);;\n"
    assert all(d.source == "hol-light" and d.domain == "maths" for d in docs)
    (root / _HOL_EXTRA[0]).unlink()
    with pytest.raises(UserError, match="hol-light"):
        hol_light_documents(root)


def test_fetch_books_rejects_unknown_domains(tmp_path):
    from longrope.embedded.corpus import fetch_books

    for bad in (["code"], []):
        with pytest.raises(UserError, match="domains"):
            fetch_books(tmp_path, bad)
    assert not any(tmp_path.iterdir())  # nothing downloaded before the check


def test_shipped_finetune_documents_are_training_books_disjoint_from_search_and_heldout():
    """The fine-tuning documents ship gzip'd, hash to their manifest entry, and are training books:
    no search or held-out book by name or by text."""
    import gzip

    from longrope.embedded import CORPUS_DIR, document_paths
    from longrope.embedded.corpus import DEFAULT_FINETUNE, text_sha256, verify_manifest

    split = load_split()
    assert split["finetune"] == list(DEFAULT_FINETUNE)
    paths = document_paths("train")
    assert [p.name for p in paths] == [f"{n}.txt.gz" for n in split["roles"]["train"] if n in DEFAULT_FINETUNE]
    assert {b["domain"] for b in split["books"] if b["name"] in DEFAULT_FINETUNE} == {"books", "maths"}
    other = {b["sha256"] for b in split["books"] if b["role"] != "train"}
    for path in paths:
        digest = text_sha256(gzip.decompress(path.read_bytes()).decode("utf-8"))
        assert digest in split["train_sha256"] and digest not in other
    assert verify_manifest(split, CORPUS_DIR) == []


def test_verify_manifest_catches_a_damaged_or_misrolled_finetune_document(tmp_path):
    import shutil

    from longrope.embedded import CORPUS_DIR
    from longrope.embedded.corpus import verify_manifest

    corpus = tmp_path / "corpus"
    shutil.copytree(CORPUS_DIR, corpus)
    split = load_split(corpus)
    name = split["finetune"][0]
    (corpus / "train" / f"{name}.txt.gz").write_bytes(__import__("gzip").compress(b"other text"))
    assert any("does not match" in p for p in verify_manifest(split, corpus))
    split["finetune"] = [split["roles"]["heldout"][0]]
    assert any("not a training book" in p for p in verify_manifest(split, corpus))


def test_a_role_or_domain_the_shipped_corpus_lacks_is_refused_not_an_empty_list():
    """document_paths("Search") or document_paths("heldout", "math") returned [] without a word: a caller tokenized
    no documents (battery 29a). The manifest's roles and domains are the ones there are."""
    from longrope.embedded import document_paths
    from longrope.errors import UserError

    assert document_paths("search") and document_paths("heldout", "maths") and document_paths("train", "books")
    for args, said in ((("Search",), "no role 'Search'; its roles: heldout, search, train"),
                       (("heldout", "math"), "no domain 'math'; its domains: books, maths"),
                       (([1],), r"no role \[1\]")):
        with pytest.raises(UserError, match=said):
            document_paths(*args)
