"""RULER samples: the task table, the essay wrappers' arguments, the haystack, the shipped Punkt model."""

from __future__ import annotations

import ast
import inspect

import pytest

pytest.importorskip("lm_eval", reason="needs the ruler extra: pip install 'longrope[ruler]'")

from longrope.data import ruler  # noqa: E402
from longrope.errors import ConfigError  # noqa: E402


def test_names_and_aliases():
    assert ruler.canonical_task("vt") == "ruler_vt" and ruler.canonical_task("niah_single_1") == "niah_single_1"
    with pytest.raises(ConfigError, match="unknown RULER task 'nope'"):
        ruler.canonical_task("nope")
    assert not {"ruler_qa_squad", "ruler_qa_hotpot"} & set(ruler.DEFAULT_TASKS)
    assert set(ruler.DEFAULT_TASKS) | {"ruler_qa_squad", "ruler_qa_hotpot"} == set(ruler.TASKS)


def test_every_task_is_lm_evals():
    for name in ruler.TASKS:
        assert ruler.task_config(name)["task"] == name


def test_essay_arguments_are_those_of_lm_evals_wrappers():
    """Our essay tasks call lm-eval's generate_samples with the arguments its wrappers pass (read
    from the wrappers' source), the haystack excepted; the non-essay wrappers are used as they are."""
    ruler.use_shipped_punkt()
    from lm_eval.tasks.ruler import niah_utils

    for name, spec in ruler.TASKS.items():
        if not name.startswith("niah_"):
            continue
        tree = ast.parse(inspect.getsource(getattr(niah_utils, name)))
        call = next(n for n in ast.walk(tree) if isinstance(n, ast.Call) and getattr(n.func, "id", "") ==
                    "generate_samples")
        kwargs = {k.arg: ast.literal_eval(k.value) for k in call.keywords
                  if isinstance(k.value, ast.Constant)}
        assert kwargs.pop("type_haystack") == spec.haystack, name
        assert kwargs.pop("num_samples") == ruler.MAX_SAMPLES
        assert kwargs == ruler.NIAH_ARGS[name], name
    assert set(ruler.NIAH_ARGS) == {n for n in ruler.TASKS if n.startswith("niah_")}


def test_haystack_from_text_files(tmp_path):
    default = ruler.load_haystack(None)
    assert default.name == "shipped books" and len(default.words) > 100_000
    (tmp_path / "a.txt").write_text("The grass is green.  The sky\n is blue. " * 300)
    hay = ruler.load_haystack(str(tmp_path))
    assert hay.words[:5] == ("The", "grass", "is", "green.", "The") and hay.sha256 != default.sha256
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "short.txt").write_text("too few words")
    with pytest.raises(ConfigError, match="only 3 words"):
        ruler.load_haystack(str(tmp_path / "b"))


def test_haystack_from_a_shard_folder(tmp_path):
    from longrope.cli import main
    from longrope.embedded import CORPUS_DIR
    from longrope.models.loading import load_tokenizer_of

    assert main(["tokenize", "--tokenizer", "tiny", "--input", f"heldout={CORPUS_DIR / 'heldout'}",
                 "-o", str(tmp_path / "shards")]) == 0
    hay = ruler.load_haystack(str(tmp_path / "shards"), load_tokenizer_of("tiny"))
    assert len(hay.documents) == 5 and hay.words[:4] == ("Persuasion", "by", "Jane", "Austen")


