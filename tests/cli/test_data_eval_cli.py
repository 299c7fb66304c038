"""End to end: ``longrope tokenize`` and ``longrope eval ppl|passkey`` on a tiny saved model.

The model is a 2-layer random Llama saved with ``save_pretrained`` next to a tiny byte-level BPE
tokenizer (BOS ``<s>``), so ``--model`` / ``--tokenizer`` take the folder like a real model.
"""

from __future__ import annotations

import csv
import json
import math
import re

import numpy as np
import pytest
import torch

from longrope.cli import main

WORDS = ("the grass is green the sky is blue the sun is yellow here we go there and back again "
         "it was the best of times it was the worst of times a tale of two cities").split()


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    from longrope.evaluate.passkey import FILLER, INSTRUCTION, NEEDLE, QUESTION

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=350, special_tokens=["<pad>", "<s>", "</s>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator([INSTRUCTION, FILLER, NEEDLE, QUESTION, " ".join(WORDS)] * 20, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM

    d = tmp_path_factory.mktemp("tiny-model")
    tok = _tokenizer()
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=0,
                      tie_word_embeddings=False)
    model = LlamaForCausalLM(cfg)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.copy_(torch.randn(p.shape, generator=g) * 0.05)
    model.save_pretrained(d)
    tok.save_pretrained(d)
    return d


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus") / "books"
    root.mkdir()
    rng = np.random.default_rng(0)
    for k in range(12):
        n = 150 + 40 * k  # words; lengths differ per document
        (root / f"book{k:02d}.txt").write_text(" ".join(rng.choice(WORDS, size=n)), encoding="utf-8")
    (root / "broken.txt").write_bytes(b"\xff\xfe not utf-8 \xff")
    return root


@pytest.fixture(scope="module")
def shards(model_dir, corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("shards") / "s"
    assert main(["tokenize", "--tokenizer", str(model_dir), "--input", str(corpus), "-o", str(out), "--quiet"]) == 0
    return out


def test_tokenize_reports_skips_and_is_idempotent(model_dir, corpus, shards, tmp_path, capsys):
    meta = json.loads((shards / "meta.json").read_text())
    assert meta["n_docs"] == 12 and any("broken.txt" in s["path"] for s in meta["skipped"])
    assert main(["tokenize", "--tokenizer", str(model_dir), "--input", str(corpus), "-o", str(shards), "--quiet"]) == 0
    out = capsys.readouterr()
    assert "up to date" in out.out and "skipped" in out.err and "broken.txt" in out.err


def test_eval_ppl_with_factor_sets(model_dir, shards, tmp_path, capsys):
    from longrope.rope import make_baseline

    pi = make_baseline("pi", rope_theta=10000.0, rotary_dim=16, original_length=128, target_length=256)
    pi.save(tmp_path / "pi" / "factors.json")
    out = tmp_path / "res"
    rc = main(["eval", "ppl", "--model", str(model_dir), "--factors", str(tmp_path / "pi" / "factors.json"),
               "--data", str(shards), "--lengths", "64,128,256", "--samples", "3", "--split", "all",
               "--quiet", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "ppl.csv")))
    assert [(r["factors"], int(r["length"])) for r in rows] == [
        ("none", 64), ("none", 128), ("none", 256), ("pi", 64), ("pi", 128), ("pi", 256)]
    for r in rows:
        assert int(r["n_tokens"]) == 3 * (int(r["length"]) - 1)
        assert float(r["ppl"]) == pytest.approx(math.exp(float(r["nll_sum"]) / int(r["n_tokens"])))
    res = json.loads((out / "ppl.json").read_text())
    assert len(res["config"]["documents"]) == 3 and res["config"]["mode"] == "truncate"
    assert (out / "ppl.png").stat().st_size > 1000
    # the same documents for every factor set and length; PI changes the numbers
    docs = {tuple(d["doc_id"] for d in r["per_doc"]) for r in res["results"]}
    assert len(docs) == 1
    by = {(r["factors"], r["length"]): r["ppl"] for r in res["results"]}
    assert by[("pi", 256)] != by[("none", 256)]


