"""export_hf: the exported folder loads in stock transformers (no longrope) with the same logits."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.models import inspect_model, install_factors
from longrope.models.export import START_TOKENS_KEY, export_hf, longrope_config_entries
from longrope.rope import FactorSet
from tests.models.model_helpers import FAMILY_NAMES, TINY_L, TINY_THETA, build_tiny, tiny_ids

ATOL = 2e-5

# Runs in a fresh interpreter; any attempt to import longrope fails loudly, so the exported folder
# is proven loadable by transformers alone.
_STOCK_SCRIPT = textwrap.dedent(
    """
    import json, sys, torch

    class _NoLongrope:
        def find_spec(self, name, path=None, target=None):
            if name == "longrope" or name.startswith("longrope."):
                raise ImportError("longrope must not be imported here")
            return None

    sys.meta_path.insert(0, _NoLongrope())
    import transformers
    from transformers import AutoModelForCausalLM

    jobs = json.loads(sys.argv[1])
    for job in jobs:
        model = AutoModelForCausalLM.from_pretrained(job["folder"], attn_implementation="eager").eval()
        ids = torch.load(job["ids"])
        out = {}
        with torch.no_grad():
            for name, x in ids.items():
                out[name] = model(x).logits
        # 5.x: rope_parameters; 4.x: rope_scaling (rope_parameters is then just an unused attribute)
        rope = dict(model.config.rope_parameters if transformers.__version__ >= "5" else model.config.rope_scaling)
        out["rope"] = {k: rope.get(k) for k in ("rope_type", "long_factor", "short_factor", "factor",
                                                   "attention_factor", "original_max_position_embeddings")}
        out["attention_scaling"] = float(model.model.rotary_emb.attention_scaling)
        out["version"] = transformers.__version__
        out["longrope_imported"] = any(m.split(".")[0] == "longrope" for m in sys.modules)
        torch.save(out, job["out"])
    """
)


def _factors(model, *, attention_factor=None, start_tokens=0, target=4 * TINY_L) -> FactorSet:
    info = inspect_model(model)
    half = info.rotary_dim // 2
    return FactorSet(
        long_factor=np.linspace(1.0, 5.5, half),
        short_factor=np.linspace(1.0, 1.4, half),
        start_tokens=start_tokens,
        attention_factor=attention_factor,
        original_max_position_embeddings=TINY_L,
        max_position_embeddings=target,
        rope_theta=TINY_THETA,
    )


def _run_stock(jobs: list[dict]) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _STOCK_SCRIPT, json.dumps(jobs)], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def _inputs():
    return {"short": tiny_ids(TINY_L - 4, seed=3), "long": tiny_ids(3 * TINY_L, seed=4)}


def test_export_reloads_in_stock_transformers_with_equal_logits(tmp_path):
    """Every family, short and long inputs, explicit and default attention factors, n̂ = 0."""
    cases = [(fam, None) for fam in FAMILY_NAMES] + [("llama", 1.25), ("phi3", 1.25), ("gemma", 1.25)]
    jobs, expected = [], []
    for k, (fam, attn) in enumerate(cases):
        model = build_tiny(fam)
        fs = _factors(model, attention_factor=attn)
        folder = tmp_path / f"{fam}-{k}"
        export_hf(model, None, fs, folder)
        install_factors(model, fs)
        ids = _inputs()
        torch.save(ids, tmp_path / f"ids-{k}.pt")
        with torch.no_grad():
            expected.append((fs, {n: model(x).logits for n, x in ids.items()}))
        jobs.append({"folder": str(folder), "ids": str(tmp_path / f"ids-{k}.pt"), "out": str(tmp_path / f"out-{k}.pt")})
    _run_stock(jobs)
    for (fam, attn), job, (fs, want) in zip(cases, jobs, expected):
        got = torch.load(job["out"])
        assert got["longrope_imported"] is False
        assert got["rope"]["rope_type"] == "longrope"
        assert got["rope"]["long_factor"] == fs.long_factor.tolist()
        assert got["rope"]["short_factor"] == fs.short_factor.tolist()
        assert got["rope"]["original_max_position_embeddings"] == TINY_L
        assert math.isclose(got["attention_scaling"], fs.resolved_attention_factor(), rel_tol=1e-12), (fam, attn)
        for name in ("short", "long"):
            torch.testing.assert_close(got[name], want[name], atol=ATOL, rtol=1e-5, msg=f"{fam} {attn} {name}")


def test_start_tokens_export_exact_for_one_and_position_zero_only_beyond(tmp_path):
    import transformers

    for n_hat in (1, 4):
        model = build_tiny("llama")
        fs = _factors(model, start_tokens=n_hat)
        result = export_hf(model, None, fs, tmp_path / f"n{n_hat}")
        config = json.loads((tmp_path / f"n{n_hat}" / "config.json").read_text())
        assert config[START_TOKENS_KEY] == n_hat
        assert bool(result.warnings) == (n_hat >= 2)
        install_factors(model, fs)
        stock = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / f"n{n_hat}", attn_implementation="eager")
        x = tiny_ids(3 * TINY_L)
        with torch.no_grad():
            want, got = model(x).logits, stock.eval()(x).logits
        if n_hat == 1:  # position 0 has angle 0 under any factors: n̂ = 1 is exactly expressible
            torch.testing.assert_close(got, want, atol=ATOL, rtol=1e-5)
        else:
            torch.testing.assert_close(got[:, :1], want[:, :1], atol=ATOL, rtol=1e-5)
            assert (got[:, 1:] - want[:, 1:]).abs().max() > 100 * ATOL


def test_config_entries_dual_format():
    model = build_tiny("qwen2")
    fs = _factors(model, attention_factor=1.3)
    entries, warnings = longrope_config_entries(fs, inspect_model(model))
    assert not warnings
    assert entries["max_position_embeddings"] == 4 * TINY_L
    assert entries["original_max_position_embeddings"] == TINY_L
    assert entries["rope_theta"] == TINY_THETA
    scaling, params = entries["rope_scaling"], entries["rope_parameters"]
    assert scaling == {
        "rope_type": "longrope",
        "short_factor": fs.short_factor.tolist(),
        "long_factor": fs.long_factor.tolist(),
        "original_max_position_embeddings": TINY_L,
        "factor": 4.0,
        "attention_factor": 1.3,
        "short_mscale": 1.3,  # vLLM reads these, not attention_factor
        "long_mscale": 1.3,
    }
    assert params == {**scaling, "rope_theta": TINY_THETA}
    assert START_TOKENS_KEY not in entries


def test_phi3_default_attention_uses_the_three_key_form_4x_requires():
    model = build_tiny("phi3")
    entries, warnings = longrope_config_entries(_factors(model), inspect_model(model))
    assert set(entries["rope_scaling"]) == {"type", "short_factor", "long_factor"}
    assert entries["partial_rotary_factor"] == 0.5 and entries["rope_parameters"]["partial_rotary_factor"] == 0.5
    assert not warnings
    _, warnings = longrope_config_entries(_factors(model, attention_factor=1.3), inspect_model(model))
    assert len(warnings) == 1 and "4.x" in warnings[0]


def test_export_dtype_and_tokenizerless_folder(tmp_path):
    model = build_tiny("mistral")
    export_hf(model, None, _factors(model), tmp_path / "bf16", dtype=torch.bfloat16)
    config = json.loads((tmp_path / "bf16" / "config.json").read_text())
    assert config["dtype"] == "bfloat16"
    assert (tmp_path / "bf16" / "model.safetensors").is_file()
    # the folder's factors.json carries the full factor set (n̂, provenance) for longrope itself
    assert FactorSet.load(tmp_path / "bf16").same_factors(_factors(model))


def test_export_of_a_quantized_model_saves_a_clean_copy(tmp_path):
    """GGUF-loaded models refuse save_pretrained; the export copies the weights into a fresh model."""
    import transformers

    model = build_tiny("llama")
    model.hf_quantizer = object()  # what a GGUF load leaves behind; save_pretrained would refuse
    export_hf(model, None, _factors(model), tmp_path / "q")
    stock = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "q")
    for (k, a), (_, b) in zip(sorted(model.state_dict().items()), sorted(stock.state_dict().items())):
        assert torch.equal(a, b), k


def test_export_refuses_non_empty_output_and_bad_factors(tmp_path):
    model = build_tiny("llama")
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    with pytest.raises(UserError, match="not empty"):
        export_hf(model, None, _factors(model), out)
    with pytest.raises(UserError, match="holds no model"):  # --overwrite replaces a model folder, not other files
        export_hf(model, None, _factors(model), out, overwrite=True)
    assert (out / "keep.txt").exists()
    (out / "keep.txt").unlink()
    export_hf(model, None, _factors(model), out)
    (out / "stale.txt").write_text("x")
    export_hf(model, None, _factors(model), out, overwrite=True)
    assert not (out / "stale.txt").exists() and (out / "config.json").is_file()
    bad = _factors(build_tiny("phi3"))  # 4 factors for a 16-dim rotary model
    with pytest.raises(UserError, match="rotary dim"):
        export_hf(model, None, bad, tmp_path / "bad")
    assert not (tmp_path / "bad").exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp folders left


def test_a_library_caller_s_factor_set_dtype_or_model_of_another_kind_is_one_line(tmp_path):
    """battery 9a: export_hf(model, tok, "yarn.json" / None, out) and export_gguf(...) were AttributeErrors deep in
    the export, dtype=torch.int8 transformers' ValueError after the output checks, inspect_model("tiny") an
    AttributeError."""
    from longrope.models import export_gguf

    model = build_tiny("llama")
    for bad in ("factors.json", None):
        for export in (export_hf, export_gguf):
            with pytest.raises(UserError, match="expected a FactorSet"):
                export(model, None, bad, tmp_path / "x.gguf")
    for dtype in ("int8", torch.int8):
        with pytest.raises(UserError, match="unknown dtype"):
            export_hf(model, None, _factors(model), tmp_path / "out", dtype=dtype)
    with pytest.raises(UserError, match="for a name or path: read_rope_info"):
        inspect_model("tiny")
    assert not any(tmp_path.iterdir())


def test_a_tokenizer_or_length_of_the_wrong_kind_is_refused_before_anything_is_written(tmp_path):
    """battery 20b: export_hf(model, "tiny", ...) was "'str' object has no attribute 'save_pretrained'" after the
    weights were saved, another model's larger tokenizer was written beside the weights without a word (a GGUF whose
    vocabulary does not match its embeddings), export_model(output=None) pathlib's TypeError and
    export_model(target_length="64") a TypeError from a comparison."""
    from longrope.models import export_gguf
    from longrope.models.exporter import export_model
    from tests.evaluate.eval_helpers import make_tokenizer

    model = build_tiny("llama")
    bigger = make_tokenizer(vocab_size=300)  # 300 tokens, the model has 128 embeddings
    for export, out in ((export_hf, tmp_path / "hf"), (export_gguf, tmp_path / "x.gguf")):
        with pytest.raises(UserError, match="takes a loaded tokenizer"):
            export(model, "tiny", _factors(model), out)
        with pytest.raises(UserError, match="base vocabulary has 300 tokens but the model has 128 token embeddings"):
            export(model, bigger, _factors(model), out)
    with pytest.raises(UserError, match="export_model's output .* got None"):
        export_model("tiny", tmp_path / "f.json", None)
    with pytest.raises(UserError, match="target-length must be an integer in"):
        export_model("tiny", tmp_path / "f.json", tmp_path / "out", target_length="64")
    assert not any(tmp_path.iterdir())


def test_an_output_path_that_is_not_utf8_is_refused_before_any_work(tmp_path):
    """battery 9a: export -o $'x\xff' wrote the weights, then the tokenizers library failed to save under the path
    (UnicodeEncodeError traceback)."""
    import os

    from longrope.models import export_gguf

    model = build_tiny("llama")
    for export, name in ((export_hf, b"x\xff"), (export_gguf, b"x\xff.gguf")):
        with pytest.raises(UserError, match="bytes that are not UTF-8"):
            export(model, None, _factors(model), tmp_path / os.fsdecode(name))
    assert not any(tmp_path.iterdir())


@pytest.mark.slow
def test_smollm2_gguf_export_roundtrip(tmp_path):
    """The real GGUF path: load SmolLM2 (dequantized), export, reload with stock transformers."""
    import transformers

    from longrope.models.loading import load_model
    from longrope.rope import make_baseline

    model, tok = load_model("smollm2")
    info = inspect_model(model)
    fs = make_baseline(
        "yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
        original_length=info.original_max_position_embeddings, target_length=4 * info.original_max_position_embeddings,
    )
    export_hf(model, tok, fs, tmp_path / "smol")
    stock = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "smol").eval()
    tok2 = transformers.AutoTokenizer.from_pretrained(tmp_path / "smol")
    assert tok2("hello world")["input_ids"] == tok("hello world")["input_ids"]
    install_factors(model, fs)
    x = torch.tensor([tok("The grass is green. The sky is blue. " * 8)["input_ids"]])
    with torch.no_grad():
        torch.testing.assert_close(stock(x).logits, model(x).logits, atol=1e-4, rtol=1e-4)


def test_export_folder_has_ordinary_permissions(tmp_path):
    import os
    import stat

    model = build_tiny("llama")
    export_hf(model, None, _factors(model), tmp_path / "perm")
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE((tmp_path / "perm").stat().st_mode) == 0o777 & ~umask
    assert stat.S_IMODE((tmp_path / "perm" / "config.json").stat().st_mode) == 0o666 & ~umask


@pytest.mark.slow
@pytest.mark.skipif(
    not __import__("os").environ.get("LONGROPE_TRANSFORMERS4_PATH"),
    reason="set LONGROPE_TRANSFORMERS4_PATH to a folder with transformers 4.x installed (pip install --target)",
)
def test_export_loads_the_same_in_transformers_4x(tmp_path):
    """The dual-format config read by an older transformers (e.g. 4.51.3) gives the same logits.

    Setup: ``pip install --no-deps --target DIR transformers==4.51.3 tokenizers==0.21.1
    huggingface-hub==0.30.2`` and ``LONGROPE_TRANSFORMERS4_PATH=DIR``; torch comes from this venv.
    """
    import os

    cases = [(fam, None) for fam in FAMILY_NAMES] + [("llama", 1.25), ("qwen2", 1.25)]
    jobs, expected = [], []
    for k, (fam, attn) in enumerate(cases):
        model = build_tiny(fam)
        fs = _factors(model, attention_factor=attn)
        export_hf(model, None, fs, tmp_path / f"{fam}-{k}")
        install_factors(model, fs)
        ids = _inputs()
        torch.save(ids, tmp_path / f"ids-{k}.pt")
        with torch.no_grad():
            expected.append((fs, {n: model(x).logits for n, x in ids.items()}))
        jobs.append({"folder": str(tmp_path / f"{fam}-{k}"), "ids": str(tmp_path / f"ids-{k}.pt"),
                     "out": str(tmp_path / f"out-{k}.pt")})
    env = {**os.environ, "PYTHONPATH": os.environ["LONGROPE_TRANSFORMERS4_PATH"]}
    proc = subprocess.run([sys.executable, "-c", _STOCK_SCRIPT, json.dumps(jobs)], capture_output=True, text=True,
                          timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for (fam, attn), job, (fs, want) in zip(cases, jobs, expected):
        got = torch.load(job["out"])
        assert got["version"].startswith("4.") and got["longrope_imported"] is False
        assert math.isclose(got["attention_scaling"], fs.resolved_attention_factor(), rel_tol=1e-6), (fam, attn)
        for name in ("short", "long"):
            torch.testing.assert_close(got[name], want[name], atol=ATOL, rtol=1e-5, msg=f"{fam} {attn} {name}")


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_exported_config_reads_back_as_the_same_factor_set(tmp_path, family):
    """longrope's own loader understands the dual-format config.json (Phi-3's three-key form too)."""
    model = build_tiny(family)
    fs = _factors(model, attention_factor=None)
    export_hf(model, None, fs, tmp_path / "e")
    back = FactorSet.load(tmp_path / "e" / "config.json")
    np.testing.assert_array_equal(back.long_factor, fs.long_factor)
    np.testing.assert_array_equal(back.short_factor, fs.short_factor)
    assert (back.original_max_position_embeddings, back.max_position_embeddings) == (TINY_L, 4 * TINY_L)
    assert back.resolved_attention_factor() == pytest.approx(fs.resolved_attention_factor(), rel=1e-12)


def test_an_output_where_nothing_can_be_created_is_refused_before_the_model_is_read(tiny_model_dir, tmp_path,
                                                                                      monkeypatch):
    """os.access says yes to root on /proc and /sys: export loaded the whole model, then failed 'Operation not
    permitted (/sys/.xx.tmp-123-ab)', naming a hidden file and no fix; baseline and inspect -o the same (battery
    11a). Now the folder is tried first, and the line names the user's path and the fix."""
    import longrope.models.loading as loading
    from longrope.io import write_json
    from longrope.models.exporter import export_model

    unwritable = "/proc/longrope-no-such"  # nothing can be created in /proc, by root either
    factors = FactorSet(long_factor=np.linspace(1, 4, 8), original_max_position_embeddings=32,
                        max_position_embeddings=128, rope_theta=1e4).save(tmp_path / "f.json")
    monkeypatch.setattr(loading, "load_model", lambda *a, **k: pytest.fail("the model was loaded"))
    for out, fmt in ((f"{unwritable}/m", "hf"), (f"{unwritable}.gguf", "gguf")):
        with pytest.raises(UserError, match=r"cannot write into /proc \(.*\); choose another -o"):
            export_model(str(tiny_model_dir), factors, out, fmt=fmt)
    with pytest.raises(UserError, match=r"^/proc/longrope-no-such/r\.json cannot be written .*choose a writable"):
        write_json(f"{unwritable}/r.json", {})


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft's own call
def test_a_peft_wrapped_model_is_refused_naming_the_merge(tmp_path):
    """Battery 16: export_hf(get_peft_model(m)) failed with FileNotFoundError '.../config.json' (peft saves adapter
    files only); now one UserError telling to merge the adapters, and nothing is written."""
    from peft import LoraConfig, get_peft_model

    model = build_tiny("llama")
    wrapped = get_peft_model(model, LoraConfig(r=2, target_modules=["q_proj"], lora_dropout=0.0))
    with pytest.raises(UserError, match="merge_and_unload"):
        export_hf(wrapped, None, _factors(model), tmp_path / "out")
    assert not list(tmp_path.iterdir())


