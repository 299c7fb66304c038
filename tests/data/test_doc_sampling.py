"""Seeded sampling and the search / held-out split."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.data import TokenCorpus, document_role, sample_documents
from longrope.data.shards import ShardWriter, write_meta
from longrope.errors import UserError


def make_corpus(folder, lengths, names=None, roles=None):
    """A shard folder written directly (token i of doc k = (k + i) % 300) with a minimal meta."""
    w = ShardWriter(folder, np.dtype("<u2"), shard_tokens=500)
    names = names or [f"doc{k}" for k in range(len(lengths))]
    roles = roles or [None] * len(lengths)
    for k, (n, name, role) in enumerate(zip(lengths, names, roles)):
        w.add(name, (np.arange(n) + k) % 300, role)
    files = w.finish()
    write_meta(folder, {"format": "longrope-token-shards", "version": 1, "dtype": "uint16",
                        "n_docs": w.n_docs, "n_tokens": w.n_tokens,
                        "tokenizer": {"name": "t", "vocab_sha256": "x"}, **files})
    return TokenCorpus.open(folder)


def test_role_is_stable_and_independent_of_everything_but_the_id():
    ids = [f"pg19/test#{i}" for i in range(2000)]
    roles = [document_role(i) for i in ids]
    assert roles == [document_role(i) for i in ids]
    share = roles.count("heldout") / len(roles)
    assert 0.45 < share < 0.55
    # raising the fraction only moves documents from search to held-out
    more = [document_role(i, 0.8) for i in ids]
    assert all(m == "heldout" for r, m in zip(roles, more) if r == "heldout")
    assert document_role("x", 0.0) == "search" and document_role("x", 1.0) == "heldout"
    with pytest.raises(UserError, match="heldout_fraction"):
        document_role("x", 1.5)


def test_search_and_heldout_never_share_documents(tmp_path):
    c = make_corpus(tmp_path / "c", [100] * 60)
    for seed in range(5):
        s = {x.doc_index for x in sample_documents(c, 50, 60, seed=seed, split="search")}
        h = {x.doc_index for x in sample_documents(c, 50, 60, seed=seed, split="heldout")}
        assert s and h and not s & h
        assert len(s) + len(h) == 60


def test_seeded_and_length_filtered(tmp_path):
    lengths = [10, 200, 30, 150, 400, 90, 120, 60, 300, 250]
    c = make_corpus(tmp_path / "c", lengths)
    a = sample_documents(c, 100, 4, seed=7, split="all")
    b = sample_documents(c, 100, 4, seed=7, split="all")
    assert [x.doc_index for x in a] == [x.doc_index for x in b]
    assert all(lengths[x.doc_index] >= 100 for x in a) and len(a) == 4
    others = {tuple(x.doc_index for x in sample_documents(c, 100, 4, seed=s, split="all")) for s in range(10)}
    assert len(others) > 1  # the seed matters
    # the sample is the document itself (a view)
    x = a[0]
    assert np.array_equal(x.tokens, (np.arange(lengths[x.doc_index]) + x.doc_index) % 300)
    assert len(sample_documents(c, 100, 50, seed=0, split="all")) == 6  # fewer qualify


def test_too_long_names_the_longest(tmp_path):
    c = make_corpus(tmp_path / "c", [10, 700, 30], names=["a", "the-long-one", "c"])
    with pytest.raises(UserError, match=r"the-long-one.*700 tokens"):
        sample_documents(c, 1000, 2, seed=0, split="all")


def test_windows_per_doc_do_not_overlap(tmp_path):
    c = make_corpus(tmp_path / "c", [100, 35])
    s = sample_documents(c, 30, 10, seed=0, split="all", windows_per_doc=3)
    by_doc = {}
    for x in s:
        by_doc.setdefault(x.doc_index, []).append(x)
        assert len(x.tokens) == 30
        assert np.array_equal(x.tokens, (np.arange(x.offset, x.offset + 30) + x.doc_index) % 300)
    assert [x.offset for x in by_doc[0]] == [0, 30, 60]
    assert [x.offset for x in by_doc[1]] == [0]
    assert by_doc[0][1].doc_id == "doc0@30"


def test_pinned_roles_win(tmp_path):
    c = make_corpus(tmp_path / "c", [50] * 4, roles=["heldout", "heldout", "search", "search"])
    assert {x.doc_index for x in sample_documents(c, 10, 9, seed=0, split="heldout")} == {0, 1}
    assert {x.doc_index for x in sample_documents(c, 10, 9, seed=0, split="search")} == {2, 3}


@pytest.mark.parametrize("kw,match", [(dict(split="train"), "split"), (dict(n=0), "n must"),
                                      (dict(min_tokens=-1), "min_tokens"),
                                      # battery 9a: numpy's ValueError / TypeError tracebacks
                                      (dict(seed=-1), "seed must be an integer"), (dict(seed=1.5), "seed must be"),
                                      (dict(seed="0"), "seed must be")])
def test_bad_arguments(tmp_path, kw, match):
    c = make_corpus(tmp_path / "c", [50])
    args = dict(min_tokens=10, n=1, seed=0, split="all") | kw
    with pytest.raises(UserError, match=match):
        sample_documents(c, args.pop("min_tokens"), args.pop("n"), **args)


def test_a_split_emptied_by_pinned_roles_says_so_not_change_the_fraction(tmp_path):
    """Every document tokenized as train=PATH: "no heldout documents among 3 (heldout fraction 0.5); use --split
    all or change the fraction", but no fraction moves a pinned document (battery 11a)."""
    c = make_corpus(tmp_path / "c", [50] * 3, roles=["train", "train", "search"])
    with pytest.raises(UserError, match=r"every document was pinned .*\(1 to search, 2 to train; .*heldout=PATH") as e:
        sample_documents(c, 10, 1, seed=0, split="heldout")
    assert "change the fraction" not in str(e.value)
    c = make_corpus(tmp_path / "d", [50] * 3, roles=["train", None, None])
    with pytest.raises(UserError, match="1 pinned to other roles.*change the fraction"):
        sample_documents(c, 10, 1, seed=0, split="heldout", heldout_fraction=0.0)
def test_a_document_id_that_is_not_a_string_is_refused():
    """document_role(b"x") hashed "b'x'", a role other than "x"'s, without a word (battery 20b)."""
    from longrope.data.sampling import document_role
    from longrope.errors import UserError

    assert document_role("x") in ("heldout", "search")
    for bad in (b"x", 3, None):
        with pytest.raises(UserError, match="doc_id must be a string"):
            document_role(bad)
