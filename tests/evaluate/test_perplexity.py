"""evaluate_perplexity against a naive full-logits computation on tiny random models."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.evaluate import evaluate_perplexity
from longrope.evaluate.windows import document_windows
from tests.evaluate.eval_helpers import naive_nll, reinit, tiny_llama


def _docs(rng, lengths, vocab=97):
    return [rng.integers(3, vocab, size=n).astype(np.uint16) for n in lengths]


def test_truncate_matches_naive(llama, rng):
    docs = _docs(rng, [80, 64, 120])
    length = 50
    res = evaluate_perplexity(llama, docs, length, bos_id=1, chunk_size=7)
    tot, n = 0.0, 0
    for d, per in zip(docs, res.per_doc):
        seq = np.concatenate([[1], d[: length - 1]])
        s, k = naive_nll(llama, seq, 1)
        assert per.n_tokens == k == length - 1
        assert per.nll_sum == pytest.approx(s, rel=1e-5)
        tot, n = tot + s, n + k
    assert res.n_tokens == n
    assert res.ppl == pytest.approx(math.exp(tot / n), rel=1e-5)
    # equal token counts per doc: the paper's doc-mean fitness equals the token-weighted PPL
    assert res.ppl_doc_mean == pytest.approx(res.ppl, rel=1e-9)


def test_truncate_without_bos(llama, rng):
    docs = _docs(rng, [40])
    res = evaluate_perplexity(llama, docs, 40, bos_id=None)
    s, k = naive_nll(llama, docs[0][:40], 1)
    assert res.n_tokens == k == 39
    assert res.nll_sum == pytest.approx(s, rel=1e-5)


@pytest.mark.parametrize("n,length,stride", [(100, 32, 10), (95, 40, 40), (64, 64, 8), (200, 48, 17)])
def test_sliding_matches_naive_hf_recipe(llama, rng, n, length, stride):
    """Sliding windows against the Hugging Face recipe, written out independently here."""
    doc = _docs(rng, [n])[0]
    res = evaluate_perplexity(llama, [doc], length, bos_id=1, stride=stride, chunk_size=5)
    seq = np.concatenate([[1], doc]).astype(np.int64)
    tot, cnt, prev_end = 0.0, 0, 0
    for begin in range(0, len(seq), stride):
        end = min(begin + length, len(seq))
        trg_len = end - prev_end  # labels not scored by an earlier window
        win = seq[begin:end]
        start = max(len(win) - trg_len, 1)
        s, k = naive_nll(llama, win, start)
        tot, cnt, prev_end = tot + s, cnt + k, end
        if end == len(seq):
            break
    assert cnt == res.n_tokens
    if stride < length:
        assert cnt == len(seq) - 1  # every token but BOS scored exactly once
    else:  # disjoint windows: a window cannot score its own first token
        assert cnt == len(seq) - 1 - (math.ceil(len(seq) / stride) - 1)
    assert res.nll_sum == pytest.approx(tot, rel=1e-5)
    assert res.ppl == pytest.approx(math.exp(tot / cnt), rel=1e-5)


def test_sliding_uneven_last_window_is_shorter(rng):
    ws = document_windows(0, np.arange(3, 3 + 99), 40, bos_id=1, stride=25)  # 100 tokens with BOS
    assert [len(w.tokens) for w in ws] == [40, 40, 40, 25]
    assert [w.n_scored for w in ws] == [39, 25, 25, 10]
    assert sum(w.n_scored for w in ws) == 99


def test_token_weighting_on_unequal_documents(llama, rng):
    docs = _docs(rng, [60, 150])
    res = evaluate_perplexity(llama, docs, 32, bos_id=1, stride=16)
    a, b = res.per_doc
    assert (a.n_tokens, b.n_tokens) == (60, 150)
    weighted = (a.nll_sum + b.nll_sum) / (a.n_tokens + b.n_tokens)
    assert res.ppl == pytest.approx(math.exp(weighted), rel=1e-12)
    doc_mean = (a.mean_nll + b.mean_nll) / 2
    assert res.ppl_doc_mean == pytest.approx(math.exp(doc_mean), rel=1e-12)
    assert abs(weighted - doc_mean) > 1e-4  # the two differ here, so the test can tell them apart
    single = evaluate_perplexity(llama, docs[1:], 32, bos_id=1, stride=16)
    assert single.nll_sum == pytest.approx(b.nll_sum, rel=1e-9)


def test_batching_and_chunking_do_not_change_the_result(llama, rng):
    docs = _docs(rng, [70, 70, 90, 64])
    ref = evaluate_perplexity(llama, docs, 64, bos_id=1, chunk_size=1000)
    for bs, cs in [(3, 1), (4, 13), (2, 64)]:
        r = evaluate_perplexity(llama, docs, 64, bos_id=1, batch_size=bs, chunk_size=cs)
        assert r.nll_sum == pytest.approx(ref.nll_sum, rel=1e-5)
        for x, y in zip(r.per_doc, ref.per_doc):
            assert x.nll_sum == pytest.approx(y.nll_sum, rel=1e-5)


def test_deterministic(llama, rng):
    docs = _docs(rng, [70, 90])
    a = evaluate_perplexity(llama, docs, 64, bos_id=1)
    b = evaluate_perplexity(llama, docs, 64, bos_id=1)
    assert a.nll_sum == b.nll_sum


def test_final_logit_softcapping_applied(rng):
    from transformers import Gemma2Config, Gemma2ForCausalLM

    cfg = Gemma2Config(vocab_size=97, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, head_dim=16,
                       max_position_embeddings=256, final_logit_softcapping=5.0,
                       sliding_window=256, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    model = reinit(Gemma2ForCausalLM(cfg).eval(), seed=3)
    doc = _docs(rng, [60])[0]
    res = evaluate_perplexity(model, [doc], 48, bos_id=1, chunk_size=9)
    s, k = naive_nll(model, np.concatenate([[1], doc[:47]]), 1)
    assert res.nll_sum == pytest.approx(s, rel=1e-5)
    model.config.final_logit_softcapping = None  # without the cap the numbers must differ
    off = evaluate_perplexity(model, [doc], 48, bos_id=1)
    assert abs(off.nll_sum - s) > 1e-3 * abs(s)


def test_accepts_tensors_and_objects(llama, rng):
    class Doc:
        def __init__(self, t, i):
            self.tokens, self.doc_id = t, i

    d = _docs(rng, [50])[0]
    a = evaluate_perplexity(llama, [torch.as_tensor(d.astype(np.int64))], 40, bos_id=1)
    b = evaluate_perplexity(llama, [Doc(d, "book#3")], 40, bos_id=1)
    assert a.nll_sum == b.nll_sum and b.per_doc[0].doc_id == "book#3"


@pytest.mark.parametrize("kwargs,match", [
    (dict(length=0), "at least 2"),
    (dict(length=2.5), "positive integer"),
    (dict(length=500), "fewer than"),
    (dict(length=32, stride=0), "stride"),
    (dict(length=32, stride=40), "larger than the window"),
    # battery 9a: a cap below one window was raised to one window without a word (eval ppl --max-tokens 100 at 512)
    (dict(length=32, stride=16, max_tokens=20), "max_tokens 20 is below one window of 32 tokens"),
])
def test_bad_input_is_a_user_error(llama, rng, kwargs, match):
    with pytest.raises(UserError, match=match):
        evaluate_perplexity(llama, _docs(rng, [100]), bos_id=1, **kwargs)


def test_a_token_id_without_an_embedding_is_a_user_error(llama, rng):
    """The Python API took token ids the model has no embedding for (a BOS id of another tokenizer, -1,
    documents of a larger vocabulary) into the forward pass: an IndexError traceback (battery 7). Checked
    before any forward pass, naming what holds the id."""
    rows = llama.get_input_embeddings().num_embeddings
    docs = _docs(rng, [100])
    for bos in (rows, -1):
        with pytest.raises(UserError, match=f"bos_id holds token id {bos}, but the model has"):
            evaluate_perplexity(llama, docs, 32, bos_id=bos)
    bad = docs[0].copy()
    bad[20] = rows + 5
    with pytest.raises(UserError, match=f"document 0 holds token id {rows + 5}.*tokenize the documents"):
        evaluate_perplexity(llama, [bad], 32, bos_id=1)


def test_empty_docs(llama):
    with pytest.raises(UserError, match="docs is empty"):
        evaluate_perplexity(llama, [], 32, bos_id=1)


def test_default_chunk_keeps_block_small():
    from longrope.evaluate.lm import default_chunk_size

    m = tiny_llama(vocab=32000, hidden=16, layers=1)
    assert default_chunk_size(m) * 32000 <= 1 << 24


def test_suite_swaps_factor_sets_and_restores(rng):
    """ppl_suite installs once, swaps per set, and leaves the model's own RoPE in place."""
    from longrope.evaluate.suite import ppl_suite
    from longrope.models import current_patch
    from longrope.rope import make_baseline

    model = tiny_llama(max_pos=32)
    original = model.model.rotary_emb
    docs = _docs(rng, [80, 80])
    pi = make_baseline("pi", rope_theta=10000.0, rotary_dim=16, original_length=32, target_length=64)
    res = dict((name, r) for name, r in ppl_suite(model, docs, [("none", None), ("pi", pi)], [64], bos_id=1))
    assert model.model.rotary_emb is original and not current_patch(model).active
    plain = evaluate_perplexity(model, docs, 64, bos_id=1)
    assert res["none"].nll_sum == pytest.approx(plain.nll_sum, rel=1e-6)
    assert abs(res["pi"].nll_sum - plain.nll_sum) > 1e-3


