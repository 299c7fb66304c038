"""Generation across the short/long switch equals a from-scratch forward, for every family.

The tiny models have L = 32. Prompts of ~28 tokens and 10 new tokens cross L; every step's logits
are compared with a full forward of the same prefix (no cache), which applies the switch to the
whole sequence: short factors up to L tokens, long factors for every position beyond.

The default cache policy ("reprefill") is exact for every model. The "rerotate" policy repairs the
rotation of the cached keys only, which is exact for one-layer models (tested for every family,
checking the rotation layout, partial rotary, n̂, m and sliding windows) and for the first layer's
keys of deeper models; beyond that it is an approximation (see bench/bench_generate.py).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.models import current_patch, inspect_model, install_factors
from longrope.models.generation import generate, prepare_batch
from longrope.rope import FactorSet
from tests.models.model_helpers import TINY_L, build_tiny, tiny_ids

ATOL = 1e-4
RTOL = 1e-4


def factor_set(model, *, start_tokens=3, attention_factor=1.15) -> FactorSet:
    info = inspect_model(model)
    half = info.rotary_dim // 2
    return FactorSet(
        long_factor=np.linspace(1.0, 6.0, half),
        short_factor=np.linspace(1.0, 1.4, half),
        start_tokens=start_tokens,
        attention_factor=attention_factor,
        original_max_position_embeddings=TINY_L,
        max_position_embeddings=4 * TINY_L,
        rope_theta=info.rope_theta,
    )


def recompute_logits(model, ids, mask, steps, width):
    """Logits of each generated position from a fresh full forward of its prefix (no cache)."""
    out = []
    with torch.no_grad():
        for t in range(steps):
            sub_ids, sub_mask = ids[:, : width + t], mask[:, : width + t]
            pos = (sub_mask.cumsum(-1) - 1).masked_fill(sub_mask == 0, 0)
            out.append(model(sub_ids, attention_mask=sub_mask, position_ids=pos, use_cache=False).logits[:, -1])
    return torch.stack(out, dim=1)


def run_and_reference(model, prompts, steps=10, mode="switch"):
    res = generate(model, None, prompts, steps, mode, stop_at_eos=False, return_logits=True)
    ids, mask = prepare_batch(model, None, prompts)
    width = ids.shape[1]
    new = torch.tensor(res.new_tokens)
    full_ids = torch.cat([ids, new], dim=1)
    full_mask = torch.cat([mask, torch.ones_like(new)], dim=1)
    patch = current_patch(model)
    previous = patch.mode
    patch.mode = mode
    try:
        ref = recompute_logits(model, full_ids, full_mask, steps, width)
    finally:
        patch.mode = previous
    return res, ref


@pytest.mark.parametrize("start_tokens", [0, 3])
def test_crossing_generation_equals_recompute(family, start_tokens):
    model = build_tiny(family)
    install_factors(model, factor_set(model, start_tokens=start_tokens))
    prompt = tiny_ids(TINY_L - 4, seed=5)[0].tolist()
    res, ref = run_and_reference(model, prompt)
    assert (res.reprefills, res.rerotations) == (1, 0)  # crossed exactly once
    assert res.new_tokens[0] == ref.argmax(-1)[0].tolist()  # greedy tokens equal
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


def test_rerotation_is_exact_on_one_layer_models(family):
    model = build_tiny(family, num_hidden_layers=1)
    patch = install_factors(model, factor_set(model))
    patch.cache_policy = "rerotate"
    a = tiny_ids(TINY_L - 3, seed=6)[0].tolist()
    b = tiny_ids(TINY_L - 9, seed=7)[0].tolist()
    res, ref = run_and_reference(model, [a, b])
    assert (res.reprefills, res.rerotations) == (0, 1)
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


def test_rerotated_first_layer_keys_equal_a_long_forward():
    """On a deeper model the re-rotation gets layer 0 exactly; later layers saw short-factor context."""
    from transformers import DynamicCache

    model = build_tiny("gemma")
    patch = install_factors(model, factor_set(model))
    patch.cache_policy = "rerotate"
    ids = tiny_ids(TINY_L, seed=12)
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(ids, cache=cache, use_cache=True)  # short factors (32 tokens = L)
        model(tiny_ids(1, seed=13), cache=cache, use_cache=True)  # position 32: long, re-rotates
        ref = DynamicCache(config=model.config)
        model(torch.cat([ids, tiny_ids(1, seed=13)], 1), cache=ref, use_cache=True)
    assert patch.rerotations == 1
    torch.testing.assert_close(cache.layers[0].keys, ref.layers[0].keys, atol=1e-5, rtol=1e-5)
    assert (cache.layers[1].keys - ref.layers[1].keys).abs().max() > 1e-4  # not exact beyond layer 0


def test_left_padded_batch_crossing_equals_recompute(family):
    model = build_tiny(family)
    install_factors(model, factor_set(model))
    a = tiny_ids(TINY_L - 3, seed=6)[0].tolist()
    b = tiny_ids(TINY_L - 9, seed=7)[0].tolist()
    res, ref = run_and_reference(model, [a, b])
    assert res.reprefills == 1
    assert res.prompt_tokens == [a, b]
    for row in range(2):
        assert res.new_tokens[row] == ref.argmax(-1)[row].tolist()
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


def test_always_long_mode_equals_long_forward():
    model = build_tiny("qwen3")
    patch = install_factors(model, factor_set(model))
    res, ref = run_and_reference(model, tiny_ids(12, seed=8)[0].tolist(), steps=6, mode="long")
    assert res.reprefills == res.rerotations == 0 and patch.mode == "switch"  # mode restored after the call
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)
    # and it differs from the switching mode below L (where the short factors apply)
    short = generate(model, None, tiny_ids(12, seed=8)[0].tolist(), 6, stop_at_eos=False, return_logits=True)
    assert (short.logits - res.logits).abs().max() > 1e-2


def test_keep_policy_reproduces_the_stock_mismatch():
    """With the stock behaviour the cached short keys meet long queries: logits leave the reference."""
    model = build_tiny("llama")
    patch = install_factors(model, factor_set(model))
    patch.cache_policy = "keep"
    res, ref = run_and_reference(model, tiny_ids(TINY_L - 4, seed=5)[0].tolist())
    assert res.rerotations == res.reprefills == 0
    assert (res.logits[:, 4:] - ref[:, 4:]).abs().max() > 1e-2  # after the crossing
    torch.testing.assert_close(res.logits[:, :4], ref[:, :4], atol=ATOL, rtol=RTOL)  # before it
    patch.cache_policy = "reprefill"
    res, ref = run_and_reference(model, tiny_ids(TINY_L - 4, seed=5)[0].tolist())
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


def test_different_short_and_long_attention_factors():
    """m of the short rows differs from the long rows': the re-rotation rescales by their ratio."""
    model = build_tiny("phi3", num_hidden_layers=1)
    patch = install_factors(model, factor_set(model))
    patch.cache_policy = "rerotate"
    patch.module.short_attention_scaling = 0.9
    patch.module.long_attention_scaling = 1.3
    res, ref = run_and_reference(model, tiny_ids(TINY_L - 2, seed=9)[0].tolist(), steps=5)
    assert res.rerotations == 1
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


