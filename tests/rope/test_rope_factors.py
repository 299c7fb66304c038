"""FactorSet: validation, file round-trips (factors.json, HF config both spellings, CSV), bad files."""

from __future__ import annotations

import copy
import json
import math
import pickle

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from longrope.errors import UserError
from longrope.rope import FORMAT_VERSION, FactorSet, make_baseline
from tests.rope.rope_strategies import hf_config_fields


def _fs(**kw) -> FactorSet:
    base = dict(
        long_factor=[1.0, 1.5, 3.0, 8.0],
        short_factor=[1.0, 1.0, 1.1, 1.2],
        start_tokens=4,
        attention_factor=None,
        original_max_position_embeddings=64,
        max_position_embeddings=512,
        rope_theta=10000.0,
        method="longrope",
        provenance={"note": "test"},
    )
    base.update(kw)
    return FactorSet(**base)


factor_sets = st.builds(
    lambda half, data, n_hat, attn, L, s, theta: FactorSet(
        long_factor=data[:half],
        short_factor=data[half : 2 * half],
        start_tokens=n_hat % (min(L, L * s - 1) + 1),  # n̂ ≤ min(L, L' - 1) (a larger one is refused by design)
        attention_factor=attn,
        original_max_position_embeddings=L,
        max_position_embeddings=L * s,
        rope_theta=theta,
        method="longrope",
        provenance={"seed": n_hat},
    ),
    st.integers(1, 64),
    st.lists(st.floats(1e-3, 1e3, allow_nan=False), min_size=128, max_size=128),
    st.integers(0, 256),
    st.none() | st.floats(0.5, 3.0),
    st.integers(2, 10**6),  # L = 1 has no default temperature (ln 1 = 0): FactorSet refuses it by design
    st.integers(1, 64),
    st.floats(1.0, 1e8),
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fs=factor_sets)
def test_json_round_trip_is_exact(tmp_path, fs):
    path = fs.save(tmp_path / "factors.json")
    back = FactorSet.load(path)
    assert back == fs
    assert back.to_dict() == fs.to_dict()
    assert json.loads(path.read_text())["format_version"] == FORMAT_VERSION
    assert FactorSet.load(tmp_path) == fs  # a folder means its factors.json


def test_defaults_and_derived_values():
    fs = FactorSet(
        long_factor=[1.0, 2.0],
        original_max_position_embeddings=4096,
        max_position_embeddings=131072,
        rope_theta=1e4,
    )
    np.testing.assert_array_equal(fs.short_factor, [1.0, 1.0])
    assert fs.rotary_dim == 4 and fs.scale == 32.0 and fs.start_tokens == 0 and fs.method == "custom"
    assert fs.resolved_attention_factor() == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert fs.with_(attention_factor=1.25).resolved_attention_factor() == 1.25
    assert fs.with_(max_position_embeddings=4096).resolved_attention_factor() == 1.0  # s = 1
    assert fs.original_length == 4096 and fs.target_length == 131072


def test_inputs_are_copied_not_aliased():
    lam = np.array([1.0, 2.0])
    fs = FactorSet(
        long_factor=lam, original_max_position_embeddings=4, max_position_embeddings=8, rope_theta=1e4
    )
    lam[0] = 99.0
    assert fs.long_factor[0] == 1.0


