"""Read a factor file for a given model, and decide whether a factor set fits that model.

This module is the one place that answers "does this factor set fit this model": every command
that takes ``--factors`` (``eval ppl|passkey``, ``generate``, ``export``, ``finetune``) calls
:func:`load_factors_for` with the :class:`~longrope.models.RopeInfo` read from the model's config
(:func:`longrope.models.read_rope_info`: no weights), so a wrong file fails in seconds, before
minutes of weight loading or evaluation. A set fits when

- it has one factor per rotary pair of the model (``rotary_dim/2`` values in each list);
- its rope base is the model's (factors are relative to that base);
- its original length L is the model's (L is where the short and the long factors switch, and the
  long factors were made for s = L'/L): a file made for another model's L is refused unless the
  user asks for that L on purpose with ``--original-length L`` (the same flag that gives L to a
  reference CSV).

The reference code's CSV holds only the long factors, one λ per line; the rope base, L and L' are
not in it. For a CSV the base comes from the model, L from the model unless ``original_length`` is
given, and L' must be given (``--target-length`` on the command line); other formats carry their own.
"""

from __future__ import annotations

import math
import os
from typing import Any

from longrope.errors import UserError

__all__ = ["ROPE_THETA_RTOL", "load_factors_for", "check_fits", "check_rotary_fit", "how_to_make_factors",
           "rotary_fit_problem"]

#: How close a factor set's rope base must be to the model's (relative), for every consumer (commands,
#: the patch, the GGUF export). GGUF stores the base as float32 (relative rounding up to 6e-8), so a
#: stricter tolerance would refuse a set made for a model when that model is read back from a GGUF.
ROPE_THETA_RTOL = 1e-6


def how_to_make_factors(info: Any, model: str | None, target_length: int | None = None) -> str:
    """The fix for a factor set made for another model: a runnable ``longrope baseline`` line."""
    L = int(info.original_max_position_embeddings)
    target = max(int(target_length or 0), 2 * L)
    return (f"use factors made for this model, e.g. longrope baseline --model {model or 'MODEL'} --method yarn "
            f"--target-length {target} -o factors.json")


def rotary_fit_problem(factor_set: Any, rotary_dim: int, rope_theta: float, who: str = "the model") -> str | None:
    """What keeps ``factor_set`` from fitting a model with ``rotary_dim`` and base ``rope_theta`` (None: it
    fits): one factor per rotary pair in both lists, the same base within :data:`ROPE_THETA_RTOL`. The one
    judge of the rotary fit; :func:`check_fits` adds the original length L."""
    from longrope.rope.factors import require_factor_set
    from longrope.rope.frequencies import check_rope_theta, check_rotary_dim

    require_factor_set(factor_set)  # the one check of each argument: NaN was int()'s ValueError, None a TypeError,
    rotary_dim, rope_theta = check_rotary_dim(rotary_dim), check_rope_theta(rope_theta)  # 'x' an AttributeError
    half = rotary_dim // 2
    for name in ("long_factor", "short_factor"):
        n = int(len(getattr(factor_set, name)))
        if n != half:
            return f"{name} has {n} values but {who} has rotary dim {rotary_dim} (needs {half})"
    theta = float(factor_set.rope_theta)
    if not math.isclose(theta, float(rope_theta), rel_tol=ROPE_THETA_RTOL):
        return (f"factor set is for rope_theta={theta:g} but {who} has rope_theta={float(rope_theta):g} "
                "(factors are relative to the model's own base)")
    return None


def check_rotary_fit(factor_set: Any, rotary_dim: int, rope_theta: float, *, source: str, who: str,
                     fix: str) -> None:
    """:func:`rotary_fit_problem` as a one-line :class:`UserError`: ``"{source}: {problem}; {fix}"``."""
    problem = rotary_fit_problem(factor_set, rotary_dim, rope_theta, who)
    if problem:
        raise UserError(f"{source}: {problem}; {fix}")