@pytest.mark.parametrize("policy", ["reprefill", "rerotate"])
@pytest.mark.parametrize("family", ["mistral", "gemma2"])
def test_sliding_window_caches_cross_exactly(family, policy):
    model = build_tiny(family, sliding_window=12, num_hidden_layers=1 if policy == "rerotate" else 2)
    patch = install_factors(model, factor_set(model))
    patch.cache_policy = policy
    res, ref = run_and_reference(model, tiny_ids(TINY_L - 3, seed=10)[0].tolist(), steps=6)
    assert res.rerotations + res.reprefills == 1
    torch.testing.assert_close(res.logits, ref, atol=ATOL, rtol=RTOL)


def test_phi3_switches_at_the_factor_sets_L():
    model = build_tiny("phi3")
    patch = install_factors(model, factor_set(model))
    seen = []
    handle = model.model.register_forward_pre_hook(
        lambda mod, args, kwargs: seen.append(kwargs["input_ids"].shape[1]), with_kwargs=True
    )
    generate(model, None, tiny_ids(TINY_L - 2, seed=11)[0].tolist(), 5, stop_at_eos=False)
    # prefill, two tokens, then one re-prefill of the whole sequence at position L, then one token
    assert seen == [TINY_L - 2, 1, 1, TINY_L + 1, 1]
    patch.cache_policy = "rerotate"
    seen.clear()
    generate(model, None, tiny_ids(TINY_L - 2, seed=11)[0].tolist(), 5, stop_at_eos=False)
    assert seen == [TINY_L - 2, 1, 1, 1, 1]  # no re-prefill at all
    patch.restore()
    assert "prepare_inputs_for_generation" not in vars(model)  # the class method is back
    handle.remove()


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_a_copied_or_pickled_patched_model_generates_through_its_own_switch(family):
    """Battery 14b: the generation wrapper was a closure over the original's switch, so a deep copy's generate()
    went through the original's switch (no re-prefill once the original was restored: the copy silently
    re-rotated, exact for the first layer only), and pickle / torch.save of a patched model failed."""
    import copy
    import io
    import pickle

    model = build_tiny(family)
    patch = install_factors(model, factor_set(model))
    prompt = tiny_ids(TINY_L - 4, seed=5)[0].tolist()
    expected = generate(model, None, prompt, 8, stop_at_eos=False, return_logits=True)
    twin = copy.deepcopy(model)
    buffer = io.BytesIO()
    torch.save(model, buffer)
    loaded = pickle.loads(pickle.dumps(model))
    patch.restore()  # the original runs unpatched from now on; the copies keep their factors
    for other in (twin, loaded, torch.load(io.BytesIO(buffer.getvalue()), weights_only=False)):
        res = generate(other, None, prompt, 8, stop_at_eos=False, return_logits=True)
        assert (res.reprefills, res.rerotations) == (1, 0)
        assert res.new_tokens == expected.new_tokens
        torch.testing.assert_close(res.logits, expected.logits, atol=ATOL, rtol=RTOL)
        current_patch(other).restore()
        assert "prepare_inputs_for_generation" not in vars(other)


