"""tokenize_corpus: round trip, formats, idempotence, corruption, skipped files, bad input."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from longrope.data import TokenCorpus, tokenize_corpus, vocab_sha256
from longrope.data.shards import sample_sha256
from longrope.errors import UserError
from tests.data.data_helpers import TEXTS


def _run(tok, inputs, out, **kw):
    return tokenize_corpus(tok, [str(p) for p in inputs], out, tokenizer_name="test-bpe", progress=False, **kw)


def test_round_trip_all_formats(tokenizer, corpus_dir, tmp_path):
    rep = _run(tokenizer, [corpus_dir], tmp_path / "out")
    assert not rep.up_to_date and rep.n_docs == 7
    c = TokenCorpus.open(tmp_path / "out", verify="full")
    texts = {name: tokenizer.decode(np.asarray(c.tokens(i)).tolist()) for i, name in enumerate(c.names)}
    assert texts == {
        "books/a.txt": TEXTS[0],
        "books/c.jsonl#0": TEXTS[2],
        "books/c.jsonl#2": TEXTS[3],
        "books/d.jsonl.gz#0": TEXTS[4],
        "books/e.parquet#0": TEXTS[0] + " again",
        "books/e.parquet#1": TEXTS[1] + " again",
        "books/sub/b.txt": TEXTS[1],
    }
    assert c.dtype == np.uint16
    assert c.meta["tokenizer"]["vocab_sha256"] == vocab_sha256(tokenizer)
    assert c.n_tokens == int(c.lengths.sum())
    # no special tokens stored
    bos = tokenizer.bos_token_id
    assert all(bos not in np.asarray(c.tokens(i)) for i in range(len(c)))
    # ids equal the tokenizer's own encoding
    i = c.names.index("books/a.txt")
    assert np.asarray(c.tokens(i)).tolist() == tokenizer(TEXTS[0], add_special_tokens=False)["input_ids"]


def test_skipped_unreadable_file_is_reported(tokenizer, corpus_dir, tmp_path):
    (corpus_dir / "bad.jsonl.gz").write_bytes(b"not gzip at all")
    (corpus_dir / "gone.txt").symlink_to(corpus_dir / "deleted.txt")  # a broken link: listed, not dropped silently
    rep = _run(tokenizer, [corpus_dir], tmp_path / "out")
    reasons = {os.path.basename(s["path"]): s["reason"] for s in rep.skipped}
    assert "UTF-8" in reasons["broken.txt"]
    assert "bad.jsonl.gz" in reasons
    assert "broken symbolic link" in reasons["gone.txt"]
    assert rep.ignored_files == 1  # notes.md
    meta = TokenCorpus.open(tmp_path / "out").meta
    assert {os.path.basename(s["path"]) for s in meta["skipped"]} >= {"broken.txt", "bad.jsonl.gz"}
    assert rep.n_docs == 7  # the rest went through


def test_idempotent_rerun(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    first = _run(tokenizer, [corpus_dir], out)
    stamp = {p.name: p.stat().st_mtime_ns for p in out.iterdir()}
    again = _run(tokenizer, [corpus_dir], out)
    assert again.up_to_date and again.n_tokens == first.n_tokens
    assert {p.name: p.stat().st_mtime_ns for p in out.iterdir()} == stamp
    # a changed input rebuilds
    (corpus_dir / "a.txt").write_text(TEXTS[0] + " More.", encoding="utf-8")
    third = _run(tokenizer, [corpus_dir], out)
    assert not third.up_to_date and third.n_tokens > first.n_tokens
    # a damaged folder rebuilds too, without --force
    shard = next(out.glob("shard-*.bin"))
    shard.write_bytes(shard.read_bytes()[:-2])
    fourth = _run(tokenizer, [corpus_dir], out)
    assert not fourth.up_to_date
    TokenCorpus.open(out, verify="full")


def test_several_shards_and_force(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    rep = _run(tokenizer, [corpus_dir], out, shard_tokens=40)
    assert rep.n_shards > 2
    c = TokenCorpus.open(out, verify="full")
    assert sum(s["n_tokens"] for s in c.meta["shards"]) == c.n_tokens
    # fewer shards on a rebuild: stale shard files are removed
    _run(tokenizer, [corpus_dir], out, force=True)
    assert len(list(out.glob("shard-*.bin"))) == 1


def test_truncated_shard_detected(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    _run(tokenizer, [corpus_dir], out)
    shard = out / "shard-00000.bin"
    shard.write_bytes(shard.read_bytes()[:-6])
    with pytest.raises(UserError, match="truncated"):
        TokenCorpus.open(out, verify="size")


@pytest.mark.parametrize("level", ["sample", "full"])
def test_flipped_byte_detected(tokenizer, corpus_dir, tmp_path, level):
    out = tmp_path / "out"
    _run(tokenizer, [corpus_dir], out)
    shard = out / "shard-00000.bin"
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(UserError, match="corrupted"):
        TokenCorpus.open(out, verify=level)
    TokenCorpus.open(out, verify="size")  # sizes alone cannot see it: that is what checksums are for


def test_sample_checksum_covers_large_files(tmp_path):
    p = tmp_path / "big.bin"
    data = bytearray(np.arange(3_000_000, dtype=np.uint8).tobytes())
    p.write_bytes(bytes(data))
    h = sample_sha256(p)
    data[-1] ^= 1  # last byte: always in the sample
    p.write_bytes(bytes(data))
    assert sample_sha256(p) != h


def test_missing_meta_and_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="no such shard folder"):
        TokenCorpus.open(tmp_path / "nope")
    (tmp_path / "x").mkdir()
    with pytest.raises(UserError, match="no meta.json"):
        TokenCorpus.open(tmp_path / "x")


def test_empty_corpus_is_an_error(tokenizer, tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "blank.txt").write_text("   \n", encoding="utf-8")
    with pytest.raises(UserError, match="empty corpus"):
        _run(tokenizer, [tmp_path / "empty"], tmp_path / "out")
    assert not (tmp_path / "out" / "meta.json").exists()


def test_bad_inputs(tokenizer, tmp_path):
    (tmp_path / "x.csv").write_text("a,b", encoding="utf-8")
    with pytest.raises(UserError, match="unsupported file type"):
        _run(tokenizer, [tmp_path / "x.csv"], tmp_path / "out")
    with pytest.raises(UserError, match="no such file"):
        _run(tokenizer, [tmp_path / "missing.txt"], tmp_path / "out")


def test_a_library_caller_s_inputs_and_tokenizer_of_another_kind(tokenizer, corpus_dir, tmp_path):
    """battery 9a: inputs="books" was read letter by letter ("b: no such file"), a Path item was an
    AttributeError, a tokenizer name instead of a tokenizer one too."""
    for bad, match in ((str(corpus_dir), r"inputs must be a list .* \(write \["), (None, "inputs must be a list"),
                       ([5], "inputs must be files, folders")):
        with pytest.raises(UserError, match=match):
            tokenize_corpus(tokenizer, bad, tmp_path / "out", tokenizer_name="t", progress=False)
    with pytest.raises(UserError, match="tokenize_corpus takes a loaded tokenizer"):
        tokenize_corpus("tiny", [str(corpus_dir)], tmp_path / "out", tokenizer_name="t", progress=False)
    report = tokenize_corpus(tokenizer, [corpus_dir], tmp_path / "out", tokenizer_name="t", progress=False)
    assert report.n_docs > 0


@pytest.mark.parametrize("offline_env", [True, False])
def test_hub_offline_is_one_line(tokenizer, tmp_path, monkeypatch, offline_env):
    if offline_env:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    else:  # no hint from the environment: the reachability probe must catch it
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # discard port: refused at once
    with pytest.raises(UserError) as e:
        _run(tokenizer, ["pg19", "someone/corpus"], tmp_path / "out")
    msg = str(e.value)
    assert "\n" not in msg and "offline" in msg and "local" in msg


def test_jsonl_id_field_and_pinned_roles(tokenizer, corpus_dir, tmp_path):
    out = tmp_path / "out"
    tokenize_corpus(tokenizer, [f"heldout={corpus_dir / 'c.jsonl'}", str(corpus_dir / "a.txt")], out,
                    tokenizer_name="t", id_field="id", progress=False)
    c = TokenCorpus.open(out)
    assert c.names == ["c.jsonl#hamlet", "c.jsonl#2", "a.txt"]
    assert [c.pinned_role(i) for i in range(3)] == ["heldout", "heldout", None]


def test_uint32_for_large_vocabularies(tmp_path):
    from longrope.data.shards import token_dtype

    class Big:
        def get_vocab(self):
            return {"a": 0, "b": 70000}

        def __len__(self):
            return 70001

    assert token_dtype(Big()) == np.uint32


def test_writer_flushes_index_in_blocks(tmp_path):
    """More documents than one in-memory block of index rows: every row lands on disk in order."""
    from longrope.data.shards import ShardWriter, write_meta

    w = ShardWriter(tmp_path / "s", np.dtype("<u2"), shard_tokens=50_000)
    n = (1 << 16) + 123
    for k in range(n):
        w.add(f"d{k}", np.full(k % 3 + 1, k % 60000), None)
    files = w.finish()
    write_meta(tmp_path / "s", {"format": "longrope-token-shards", "version": 1, "dtype": "uint16", "n_docs": n,
                                "n_tokens": w.n_tokens, "tokenizer": {"name": "t", "vocab_sha256": "x"}, **files})
    c = TokenCorpus.open(tmp_path / "s", verify="full")
    assert len(c) == n and not (tmp_path / "s" / "index.raw").exists()
    for k in (0, 1, 65535, 65536, n - 1):
        assert c.names[k] == f"d{k}"
        assert np.array_equal(c.tokens(k), np.full(k % 3 + 1, k % 60000))


def test_output_inside_input_and_hidden_files(tokenizer, corpus_dir, tmp_path):
    with pytest.raises(UserError, match="inside input folder"):
        _run(tokenizer, [corpus_dir], corpus_dir / "shards")
    (corpus_dir / ".git").mkdir()
    (corpus_dir / ".git" / "x.txt").write_text("hidden", encoding="utf-8")
    assert _run(tokenizer, [corpus_dir], tmp_path / "out").n_docs == 7


def test_hub_dataset_streamed_through_datasets(tokenizer, tmp_path, monkeypatch):
    """The hub path with a stand-in ``datasets`` module: streaming rows, text field, row ids."""
    import sys
    import types

    from longrope.data import sources

    calls = {}

    def load_dataset(name, split, streaming):
        calls.update(name=name, split=split, streaming=streaming)
        return iter([{"text": TEXTS[0], "n": 1}, {"text": ""}, {"text": TEXTS[1], "n": 3}])

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setattr(sources, "_hub_reachable", lambda timeout=3.0: True)
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    rep = _run(tokenizer, ["pg19"], tmp_path / "out", split="test")
    assert calls == {"name": "deepmind/pg19", "split": "test", "streaming": True}
    c = TokenCorpus.open(tmp_path / "out")
    assert rep.n_docs == 2 and c.names == ["deepmind/pg19/test#0", "deepmind/pg19/test#2"]
    assert tokenizer.decode(list(c.tokens(1))) == TEXTS[1]
    with pytest.raises(UserError, match="no field 'body'"):
        _run(tokenizer, ["user/data"], tmp_path / "out2", text_field="body")


def test_the_same_document_under_two_roles_is_refused_before_the_folder_is_written(tokenizer, tmp_path):
    """battery 12a: `--input train=mine/ search=corpus/search` with a copy of a search book in mine/ was tokenized;
    fine-tuning refused the folder only when it started (in a pipeline, after the searches before it), and a held-out
    copy of a searched document was never refused. Unpinned copies and copies under one role stay allowed."""
    for role in ("train", "heldout"):
        (tmp_path / role).mkdir()
        (tmp_path / role / "copy.txt").write_text(TEXTS[0])
    (tmp_path / "search").mkdir()
    (tmp_path / "search" / "book.txt").write_text(TEXTS[0])
    (tmp_path / "search" / "other.txt").write_text(TEXTS[1])
    for role in ("train", "heldout"):
        out = tmp_path / f"out-{role}"
        with pytest.raises(UserError) as e:
            _run(tokenizer, [f"{role}={tmp_path / role}", f"search={tmp_path / 'search'}"], out)
        assert "has the same content as" in str(e.value) and "give it under one role only" in str(e.value)
        assert not out.exists()
    _run(tokenizer, [tmp_path / "train", f"search={tmp_path / 'search'}"], tmp_path / "unpinned")
    assert len(TokenCorpus.open(tmp_path / "unpinned").names) == 3


def test_a_huge_document_is_encoded_in_pieces_with_the_ids_of_the_whole(tokenizer, tmp_path, monkeypatch):
    """One 50 MB line was encoded in one call (the tokenizer's record of it ~120 bytes a character: 6 GB, over five
    minutes), and again by the slow tokenizer as the fast one's check (battery 17). Now the encoder never sees more
    than a piece of it, cut where the ids of the whole document do not change."""
    import longrope.data.tokenize as tokenize_mod

    text = " ".join(TEXTS * 40) + "\n\nend\r\n  of it"
    (tmp_path / "books").mkdir()
    (tmp_path / "books" / "huge.txt").write_text(text, encoding="utf-8")
    monkeypatch.setattr(tokenize_mod, "PIECE_CHARS", 2000)
    monkeypatch.setattr(tokenize_mod, "_CHECK_CHARS", 1000)
    seen: list[int] = []
    real = tokenize_mod.make_encoder

    def recording(tok):
        encode = real(tok)

        def spy(texts):
            seen.extend(len(t) for t in texts)
            return encode(texts)
        return spy

    monkeypatch.setattr(tokenize_mod, "make_encoder", recording)
    _run(tokenizer, [tmp_path / "books"], tmp_path / "out")
    c = TokenCorpus.open(tmp_path / "out", verify="full")
    assert np.asarray(c.tokens(0)).tolist() == tokenizer(text, add_special_tokens=False)["input_ids"]
    assert max(seen) <= 2000 and len(text) > 10 * 2000


def test_the_api_s_settings_are_checked_as_the_command_s_flags(tokenizer, corpus_dir, tmp_path):
    """tokenize_corpus took shard_tokens 1.5 and batch_docs -1, recorded tokenizer_name None, and batch_chars 'x' or
    out_dir None were TypeErrors (battery 19); nothing is written for a refused setting."""
    out = tmp_path / "shards"
    for kw, match in (({"shard_tokens": 1.5}, "shard_tokens must be an integer"),
                      ({"batch_docs": -1}, "batch_docs must be an integer"),
                      ({"batch_chars": "x"}, "batch_chars must be an integer"),
                      ({"tokenizer_name": None}, "tokenizer_name must be a non-empty string"),
                      ({"text_field": 5}, "text_field must be a non-empty string")):
        with pytest.raises(UserError, match=match):
            tokenize_corpus(tokenizer, [str(corpus_dir)], out, **{"tokenizer_name": "t", "progress": False, **kw})
    with pytest.raises(UserError, match="out_dir"):
        tokenize_corpus(tokenizer, [str(corpus_dir)], None, tokenizer_name="t", progress=False)
    assert not out.exists()


def test_a_split_with_no_hub_input_is_refused_by_the_api_as_by_the_command(tokenizer, corpus_dir, tmp_path):
    """tokenize_corpus(split='bogus') on local files ignored the split, which longrope tokenize refuses (battery 19b):
    resolve_sources makes the one check; the split recorded for local files is still the default's."""
    out = tmp_path / "shards"
    with pytest.raises(UserError, match="split picks a split of a hub dataset and no input is one"):
        tokenize_corpus(tokenizer, [str(corpus_dir)], out, tokenizer_name="t", split="bogus", progress=False)
    assert not out.exists()
    tokenize_corpus(tokenizer, [str(corpus_dir)], out, tokenizer_name="t", progress=False)
    assert json.loads((out / "meta.json").read_text())["options"]["split"] == "train"