@pytest.mark.parametrize(
    "change,message",
    [
        ({"long_factor": []}, "long_factor must be a non-empty"),
        ({"long_factor": np.ones((2, 2))}, "long_factor must be a non-empty 1-D"),
        ({"long_factor": [[1.0, 2.0]]}, r"long_factor\[0\] is not a number"),
        ({"long_factor": [1.0, float("nan"), 2.0, 3.0]}, r"long_factor\[1\] is not finite"),
        ({"long_factor": [1.0, 0.0, 2.0, 3.0]}, r"long_factor\[1\] = 0.0 must be > 0"),
        ({"long_factor": [1.0, "2", 2.0, 3.0]}, r"long_factor\[1\] is not a number"),
        ({"long_factor": [1.0, True, 2.0, 3.0]}, r"long_factor\[1\] is not a number"),
        ({"short_factor": [1.0, 1.0]}, "long_factor has 4 values but short_factor has 2"),
        ({"short_factor": [1.0, 1.0, -1.0, 1.0]}, r"short_factor\[2\] = -1.0 must be > 0"),
        # finite and > 0, but its angles are not computable: perplexity NaN, rc 0 (battery 5)
        ({"long_factor": [1e-300, 1.0, 2.0, 3.0]}, r"long_factor\[0\] = 1e-300 .* past 2\^52 rad"),
        ({"short_factor": [1.0, 1e-15, 1.0, 1.0]}, r"short_factor\[1\] = 1e-15 .* past 2\^52 rad"),
        ({"start_tokens": -1}, "start_tokens must be an integer >= 0"),
        ({"start_tokens": 1.5}, "start_tokens must be an integer"),
        # a hand-edited n̂ past L' loaded everywhere (generate, eval, export) while baseline refuses to write one
        # (battery 7)
        ({"start_tokens": 10**9}, "start_tokens n̂ = 1000000000 is more than 64 for L = 64, L' = 512"),
        # between L and L' the retained positions' original angles are ones the model never saw; search and
        # baseline refused such an n̂ while a factor file kept it (battery 26's open item)
        ({"start_tokens": 65}, "start_tokens n̂ = 65 is more than 64 .* give n̂ from 0 to 64"),
        ({"attention_factor": 0.0}, "attention_factor must be a finite number > 0"),
        ({"attention_factor": float("inf")}, "attention_factor must be a finite number > 0"),
        ({"original_max_position_embeddings": 0}, "original_max_position_embeddings must be an integer >= 1"),
        ({"max_position_embeddings": "big"}, "max_position_embeddings must be an integer"),
        ({"rope_theta": -1.0}, "rope_theta must be a finite number > 0"),
        ({"method": ""}, "method must be a non-empty string"),
        ({"provenance": [1, 2]}, "provenance must be a JSON object"),
    ],
)
def test_validation_names_the_bad_field(change, message):
    with pytest.raises(UserError, match=message):
        _fs(**change)


def test_factors_below_one_are_accepted():
    # Phi-3's short factors sit around 1.0 and may dip below it; only λ > 0 is required.
    assert _fs(short_factor=[0.98, 1.0, 1.02, 1.05]).short_factor[0] == 0.98
    assert _fs(long_factor=[1e-6, 1.0, 1e300, 3.0]).long_factor[0] == 1e-6  # odd, but its angles are computable


def _write(tmp_path, obj, name="factors.json"):
    p = tmp_path / name
    p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return p


@pytest.mark.parametrize(
    "mutate,message",
    [
        (lambda d: d.pop("long_factor"), r"no 'long_factor'"),
        (lambda d: d.pop("rope_theta"), "missing required key\\(s\\): rope_theta"),
        (lambda d: d.update(format_version=2), "unsupported factor file format_version 2"),
        (lambda d: d.update(start_token=3), "unknown key\\(s\\) 'start_token'"),
        # the file's rotary_dim says which list was cut (not the other one)
        (lambda d: d.update(long_factor=d["long_factor"][:3]), "long_factor has 3 values but the file's rotary_dim"),
        (lambda d: d.update(long_factor=[1.0, "x", 2.0, 3.0]), r"long_factor\[1\] is not a number"),
        (lambda d: d.update(rotary_dim=16), "rotary_dim 16 does not match long_factor"),
        (
            lambda d: d.update(original_max_position_embeddings=4096.5),
            "original_max_position_embeddings must be an integer",
        ),
    ],
)
def test_bad_factor_files_are_user_errors(tmp_path, mutate, message):
    d = _fs().to_dict()
    mutate(d)
    with pytest.raises(UserError, match=message):
        FactorSet.load(_write(tmp_path, d))


