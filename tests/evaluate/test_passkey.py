"""Passkey prompts (exact token counts), generation, and the teacher-forced needle score."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from longrope.errors import UserError
from longrope.evaluate import passkey as pk
from tests.evaluate.eval_helpers import make_tokenizer, tiny_llama


@pytest.fixture(scope="module")
def tok():
    return make_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return tiny_llama(vocab=len(tok), max_pos=512)


@pytest.mark.parametrize("length", [120, 257, 500])
@pytest.mark.parametrize("depth", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("bos", [True, False])
@pytest.mark.parametrize("with_answer", [False, True])
def test_prompt_has_exact_length_and_one_needle(tok, length, depth, bos, with_answer):
    key = 48213
    p = pk.build_passkey_prompt(tok, length, key, depth, bos_id=tok.bos_token_id if bos else None,
                                with_answer=with_answer)
    assert len(p.input_ids) == length
    assert (p.input_ids[0] == tok.bos_token_id) == bos
    assert (p.input_ids[1:] != tok.bos_token_id).all()
    text = tok.decode(p.input_ids.tolist(), skip_special_tokens=True)
    needle = pk.NEEDLE.format(key=key)
    assert text.count(needle) == 1
    # the key occurs only inside the needle (twice, as the standard needle says it twice) + answer
    assert text.count(str(key)) == 2 + with_answer
    assert text.startswith(pk.INSTRUCTION)
    assert text.rstrip().endswith(pk.QUESTION + (pk.ANSWER.format(key=key) if with_answer else ""))
    # the filler spans hold exactly the filler: everything but BOS, instruction, needle, question and answer
    sep = pk.piece_joiner(tok)
    n = {name: len(tok(t, add_special_tokens=False)["input_ids"])
         for name, t in (("instr", pk.INSTRUCTION), ("needle", sep + needle), ("question", sep + pk.QUESTION))}
    (a0, b0), (a1, b1) = p.filler_spans
    assert (a0, b0) == (bos + n["instr"], p.needle_start)
    assert (a1, b1) == (p.needle_start + n["needle"], length - p.answer_len - n["question"])
    if with_answer:
        assert tok.decode(p.answer_ids.tolist()) == pk.ANSWER.format(key=key)


def test_depth_moves_the_needle(tok):
    starts = [pk.build_passkey_prompt(tok, 300, 11111, d, bos_id=1).needle_start for d in (0, 0.25, 0.5, 1)]
    assert starts == sorted(starts) and starts[0] < starts[-1]
    instr = len(tok(pk.INSTRUCTION, add_special_tokens=False)["input_ids"])
    assert starts[0] == 1 + instr


def test_haystack_filler(tok):
    hay = np.arange(3, 300)
    p = pk.build_passkey_prompt(tok, 200, 22222, 0.5, bos_id=1, haystack=hay)
    assert len(p.input_ids) == 200
    with pytest.raises(UserError, match="haystack"):
        pk.build_passkey_prompt(tok, 200, 22222, 0.5, bos_id=1, haystack=hay[:20])


def test_too_short_and_bad_args(tok):
    with pytest.raises(UserError, match="too short"):
        pk.build_passkey_prompt(tok, 20, 12345, 0.5, bos_id=1)
    with pytest.raises(UserError, match="depth"):
        pk.build_passkey_prompt(tok, 200, 12345, 1.5, bos_id=1)
    with pytest.raises(UserError, match="5-digit"):
        pk.build_passkey_prompt(tok, 200, 123, 0.5, bos_id=1)


def test_a_seed_outside_the_flags_range_is_a_user_error(model, tok):
    """passkey_accuracy(seed=-1) was numpy's 'expected non-negative integer' ValueError traceback and seed=1.5
    drew the keys of seed 1 (battery 7): refused as --seed is, before any prompt is built."""
    for seed in (-1, 1.5, 1 << 32):
        with pytest.raises(UserError, match="seed must be an integer in"):
            pk.passkey_accuracy(model, tok, [200], depths=[0.5], trials=1, seed=seed, bos_id=1)
        with pytest.raises(UserError, match="seed must be an integer in"):
            pk.needle_prompts(tok, 200, 1, seed=seed, bos_id=1)
    assert len(pk.needle_prompts(tok, 200, 1, seed=np.int64(3), bos_id=1)) == 1


def test_joiner_and_first_integer(tok):
    assert pk.piece_joiner(tok) == " "
    assert pk.first_integer(" 12345. Remember") == 12345
    assert pk.first_integer("key is 0042 or 7") == 42
    assert pk.first_integer("none") is None


def test_keys_are_seeded_five_digit():
    keys = {pk.passkey_key(0, 1024, d, t) for d in range(5) for t in range(20)}
    assert all(10000 <= k <= 99999 for k in keys) and len(keys) > 90
    assert pk.passkey_key(3, 1024, 1, 2) == pk.passkey_key(3, 1024, 1, 2)
    assert pk.passkey_key(3, 1024, 1, 2) != pk.passkey_key(4, 1024, 1, 2)


def test_generate_uses_cache_and_matches_uncached_greedy(model, tok):
    p = pk.build_passkey_prompt(tok, 150, 33333, 0.5, bos_id=1)
    model.generation_config.eos_token_id = None  # let it run the full number of steps
    try:
        got = pk.greedy_generate(model, p.input_ids, 6, pad_token_id=0)
    finally:
        model.generation_config.eos_token_id = 2
    ids = torch.as_tensor(p.input_ids)[None]
    want = []
    with torch.no_grad():
        for _ in range(6):
            nxt = int(model(input_ids=ids).logits[0, -1].argmax())
            want.append(nxt)
            ids = torch.cat([ids, torch.tensor([[nxt]])], dim=1)
    assert got == want


def test_needle_score_matches_full_logits(model, tok):
    prompts = [pk.build_passkey_prompt(tok, n, pk.passkey_key(0, n, 0, 0), 0.5, bos_id=1, with_answer=True)
               for n in (100, 180)]
    s = pk.needle_score(model, prompts, chunk_size=2)
    tot, cnt, exact = 0.0, 0, 0
    for p in prompts:
        ids = torch.as_tensor(p.input_ids)[None]
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=ids).logits[0].double(), -1)
        a = p.answer_len
        rows = logp[-a - 1 : -1]
        lab = ids[0, -a:]
        tot += float(-rows.gather(1, lab[:, None]).sum())
        cnt += a
        exact += bool(torch.equal(rows.argmax(-1), lab))
    assert s.n_tokens == cnt and s.exact == exact
    assert s.nll_sum == pytest.approx(tot, rel=1e-5)
    assert s.mean_nll == pytest.approx(tot / cnt, rel=1e-5)


def test_needle_score_refuses_a_bad_chunk_size_or_token_id_before_any_forward(model, tok):
    """battery 9a: chunk_size=-3 ran no chunk and scored the never-written NLL buffer (exact 0, NLL 1e-44); a BOS
    id past the embeddings was an IndexError traceback."""
    prompts = pk.needle_prompts(tok, 100, 1, seed=0, bos_id=1)
    for bad in (0, -3, 2.5):
        with pytest.raises(UserError, match="chunk_size must be a positive integer"):
            pk.needle_score(model, prompts, chunk_size=bad)
    rows = model.get_input_embeddings().num_embeddings
    with pytest.raises(UserError, match=f"needle prompt 0 holds token id {rows}"):
        pk.needle_score(model, pk.needle_prompts(tok, 100, 1, seed=0, bos_id=rows))
    with pytest.raises(UserError, match="takes the prompts needle_prompts built"):
        pk.needle_score(model, [[1, 2, 3]])


def test_haystacks_of_other_ids_or_types_are_refused_before_any_forward(model, tok):
    """battery 9a: passkey_accuracy with a haystack holding -1 (or an id past the embeddings) in generate mode was an
    IndexError traceback, float ids were truncated, text a ValueError."""
    rows = model.get_input_embeddings().num_embeddings
    for hay, match in ((np.full(300, -1), "haystack 0 holds token id -1"),
                       (np.full(300, rows), f"haystack 0 holds token id {rows}"),
                       (np.full(300, 5.5), "a haystack must be a 1-D array of token ids"),
                       ("some text", "a haystack must be a 1-D array of token ids")):
        with pytest.raises(UserError, match=match):
            pk.passkey_accuracy(model, tok, [120], depths=[0.5], trials=1, bos_id=1, haystacks=[hay], mode="generate")


def test_accuracy_grid_scores_the_first_integer(model, tok, monkeypatch):
    """With a generator that answers the key (or a wrong one), accuracy is 1 (or 0) per cell."""
    res = pk.passkey_accuracy(model, tok, [120, 160], depths=[0.0, 1.0], trials=2, seed=5, bos_id=1)
    assert len(res.trials) == 8 and [c["trials"] for c in res.cells()] == [2, 2, 2, 2]

    def answer(right):
        def fake(model, input_ids, max_new_tokens, *, pad_token_id, stop=None, cache=None):
            text = tok.decode(list(input_ids))
            key = int(text.split("The pass key is ")[1][:5])
            return tok(f" {key if right else key + 1}. Remember", add_special_tokens=False)["input_ids"]
        return fake

    monkeypatch.setattr(pk, "greedy_generate", answer(True))
    good = pk.passkey_accuracy(model, tok, [120, 160], depths=[0.0, 1.0], trials=2, seed=5, bos_id=1)
    assert good.accuracy == 1.0 and all(c["accuracy"] == 1.0 for c in good.cells())
    assert [t.key for t in good.trials] == [t.key for t in res.trials]  # same seeded keys
    monkeypatch.setattr(pk, "greedy_generate", answer(False))
    assert pk.passkey_accuracy(model, tok, [120], depths=[0.5], trials=3, seed=5, bos_id=1).accuracy == 0.0


def test_needle_mode_grid(model, tok):
    res = pk.passkey_accuracy(model, tok, [120], depths=[0.0, 0.5], trials=2, seed=1, bos_id=1, mode="needle")
    cells = res.cells()
    assert len(cells) == 2 and all(np.isfinite(c["answer_nll"]) for c in cells)


def test_needle_prompts_for_a_fitness(model, tok):
    hay = [np.arange(5, 400) % 300, np.arange(7, 400) % 300]
    ps = pk.needle_prompts(tok, 160, 4, seed=2, bos_id=1, haystacks=hay)
    again = pk.needle_prompts(tok, 160, 4, seed=2, bos_id=1, haystacks=hay)
    assert [p.key for p in ps] == [p.key for p in again] and len({p.key for p in ps}) == 4
    assert all(len(p.input_ids) == 160 and p.answer_len > 0 for p in ps)
    # the needle sits inside the document's own tokens
    p = ps[1]
    start = 1 + len(tok(pk.INSTRUCTION, add_special_tokens=False)["input_ids"])
    assert np.array_equal(p.input_ids[start : p.needle_start], hay[1][: p.needle_start - start])
    s = pk.needle_score(model, ps)
    assert s.n_prompts == 4 and s.n_tokens == sum(p.answer_len for p in ps)


def _separately(model, tok, lengths, kw):
    """Mode both the two-forward way: greedy on each generate prompt, needle_score on it + the answer."""
    gen = pk.passkey_accuracy(model, tok, lengths, mode="generate", **kw)
    joiner = pk.piece_joiner(tok)
    scores = []
    for t in gen.trials:
        p = pk.build_passkey_prompt(tok, t.length, t.key, t.depth, bos_id=kw["bos_id"], joiner=joiner)
        forced = pk.answer_prompt(tok, p)
        assert np.array_equal(forced.input_ids[: t.length], p.input_ids) and forced.answer_len > 0
        scores.append(pk.needle_score(model, [forced]))
    return gen, scores


def _assert_same(both, gen, scores):
    assert [(t.key, t.depth, t.correct, t.output) for t in both.trials] == \
        [(t.key, t.depth, t.correct, t.output) for t in gen.trials]
    assert [t.answer_nll for t in both.trials] == pytest.approx([s.mean_nll for s in scores], rel=1e-5)
    assert [t.forced_correct for t in both.trials] == [s.exact == 1 for s in scores]


class _PromptForwards:
    """Counts decoder calls that feed more than ``threshold`` tokens (forwards over a whole prompt)."""

    def __init__(self, model, threshold):
        from longrope.evaluate.lm import decoder_body

        self.calls = []

        def count(module, args, kwargs):
            ids = kwargs.get("input_ids", args[0] if args else None)
            if ids is not None and ids.shape[1] > threshold:
                self.calls.append(int(ids.shape[1]))

        self.handle = decoder_body(model).register_forward_pre_hook(count, with_kwargs=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def test_both_mode_is_greedy_and_teacher_forced_on_one_prompt(model, tok):
    """Mode both: the greedy verdict of generate mode and the teacher-forced score of the answer appended to
    the same prompt, key by key, from one forward over each prompt; a summary with the interval and the NLL."""
    kw = {"depths": [0.0, 1.0], "trials": 2, "seed": 5, "bos_id": tok.bos_token_id}
    with _PromptForwards(model, 100) as seen:
        both = pk.passkey_accuracy(model, tok, [160], mode="both", **kw)
    assert seen.calls == [159] * 4  # one prefill per key (the last prompt token goes with the answer)
    gen, scores = _separately(model, tok, [160], kw)
    _assert_same(both, gen, scores)
    s = both.summary()
    assert s["keys"] == 4 and s["correct"] == sum(t.correct for t in both.trials)
    assert s["ci95"][0] <= s["accuracy"] <= s["ci95"][1]
    assert s["answer_nll"] == pytest.approx(np.mean([x.mean_nll for x in scores]), rel=1e-5)
    assert "answer_nll" not in gen.summary() and gen.answer_nlls == []
    cells = both.cells()
    assert all("answer_nll" in c and "forced_correct" in c for c in cells)
    # the answer is scored after the whole generate prompt, not inside a shorter one as in needle mode
    needle = pk.passkey_accuracy(model, tok, [160], mode="needle", **kw)
    assert [t.answer_nll for t in both.trials] != pytest.approx([t.answer_nll for t in needle.trials])


def test_both_mode_is_exact_across_the_short_long_switch(tok, monkeypatch):
    """With a LongRoPE patch (short factors up to L = 180 tokens, long beyond): prompts below L, within an
    answer of L (prompt short, prompt + answer long: forwarded separately) and past L equal the two-forward
    way; below and past L there is one forward over each prompt."""
    from longrope.evaluate import prefix
    from longrope.models import current_patch, inspect_model, install_factors
    from longrope.rope import FactorSet

    model = tiny_llama(vocab=len(tok), max_pos=512, seed=3)
    half = inspect_model(model).rotary_dim // 2
    install_factors(model, FactorSet(long_factor=np.linspace(1.0, 6.0, half), short_factor=np.linspace(1.0, 1.4, half),
                                     start_tokens=2, attention_factor=1.1, original_max_position_embeddings=180,
                                     max_position_embeddings=720, rope_theta=inspect_model(model).rope_theta))
    assert current_patch(model).mode == "switch"
    kw = {"depths": [0.5], "trials": 2, "seed": 7, "bos_id": tok.bos_token_id}
    for length, forwards in ((150, [149] * 2), (179, None), (240, [239] * 2)):
        with _PromptForwards(model, 100) as seen:
            both = pk.passkey_accuracy(model, tok, [length], mode="both", **kw)
        if forwards is not None:
            assert seen.calls == forwards, length
        else:  # per key: the prompt + answer from scratch, then generate()'s prefill (and its re-prefill at L)
            forced = [len(pk.answer_prompt(tok, pk.build_passkey_prompt(tok, length, t.key, t.depth, bos_id=1)
                                           ).input_ids) for t in both.trials]
            assert seen.calls[0::3] == forced and seen.calls[1::3] == [length] * 2 and len(seen.calls) == 6
        gen, scores = _separately(model, tok, [length], kw)
        _assert_same(both, gen, scores)
    # the separate forwards matter there: a short-factor cache is not the prefix of a long forward
    monkeypatch.setattr(prefix, "single_prefill_exact", lambda *a: True)
    shared = pk.passkey_accuracy(model, tok, [179], mode="both", **kw)
    gen, scores = _separately(model, tok, [179], kw)
    assert [t.answer_nll for t in shared.trials] != pytest.approx([s.mean_nll for s in scores], rel=1e-5)


def test_ask_both_falls_back_where_the_cache_cannot_be_cropped(model, tok, monkeypatch):
    """Without a croppable cache (e.g. sliding-window layers) the two forwards run separately, same numbers."""
    from longrope.evaluate import prefix

    p = pk.build_passkey_prompt(tok, 140, 51515, 0.3, bos_id=1)
    one = pk.ask_both(model, tok, p, pad_token_id=0)
    monkeypatch.setattr(prefix, "prefill", lambda model, ids: None)
    with _PromptForwards(model, 100) as seen:
        two = pk.ask_both(model, tok, p, pad_token_id=0)
    assert len(seen.calls) == 2
    assert one[:2] == two[:2] and one[3] == two[3] and one[2] == pytest.approx(two[2], rel=1e-5)


class _IdsTokenizer:
    """Enough of a tokenizer for ask_both on a vocab-128 model: the answer " K." is ids 5 6 7."""

    eos_token_id = 2

    def __call__(self, text, add_special_tokens=False):
        return {"input_ids": [5, 6, 7]}

    def decode(self, ids, skip_special_tokens=True):
        return " ".join(map(str, ids))


def test_ask_both_equals_two_forwards_for_every_family(tiny_model, family):
    """Every family (L = 32, short and long factors): a prompt below L, one whose answer crosses L and one past
    L give the greedy answer and the answer NLL of the two separate forwards (Gemma 2's sliding-window cache
    takes the separate forwards itself)."""
    from longrope.models import inspect_model, install_factors
    from longrope.rope import FactorSet

    info = inspect_model(tiny_model)
    half = info.rotary_dim // 2
    install_factors(tiny_model, FactorSet(long_factor=np.linspace(1.0, 6.0, half), short_factor=np.linspace(1.0, 1.4, half),
                                          start_tokens=2, attention_factor=1.1, original_max_position_embeddings=32,
                                          max_position_embeddings=128, rope_theta=info.rope_theta))
    tok = _IdsTokenizer()
    for n in (12, 31, 42):
        p = pk.PasskeyPrompt(np.random.default_rng(n).integers(3, 120, n), 12345, 0.5, 1, 0)
        text, correct, nll, exact = pk.ask_both(tiny_model, tok, p, pad_token_id=0)
        assert (text, correct) == pk.generate_answer(tiny_model, tok, p.input_ids, p.key, pad_token_id=0), (family, n)
        s = pk.needle_score(tiny_model, [pk.answer_prompt(tok, p)])
        assert nll == pytest.approx(s.mean_nll, rel=1e-5) and exact == (s.exact == 1), (family, n)


def test_the_evaluation_api_names_an_argument_of_the_wrong_kind():
    """A model's name for the model, None for the tokenizer, one length for the list of lengths, a path for the
    shard folder: each was a Python error from deep inside ("'str' object has no attribute
    'get_input_embeddings'", "'NoneType' object is not callable", "'int' object is not iterable", "'str' object has
    no attribute 'names'", battery 18). Each is one UserError naming the function and what it takes."""
    from longrope.data import sample_documents
    from longrope.evaluate import build_passkey_prompt, evaluate_perplexity, needle_prompts, needle_score
    from longrope.evaluate import passkey_accuracy as accuracy

    class Model(torch.nn.Module):
        config = None

    class Tokenizer:
        def get_vocab(self):
            return {}

    model, tokenizer = Model(), Tokenizer()
    for call, said in ((lambda: evaluate_perplexity("tiny", [[1, 2, 3]], 2, bos_id=None), "loaded transformers model"),
                       (lambda: evaluate_perplexity(model, None, 2, bos_id=None), "docs must be a list"),
                       (lambda: accuracy(model, None, [256], bos_id=None), "loaded tokenizer"),
                       (lambda: accuracy(model, tokenizer, 256, bos_id=None), "lengths must be a list"),
                       (lambda: build_passkey_prompt("tiny", 256, 12345, 0.5, bos_id=None), "loaded tokenizer"),
                       (lambda: needle_prompts(None, 256, 1, seed=0, bos_id=None), "loaded tokenizer"),
                       (lambda: needle_score("tiny", []), "loaded transformers model"),
                       (lambda: sample_documents("shards", 64, 1, seed=0), "TokenCorpus.open")):
        with pytest.raises(UserError, match=said):
            call()


def test_a_list_of_token_arrays_given_as_one_array_or_a_generator_is_refused(model, tok):
    """battery 20b: haystacks=tokens (one array) was numpy's "truth value of an array is ambiguous", haystacks=[] the
    synthetic filler without a word, needle_score over a generator scored nothing (a NeedleScore of 0 prompts) and
    over one prompt was "'PasskeyPrompt' object is not iterable", docs=tokens named its first token "document 0"."""
    from longrope.evaluate import evaluate_perplexity

    hay = np.arange(3, 300)
    prompts = pk.needle_prompts(tok, 120, 2, seed=0, bos_id=1)
    for call, said in ((lambda: pk.passkey_accuracy(model, tok, [120], bos_id=1, haystacks=hay), "one array of token"),
                       (lambda: pk.passkey_accuracy(model, tok, [120], bos_id=1, haystacks=[]), "haystacks is empty"),
                       (lambda: pk.needle_prompts(tok, 120, 2, seed=0, bos_id=1, haystacks=hay), "one array of token"),
                       (lambda: pk.needle_score(model, (p for p in prompts)), "prompts must be a list"),
                       (lambda: pk.needle_score(model, prompts[0]), "prompts must be a list"),
                       (lambda: evaluate_perplexity(model, torch.from_numpy(hay), 64, bos_id=1), "docs is one array")):
        with pytest.raises(UserError, match=said):
            call()


@pytest.mark.parametrize("mode", ["generate", "needle", "both"])
def test_every_prompt_is_checked_before_the_first_forward(tok, mode, monkeypatch):
    """battery 20b: a haystack long enough for the shortest length but not the longest was refused after the shorter
    lengths were measured, and a tokenizer with more tokens than the model has embeddings was an IndexError from
    torch's embedding in generate and both modes."""
    forwards = []
    small = tiny_llama(vocab=len(tok) // 2, max_pos=512)
    monkeypatch.setattr(pk, "needle_score", lambda *a, **k: forwards.append(1))
    monkeypatch.setattr(pk, "ask_both", lambda *a, **k: forwards.append(1))
    monkeypatch.setattr(pk, "generate_answer", lambda *a, **k: forwards.append(1))
    with pytest.raises(UserError, match="the passkey prompt of length 120 holds token id .* embeddings"):
        pk.passkey_accuracy(small, tok, [120], depths=[0.5], trials=1, bos_id=1, mode=mode)
    model = tiny_llama(vocab=len(tok), max_pos=512)
    with pytest.raises(UserError, match="prompt of length 300 needs .* give longer haystacks"):
        pk.passkey_accuracy(model, tok, [120, 300], depths=[0.5], trials=1, bos_id=1, mode=mode,
                            haystacks=[np.arange(3, 150)])
    assert forwards == []


def test_prefill_and_score_continuation_check_their_ids_before_the_cache_moves(llama):
    """prefill / score_continuation take integer tensors of ids the model has, checked before a forward changes the
    cache: a list, a float tensor, an empty answer or an id past the embeddings were TypeErrors, RuntimeErrors or
    IndexErrors deep in torch; called outside no_grad they kept a graph and warned 'Converting a tensor with
    requires_grad=True to a scalar' (battery 21b)."""
    import warnings

    from longrope.evaluate import prefix

    rows = llama.get_input_embeddings().num_embeddings
    ids = torch.arange(3, 30)[None]
    with pytest.raises(UserError):
        prefix.prefill(llama, [3, 4, 5])
    cache = prefix.prefill(llama, ids)
    for last, answer in ((torch.tensor([5]), torch.zeros(0, dtype=torch.long)), ([5], torch.tensor([7, 8])),
                         (torch.tensor([5]), torch.tensor([7.0, 8.0])), (torch.tensor([5]), torch.tensor([7, rows])),
                         (torch.tensor([5, 6]), torch.tensor([7, 8]))):
        with pytest.raises(UserError):
            prefix.score_continuation(llama, cache, last, answer)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        exact, nll = prefix.score_continuation(llama, cache, torch.tensor([5]), torch.tensor([7, 8]))
    again = prefix.score_continuation(llama, cache, torch.tensor([5]), torch.tensor([7, 8]))
    assert again == (exact, nll) and nll > 0  # the cache was cropped back each time


def test_ask_both_on_a_model_s_own_dynamic_rope_scores_the_answer_as_a_forward_from_scratch_does():
    """A model with transformers' dynamic scaling changes its base with every length past L: the answer was scored
    on a cache of the prompt's base (claimed exact) and differed from needle mode's forward from scratch."""
    from tests.models.model_helpers import build_tiny, clone_with_rope

    model = clone_with_rope(build_tiny("llama"), "llama", {"rope_type": "dynamic", "factor": 8.0})
    tok = _IdsTokenizer()
    for n in (20, 60):  # within L = 32, and past it
        p = pk.PasskeyPrompt(np.random.default_rng(n).integers(3, 120, n), 12345, 0.5, 1, 0)
        _, _, nll, exact = pk.ask_both(model, tok, p, pad_token_id=0)
        s = pk.needle_score(model, [pk.answer_prompt(tok, p)])
        assert nll == pytest.approx(s.mean_nll, rel=1e-5) and exact == (s.exact == 1), n


@pytest.mark.parametrize("written_L", ["int", "float"])
def test_ask_both_on_a_model_s_own_longrope_scaling_scores_the_answer_as_a_forward_from_scratch_does(written_L):
    """A model whose config carries longrope scaling (an export loaded as it is) uses its long factors for every
    position once a forward passes L: an answer crossing L was scored on a cache of the prompt's short-factor keys
    (claimed exact), 1.16 nats against 0.01 from scratch on the embedded model's export at 256 (battery 30a). The
    same with L written 32.0, which transformers switches at too (review of battery 30a)."""
    from tests.models.model_helpers import TINY_L, build_tiny, clone_with_rope

    base = build_tiny("llama")
    half = base.model.rotary_emb.inv_freq.shape[0]
    L = TINY_L if written_L == "int" else float(TINY_L)
    scaling = {"rope_type": "longrope", "rope_theta": 10000.0, "original_max_position_embeddings": L,
               "short_factor": [1.0] * half, "long_factor": list(np.linspace(1.0, 8.0, half))}
    model = clone_with_rope(base, "llama", scaling, max_position_embeddings=8 * TINY_L)
    tok = _IdsTokenizer()
    for n in (TINY_L - 10, TINY_L - 1, TINY_L, 3 * TINY_L):  # within L, the answer crossing L, past L
        p = pk.PasskeyPrompt(np.random.default_rng(n).integers(3, 120, n), 12345, 0.5, 1, 0)
        _, _, nll, exact = pk.ask_both(model, tok, p, pad_token_id=0)
        s = pk.needle_score(model, [pk.answer_prompt(tok, p)])
        assert nll == pytest.approx(s.mean_nll, rel=1e-5) and exact == (s.exact == 1), n
