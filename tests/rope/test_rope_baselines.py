"""Baselines: shapes, monotonicity and bounds (property tests) and parity with transformers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longrope.errors import UserError
from longrope.rope import (
    BASELINES,
    FactorSet,
    baseline_options,
    inv_freq,
    make_baseline,
    rotary_dim,
    yarn_extrapolation_mask,
    yarn_linear_seed,
)
from tests.rope.rope_strategies import original_lengths, rotary_dims, scales, thetas

EPS = 1e-12


def _build(method, d, b, L, s, **options) -> FactorSet:
    return make_baseline(
        method, rope_theta=b, rotary_dim=d, original_length=L, target_length=L * s, **options
    )


@settings(max_examples=60, deadline=None)
@given(method=st.sampled_from(sorted(BASELINES)), d=rotary_dims, b=thetas, L=original_lengths, s=scales)
def test_every_baseline_is_a_valid_monotone_factor_set(method, d, b, L, s):
    if d < 4 and method in ("ntk", "dynamic-ntk"):
        return
    fs = _build(method, d, b, L, s)
    lam = fs.long_factor
    assert lam.shape == (d // 2,) and lam.dtype == np.float64
    assert fs.method == method and fs.provenance["method"] == method
    np.testing.assert_array_equal(fs.short_factor, np.ones(d // 2))
    assert np.all(np.diff(lam) >= -EPS * lam[1:]), "factors must be non-decreasing in the pair index"
    upper = s * s - s + 1 if method == "dynamic-ntk" else s  # dynamic NTK at ℓ = L' over-scales
    assert np.all(lam >= 1 - EPS) and np.all(lam <= upper * (1 + EPS))
    if method == "pi":
        np.testing.assert_array_equal(lam, np.full(d // 2, float(s)))
    else:
        assert lam[0] == pytest.approx(1.0, abs=1e-12)  # fastest pair extrapolates
    if method in ("ntk", "dynamic-ntk"):
        assert lam[-1] == pytest.approx(upper, rel=1e-12)  # slowest pair fully interpolated
    if method == "yarn":
        assert fs.attention_factor == pytest.approx(0.1 * math.log(s) + 1 if s > 1 else 1.0)
    else:
        assert fs.attention_factor == 1.0


@settings(max_examples=40, deadline=None)
@given(d=st.sampled_from([16, 64, 128]), b=thetas, L=original_lengths, s=scales)
def test_yarn_linear_seed_blends_lambda_not_theta(d, b, L, s):
    seed = yarn_linear_seed(rope_theta=b, rotary_dim=d, original_length=L, target_length=L * s)
    mask = yarn_extrapolation_mask(rope_theta=b, rotary_dim=d, original_length=L)
    np.testing.assert_allclose(seed.long_factor, s * (1 - mask) + mask, rtol=1e-15)
    yarn = _build("yarn", d, b, L, s).long_factor
    # A linear blend of λ is >= the harmonic blend YaRN gets from blending θ (equal where mask ∈ {0, 1}).
    assert np.all(seed.long_factor >= yarn * (1 - EPS))
    assert seed.attention_factor is None and seed.method == "yarn-linear-seed"


def test_ntk_base_formula():
    fs = _build("ntk", 128, 10000.0, 4096, 8)
    base = 10000.0 * 8 ** (128 / 126)
    i = np.arange(64)
    np.testing.assert_allclose(fs.long_factor, (base / 10000.0) ** (2 * i / 128), rtol=1e-13)
    assert fs.provenance["options"]["base"] == pytest.approx(base)


def test_dynamic_ntk_identity_within_original_length_and_grows_with_length():
    d, b, L = 64, 10000.0, 2048
    within = _build("dynamic-ntk", d, b, L, 8, length=1000)
    np.testing.assert_allclose(within.long_factor, np.ones(d // 2))
    a = _build("dynamic-ntk", d, b, L, 8, length=4096).long_factor
    c = _build("dynamic-ntk", d, b, L, 8, length=8192).long_factor
    assert np.all(c >= a) and c[-1] > a[-1]


@pytest.mark.parametrize("method", ["yarn", "llama3", "dynamic-ntk"])
def test_a_scale_factor_below_1_is_refused(method):
    """``--factor 0.5`` gave λ = 0.5 on the low frequencies (the context shrunk) in a file made to extend it, as
    transformers refuses (battery 6); 1 and above stay."""
    kw = dict(rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32)
    with pytest.raises(UserError, match=r"factor must be >= 1 \(a scale factor extends the context"):
        make_baseline(method, factor=0.5, **kw)
    assert min(make_baseline(method, factor=1.0, **kw).long_factor) >= 1


def test_unknown_method_and_option_are_user_errors():
    with pytest.raises(
        UserError, match=r"unknown baseline method 'rope-magic'; known: pi, ntk, dynamic-ntk, yarn, llama3"
    ):
        make_baseline("rope-magic", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32)
    with pytest.raises(UserError, match="no option"):
        make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32, beta_fast=4)
    with pytest.raises(UserError, match="shorter than original_length"):
        make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=8)
    with pytest.raises(UserError, match="rotary_dim"):
        make_baseline("pi", rope_theta=1e4, rotary_dim=7, original_length=16, target_length=32)
    with pytest.raises(UserError, match="high_freq_factor"):
        make_baseline(
            "llama3", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32, high_freq_factor=1.0
        )
    assert "beta_fast" in baseline_options("yarn") and baseline_options("pi") == []
    # a DeepSeek mscale of NaN or inf (read as --mscale nan) said "provenance is not JSON-serialisable" (battery 5)
    for option in ("mscale", "mscale_all_dim"):
        for bad in (float("nan"), float("inf")):
            with pytest.raises(UserError, match=f"^{option} must be a finite number, got {bad}"):
                make_baseline("yarn", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32,
                              **{option: bad})


def test_yarn_mscale_alone_or_beside_attention_factor_is_refused():
    """Battery 8: baseline --method yarn --mscale -100 wrote m = 0.1·ln s + 1 as if --mscale were not given
    (transformers uses the DeepSeek pair only together, and attention_factor over both); such a set is refused."""
    kw = dict(rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32)
    for option in ("mscale", "mscale_all_dim"):
        with pytest.raises(UserError, match=f"^{option} alone is unused.*give both"):
            make_baseline("yarn", **kw, **{option: 0.7})
    with pytest.raises(UserError, match="^attention_factor overrides mscale"):
        make_baseline("yarn", **kw, mscale=1.0, mscale_all_dim=0.5, attention_factor=1.2)
    both = make_baseline("yarn", **kw, mscale=1.0, mscale_all_dim=0.5)
    assert both.attention_factor == pytest.approx((0.1 * math.log(2) + 1) / (0.05 * math.log(2) + 1))


# ---------------------------------------------------------------- parity with transformers
transformers = pytest.importorskip("transformers")
torch = pytest.importorskip("torch")


def _hf_inv_freq(rope_type: str, *, head_dim: int, max_pos: int, params: dict, prf: float | None = None):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    kwargs = {} if prf is None else {"partial_rotary_factor": prf}
    cfg = LlamaConfig(
        hidden_size=head_dim * 2,
        num_attention_heads=2,
        head_dim=head_dim,
        num_hidden_layers=1,
        intermediate_size=16,
        vocab_size=16,
        max_position_embeddings=max_pos,
        rope_parameters={"rope_type": rope_type, **params},
        **kwargs,
    )
    inv, attn = ROPE_INIT_FUNCTIONS[rope_type](cfg, "cpu")
    return inv.double().numpy(), float(attn)


YARN_CASES = [
    # (head_dim, theta, L, L', beta_fast, beta_slow, extra)
    (64, 10000.0, 2048, 16384, 32, 1, {}),
    (128, 10000.0, 4096, 65536, 32, 1, {}),
    (128, 1e6, 32768, 131072, 128, 2, {}),  # Mistral-style betas
    (96, 10000.0, 4096, 131072, 32, 1, {"truncate": False}),
    (128, 10000.0, 4096, 32768, 32, 1, {"mscale": 0.707, "mscale_all_dim": 0.707}),
    (128, 10000.0, 4096, 32768, 32, 1, {"mscale": 1.0, "mscale_all_dim": 0.5}),
]


@pytest.mark.parametrize("head_dim,theta,L,Lt,bf,bs,extra", YARN_CASES)
def test_yarn_matches_transformers(head_dim, theta, L, Lt, bf, bs, extra):
    s = Lt / L
    params = {
        "factor": s,
        "original_max_position_embeddings": L,
        "rope_theta": theta,
        "beta_fast": bf,
        "beta_slow": bs,
        **extra,
    }
    want, want_attn = _hf_inv_freq("yarn", head_dim=head_dim, max_pos=Lt, params=params)
    fs = make_baseline(
        "yarn",
        rope_theta=theta,
        rotary_dim=head_dim,
        original_length=L,
        target_length=Lt,
        beta_fast=bf,
        beta_slow=bs,
        **extra,
    )
    # transformers computes in float32 (its ramp too: ~1e-6 relative with an untruncated range);
    # we compute in float64. A convention slip (floor/ceil, d/2 vs d clamp) costs far more than 2e-6.
    np.testing.assert_allclose(fs.inv_freq(), want, rtol=2e-6)
    assert fs.attention_factor == pytest.approx(want_attn, rel=1e-12)


LLAMA3_CASES = [
    # (head_dim, theta, L, L', factor, low, high)
    (128, 500000.0, 8192, 131072, 8.0, 1.0, 4.0),  # Llama 3.1
    (64, 500000.0, 8192, 131072, 32.0, 1.0, 4.0),  # Llama 3.2 1B/3B
    (64, 10000.0, 2048, 16384, None, 1.0, 4.0),
    (128, 10000.0, 4096, 65536, None, 2.0, 8.0),
]


@pytest.mark.parametrize("head_dim,theta,L,Lt,factor,low,high", LLAMA3_CASES)
def test_llama3_matches_transformers(head_dim, theta, L, Lt, factor, low, high):
    f = Lt / L if factor is None else factor
    params = {
        "factor": f,
        "low_freq_factor": low,
        "high_freq_factor": high,
        "original_max_position_embeddings": L,
        "rope_theta": theta,
    }
    want, want_attn = _hf_inv_freq("llama3", head_dim=head_dim, max_pos=Lt, params=params)
    options = {"low_freq_factor": low, "high_freq_factor": high} | (
        {} if factor is None else {"factor": factor}
    )
    fs = make_baseline(
        "llama3", rope_theta=theta, rotary_dim=head_dim, original_length=L, target_length=Lt, **options
    )
    np.testing.assert_allclose(fs.inv_freq(), want, rtol=5e-7)
    assert fs.attention_factor == want_attn == 1.0


@pytest.mark.parametrize("length", [4096, 6000, 16384, 65536])
def test_dynamic_ntk_matches_transformers(length):
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    head_dim, theta, L, s = 64, 10000.0, 4096, 4.0
    # transformers' dynamic type keeps max_position_embeddings = the original length M.
    cfg = LlamaConfig(
        hidden_size=128,
        num_attention_heads=2,
        head_dim=head_dim,
        num_hidden_layers=1,
        intermediate_size=16,
        vocab_size=16,
        max_position_embeddings=L,
        rope_parameters={"rope_type": "dynamic", "factor": s, "rope_theta": theta},
    )
    want, _ = ROPE_INIT_FUNCTIONS["dynamic"](cfg, "cpu", seq_len=length)
    fs = make_baseline(
        "dynamic-ntk",
        rope_theta=theta,
        rotary_dim=head_dim,
        original_length=L,
        target_length=int(L * s),
        length=length,
    )
    np.testing.assert_allclose(fs.inv_freq(), want.double().numpy(), rtol=5e-7)


def test_pi_with_partial_rotary_matches_transformers_linear():
    # head_dim 80 with partial_rotary_factor 0.4 (Phi-2 style) → 32 rotated channels.
    d = rotary_dim(80, 0.4)
    assert d == 32
    params = {"rope_theta": 10000.0, "factor": 4.0, "partial_rotary_factor": 0.4}
    want, _ = _hf_inv_freq("linear", head_dim=80, max_pos=8192, params=params, prf=0.4)
    fs = make_baseline("pi", rope_theta=10000.0, rotary_dim=d, original_length=2048, target_length=8192)
    np.testing.assert_allclose(fs.inv_freq(), want, rtol=5e-7)
    np.testing.assert_allclose(inv_freq(10000.0, d), want * 4.0, rtol=5e-7)


def test_yarn_takes_any_finite_positive_betas_without_a_math_error():
    """--beta-fast 1e308 --beta-slow 1e-308 was 'ValueError: math domain error' in a traceback (L / (β·2π) under- and
    overflowed before its log; battery 21): the range is computed in logs where the quotient is not finite."""
    from longrope.rope.baselines import yarn_correction_range

    assert yarn_correction_range(rope_theta=1e4, rotary_dim=64, original_length=256, beta_fast=1e308,
                                 beta_slow=1e-308) == (0, 63)
    assert yarn_correction_range(rope_theta=1e4, rotary_dim=64, original_length=256) == (0, 13)  # as before
    make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512, beta_fast=1e308,
                  beta_slow=1e-308)


def test_an_attention_factor_is_checked_in_one_place_within_its_range(tmp_path):
    """m scales every attention logit by m²: --mscale 1e308 --mscale-all-dim 1 wrote attention_factor 6e306 (an
    infinite angle in float32) and --attention-factor 1e-30 one that makes every logit 0; a factor set, a baseline
    and a policy value checked m three ways (battery 21). rope.attention.check_attention_factor is the one check."""
    import json

    from longrope.cli import main
    from longrope.errors import UserError
    from longrope.rope import FactorSet
    from longrope.rope.attention import ATTENTION_FACTOR_RANGE, resolve_attention_factor

    lo, hi = ATTENTION_FACTOR_RANGE
    for bad in (1e-30, hi * 1.01, 6e306, float("nan"), 0, True, "1.2"):
        with pytest.raises(UserError, match="attention_factor"):
            FactorSet(long_factor=[1.0] * 4, rope_theta=1e4, original_max_position_embeddings=16, max_position_embeddings=32,
                      attention_factor=bad)
        with pytest.raises(UserError, match="attention_factor"):
            make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32,
                          attention_factor=bad)
    with pytest.raises(UserError, match=r"is outside \[0.1, 10\]"):
        resolve_attention_factor(50.0, 2.0, 16)
    assert resolve_attention_factor(lo, 2.0, 16) == lo
    from longrope.search.space import SearchSpace, SpaceError

    with pytest.raises(SpaceError, match=r"attention_choices 50 is outside"):  # a searched m: the same check
        SearchSpace(n_dims=4, lower=1, upper=2, step=0.1, start_tokens=(0,), attention_choices=(1.0, 50.0))
    out = tmp_path / "y.json"
    assert main(["baseline", "--model", "tiny", "--method", "yarn", "--target-length", "512", "--mscale", "1e308",
                 "--mscale-all-dim", "1", "-o", str(out)]) == 2 and not out.exists()
    path = tmp_path / "edited.json"  # a file edited by hand is refused when read, by the same check
    make_baseline("pi", rope_theta=1e4, rotary_dim=8, original_length=16, target_length=32).save(path)
    data = json.loads(path.read_text())
    data["attention_factor"] = 1e6
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match="outside"):
        FactorSet.load(path)


def test_the_defaults_method_md_gives_for_longrope_baseline_are_the_code_s():
    """docs/method.md §3 said "Defaults: factor 8" for llama3 and a (128, 2) β default for Mistral; the code takes
    factor s = L'/L and (32, 1) for every family. The page now names what `longrope baseline` uses (battery 26b)."""
    from pathlib import Path

    text = " ".join((Path(__file__).resolve().parents[2] / "docs" / "method.md").read_text().split())
    llama3 = make_baseline("llama3", rope_theta=1e4, rotary_dim=16, original_length=64, target_length=256)
    assert llama3.provenance["options"]["factor"] == 4.0  # s = 256/64, not Llama 3.1's 8
    assert (llama3.provenance["options"]["low_freq_factor"], llama3.provenance["options"]["high_freq_factor"]) == (1, 4)
    assert "`longrope baseline` defaults to low 1, high 4 and factor `s = L'/L`" in text
    yarn = make_baseline("yarn", rope_theta=1e4, rotary_dim=16, original_length=64, target_length=256)
    assert (yarn.provenance["options"]["beta_fast"], yarn.provenance["options"]["beta_slow"]) == (32, 1)
    assert "`longrope baseline` uses `(32, 1)` for every family" in text


