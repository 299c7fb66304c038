"""Settings several commands share, each decided here once: its default and its check.

Every command config (search, eval, finetune, demo), every pipeline stage and every library function
that takes one of these settings takes its default from the constant below and validates it with the
function below, so the commands cannot drift apart:

- the held-out share of the document split: the search, the held-out report and the training data
  must split a shard folder the same way, or a "held-out" document could have been searched on or
  trained on;
- the passkey depths: ``eval passkey``, the demo and the pipeline's comparison measure retrieval on
  the same grid, so their accuracies compare;
- the passkey scoring modes the commands offer.

Only the standard library and :mod:`longrope.errors` are imported here (config modules import this
one, and ``--help`` stays light).
"""

from __future__ import annotations

import numbers
from typing import Any

from longrope.errors import ConfigError

__all__ = ["HELDOUT_FRACTION", "PASSKEY_ANSWER", "PASSKEY_DEPTHS", "PASSKEY_MAX_TRIALS", "PASSKEY_MODES",
           "PASSKEY_TRIALS", "check_heldout_fraction", "check_passkey_depths"]

#: The share of a shard folder's documents (those without a pinned role) that the stable hash split of
#: :func:`longrope.data.document_role` holds out from the search and from training.
HELDOUT_FRACTION = 0.5


#: Where the pass key is planted, as a share of the prompt's filler (0: at its start, 1: at its end): the
#: depth grid of every passkey measurement (``eval passkey``, the demo, the pipeline's compare stage,
#: :func:`longrope.evaluate.passkey.passkey_accuracy`).
PASSKEY_DEPTHS = (0.0, 0.25, 0.5, 0.75, 1.0)

#: Keys per depth of a retrieval report (``eval passkey``, the demo): 8 × 5 depths = 40 keys, a 95 % interval
#: of about ±0.15 on an accuracy near one half.
PASSKEY_TRIALS = 8

#: The answer a teacher-forced pass key is scored on: the key and the full stop that ends it (the needle
#: writes it so). Scores made with another answer text are not comparable: search records carry it.
PASSKEY_ANSWER = " {key}."
#: Most keys per (length, depth) a passkey measurement takes: keys are 5-digit (90,000 of them), so beyond this
#: they repeat often, the 95 % interval is already about +-0.01, and every key's prompt is built by the check
#: that runs before the model loads; a larger count is a typo that would run for days without a word.
PASSKEY_MAX_TRIALS = 10_000

#: How a pass key is scored (:mod:`longrope.evaluate.passkey`): greedy decoding, teacher-forced answer
#: tokens, or both on the same keys.
PASSKEY_MODES = ("generate", "needle", "both")


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return str(list(value))
    return str(value) if _number(value) else repr(value)


def check_heldout_fraction(value: Any, field: str = "heldout_fraction") -> float:
    """``value`` as a float when it is a number in [0, 1]; else a :class:`ConfigError` naming ``field``
    (which the CLI shows as its flag, ``--heldout-fraction``)."""
    if not _number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(field, "{name} must be in [0, 1], got " + _shown(value))
    return float(value)


def check_passkey_depths(value: Any, field: str = "depths") -> tuple[float, ...]:
    """``value`` as a tuple of floats when it is a non-empty sequence of numbers in [0, 1]; else a
    :class:`ConfigError` naming ``field`` (``--depths``, a demo's ``--passkey-depths``, a plan key)."""
    items = None if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__") else list(value)
    if not items or not all(_number(d) and 0.0 <= d <= 1.0 for d in items):
        raise ConfigError(field, "{name} must be numbers in [0, 1], got " + _shown(value))
    depths = tuple(float(d) for d in items)
    if len(set(depths)) < len(depths):  # a repeated depth would record two keys under one (length, depth, trial)
        raise ConfigError(field, "{name} must be distinct depths, got " + _shown(value)
                          + "; give each depth once")
    return depths
