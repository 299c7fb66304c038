"""Evaluation of the tiny model through the shared stack (``longrope.evaluate``, ``longrope.models``,
``longrope.rope``), so the numbers in ``training.json`` come from the same code as ``longrope eval``."""

from __future__ import annotations

import numpy as np

from longrope.errors import UserError
from longrope.settings import PASSKEY_DEPTHS
from tools.train_tiny.config import TinyConfig

#: The passkey "at L" is measured with prompts this many tokens shorter than L, so that the prompt
#: and the decoded answer (at most ``evaluate.passkey.answer_budget`` = 12 tokens) stay inside
#: the trained window.
PASSKEY_MARGIN = 12


def eval_spans(docs: list[np.ndarray], length: int, per_doc: int) -> list[np.ndarray]:
    """``per_doc`` evenly spaced spans of ``length - 1`` tokens per document (the windows' text)."""
    spans = []
    for d in docs:
        room = len(d) - (length - 1)
        if room < 0:
            continue
        for k in range(per_doc):
            off = int(room * k / max(1, per_doc - 1)) if per_doc > 1 else 0
            spans.append(np.asarray(d[off : off + length - 1]))
    return spans


def pieces(spans: list[np.ndarray], length: int) -> list[np.ndarray]:
    """Each span cut into consecutive pieces of ``length - 1`` tokens (a remainder is dropped), so a
    PPL at the trained length covers the same text as the long windows."""
    return [s[k : k + length - 1] for s in spans for k in range(0, len(s) - (length - 1) + 1, length - 1)]


def heldout_ppl(model, spans: list[np.ndarray], length: int, bos_id: int | None) -> float:
    """Token-weighted PPL of ``BOS + span`` windows (``longrope.evaluate.evaluate_perplexity``)."""
    from longrope.evaluate import evaluate_perplexity

    was_training = model.training
    res = evaluate_perplexity(model, spans, length, bos_id=bos_id)
    model.train(was_training)
    return res.ppl


def passkey_rate(model, tokenizer, length: int, trials: int, seed: int) -> float | None:
    """Passkey accuracy at ``length`` (``longrope.evaluate.passkey_accuracy``: 5 depths, about
    ``trials`` keys in all); None when ``length`` cannot hold the standard prompt."""
    from longrope.evaluate.passkey import build_passkey_prompt, passkey_accuracy

    try:
        build_passkey_prompt(tokenizer, length, 12345, 0.5, bos_id=tokenizer.bos_token_id)
    except UserError:
        return None
    was_training = model.training
    res = passkey_accuracy(model, tokenizer, [length], depths=PASSKEY_DEPTHS,
                           trials=max(1, trials // 5), seed=seed, bos_id=tokenizer.bos_token_id)
    model.train(was_training)
    return res.accuracy


def report(model, tokenizer, heldout: list[np.ndarray], cfg: TinyConfig, *, per_doc: int = 4,
           target: int | None = None, passkey_trials: int = 20) -> dict:
    """Held-out PPL at L (same text as the 8x spans), at 8x unscaled / PI / NTK / YaRN, and passkey.

    Factors are installed with :func:`longrope.models.install_factors` and the baselines come from
    :func:`longrope.rope.make_baseline`: the numbers are what ``longrope eval`` gives."""
    from longrope.evaluate.suite import factor_switch
    from longrope.rope import make_baseline

    target = target or 8 * cfg.context
    bos = tokenizer.bos_token_id
    spans = eval_spans(heldout, target, per_doc)
    out: dict = {"target_length": target, "heldout_spans": len(spans),
                 "protocol": f"BOS + {target - 1} tokens at {per_doc} evenly spaced offsets per held-out doc; at "
                             f"{cfg.context} the same text in BOS-first pieces of {cfg.context}; token-weighted "
                             f"NLL (longrope.evaluate); passkey: longrope.evaluate.passkey_accuracy, 5 depths, at "
                             f"{cfg.context} with prompts of {cfg.context - PASSKEY_MARGIN} tokens so the answer "
                             "stays inside the trained window"}
    if not spans:
        out["note"] = f"no held-out document has {target} tokens"
        return out
    model.eval()
    out[f"ppl_{cfg.context}"] = heldout_ppl(model, pieces(spans, cfg.context), cfg.context, bos)
    out[f"ppl_{target}_unscaled"] = heldout_ppl(model, spans, target, bos)
    sets = [(m, make_baseline(m, rope_theta=cfg.rope_theta, rotary_dim=cfg.hidden_size // cfg.num_heads,
                              original_length=cfg.context, target_length=target)) for m in ("pi", "ntk", "yarn")]
    with factor_switch(model, sets) as use:
        for method, fs in sets:
            use(fs)
            out[f"ppl_{target}_{method}"] = heldout_ppl(model, spans, target, bos)
            if passkey_trials:
                out[f"passkey_{target}_{method}"] = passkey_rate(model, tokenizer, target, passkey_trials, cfg.seed + 1)
    if passkey_trials:
        out[f"passkey_{cfg.context}"] = passkey_rate(model, tokenizer, cfg.context - PASSKEY_MARGIN, passkey_trials,
                                                     cfg.seed + 1)
        out[f"passkey_{target}_unscaled"] = passkey_rate(model, tokenizer, target, passkey_trials, cfg.seed + 1)
    return out
