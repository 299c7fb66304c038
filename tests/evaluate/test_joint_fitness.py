"""The joint fitness (search/objective.py): document perplexity and the answer loss of a planted key from
one forward per window, checked against a plain full-logits computation; its parts through the archive."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from longrope.evaluate import passkey as pk
from longrope.search.archive import Archive
from longrope.search.objective import (
    DEFAULT_CONSTRAINT_WEIGHT,
    DEFAULT_RETRIEVAL_WEIGHT,
    CandidateMapper,
    build_objective,
    check_constrained,
    check_fitness,
    named_parts,
    yarn_reference,
)
from longrope.search.space import Genome
from tests.evaluate.eval_helpers import make_tokenizer, tiny_llama

LENGTH = 256


@pytest.fixture(scope="module")
def setup():
    tok = make_tokenizer()
    model = tiny_llama(vocab=len(tok), max_pos=128)
    rng = np.random.default_rng(0)
    docs = [SimpleNamespace(tokens=rng.integers(5, len(tok), size=400), doc_id=f"d{i}") for i in range(3)]
    mapper = CandidateMapper("long", 10000.0, 128, LENGTH)
    return tok, model, docs, mapper


def _reference(model, prompt):
    """Per-position NLL from the model's own full logits (what the chunked code must reproduce)."""
    ids = torch.from_numpy(prompt.input_ids)[None]
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits[0, :-1].double(), dim=-1)
    return -logp.gather(1, ids[0, 1:, None])[:, 0]


def test_one_forward_gives_document_nll_and_answer_nll(setup):
    tok, model, docs, mapper = setup
    w = 0.5
    obj = build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="joint", seed=3,
                          retrieval_weight=w)
    lam = np.linspace(1.0, 2.0, 8)
    rows = obj(lam, 0, [0, 2])
    assert rows.shape == (2, 7)
    for row, d in zip(rows, [0, 2]):
        p = obj.prompts[d]
        nll = _reference(model, p)  # the patch is installed: the same factors as the objective's forward
        doc = sum(float(nll[a - 1:b - 1].sum()) for a, b in p.filler_spans)
        n_doc = sum(b - a for a, b in p.filler_spans)
        ans = float(nll[-p.answer_len:].sum())
        combined, n, doc_nll, n2, ans_nll, n_ans, exact = row
        assert (n, n2, n_ans) == (n_doc, n_doc, p.answer_len)
        assert doc_nll == pytest.approx(doc, rel=1e-4) and ans_nll == pytest.approx(ans, rel=1e-4)
        assert combined == pytest.approx(doc_nll + w * n_doc * ans_nll / n_ans, rel=1e-12)
        assert exact in (0.0, 1.0)
        # the key is planted in the window's own document, which is the filler, answer " K." at the end
        assert tok.decode(p.answer_ids.tolist()) == pk.ANSWER.format(key=p.key)
        np.testing.assert_array_equal(p.input_ids[p.filler_spans[0][0]:p.filler_spans[0][1]],
                                      docs[d].tokens[:p.filler_spans[0][1] - p.filler_spans[0][0]])
    # depths spread over the windows
    assert [p.depth for p in obj.prompts] == pytest.approx([1 / 6, 3 / 6, 5 / 6])
    obj.patch.restore()


def test_weight_zero_is_the_document_perplexity_and_weights_are_checked(setup):
    tok, model, docs, mapper = setup
    obj = build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="joint", seed=3,
                          retrieval_weight=0.0)
    rows = obj(np.ones(8), 0, [1])
    assert rows[0, 0] == rows[0, 2]
    obj.patch.restore()
    assert check_fitness("joint", None) == DEFAULT_RETRIEVAL_WEIGHT and check_fitness("ppl", None) is None
    for bad in (-0.1, 101.0, True, "1"):
        with pytest.raises(ValueError):
            check_fitness("joint", bad)
    with pytest.raises(ValueError, match="joint and constrained fitnesses only"):
        check_fitness("needle", 0.3)
    assert check_fitness("constrained", None) == DEFAULT_CONSTRAINT_WEIGHT


def test_the_constrained_fitness_counts_answer_loss_only_above_yarn_s_on_the_same_window(setup):
    """Perplexity subject to retrieval: YaRN itself (the reference) scores its document NLL alone; a candidate
    pays ``weight`` per nat of mean answer NLL above YaRN's on each window, nothing for being below it."""
    tok, model, docs, mapper = setup
    w = 2.0
    obj = build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="constrained", seed=3,
                          retrieval_weight=w)
    lam, m = yarn_reference(mapper, model)
    assert m == pytest.approx(0.1 * np.log(LENGTH / 128) + 1)
    yarn = obj(lam, 0, [0, 1, 2], m)
    np.testing.assert_allclose(obj.bound, yarn[:, 4] / yarn[:, 5])
    np.testing.assert_array_equal(yarn[:, 0], yarn[:, 2])  # no excess over itself
    other = obj(np.linspace(1.0, 2.0, 8), 0, [0, 1, 2], 1.0)
    excess = np.maximum(0.0, other[:, 4] / other[:, 5] - obj.bound)
    np.testing.assert_allclose(other[:, 0], other[:, 2] + w * other[:, 3] * excess)
    joint = build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="joint", seed=3,
                            retrieval_weight=w)
    np.testing.assert_allclose(joint(np.linspace(1.0, 2.0, 8), 0, [0, 1, 2], 1.0)[:, 2:], other[:, 2:])
    joint.patch.restore()
    obj.patch.restore()
    with pytest.raises(ValueError, match="extension searches only"):
        check_constrained("constrained", "short")
    check_constrained("joint", "short")


