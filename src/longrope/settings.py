"""Settings several commands share, each decided here once: its default and its check.

Every command config (search, eval, finetune, demo), every pipeline stage and every library function
that takes one of these settings takes its default from the constant below and validates it with the
function below, so the commands cannot drift apart:

- the held-out share of the document split: the search, the held-out report and the training data
  must split a shard folder the same way, or a "held-out" document could have been searched on or
  trained on;
- the passkey depths: ``eval passkey``, the demo and the pipeline's comparison measure retrieval on
  the same grid, so their accuracies compare;
- the passkey scoring modes the commands offer;
- the window sample (how many windows, from which split, how many per document, the seed), the device
  and the model dtype (the field factories of :mod:`longrope.groups` carry these defaults);
- what a budget of 0 means (:func:`check_budget`: no limit, in every command);
- which decoding settings apply together and their bounds (:func:`check_decoding`: ``longrope generate``'s
  config and ``generate()`` make this one check, each naming the settings in its own words).

Only the standard library and :mod:`longrope.errors` are imported here (config modules import this
one, and ``--help`` stays light).
"""

from __future__ import annotations

import numbers
from typing import Any

from longrope.errors import ConfigError, UserError, shown
from longrope.options import is_finite_number

__all__ = ["HELDOUT_FRACTION", "PASSKEY_ANSWER", "PASSKEY_DEPTHS", "PASSKEY_MAX_TRIALS", "MAX_SLOTS", "PASSKEY_MODES",
           "PASSKEY_MODE", "PASSKEY_TRIALS", "SPLITS", "SPLIT", "SEED", "WINDOW_SAMPLES", "WINDOWS_PER_DOC", "DEVICE",
           "DTYPE", "DTYPES", "DTYPE_ALIASES", "dtype_name", "check_heldout_fraction", "check_passkey_depth",
           "check_passkey_depths", "check_budget", "MIN_TEMPERATURE", "DECODING_FIELDS", "check_decoding"]

#: Which documents of a shard folder a window sample reads: the held-out ones (reports), the search ones
#: (the fitness) or all.
SPLITS = ("heldout", "search", "all")
#: The split a report reads unless told otherwise.
SPLIT = "heldout"
#: The seed of every window sample, search and key draw unless one is given.
SEED = 0
#: Windows per length a perplexity measurement or a search fitness is computed on.
WINDOW_SAMPLES = 5
#: At most this many non-overlapping windows come from one document (1: as many documents as windows).
WINDOWS_PER_DOC = 1
#: Where a model runs unless told: ``auto`` is CUDA when the machine has it, else the CPU.
DEVICE = "auto"
#: The precision of a model's weights and activations in search and evaluation.
DTYPE = "float32"
DTYPES = ("float32", "bfloat16", "float16")
#: Other names of them a command accepts (as :func:`resolve_dtype` reads them); a
#: recorded configuration keeps the name it was given.
DTYPE_ALIASES = {"fp32": "float32", "float": "float32", "bf16": "bfloat16", "fp16": "float16", "half": "float16"}


def dtype_name(dtype: Any) -> str | None:
    """The name in :data:`DTYPES` that ``dtype`` spells ("fp32", "FLOAT32", ``torch.float32`` → "float32"), or None:
    how runs compare a recorded precision with a given one (``search --resume --dtype fp32`` of a float32 run is the
    same run)."""
    if isinstance(dtype, numbers.Number):  # no number names a dtype (and str() refuses one of 5,000 digits)
        return None
    text = str(dtype).lower().replace("torch.", "")
    return text if text in DTYPES else DTYPE_ALIASES.get(text)


def resolve_dtype(dtype: Any) -> Any:
    """A ``torch.dtype`` of :data:`DTYPES` from one of them or a name of :data:`DTYPE_ALIASES` ("bf16"); anything
    else is a :class:`UserError` (a torch dtype too: ``export_hf(dtype=torch.int8)`` was transformers' ValueError).
    Imports torch on use only."""
    import torch

    name = dtype_name(dtype)
    if name is None:
        raise UserError(f"unknown dtype {shown(dtype)}; use one of {', '.join(DTYPES)}")
    return getattr(torch, name)

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

#: Most evaluations a search runs at once (its worker processes, devices or Ray workers): the bound of
#: ``--workers`` and of the order a checkpoint keeps (a hand-edited lag of 10**9 asked far past the budget).
MAX_SLOTS = 4096

#: How a pass key is scored (:mod:`longrope.evaluate.passkey`): greedy decoding, teacher-forced answer
#: tokens, or both on the same keys.
PASSKEY_MODES = ("generate", "needle", "both")
#: The mode a passkey measurement uses unless told: greedy accuracy and the answer NLL of the same keys.
PASSKEY_MODE = "both"