def test_nan_and_broken_json_are_user_errors(tmp_path):
    text = json.dumps(_fs().to_dict()).replace("1.5", "NaN", 1)
    with pytest.raises(UserError, match=r"long_factor\[1\] is not finite"):
        FactorSet.load(_write(tmp_path, text))
    with pytest.raises(UserError, match="is not valid JSON"):
        FactorSet.load(_write(tmp_path, '{"long_factor": [1.0,'))
    with pytest.raises(UserError, match="neither a factors.json"):
        FactorSet.load(_write(tmp_path, {"hidden_size": 64}))
    with pytest.raises(UserError, match="cannot read factor file"):
        FactorSet.load(tmp_path / "missing.json")
    (tmp_path / "empty_dir").mkdir()
    with pytest.raises(UserError, match="folder without factors.json or config.json"):
        FactorSet.load(tmp_path / "empty_dir")


# ---------------------------------------------------------------- reference CSV
def test_a_run_folder_without_factors_names_what_to_give(tmp_path):
    """A fine-tuning or eval run folder given as factors: its config.json is the run's record, not a model
    config, so it is refused naming what it is and what to give (was 'neither a factors.json nor ...')."""
    run = tmp_path / "ft"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": "finetune", "config": {}}))
    with pytest.raises(UserError, match=r"ft is a finetune run folder without factors.json; give a factor file"):
        FactorSet.load(run)


def test_csv_round_trip(tmp_path):
    fs = make_baseline("yarn", rope_theta=10000.0, rotary_dim=64, original_length=4096, target_length=65536)
    path = fs.save_csv(tmp_path / "factors.csv")
    assert len(path.read_text().splitlines()) == 32
    back = FactorSet.load(path, rope_theta=10000.0, original_length=4096, target_length=65536)
    np.testing.assert_array_equal(back.long_factor, fs.long_factor)
    np.testing.assert_array_equal(back.short_factor, np.ones(32))
    assert back.scale == 16 and back.provenance["format"] == "reference-csv"


def test_csv_needs_lengths_and_base(tmp_path):
    path = _write(tmp_path, "1.0\n2.0\n", name="f.csv")
    with pytest.raises(UserError, match="without the rope base, the trained length L, the target length L'"):
        FactorSet.load(path)
    with pytest.raises(UserError, match="CSV: long factors only, without the target length L'; use a factors.json"):
        FactorSet.load(path, rope_theta=1e4, original_length=4)
    # Content, not the suffix, decides: a bare column of numbers is a CSV too.
    with pytest.raises(UserError, match="reference-code CSV"):
        FactorSet.load(_write(tmp_path, "1.0\n2.0\n", name="factors.txt"))


@pytest.mark.parametrize(
    "text,message",
    [
        ("1.0\nabc\n", "f.csv:2: 'abc' is not a number"),
        ("1.0,2.0\n3.0,4.0\n", "only the one-λ-per-line CSV"),
        ("\n# nothing\n", "holds no factors"),
        ("1.0\nnan\n", r"factor\[1\] is not finite"),
    ],
)
def test_bad_csv_files(tmp_path, text, message):
    with pytest.raises(UserError, match=message):
        FactorSet.from_csv(
            _write(tmp_path, text, name="f.csv"), rope_theta=1e4, original_length=4, target_length=8
        )


def test_csv_skips_comments_blank_lines_and_trailing_commas(tmp_path):
    path = _write(tmp_path, "# lambda\n1.0,\n\n 2.5 \n", name="f.csv")
    fs = FactorSet.from_csv(path, rope_theta=1e4, original_length=4, target_length=8, start_tokens=2)
    np.testing.assert_array_equal(fs.long_factor, [1.0, 2.5])
    assert fs.start_tokens == 2


