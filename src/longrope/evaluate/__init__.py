"""Evaluation of long-context behaviour: perplexity, passkey retrieval, needle scores, plots.

The functions take an already loaded model and in-memory (or memory-mapped) token arrays, so a
search can call them in its inner loop without re-reading files or reloading the model:

- :func:`evaluate_perplexity` → :class:`PerplexityResult` (truncate or sliding window,
  token-weighted, per-document sums);
- :func:`passkey_accuracy` → :class:`PasskeyResult` (greedy generation or teacher-forced);
- :func:`needle_prompts` once, then :func:`needle_score` per candidate → :class:`NeedleScore`
  (LongRoPE2's needle-driven fitness: the mean NLL of the answer tokens).

The LM head and the loss always run in chunks (no ``[length, vocab]`` logits tensor).
Everything runs under ``torch.inference_mode()`` and is deterministic.

Importing this package imports neither torch nor transformers: the names below load their module on
first use (PEP 562), so torch-free pieces (:mod:`.stats`, :mod:`.windows`) serve the
command line's configs without it.
"""

import importlib

_EXPORTS = {
    "NeedleScore": "passkey",
    "PasskeyPrompt": "passkey",
    "PasskeyResult": "passkey",
    "PasskeyTrial": "passkey",
    "build_passkey_prompt": "passkey",
    "needle_prompts": "passkey",
    "needle_score": "passkey",
    "passkey_accuracy": "passkey",
    "DocNLL": "perplexity",
    "PerplexityResult": "perplexity",
    "evaluate_perplexity": "perplexity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"longrope.evaluate.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'longrope.evaluate' has no attribute {name!r}")