def test_a_special_token_spelled_in_a_document_is_stored_as_its_characters(tokenizer, tmp_path, monkeypatch):
    """``</s>`` in an HTML page or ``<s>`` in a post about tokenizers was stored as the EOS and BOS ids, inside
    documents whose shards say no special token is stored (battery 23c); on the fast path and the slow one alike,
    and the caller's tokenizer still parses them afterwards."""
    import longrope.data.tokenize as tk

    text = "strike <s>this</s> out, then <pad> it"
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "page.txt").write_text(text, encoding="utf-8")
    specials = set(tokenizer.all_special_ids)
    for path, patch in (("fast", False), ("slow", True)):
        if patch:  # a tokenizer without a Rust backend to copy takes the slow encoder
            monkeypatch.setattr(tk, "make_encoder", tk._slow_encoder)
        _run(tokenizer, [tmp_path / "in"], tmp_path / path)
        ids = np.asarray(TokenCorpus.open(tmp_path / path).tokens(0)).tolist()
        assert not specials & set(ids), (path, ids)
        assert tokenizer.decode(ids) == text
    assert tokenizer.backend_tokenizer.encode_special_tokens is False  # the caller's is as it was (review)
    assert tokenizer.bos_token_id in tokenizer(text, add_special_tokens=False)["input_ids"]
    # a folder built under the earlier policy (special tokens parsed) is not taken as up to date: rebuilt
    import longrope.data.shards as shards_mod

    monkeypatch.setattr(tk, "SPECIAL_TOKEN_POLICY", "none stored: documents are encoded with add_special_tokens=False")
    monkeypatch.setattr(shards_mod, "SPECIAL_TOKEN_POLICY", tk.SPECIAL_TOKEN_POLICY)
    _run(tokenizer, [tmp_path / "in"], tmp_path / "older")
    monkeypatch.undo()
    assert not _run(tokenizer, [tmp_path / "in"], tmp_path / "older").up_to_date