def test_an_export_exported_again_with_other_factors_keeps_none_of_the_first_n_hat(tmp_path):
    """Battery 23c: n̂ = 3 exported, then that folder exported with n̂ = 0 kept 'longrope_start_tokens: 3' in its
    config.json (factors.json said 0): --factors FOLDER/config.json installed n̂ = 3."""
    from longrope.models import load_model

    model = build_tiny("llama")
    export_hf(model, None, _factors(model, start_tokens=3), tmp_path / "first")
    again, _ = load_model(str(tmp_path / "first"))
    export_hf(again, None, _factors(model, start_tokens=0), tmp_path / "second")
    assert FactorSet.load(tmp_path / "second" / "config.json").start_tokens == 0
    assert START_TOKENS_KEY not in json.loads((tmp_path / "second" / "config.json").read_text())


def test_a_model_without_loaded_weights_is_refused_by_both_writers_before_anything_is_written(tmp_path):
    """Battery 23c: a model built on the meta device was "NotImplementedError: Cannot copy out of meta tensor" from
    inside save_pretrained / the GGUF writer."""
    import transformers

    from longrope.models import export_gguf

    config = build_tiny("llama").config
    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(config)
    fs = _factors(build_tiny("llama"))
    for write, out in ((export_hf, tmp_path / "hf"), (export_gguf, tmp_path / "m.gguf")):
        with pytest.raises(UserError, match="weights are on the meta device"):
            write(model, None, fs, out)
    assert list(tmp_path.iterdir()) == []


