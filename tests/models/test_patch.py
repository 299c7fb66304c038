"""install_factors / swap / restore on tiny random models of every supported family.

Parity is checked against transformers' own rope types on the same weights: the patched model
computes angles in float64 and transformers in float32, so logits agree to ~1e-6, not bit for bit;
``ATOL`` leaves one order of magnitude of margin and is still far below what any factor change
moves (see ``test_factors_change_logits``).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.models import current_patch, inspect_model, install_factors
from longrope.models.patch import LongRopeRotaryEmbedding
from longrope.rope import FactorSet, inv_freq, make_baseline
from tests.models.model_helpers import FAMILY_NAMES, TINY_L, TINY_THETA, build_tiny, clone_with_rope, tiny_ids
from tests.rope.rope_angles import rope_angles

ATOL = 2e-5
RTOL = 1e-5
NON_PHI3 = tuple(f for f in FAMILY_NAMES if f != "phi3")  # Phi3Config accepts only default/longrope


def logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


def factors_for(model, *, long=None, short=None, target=4 * TINY_L, **kw) -> FactorSet:
    info = inspect_model(model)
    half = info.rotary_dim // 2
    rng = np.random.default_rng(7)
    long = np.sort(rng.uniform(1.0, 5.0, half)) if long is None else long
    return FactorSet(
        long_factor=long,
        short_factor=short,
        original_max_position_embeddings=info.original_max_position_embeddings,
        max_position_embeddings=target,
        rope_theta=info.rope_theta,
        **kw,
    )


def test_identity_factors_match_unpatched(family):
    model = build_tiny(family)
    info = inspect_model(model)
    ids = tiny_ids(3 * TINY_L)  # beyond L: the long (identity) factors are in use
    ref = logits(model, ids)
    patch = install_factors(model, FactorSet.identity(info.rotary_dim, info.rope_theta, TINY_L, 4 * TINY_L))
    assert isinstance(model.model.rotary_emb, LongRopeRotaryEmbedding)
    torch.testing.assert_close(logits(model, ids), ref, atol=ATOL, rtol=RTOL)
    torch.testing.assert_close(logits(model, ids[:, : TINY_L // 2]), ref[:, : TINY_L // 2], atol=ATOL, rtol=RTOL)
    patch.restore()


def test_factors_change_logits(family):
    """Guard for every parity test: a real factor change moves logits far beyond ATOL."""
    model = build_tiny(family)
    ids = tiny_ids(3 * TINY_L)
    ref = logits(model, ids)
    install_factors(model, factors_for(model, attention_factor=1.0))
    assert (logits(model, ids) - ref).abs().max() > 100 * ATOL


def test_restore_gives_back_the_original_module(family):
    model = build_tiny(family)
    original = model.model.rotary_emb
    ids = tiny_ids(2 * TINY_L)
    ref = logits(model, ids)
    patch = install_factors(model, factors_for(model))
    assert patch.original is original and patch.active
    assert not torch.equal(logits(model, ids), ref)
    patch.restore()
    assert model.model.rotary_emb is original and not patch.active
    assert torch.equal(logits(model, ids), ref)
    patch.swap(factors_for(model))  # swap after restore re-installs
    assert patch.active
    patch.swap(None)  # swap(None) is restore
    assert model.model.rotary_emb is original
    assert torch.equal(logits(model, ids), ref)


def test_context_manager_restores():
    model = build_tiny("llama")
    original = model.model.rotary_emb
    with install_factors(model, factors_for(model)) as patch:
        assert patch.active
    assert model.model.rotary_emb is original


def test_state_dict_unchanged_by_patch():
    model = build_tiny("llama")
    keys = set(model.state_dict())
    install_factors(model, factors_for(model))
    assert set(model.state_dict()) == keys


@pytest.mark.parametrize("length", [TINY_L - 5, TINY_L, TINY_L + 1, 3 * TINY_L])
def test_matches_transformers_longrope(family, length):
    """Distinct short/long factors and an explicit attention factor: equal to HF's `longrope`."""
    model = build_tiny(family)
    info = inspect_model(model)
    half = info.rotary_dim // 2
    long = np.linspace(1.0, 6.0, half)
    short = np.linspace(1.0, 1.5, half)
    fs = factors_for(model, long=long, short=short, attention_factor=1.17)
    hf = clone_with_rope(
        model,
        family,
        {
            "rope_type": "longrope",
            "long_factor": long.tolist(),
            "short_factor": short.tolist(),
            "original_max_position_embeddings": TINY_L,
            "factor": 4.0,
            "attention_factor": 1.17,
        },
        max_position_embeddings=4 * TINY_L,
    )
    install_factors(model, fs)
    ids = tiny_ids(length)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