def test_the_warning_of_too_few_windows_names_the_split_in_words(model_dir, shards, tmp_path, capsys):
    """With --split all it said "only 3 all window(s)" (battery 25c's open item)."""
    argv = ["eval", "ppl", "--model", str(model_dir), "--data", str(shards), "--lengths", "256", "--samples", "999",
            "--skip-none", "--factors", "none", "--quiet", "-o", str(tmp_path / "res")]
    for split, says in (("all", r"warning: only \d+ window\(s\) of 256"), ("search", r"only \d+ search window\(s\) of 256")):
        main([*argv, "--split", split])
        err = capsys.readouterr().err
        assert re.search(says, err), err


def test_eval_ppl_matches_library_call(model_dir, shards, tmp_path):
    """The CLI's number equals evaluate_perplexity on the same sampled documents."""
    from longrope.data import TokenCorpus, sample_documents
    from longrope.evaluate import evaluate_perplexity
    from longrope.models.loading import load_model

    out = tmp_path / "res"
    assert main(["eval", "ppl", "--model", str(model_dir), "--data", str(shards), "--lengths", "100",
                 "--samples", "2", "--stride", "30", "--seed", "3", "--quiet", "-o", str(out)]) == 0
    row = json.loads((out / "ppl.json").read_text())["results"][0]
    model, tok = load_model(str(model_dir))
    docs = sample_documents(TokenCorpus.open(shards), 99, 2, seed=3, split="heldout")
    ref = evaluate_perplexity(model, docs, 100, bos_id=tok.bos_token_id, stride=30)
    assert row["mode"] == "sliding" and row["n_tokens"] == ref.n_tokens
    assert row["ppl"] == pytest.approx(ref.ppl, rel=1e-6)


def test_the_record_names_the_unit_ppl_doc_mean_averages_over(model_dir, shards, tmp_path):
    """ppl_doc_mean averages per-window means in truncate mode and per-document means in sliding mode (each document
    scored whole over its windows); the record said "per-window" in both (battery 25c). Recomputed from per_doc."""
    import math

    for stride, unit in ((None, "per-window mean NLL"), (30, "per-document mean NLL")):
        out = tmp_path / f"res-{stride}"
        assert main(["eval", "ppl", "--model", str(model_dir), "--data", str(shards), "--lengths", "100",
                     "--samples", "2", "--quiet", "-o", str(out), *(["--stride", str(stride)] if stride else [])]) == 0
        doc = json.loads((out / "ppl.json").read_text())
        assert unit in doc["config"]["weighting"]
        per = doc["results"][0]["per_doc"]
        mean = sum(p["nll_sum"] / p["n_tokens"] for p in per) / len(per)
        assert doc["results"][0]["ppl_doc_mean"] == pytest.approx(math.exp(mean), rel=1e-9)


def test_eval_passkey_generate_and_needle(model_dir, tmp_path, capsys):
    for mode in ("generate", "needle"):
        out = tmp_path / mode
        rc = main(["eval", "passkey", "--model", str(model_dir), "--lengths", "128,192", "--trials", "2",
                   "--depths", "0,1", "--mode", mode, "--quiet", "-o", str(out)])
        assert rc == 0, capsys.readouterr().err
        rows = list(csv.DictReader(open(out / "passkey.csv")))
        assert [(int(r["length"]), float(r["depth"])) for r in rows] == [(128, 0.0), (128, 1.0), (192, 0.0), (192, 1.0)]
        assert all(int(r["trials"]) == 2 for r in rows)
        assert (out / "passkey_none.png").stat().st_size > 1000


