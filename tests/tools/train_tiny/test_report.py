"""``tools.train_tiny.report``: the training report's numbers are ``longrope eval``'s."""

from __future__ import annotations

import math

import pytest

from tools.train_tiny.config import TinyConfig
from tools.train_tiny.model import build_model
from tools.train_tiny.report import eval_spans, report
from tools.train_tiny.tokenizer import encode_docs


def test_report_numbers_are_what_longrope_eval_gives(tok):
    """The training report goes through the shared stack: its PI/YaRN numbers equal ppl_suite's with
    make_baseline's factors on the same spans."""
    from longrope.evaluate.suite import ppl_suite
    from longrope.rope import make_baseline

    cfg = TinyConfig(vocab_size=400, hidden_size=32, num_layers=1, num_heads=1, intermediate_size=64, context=64)
    model = build_model(cfg, tok).eval()
    docs = encode_docs(tok, [" ".join(["the cat sat on a mat by the old green park"] * 150)])
    rep = report(model, tok, docs, cfg, per_doc=2, target=256, passkey_trials=0)
    spans = eval_spans(docs, 256, 2)
    sets = [(m, make_baseline(m, rope_theta=1e4, rotary_dim=32, original_length=64, target_length=256))
            for m in ("pi", "yarn")]
    for name, r in ppl_suite(model, spans, sets, [256], bos_id=tok.bos_token_id):
        assert rep[f"ppl_256_{name}"] == pytest.approx(r.ppl, rel=1e-9)
    assert rep["ppl_256_unscaled"] != rep["ppl_256_pi"] and math.isfinite(rep["ppl_64"])
    # the model is left as it was: no patch active after the report
    from longrope.models import current_patch

    patch = current_patch(model)
    assert patch is None or not patch.active