def test_a_model_left_in_training_mode_is_evaluated_without_dropout_and_left_as_it_was():
    """Battery 16: right after a user's training loop (model.train(), dropout on) every call gave another
    perplexity, where evaluation is documented deterministic; now eval mode for the call, each module's own mode
    back afterwards."""
    model = tiny_llama()
    for layer in model.model.layers:
        layer.self_attn.attention_dropout = 0.5  # used in training mode only
    docs = [np.random.default_rng(0).integers(3, 97, 300)]
    model.eval()
    reference = evaluate_perplexity(model, docs, 128, bos_id=1).ppl
    model.train()
    model.model.layers[0].eval()  # a mixed state is kept as it was
    assert [evaluate_perplexity(model, docs, 128, bos_id=1).ppl for _ in range(2)] == [reference, reference]
    assert model.training and not model.model.layers[0].training and model.model.layers[1].training


def test_a_model_on_the_meta_device_is_refused_in_one_line():
    """battery 20b: evaluate_perplexity (or passkey_accuracy, a suite) of a model built on the meta device (no weights
    yet) was torch's "Tensor.item() cannot be called on meta tensors"; install_factors already refused it: one check
    (options.check_loaded_model) says it for every function that runs a model."""
    import pytest
    import torch
    import transformers

    from longrope.errors import UserError
    from longrope.evaluate import evaluate_perplexity
    from longrope.evaluate.suite import ppl_suite
    from tests.evaluate.eval_helpers import tiny_llama

    with torch.device("meta"):
        meta = transformers.AutoModelForCausalLM.from_config(tiny_llama().config)
    docs = [np.arange(3, 90)]
    for call in (lambda: evaluate_perplexity(meta, docs, 64, bos_id=1),
                 lambda: ppl_suite(meta, docs, [("none", None)], [64], bos_id=1)):
        with pytest.raises(UserError, match="weights are on the meta device"):
            call()


