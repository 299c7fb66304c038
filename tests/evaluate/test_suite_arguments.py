"""A suite's factor sets and lengths are checked before the first measurement (battery 20b)."""

from __future__ import annotations

import numpy as np
import pytest

from longrope.errors import UserError
from longrope.evaluate.passkey import PasskeyResult, PasskeyTrial
from longrope.evaluate.suite import compare_at_length, ppl_suite, write_passkey_outputs
from longrope.rope import FactorSet


def _pi(model, factor: float = 2.0, rope_theta: float = 10000.0):
    half = model.config.hidden_size // model.config.num_attention_heads // 2
    L = model.config.max_position_embeddings
    return FactorSet(long_factor=[factor] * half, original_max_position_embeddings=L, max_position_embeddings=4 * L,
                     rope_theta=rope_theta)


def test_suite_sets_and_lengths_are_checked_before_any_measurement(llama, tmp_path):
    docs = [np.arange(3, 60) for _ in range(2)]
    pi, other = _pi(llama), _pi(llama, rope_theta=500000.0)
    measured = []
    log = measured.append
    bad = [
        ({"none": None, "pi": pi, "x": other}, [16], "factor set 'x'"),  # another model's set, after two good ones
        ([pi], [16], "must be a (name, FactorSet or None) pair"),
        ([], [16], "sets is empty"),
        ([("pi", pi), ("pi", None)], [16], "given twice"),
        ([("", pi)], [16], "non-empty string"),
        ([("none", None)], 16, "lengths must be a list"),
        ([("none", None)], [], "lengths is empty"),
        ([("none", None)], [16, "32"], "length must be"),
    ]
    for sets, lengths, words in bad:
        with pytest.raises(UserError, match=words.replace("(", r"\(").replace(")", r"\)")):
            ppl_suite(llama, docs, sets, lengths, bos_id=1, log=log)
    assert measured == []  # nothing ran before the refusal
    with pytest.raises(UserError, match="log must be a function"):
        ppl_suite(llama, docs, [("none", None)], [16], bos_id=1, log="print")
    # a mapping is the pairs it holds, as compare_at_length takes them
    assert [n for n, _ in ppl_suite(llama, docs, {"none": None, "pi": pi}, [16], bos_id=1)] == ["none", "pi"]
    with pytest.raises(UserError, match="subject 'searched' is none of the sets' names"):
        compare_at_length(llama, docs, 16, {"none": None, "pi": pi}, bos_id=1)
    # names that differ only in characters a file name cannot hold get one heatmap each
    result = PasskeyResult("generate", trials=[PasskeyTrial(64, 0.5, 0, 12345, True)])
    paths = write_passkey_outputs(tmp_path, [("a b", result), ("a_b", result)], {})
    assert paths["png:a b"] != paths["png:a_b"] and paths["png:a b"].exists() and paths["png:a_b"].exists()


def test_a_length_given_twice_is_refused_before_any_measurement(llama, tmp_path, monkeypatch):
    """passkey_accuracy([128, 128]) measured every key twice and counted it as two trials (an interval too narrow);
    ppl_suite(..., [64, 64]) measured both, then failed at its plot (battery 25c). One check of a list of lengths."""
    import longrope.evaluate.passkey as passkey
    from longrope.evaluate import passkey_accuracy
    from longrope.evaluate.suite import passkey_suite

    docs = [np.arange(3, 60) for _ in range(2)]
    measured = []
    with pytest.raises(UserError, match="^lengths gives 16 twice; give each length once$"):
        ppl_suite(llama, docs, [("none", None)], [16, 32, 16], bos_id=1, log=measured.append)
    assert measured == []
    monkeypatch.setattr(passkey, "ask_both", lambda *a, **k: pytest.fail("a key was asked"))
    tok = object()
    for call in (lambda: passkey_accuracy(llama, tok, [128, 128], bos_id=1, trials=1, depths=[0.5]),
                 lambda: passkey_suite(llama, tok, [("none", None)], [128, 128], bos_id=1, trials=1, depths=[0.5])):
        with pytest.raises(UserError, match="^lengths gives 128 twice"):
            call()