def test_matches_transformers_longrope_default_attention():
    """attention_factor=None on both sides: sqrt(1 + ln s / ln L) from the same s and L."""
    model = build_tiny("phi3")
    half = inspect_model(model).rotary_dim // 2
    long = np.linspace(1.0, 3.0, half)
    fs = factors_for(model, long=long, short=np.ones(half), target=8 * TINY_L)
    hf = clone_with_rope(
        model,
        "phi3",
        {"rope_type": "longrope", "long_factor": long.tolist(), "short_factor": [1.0] * half, "factor": 8.0},
        max_position_embeddings=8 * TINY_L,
    )
    assert math.isclose(hf.model.rotary_emb.attention_scaling, fs.resolved_attention_factor(), rel_tol=1e-12)
    install_factors(model, fs)
    ids = tiny_ids(2 * TINY_L)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


def _baseline(model, method, target, **options) -> FactorSet:
    info = inspect_model(model)
    fs = make_baseline(
        method,
        rope_theta=info.rope_theta,
        rotary_dim=info.rotary_dim,
        original_length=TINY_L,
        target_length=target,
        **options,
    )
    # transformers applies these scalings at every length; ours switch to short factors below L.
    return fs.with_(short_factor=fs.long_factor)


@pytest.mark.parametrize("family", NON_PHI3)
@pytest.mark.parametrize("length", [TINY_L // 2, 3 * TINY_L])
def test_pi_matches_transformers_linear(family, length):
    model = build_tiny(family)
    fs = _baseline(model, "pi", 4 * TINY_L)
    hf = clone_with_rope(model, family, {"rope_type": "linear", "factor": 4.0})
    install_factors(model, fs)
    ids = tiny_ids(length)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("family", NON_PHI3)
def test_yarn_matches_transformers_yarn(family):
    model = build_tiny(family)
    fs = _baseline(model, "yarn", 4 * TINY_L)
    assert fs.resolved_attention_factor() == pytest.approx(0.1 * math.log(4.0) + 1.0)
    hf = clone_with_rope(
        model,
        family,
        {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TINY_L},
        max_position_embeddings=4 * TINY_L,
    )
    assert hf.model.rotary_emb.attention_scaling == pytest.approx(fs.resolved_attention_factor(), rel=1e-12)
    install_factors(model, fs)
    ids = tiny_ids(3 * TINY_L)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("family", NON_PHI3)
def test_llama3_matches_transformers_llama3(family):
    model = build_tiny(family)
    fs = _baseline(model, "llama3", 8 * TINY_L, factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0)
    hf = clone_with_rope(
        model,
        family,
        {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": TINY_L,
        },
        max_position_embeddings=8 * TINY_L,
    )
    install_factors(model, fs)
    ids = tiny_ids(3 * TINY_L)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("family", ["llama", "qwen2", "gemma"])
def test_dynamic_ntk_matches_transformers_dynamic_at_that_length(family):
    """Dynamic NTK is length-dependent: our static factors for ℓ equal HF `dynamic` run at length ℓ."""
    model = build_tiny(family)
    n = 3 * TINY_L
    fs = _baseline(model, "dynamic-ntk", 4 * TINY_L, length=n, factor=4.0)
    hf = clone_with_rope(model, family, {"rope_type": "dynamic", "factor": 4.0})
    install_factors(model, fs)
    ids = tiny_ids(n)
    torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


# --------------------------------------------------------------------------- n̂ (start tokens)
@pytest.mark.parametrize("attention_factor", [1.0, 1.3])
def test_start_token_rows_keep_original_rotation(family, attention_factor):
    model = build_tiny(family)
    original = model.model.rotary_emb
    n_hat = 5
    fs = factors_for(model, start_tokens=n_hat, attention_factor=attention_factor)
    install_factors(model, fs)
    x = torch.zeros(1, 3 * TINY_L, 64)
    pos = torch.arange(3 * TINY_L)[None]
    cos, sin = model.model.rotary_emb(x, pos)
    cos0, sin0 = original(x, pos)
    assert cos.shape == cos0.shape and cos.dtype == cos0.dtype
    torch.testing.assert_close(cos[:, :n_hat], attention_factor * cos0[:, :n_hat], atol=1e-6, rtol=0)
    torch.testing.assert_close(sin[:, :n_hat], attention_factor * sin0[:, :n_hat], atol=1e-6, rtol=0)
    assert (cos[:, n_hat:] - attention_factor * cos0[:, n_hat:]).abs().max() > 1e-2


def test_start_tokens_logits_equal_unpatched_for_first_tokens(family):
    model = build_tiny(family)
    n_hat = 6
    ids = tiny_ids(3 * TINY_L)  # beyond L: long factors for p >= n̂
    ref = logits(model, ids)
    install_factors(model, factors_for(model, start_tokens=n_hat, attention_factor=1.0))
    out = logits(model, ids)
    torch.testing.assert_close(out[:, :n_hat], ref[:, :n_hat], atol=ATOL, rtol=RTOL)
    assert (out[:, n_hat:] - ref[:, n_hat:]).abs().max() > 100 * ATOL


def test_angles_match_numpy_reference_at_millions_of_positions():
    model = build_tiny("llama")
    fs = factors_for(model, start_tokens=4)
    patch = install_factors(model, fs)
    pos = torch.tensor([[0, 1, 3, 4, 5, TINY_L + 7, 1_000_003, 2_097_151]])
    got = patch.module.angles(pos).numpy()[0]
    want = rope_angles(pos.numpy()[0], inv_freq(TINY_THETA, 16), fs.long_factor, start_tokens=4)
    np.testing.assert_allclose(got, want, rtol=1e-14, atol=0)
    # and cos after the float32 cast is accurate to float32 resolution, not to ~0.1 rad
    cos, _ = patch.module(torch.zeros(1, pos.shape[1], 64), pos)
    m = fs.resolved_attention_factor()
    np.testing.assert_allclose(cos[0, :, :8].double().numpy(), m * np.cos(want), atol=1e-6)


# --------------------------------------------------------------------------- generate + KV cache
def _greedy(model, ids, n, use_cache):
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        min_new_tokens=n,
        do_sample=False,
        use_cache=use_cache,
        return_dict_in_generate=True,
        output_logits=True,
        pad_token_id=0,
    )
    return out.sequences, torch.stack(out.logits, 1)


@pytest.mark.parametrize("family", ["llama", "phi3", "gemma"])
def test_generate_with_cache_equals_recompute_across_L(family):
    """n̂ > 0 and generation crossing L; short == long so the cached keys stay valid."""
    model = build_tiny(family)
    long = np.linspace(1.0, 4.0, inspect_model(model).rotary_dim // 2)
    install_factors(model, factors_for(model, long=long, short=long, start_tokens=3))
    ids = tiny_ids(TINY_L - 3)
    seq_c, log_c = _greedy(model, ids, 8, use_cache=True)
    seq_n, log_n = _greedy(model, ids, 8, use_cache=False)
    assert seq_c.shape[1] == TINY_L + 5  # crossed L
    assert torch.equal(seq_c, seq_n)
    torch.testing.assert_close(log_c, log_n, atol=1e-4, rtol=1e-4)


def test_generate_crossing_L_matches_transformers_longrope():
    """Cache policy "keep": cached keys keep their short rotation, exactly like stock HF (the default
    policy re-prefills at the switch instead; see test_generation.py)."""
    model = build_tiny("llama")
    half = inspect_model(model).rotary_dim // 2
    long, short = np.linspace(1.0, 6.0, half), np.linspace(1.0, 1.3, half)
    install_factors(model, factors_for(model, long=long, short=short, attention_factor=1.1))
    hf = clone_with_rope(
        model,
        "llama",
        {
            "rope_type": "longrope",
            "long_factor": long.tolist(),
            "short_factor": short.tolist(),
            "original_max_position_embeddings": TINY_L,
            "factor": 4.0,
            "attention_factor": 1.1,
        },
        max_position_embeddings=4 * TINY_L,
    )
    current_patch(model).cache_policy = "keep"
    ids = tiny_ids(TINY_L - 2)
    seq, log = _greedy(model, ids, 6, use_cache=True)
    seq_hf, log_hf = _greedy(hf, ids, 6, use_cache=True)
    assert torch.equal(seq, seq_hf)
    torch.testing.assert_close(log, log_hf, atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- swap
def test_swapping_twice_equals_installing_anew():
    a, b, c = (factors_for(build_tiny("qwen2"), long=np.linspace(1, k, 8), start_tokens=k) for k in (2, 3, 5))
    model = build_tiny("qwen2")
    patch = install_factors(model, a)
    module, ptr = patch.module, patch.module.long_inv_freq.data_ptr()
    patch.swap(b)
    patch.swap(c)
    assert patch.module is module and module.long_inv_freq.data_ptr() == ptr  # no reallocation
    fresh = build_tiny("qwen2")
    install_factors(fresh, c)
    ids = tiny_ids(2 * TINY_L)
    assert torch.equal(logits(model, ids), logits(fresh, ids))


@pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing` is deprecated:FutureWarning")  # peft's own call
def test_a_peft_wrapped_model_is_patched_through_the_model_it_wraps():
    """Battery 16: install_factors(get_peft_model(m)) said 'model structure not recognised by this transformers
    version'; now the wrapper and the wrapped model share one patch, and the logits equal patch-then-wrap's."""
    from peft import LoraConfig, get_peft_model

    lora = LoraConfig(r=2, target_modules=["q_proj", "v_proj"], lora_dropout=0.0)
    first, then = build_tiny("llama"), build_tiny("llama")
    install_factors(first, factors_for(first))
    patched_then_wrapped = get_peft_model(first, lora)
    wrapped = get_peft_model(then, lora)
    patch = install_factors(wrapped, factors_for(then))
    assert current_patch(wrapped) is patch is current_patch(then) and patch.active
    ids = tiny_ids(3 * TINY_L)
    assert torch.equal(logits(wrapped, ids), logits(patched_then_wrapped, ids))


def test_a_bare_decoder_without_a_language_model_head_is_patched_and_restored():
    """Battery 16: install_factors(AutoModel's LlamaModel) raised AttributeError 'prepare_inputs_for_generation'
    (the generation hook), leaving the factors half installed."""
    causal, bare = build_tiny("llama"), build_tiny("llama").model
    install_factors(causal, factors_for(causal))
    patch = install_factors(bare, factors_for(causal))
    ids = tiny_ids(3 * TINY_L)
    with torch.no_grad():
        assert torch.equal(bare(ids).last_hidden_state, causal.model(ids).last_hidden_state)
    patch.restore()
    assert not patch.active and "prepare_inputs_for_generation" not in vars(bare)


def test_install_on_patched_model_reuses_the_patch():
    model = build_tiny("llama")
    p1 = install_factors(model, factors_for(model))
    p2 = install_factors(model, factors_for(model, start_tokens=2))
    assert p1 is p2 and p2.module.start_tokens == 2


def test_swap_wrong_size_is_user_error_and_keeps_factors():
    model = build_tiny("llama")
    fs = factors_for(model)
    patch = install_factors(model, fs)
    ids = tiny_ids(2 * TINY_L)
    before = logits(model, ids)
    with pytest.raises(UserError, match="rotary dim"):
        patch.swap(factors_for(model, long=np.ones(5)))
    assert torch.equal(logits(model, ids), before)


def test_other_rope_theta_is_user_error():
    model = build_tiny("llama")
    fs = factors_for(model).with_(rope_theta=500000.0)
    with pytest.raises(UserError, match="rope_theta"):
        install_factors(model, fs)


def test_partial_rotary_phi3_keeps_pass_through_channels():
    model = build_tiny("phi3")
    info = inspect_model(model)
    assert (info.head_dim, info.rotary_dim) == (16, 8)
    install_factors(model, factors_for(model))
    cos, _ = model.model.rotary_emb(torch.zeros(1, 4, 64), torch.arange(4)[None])
    assert cos.shape == (1, 4, 8)


def test_follows_device_and_keeps_float64_under_dtype_cast():
    model = build_tiny("llama")
    patch = install_factors(model, factors_for(model))
    model.to(torch.bfloat16)
    assert patch.module.long_inv_freq.dtype == torch.float64
    ids = tiny_ids(2 * TINY_L)
    out = logits(model, ids)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
    cos, sin = patch.module(torch.zeros(1, 3, 64, dtype=torch.bfloat16), torch.arange(3)[None])
    assert cos.dtype == torch.bfloat16 and sin.dtype == torch.bfloat16


def test_restore_after_a_dtype_cast_gives_the_model_an_unpatched_model_would_be(family):
    """The model's own rotary module, out of the tree while patched, missed model.to(torch.bfloat16): restore() put
    back a float32 inv_freq, and the "unmodified model again" gave logits 0.02 apart from the same model cast without
    a patch (battery 29a). It follows the cast now; the installed tables stay float64."""
    plain, patched = build_tiny(family), build_tiny(family)
    patch = install_factors(patched, factors_for(patched))
    plain.to(torch.bfloat16)
    patched.to(torch.bfloat16)
    assert patch.module.long_inv_freq.dtype == torch.float64
    patch.restore()
    ids = tiny_ids(2 * TINY_L)
    assert patched.model.rotary_emb.inv_freq.dtype == plain.model.rotary_emb.inv_freq.dtype
    assert torch.equal(logits(patched, ids), logits(plain, ids))


def test_install_factors_refuses_none_alike_on_a_patched_and_an_unpatched_model():
    """None restored a patched model's own RoPE without a word and was 'expected a FactorSet' on an unpatched one
    (battery 29a's open item): refused on both, naming restore(); the patched model keeps its factors."""
    model = build_tiny("llama")
    with pytest.raises(UserError, match=r"got None; .*restore\(\)"):
        install_factors(model, None)
    patch = install_factors(model, factors_for(model))
    with pytest.raises(UserError, match=r"got None; .*restore\(\)"):
        install_factors(model, None)
    assert current_patch(model) is patch and patch.factor_set is not None


def test_gpt2_is_refused_naming_supported_families():
    import transformers

    config = transformers.GPT2Config(n_layer=2, n_embd=64, n_head=4, vocab_size=128, n_positions=64)
    model = transformers.GPT2LMHeadModel(config)
    info = inspect_model(model)
    assert not info.supported
    with pytest.raises(UserError) as e:
        install_factors(model, FactorSet.identity(16, TINY_THETA, 64))
    msg = str(e.value)
    assert "\n" not in msg and "gpt2" in msg
    for name in ("llama", "mistral", "qwen2", "phi3", "gemma"):
        assert name in msg


def test_install_replaces_scaling_the_model_already_has():
    """A model that ships with rope scaling (here HF yarn) runs exactly our factors once patched."""
    plain = build_tiny("llama")
    scaled = clone_with_rope(
        plain, "llama", {"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": TINY_L},
        max_position_embeddings=4 * TINY_L,
    )
    info = inspect_model(scaled)
    assert info.rope_scaling["rope_type"] == "yarn" and info.original_max_position_embeddings == TINY_L
    fs = factors_for(plain, start_tokens=2)
    install_factors(plain, fs)
    install_factors(scaled, fs)
    ids = tiny_ids(3 * TINY_L)
    assert torch.equal(logits(scaled, ids), logits(plain, ids))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_patched_model_matches_cpu_and_generates():
    model = build_tiny("llama")
    long = np.linspace(1.0, 4.0, 8)
    fs = factors_for(model, long=long, short=long, start_tokens=3)  # short == long: cache stays valid
    patch = install_factors(model, fs)
    ids = tiny_ids(3 * TINY_L)
    want = logits(model, ids)
    model.to("cuda")
    assert patch.module.long_inv_freq.device.type == "cuda" and patch.module.long_inv_freq.dtype == torch.float64
    got = logits(model, ids.cuda()).cpu()
    torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)
    seq_c, _ = _greedy(model, ids[:, : TINY_L - 2].cuda(), 6, use_cache=True)
    seq_n, _ = _greedy(model, ids[:, : TINY_L - 2].cuda(), 6, use_cache=False)
    assert torch.equal(seq_c, seq_n)
    patch.restore()
    model.to("cpu")
    torch.testing.assert_close(logits(model, ids), logits(build_tiny("llama"), ids), atol=0, rtol=0)


def test_gemma_head_dim_larger_than_hidden_over_heads():
    """Gemma's layout (head_dim 256 ≠ hidden/heads in the real 7B): rotary dim follows head_dim."""
    model = build_tiny("gemma", head_dim=64)
    info = inspect_model(model)
    assert (info.head_dim, info.rotary_dim) == (64, 64)
    long, short = np.linspace(1.0, 6.0, 32), np.linspace(1.0, 1.2, 32)
    hf = clone_with_rope(
        model,
        "gemma",
        {"rope_type": "longrope", "long_factor": long.tolist(), "short_factor": short.tolist(),
         "original_max_position_embeddings": TINY_L, "factor": 4.0},
        max_position_embeddings=4 * TINY_L,
        head_dim=64,
    )
    install_factors(model, factors_for(model, long=long, short=short))
    for n in (TINY_L, 3 * TINY_L):
        ids = tiny_ids(n)
        torch.testing.assert_close(logits(model, ids), logits(hf, ids), atol=ATOL, rtol=RTOL)


def test_other_original_length_warns_once(caplog):
    model = build_tiny("llama")
    fs = factors_for(model).with_(original_max_position_embeddings=2 * TINY_L, max_position_embeddings=8 * TINY_L)
    with caplog.at_level("WARNING", logger="longrope.models.patch"):
        patch = install_factors(model, fs)
        for _ in range(3):
            patch.swap(fs)
    assert sum("differs from the model" in r.getMessage() for r in caplog.records) == 1
    # the factor set's L is the switch point: 2L tokens still use the short factors (ones)
    ids = tiny_ids(2 * TINY_L)
    patch.restore()
    ref = logits(model, ids)
    patch.swap(fs.with_(attention_factor=1.0))
    torch.testing.assert_close(logits(model, ids), ref, atol=ATOL, rtol=RTOL)


def test_a_model_on_the_meta_device_is_refused_in_one_line():
    """Battery 14b: installing on a model built on the meta device made meta tables; after to_empty() they held
    uninitialised memory and the model ran with it silently."""
    import transformers

    from tests.models.model_helpers import tiny_config

    with torch.device("meta"):
        model = transformers.AutoModelForCausalLM.from_config(tiny_config("llama"))
    with pytest.raises(UserError, match="meta device"):
        install_factors(model, factors_for(build_tiny("llama")))
    assert current_patch(model) is None


def test_generate_command_offers_exactly_the_engine_modes_and_cache_policies():
    """The generate command spelled the modes and cache policies out a second time (a policy added to the engine
    would have been refused by the CLI): its choices are the engine's tuples, and the engine refuses the rest alike."""
    import dataclasses

    from longrope.models import cache_switch, patch
    from longrope.tools import GenerateConfig

    choices = {f.name: f.metadata["choices"] for f in dataclasses.fields(GenerateConfig)}
    assert choices["mode"] is patch.MODES and choices["cache_policy"] is cache_switch.CACHE_POLICIES
    for check, good in ((patch.check_mode, patch.MODES), (patch.check_cache_policy, cache_switch.CACHE_POLICIES)):
        assert [check(v) for v in good] == list(good)
        for bad in ("Switch", ["long"], None):
            with pytest.raises(UserError, match="must be one of"):
                check(bad)
