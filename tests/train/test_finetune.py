"""``finetune`` end to end on a tiny random Llama (2 layers, L = 32) and windows of N = 64 tokens."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from longrope.errors import ConfigError, UserError
from longrope.train import finetune
from longrope.train.checkpoint import checkpoint_dirs
from tests.train.train_helpers import pattern_doc, write_corpus

SCRIPT = Path(__file__).with_name("finetune_script.py")


def test_a_few_steps_lower_the_loss_and_write_the_run(make_config):
    result = finetune(make_config(steps=12, keep_checkpoints=2))
    first, last = np.mean(result.losses[:3]), np.mean(result.losses[-3:])
    assert last < first - 0.3, result.losses
    assert result.steps == 12 and result.kinds == ("long",) * 12 and result.tokens == 12 * 64
    lines = result.log_path.read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == list(range(1, 13))
    assert result.plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [p.name for p in checkpoint_dirs(result.output)] == ["step-00000010", "step-00000012"]
    assert (result.model_dir / "config.json").is_file() and (result.model_dir / "factors.json").is_file()


def test_short_steps_train_short_windows_with_the_short_factors(make_config, factors_file, monkeypatch):
    """On short steps every segment fits in L and the rotary module holds the short factors for both regimes."""
    from longrope.models import current_patch
    from longrope.rope import FactorSet
    from longrope.train.loss import CausalLMLoss

    fs = FactorSet.load(factors_file)
    seen = []
    forward = CausalLMLoss.forward

    def spy(self, input_ids, position_ids, targets, scale=1.0):
        module = current_patch(self.lm).module
        seen.append((int(position_ids.max()) + 1, module.long_inv_freq.clone(), module.short_inv_freq.clone()))
        return forward(self, input_ids, position_ids, targets, scale)

    monkeypatch.setattr(CausalLMLoss, "forward", spy)
    result = finetune(make_config(steps=4, short_share=0.5))
    assert result.kinds == ("long", "short", "long", "short")
    base = torch.from_numpy(fs.inv_freq("long") * fs.long_factor)  # θ_i
    for (longest, long_tab, short_tab), kind in zip(seen, result.kinds):
        want = base / torch.tensor(fs.short_factor if kind == "short" else fs.long_factor)  # a copy: the arrays are read-only
        torch.testing.assert_close(long_tab, want)
        torch.testing.assert_close(short_tab, want)
        assert longest <= (32 if kind == "short" else 64)
    assert [json.loads(x)["segment"] for x in result.log_path.read_text().splitlines()] == [64, 32, 64, 32]


def test_export_loads_in_stock_transformers_with_both_factor_sets(make_config, factors_file, tiny_dir):
    from transformers import AutoModelForCausalLM

    from longrope.models import install_factors, load_model
    from longrope.rope import FactorSet

    result = finetune(make_config(steps=2, warmup_steps=0))
    fs = FactorSet.load(factors_file)
    stock = AutoModelForCausalLM.from_pretrained(result.model_dir).eval()
    params = stock.config.rope_parameters
    assert params["rope_type"] == "longrope"
    assert np.allclose(params["long_factor"], fs.long_factor) and np.allclose(params["short_factor"], fs.short_factor)
    ours, _ = load_model(str(result.model_dir))
    install_factors(ours, fs)
    original = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(original.model.layers[0].mlp.up_proj.weight, stock.model.layers[0].mlp.up_proj.weight)
    ids = torch.randint(3, 128, (1, 80), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        for n in (24, 80):  # short factors (n <= L = 32), long factors (n > L)
            torch.testing.assert_close(stock(ids[:, :n]).logits, ours(ids[:, :n]).logits, rtol=1e-4, atol=1e-4)
        assert not torch.allclose(stock(ids[:, :24]).logits, original(ids[:, :24]).logits, atol=1e-3)


def test_lora_trains_adapters_embeddings_and_norms_and_merges_on_export(make_config, tiny_dir):
    from safetensors.torch import load_file

    result = finetune(make_config(steps=3, warmup_steps=0, lora=True, lora_rank=4))
    before = load_file(tiny_dir / "model.safetensors")
    after = load_file(result.model_dir / "model.safetensors")
    assert set(before) == set(after)  # merged: a plain model, no adapter weights
    assert result.trainable_parameters < sum(v.numel() for v in before.values())
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert "model.layers.0.self_attn.q_proj.weight" in changed  # adapters merged in
    assert "model.embed_tokens.weight" in changed and "model.norm.weight" in changed  # trained fully
    assert "model.layers.0.mlp.up_proj.weight" not in changed  # frozen


def test_lora_run_resumes_from_a_checkpoint_exactly(make_config, tmp_path):
    full = finetune(make_config(steps=4, lora=True, output=str(tmp_path / "full")))
    cfg = make_config(steps=4, lora=True, output=str(tmp_path / "cut"))
    finetune(cfg)
    # As if the run had died after step 3: the step-4 checkpoint and the export never happened.
    shutil.rmtree(Path(cfg.output, "checkpoints", "step-00000004"))
    shutil.rmtree(Path(cfg.output, "model"))
    resumed = finetune(dataclasses.replace(cfg, resume=True))
    assert resumed.resumed_from == 2
    np.testing.assert_allclose(resumed.losses, full.losses, rtol=1e-6, atol=0)


def test_gradient_checkpointing_gives_the_same_curve(make_config, tmp_path):
    plain = finetune(make_config(steps=3, output=str(tmp_path / "a")))
    ckpt = finetune(make_config(steps=3, output=str(tmp_path / "b"), gradient_checkpointing=True))
    np.testing.assert_allclose(ckpt.losses, plain.losses, rtol=1e-5)


def test_bf16_mixed_precision_on_cpu(make_config, tmp_path):
    fp32 = finetune(make_config(steps=2, output=str(tmp_path / "fp32")))
    bf16 = finetune(make_config(steps=2, dtype="bfloat16", output=str(tmp_path / "bf16")))
    assert bf16.losses[0] == pytest.approx(fp32.losses[0], rel=2e-2) and bf16.losses[0] != fp32.losses[0]
    with pytest.raises(ConfigError, match="dtype float16 .* needs a GPU"):
        finetune(make_config(steps=2, dtype="float16", output=str(tmp_path / "fp16")))


def test_tokens_per_step_sets_the_accumulation(make_config, tmp_path):
    result = finetune(make_config(steps=2, tokens_per_step=3 * 64))
    assert result.grad_accum == 3 and result.tokens == 2 * 3 * 64
    with pytest.raises(ConfigError, match="tokens_per_step .*must be a multiple of batch_size x seq_len"):
        finetune(make_config(steps=2, tokens_per_step=100, output=str(tmp_path / "other")))


def test_overlap_with_held_out_documents_is_refused_before_loading(make_config, tmp_path):
    shards = write_corpus(tmp_path / "leaky", [("train/a.txt", pattern_doc(1, 90), "train"),
                                                ("copy-of-a.txt", pattern_doc(1, 90), "heldout")])
    cfg = make_config(data=str(shards), model=str(tmp_path / "no-such-model"))
    with pytest.raises(UserError, match="'train/a.txt' has the same content as heldout document 'copy-of-a.txt'"):
        finetune(cfg)
    assert not Path(cfg.output).exists()


def test_a_seq_len_below_l_names_seq_len_not_the_short_length_left_unset(make_config):
    """--seq-len 2 alone blamed --short-length, a flag the user had not given (battery 5): its default L
    exceeded the windows."""
    with pytest.raises(ConfigError) as err:
        finetune(make_config(seq_len=16, short_share=0.5))
    assert err.value.render({"seq_len": "--seq-len", "short_length": "--short-length"}.get).startswith(
        "--seq-len (16) is below the factor set's original length L = 32, the default of --short-length")
    with pytest.raises(ConfigError, match=r"short_length \(24\) must not exceed seq_len \(16\)"):
        finetune(make_config(seq_len=16, short_length=24, short_share=0.5))


def test_a_seq_len_below_l_without_short_steps_is_not_told_to_shorten_the_short_length(make_config):
    """Battery 24b: --seq-len 100 (below L = 256) with no --short-share was told 'or a shorter --short-length',
    and following it was refused (--short-length without short steps). The refusal names only --seq-len."""
    with pytest.raises(ConfigError) as err:
        finetune(make_config(seq_len=16))
    assert err.value.fields == ("seq_len",)
    assert "short_length" not in str(err.value) and "give a seq_len of at least 32" in str(err.value)


def test_a_diverging_loss_is_one_line_naming_the_settings(make_config, tmp_path):
    """finetune --lora --lora-alpha 1e308 (or --learning-rate 1e10) ended in a FloatingPointError traceback (rc 1),
    saying 'lower the learning rate' even when the LoRA scale was the cause (battery 7)."""
    with pytest.raises(ConfigError, match="loss is nan at step 1: training diverged") as err:
        finetune(make_config(steps=2, lora=True, lora_alpha=1e308, output=str(tmp_path / "ft")))
    assert err.value.fields == ("learning_rate", "lora_alpha")


def test_a_finished_run_is_not_overwritten_and_resume_checks_the_settings(make_config):
    first = finetune(make_config(steps=2))
    with pytest.raises(UserError, match="already holds a fine-tuning run; pass --resume"):
        finetune(make_config(steps=2))
    again = finetune(make_config(steps=2, resume=True))
    assert again.resumed_from == 2 and again.losses == first.losses
    with pytest.raises(ConfigError, match="learning_rate is 0.001 but the checkpoint was made with 0.003"):
        finetune(make_config(steps=2, resume=True, learning_rate=1e-3))


def _run_script(cfg, *args, env_extra=None):
    cfg_file = Path(cfg.output).with_name(Path(cfg.output).name + ".json")
    cfg_file.write_text(json.dumps(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"), **(env_extra or {})}
    return subprocess.run([sys.executable, str(SCRIPT), str(cfg_file), *map(str, args)], capture_output=True,
                          text=True, env=env, timeout=120)


def test_sigkill_then_resume_continues_the_same_loss_curve(make_config, tmp_path):
    reference = finetune(make_config(steps=6, output=str(tmp_path / "reference")))
    cfg = make_config(steps=6, output=str(tmp_path / "killed"))
    proc = _run_script(cfg, 3)  # checkpoints at 2 and 4; killed right after logging step 3
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert [p.name for p in checkpoint_dirs(Path(cfg.output))] == ["step-00000002"]
    assert len(Path(cfg.output, "train_log.jsonl").read_text().splitlines()) == 3  # step 3: past the checkpoint
    resumed = finetune(make_config(steps=6, output=cfg.output, resume=True))
    assert resumed.resumed_from == 2
    np.testing.assert_allclose(resumed.losses, reference.losses, rtol=1e-6, atol=0)


def test_passkey_share_replaces_long_rows_with_passkey_prompts(make_config, tmp_path):
    """With the embedded model (it has a tokenizer): every long row a passkey prompt at share 1, the
    short steps untouched; a model without a tokenizer is refused before training."""
    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.embedded import document_paths
    from longrope.errors import UserError
    from longrope.rope import make_baseline

    fs = make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512)
    factors = fs.save(tmp_path / "yarn.json")
    shards = tmp_path / "tiny-shards"
    tokenize_corpus(load_tokenizer("tiny"), [f"train={document_paths('train')[0]}"], shards, tokenizer_name="tiny",
                    progress=False)
    cfg = make_config(model="tiny", factors=str(factors), data=str(shards), seq_len=512, steps=4, short_share=0.5, passkey_share=1.0,
                      batch_size=2, output=str(tmp_path / "pk"), checkpoint_every=4, learning_rate=1e-5)
    result = finetune(cfg)
    log = [json.loads(x) for x in result.log_path.read_text().splitlines()]
    assert [r["passkey_rows"] for r in log] == [0 if r["kind"] == "short" else 2 for r in log]
    assert {r["kind"] for r in log} == {"short", "long"}
    assert all(r["targets"] == 2 * 511 for r in log if r["kind"] == "long")
    assert all(np.isfinite(r["loss"]) for r in log)
    with pytest.raises(UserError, match="tokenizer"):
        finetune(make_config(passkey_share=0.5, output=str(tmp_path / "no-tok")))
    with pytest.raises(UserError, match="passkey prompt"):  # refused at set-up, before any step
        finetune(make_config(model="tiny", factors=str(factors), data=str(shards), seq_len=64, short_length=32, short_share=0.5,
                             passkey_share=0.5, output=str(tmp_path / "short")))


def test_a_passkey_rows_longest_segment_is_its_whole_window(make_config, tmp_path):
    """train_log's longest_segment recorded the packed rows' longest document where passkey prompts (whole windows)
    had replaced them: 6 tokens on a step of 512-token passkey rows (battery 29b's open item)."""
    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.rope import make_baseline

    factors = make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512).save(
        tmp_path / "yarn.json")
    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(4):
        (docs / f"d{i}.txt").write_text(f"a short note number {i} about the sea.")
    shards = tmp_path / "shards"
    tokenize_corpus(load_tokenizer("tiny"), [f"train={docs}"], shards, tokenizer_name="tiny", progress=False)
    cfg = make_config(model="tiny", factors=str(factors), data=str(shards), seq_len=512, steps=2, short_share=0.0,
                      passkey_share=1.0, batch_size=2, output=str(tmp_path / "pk"), checkpoint_every=2)
    log = [json.loads(x) for x in finetune(cfg).log_path.read_text().splitlines()]
    assert [(r["passkey_rows"], r["longest_segment"]) for r in log] == [(2, 512), (2, 512)]