def test_a_model_s_own_added_tokens_past_its_embeddings_export_as_a_folder_and_are_named_for_a_gguf(tmp_path):
    """The second review of battery 27: a model's own tokenizer with special tokens past its embeddings (CodeLlama-34b:
    32,004 for 32,000 rows) loaded, then export (and finetune, at its very end) refused it as "give this model's own
    tokenizer". A folder keeps such tokens; a GGUF (one token per embedding row) says why it cannot."""
    from longrope.models import export_gguf
    from tests.evaluate.eval_helpers import make_tokenizer

    model = build_tiny("llama", vocab_size=300)
    own = make_tokenizer(vocab_size=300)
    own.add_special_tokens({"additional_special_tokens": ["<PRE>", "<SUF>", "<MID>", "<EOT>"]})
    export_hf(model, own, _factors(model), tmp_path / "hf")
    assert (tmp_path / "hf" / "tokenizer.json").is_file()
    with pytest.raises(UserError, match=r"export_gguf: the tokenizer has 4 added token\(s\) past the model's 300 token "
                                        r"embeddings.*--format hf"):
        export_gguf(model, own, _factors(model), tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_a_dynamic_ntk_export_reads_back_as_the_factors_its_config_applies(tmp_path):
    """Battery 29b: the folder's factors.json kept a dynamic NTK set that eval recomputed per length, so the exported
    (or fine-tuned) model measured from its factors.json got other factors than its config.json gives every runtime
    (and than a fine-tuning trained with): perplexity 22.8 against 25.9 at 512 tokens."""
    from longrope.rope.baselines import at_length, dynamic_ntk_factors

    model = build_tiny("llama")
    dyn = dynamic_ntk_factors(rope_theta=TINY_THETA, rotary_dim=inspect_model(model).rotary_dim,
                              original_length=TINY_L, target_length=8 * TINY_L)
    assert not np.array_equal(at_length(dyn, 2 * TINY_L).long_factor, dyn.long_factor)  # a set that follows the length
    export_hf(model, None, dyn, tmp_path / "dyn")
    config = json.loads((tmp_path / "dyn" / "config.json").read_text())
    for source in (tmp_path / "dyn", tmp_path / "dyn" / "factors.json"):
        back = at_length(FactorSet.load(source), 2 * TINY_L)
        np.testing.assert_array_equal(back.long_factor, config["rope_parameters"]["long_factor"])


def test_a_dynamic_ntk_folder_exported_before_the_mark_reads_back_as_its_config_applies(tmp_path):
    """A folder exported before the set was marked as made (its factors.json a plain dynamic NTK set) kept eval
    recomputing it per length (review of battery 29b): a factors.json whose config.json beside it applies the same
    long factors is read as made; the same file elsewhere, or beside a config with other factors, still follows L."""
    from longrope.rope.baselines import APPLIED_AS_MADE, at_length, dynamic_ntk_factors, follows_length

    model = build_tiny("llama")
    dyn = dynamic_ntk_factors(rope_theta=TINY_THETA, rotary_dim=inspect_model(model).rotary_dim,
                              original_length=TINY_L, target_length=8 * TINY_L)
    export_hf(model, None, dyn, tmp_path / "old")
    path = tmp_path / "old" / "factors.json"
    record = json.loads(path.read_text())
    del record["provenance"][APPLIED_AS_MADE]  # as written before the mark
    path.write_text(json.dumps(record))
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for source in (tmp_path / "old", path):
        back = at_length(FactorSet.load(source), 2 * TINY_L)
        np.testing.assert_array_equal(back.long_factor, config["rope_parameters"]["long_factor"])
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "factors.json").write_text(json.dumps(record))
    assert follows_length(FactorSet.load(alone / "factors.json"))
    config["rope_parameters"]["long_factor"] = [1.0] * len(config["rope_parameters"]["long_factor"])
    (alone / "config.json").write_text(json.dumps(config))
    assert follows_length(FactorSet.load(alone))


