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
"""

from longrope.evaluate.passkey import (
    NeedleScore,
    PasskeyPrompt,
    PasskeyResult,
    PasskeyTrial,
    build_passkey_prompt,
    needle_prompts,
    needle_score,
    passkey_accuracy,
)
from longrope.evaluate.perplexity import DocNLL, PerplexityResult, evaluate_perplexity

__all__ = [
    "DocNLL",
    "NeedleScore",
    "PasskeyPrompt",
    "PasskeyResult",
    "PasskeyTrial",
    "PerplexityResult",
    "build_passkey_prompt",
    "evaluate_perplexity",
    "needle_prompts",
    "needle_score",
    "passkey_accuracy",
]