def test_the_exported_model_keeps_its_kv_cache_setting(make_config, tiny_dir):
    """Battery 23c: training turned the model's config.use_cache off, and the export saved it so: the fine-tuned
    folder's stock forward calls returned no KV cache (its base and every other export do), also with
    gradient checkpointing, which needs no cache either (the loss asks for none)."""
    from transformers import AutoConfig

    assert AutoConfig.from_pretrained(tiny_dir).use_cache is True
    result = finetune(make_config(steps=2, warmup_steps=0, lora=True, lora_rank=4, gradient_checkpointing=True))
    assert json.loads((result.model_dir / "config.json").read_text())["use_cache"] is True


def test_a_one_step_run_without_a_warmup_given_trains(make_config, tiny_dir):
    """Battery 24b: ``finetune --steps 1`` took the default warm-up clamped to 1 step, whose first learning
    rate is 0: the run reported success and exported the input weights unchanged. The default warm-up ends
    before the last step; an explicit warm-up of 1 in a 1-step run is refused."""
    from transformers import AutoModelForCausalLM

    from longrope.errors import ConfigError

    result = finetune(make_config(steps=1, warmup_steps=None))
    assert json.loads(result.log_path.read_text().splitlines()[0])["lr"] == pytest.approx(3e-3)
    trained = AutoModelForCausalLM.from_pretrained(result.model_dir)
    original = AutoModelForCausalLM.from_pretrained(tiny_dir)
    assert not torch.equal(original.model.layers[0].mlp.up_proj.weight, trained.model.layers[0].mlp.up_proj.weight)
    with pytest.raises(ConfigError, match="nothing would be trained"):
        make_config(steps=1, warmup_steps=1, output=str(result.model_dir.parent.parent / "other"))