def test_a_document_longer_than_the_tokenizer_s_max_length_prints_no_reminder(tokenizer, corpus_dir, tmp_path,
                                                                              capfd, caplog):
    """A tokenizer whose model_max_length is small (an export's, a model's own) had transformers print 'Token
    indices sequence length is longer than the specified maximum sequence length' on every tokenize: shards hold
    whole documents, windows are cut later, so there is nothing to act on (battery 23c)."""
    import logging

    tokenizer.model_max_length = 8
    with caplog.at_level(logging.WARNING):
        _run(tokenizer, [corpus_dir], tmp_path / "out")
    said = capfd.readouterr().err + caplog.text
    assert "Token indices sequence length" not in said, said


def test_a_gguf_with_padded_token_slots_reads_the_shards_of_the_folder_it_was_exported_from(tokenizer, corpus_dir,
                                                                                             tmp_path):
    """Battery 27c: a model with more embeddings than its tokenizer has tokens is exported to GGUF with a
    '[PAD{id}]' placeholder in each unused slot; the folder's shards (the very token ids the GGUF's tokenizer
    gives) were refused for the GGUF as "a different vocabulary". Shards made from such a GGUF before (their
    recorded hash counts the placeholders) still serve it."""
    import numpy as np

    from longrope.models.gguf import export_gguf
    from longrope.models.loading import load_tokenizer_of
    from longrope.rope import FactorSet
    from tests.models.model_helpers import TINY_L, TINY_THETA, build_tiny

    model = build_tiny("llama", vocab_size=len(tokenizer) + 24)
    fs = FactorSet(long_factor=np.linspace(1.0, 4.0, 8), short_factor=np.ones(8), original_max_position_embeddings=TINY_L,
                   max_position_embeddings=4 * TINY_L, rope_theta=TINY_THETA)
    read = load_tokenizer_of(export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32").path)
    assert len(read) == len(tokenizer) + 24
    _run(tokenizer, [corpus_dir], tmp_path / "out")
    corpus = TokenCorpus.open(tmp_path / "out")
    corpus.check_tokenizer(read)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    meta["tokenizer"]["vocab_sha256"] = vocab_sha256(read, pad_slots=True)  # made from the GGUF before
    (tmp_path / "out" / "meta.json").write_text(json.dumps(meta))
    TokenCorpus.open(tmp_path / "out").check_tokenizer(read)


def test_shards_record_the_largest_id_they_hold_and_fit_a_model_by_it(tokenizer, corpus_dir, tmp_path):
    """The review of battery 27c: shards were judged by their tokenizer's length, so the shards of a model whose own
    tokenizer adds special tokens past its embeddings (CodeLlama-34b: 32,004 for 32,000 rows) were refused by eval,
    search and finetune although no stored id reached them. The largest id written is recorded and judged."""
    from longrope.data.shards import ShardWriter
    from longrope.errors import ConfigError

    w = ShardWriter(tmp_path / "s", np.dtype("<u2"))
    w.add("a", np.array([5, 17, 3]))
    w.add("b", np.array([2, 41]))
    assert w.max_token_id == 41
    w.abort()
    _run(tokenizer, [corpus_dir], tmp_path / "out")
    corpus = TokenCorpus.open(tmp_path / "out")
    top = corpus.tokenizer_info["max_token_id"]
    assert top == max(int(np.asarray(corpus.tokens(i)).max()) for i in range(len(corpus.names)))
    corpus.check_fits(top + 1)  # every stored id has an embedding, whatever the tokenizer's length
    with pytest.raises(ConfigError, match=f"holds token id {top} but .* has {top} token embeddings"):
        corpus.check_fits(top)
    # shards tokenized before the id was recorded: read from the shards when their tokenizer is the longer (the
    # second review of battery 27: they were no longer judged, and finetune made its folder before failing)
    meta = json.loads((tmp_path / "out" / "meta.json").read_text())
    del meta["tokenizer"]["max_token_id"]
    (tmp_path / "out" / "meta.json").write_text(json.dumps(meta))
    old = TokenCorpus.open(tmp_path / "out")
    assert old.tokenizer_info["vocab_size"] > top
    old.check_fits(top + 1)
    with pytest.raises(ConfigError, match=f"holds token id {top} but"):
        old.check_fits(top)


def test_a_document_id_given_twice_is_refused_naming_the_inputs_and_the_fix(tokenizer, tmp_path):
    """battery 28b: search=a/data.jsonl train=b/data.jsonl stored both files' lines as data.jsonl#0, #1, ...; fine-tuning
    refused every training document as having "the same id" as a search document it shared nothing with, and records
    naming documents by id were ambiguous. --id-field values that repeat (1 and "1") were stored twice too."""
    for name, text in (("a", TEXTS[0]), ("b", TEXTS[1])):
        (tmp_path / name).mkdir()
        (tmp_path / name / "data.jsonl").write_text(json.dumps({"text": text}) + "\n")
    out = tmp_path / "out"
    with pytest.raises(UserError) as e:
        _run(tokenizer, [f"search={tmp_path / 'a' / 'data.jsonl'}", f"train={tmp_path / 'b' / 'data.jsonl'}"], out)
    msg = str(e.value)
    assert "'data.jsonl#0' is given by" in msg and str(tmp_path / "b") in msg and "rename one" in msg
    assert not out.exists()
    _run(tokenizer, [f"search={tmp_path / 'a'}", f"train={tmp_path / 'b'}"], out)  # the folders name them apart
    assert TokenCorpus.open(out).names == ["a/data.jsonl#0", "b/data.jsonl#0"]
    rows = tmp_path / "rows.jsonl"
    rows.write_text(json.dumps({"id": 1, "text": TEXTS[2]}) + "\n" + json.dumps({"id": "1", "text": TEXTS[3]}) + "\n")
    with pytest.raises(UserError, match=r"'rows.jsonl#1' is given twice in .*unique"):
        tokenize_corpus(tokenizer, [str(rows)], tmp_path / "out2", tokenizer_name="t", id_field="id", progress=False)


def test_a_tokenizer_of_the_same_vocabulary_that_encodes_otherwise_rebuilds_the_folder(tokenizer, corpus_dir, tmp_path):
    """battery 28b: the up-to-date check knew the tokenizer by its vocabulary alone: a tokenizer replaced by one of the
    same vocabulary that encodes text otherwise (a lowercasing normalizer here; a changed merge or legacy spacing)
    found the folder "up to date" and kept the shards the old one encoded."""
    import copy

    from tokenizers import normalizers

    other = copy.deepcopy(tokenizer)
    other.backend_tokenizer.normalizer = normalizers.Lowercase()
    assert vocab_sha256(other) == vocab_sha256(tokenizer)
    out = tmp_path / "out"
    first = _run(tokenizer, [corpus_dir], out)
    assert _run(copy.deepcopy(tokenizer), [corpus_dir], out).up_to_date  # the same rules: nothing to do
    again = _run(other, [corpus_dir], out)
    assert not again.up_to_date and again.n_tokens != first.n_tokens
    c = TokenCorpus.open(out)
    assert list(c.tokens(c.names.index("books/a.txt"))) == other(TEXTS[0], add_special_tokens=False)["input_ids"]