def test_generate_errors_are_user_errors():
    model = build_tiny("llama")
    with pytest.raises(UserError, match="install_factors"):
        generate(model, None, [5, 6, 7], 3)
    install_factors(model, factor_set(model))
    with pytest.raises(UserError, match="mode"):
        generate(model, None, [5, 6, 7], 3, mode="sometimes")
    with pytest.raises(UserError, match="max_new_tokens"):
        generate(model, None, [5, 6, 7], 0)
    with pytest.raises(UserError, match="tokenizer"):
        generate(model, None, "hello", 3)
    with pytest.raises(UserError, match="left-padded"):
        generate(model, None, torch.tensor([[5, 6, 0]]), 3, attention_mask=torch.tensor([[1, 1, 0]]))


def test_token_id_prompts_of_every_kind_are_read_alike_or_refused_in_one_line():
    """battery 9a: a list prompt's attention_mask was ignored (the padding read as tokens), a mask of another shape
    a reshape traceback, float ids truncated (1.7 -> 1), numpy arrays refused, [["a"]] a ValueError."""
    import numpy as np

    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    masked = generate(model, None, [[9, 5, 6, 7]], 2, attention_mask=[[0, 1, 1, 1]])
    assert masked.prompt_tokens == [[5, 6, 7]] and masked.new_tokens == generate(model, None, [5, 6, 7], 2).new_tokens
    assert generate(model, None, np.array([[5, 6, 7]]), 2).new_tokens == masked.new_tokens
    for prompt, kw, match in (([5, 6, 7], {"attention_mask": [1, 1]}, r"attention_mask has shape \[1, 2\]"),
                              (torch.tensor([[5, 6, 7]]), {"attention_mask": [1, 1]}, "attention_mask has shape"),
                              ([[5, 6], [7]], {"attention_mask": [[1, 1], [1]]}, "ids of one width"),
                              ([[5.7, 6.2]], {}, "token ids must be integers, got 5.7"),
                              (torch.tensor([[5.0, 6.0]]), {}, "integers, got an array of float32"),
                              ([["a", "b"]], {}, "token ids must be integers, got 'a'"),
                              ("text", {"attention_mask": [1]}, "attention_mask goes with token ids"),
                              (np.array([], dtype=np.int64), {}, r"seq >= 1, got shape \[0\]")):
        with pytest.raises(UserError, match=match):
            generate(model, None if not isinstance(prompt, str) else object(), prompt, 2, **kw)