def test_a_tokenizer_that_says_the_original_length_says_the_target_length_in_the_export(tmp_path):
    """Battery 31b: a model's own tokenizer_config.json says L as model_max_length (Phi-3-mini-4k: 4096) and the export
    kept it: vLLM serves at most the smaller of it and max_position_embeddings, so the README's
    'vllm serve FOLDER --max-model-len L'' was refused, and transformers' tokenizer warned of indexing errors past L.
    A larger value (the usual 1e30 'no limit') is left as it is."""
    from transformers import AutoTokenizer

    from tests.evaluate.eval_helpers import make_tokenizer

    model = build_tiny("llama", vocab_size=300)
    for given, want in ((TINY_L, 4 * TINY_L), (10**30, 10**30)):
        own = make_tokenizer(vocab_size=300)
        own.model_max_length = given
        out = export_hf(model, own, _factors(model), tmp_path / f"hf-{given}").path
        assert json.loads((out / "tokenizer_config.json").read_text())["model_max_length"] == want
        assert AutoTokenizer.from_pretrained(out).model_max_length == want
    assert own.model_max_length == 10**30  # the caller's tokenizer is not changed


def test_a_generation_config_whose_max_length_is_the_context_says_the_target_length_in_the_export(tmp_path):
    """Battery 31b: Llama 2's generation_config.json says max_length 4096, its context L; the export kept it, and stock
    generate() / pipeline("text-generation") refused every prompt past L ("Input length of input_ids is ..., but
    `max_length` is set to ..."). Another max_length (shorter, or between L and L') is a generation budget and stays
    (second review of battery 31)."""
    from transformers import AutoModelForCausalLM

    model = build_tiny("llama")
    for given, want in ((TINY_L, 4 * TINY_L), (2 * TINY_L, 2 * TINY_L), (TINY_L // 2, TINY_L // 2)):
        model.generation_config.max_length = given
        out = export_hf(model, None, _factors(model), tmp_path / f"hf-{given}").path
        assert json.loads((out / "generation_config.json").read_text())["max_length"] == want
    assert model.generation_config.max_length == TINY_L // 2  # the caller's model is not changed
    stock = AutoModelForCausalLM.from_pretrained(tmp_path / f"hf-{TINY_L}")
    assert stock.generate(tiny_ids(TINY_L + 8), do_sample=False).shape[1] > TINY_L + 8  # refused past L before


def test_a_source_config_s_other_context_length_keys_say_the_target_length_in_the_export(tmp_path):
    """Battery 31b: a source config.json may carry a foreign length key (early Llama conversions' max_sequence_length,
    seq_length) that transformers keeps; vLLM serves at most the smallest of those and max_position_embeddings, so an
    export that kept L there was refused at --max-model-len L'."""
    model = build_tiny("llama", max_sequence_length=TINY_L, seq_length=TINY_L)
    out = export_hf(model, None, _factors(model), tmp_path / "hf").path
    config = json.loads((out / "config.json").read_text())
    assert config["max_sequence_length"] == config["seq_length"] == config["max_position_embeddings"] == 4 * TINY_L


def test_an_export_exported_again_at_a_shorter_target_states_the_shorter_one(tmp_path):
    """First review of battery 31: the saved lengths were only ever raised, so an export at L' = 8L exported again at
    2L kept 8L in its tokenizer, its generation config and its config's other length keys (stock generate() then took
    prompts past the new L'). A length that stated the source's context (up to its max_position_embeddings) is set to
    the new L'; a larger one (a tokenizer's "no limit") is not a context and stays."""
    from longrope.models.export import _saved_lengths_to_target

    L = TINY_L
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"model_max_length": 8 * L}))
    (tmp_path / "config.json").write_text(json.dumps({"max_position_embeddings": 2 * L, "seq_length": 8 * L,
                                                      "n_positions": 10**30}))
    (tmp_path / "generation_config.json").write_text(json.dumps({"max_length": 8 * L}))
    _saved_lengths_to_target(tmp_path, L, 2 * L, 8 * L)
    assert json.loads((tmp_path / "tokenizer_config.json").read_text())["model_max_length"] == 2 * L
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["seq_length"] == 2 * L and config["n_positions"] == 10**30
    assert json.loads((tmp_path / "generation_config.json").read_text())["max_length"] == 2 * L
