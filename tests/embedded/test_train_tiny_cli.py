"""``longrope train-tiny`` end to end on a microscopic synthetic corpus (seconds, no downloads)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrope.cli import main

SMALL = ["--vocab-size", "320", "--hidden-size", "32", "--num-layers", "1", "--num-heads", "1",
         "--intermediate-size", "64", "--context", "64", "--batch-size", "2", "--max-steps", "6",
         "--warmup-steps", "2", "--eval-every", "3", "--eval-windows", "2", "--report-passkey-trials", "0"]


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory):
    rng = np.random.default_rng(0)
    words = "the cat sat on a mat while dogs ran to and fro in an old green park by the river".split()
    d = tmp_path_factory.mktemp("texts")
    for name in ("alpha", "beta", "gamma", "delta"):
        (d / f"{name}.txt").write_text(" ".join(rng.choice(words, 2500)) + "\n")
    return d


def _run(text_dir, out, cache, *extra):
    args = ["train-tiny", "--text-dir", str(text_dir), "--search-docs", "beta", "--heldout-docs", "gamma",
            "--out", str(out), "--cache-dir", str(cache), *SMALL, *extra]
    assert main(args) == 0


def test_train_tiny_end_to_end_is_loadable_and_reproducible(text_dir, tmp_path):
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    _run(text_dir, tmp_path / "a", tmp_path / "ca")
    tiny = tmp_path / "a" / "tiny"
    model = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(tiny)
    assert model.config.max_position_embeddings == 64
    assert tok("the cat")["input_ids"][0] == tok.bos_token_id
    info = json.loads((tiny / "training.json").read_text())
    assert info["run"]["steps"] == 6 and info["seed"] == 0
    assert "--max-steps 6" in info["command"] and "--text-dir" in info["command"]
    assert info["report"]["target_length"] == 512
    assert len((tiny / "train_log.jsonl").read_text().splitlines()) == 2
    split = json.loads((tmp_path / "a" / "corpus" / "split.json").read_text())
    assert split["roles"] == {"train": ["alpha", "delta"], "search": ["beta"], "heldout": ["gamma"]}
    assert (tmp_path / "a" / "corpus" / "heldout" / "gamma.txt").exists()
    assert not (tmp_path / "a" / "corpus" / "train").exists()
    # same seed, fresh cache: bit-identical weights
    _run(text_dir, tmp_path / "b", tmp_path / "cb")
    wa, wb = load_file(tiny / "model.safetensors"), load_file(tmp_path / "b" / "tiny" / "model.safetensors")
    assert wa.keys() == wb.keys()
    for k in wa:
        torch.testing.assert_close(wa[k], wb[k], rtol=0, atol=0)
    # a different seed gives different weights
    _run(text_dir, tmp_path / "c", tmp_path / "cc", "--seed", "1")
    wc = load_file(tmp_path / "c" / "tiny" / "model.safetensors")
    assert any(not torch.equal(wa[k], wc[k]) for k in wa)


def test_train_tiny_resumes_from_its_checkpoint(text_dir, tmp_path):
    """A run killed after step 3 and resumed ends with the weights of an uninterrupted run."""
    import dataclasses

    import torch

    from longrope.embedded.train import TinyConfig, encode_docs, train, train_tokenizer

    texts = [p.read_text() for p in sorted(text_dir.glob("*.txt"))]
    cfg = TinyConfig(vocab_size=320, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64,
                     context=64, batch_size=2, max_steps=6, warmup_steps=2, eval_every=3, eval_windows=2)
    tok = train_tokenizer(texts[:2], cfg.vocab_size)
    docs = encode_docs(tok, texts[:2])
    full, full_log, _ = train(cfg, tok, docs, docs[:1])
    ckpt = tmp_path / "ck.pt"
    every_step = dataclasses.replace(cfg, checkpoint_every_s=0.0)  # same fingerprint, saves each step
    with pytest.raises(_Stop):
        train(every_step, tok, docs, docs[:1], checkpoint=ckpt, progress=_stop_after(3))
    assert ckpt.exists()
    resumed, log, summary = train(cfg, tok, docs, docs[:1], checkpoint=ckpt)
    assert summary["steps"] == 6
    assert [e["step"] for e in log] == [3, 6]
    assert [e["train_loss"] for e in log][-1] == full_log[-1]["train_loss"]
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # --stop-at-step cuts a run without changing its schedule; resuming it finishes the same run
    ckpt.unlink()
    _, cut_log, cut = train(dataclasses.replace(cfg, stop_at_step=4), tok, docs, docs[:1], checkpoint=ckpt)
    assert cut["steps"] == 4 and cut["stopped_early"] and [e["step"] for e in cut_log] == [3, 4]
    resumed, _, _ = train(cfg, tok, docs, docs[:1], checkpoint=ckpt)
    for (k, a), (_, b) in zip(full.state_dict().items(), resumed.state_dict().items()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=k)
    # a checkpoint of another config is refused, not silently mixed in
    from longrope.errors import UserError

    other = dataclasses.replace(cfg, lr=1e-4)
    ckpt.rename(tmp_path / "other.pt")
    import shutil

    shutil.copy(tmp_path / "other.pt", ckpt)
    with pytest.raises(UserError, match="different config"):
        train(other, tok, docs, docs[:1], checkpoint=ckpt)


class _Stop(Exception):
    pass


def _stop_after(step):
    def progress(entry):
        if entry["step"] >= step:
            raise _Stop

    return progress


def test_bad_flags_are_user_errors(text_dir, tmp_path, capsys):
    args = ["train-tiny", "--text-dir", str(text_dir), "--out", str(tmp_path), "--cache-dir", str(tmp_path)]
    assert main(args) == 2  # --text-dir without naming search/held-out docs
    assert "--search-docs" in capsys.readouterr().err
    assert main([*args, "--search-docs", "beta", "--heldout-docs", "nope"]) == 2
    assert "not in the corpus" in capsys.readouterr().err
    assert main([*args, "--search-docs", "beta", "--heldout-docs", "gamma", "--hidden-size", "30",
                 "--num-heads", "4"]) == 2
    assert "--hidden-size" in capsys.readouterr().err


def test_copy_and_periodic_passkey_flags_are_recorded(text_dir, tmp_path):
    _run(text_dir, tmp_path / "o", tmp_path / "c", "--copy-fraction", "0.2", "--eval-passkey-trials", "2",
         "--no-resume")
    info = json.loads((tmp_path / "o" / "tiny" / "training.json").read_text())
    assert info["config"]["copy_fraction"] == 0.2 and info["config"]["eval_passkey_trials"] == 2
    assert "--copy-fraction 0.2" in info["command"] and "--eval-passkey-trials 2" in info["command"]


def test_rerun_retrains_to_the_same_weights_and_report_only_recomputes_the_report(text_dir, tmp_path):
    from safetensors.torch import load_file

    first, again = tmp_path / "a", tmp_path / "b"
    _run(text_dir, first, tmp_path / "ca")
    assert main(["rerun", str(first), "-o", str(again)]) == 0
    wa, wb = (load_file(f / "tiny" / "model.safetensors") for f in (first, again))
    assert all((wa[k] == wb[k]).all() for k in wa)
    ra, rb = (json.loads((f / "summary.json").read_text()) for f in (first, again))
    assert {k: v for k, v in ra.items() if k.startswith("ppl_")} == {k: v for k, v in rb.items() if k.startswith("ppl_")}
    # --report-only: the report again, from the model and held-out texts in the folder
    info = json.loads((first / "tiny" / "training.json").read_text())
    assert main(["train-tiny", "--out", str(first), "--report-only", "--report-passkey-trials", "0"]) == 0
    new = json.loads((first / "tiny" / "training.json").read_text())
    assert new["run"] == info["run"] and new["command"] == info["command"]
    assert {k: v for k, v in new["report"].items() if k.startswith("ppl_")} == \
        {k: v for k, v in info["report"].items() if k.startswith("ppl_")}