def test_every_offline_task_makes_its_samples_on_the_tiny_tokenizer():
    """One sample per task (niah at 512; vt needs ~1k tokens, cwe ~2k with this tokenizer): lm-eval's
    generators on the embedded model's tokenizer, the essay tasks on the shipped books."""
    from longrope.models.loading import embedded_tiny_path, load_tokenizer_of

    tok = load_tokenizer_of("tiny")
    hay = ruler.load_haystack(None)
    lengths = {"ruler_vt": 1024, "ruler_fwe": 1024, "ruler_cwe": 2048}
    for task in ruler.DEFAULT_TASKS:
        n = lengths.get(task, 512)
        rows = ruler.make_samples(task, n, 1, tokenizer_path=str(embedded_tiny_path()), tokenizer=tok,
                                  haystack=hay)
        assert rows[0]["max_length"] == n and rows[0]["outputs"], task
        assert all(answer in rows[0]["input"] for answer in rows[0]["outputs"]) or task in (
            "ruler_cwe", "ruler_fwe", "ruler_vt"), task  # aggregation tasks: the answer is counted, not written
    essay = ruler.make_samples("niah_single_2", 512, 1, tokenizer_path=str(embedded_tiny_path()), tokenizer=tok,
                               haystack=hay)[0]["input"]
    assert "Persuasion" in essay  # the first book (lm-eval adds essay words 500 at a time), not Paul Graham


def test_a_cwe_cell_gets_the_samples_of_a_fresh_process_whatever_was_made_before():
    """battery 31a: the second ruler_cwe cell of a process (the same task, length and seed) got other samples: the
    reset of lm-eval's module-level cwe random state hit the package's first copy of cwe_utils, while lm-eval's YAML
    loader runs a fresh copy. A fresh process (stock lm-eval) makes the first samples."""
    from longrope.models.loading import embedded_tiny_path, load_tokenizer_of

    tok = load_tokenizer_of("tiny")
    made = [ruler.samples_sha256(ruler.make_samples("ruler_cwe", 2048, 1, tokenizer_path=str(embedded_tiny_path()),
                                                    tokenizer=tok)) for _ in range(2)]
    assert made[0] == made[1]


def test_lm_eval_loads_a_model_folders_tokenizer_without_running_its_code(tmp_path):
    """battery 31a: lm-eval's RULER code loads the tokenizer with trust_remote_code=True, so a model folder whose
    tokenizer_config.json names Python code (auto_map) had it run by eval ruler alone."""
    import json
    import shutil

    from longrope.models.loading import embedded_tiny_path, load_tokenizer_of

    folder = tmp_path / "model"
    shutil.copytree(embedded_tiny_path(), folder)
    marker = tmp_path / "ran"
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "auto_map": {
        "AutoTokenizer": [None, "code.Tok"]}}))
    (folder / "code.py").write_text(f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
                                    "from transformers import PreTrainedTokenizerFast as Tok\n")
    tok = load_tokenizer_of(str(folder))
    rows = ruler.make_samples("niah_single_1", 512, 1, tokenizer_path=str(folder), tokenizer=tok)
    assert rows and not marker.exists()


def test_the_shipped_punkt_model_is_the_one_the_books_train(tmp_path):
    texts = [t for _, t in ruler._shipped_book_texts()]
    folder = ruler.train_punkt(texts, tmp_path)
    shipped = ruler.SHIPPED_PUNKT / "tokenizers" / "punkt_tab" / "english"
    for name in ("collocations.tab", "sent_starters.txt", "abbrev_types.txt", "ortho_context.tab"):
        assert (folder / name).read_text() == (shipped / name).read_text(), name


def test_wilson_interval():
    from longrope.evaluate.ruler import wilson

    lo, hi = wilson(0, 2)
    assert lo == 0.0 and abs(hi - 0.6576) < 1e-3
    lo, hi = wilson(8, 10)
    assert abs(lo - 0.4902) < 1e-3 and abs(hi - 0.9433) < 1e-3


