"""The tools' command lines derive from their configs (``longrope.tools``) as the runs' do: every flag they
took still parses to the same setting, older spellings (``--out``, ``--budget-seconds``) still work and stay
out of ``--help``, and a bad value is one line naming the flag."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from longrope.cli import build_parser, main
from longrope.errors import ConfigError, UserError
from longrope.options import add_options, config_from_args, field_flags


def _config(argv):
    """The config the CLI builds for ``argv`` (parsed, not run)."""

    args = build_parser().parse_args(argv)
    if hasattr(args, "_tool"):
        return config_from_args(args._tool.CONFIG, args)
    assert hasattr(args, "_spec"), argv
    return config_from_args(args._spec.config, args)


def _tool_configs():
    import importlib

    from longrope.cli import _TOOL_MODULES

    return {m: importlib.import_module(f"longrope.cli.{m}").CONFIG for m in _TOOL_MODULES}


def test_every_tool_field_is_documented_and_on_the_command_line():
    for name, cls in _tool_configs().items():
        p = argparse.ArgumentParser()
        add_options(p, cls)  # raises for a field without help
        given = {s for a in p._actions for s in a.option_strings}
        for flag in field_flags(cls).values():
            assert flag in given or f"--no-{flag[2:]}" in given, (name, flag)


def test_baseline_flags():
    cfg = _config(["baseline", "--model", "tiny", "--method", "yarn", "--target-length", "4k", "-o", "y.json",
                   "--original-length", "256", "--attention-factor", "1.1", "--start-tokens", "2",
                   "--beta-fast", "16", "--beta-slow", "2", "--factor", "16"])
    assert (cfg.model, cfg.method, cfg.target_length, cfg.output, cfg.original_length) == \
        ("tiny", "yarn", 4096, "y.json", 256)
    assert (cfg.attention_factor, cfg.start_tokens, cfg.beta_fast, cfg.beta_slow, cfg.factor) == (1.1, 2, 16, 2, 16)
    assert cfg.method_options() == {"beta_fast": 16.0, "beta_slow": 2.0, "factor": 16.0}
    # a ratio of the model's original context (the embedded model's config is read, no weights)
    assert _config(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "8x", "--out", "p.json"]
                   ).target_length == 8 * 256
    assert _config(["baseline", "--model", "tiny", "--method", "dynamic-ntk", "--target-length", "8x", "--length",
                    "2x", "-o", "d.json"]).length == 512


def test_export_flags():
    cfg = _config(["export", "--model", "tiny", "--factors", "f.csv", "-o", "out", "--format", "gguf", "--dtype",
                   "float32", "--original-length", "256", "--target-length", "2k", "--overwrite"])
    assert (cfg.format, cfg.dtype, cfg.original_length, cfg.target_length, cfg.overwrite) == \
        ("gguf", "float32", 256, 2048, True)
    assert _config(["export", "--model", "tiny", "--factors", "f.json", "--out", "x"]).output == "x"
    assert _config(["export", "--model", "tiny", "--factors", "f.json", "-o", "x"]).format == "hf"


def test_tokenize_flags():
    cfg = _config(["tokenize", "--tokenizer", "tiny", "--input", "a.txt", "b/", "--input", "heldout=c.jsonl",
                   "-o", "shards", "--text-field", "body", "--id-field", "id", "--shard-tokens", "64k", "--force",
                   "--quiet"])
    assert cfg.input == ("a.txt", "b/", "heldout=c.jsonl")
    assert (cfg.output, cfg.text_field, cfg.id_field, cfg.shard_tokens, cfg.force, cfg.quiet) == \
        ("shards", "body", "id", 65536, True, True)
    assert _config(["tokenize", "--tokenizer", "tiny", "--input", "a", "--out", "s"]).split is None


def test_generate_flags():
    base = ["generate", "--model", "tiny", "--factors", "f.json"]
    cfg = _config([*base, "--prompt", "hi", "--max-new-tokens", "1k", "--sample", "--temperature", "0.7",
                   "--top-p", "0.9", "--seed", "3", "--ignore-eos", "--json", "--dtype", "bfloat16", "--device", "cpu"])
    assert (cfg.prompt, cfg.max_new_tokens, cfg.sample, cfg.temperature, cfg.top_p, cfg.seed) == \
        ("hi", 1024, True, 0.7, 0.9, 3)
    assert (cfg.ignore_eos, cfg.json, cfg.dtype, cfg.device, cfg.mode) == (True, True, "bfloat16", "cpu", "switch")
    cfg = _config([*base, "--prompt-file", "p.txt", "--max-new-tokens", "1", "--mode", "switch",
                   "--cache-policy", "keep"])
    assert (cfg.prompt, cfg.prompt_file, cfg.max_new_tokens, cfg.cache_policy) == (None, "p.txt", 1, "keep")
    assert cfg.device == "auto" and cfg.dtype == "float32"  # the shared defaults (generate's as before)


def test_inspect_flags():
    cfg = _config(["inspect", "--model", "tiny", "--load", "-o", "facts.json"])
    assert (cfg.model, cfg.load, cfg.output) == ("tiny", True, "facts.json")
    assert _config(["inspect", "--model", "tiny", "--out", "f.json"]).output == "f.json"
    assert _config(["inspect", "--model", "tiny"]).output is None


def test_old_spellings_are_hidden_aliases(capsys):
    cases = {("demo",): ["--out", "--budget-seconds"], ("baseline",): ["--out"],
             ("tokenize",): ["--out"], ("export",): ["--out"], ("inspect",): ["--out"]}
    for command, aliases in cases.items():
        with pytest.raises(SystemExit):
            main([*command, "--help"])
        text = capsys.readouterr().out
        assert "-o" in text and "--output" in text, command
        for alias in aliases:
            assert f"{alias} " not in text and f"{alias}," not in text, (command, alias)
    demo = _config(["demo", "--out", "runs/d", "--budget-seconds", "60"])
    assert (demo.output, demo.max_seconds) == ("runs/d", 60.0)
    assert _config(["demo", "-o", "runs/d", "--max-seconds", "0"]).max_seconds is None


@pytest.mark.parametrize(("argv", "needle"), [
    (["baseline", "--model", "tiny", "--method", "pi", "-o", "x.json"], "--target-length is required"),
    (["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "--beta-fast", "3", "-o", "x.json"],
     "--beta-fast does not apply to --method pi"),
    (["generate", "--model", "tiny", "--factors", "f.json", "--max-new-tokens", "2"],
     "give one of --prompt and --prompt-file"),
    (["generate", "--model", "tiny", "--factors", "f.json", "--prompt", "a", "--prompt-file", "b",
      "--max-new-tokens", "2"], "give one of --prompt and --prompt-file"),
    (["generate", "--model", "tiny", "--factors", "f.json", "--prompt", "a", "--max-new-tokens", "0"],
     "--max-new-tokens must be an integer in [1, "),
    (["generate", "--model", "tiny", "--factors", "f.json", "--prompt", "a", "--max-new-tokens", "two"],
     "--max-new-tokens must be a number of tokens"),
    (["tokenize", "--tokenizer", "tiny", "--input", "a", "-o", "s", "--shard-tokens", "0"],
     "--shard-tokens must be an integer in [1, "),
    (["export", "--model", "tiny", "--factors", "f.json", "-o", "x", "--format", "onnx"], "--format"),
])
def test_a_bad_tool_setting_is_one_line_naming_the_flag(argv, needle, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert needle in err and len(err.splitlines()) == 1, err
    assert not any(tmp_path.iterdir())


def test_a_tool_config_is_the_python_api_too():
    from longrope.errors import ConfigError
    from longrope.tools import BaselineConfig, TokenizeConfig

    cfg = BaselineConfig(model="tiny", method="pi", target_length="16k", output="pi.json")
    assert cfg.target_length == 16384 and dataclasses.asdict(cfg)["start_tokens"] == 0
    with pytest.raises(ConfigError, match=r"^start_tokens 64 is not an integer from 0 to the model's L \(and at most 63 "):
        BaselineConfig(model="tiny", method="pi", target_length=64, output="o", start_tokens=64)
    with pytest.raises(ConfigError, match="^input is empty"):
        TokenizeConfig(tokenizer="tiny", input=(), output="s")


def test_token_counts_take_the_k_suffix_in_the_runs_too():
    cfg = _config(["eval", "ppl", "--model", "m", "--data", "d", "--lengths", "2k,4k", "--stride", "1k",
                   "--max-tokens", "64k", "--chunk-size", "1k", "-o", "o"])
    assert (cfg.lengths, cfg.stride, cfg.max_tokens, cfg.chunk_size) == ((2048, 4096), 1024, 65536, 1024)
    cfg = _config(["finetune", "--model", "m", "--factors", "f", "--data", "d", "-o", "o", "--seq-len", "4k",
                   "--tokens-per-step", "16k", "--loss-chunk", "1k"])
    assert (cfg.seq_len, cfg.tokens_per_step, cfg.loss_chunk) == (4096, 16384, 1024)


def test_a_utf8_prompt_read_under_an_ascii_locale_is_the_text_typed():
    """Battery 14b: under LC_ALL=C PYTHONUTF8=0 Python reads a UTF-8 argument as lone surrogates; generate
    --prompt 'Über' was refused as "bytes that are not UTF-8 text" (they were). Now the text typed."""
    from longrope.tools import GenerateConfig

    typed = "\udcc3\udc9cber \udce6\udc97\udca5"  # b"\xc3\x9cber \xe6\x97\xa5" read as ASCII + surrogateescape
    assert GenerateConfig(model="tiny", factors="f.json", prompt=typed, max_new_tokens=2).prompt == "Über 日"


def test_a_prompt_that_is_not_utf8_is_one_line_in_the_config_and_the_api():
    """battery 9a: generate --prompt $'abc\\xff' (argv bytes that are not UTF-8, read as lone surrogates) was the
    tokenizer's TypeError traceback "TextEncodeInput must be Union[...]"."""
    from longrope.models import generate, install_factors, load_model
    from longrope.rope import make_baseline
    from longrope.tools import GenerateConfig

    bad = "abc\udcff"
    with pytest.raises(ConfigError, match="prompt"):
        GenerateConfig(model="tiny", factors="f.json", prompt=bad, max_new_tokens=2)
    model, tok = load_model("tiny")
    install_factors(model, make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512))
    with pytest.raises(UserError, match="lone surrogates"):
        generate(model, tok, [bad], 2)


def test_baseline_refuses_retained_start_tokens_beyond_the_model_s_original_length(tmp_path, capsys, monkeypatch):
    # battery 26's open item: n̂ between L and L' was written (its positions keep angles the model never saw), while
    # a search refuses such an n̂; one rule now (rope.values.start_tokens_limit) for baseline, search and files
    from longrope.cli import main

    monkeypatch.chdir(tmp_path)
    argv = ["baseline", "--model", "tiny", "--method", "yarn", "--target-length", "2048", "-o", "f.json"]
    assert main([*argv, "--start-tokens", "257"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--start-tokens 257 is not an integer from 0 to 256 (L = 256, L' = 2048)" in err, err
    assert len(err.splitlines()) == 1 and not any(tmp_path.iterdir())
    assert main([*argv, "--start-tokens", "256"]) == 0
