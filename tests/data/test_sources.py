"""``longrope.data.sources.resolve_sources``: what an ``--input`` string names."""

from __future__ import annotations

import os
import resource
import subprocess
import sys

import pytest

from longrope.data.sources import resolve_sources
from longrope.errors import UserError


@pytest.mark.parametrize("spec", ["", " ", "search=", "heldout=", "train= "])
def test_an_input_that_names_nothing_is_refused_not_read_as_the_current_folder(spec, tmp_path, monkeypatch):
    """'' is Path('.'): ``--input search=$DIR`` with DIR unset tokenized the whole current folder (battery 5)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("a document that must not be read", encoding="utf-8")
    with pytest.raises(UserError) as err:
        resolve_sources([spec])
    message = str(err.value)
    assert "names no file, folder or dataset" in message and "\n" not in message
    assert [s.kind for s in resolve_sources(["."])] == ["folder"]  # the current folder, when named, still is one


def test_a_shard_folder_as_input_says_it_is_one(tmp_path):
    """tokenize --input SHARDS said 'empty corpus: ... names.jsonl (3 line(s) without a string field 'text')':
    true of the shard folder's own index, silent on what the folder is (battery 7)."""
    shards = tmp_path / "shards"
    shards.mkdir()
    (shards / "meta.json").write_text("{}")
    (shards / "index.npy").write_bytes(b"")
    for spec in (str(shards), f"train={shards}"):
        with pytest.raises(UserError, match="is a shard folder from 'longrope tokenize'.*--data"):
            resolve_sources([spec])
    (tmp_path / "a.txt").write_text("text")
    assert resolve_sources([str(tmp_path)])[0].kind == "folder"  # a folder holding a shard folder is read


def test_a_folder_named_dot_names_its_documents_by_its_own_name(tmp_path, monkeypatch):
    """--input . named the documents '/a.txt' (Path('.').name is ''), so the search/held-out split of one folder
    changed with how it was spelled (battery 9a)."""
    from longrope.data.sources import SkipLog

    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("some text", encoding="utf-8")
    monkeypatch.chdir(books)
    for spec in (".", "./", "../books/.", str(books)):
        source = resolve_sources([spec])[0]
        assert [doc_id for doc_id, _, _ in source.documents(SkipLog())] == ["books/a.txt"], spec
        assert source.label == "books"