@pytest.mark.parametrize("length", [256, 512])
def test_a_niah_task_too_long_for_a_length_is_found_before_any_sample(length):
    """length_problem sizes every niah task's smallest prompt on draws of its random needles (battery 11b:
    niah_multikey_3 at 256 passed the plan check and failed at its stage; battery 12b: niah_single_3 at 256 too,
    and 400 samples of niah_single_1 at 256, where lm-eval keeps about 320): where it finds no room, lm-eval's
    own generator makes no sample either (of 20 tries), and a count it cannot reach is refused."""
    from lm_eval.tasks.ruler import niah_utils, prepare_niah

    from longrope.models.loading import load_tokenizer_of

    tok = load_tokenizer_of("tiny")
    ruler.use_shipped_punkt()
    words = list(ruler.load_haystack(None).words[:20_000])
    refused = set()
    for task in ruler.NIAH_ARGS:
        if ruler.length_problem(task, length, tok) is None:
            continue
        refused.add(task)
        kind = ruler.TASKS[task].haystack
        hay = words if kind == "essay" else prepare_niah.get_haystack(type_haystack=kind)
        with pytest.raises(ValueError, match="Could not generate any sample"):
            prepare_niah.generate_samples(hay, tok, max_seq_length=length, template=niah_utils.TEMPLATE,
                                          type_haystack=kind, num_samples=20, **ruler.NIAH_ARGS[task])
    if length == 512:
        assert not refused
        return
    assert {"niah_multikey_3", "niah_multikey_1", "niah_single_3"} <= refused and "niah_single_1" not in refused
    assert "fewer than the 400 asked for" in ruler.length_problem("niah_single_1", length, tok, samples=400)


def test_an_ascii_locale_without_utf8_mode_is_refused_in_one_line(monkeypatch):
    """LANG=C PYTHONUTF8=0: lm-eval's RULER import (wonderwords' word lists) was a UnicodeDecodeError traceback."""
    import locale

    from longrope.errors import UserError

    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "ANSI_X3.4-1968")
    with pytest.raises(UserError, match="PYTHONUTF8=1"):
        ruler.check_lm_eval()
    monkeypatch.setattr(locale, "getpreferredencoding", lambda do_setlocale=True: "UTF-8")
    ruler.check_lm_eval()


def test_lm_eval_without_its_ruler_extra_is_refused_in_one_line(monkeypatch):
    """battery 31a: pip install lm-eval (no [ruler]) lacks wonderwords and nltk; eval ruler loaded the tokenizer, then
    lm-eval's RULER import raised its ImportError as a traceback."""
    from importlib import metadata

    from longrope.errors import UserError

    real = metadata.version

    def without_wonderwords(name):
        if name == "wonderwords":
            raise metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(metadata, "version", without_wonderwords)
    with pytest.raises(UserError, match=r"wonderwords is not installed: pip install 'longrope\[ruler\]'"):
        ruler.check_lm_eval()
    monkeypatch.setattr(metadata, "version", real)
    ruler.check_lm_eval()


def test_make_samples_refuses_arguments_of_another_kind_before_lm_eval_runs(monkeypatch):
    """battery 20b: make_samples('NIAH_SINGLE_1', ...) was a KeyError, length '512' a TypeError, 10**30 lm-eval
    generating for ever, n=0 an empty list; canonical_task(['vt']) "unhashable type: 'list'"."""
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.errors import UserError

    tok = load_tokenizer("tiny")
    monkeypatch.setattr(ruler, "length_problem", lambda *a, **k: pytest.fail("checked the room of a bad argument"))
    base = {"task": "niah_single_1", "length": 512, "n": 2, "tokenizer_path": "tiny", "tokenizer": tok}
    for kw, said in (({"task": "NIAH_SINGLE_1"}, "unknown RULER task"), ({"length": "512"}, "length must be an integer"),
                     ({"length": 10**30}, "length must be an integer"), ({"n": 0}, "n must be an integer"),
                     ({"seed": -1}, "seed must be"), ({"tokenizer": "tiny"}, "loaded tokenizer"),
                     ({"tokenizer_path": None}, "tokenizer_path"), ({"haystack": "essays.txt"}, "must be a Haystack")):
        with pytest.raises(UserError, match=said):
            ruler.make_samples(**{**base, **kw})
    with pytest.raises(ConfigError, match="unknown RULER task"):
        ruler.canonical_task(["vt"])