def check_fits(factor_set: Any, info: Any, *, source: str, model: str | None = None,
               original_length: int | None = None, override_flag: str | None = "--original-length") -> Any:
    """Return ``factor_set`` when it fits the model described by ``info``; else one-line :class:`UserError`.

    ``original_length``: an L the user asked for on purpose (``--original-length``); a set with that
    L is accepted on a model trained at another L. ``override_flag``: how the command spells that
    option (None when it has none), for the message.
    """
    from longrope.models.families import require_supported

    require_supported(info)
    L_model = int(info.original_max_position_embeddings)
    L = int(factor_set.original_max_position_embeddings)
    # Keep the target the file had (same scale s, this model's L) in the suggested fix.
    target = round(factor_set.scale * L_model)
    fix = how_to_make_factors(info, model, target)
    who = model or "the model"
    check_rotary_fit(factor_set, info.rotary_dim, info.rope_theta, source=source, who=who, fix=fix)
    if L != L_model and L != original_length:
        on_purpose = (f", or pass {override_flag} {L} to switch at L={L} on purpose" if override_flag else "")
        raise UserError(f"{source}: factor set is for a model trained at L={L} tokens (target L'="
                        f"{factor_set.max_position_embeddings}) but {who} was trained at L={L_model}; "
                        f"{fix}{on_purpose}")
    return factor_set


def load_factors_for(
    path: str | os.PathLike, info: Any, *, original_length: int | None = None, target_length: int | None = None,
    model: str | None = None, override_flag: str | None = "--original-length", target_flag: str | None = None,
) -> Any:
    """A :class:`~longrope.rope.FactorSet` from ``path`` checked against the model described by ``info``
    (a RopeInfo, from the config alone); see the module doc. ``model``: the user's name for the model,
    for messages. ``target_flag``: ``target_length`` is that flag of the user's (the L' of a CSV, which carries
    none); another file with another L' is refused rather than exported or run at its own L' unsaid."""
    from longrope.formats.factors import CsvWithoutLengths
    from longrope.models.families import require_supported
    from longrope.options import int_problem
    from longrope.rope.factors import FactorSet, RotaryDimMismatch
    from longrope.rope.values import MAX_LENGTH

    # a library caller's values too: "64" was a TypeError, True a target of 1 token (battery 20b)
    for flag, value, lo in ((override_flag or "original_length", original_length, 2),
                            (target_flag or "target_length", target_length, 1)):
        if value is not None and (problem := int_problem(value, lo, MAX_LENGTH)) is not None:
            raise UserError(f"{flag} {problem}")
    require_supported(info)
    L = original_length if original_length is not None else info.original_max_position_embeddings
    try:
        fs = FactorSet.load(path, rope_theta=info.rope_theta, original_length=L, target_length=target_length,
                            rotary_dim=info.rotary_dim)
    except RotaryDimMismatch as e:
        raise UserError(f"{e}; {how_to_make_factors(info, model)}") from None
    except CsvWithoutLengths:  # the command's own flag for what the CSV lacks (only L' can be missing here)
        if not target_flag:
            raise
        raise UserError(f"{path} is a reference-code CSV (long factors only, without the target length L'): "
                        f"give {target_flag} N, the length its factors were made for") from None
    csv = (fs.provenance or {}).get("format") == "reference-csv"
    if not csv and original_length is not None and original_length != fs.original_max_position_embeddings:
        raise UserError(f"{path} says its original length is L={fs.original_max_position_embeddings} but "
                        f"{override_flag or 'original_length'} is {original_length}; give the file's L (to use "
                        "it on a model trained at another L) or leave the option out")
    if not csv and target_flag and target_length is not None and target_length != fs.max_position_embeddings:
        raise UserError(f"{path} says its target length is L'={fs.max_position_embeddings} but {target_flag} is "
                        f"{target_length}; {target_flag} gives the L' of a reference CSV (which has none): leave it "
                        "out, or use factors made for that length")
    return check_fits(fs, info, source=str(path), model=model, original_length=original_length,
                      override_flag=override_flag)