# ---------------------------------------------------------------- Hugging Face config.json
def _phi3_mini_128k_like() -> dict:
    """A Phi-3-mini-128k-instruct-shaped config (head_dim 96 → 48 factors; values made up here)."""
    i = np.arange(48)
    long_factor = [float(x) for x in np.round(1.0 + 46.0 * (i / 47) ** 3, 4)]
    short_factor = [float(x) for x in np.round(1.0 + 0.1 * (i / 47) ** 2, 4)]
    return {
        "architectures": ["Phi3ForCausalLM"],
        "model_type": "phi3",
        "hidden_size": 3072,
        "num_attention_heads": 32,
        "num_key_value_heads": 32,
        "num_hidden_layers": 32,
        "intermediate_size": 8192,
        "vocab_size": 32064,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "rope_scaling": {"type": "longrope", "long_factor": long_factor, "short_factor": short_factor},
        "sliding_window": 262144,
    }


def test_phi3_mini_128k_config_imports(tmp_path):
    cfg = _phi3_mini_128k_like()
    fs = FactorSet.load(_write(tmp_path, cfg, name="config.json"))
    assert fs.rotary_dim == 96 and fs.long_factor.size == 48
    assert fs.original_max_position_embeddings == 4096 and fs.max_position_embeddings == 131072
    assert fs.scale == 32 and fs.rope_theta == 10000.0 and fs.method == "longrope"
    np.testing.assert_array_equal(fs.long_factor, cfg["rope_scaling"]["long_factor"])
    np.testing.assert_array_equal(fs.short_factor, cfg["rope_scaling"]["short_factor"])
    assert fs.attention_factor is None
    assert fs.resolved_attention_factor() == pytest.approx(math.sqrt(1 + math.log(32) / math.log(4096)))
    assert FactorSet.load(tmp_path) == fs  # folder without factors.json → its config.json


def test_phi3_config_with_wrong_factor_count_is_rejected(tmp_path):
    cfg = _phi3_mini_128k_like()
    cfg["rope_scaling"]["long_factor"] = cfg["rope_scaling"]["long_factor"][:32]
    with pytest.raises(UserError, match="long_factor has 32 values but the model's rotary dim is 96"):
        FactorSet.load(_write(tmp_path, cfg, name="config.json"))
    cfg["rope_scaling"]["short_factor"] = cfg["rope_scaling"]["short_factor"][:32]
    with pytest.raises(UserError, match="long_factor has 32 values but the model's rotary dim is 96"):
        FactorSet.load(_write(tmp_path, cfg, name="config.json"))


@pytest.mark.parametrize("spelling", ["rope_scaling", "rope_parameters", "both"])
def test_hf_config_round_trip_both_spellings(tmp_path, spelling):
    fs = _fs(start_tokens=0, attention_factor=1.3, provenance={})
    fields = hf_config_fields(fs)
    cfg = {"hidden_size": 32, "num_attention_heads": 4, **fields}  # head_dim 8 → 4 factors
    if spelling == "rope_scaling":
        del cfg["rope_parameters"]  # 4.x: theta only at top level
    elif spelling == "rope_parameters":
        del cfg["rope_scaling"]
        del cfg["rope_theta"]  # 5.x keeps theta inside rope_parameters
    back = FactorSet.load(_write(tmp_path, cfg, name="config.json"))
    assert back.same_factors(fs.with_(method="longrope"), rtol=0)
    assert back.attention_factor == 1.3


def test_hf_per_layer_type_rope_parameters_and_disagreements(tmp_path):
    fs = _fs(start_tokens=0)
    rp = hf_config_fields(fs)["rope_parameters"]
    cfg = {
        "max_position_embeddings": 512,
        "rope_parameters": {
            "full_attention": rp,
            "sliding_attention": {"rope_type": "default", "rope_theta": 1e4},
        },
    }
    back = FactorSet.load(_write(tmp_path, cfg, name="config.json"))
    np.testing.assert_array_equal(back.long_factor, fs.long_factor)

    bad = {**hf_config_fields(fs)}
    bad["rope_scaling"] = {**bad["rope_scaling"], "long_factor": [1.0, 1.0, 1.0, 1.0]}
    with pytest.raises(UserError, match="disagree on long_factor"):
        FactorSet.load(_write(tmp_path, bad, name="config.json"))

    yarn = {"max_position_embeddings": 512, "rope_scaling": {"rope_type": "yarn", "factor": 8.0}}
    with pytest.raises(UserError, match="no longrope rope scaling \\(rope type: yarn\\)"):
        FactorSet.load(_write(tmp_path, yarn, name="config.json"))

    missing = {
        "max_position_embeddings": 512,
        "rope_scaling": {"rope_type": "longrope", "long_factor": [1.0, 2.0]},
    }
    with pytest.raises(UserError, match="has no 'short_factor'"):
        FactorSet.load(_write(tmp_path, missing, name="config.json"))
    no_len = {
        "max_position_embeddings": 512,
        "rope_scaling": {"rope_type": "longrope", "long_factor": [1.0], "short_factor": [1.0]},
    }
    with pytest.raises(UserError, match="no original_max_position_embeddings"):
        FactorSet.load(_write(tmp_path, no_len, name="config.json"))