def test_window_helpers_check_their_lengths_in_one_line():
    """The window helpers check a length (and a cap, a count, a BOS id) by check_length's one rule: a text length
    was "'>' not supported" from check_stride or max_tokens_below, max_tokens='100' an arithmetic error on
    slicing, a BOS id past int64 numpy's OverflowError, windows_across(n='2') a TypeError (battery 21b)."""
    from longrope.evaluate.windows import check_stride, max_tokens_below, windows_across

    tokens = np.arange(2, 300)
    for call in (lambda: check_stride(16, "64"), lambda: max_tokens_below(100, None),
                 lambda: document_windows(0, tokens, 64, bos_id=1, stride=32, max_tokens="100"),
                 lambda: document_windows(0, tokens, 64, bos_id=1 << 70),
                 lambda: windows_across({}, 64, "2", split="heldout", seed=0)):
        with pytest.raises(UserError):
            call()


def test_a_mean_nll_past_a_floats_range_is_an_infinite_perplexity_not_an_overflow_error():
    """A model that overflows in float16 scored a finite mean NLL of ~5,700 nats: math.exp's OverflowError ended
    eval ppl with a traceback after every measurement (battery 25c). Every loss → perplexity goes through one
    conversion: inf past the range, NaN for NaN, exp below."""
    import math

    from longrope.evaluate.passkey import NeedleScore
    from longrope.evaluate.perplexity import PerplexityResult
    from longrope.evaluate.stats import perplexity

    r = PerplexityResult(length=256, mode="truncate", stride=None, bos=True, n_docs=2, n_tokens=510,
                         nll_sum=2_916_635.4, doc_mean_nll=5718.9)
    assert r.ppl == math.inf and r.ppl_doc_mean == math.inf
    assert r.to_dict()["ppl"] == math.inf
    needle = NeedleScore(n_prompts=10, exact=0, nll_sum=1e6, n_tokens=10)
    assert needle.ppl == math.inf
    assert perplexity(709.5) == math.inf and math.isnan(perplexity(math.nan)) and perplexity(0.0) == 1.0
    assert perplexity(2.0) == math.exp(2.0)


def test_a_numpy_stride_is_recorded_as_an_int_and_the_result_is_json():
    """Settings take numpy numbers (README), but evaluate_perplexity kept the stride as given: its result's to_dict()
    held an np.int64 that json.dumps refused (battery 29a)."""
    import json

    model = tiny_llama(max_pos=32)
    docs = [np.random.default_rng(k).integers(1, 97, 60) for k in range(2)]
    got = evaluate_perplexity(model, docs, np.int64(16), bos_id=np.int64(1), stride=np.int64(8))
    plain = evaluate_perplexity(model, docs, 16, bos_id=1, stride=8)
    assert type(got.stride) is int and type(got.length) is int
    assert json.loads(json.dumps(got.to_dict()))["stride"] == 8 and got.nll_sum == plain.nll_sum