def test_parquet_rows_without_text_are_listed_as_jsonl_lines_are(tmp_path):
    """battery 9a: a .parquet row whose text was a number, null or empty was dropped without a word (bad .jsonl lines
    are listed as skipped)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from longrope.data.sources import SkipLog

    pq.write_table(pa.table({"text": ["some words", None, "", "more words"]}), tmp_path / "a.parquet")
    pq.write_table(pa.table({"text": [1, 2]}), tmp_path / "b.parquet")
    log = SkipLog()
    docs = [doc_id for src in resolve_sources([str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet")])
            for doc_id, _, _ in src.documents(log)]
    assert docs == ["a.parquet#0", "a.parquet#3"]
    assert [(s["path"].rsplit("/", 1)[-1], s["reason"]) for s in log.skipped] == [
        ("a.parquet", "2 row(s) whose 'text' is not a string or is empty or only whitespace"),
        ("b.parquet", "2 row(s) whose 'text' is not a string or is empty or only whitespace")]


def test_a_document_of_only_whitespace_is_skipped_and_listed_in_every_format(tmp_path, monkeypatch):
    """battery 28b: a .txt file of spaces was skipped as empty, but a .jsonl line or a parquet row of them was stored
    as a document (an empty .jsonl text was said to be "without a string field"), and a hub row without text was
    dropped without a word."""
    import sys
    import types

    import pyarrow as pa
    import pyarrow.parquet as pq

    from longrope.data import sources
    from longrope.data.sources import SkipLog

    (tmp_path / "a.txt").write_text(" \n\t\u3000 ")
    (tmp_path / "b.jsonl").write_text('{"text": "words"}\n{"text": "  \\r\\n "}\n{"text": ""}\n{"text": 3}\n')
    pq.write_table(pa.table({"text": ["words", "\n\n"]}), tmp_path / "c.parquet")
    rows = [{"text": "words"}, {"text": "   "}, {"text": None}]
    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=lambda *a, **k: iter(rows)))
    monkeypatch.setattr(sources, "hub_offline", lambda **k: None)
    monkeypatch.setattr(sources, "_hub_reachable", lambda: True)
    log = SkipLog()
    docs = [doc_id for src in resolve_sources([str(tmp_path / n) for n in ("a.txt", "b.jsonl", "c.parquet")]
                                              + ["user/set"]) for doc_id, _, _ in src.documents(log)]
    assert docs == ["b.jsonl#0", "c.parquet#0", "user/set/train#0"]
    assert [(s["path"].rsplit("/", 1)[-1], s["reason"]) for s in log.skipped] == [
        ("a.txt", "the document is empty or only whitespace"),
        ("b.jsonl", "1 line(s) without a string field 'text' or not JSON"),
        ("b.jsonl", "2 line(s) whose 'text' is empty or only whitespace"),
        ("c.parquet", "1 row(s) whose 'text' is not a string or is empty or only whitespace"),
        ("train", "2 row(s) whose 'text' is not a string, is empty or only whitespace, or whose text or id is not "
                  "valid Unicode")]


def test_a_link_to_a_file_read_anyway_is_stored_once_under_the_files_own_name(tmp_path):
    """A symbolic link in an input folder to a file another input holds stored the document twice: with
    ``search=s heldout=h`` and ``s/l.txt -> ../h/a.txt`` a held-out document was also searched on (battery 11a).
    A link to a file no input holds otherwise is still read, once."""
    from longrope.data.sources import SkipLog, links_read_twice

    (tmp_path / "h").mkdir()
    (tmp_path / "s").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "h" / "a.txt").write_text("held out", encoding="utf-8")
    (tmp_path / "out" / "b.txt").write_text("outside", encoding="utf-8")
    (tmp_path / "s" / "l.txt").symlink_to("../h/a.txt")
    (tmp_path / "s" / "m.txt").symlink_to("../out/b.txt")
    (tmp_path / "s" / "n.txt").symlink_to("../out/b.txt")
    sources = resolve_sources([f"search={tmp_path / 's'}", f"heldout={tmp_path / 'h'}"])
    log, links = SkipLog(), links_read_twice(sources)
    docs = [(doc_id, src.role) for src in sources for doc_id, _, _ in src.documents(log, links)]
    assert docs == [("s/m.txt", "search"), ("h/a.txt", "heldout")]
    assert [s["path"].rsplit("/", 1)[-1] for s in log.skipped] == ["l.txt", "n.txt"]
    assert "symbolic link to" in log.skipped[0]["reason"]


def test_a_byte_order_mark_is_not_part_of_the_first_document(tmp_path):
    """A .jsonl written with a UTF-8 BOM lost its first line ("1 line(s) ... not JSON"); a .txt with one began its
    document with U+FEFF (battery 11a)."""
    import gzip

    from longrope.data.sources import SkipLog

    (tmp_path / "rows.jsonl").write_bytes(b'\xef\xbb\xbf{"text": "first"}\n{"text": "second"}\n')
    (tmp_path / "doc.txt").write_bytes("\ufeffa text".encode())
    (tmp_path / "doc2.txt.gz").write_bytes(gzip.compress("\ufeffzipped".encode()))
    log = SkipLog()
    docs = {doc_id: text for s in resolve_sources([str(tmp_path)]) for doc_id, text, _ in s.documents(log)}
    name = tmp_path.name
    assert docs == {f"{name}/doc.txt": "a text", f"{name}/doc2.txt.gz": "zipped", f"{name}/rows.jsonl#0": "first",
                    f"{name}/rows.jsonl#1": "second"}
    assert log.skipped == []


def test_a_linked_subfolder_is_listed_as_skipped_not_dropped_without_a_word(tmp_path):
    """A symbolic link to a folder inside an input folder is not entered (links may loop): its documents were
    dropped without a word (battery 11a). Now it is listed with the fix."""
    from longrope.data.sources import SkipLog

    (tmp_path / "real").mkdir()
    (tmp_path / "real" / "r.txt").write_text("linked", encoding="utf-8")
    (tmp_path / "corpus").mkdir()
    (tmp_path / "corpus" / "own.txt").write_text("own", encoding="utf-8")
    (tmp_path / "corpus" / "sub").symlink_to("../real")
    log = SkipLog()
    docs = [doc_id for s in resolve_sources([str(tmp_path / "corpus")]) for doc_id, _, _ in s.documents(log)]
    assert docs == ["corpus/own.txt"]
    assert [s["path"] for s in log.skipped] == [str(tmp_path / "corpus" / "sub")]
    assert "give its target as an --input" in log.skipped[0]["reason"]


def test_utf16_documents_are_named_with_the_conversion_not_read_as_nul_laden_text(tmp_path):
    """A UTF-16 .txt (Windows editors, PowerShell's ``>``) was skipped as 'not UTF-8 text (invalid start byte at byte
    0)' with no word of what it is or how to convert it, and one without a byte-order mark decoded as UTF-8, a NUL
    beside every character: tokenize stored that as the document (battery 18). Both are skipped with the encoding
    and the iconv line; a .jsonl in UTF-16 the same."""
    from longrope.data.sources import SkipLog

    text = "A document saved by an editor that writes UTF-16.\n"
    (tmp_path / "bom.txt").write_bytes(text.encode("utf-16"))
    (tmp_path / "bare.txt").write_bytes(text.encode("utf-16-le"))
    (tmp_path / "wide.txt").write_bytes(text.encode("utf-32"))
    (tmp_path / "rows.jsonl").write_bytes('{"text": "a row"}\n'.encode("utf-16"))
    (tmp_path / "ok.txt").write_text(text, encoding="utf-8")
    log = SkipLog()
    docs = [doc_id for s in resolve_sources([str(tmp_path)]) for doc_id, _, _ in s.documents(log)]
    assert docs == [f"{tmp_path.name}/ok.txt"]
    reasons = {s["path"].rsplit("/", 1)[-1]: s["reason"] for s in log.skipped}
    assert set(reasons) == {"bom.txt", "bare.txt", "wide.txt", "rows.jsonl"}
    for name, encoding in (("bom.txt", "UTF-16"), ("bare.txt", "UTF-16"), ("wide.txt", "UTF-32"),
                           ("rows.jsonl", "UTF-16")):
        assert encoding in reasons[name] and f"iconv -f {encoding}" in reasons[name] and name in reasons[name], \
            reasons[name]


def test_resolve_sources_refuses_specs_that_are_no_list_of_texts(tmp_path):
    """resolve_sources(5) was "'int' object is not iterable", a number among the specs an AttributeError, and a
    string was read letter by letter; a path object is the path it names (battery 21b)."""
    import pytest

    from longrope.data.sources import resolve_sources
    from longrope.errors import UserError

    (tmp_path / "a.txt").write_text("some text")
    assert len(resolve_sources([tmp_path / "a.txt"])) == 1
    for bad in (5, str(tmp_path / "a.txt"), [str(tmp_path / "a.txt"), 5]):
        with pytest.raises(UserError):
            resolve_sources(bad)


def test_a_device_among_the_inputs_is_named_as_what_it_is():
    """--input /dev/zero was ': not a regular file or folder', with no fix and another wording than every other
    check's (battery 21a open item): io.SPECIAL_FILE's words, and what to give."""
    from longrope.data.sources import resolve_sources
    from longrope.errors import UserError

    with pytest.raises(UserError, match=r"/dev/zero is a special file \(device, pipe or socket\), not a text file"):
        resolve_sources(["/dev/zero"])


@pytest.mark.parametrize("kind", ["pipe", "device"])
@pytest.mark.parametrize("suffix", [".txt", ".jsonl.gz", ".parquet"])
def test_a_listed_file_replaced_by_a_pipe_or_device_is_skipped_not_waited_on(tmp_path, kind, suffix):
    """A file listed as a document and replaced, while tokenize read the inputs, by a named pipe (open waited for
    a writer for ever) or a link to /dev/zero (read until memory ran out) is skipped in a moment (battery 22b);
    tokenize then refuses the changed input. In a child process: the old code never returned."""
    victim = tmp_path / f"doc{suffix}"
    if kind == "pipe":
        os.mkfifo(victim)
    else:
        victim.symlink_to("/dev/zero")
    code = ("import sys; from pathlib import Path; from longrope.data.sources import Source, SkipLog, _file_documents;"
            "log = SkipLog(); p = Path(sys.argv[1]);"
            "docs = list(_file_documents(p, p.name, Source(str(p), 'file'), log)); print(len(docs), log.skipped)")
    done = subprocess.run([sys.executable, "-c", code, str(victim)], capture_output=True, text=True, timeout=30,
                          preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30)))
    assert done.returncode == 0, done.stderr[-500:]
    assert done.stdout.startswith("0 [") and "not a file" in done.stdout


def test_an_id_field_that_is_the_text_field_is_refused_in_one_line(tmp_path, capsys):
    """battery 28b: --id-field text on a parquet input was an IndexError traceback (the column was read once), and on
    a .jsonl input each document was named by its whole text."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from longrope.cli import main
    from longrope.errors import ConfigError

    pq.write_table(pa.table({"body": ["some words", "more words"]}), tmp_path / "a.parquet")
    for flags in (["--id-field", "text"], ["--id-field", "body", "--text-field", "body"]):
        assert main(["tokenize", "--tokenizer", "tiny", "--input", str(tmp_path / "a.parquet"), "-o",
                     str(tmp_path / "out"), "--quiet", *flags]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is the text field (--text-field)" in err and "leave --id-field out" in err
    with pytest.raises(ConfigError, match="is the text field"):
        resolve_sources([str(tmp_path / "a.parquet")], text_field="body", id_field="body")
    assert not (tmp_path / "out").exists()


def test_a_folder_that_cannot_be_listed_is_skipped_and_the_rest_of_the_inputs_are_read(tmp_path, monkeypatch):
    """A folder nested past the system's path length limit (ENAMETOOLONG) stopped the whole tokenize run, the other
    files of the input unread (battery 31c). It is listed as skipped, with the reason, and the rest is read."""
    from longrope.data.sources import SkipLog

    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "top.txt").write_text("top", encoding="utf-8")
    monkeypatch.chdir(corpus)
    long_file = None
    for _ in range(20):  # 20 x 251 bytes: past PATH_MAX (4096) from the corpus, built one step at a time
        room = 4100 - len(os.path.join(os.getcwd(), ""))
        if long_file is None and 0 < room < 250:  # a file whose name alone puts its path past the limit
            long_file = "f" * room + ".txt"
            with open(long_file, "w", encoding="utf-8") as f:
                f.write("too long a path")
        os.mkdir("d" * 250)
        os.chdir("d" * 250)
    with open("leaf.txt", "w", encoding="utf-8") as f:
        f.write("deep")
    monkeypatch.chdir(tmp_path)
    log = SkipLog()
    docs = [doc_id for s in resolve_sources([str(corpus)]) for doc_id, _, _ in s.documents(log)]
    assert docs == ["corpus/top.txt"] and long_file is not None
    reasons = sorted(s["reason"] for s in log.skipped)  # the file named as a file (second review of battery 31)
    assert len(reasons) == 2 and all(r.endswith("File name too long (the path passes the system's length limit)")
                                     for r in reasons)
    assert [r.split(" ")[0] for r in reasons] == ["file", "folder"]


def test_a_text_or_id_field_with_no_input_holding_rows_is_refused_in_one_line(tmp_path, capsys):
    """battery 32a: --text-field/--id-field with only .txt inputs was accepted and read nothing (--split is refused
    so); an input with rows (a .jsonl in a folder) takes them."""
    from longrope.cli import main

    books = tmp_path / "books"
    books.mkdir()
    (books / "a.txt").write_text("one document", encoding="utf-8")
    for flag in ("--text-field", "--id-field"):
        assert main(["tokenize", "--tokenizer", "tiny", "--input", str(books), flag, "body", "--quiet",
                     "-o", str(tmp_path / "s")]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"{flag} names a field of .jsonl/.parquet/hub rows" in err, err
    (books / "more").mkdir()
    (books / "more" / "b.jsonl").write_text('{"body": "two", "name": "b"}\n', encoding="utf-8")
    assert resolve_sources([str(books)], text_field="body", id_field="name")
