"""The contract of every command on bad input: exit status 2, one ``error:`` line on stderr naming
the problem, no traceback — and nothing half-written where the output should go.

One battery drives each command with the classes of mistakes users really make (output paths,
unreadable or wrong files, numbers out of range, models without RoPE, corrupted shards, bad factor
files), then property-based fuzzing throws random values at every run config and every option.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longrope.cli import main
from tests.runs import run_helpers


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A tiny model with tokenizer, its shards, a GPT-2 folder (no RoPE), bad files of every kind."""
    root = tmp_path_factory.mktemp("bad")
    run_helpers.build_tiny(root)
    from transformers import GPT2Config, GPT2LMHeadModel

    GPT2LMHeadModel(GPT2Config(n_layer=1, n_head=2, n_embd=16, vocab_size=64, n_positions=64)).save_pretrained(
        root / "gpt2")
    (root / "a_file").write_text("x")
    (root / "latin1.txt").write_bytes("caf\xe9 au lait ".encode("latin-1") * 50)
    (root / "garbage.json").write_bytes(b"\x00\x01{not json")
    short = {"format_version": 1, "long_factor": [1.0] * 8, "short_factor": [1.0] * 8,
             "original_max_position_embeddings": 32, "max_position_embeddings": 16, "rope_theta": 10000.0}
    (root / "short.json").write_text(json.dumps(short))
    # a shard folder with one flipped byte far from the start of a shard
    import shutil

    shutil.copytree(root / "data", root / "flipped")
    shard = sorted((root / "flipped").glob("*.bin"))[0]
    raw = bytearray(shard.read_bytes())
    raw[len(raw) - 7] ^= 0xFF
    shard.write_bytes(bytes(raw))
    # a shard index that is a pickled object array
    shutil.copytree(root / "data", root / "pickled")
    np.save(root / "pickled" / "index.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    # hand-edited run records: a nested setting that is no object, a file nested 200,000 deep
    for name, text in (("knobs5", json.dumps({"format": "longrope-run/1", "command": "search", "config": {
            "model": str(root / "model"), "data": str(root / "data"), "output": "o", "target_length": 128,
            "knobs": 5}})),
                       ("deep", "[" * 200_000 + "]" * 200_000)):
        (root / name).mkdir()
        (root / name / "config.json").write_text(text)
    (root / "deep-model").mkdir()
    (root / "deep-model" / "config.json").write_text("[" * 200_000 + "]" * 200_000)
    # a GGUF cut short: at 1,000 bytes (inside its header) and inside its tensor data
    import gguf

    writer = gguf.GGUFWriter(root / "whole.gguf", arch="llama")
    writer.add_context_length(32)
    writer.add_tensor("token_embd.weight", np.ones((64, 16), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    whole = (root / "whole.gguf").read_bytes()
    (root / "cut-1000.gguf").write_bytes(whole[:1000])
    (root / "cut-data.gguf").write_bytes(whole[:-100])
    # shard folders whose meta.json has a tokenizer record of the wrong shape
    for name, edit in (("bos-x", {"bos_token_id": "x"}), ("no-tok-name", {"name": None})):
        shutil.copytree(root / "data", root / name)
        meta = json.loads((root / name / "meta.json").read_text())
        meta["tokenizer"].update(edit)
        (root / name / "meta.json").write_text(json.dumps(meta))
    return root


def _cases(r: Path) -> list[tuple[str, list[str], str]]:
    m, d = str(r / "model"), str(r / "data")
    search = ["search", "--model", m, "--data", d, "--target-length", "128", "--quiet", "--samples", "2",
              "--heldout-samples", "2", "--fitness", "ppl"]
    ppl = ["eval", "ppl", "--model", m, "--data", d, "--lengths", "32", "--samples", "2", "--quiet"]
    base = ["baseline", "--model", m, "--method"]
    tok = ["tokenize", "--tokenizer", m, "--input"]
    gen = ["generate", "--model", m, "--factors", str(r / "short.json"), "--prompt", "hi", "--max-new-tokens", "2"]
    return [
        # output paths
        ("search-out-is-file", [*search, "-o", str(r / "a_file")], "is a file"),
        ("search-out-under-file", [*search, "-o", str(r / "a_file" / "x")], "is a file"),
        ("ppl-out-is-file", [*ppl, "-o", str(r / "a_file")], "is a file"),
        ("demo-out-is-file", ["demo", "--model", m, "--out", str(r / "a_file")], "is a file"),
        ("tokenize-out-is-file", ["tokenize", "--tokenizer", m, "--input", f"search={r / 'latin1.txt'}", "-o",
                                  str(r / "a_file")], "a_file"),
        # numbers out of range
        ("search-samples-0", [*search, "-o", str(r / "o1"), "--samples", "0"], "--samples"),
        ("search-max-factor", [*search, "-o", str(r / "o2"), "--max-factor", "-1"], "--max-factor"),
        ("search-min-above-max", [*search, "-o", str(r / "o3"), "--min-factor", "5", "--max-factor", "2"],
         "--min-factor"),
        ("search-budget", [*search, "-o", str(r / "o4"), "--max-evals", "-1"], "--max-evals must be a number >= 0"),
        ("search-length-text", [*search, "-o", str(r / "o5"), "--target-length", "abc"], "--target-length"),
        ("ppl-lengths-0", [*ppl, "-o", str(r / "o6"), "--lengths", "0,64"], "--lengths"),
        ("ppl-stride", [*ppl, "-o", str(r / "o7"), "--stride", "100"], "--stride"),
        ("passkey-depths", ["eval", "passkey", "--model", m, "--lengths", "64", "--depths", "2", "-o",
                            str(r / "o8")], "--depths"),
        ("demo-domains", ["demo", "--model", m, "--domains", "code", "--out", str(r / "o9")], "--domains"),
        ("baseline-original-0", ["baseline", "--model", m, "--method", "pi", "--target-length", "64",
                                 "--original-length", "0", "-o", str(r / "b.json")], "--original-length"),
        ("finetune-steps-huge", ["finetune", "--model", m, "--factors", str(r / "short.json"), "--data", d,
                                 "--steps", str(10**400), "-o", str(r / "o23")], "--steps must be an integer in"),
        ("search-length-huge", [*search, "-o", str(r / "o24"), "--target-length", str(10**23)], "--target-length"),
        ("generate-tokens-huge", [*gen[:-1], str(10**23)], "--max-new-tokens must be an integer in"),
        ("generate-seed-huge", [*gen, "--sample", "--seed", str(10**400)], "--seed must be an integer in"),
        ("generate-seed-greedy", [*gen, "--seed", "5"], "--seed applies to sampling: set --sample"),
        ("demo-length-huge", ["demo", "--model", m, "--target-length", str(10**400), "--out", str(r / "o33")],
         "--target-length must be an integer in"),
        ("ppl-max-tokens-0", [*ppl, "-o", str(r / "o25"), "--stride", "16", "--max-tokens", "0"], "--max-tokens"),
        ("ppl-max-tokens-below-a-window", [*ppl, "-o", str(r / "o25b"), "--stride", "16", "--max-tokens", "10"],
         "--max-tokens 10 is below one window of the longest of --lengths"),
        ("passkey-trials-huge", ["eval", "passkey", "--model", m, "--lengths", "64", "--trials", str(10**30), "-o",
                                 str(r / "o26")], "--trials"),
        ("train-tiny-moved", ["train-tiny", "--out", str(r / "t"), "--hidden-size", "30", "--num-heads", "4"],
         "python -m tools.train_tiny"),
        # models and files
        ("search-no-rope", ["search", "--model", str(r / "gpt2"), "--data", d, "--target-length", "128", "-o",
                            str(r / "o10")], "RoPE"),
        ("ppl-no-rope", ["eval", "ppl", "--model", str(r / "gpt2"), "--data", d, "--lengths", "32", "-o",
                         str(r / "o11")], "RoPE"),
        ("ppl-missing-model", [*ppl[:3], str(r / "nowhere"), *ppl[4:], "-o", str(r / "o12")], "nowhere"),
        ("ppl-garbage-factors", [*ppl, "--factors", str(r / "garbage.json"), "-o", str(r / "o13")], "garbage"),
        ("ppl-short-factors", [*ppl, "--factors", str(r / "short.json"), "-o", str(r / "o14")], "short.json"),
        ("inspect-out-under-file", ["inspect", "--model", m, "--load", "-o", str(r / "a_file" / "x.json")],
         "a_file is a file"),
        ("ppl-data-is-file", [*ppl[:5], str(r / "a_file"), *ppl[6:], "-o", str(r / "o21")], "a_file is a file"),
        ("search-not-shards", ["search", "--model", m, "--data", str(r / "gpt2"), "--target-length", "128", "-o",
                               str(r / "o15")], "shard"),
        ("ppl-flipped-byte", [*ppl[:5], str(r / "flipped"), *ppl[6:], "--lengths", "300", "--samples", "9",
                              "--split", "all", "-o", str(r / "o16")], "flipped"),
        ("ppl-pickled-index", [*ppl[:5], str(r / "pickled"), *ppl[6:], "-o", str(r / "o17")], "index"),
        ("rerun-not-a-run", ["rerun", str(r / "gpt2"), "-o", str(r / "o18")], "is a model folder"),
        ("rerun-empty", ["rerun", str(r / "nowhere"), "-o", str(r / "o18")], "not a run folder"),
        ("rerun-knobs-5", ["rerun", str(r / "knobs5"), "-o", str(r / "o27")], "knobs must be a JSON object"),
        ("rerun-deep", ["rerun", str(r / "deep"), "-o", str(r / "o28")], "nested deeper than"),
        ("config-deep", [*search, "--config", str(r / "deep"), "-o", str(r / "o29")], "nested deeper than"),
        ("ppl-meta-bos-x", [*ppl[:5], str(r / "bos-x"), *ppl[6:], "-o", str(r / "o30")], "bos_token_id"),
        ("ppl-meta-no-tokenizer-name", [*ppl[:5], str(r / "no-tok-name"), *ppl[6:], "-o", str(r / "o31")],
         "tokenizer"),
        ("inspect-model-config-deep", ["inspect", "--model", str(r / "deep-model")], "nested deeper than"),
        ("inspect-gguf-cut-1000", ["inspect", "--model", str(r / "cut-1000.gguf")], "not a readable GGUF file"),
        ("inspect-gguf-cut-data", ["inspect", "--model", str(r / "cut-data.gguf")], "not a readable GGUF file"),
        ("export-gguf-cut-1000", ["export", "--model", str(r / "cut-1000.gguf"), "--factors", str(r / "short.json"),
                                  "--format", "gguf", "-o", str(r / "o32.gguf")], "not a readable GGUF file"),
        ("config-not-a-run", [*search, "--config", str(r / "gpt2"), "-o", str(r / "o19")], "is a model folder"),
        # closed forms: values that would give wrong factors silently
        ("baseline-betas-swapped", [*base, "yarn", "--target-length", "64", "--beta-fast", "1", "--beta-slow", "32",
                                    "-o", str(r / "b1.json")], "swap them"),
        ("baseline-start-past-target", [*base, "pi", "--target-length", "64", "--start-tokens", "64", "-o",
                                        str(r / "b2.json")], "--start-tokens"),
        ("baseline-length-text", [*base, "pi", "--target-length", "4y", "-o", str(r / "b3.json")], "--target-length"),
        ("baseline-ratio-below-1", [*base, "pi", "--target-length", "0.5x", "-o", str(r / "b4.json")],
         "--target-length: a context ratio is a number from 1 to"),
        ("baseline-out-is-folder", [*base, "pi", "--target-length", "64", "-o", str(r)], "is a folder"),
        ("baseline-out-under-file", [*base, "pi", "--target-length", "64", "-o", str(r / "a_file" / "b.json")],
         "a_file is a file"),
        # inputs of tokenize
        ("tokenize-unknown-role", [*tok, f"bogus={r / 'latin1.txt'}", "-o", str(r / "t1")], "unknown role 'bogus'"),
        ("tokenize-overlap", [*tok, f"search={r / 'latin1.txt'}", f"heldout={r / 'latin1.txt'}", "-o", str(r / "t2")],
         "same files"),
        ("tokenize-overlap-folder", [*tok, str(r), f"heldout={r / 'latin1.txt'}", "-o", str(r / "t3")], "same files"),
        ("tokenize-split-local", [*tok, str(r / "latin1.txt"), "--split", "validation", "-o", str(r / "t4")],
         "--split"),
        # options that do not apply to what was asked are refused, not ignored
        ("search-unordered-alone", [*search, "-o", str(r / "o22"), "--unordered"], "--unordered orders the results"),
        ("generate-temperature-greedy", [*gen, "--temperature", "0.5"], "set --sample"),
        ("generate-policy-long", [*gen, "--mode", "long", "--cache-policy", "rerotate"], "leave --cache-policy out"),
        # an option the command does not have is named under that command
        ("passkey-unknown-option", ["eval", "passkey", "--model", m, "--lengths", "64", "--bogus", "-o",
                                    str(r / "o20")], "longrope eval passkey: error: unrecognized arguments: --bogus"),
    ]


CASE_IDS = [c[0] for c in _cases(Path("."))]


@pytest.mark.parametrize("case", CASE_IDS)
def test_bad_input_is_one_line_and_exit_2(env, case, capsys):
    name, argv, needle = next(c for c in _cases(env) if c[0] == case)
    before = {p.name for p in env.iterdir()}
    rc = main(argv)
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert rc == 2, (name, err)
    assert "Traceback" not in err and len(lines) == 1, (name, err)
    assert needle.lower() in lines[0].lower(), (name, lines[0])
    # nothing new but the (refused) targets' absence: no stray partial folders
    after = {p.name for p in env.iterdir()}
    assert not {p for p in after - before if p.startswith(".")}, (name, after - before)


def test_rerun_of_a_configuration_now_refused_says_how_to_change_it(env, tmp_path, capsys):
    from longrope.options import config_to_dict
    from longrope.runs.search import SearchConfig

    saved = config_to_dict(SearchConfig(model="tiny", data=str(env / "data"), output=str(tmp_path / "old"),
                                        target_length=128))
    saved["unordered"] = True  # accepted (and ignored) by an earlier version without parallel evaluators
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": saved}))
    assert main(["rerun", str(old), "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--unordered" in err
    assert f"run 'longrope search --config {old}' with the flag changed instead" in err


def test_a_bad_value_read_from_config_says_where_it_came_from(env, tmp_path, capsys):
    """``--config RUN`` with a recorded value now refused: the error named a flag the user had not typed."""
    from longrope.options import config_to_dict
    from longrope.runs.search import SearchConfig

    saved = config_to_dict(SearchConfig(model="tiny", data=str(env / "data"), output=str(tmp_path / "old"),
                                        target_length=128))
    saved["step"] = -1.0
    old = tmp_path / "old"
    old.mkdir()
    (old / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": saved}))
    assert main(["search", "--config", str(old), "-o", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and f"(the value recorded in {old}: give the flag to change it)" in err
    assert main(["search", "--config", str(old), "-o", str(tmp_path / "new"), "--step", "-2"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--step must be > 0, got -2.0" in err and "recorded" not in err


def test_rerun_into_an_existing_folder_says_rerun_writes_a_new_one(env, tmp_path, capsys):
    """``rerun RUN -o RUN`` was refused with "add --resume to continue it", a flag rerun has not (battery 4)."""
    from longrope.options import config_to_dict
    from longrope.runs.search import SearchConfig

    old = tmp_path / "old"
    old.mkdir()
    saved = config_to_dict(SearchConfig(model="tiny", data=str(env / "data"), output=str(old), target_length=128))
    (old / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "search", "config": saved}))
    assert main(["rerun", str(old), "-o", str(old)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is the run being repeated; rerun writes a new folder" in err
    assert f"longrope search --config {old} --resume" in err
    other = tmp_path / "other"
    other.mkdir()
    (other / "x").write_text("mine")
    assert main(["rerun", str(old), "-o", str(other)]) == 2
    assert "already exists and is not empty; rerun writes a new folder" in capsys.readouterr().err


def test_baseline_target_length_takes_the_k_suffix(env, capsys):
    out = env / "b-4k.json"
    assert main(["baseline", "--model", str(env / "model"), "--method", "pi", "--target-length", "1k", "-o",
                 str(out)]) == 0
    assert json.loads(capsys.readouterr().out)["target_length"] == 1024 and out.is_file()


def test_an_allocation_failure_is_one_line_naming_the_way_out(env, monkeypatch, capsys):
    import longrope.cli.baseline as baseline

    def boom(args):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:127] . DefaultCPUAllocator: can't allocate memory: "
                           "you tried to allocate 102400000000 bytes.\nmore detail")

    monkeypatch.setattr(baseline, "run", boom)
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o",
                 str(env / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "out of memory" in err and "shorter sequences" in err and "more detail" not in err
    import resource  # under an address-space limit just above the libraries' floor, the limit is named (battery 21a)

    real, limit = resource.getrlimit, (1 << 30) + (1 << 27)
    monkeypatch.setattr(resource, "getrlimit", lambda what: (limit, resource.RLIM_INFINITY)
                        if what == resource.RLIMIT_AS else real(what))
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o",
                 str(env / "b.json")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"raise this process's address-space limit (ulimit -v {limit // 1024} KiB)" in err
    monkeypatch.setattr(resource, "getrlimit", real)
    monkeypatch.setattr(baseline, "run", lambda args: (_ for _ in ()).throw(RuntimeError("a bug")))
    with pytest.raises(RuntimeError, match="a bug"):  # any other RuntimeError keeps its traceback
        main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o", str(env / "b.json")])


def _baseline_failing_with(exc, env, monkeypatch, capsys):
    """``longrope baseline``'s run raising ``exc``: its exit status is 2 and its standard error is returned."""
    import longrope.cli.baseline as baseline

    monkeypatch.setattr(baseline, "run", lambda args: (_ for _ in ()).throw(exc))
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o",
                 str(env / "b.json")]) == 2
    return capsys.readouterr().err


@pytest.mark.parametrize("error", ["safetensors", "numpy-short-write", "enospc"])
def test_a_full_disk_is_one_line_naming_the_way_out(env, monkeypatch, capsys, error):
    """A write the disk cannot take, however the library words it: safetensors' save was a 25-line traceback
    (export, a fine-tuning checkpoint), gguf's writer said '196608 requested and 64656 written' (battery 6)."""
    import errno

    from safetensors import SafetensorError

    exc = {"safetensors": SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
           "numpy-short-write": OSError("196608 requested and 64656 written"),
           "enospc": OSError(errno.ENOSPC, "No space left on device")}[error]
    err = _baseline_failing_with(exc, env, monkeypatch, capsys)
    assert err.count("\n") == 1 and "no space left on the disk" in err and "another disk" in err, err


def _fields(cls):
    import dataclasses

    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            out += [(f.name, g) for g in dataclasses.fields(type(f.default_factory()))]
        else:
            out.append((None, f))
    return out


def _run_configs():
    from longrope.runs import RUNS, get_run

    return [get_run(c).config for c in RUNS]


values = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=8), st.lists(st.integers(-5, 5), max_size=3))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_fuzzed_configs_are_valid_or_config_errors(data):
    """Any value in any field of any run config: a valid config or a ConfigError, nothing else."""
    import dataclasses

    from longrope.errors import ConfigError
    from longrope.options import config_from_dict

    cls = data.draw(st.sampled_from(_run_configs()))
    fields = _fields(cls)
    required = {f.name for f in dataclasses.fields(cls) if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING}
    values_dict: dict = {k: v for k, v in {"model": "m", "data": "d", "output": "o", "lengths": [64],
                                           "target_length": 128}.items() if k in required}
    for parent, f in data.draw(st.lists(st.sampled_from(fields), max_size=3)):
        v = data.draw(values)
        if parent:
            values_dict.setdefault(parent, {})[f.name] = v  # a nested config's field
        else:
            values_dict[f.name] = v
    try:
        config_from_dict(cls, values_dict)
    except ConfigError:
        pass


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(flag=st.sampled_from(["--samples", "--target-length", "--max-factor", "--min-factor", "--step", "--seed",
                             "--population", "--parents", "--race", "--start-tokens", "--max-evals",
                             "--heldout-fraction", "--devices", "--patience", "--sigma-bounds"]),
       value=st.one_of(st.text(max_size=6), st.integers(-3, 3).map(str), st.floats().map(str)))
def test_fuzzed_search_options_never_raise(tmp_path_factory, flag, value):
    """Random text for the search's options is rejected (or accepted) before any model loads: exit 2
    with one error line, never an exception. (The data folder does not exist, so a valid set of
    options ends in a one-line error too.)"""
    import contextlib
    import io

    out = tmp_path_factory.mktemp("fz")
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(["search", "--model", "tiny", "--data", str(out / "none"), "--target-length", "512", "-o",
                   str(out / "run"), flag, value])
    assert rc == 2 and len([ln for ln in err.getvalue().splitlines() if "error:" in ln]) == 1


def test_too_many_open_files_says_to_raise_the_limit(env, monkeypatch, capsys):
    """EMFILE under a low `ulimit -n` (search plotting its figure at `ulimit -n 10`, battery 13) was 'Too many open
    files (…/PIL/BmpImagePlugin.py)': a library file the user did not name and no way out."""
    import errno

    exc = OSError(errno.EMFILE, "Too many open files", "/x/site-packages/PIL/BmpImagePlugin.py")
    err = _baseline_failing_with(exc, env, monkeypatch, capsys)
    assert err.count("\n") == 1 and "too many open files" in err and "ulimit -n" in err, err


def test_a_write_past_the_file_size_limit_names_the_limit(env, monkeypatch, capsys):
    """`ulimit -f`: safetensors' 'File too large (os error 27)' was a 30-line traceback (export), and gguf's short
    write under a limit said only that the disk was full (battery 13)."""
    import resource

    from safetensors import SafetensorError

    import longrope.cli.baseline as baseline

    argv = ["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o", str(env / "b.json")]
    exc = SafetensorError("Error while serializing: I/O error: File too large (os error 27)")
    monkeypatch.setattr(baseline, "run", lambda args: (_ for _ in ()).throw(exc))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "file-size limit" in err and "ulimit -f" in err, err
    real = resource.getrlimit
    monkeypatch.setattr(resource, "getrlimit", lambda what: (1 << 20, resource.RLIM_INFINITY)
                        if what == resource.RLIMIT_FSIZE else real(what))
    short = OSError("196608 requested and 64656 written")
    monkeypatch.setattr(baseline, "run", lambda args: (_ for _ in ()).throw(short))
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left" in err and "ulimit -f" in err, err


def test_a_file_output_given_as_a_folder_with_a_trailing_slash_is_refused(tmp_path, capsys):
    """baseline -o runs/ (and inspect --output runs/) wrote the file 'runs': pathlib drops the slash that said
    a folder was meant (battery 20c)."""
    from longrope.cli import main

    for argv in (["baseline", "--model", "tiny", "--method", "pi", "--target-length", "512"], ["inspect", "--model", "tiny"]):
        out = tmp_path / "runs"
        assert main([*argv, "--output", f"{out}/"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "ends in '/'" in err[0], err
        assert not out.exists()


def test_an_address_space_limit_too_small_for_the_libraries_is_refused_first(env, monkeypatch, capsys):
    """`ulimit -v` below what torch and transformers take to load: importing torch aborted the process (std::bad_alloc,
    status 134, at 500 MB), scipy's BLAS spun for ever (800 MB), a library that could not be mapped was blamed on the
    attention implementation (900 MB) (battery 21). Refused in one line before any library is imported."""
    import resource

    import longrope.cli.baseline as baseline

    real = resource.getrlimit
    small = 800_000 * 1024
    monkeypatch.setattr(resource, "getrlimit", lambda what: (small, resource.RLIM_INFINITY)
                        if what == resource.RLIMIT_AS else real(what))
    monkeypatch.setattr(baseline, "run", lambda args: pytest.fail("the command ran under the limit"))
    out = env / "b.json"
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "64", "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "ulimit -v 800000 KiB" in err and "raise it" in err, err
    assert not out.exists()


def test_a_permission_error_at_the_command_line_says_what_to_change(env, monkeypatch, capsys):
    """A shard file or a run folder this user may not read came to the command line as 'Permission denied (PATH)'
    and nothing more: the problem without its fix (battery 21)."""
    import errno

    exc = PermissionError(errno.EACCES, "Permission denied", "/data/shards/shard-00000.bin")
    err = _baseline_failing_with(exc, env, monkeypatch, capsys)
    assert err.count("\n") == 1 and "shard-00000.bin" in err and "chmod" in err, err


def test_a_run_stopped_by_the_file_size_limit_or_a_full_disk_says_how_to_continue(env, monkeypatch, capsys):
    """A search stopped by `ulimit -f` said only 'raise the file-size limit ... or write a smaller output': not that
    its work is kept and --resume continues it, as an interrupted one says (battery 21)."""
    import dataclasses
    import errno

    import longrope.runs.folder as folder
    import longrope.runs.search as search

    for exc, said in [(OSError(errno.EFBIG, "File too large"), "file-size limit"),
                      (OSError(errno.ENOSPC, "No space left on device"), "no space left")]:
        monkeypatch.setattr(search, "SPEC", dataclasses.replace(search.SPEC, run=lambda config, exc=exc: (
            _ for _ in ()).throw(exc)))
        for holds, then in [(True, "run the same command with --resume to continue"),
                            (False, "nothing was written yet: run the same command again")]:
            monkeypatch.setattr(folder, "holds_run", lambda output, command, holds=holds: holds)
            assert main(["search", "--model", str(env / "model"), "--data", str(env / "data"), "--target-length",
                         "128", "-o", str(env / "s-limit")]) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and said in err and err.rstrip().endswith(then), err


def test_a_value_that_starts_with_a_dash_is_said_how_to_give(env, capsys, monkeypatch):
    """A file named '-y.json' given as '-o -y.json' or '--factors -y.json' was argparse's 'expected one argument'
    alone: no word of how such a value is given (battery 21). The way is said, and works."""
    monkeypatch.chdir(env)
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "1024", "-o", "-y.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected one argument" in err and "--option=VALUE" in err, err
    assert main(["baseline", "--model", "tiny", "--method", "pi", "--target-length", "1024", "--output=-y.json"]) == 0
    assert (env / "-y.json").is_file()
    capsys.readouterr()
    assert main(["eval", "ppl", "--model", "tiny", "--data", "data", "--factors", "-y.json", "-o", "e"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "expected at least one argument" in err and "./VALUE" in err, err


def test_a_run_folder_that_starts_with_a_dash_is_said_how_to_give(tmp_path, capsys, monkeypatch):
    """``rerun -run -o x``: argparse took the run folder '-run' for an option and said only that RUN_DIR was
    missing (battery 23a); the line says how to give it, and a missing RUN_DIR alone gets no such words."""
    monkeypatch.chdir(tmp_path)
    assert main(["rerun", "-run", "-o", "again"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RUN_DIR" in err and "./VALUE" in err, err
    # an option's value that starts with '-' (a negative number) or attached to its short option is no set-aside
    # folder: the hint was added to a missing RUN_DIR's line all the same (review of battery 23a)
    for argv in (["rerun", "-o", "again"], ["rerun", "-oagain"], ["rerun", "-o", "-1"], ["rerun", "--output", "-1.5"]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "RUN_DIR" in err and "./VALUE" not in err, (argv, err)