def test_eval_passkey_reports_intervals_answer_nll_and_verdicts(model_dir, tmp_path, capsys):
    """The default mode scores every key both ways; the summary gives each set's interval and answer NLL, and
    one verdict per set against --reference; an unknown reference is one line."""
    from longrope.rope import make_baseline

    yarn = tmp_path / "yarn.json"
    make_baseline("yarn", rope_theta=10000.0, rotary_dim=16, original_length=128, target_length=256).save(yarn)
    out = tmp_path / "both"
    rc = main(["eval", "passkey", "--model", str(model_dir), "--lengths", "192", "--trials", "2", "--depths", "0,1",
               "--factors", str(yarn), "--quiet", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["mode"] == "both" and summary["reference"] == "yarn"
    for name in ("none", "yarn"):
        r = summary["retrieval"][name]["192"]
        assert r["keys"] == 4 and r["ci95"][0] <= r["accuracy"] <= r["ci95"][1] and r["answer_nll"] >= 0
    v = summary["verdicts"]["none"]["192"]
    assert set(summary["verdicts"]) == {"none"} and "yarn" in v["label"] and v["nll_wins"] + v["nll_losses"] <= 4
    printed = [line for line in captured.out.splitlines() if line.strip().startswith("none")]
    assert printed and "[" in printed[0] and "answer NLL" in printed[0] and v["label"] in printed[0]
    # two lengths: one interval and one verdict per length, keys of different lengths never pooled
    rc = main(["eval", "passkey", "--model", str(model_dir), "--lengths", "160,192", "--trials", "1", "--depths",
               "0,1", "--factors", str(yarn), "--quiet", "-o", str(tmp_path / "two")])
    assert rc == 0
    two = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert {k: v["keys"] for k, v in two["retrieval"]["none"].items()} == {"160": 2, "192": 2}
    assert set(two["verdicts"]["none"]) == {"160", "192"}
    capsys.readouterr()
    rc = main(["eval", "passkey", "--model", str(model_dir), "--lengths", "192", "--trials", "1",
               "--reference", "nope", "--quiet", "-o", str(tmp_path / "x")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "--reference" in err and len(err.splitlines()) == 1


def test_eval_passkey_in_real_documents(model_dir, shards, tmp_path, capsys):
    out = tmp_path / "pk"
    rc = main(["eval", "passkey", "--model", str(model_dir), "--lengths", "128", "--trials", "2", "--depths", "0.5",
               "--mode", "needle", "--data", str(shards), "--split", "all", "--quiet", "-o", str(out)])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "passkey.json").read_text())["config"]
    assert len(cfg["haystack"]["documents"]) == 2


@pytest.mark.parametrize("argv,needle", [
    (["--lengths", "100000"], "the longest is"),
    (["--lengths", "0,64"], "--lengths"),
    (["--lengths", "abc"], "--lengths"),
    (["--lengths", "64", "--stride", "100"], "--stride"),
    (["--lengths", "64", "--samples", "0"], "--samples"),
])
def test_eval_ppl_bad_input_is_one_line(model_dir, shards, tmp_path, capsys, argv, needle):
    rc = main(["eval", "ppl", "--model", str(model_dir), "--data", str(shards), "--split", "all", "--quiet",
               "-o", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and len(err.splitlines()) == 1


def test_eval_ppl_wrong_tokenizer(model_dir, corpus, tmp_path, capsys):
    """Shards made with another vocabulary are refused before any evaluation."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    other = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["<unk>", "<s>", *sorted(set(WORDS))])},
                                       unk_token="<unk>"))
    other.pre_tokenizer = pre_tokenizers.Whitespace()
    tok_dir = tmp_path / "wordlevel"
    PreTrainedTokenizerFast(tokenizer_object=other, bos_token="<s>", unk_token="<unk>").save_pretrained(tok_dir)
    # a tokenizer-only folder (no config.json), as AutoTokenizer accepts
    assert main(["tokenize", "--tokenizer", str(tok_dir), "--input", str(corpus), "-o", str(tmp_path / "s"),
                 "--quiet"]) == 0
    capsys.readouterr()
    rc = main(["eval", "ppl", "--model", str(model_dir), "--data", str(tmp_path / "s"), "--lengths", "32",
               "--split", "all", "--quiet", "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "different vocabulary" in err and len(err.splitlines()) == 1


def test_tokenize_empty_and_offline(model_dir, tmp_path, capsys, monkeypatch):
    (tmp_path / "empty").mkdir()
    assert main(["tokenize", "--tokenizer", str(model_dir), "--input", str(tmp_path / "empty"),
                 "-o", str(tmp_path / "o"), "--quiet"]) == 2
    assert "empty corpus" in capsys.readouterr().err
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["tokenize", "--tokenizer", str(model_dir), "--input", "pg19", "-o", str(tmp_path / "o"),
                 "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "offline" in err and len(err.splitlines()) == 1


def test_help_has_examples(capsys):
    for argv in (["tokenize", "--help"], ["eval", "--help"], ["eval", "ppl", "--help"]):
        with pytest.raises(SystemExit):
            main(argv)
        assert "example" in capsys.readouterr().out


# ------------------------------------------------------------------ mistakes found before the weights load
def _one_line(capsys, argv):
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("argv,needle", [
    (["--lengths", "16"], "too short for the passkey prompt"),
    (["--lengths", "128", "--heldout-fraction", "2"], "--heldout-fraction must be in [0, 1]"),
    (["--lengths", "128", "--split", "search"], "--split needs --data"),
    (["--lengths", "128", "--heldout-fraction", "0.3"], "--heldout-fraction needs --data"),
    (["--lengths", "100000000000"], "--lengths: a length is at most 16,777,216 tokens, got 100,000,000,000"),
    (["--lengths", "128", "--original-length", "1"], "--original-length"),
])
def test_eval_passkey_bad_input_before_the_weights(model_dir, tmp_path, capsys, no_weights, argv, needle):
    err = _one_line(capsys, ["eval", "passkey", "--model", str(model_dir), "--trials", "1", "--depths", "0.5",
                             "--quiet", "-o", str(tmp_path / "o"), *argv])
    assert needle in err
    assert not (tmp_path / "o").exists()


def test_eval_passkey_empty_data_folder_before_the_weights(model_dir, tmp_path, capsys, no_weights):
    (tmp_path / "empty").mkdir()
    err = _one_line(capsys, ["eval", "passkey", "--model", str(model_dir), "--lengths", "128", "--trials", "1",
                             "--data", str(tmp_path / "empty"), "--quiet", "-o", str(tmp_path / "o")])
    assert str(tmp_path / "empty") in err and "shard folder" in err


def test_absurd_length_is_refused_with_the_memory_it_needs(model_dir, tmp_path, capsys, no_weights, monkeypatch):
    from longrope.evaluate import memory

    monkeypatch.setattr(memory, "device_memory", lambda device: 1 << 30)  # a 1 GiB machine
    err = _one_line(capsys, ["eval", "passkey", "--model", str(model_dir), "--lengths", "16000000",
                             "--trials", "1", "--depths", "0.5", "-o", str(tmp_path / "o")])
    assert "GiB" in err and "use lengths of at most" in err


def test_factor_file_for_another_base_fails_before_the_unscaled_evaluation(model_dir, shards, tmp_path, capsys,
                                                                           no_weights):
    """Used to evaluate the whole unscaled 'none' set first, then fail installing the file."""
    from longrope.rope import make_baseline

    f = make_baseline("pi", rope_theta=500000.0, rotary_dim=16, original_length=128, target_length=256).save(
        tmp_path / "theta.json")
    err = _one_line(capsys, ["eval", "ppl", "--model", str(model_dir), "--data", str(shards), "--lengths", "64",
                             "--split", "all", "--factors", str(f), "--quiet", "-o", str(tmp_path / "o")])
    assert str(f) in err and "rope_theta=500000" in err and "longrope baseline" in err


def test_out_of_memory_during_evaluation_is_one_line(model_dir, tmp_path, capsys, monkeypatch):
    import longrope.evaluate.passkey as pk

    def oom(*a, **k):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] data. DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 409600000000 bytes. Error code 12 (Cannot allocate memory)")

    monkeypatch.setattr(pk, "generate_answer", oom)
    err = _one_line(capsys, ["eval", "passkey", "--model", str(model_dir), "--lengths", "128", "--trials", "1",
                             "--depths", "0.5", "--quiet", "-o", str(tmp_path / "o")])
    assert "out of memory" in err and "length 128" in err and "shorter lengths" in err
    assert not (tmp_path / "o").exists()