def test_the_constrained_fitness_keeps_yarn_s_reference_for_a_resume_and_measures_a_bad_one_again(setup, tmp_path,
                                                                                                   monkeypatch):
    """The reference (YaRN's answer NLL per window: one forward each, minutes at 16k) is written once and read
    back by the next start with the same windows; a damaged, edited or foreign file is measured afresh."""
    import json

    from longrope.search.objective import JointObjective

    tok, model, docs, mapper = setup
    cache = tmp_path / "yarn_reference.json"
    first = build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="constrained", seed=3,
                            reference_file=cache)
    first.patch.restore()
    kept = json.loads(cache.read_text())
    np.testing.assert_array_equal(kept["answer_nll"], first.bound)
    calls = []
    real_call = JointObjective.__call__

    def counting(self, *args, **kwargs):
        calls.append(1)
        return real_call(self, *args, **kwargs)

    monkeypatch.setattr(JointObjective, "__call__", counting)

    def bound(seed=3, n=3):
        obj = build_objective(model, tok, mapper, docs[:n], LENGTH, tok.bos_token_id, fitness="constrained",
                              seed=seed, reference_file=cache)
        obj.patch.restore()
        return obj.bound

    np.testing.assert_array_equal(bound(), first.bound)  # read back: no forward
    assert calls == []
    kept["answer_nll"][1] = 0.0  # edited by hand: the seal shows it
    cache.write_text(json.dumps(kept))
    np.testing.assert_array_equal(bound(), first.bound)
    assert len(calls) == 1 and json.loads(cache.read_text())["answer_nll"] == list(first.bound)
    other = bound(seed=4)  # other keys planted: another reference, measured and kept in its place
    assert len(calls) == 2 and json.loads(cache.read_text())["answer_nll"] == list(other)
    assert len(bound(seed=4, n=2)) == 2 and len(calls) == 3  # fewer windows: measured again
    cache.write_text("{not json")
    np.testing.assert_array_equal(bound(), first.bound)
    assert len(calls) == 4


def test_parts_travel_through_the_archive_and_name_themselves():
    arc = Archive(2)
    g = Genome((100, 120))
    arc.add(g, [0, 1], np.array([[10.0, 100, 9.0, 100, 2.0, 4, 1.0], [12.0, 100, 11.0, 100, 2.0, 4, 0.0]]))
    assert arc.fitness(g) == pytest.approx(22.0 / 200)  # the first two columns only
    back = Archive.from_json(2, arc.to_json())
    np.testing.assert_allclose(back.parts(g), [20.0, 200, 4.0, 8, 1.0])
    got = named_parts("joint", back.parts(g), 2)
    assert got["doc_ppl"] == pytest.approx(np.exp(20.0 / 200)) and got["answer_nll"] == pytest.approx(0.5)
    assert got["answer_exact"] == 1 and got["keys"] == 2
    # checkpoints written before parts existed still load (two columns), and report none
    old = Archive.from_json(2, [[g.to_json(), {"0": [1.0, 10], "1": [2.0, 10]}]])
    assert old.fitness(g) == pytest.approx(0.15) and old.parts(g) is None and named_parts("joint", None, 2) == {}


def test_windows_across_shares_out_and_interleaves(monkeypatch):
    """Windows from several domains: the remainder goes to the first domains, a short domain gives what it has,
    and the order alternates between the domains."""
    from longrope.evaluate import windows as w

    have = {"books": [f"b{i}" for i in range(9)], "maths": ["m0"], "code": [f"c{i}" for i in range(9)]}
    asked = {}

    def fake(corpus, length, n, *, split, seed, windows_per_doc):
        asked[corpus] = (n, split, seed, windows_per_doc)
        return have[corpus][:n]

    monkeypatch.setattr(w, "select_windows", fake)
    got, counts = w.windows_across({"books": "books", "maths": "maths", "code": "code"}, 256, 8, split="search",
                                   seed=4)
    assert {k: v[0] for k, v in asked.items()} == {"books": 3, "maths": 3, "code": 2}
    assert all(v[1:] == ("search", 4, None) for v in asked.values())
    assert counts == {"books": 3, "maths": 1, "code": 2}
    assert got == ["b0", "m0", "c0", "b1", "c1", "b2"]


def test_a_reference_answer_loss_that_is_not_finite_is_refused_not_a_constraint_that_vanishes(setup, monkeypatch):
    """Battery 27b's open item: with YaRN's answer NLL NaN on a window (a 16-bit model that overflows), the excess
    max(0, x - NaN) was 0 for every candidate: the constraint vanished there without a word."""
    from longrope.errors import UserError
    from longrope.search.objective import JointObjective

    tok, model, docs, mapper = setup
    real_call = JointObjective.__call__

    def overflowing(self, *args, **kwargs):
        rows = real_call(self, *args, **kwargs)
        rows[1, 4] = np.nan
        return rows

    monkeypatch.setattr(JointObjective, "__call__", overflowing)
    with pytest.raises(UserError, match=r"reference \(YaRN\) has an answer loss on window 1 that is not finite .*"
                                        r"try float32"):
        build_objective(model, tok, mapper, docs, LENGTH, tok.bos_token_id, fitness="constrained", seed=3)
    from longrope.models.patch import current_patch

    assert not current_patch(model).active  # the caller's model left as it came (unpatched)