def test_hf_factor_differing_from_length_ratio_keeps_transformers_temperature(tmp_path):
    cfg = _phi3_mini_128k_like()
    cfg["rope_scaling"]["factor"] = 16.0  # transformers derives the temperature from this, not 131072/4096
    fs = FactorSet.load(_write(tmp_path, cfg, name="config.json"))
    assert fs.resolved_attention_factor() == pytest.approx(math.sqrt(1 + math.log(16) / math.log(4096)))


# ---------------------------------------------------------------- identity / compose / equality
def test_identity():
    fs = FactorSet.identity(128, 10000.0, 4096)
    assert fs.rotary_dim == 128 and fs.scale == 1 and fs.resolved_attention_factor() == 1.0
    np.testing.assert_array_equal(fs.long_factor, np.ones(64))
    far = FactorSet.identity(128, 10000.0, 4096, target_length=65536)
    assert far.scale == 16 and far.resolved_attention_factor() == 1.0  # still the original RoPE


def test_compose_multiplies_factors_for_progressive_extension():
    ft = make_baseline("yarn", rope_theta=1e4, rotary_dim=16, original_length=4096, target_length=262144)
    rel = FactorSet(
        long_factor=np.linspace(1.0, 8.0, 8),
        start_tokens=8,
        original_max_position_embeddings=4096,
        max_position_embeddings=2097152,
        rope_theta=1e4,
        method="longrope",
    )
    out = ft.compose(rel)
    np.testing.assert_array_equal(out.long_factor, ft.long_factor * rel.long_factor)
    assert out.max_position_embeddings == 2097152 and out.original_max_position_embeddings == 4096
    assert out.start_tokens == 8 and out.attention_factor is None and out.scale == 512
    assert len(out.provenance["composed_of"]) == 2
    with pytest.raises(UserError, match="rotary_dim"):
        ft.compose(FactorSet.identity(8, 1e4, 4096))
    with pytest.raises(UserError, match="rope_theta"):
        ft.compose(FactorSet.identity(16, 5e5, 4096))


def test_equality_helpers():
    a = _fs()
    assert a == _fs() and a != _fs(start_tokens=5) and a != _fs(provenance={})
    b = _fs(long_factor=[1.0, 1.5 * (1 + 1e-14), 3.0, 8.0])
    assert a != b and a.same_factors(b) and not a.same_factors(b, rtol=0)
    assert a.same_factors(_fs(provenance={"other": 1}), rtol=0)
    assert "method='longrope'" in repr(a)


def test_save_rejects_unserialisable_provenance(tmp_path):
    with pytest.raises(UserError, match="provenance is not JSON-serialisable"):
        _fs(provenance={"x": object()}).save(tmp_path / "f.json")
    assert not (tmp_path / "f.json").exists()


# ---------------------------------------------------------------- transformers reads what we write
transformers = pytest.importorskip("transformers")