def test_a_dynamic_ntk_set_at_a_length_is_the_closed_form_of_that_length_and_other_sets_are_left_as_they_are():
    from longrope.rope.baselines import at_length

    common = dict(rope_theta=10000.0, rotary_dim=16, original_length=256, target_length=2048)
    dyn = make_baseline("dynamic-ntk", **common).with_(start_tokens=4)  # made for ℓ = L' = 2048
    at_512 = at_length(dyn, 512)
    np.testing.assert_allclose(at_512.long_factor, make_baseline("dynamic-ntk", length=512, **common).long_factor,
                               rtol=1e-15)
    assert at_512.start_tokens == 4 and at_512.provenance["options"]["length"] == 512
    np.testing.assert_array_equal(at_length(dyn, 2048).long_factor, dyn.long_factor)
    yarn = make_baseline("yarn", **common)
    assert at_length(yarn, 512) is yarn and at_length(None, 512) is None
    edited = dyn.with_(long_factor=dyn.long_factor * 1.01)  # not the closed form its provenance names
    assert at_length(edited, 512) is edited


@pytest.mark.parametrize("option", ["beta_fast", "factor", "mscale", "low_freq_factor"])
def test_an_option_too_large_for_a_float_is_one_line_naming_it(option):
    """beta_fast=10**400 (a Python integer a float cannot hold) was math.isfinite's OverflowError traceback from inside
    the baseline (battery 29a): every number option is read as the checked float it is, or refused naming it."""
    method = "llama3" if option == "low_freq_factor" else "yarn"
    extra = {"mscale_all_dim": 1.0} if option == "mscale" else {}
    with pytest.raises(UserError, match=f"^{option} must be a finite number.*an integer of 401 digits"):
        make_baseline(method, rope_theta=1e4, rotary_dim=64, original_length=256, target_length=2048,
                      **{option: 10**400}, **extra)


def test_a_baseline_made_from_numpy_options_saves_and_records_them_as_python_numbers(tmp_path):
    """Settings take numpy numbers (README), but yarn's options were recorded as given: make_baseline("yarn",
    beta_fast=np.int64(32)) made a set whose save() said "provenance is not JSON-serialisable: Object of type int64",
    a provenance the caller never wrote (battery 29a)."""
    fs = make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=2048,
                       beta_fast=np.int64(32), beta_slow=np.float32(1), mscale=np.float32(1.0),
                       mscale_all_dim=np.float64(0.5))
    options = FactorSet.load(fs.save(tmp_path / "yarn.json")).provenance["options"]
    assert options["beta_fast"] == 32 and type(options["beta_fast"]) is int
    assert options["beta_slow"] == 1.0 and type(options["mscale"]) is float
    plain = make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=2048,
                          mscale=1.0, mscale_all_dim=0.5)
    assert fs.same_factors(plain)