def test_a_prompt_of_bytes_or_empty_text_is_refused_as_the_cli_refuses_it():
    """generate() read b'\\xff\\xfe' as the token ids 255, 254 and generated from an empty text prompt (the BOS
    alone), which longrope generate refuses (battery 19)."""
    from longrope.models import load_model
    from longrope.rope import make_baseline

    model, tok = load_model("tiny")
    install_factors(model, make_baseline("yarn", rope_theta=1e4, rotary_dim=64, original_length=256, target_length=512))
    for prompt, match in ((b"\xff\xfe", "bytes"), ([b"ab"], "bytes"), (bytearray(b"a"), "bytes"),
                          ("", "the prompt is empty"), (["a", ""], "the prompt is empty")):
        with pytest.raises(UserError, match=match):
            generate(model, tok, prompt, 2)


def test_a_setting_generate_would_ignore_is_refused_as_the_cli_refuses_it():
    """generate(temperature=0.5) or top_p without do_sample decoded greedily, and cache_policy with mode 'long' (which
    never switches) was taken, without a word; longrope generate refuses both (battery 19)."""
    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    for kw, match in (({"temperature": 0.5}, "temperature applies to sampling"), ({"top_p": 0.9}, "top_p applies"),
                      ({"mode": "long", "cache_policy": "rerotate"}, "cache_policy applies to mode 'switch'")):
        with pytest.raises(UserError, match=match):
            generate(model, None, [5, 6, 7], 2, **kw)
    assert generate(model, None, [5, 6, 7], 2, do_sample=True, temperature=0.5).new_tokens


def test_the_model_folder_s_decoding_settings_change_nothing_and_print_nothing(capfd):
    """battery 9a: a model shipped with generation_config.json's repetition_penalty / no_repeat_ngram_size changed
    greedy generation and passkey answers without a word; temperature / top_p / max_length printed transformers'
    notes on every call. The file keeps its token ids only (models.generation.plain_decoding)."""
    from longrope.evaluate.passkey import greedy_generate

    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    prompt = [5, 6, 7, 5, 6, 7, 5, 6]
    plain = generate(model, None, prompt, 12, stop_at_eos=False).new_tokens
    greedy = greedy_generate(model, prompt, 12, pad_token_id=0)
    model.generation_config.update(repetition_penalty=50.0, no_repeat_ngram_size=1, temperature=0.3, top_p=0.5,
                                   max_length=4)
    capfd.readouterr()  # (the update itself may note the sampling flags: that is this test's doing)
    assert generate(model, None, prompt, 12, stop_at_eos=False).new_tokens == plain
    assert greedy_generate(model, prompt, 12, pad_token_id=0) == greedy
    assert capfd.readouterr().err == ""
    assert model.generation_config.repetition_penalty == 50.0  # the model's own config is put back


