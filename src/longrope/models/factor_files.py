"""Read a factor file for a given model: factors.json, a longrope config.json, or the reference CSV.

The reference code's CSV holds only the long factors, one λ per line; the rope base, L and L' are
not in it. For a CSV the base comes from the model, L from the model unless ``original_length`` is
given, and L' must be given (``--target-length`` on the command line); other formats carry their own.
"""

from __future__ import annotations

import os
from typing import Any

from longrope.errors import UserError

__all__ = ["load_factors_for"]


def load_factors_for(
    path: str | os.PathLike, info: Any, *, original_length: int | None = None, target_length: int | None = None
) -> Any:
    """A :class:`~longrope.rope.FactorSet` from ``path`` for the model described by ``info`` (a RopeInfo)."""
    from longrope.rope import FactorSet

    if original_length is not None and original_length < 2:
        raise UserError(f"--original-length must be an integer >= 2, got {original_length}")
    if target_length is not None and target_length < 1:
        raise UserError(f"--target-length must be a positive integer, got {target_length}")
    L = original_length if original_length is not None else info.original_max_position_embeddings
    return FactorSet.load(path, rope_theta=info.rope_theta, original_length=L, target_length=target_length)