def test_shards_of_a_larger_vocabulary_are_refused_before_the_run_folder(make_config, tmp_path):
    """Battery 27c: shards holding ids past the model's 128 embeddings (a model without tokenizer files) were refused
    at the first batch, after the run folder was made: the same command again asked for --resume."""
    from longrope.runs.finetune import run

    docs = [(f"train/{k}.txt", np.arange(3, 403) % 400, "train") for k in range(3)]
    data = write_corpus(tmp_path / "big-vocab", docs)
    meta = json.loads((data / "meta.json").read_text())
    meta["tokenizer"].update(vocab_size=400, max_token_id=399)  # as `longrope tokenize` records them
    (data / "meta.json").write_text(json.dumps(meta))
    config = make_config(data=str(data))
    with pytest.raises(ConfigError, match="holds token id 399 but .* has 128 token embeddings") as e:
        run(config)
    assert set(e.value.fields) == {"data", "model"}
    assert not Path(config.output).exists()


def test_one_token_documents_without_bos_are_refused_before_the_model_loads(make_config, tmp_path, no_weights):
    """Battery 29b: training documents of one token each and --no-bos gave every step zero targets: a
    ZeroDivisionError traceback at the first step."""
    docs = [(f"train/{k}.txt", np.array([5 + k]), "train") for k in range(4)]
    data = write_corpus(tmp_path / "one-token", [*docs, ("search/a.txt", pattern_doc(2, 200), "search")])
    with pytest.raises(ConfigError, match="every training document has one token, which has no target when segments "
                       r"begin without BOS \(set by bos\)") as e:
        finetune(make_config(data=str(data), bos=False))
    assert e.value.fields == ("bos",)  # each interface spells it its own way (the CLI: --no-bos), not a flag in all


def test_a_model_without_a_bos_token_names_the_flag_that_trains_without_it(tmp_path, build_tiny_model, factors_file,
                                                                          corpus_dir, capsys):
    """The refusal read '--no-bos is on but the model has no BOS token; turn it off' on the command line: the flag
    spelled for a field that is on by default, and the opposite of the fix (fix-29t's open item)."""
    from longrope.cli import main

    model = build_tiny_model("llama")
    model.config.bos_token_id = None
    model.save_pretrained(tmp_path / "no-bos-model")
    capsys.readouterr()  # (transformers' bar of the save above)
    code = main(["finetune", "--model", str(tmp_path / "no-bos-model"), "--factors", str(factors_file), "--data",
                 str(corpus_dir), "-o", str(tmp_path / "run"), "--seq-len", "64", "--steps", "1", "--quiet"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "the model has no BOS token, so training segments cannot begin with one; train without it (--no-bos)" in err