def test_a_prompt_token_the_model_has_no_embedding_for_is_one_line():
    """A GGUF longrope exported from the tiny model reads back with '<|endoftext|>' one past its last embedding
    (transformers' GGUF tokenizer adds it): that text in a prompt was an IndexError traceback (battery 6)."""
    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    rows = model.get_input_embeddings().num_embeddings
    for prompt in ([5, rows, 7], torch.tensor([[5, rows]]), [5, -1]):
        with pytest.raises(UserError, match=f"the prompt holds token id {-1 if prompt == [5, -1] else rows}"):
            generate(model, None, prompt, 2)


def test_a_temperature_too_low_to_compute_is_one_line():
    """generate --sample --temperature 1e-300 was a 34-line RuntimeError traceback ('probability tensor contains
    either inf, nan or element < 0'): the scaled logits overflow float32 (battery 7). The lowest temperature that
    is refused is checked before the model runs; the lowest one allowed still samples."""
    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    with pytest.raises(UserError, match="below 1e-06.*leave sampling off"):
        generate(model, None, [5, 6, 7], 2, do_sample=True, temperature=1e-300)
    out = generate(model, None, [5, 6, 7], 2, do_sample=True, temperature=1e-6, stop_at_eos=False)
    assert len(out.new_tokens[0]) == 2


def test_sampling_is_seeded_and_leaves_global_rng_alone():
    model = build_tiny("gemma")
    install_factors(model, factor_set(model))
    state = torch.random.get_rng_state()
    a = generate(model, None, [5, 6, 7], 8, do_sample=True, seed=3, stop_at_eos=False)
    b = generate(model, None, [5, 6, 7], 8, do_sample=True, seed=3, stop_at_eos=False)
    assert a.new_tokens == b.new_tokens
    assert torch.equal(state, torch.random.get_rng_state())


def test_device_side_switch_gives_the_same_tables(monkeypatch):
    """On accelerators the short/long decision stays on the device (no sync); same cos/sin as on the host."""
    from longrope.models.patch import LongRopeRotaryEmbedding

    model = build_tiny("phi3")
    patch = install_factors(model, factor_set(model))
    patch.module.short_attention_scaling = 0.9  # distinct m per regime: the device path picks it too
    x = torch.zeros(1, 1, 4)
    cases = [torch.arange(TINY_L)[None], torch.arange(TINY_L + 1)[None], torch.tensor([[TINY_L + 5]])]
    host = [patch.module(x, pos) for pos in cases]
    monkeypatch.setattr(LongRopeRotaryEmbedding, "_host_switch_devices", ())
    for pos, (cos, sin) in zip(cases, host):
        cos_d, sin_d = patch.module(x, pos)
        assert torch.equal(cos, cos_d) and torch.equal(sin, sin_d)


def test_a_tokenizer_or_mask_generate_cannot_take_is_one_line():
    """Battery 23c: a tokenizer given by name was "'str' object is not callable" (with ids: after the whole generation,
    at the decoding); a mask of 2s "1 is not in list", one of text "too many dimensions 'str'"."""
    model = build_tiny("llama")
    install_factors(model, factor_set(model))
    ids = torch.tensor([[5, 6, 7]])
    for tokenizer, prompt in (("tiny", "hello"), ("tiny", [5, 6, 7])):
        with pytest.raises(UserError, match="generate takes a loaded tokenizer"):
            generate(model, tokenizer, prompt, 2)
    for mask in (torch.full((1, 3), 2), [["a", "b", "c"]], torch.tensor([[0.5, 1.0, 1.0]])):
        with pytest.raises(UserError, match="attention_mask must hold only 0 .* and 1"):
            generate(model, None, ids, 2, attention_mask=mask)
    for mask in (torch.tensor([[0, 1, 1]]), np.array([[False, True, True]]), [[0.0, 1.0, 1.0]]):
        assert generate(model, None, ids, 2, attention_mask=mask).prompt_tokens == [[6, 7]]