@pytest.mark.parametrize("spelling", ["rope_scaling", "rope_parameters"])
def test_transformers_longrope_uses_our_factors(spelling):
    """Exported fields → transformers' longrope init gives θ/λ and our temperature (docs/method.md §8)."""
    from transformers import Phi3Config
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    fs = FactorSet(
        long_factor=np.linspace(1.0, 40.0, 48),
        short_factor=np.linspace(1.0, 1.2, 48),
        original_max_position_embeddings=4096,
        max_position_embeddings=131072,
        rope_theta=10000.0,
        method="longrope",
    )
    fields = hf_config_fields(fs)
    kwargs = {k: v for k, v in fields.items() if k not in ("rope_scaling", "rope_parameters")}
    kwargs[spelling] = fields[spelling]
    cfg = Phi3Config(
        hidden_size=3072,
        num_attention_heads=32,
        num_hidden_layers=1,
        intermediate_size=64,
        vocab_size=64,
        **kwargs,
    )
    fn = ROPE_INIT_FUNCTIONS["longrope"]
    long_inv, attn = fn(cfg, "cpu", seq_len=131072)
    short_inv, _ = fn(cfg, "cpu", seq_len=4096)
    np.testing.assert_allclose(long_inv.double().numpy(), fs.inv_freq("long"), rtol=5e-7)
    np.testing.assert_allclose(short_inv.double().numpy(), fs.inv_freq("short"), rtol=5e-7)
    assert attn == pytest.approx(fs.resolved_attention_factor(), rel=1e-12)


def test_pickle_and_deepcopy_round_trip():
    # Search evaluators ship factor sets to worker processes (multiprocessing / Ray).
    import copy
    import pickle

    fs = _fs()
    assert pickle.loads(pickle.dumps(fs)) == fs
    assert copy.deepcopy(fs) == fs


def test_hf_config_start_tokens_key_is_read_back():
    """``longrope export`` stores n̂ under our own key; importing that config must not drop it."""
    from longrope.formats.hf_config import START_TOKENS_CONFIG_KEY

    cfg = {
        "rope_theta": 10000.0,
        "max_position_embeddings": 2048,
        "head_dim": 8,
        "rope_scaling": {"rope_type": "longrope", "short_factor": [1.0] * 4, "long_factor": [1.0, 2.0, 4.0, 8.0],
                         "original_max_position_embeddings": 256},
        START_TOKENS_CONFIG_KEY: 4,
    }
    assert FactorSet.from_hf_config(cfg).start_tokens == 4
    del cfg[START_TOKENS_CONFIG_KEY]
    assert FactorSet.from_hf_config(cfg).start_tokens == 0
    cfg[START_TOKENS_CONFIG_KEY] = -1
    with pytest.raises(UserError, match=START_TOKENS_CONFIG_KEY):
        FactorSet.from_hf_config(cfg)


def test_a_cut_list_is_named_not_the_other_one(tmp_path):
    """A file whose long_factor was cut used to say "short_factor has 4 values, expected 3"."""
    from longrope.rope.factors import RotaryDimMismatch

    d = _fs().to_dict()
    d["short_factor"] = d["short_factor"][:3]
    with pytest.raises(UserError, match="short_factor has 3 values but the file's rotary_dim is 8 \\(needs 4\\)"):
        FactorSet.load(_write(tmp_path, d))
    d = _fs().to_dict()
    d["long_factor"] = d["long_factor"][:3]
    del d["rotary_dim"]  # nothing in the file says which list is right: both are named
    with pytest.raises(UserError, match="long_factor has 3 values but short_factor has 4"):
        FactorSet.load(_write(tmp_path, d))
    # the model's rotary dim decides, whatever the file says; the error is a RotaryDimMismatch naming the file
    with pytest.raises(RotaryDimMismatch, match=r"factors.json: long_factor has 3 values but the model's rotary "
                                                r"dim is 8 \(needs 4\)"):
        FactorSet.load(_write(tmp_path, d), rotary_dim=8)
    with pytest.raises(RotaryDimMismatch, match="long_factor has 4 values but the model's rotary dim is 16"):
        FactorSet.load(_write(tmp_path, _fs().to_dict()), rotary_dim=16)
    assert FactorSet.load(_write(tmp_path, _fs().to_dict()), rotary_dim=8) == _fs()


