"""Settings several commands share, each decided here once: its default and its check.

Every command config (search, eval, finetune, demo), every pipeline stage and every library function
that takes one of these settings takes its default from the constant below and validates it with the
function below, so the commands cannot drift apart: the search, the held-out report and the training
data must split a shard folder the same way, or a "held-out" document could have been searched on or
trained on.

Only the standard library and :mod:`longrope.errors` are imported here (config modules import this
one, and ``--help`` stays light).
"""

from __future__ import annotations

import numbers
from typing import Any

from longrope.errors import ConfigError

__all__ = ["HELDOUT_FRACTION", "check_heldout_fraction"]

#: The share of a shard folder's documents (those without a pinned role) that the stable hash split of
#: :func:`longrope.data.document_role` holds out from the search and from training.
HELDOUT_FRACTION = 0.5


def _shown(value: Any) -> str:
    return str(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else repr(value)


def check_heldout_fraction(value: Any, field: str = "heldout_fraction") -> float:
    """``value`` as a float when it is a number in [0, 1]; else a :class:`ConfigError` naming ``field``
    (which the CLI shows as its flag, ``--heldout-fraction``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not 0.0 <= value <= 1.0:
        raise ConfigError(field, "{name} must be in [0, 1], got " + _shown(value))
    return float(value)