def test_a_model_s_own_dynamic_rope_measures_a_length_alike_whatever_was_measured_before():
    """transformers' dynamic RoPE keeps the base of the longest sequence it saw for every shorter one above L: the
    'none' row of such a model at 2L depended on whether 8L was measured first (eval ppl --lengths 8192,2048)."""
    from longrope.evaluate.suite import ppl_suite
    from tests.models.model_helpers import clone_with_rope

    base = build_tiny("llama")
    docs = [np.random.default_rng(k).integers(3, 128, size=8 * TINY_L) for k in range(2)]
    fresh = clone_with_rope(base, "llama", {"rope_type": "dynamic", "factor": 4.0})
    used = clone_with_rope(base, "llama", {"rope_type": "dynamic", "factor": 4.0})
    want = ppl_suite(fresh, docs, [("none", None)], [2 * TINY_L], bos_id=1)[0][1].nll_sum
    got = [r.nll_sum for _, r in ppl_suite(used, docs, [("none", None)], [8 * TINY_L, 2 * TINY_L], bos_id=1)]
    assert got[1] == want


def test_a_token_id_past_int64_is_one_line_like_any_id_without_an_embedding():
    """prepare_batch([[1, 2, 10**30]]) built its tensor before checking the ids: torch's "Overflow when unpacking long
    long" traceback, where an id of 1000 is one line naming it (battery 29a)."""
    model = build_tiny("llama")
    for prompts in ([[1, 2, 10**30]], [1, 2, -(10**30)], [[1, 2, 10**5000]]):
        with pytest.raises(UserError, match="^the prompt holds token id .*give token ids of this model's tokenizer"):
            prepare_batch(model, None, prompts)
    with pytest.raises(UserError, match="holds token id 1000"):
        prepare_batch(model, None, [[1, 2, 1000]])


def test_a_refused_prompt_leaves_the_model_with_the_factors_it_had():
    """generate(..., factor_set=B) installed B before it read the prompt and the cache policy: a refused prompt or
    policy left a patched model running B and an unpatched one patched (battery 29a). They are checked first."""
    from longrope.rope import make_baseline

    patched, plain = build_tiny("llama"), build_tiny("llama")
    info = inspect_model(patched)
    common = dict(rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=TINY_L)
    a = make_baseline("pi", target_length=2 * TINY_L, **common)
    b = make_baseline("yarn", target_length=8 * TINY_L, **common)
    install_factors(patched, a)
    for model in (patched, plain):
        with pytest.raises(UserError, match="every prompt needs at least one token"):
            generate(model, None, [[]], 3, factor_set=b)
        with pytest.raises(UserError, match="^cache policy must be one of reprefill, rerotate, keep, got 'bogus'"):
            generate(model, None, [[1, 2]], 3, factor_set=b, cache_policy="bogus")
    assert current_patch(patched).factor_set is a and current_patch(plain) is None


def test_own_longrope_length_reads_a_transformers_4_config_as_its_rotary_does():
    """Reading only rope_parameters (transformers 5), a 4.x config (rope_scaling and a top-level L) gave no switch, and
    passkey both scored an answer crossing L on short-factor keys under 4.x (fourth review of battery 29)."""
    from types import SimpleNamespace

    from longrope.models.generation import own_longrope_length

    v4 = SimpleNamespace(rope_scaling={"type": "longrope"}, original_max_position_embeddings=4096,
                         max_position_embeddings=131072)
    assert own_longrope_length(SimpleNamespace(rope_type="longrope", config=v4)) == 4096.0
    v4_no_L = SimpleNamespace(rope_scaling={"type": "longrope"}, max_position_embeddings=256)
    assert own_longrope_length(SimpleNamespace(rope_type="longrope", config=v4_no_L)) == 256.0
    v5 = SimpleNamespace(rope_parameters={"rope_type": "longrope", "original_max_position_embeddings": 32.0})
    assert own_longrope_length(SimpleNamespace(rope_type="longrope", config=v5)) == 32.0
    assert own_longrope_length(SimpleNamespace(rope_type="default", config=v5)) is None