def test_model_rotary_dim_checks_csv_and_hf_config_too(tmp_path):
    from longrope.rope.factors import RotaryDimMismatch

    csv = _write(tmp_path, "1.0\n2.0\n3.0\n", name="f.csv")
    with pytest.raises(RotaryDimMismatch, match="f.csv: long_factor has 3 values but the model's rotary dim is 8"):
        FactorSet.load(csv, rope_theta=1e4, original_length=4, target_length=8, rotary_dim=8)
    cfg = _phi3_mini_128k_like()
    with pytest.raises(RotaryDimMismatch, match="long_factor has 48 values but the model's rotary dim is 64"):
        FactorSet.load(_write(tmp_path, cfg, name="config.json"), rotary_dim=64)


def test_torch_tensors_of_any_dtype_or_grad_are_read_as_their_values():
    """Battery 14b: FactorSet(long_factor=a bf16 tensor) was "Got unsupported ScalarType BFloat16", a tensor
    requiring grad torch's RuntimeError (numpy refuses both); float32 ones were read. Now all by their values."""
    import torch

    values = [1.0, 1.5, 2.0, 4.0]
    for tensor in (torch.tensor(values, dtype=torch.bfloat16), torch.tensor(values, requires_grad=True),
                   torch.tensor(values, dtype=torch.float16)):
        fs = FactorSet(long_factor=tensor, original_max_position_embeddings=256, max_position_embeddings=1024,
                       rope_theta=1e4)
        assert fs.long_factor.dtype == np.float64 and fs.long_factor.tolist() == values


def test_zero_dimensional_tensors_are_read_as_the_numbers_they_hold():
    """Battery 16: list(tensor) (0-d tensors) was "long_factor[0] is not a number: tensor(1.)", and
    attention_factor=torch.tensor(1.2) "must be a finite number > 0 or null, got tensor(1.2000)"; a [1, d/2]
    tensor "long_factor[0] is not a number: [...]" instead of its shape."""
    import torch

    values = [1.0, 1.5, 2.0, 4.0]
    fs = FactorSet(long_factor=list(torch.tensor(values, requires_grad=True)), attention_factor=torch.tensor(1.25),
                   original_max_position_embeddings=torch.tensor(256), max_position_embeddings=np.array(1024),
                   rope_theta=torch.tensor(1e4, dtype=torch.float64), start_tokens=torch.tensor(2))
    assert fs.long_factor.tolist() == values and fs.attention_factor == 1.25 and fs.start_tokens == 2
    assert (fs.original_max_position_embeddings, fs.max_position_embeddings, fs.rope_theta) == (256, 1024, 1e4)
    with pytest.raises(UserError, match=r"long_factor must be a non-empty 1-D list of numbers, got shape \[1, 4\]"):
        FactorSet(long_factor=torch.tensor([values]), original_max_position_embeddings=256,
                  max_position_embeddings=1024, rope_theta=1e4)


def test_the_value_methods_refuse_what_they_cannot_take_in_one_line(tmp_path):
    """The public methods of the values took or crashed on arguments outside their domain (battery 19):
    factors_for_length('x') a TypeError and NaN the short factors, inv_freq('medium') a plain ValueError,
    compose(None) a TypeError, same_factors('x') an AttributeError and rtol=NaN 'equal' with numpy's warning,
    TokenCorpus.tokens(100) numpy's IndexError and tokens(-1) the last document."""
    import warnings

    from longrope.data import TokenCorpus
    from tests.data.test_doc_sampling import make_corpus

    fs = make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=64, target_length=128)
    other = make_baseline("ntk", rope_theta=1e4, rotary_dim=8, original_length=64, target_length=128)
    corpus = TokenCorpus.open(make_corpus(tmp_path / "c", [50, 60]).path)
    calls = [lambda: fs.factors_for_length("x"), lambda: fs.factors_for_length(float("nan")),
             lambda: fs.inv_freq("medium"), lambda: fs.compose(None), lambda: fs.same_factors("x"),
             lambda: fs.same_factors(other, rtol=float("nan")), lambda: corpus.tokens(2),
             lambda: corpus.tokens(-1), lambda: corpus.tokens(0, "a")]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for call in calls:
            with pytest.raises(UserError):
                call()
    assert len(corpus.tokens(1, 10, 20)) == 10 and fs.factors_for_length(65) is fs.long_factor