def test_the_best_baseline_of_a_held_out_comparison_is_never_one_whose_perplexity_overflowed():
    """A float16 set that overflows (NaN perplexity) listed first was taken as the best baseline (NaN compares false
    both ways) and the search's held-out ratio came out NaN beside finite baselines."""
    import torch

    from tests.models.model_helpers import TINY_L, build_tiny

    model = build_tiny("llama")
    with torch.no_grad():  # large q/k: an attention temperature of 10 overflows in float16
        for name, p in model.named_parameters():
            if "q_proj" in name or "k_proj" in name:
                p.mul_(60)
    model = model.half()
    docs = [np.random.default_rng(0).integers(3, 128, size=200) for _ in range(2)]

    def pi(m):
        return FactorSet(long_factor=np.full(8, 4.0), attention_factor=m, original_max_position_embeddings=TINY_L,
                         max_position_embeddings=4 * TINY_L, rope_theta=10000.0)

    out = compare_at_length(model, docs, 4 * TINY_L, {"searched": pi(1.0), "hot": pi(10.0), "pi": pi(1.0)}, bos_id=1)
    assert out["ppl"]["hot"] != out["ppl"]["hot"]  # it did overflow
    assert out["best_baseline"] == "pi" and out["ratio_to_best_baseline"] == 1.0


def test_a_dynamic_ntk_set_is_measured_at_each_length_as_transformers_dynamic_scaling_measures_it():
    """A dynamic NTK file (made for its target length) was applied as it was at every length of a suite: at 2x of
    an 8x file it was NTK with ratio 57 where dynamic NTK's is 9 (transformers recomputes it for every length)."""
    import torch

    from longrope.rope import make_baseline
    from tests.models.model_helpers import TINY_L, build_tiny, clone_with_rope

    model = build_tiny("llama")
    native = clone_with_rope(model, "llama", {"rope_type": "dynamic", "factor": 8.0})
    dyn = make_baseline("dynamic-ntk", rope_theta=10000.0, rotary_dim=16, original_length=TINY_L,
                        target_length=8 * TINY_L)
    docs = [np.random.default_rng(k).integers(3, 128, size=8 * TINY_L) for k in range(2)]
    lengths = [2 * TINY_L, 4 * TINY_L, 8 * TINY_L]
    ours = {r.length: r.mean_nll for _, r in ppl_suite(model, docs, [("dynamic-ntk", dyn)], lengths, bos_id=1)}
    for n in lengths:
        nll = 0.0
        for d in docs:
            ids = torch.tensor([[1, *d[: n - 1].tolist()]])
            with torch.no_grad():
                logits = native(ids).logits[0].double()
            nll += float(torch.nn.functional.cross_entropy(logits[:-1], ids[0, 1:], reduction="sum"))
        assert ours[n] == pytest.approx(nll / (2 * (n - 1)), rel=1e-5), n


def test_a_dynamic_ntk_set_s_pass_keys_are_asked_with_the_set_of_each_length():
    from longrope.evaluate import passkey_accuracy
    from longrope.evaluate.suite import passkey_suite
    from longrope.models import install_factors
    from longrope.rope import make_baseline
    from tests.evaluate.eval_helpers import make_tokenizer, tiny_llama

    model, tok = tiny_llama(vocab=400, max_pos=64), make_tokenizer(400)
    dyn = make_baseline("dynamic-ntk", rope_theta=10000.0, rotary_dim=16, original_length=64, target_length=512)
    kw = dict(bos_id=1, trials=2, depths=[0.5], mode="needle")
    (_, got), = passkey_suite(model, tok, [("dynamic-ntk", dyn)], [128, 256], **kw)
    patch = install_factors(model, dyn)
    want = []
    for n in (128, 256):
        patch.swap(make_baseline("dynamic-ntk", rope_theta=10000.0, rotary_dim=16, original_length=64,
                                 target_length=512, length=n))
        want += passkey_accuracy(model, tok, [n], **kw).answer_nlls
    assert got.answer_nlls == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("lengths, needle", [([128, 128], "lengths gives 128 twice"), ([], "lengths is empty")])
def test_a_dynamic_ntk_set_s_pass_key_lengths_are_checked_as_every_set_s(lengths, needle):
    """The review of battery 27b: measured one length at a time, a dynamic NTK set's lengths skipped the check of the
    whole list: [128, 128] was measured and counted twice, [] an IndexError."""
    from longrope.errors import UserError
    from longrope.evaluate.suite import passkey_suite
    from longrope.rope import make_baseline
    from tests.evaluate.eval_helpers import make_tokenizer, tiny_llama

    model, tok = tiny_llama(vocab=400, max_pos=64), make_tokenizer(400)
    dyn = make_baseline("dynamic-ntk", rope_theta=10000.0, rotary_dim=16, original_length=64, target_length=512)
    with pytest.raises(UserError, match=needle):
        passkey_suite(model, tok, [("dynamic-ntk", dyn)], lengths, bos_id=1, trials=1, depths=[0.5], mode="needle")