def test_lm_evals_count_of_haystacks_it_dropped_is_not_shown(capsys):
    """Every short RULER run printed 'lm-eval: Skipped 180/500 samples for repeat | max_seq_length=256: could not fit
    them ...': lm-eval drops candidates that overflow and longrope refuses a length that leaves too few, so the count
    is nothing a user can act on (battery 20c). Other lm-eval warnings still reach stderr."""
    import logging

    log = logging.getLogger("lm_eval.tasks.ruler.prepare_niah")
    with ruler.lm_eval_quiet():
        log.warning("Skipped %s/%s samples for %s | max_seq_length=%s: could not fit them within the sequence "
                    "length. Last reason: %s", 180, 500, "repeat", 256, "260 exceeds max_seq_length=256")
        log.warning("something else")
    err = capsys.readouterr().err
    assert "Skipped" not in err and "lm-eval: something else" in err, err


def test_a_haystack_folder_of_unreadable_files_says_they_were_skipped(tmp_path):
    """battery 28b: --haystack of a folder of books not in UTF-8 (UTF-16 without a mark, latin-1) was refused with
    "only 0 words; the essay haystack needs text enough ..." while its files held plenty: they were skipped without a
    word, and the refusal did not say so."""
    (tmp_path / "a.txt").write_bytes(("un café " * 3000).encode("latin-1"))
    with pytest.raises(ConfigError) as e:
        ruler.load_haystack(str(tmp_path))
    msg = str(e.value)
    assert "only 0 words; 1 file(s) skipped, first: " in msg and "a.txt (not UTF-8 text" in msg and "\n" not in msg


def test_a_tokenizer_its_caller_loaded_with_its_code_makes_samples(tmp_path):
    """First review of battery 31: with lm-eval's loads forced to trust_remote_code=False, a library caller who loaded
    a tokenizer that needs its own code (on purpose) got transformers' multi-line refusal from make_samples; lm-eval
    now sizes the prompts with the caller's tokenizer, loading nothing."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from longrope.models.loading import embedded_tiny_path

    folder = tmp_path / "model"
    shutil.copytree(embedded_tiny_path(), folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "tokenizer_class": "CustomTok", "auto_map": {
        "AutoTokenizer": [None, "custom_tok_31.CustomTok"]}}))
    (folder / "custom_tok_31.py").write_text("from transformers import PreTrainedTokenizerFast\n\n\n"
                                             "class CustomTok(PreTrainedTokenizerFast):\n    pass\n")
    tok = AutoTokenizer.from_pretrained(folder, trust_remote_code=True)
    assert type(tok).__name__ == "CustomTok"
    rows = ruler.make_samples("niah_single_1", 512, 1, tokenizer_path=str(folder), tokenizer=tok)
    assert len(rows) == 1 and rows[0]["outputs"]


def test_the_patched_tokenizer_loader_takes_keywords_and_keeps_other_failures(tmp_path):
    """Second review of battery 31: the loader patched while samples are made took the path only positionally (a
    keyword call was a TypeError), and any ValueError of the path, not only transformers' "needs its custom code",
    was answered with the caller's tokenizer."""
    import json
    import shutil

    from transformers import AutoTokenizer

    from longrope.models.loading import embedded_tiny_path

    caller = object()
    with ruler._tokenizers_without_remote_code(str(embedded_tiny_path()), caller):
        tok = AutoTokenizer.from_pretrained(pretrained_model_name_or_path=str(embedded_tiny_path()))
    assert tok is not caller and tok.vocab_size > 0
    bad = tmp_path / "bad"
    shutil.copytree(embedded_tiny_path(), bad)
    (bad / "tokenizer_config.json").write_text(json.dumps({"tokenizer_class": "NoSuchTokenizerFast"}))
    (bad / "tokenizer.json").unlink()
    with ruler._tokenizers_without_remote_code(str(bad), caller), pytest.raises(ValueError):
        AutoTokenizer.from_pretrained(str(bad))