#: Which factors an installed patch applies (:mod:`longrope.models.patch`): ``switch``, the short factors while
#: max(position)+1 <= L and the long ones beyond (transformers' rule); ``long``, the long ones from the first token.
SWITCH_MODES = ("switch", "long")
#: What happens to the KV cache when generation crosses L in ``switch`` mode (:mod:`longrope.models.cache_switch`):
#: re-fed once with the long factors (exact), its keys re-rotated in place, or kept as they are (transformers').
CACHE_POLICIES = ("reprefill", "rerotate", "keep")


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _shown(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return shown(list(value))
    return str(value) if _number(value) and not isinstance(value, int) else shown(value)


def check_heldout_fraction(value: Any, field: str = "heldout_fraction") -> float:
    """``value`` as a float when it is a number in [0, 1]; else a :class:`ConfigError` naming ``field``
    (which the CLI shows as its flag, ``--heldout-fraction``)."""
    if not _number(value) or not 0.0 <= value <= 1.0:
        raise ConfigError(field, "{name} must be in [0, 1], got " + _shown(value))
    return float(value)


def _is_depth(value: Any) -> bool:
    return _number(value) and 0.0 <= value <= 1.0


def check_passkey_depth(value: Any, field: str = "depth") -> float:
    """One depth (``build_passkey_prompt``'s) as a float when it is a number in [0, 1], as each of
    :func:`check_passkey_depths`; else a :class:`ConfigError` naming ``field`` ('x' was float()'s ValueError, True
    and '0.5' were taken, battery 19)."""
    if not _is_depth(value):
        raise ConfigError(field, "{name} must be a number in [0, 1], got " + _shown(value))
    return float(value)


def check_passkey_depths(value: Any, field: str = "depths") -> tuple[float, ...]:
    """``value`` as a tuple of floats when it is a non-empty sequence of numbers in [0, 1]; else a
    :class:`ConfigError` naming ``field`` (``--depths``, a demo's ``--passkey-depths``, a plan key)."""
    items = None if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__") else list(value)
    if not items or not all(_is_depth(d) for d in items):
        raise ConfigError(field, "{name} must be numbers in [0, 1], got " + _shown(value))
    depths = tuple(float(d) for d in items)
    if len(set(depths)) < len(depths):  # a repeated depth would record two keys under one (length, depth, trial)
        raise ConfigError(field, "{name} must be distinct depths, got " + _shown(value)
                          + "; give each depth once")
    return depths


def check_budget(value: Any, field: str) -> float | None:
    """A budget (seconds, evaluations) as the commands read it: unset or 0 means no limit (None); a positive
    number is the limit; anything else is a :class:`ConfigError` naming ``field``. The one meaning of 0 for
    ``search --max-seconds/--max-evals``, the demo's and a plan's."""
    if value is None or (_number(value) and value == 0):
        return None
    if not is_finite_number(value) or not 0 < value:  # 10**400 was float()'s OverflowError
        raise ConfigError(field, "{name} must be a number >= 0 (0 or unset: no limit), got " + _shown(value))
    return float(value)


#: The lowest sampling temperature: below it logits / temperature overflow float32 (and sampling that cold is
#: greedy decoding anyway).
MIN_TEMPERATURE = 1e-6
#: How :func:`check_decoding` names its six settings unless told (``generate()``'s arguments).
DECODING_FIELDS = ("do_sample", "temperature", "top_p", "seed", "mode", "cache_policy")


def check_decoding(do_sample: bool, temperature: Any, top_p: Any, seed: Any, mode: str, cache_policy: Any, *,
                   fields: tuple[str, str, str, str, str, str] = DECODING_FIELDS) -> None:
    """The one check of which decoding settings apply together, and of the sampling bounds.

    None is "not given" (1 when sampling; seed 0). A temperature, top-p or seed given without sampling, or a cache
    policy with a mode that never switches, is refused (it would be ignored without a word); so is a temperature
    that is not a number > 0 or below :data:`MIN_TEMPERATURE` (the scaled logits overflow), and a top-p outside (0, 1]. A
    :class:`ConfigError` names ``fields`` (how the caller spells the six settings: ``longrope generate``'s config
    passes its own, which the CLI shows as flags). The seed's range is its own check (``--seed``'s, everywhere)."""
    f_sample, f_temperature, f_top_p, f_seed, f_mode, f_policy = fields
    if cache_policy is not None and mode != "switch":
        raise ConfigError((f_policy, f_mode), "{name0} applies to {name1} 'switch' (the KV cache at the switch); "
                          "{name1} " + shown(mode) + " never switches: leave {name0} out")
    if not do_sample:
        given = [f for f, v in ((f_temperature, temperature), (f_top_p, top_p), (f_seed, seed)) if v is not None]
        if given:
            raise ConfigError((given[0], f_sample), "{name0} applies to sampling: set {name1}, or leave {name0} out "
                              "for greedy decoding")
        return
    temperature = 1.0 if temperature is None else temperature
    top_p = 1.0 if top_p is None else top_p
    if not _number(temperature) or not 0 < temperature < float("inf"):
        raise ConfigError(f_temperature, "{name} must be a number > 0 for sampling, got " + _shown(temperature)
                          + " (for greedy decoding leave sampling off)")
    if temperature < MIN_TEMPERATURE:
        raise ConfigError(f_temperature, "{name} " + _shown(temperature) + f" is below {MIN_TEMPERATURE:g}, where "
                          "the scaled logits overflow; a temperature that low is greedy decoding: leave sampling off")
    if not _number(top_p) or not 0 < top_p <= 1:
        raise ConfigError(f_top_p, "{name} must be in (0, 1] for sampling, got " + _shown(top_p)
                          + " (1 keeps every token)")
