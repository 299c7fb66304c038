"""Training windows: which documents, how they are packed, and the short/long schedule."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.data import TokenCorpus
from longrope.errors import UserError
from longrope.train.data import (
    IGNORE_INDEX,
    Cursor,
    PackedWindows,
    is_short_step,
    materialize,
    row_targets,
    training_documents,
)
from tests.train.train_helpers import pattern_doc, write_corpus


def _docs(lengths, seed=0):
    return [np.arange(n, dtype=np.int64) + 1000 * (k + 1) + seed for k, n in enumerate(lengths)]


@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("max_segment", [8, 64])
def test_rows_cover_the_stream_exactly_once_per_epoch(bos, max_segment):
    lengths = np.array([5, 40, 1, 17, 63, 9])
    docs = _docs(lengths)
    windows = PackedWindows(lengths, seed=3, bos=bos)
    rows, cursor = windows.rows(Cursor(), 20, 32, max_segment)
    for row in rows:
        sizes = [int(bos) + b - a for _, a, b in row]
        assert sum(sizes) == 32 and max(sizes) <= max_segment
    # The documents' tokens, in the segments' order, are the epochs' streams back to back.
    got = np.concatenate([docs[j][a:b] for row in rows for j, a, b in row if j >= 0])
    stream = np.concatenate([np.concatenate([docs[j] for j in windows.order(e)]) for e in range(cursor.epoch + 1)])
    assert np.array_equal(got, stream[: got.size])
    assert windows.order(0).tolist() != windows.order(1).tolist()  # reshuffled every epoch


def test_cursor_continues_where_it_stopped():
    lengths = np.array([30, 7, 50, 12])
    w = PackedWindows(lengths, seed=0, bos=True)
    all_rows, end = w.rows(Cursor(), 9, 16, 16)
    first, mid = w.rows(Cursor(), 4, 16, 16)
    rest, end2 = PackedWindows(lengths, seed=0, bos=True).rows(Cursor.from_dict(mid.to_dict()), 5, 16, 16)
    assert first + rest == all_rows and end2 == end


def test_materialize_restarts_positions_and_masks_segment_ends():
    docs = {0: np.array([11, 12, 13]), 1: np.arange(20, 30)}
    rows = [[(0, 0, 3), (1, 0, 4)], [(1, 4, 10), (-1, 0, 0), (-1, 0, 0)]]
    out = materialize(rows, lambda j, a, b: docs[j][a:b], row_len=9, bos_id=1, vocab_size=64)
    t = IGNORE_INDEX
    assert out["input_ids"].tolist() == [[1, 11, 12, 13, 1, 20, 21, 22, 23], [1, 24, 25, 26, 27, 28, 29, 1, 1]]
    assert out["position_ids"].tolist() == [[0, 1, 2, 3, 0, 1, 2, 3, 4], [0, 1, 2, 3, 4, 5, 6, 0, 0]]
    assert out["targets"].tolist() == [[11, 12, 13, t, 20, 21, 22, 23, t], [24, 25, 26, 27, 28, 29, t, t, t]]
    assert sum(row_targets(r, True) for r in rows) == int((out["targets"] != t).sum())
    no_bos = materialize([[(0, 0, 3), (1, 0, 6)]], lambda j, a, b: docs[j][a:b], row_len=9, bos_id=None,
                         vocab_size=64)
    assert no_bos["position_ids"].tolist() == [[0, 1, 2, 0, 1, 2, 3, 4, 5]]
    assert no_bos["targets"].tolist() == [[12, 13, t, 21, 22, 23, 24, 25, t]]
    with pytest.raises(UserError, match="outside the model's vocabulary"):
        materialize(rows, lambda j, a, b: docs[j][a:b], row_len=9, bos_id=1, vocab_size=25)


@pytest.mark.parametrize("share", [0.0, 0.1, 0.25, 1 / 3, 0.5, 1.0])
def test_short_steps_have_exactly_the_share(share):
    flags = [is_short_step(t, share) for t in range(600)]
    assert sum(flags) == int(np.floor(600 * share + 1e-9))
    assert sum(flags[:300]) == int(np.floor(300 * share + 1e-9))  # spread, not bunched


def _corpus(tmp_path, docs, name="shards"):
    return TokenCorpus.open(write_corpus(tmp_path / name, docs))


def test_training_documents_are_the_train_role(tmp_path):
    c = _corpus(tmp_path, [("t/a", pattern_doc(1, 50), "train"), ("s/a", pattern_doc(2, 50), "search"),
                           ("t/b", pattern_doc(3, 60), "train"), ("h/a", pattern_doc(4, 50), "heldout")])
    assert training_documents(c).tolist() == [0, 2]


def test_no_training_documents_is_refused(tmp_path):
    c = _corpus(tmp_path, [("s/a", pattern_doc(2, 50), "search")])
    with pytest.raises(UserError, match="no training documents.*train=PATH"):
        training_documents(c)


def test_overlap_by_id_is_refused(tmp_path):
    c = _corpus(tmp_path, [("books/hamlet.txt", pattern_doc(1, 50), "train"),
                           ("books/hamlet.txt", pattern_doc(2, 50), "heldout")])
    with pytest.raises(UserError, match="'books/hamlet.txt' has the same id as heldout document"):
        training_documents(c)


def test_overlap_by_content_is_refused(tmp_path):
    c = _corpus(tmp_path, [("train/copy.txt", pattern_doc(9, 80), "train"),
                           ("books/original.txt", pattern_doc(9, 80), "search")])
    with pytest.raises(UserError) as e:
        training_documents(c)
    assert "same content as search document 'books/original.txt'" in str(e.value)
    assert "\n" not in str(e.value)


def test_overlap_with_an_excluded_folder_is_refused(tmp_path):
    c = _corpus(tmp_path, [("train/x.txt", pattern_doc(5, 80), "train")])
    write_corpus(tmp_path / "eval", [("pg19/x.txt", pattern_doc(5, 80), "heldout"),
                                     ("pg19/y.txt", pattern_doc(6, 80), None)])
    assert training_documents(c).tolist() == [0]  # alone it is fine
    with pytest.raises(UserError, match="same content as heldout document 'pg19/x.txt' of .*eval"):
        training_documents(c, exclude=[str(tmp_path / "eval")])


def test_passkey_rows_are_seeded_by_step_and_have_the_share():
    from longrope.train.data import passkey_rows

    assert passkey_rows(0, 3, 16, 0.0) == set()
    assert passkey_rows(0, 3, 16, 1.0) == set(range(16))
    a = passkey_rows(0, 3, 4000, 0.25)
    assert a == passkey_rows(0, 3, 4000, 0.25) and a != passkey_rows(0, 4, 4000, 0.25)
    assert 0.22 < len(a) / 4000 < 0.28


def test_a_passkey_row_is_the_prompt_with_its_answer_and_every_target():
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.evaluate.passkey import QUESTION
    from longrope.train.data import IGNORE_INDEX, passkey_row

    tok = load_tokenizer("tiny")
    row = passkey_row(tok, 300, seed=0, step=5, row=2, bos_id=tok.bos_token_id)
    ids = row["input_ids"]
    assert ids.shape == (300,) and ids[0] == tok.bos_token_id
    np.testing.assert_array_equal(row["position_ids"], np.arange(300))
    np.testing.assert_array_equal(row["targets"][:-1], ids[1:])
    assert row["targets"][-1] == IGNORE_INDEX
    text = tok.decode(ids)
    key = text.strip().split()[-1].rstrip(".")  # the answer is " K." (the key and its full stop)
    assert QUESTION.strip()[:10] in text and len(key) == 5 and text.count(key) >= 2
    again = passkey_row(tok, 300, seed=0, step=5, row=2, bos_id=tok.bos_token_id)
    np.testing.assert_array_equal(again["input_ids"], ids)


def test_the_training_data_helpers_refuse_arguments_of_another_kind_in_one_line():
    """require_training_documents('/path') was an AttributeError, passkey_rows with -4 rows numpy's ValueError and a
    share of 1.5 taken, intact_checkpoint(None) a TypeError (battery 20d open items)."""
    from longrope.errors import UserError
    from longrope.train.checkpoint import intact_checkpoint
    from longrope.train.data import passkey_rows, require_training_documents

    with pytest.raises(UserError, match="takes an open TokenCorpus"):
        require_training_documents("/path")
    for args, said in (((0, 1, -4, 0.5), "n_rows must be an integer"), ((0, 1, 4, 1.5), "share must be a number"),
                       ((-1, 1, 4, 0.5), "seed must be an integer")):
        with pytest.raises(UserError, match=said):
            passkey_rows(*args)
    assert passkey_rows(0, 1, 4, 0.0) == set()
    with pytest.raises(UserError, match="intact_checkpoint's path"):
        intact_checkpoint(None)


def test_an_excluded_folder_encoded_by_other_rules_of_the_same_vocabulary_is_refused(tmp_path):
    """battery 28b: --exclude compared tokenizers by vocabulary alone: a folder made by a tokenizer of the same
    vocabulary that encodes text otherwise (a normalizer) holds other ids for the same text, so a held-out book in it
    was not found among the training documents."""
    import json

    c = _corpus(tmp_path, [("train/x.txt", pattern_doc(5, 80), "train")])
    write_corpus(tmp_path / "eval", [("pg19/y.txt", pattern_doc(6, 80), "heldout")])
    for folder, rules in ((c.path, "a" * 64), (tmp_path / "eval", "b" * 64)):
        meta = json.loads((folder / "meta.json").read_text())
        (folder / "meta.json").write_text(json.dumps({**meta, "options": {"encoding_sha256": rules}}))
    with pytest.raises(UserError, match="eval was tokenized with another tokenizer than"):
        training_documents(TokenCorpus.open(c.path), exclude=[str(tmp_path / "eval")])


def test_one_token_documents_are_left_out_without_bos_only(tmp_path):
    """Without BOS a one-token document has no target (battery 29b); with BOS it has one (BOS -> the token)."""
    c = _corpus(tmp_path, [("t/a", np.array([7]), "train"), ("t/b", pattern_doc(3, 60), "train")])
    assert training_documents(c).tolist() == [0, 1]
    assert training_documents(c, bos=False).tolist() == [1]


def test_require_training_documents_refuses_one_token_documents_without_bos_by_the_field(tmp_path):
    """Review of battery 29: the refusal named the CLI's --no-bos from the API and a plan too, and the pipeline's plan
    check (require_training_documents) did not know bos, so such a plan failed only when its finetune stage started."""
    from longrope.errors import ConfigError
    from longrope.train.data import holds_target, require_training_documents

    c = _corpus(tmp_path, [("t/a", np.array([7]), "train"), ("t/b", np.array([8]), "train")])
    assert require_training_documents(c) == [0, 1]
    with pytest.raises(ConfigError, match="every training document has one token") as e:
        require_training_documents(c, bos=False)
    assert e.value.fields == ("bos",) and "--no-bos" not in str(e.value)
    assert e.value.render(lambda f: "--no-bos").count("(set by --no-bos)") == 1
    assert [holds_target(n, bos) for n in (0, 1, 2) for bos in (True, False)] == [False, False, True, False, True, True]