def test_a_huge_or_long_value_is_quoted_short_by_every_rope_refusal():
    """The rope package quoted refused values with repr: an integer of 5,001 digits was Python's "Exceeds the limit
    (4300 digits) for integer string conversion" traceback (attention_factor, method, head_dim), 10**5000 as
    head_dim or partial_rotary_factor an OverflowError, and 100,000 characters of text came back in the message
    (battery 29a). Every refusal quotes through shown(): one short line."""
    from longrope.rope import resolve_attention_factor, rotary_dim

    big, text = 10**5000, "x" * 100_000
    common = dict(original_max_position_embeddings=4, max_position_embeddings=8, rope_theta=1e4)
    calls = [lambda: rotary_dim(big), lambda: rotary_dim(-big), lambda: rotary_dim(64, big), lambda: rotary_dim(64, text),
             lambda: FactorSet(long_factor=[1.0] * 4, attention_factor=-big, **common),
             lambda: FactorSet(long_factor=[1.0] * 4, method=big, **common),
             lambda: FactorSet(long_factor=[1.0, text], **common),
             lambda: make_baseline(text, rope_theta=1e4, rotary_dim=8, original_length=4, target_length=8),
             lambda: make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=4, target_length=8, **{text: 1}),
             lambda: resolve_attention_factor(text, 2.0, 4), lambda: resolve_attention_factor([1] * 100_000, 2.0, 4)]
    for call in calls:
        with pytest.raises(UserError) as e:
            call()
        assert len(str(e.value)) < 200 and "\n" not in str(e.value)


def test_to_dict_and_the_constructor_copy_provenance_so_a_frozen_set_stays_as_built():
    """to_dict() handed out the set's own provenance: editing the dict it returned (a variant file) edited the frozen
    set, its equality, and a dynamic NTK set's options, from which eval recomputes it at each length; a caller's
    nested options dict edited after the set was built did the same (battery 29a)."""
    from longrope.rope.baselines import at_length

    fs = make_baseline("dynamic-ntk", rope_theta=1e4, rotary_dim=8, original_length=4, target_length=32)
    want = at_length(fs, 16)
    twin = FactorSet.from_dict(fs.to_dict())
    d = fs.to_dict()
    d["provenance"]["options"]["factor"] = 2.0
    d["provenance"]["note"] = "an edited copy"
    assert fs == twin and "note" not in fs.provenance and at_length(fs, 16) == want
    options = {"a": [1]}
    built = FactorSet(long_factor=[1.0, 2.0], original_max_position_embeddings=4, max_position_embeddings=8,
                      rope_theta=1e4, provenance={"options": options})
    options["a"].append(2)
    assert built.provenance == {"options": {"a": [1]}}


def test_factor_arrays_are_read_only_so_a_frozen_set_cannot_be_edited_in_place():
    """fs.long_factor[0] = 9 edited a frozen set (its equality, its digest, a model it was installed on at the next
    swap), while the caller's own array stays theirs to edit."""
    mine = np.array([1.0, 2.0])
    fs = FactorSet(long_factor=mine, original_max_position_embeddings=4, max_position_embeddings=8, rope_theta=1e4)
    for arr in (fs.long_factor, fs.short_factor):
        with pytest.raises(ValueError, match="read-only"):
            arr[0] = 9.0
    mine[0] = 5.0
    assert fs.long_factor.tolist() == [1.0, 2.0]
    assert fs.with_(long_factor=fs.long_factor * 2).long_factor.tolist() == [2.0, 4.0]
    for twin in (copy.deepcopy(fs), pickle.loads(pickle.dumps(fs))):  # a search worker's copy
        assert twin == fs and not twin.long_factor.flags.writeable and not twin.short_factor.flags.writeable
