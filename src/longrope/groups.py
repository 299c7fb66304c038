"""The setting groups several commands share, each field declared once: its flag, default, help and check.

Three groups (issue "one decision, one place"):

- **windows / split** — which documents of a shard folder are read and how windows are cut from them:
  ``data``, ``samples``, ``seed``, ``split``, ``heldout_fraction``, ``windows_per_doc``, ``bos``;
- **passkey protocol** — ``trials``, ``depths``, ``mode``;
- **device / dtype** — where and in what precision the model runs.

Each field is made by one factory below (:func:`longrope.options.option` underneath), so the
commands (``search``, ``eval ppl|passkey|ruler``, ``finetune``, ``demo``) and the pipeline's stages
that build those configs take the same default, help and flag. A field keeps the name it always had
in its command (``config.json`` keys, flags and ``longrope rerun`` of old run folders are unchanged);
its *concept* is recorded in the field's metadata, and :func:`check_groups` — called by every
config's ``__post_init__`` — checks each field by its concept with the one check of
:mod:`longrope.settings`. :func:`group_fields` lists a config's fields of one concept (what the tests
use to assert every command shares a default).

Only :mod:`longrope.options`, :mod:`longrope.settings` and the standard library are imported at
module level (``--help`` stays light).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from longrope.errors import ConfigError, UserError, shown
from longrope.options import (
    MAX_COUNT,
    MAX_SEED,
    check_choices,
    check_int,
    check_shapes,
    int_problem,
    is_ratio,
    option,
    resolve_ratios,
)
from longrope.settings import (
    DEVICE,
    DTYPE,
    DTYPE_ALIASES,
    DTYPES,
    HELDOUT_FRACTION,
    PASSKEY_DEPTHS,
    PASSKEY_MAX_TRIALS,
    PASSKEY_MODE,
    PASSKEY_MODES,
    PASSKEY_TRIALS,
    SEED,
    SPLIT,
    SPLITS,
    WINDOW_SAMPLES,
    WINDOWS_PER_DOC,
    check_heldout_fraction,
    check_passkey_depths,
)

__all__ = ["GROUPS", "data_option", "samples_option", "seed_option", "split_option", "heldout_fraction_option",
           "windows_per_doc_option", "bos_option", "trials_option", "depths_option", "mode_option",
           "device_option", "dtype_option", "check_groups", "group_fields", "run_device", "resolve_lengths"]

#: group → the concepts (field roles) it holds.
GROUPS = {
    "windows": ("data", "samples", "seed", "split", "heldout_fraction", "windows_per_doc", "bos"),
    "passkey": ("trials", "depths", "mode"),
    "device": ("device", "dtype"),
}


def _field(concept: str, default: Any, help: str, **kwargs: Any) -> Any:
    """An :func:`option` tagged with its concept (``lo``: the least integer the check accepts)."""
    return option(default, help, tags={"concept": concept, "lo": kwargs.pop("lo", None)}, **kwargs)


# -- windows / split -------------------------------------------------------------------------------


def data_option(help: str = "shard folder from 'longrope tokenize'", *, required: bool = True, **kw: Any) -> Any:
    """The shard folder the windows come from (required unless ``required=False``: then None = none)."""
    return _field("data", dataclasses.MISSING if required else None, help, metavar="DIR", path=True, **kw)


def samples_option(help: str = "windows per length (each BOS + length-1 tokens; at most --windows-per-doc from "
                               "one document)", *, default: int = WINDOW_SAMPLES, **kw: Any) -> Any:
    """Windows drawn (``default``: :data:`~longrope.settings.WINDOW_SAMPLES`; the demo's are sized for it)."""
    return _field("samples", default, help, metavar=kw.pop("metavar", "K"), **kw)


def seed_option(help: str = "seed of the window sample", *, optional: bool = False, **kw: Any) -> Any:
    """A seed (``optional``: None = not given, shown as the default seed; ``longrope generate``'s applies to
    sampling only)."""
    if optional:
        return _field("seed", None, help, default_text=str(SEED), **kw)
    return _field("seed", SEED, help, **kw)


#: what --split chooses, in the words of every command that has it ("all" took train= documents without saying so)
SPLIT_HELP = "which documents: heldout, search or all (every document, train= ones included)"


def split_option(help: str = SPLIT_HELP, **kw: Any) -> Any:
    return _field("split", SPLIT, help, choices=SPLITS, **kw)


def heldout_fraction_option(help: str = "share of documents held out (documents without a pinned role)",
                            **kw: Any) -> Any:
    return _field("heldout_fraction", HELDOUT_FRACTION, help, metavar="P", **kw)


def windows_per_doc_option(help: str = "at most this many non-overlapping windows per document", **kw: Any) -> Any:
    return _field("windows_per_doc", WINDOWS_PER_DOC, help, metavar="W", **kw)


def bos_option(help: str = "prepend the tokenizer's BOS token", **kw: Any) -> Any:
    return _field("bos", True, help, **kw)


# -- passkey protocol ------------------------------------------------------------------------------


def trials_option(help: str = "keys per (length, depth); 8 x 5 depths = 40 keys per set and length, enough for a "
                              "95 % interval of about +-0.15", *, skip_zero: bool = False, **kw: Any) -> Any:
    """Keys per (length, depth); ``skip_zero``: 0 skips the passkey test (the demo's)."""
    return _field("trials", PASSKEY_TRIALS, help, metavar=kw.pop("metavar", "N"), lo=0 if skip_zero else 1, **kw)


def depths_option(help: str = "needle depths in [0, 1]", **kw: Any) -> Any:
    return _field("depths", PASSKEY_DEPTHS, help, metavar="D,D", **kw)


MODE_HELP = ("generate: greedy decoding until the first number of the output is complete (a non-digit or end of "
             "text follows it; at most a few tokens more than the key has digits), correct when it equals the key; "
             "needle: teacher-forced, correct when every answer token is the argmax; both: greedy accuracy and the "
             "teacher-forced answer NLL of the same keys")


def mode_option(help: str = MODE_HELP, **kw: Any) -> Any:
    return _field("mode", PASSKEY_MODE, help, choices=PASSKEY_MODES, **kw)


# -- device / dtype --------------------------------------------------------------------------------


def device_option(help: str = "auto (CUDA when available, else cpu), cpu, cuda, cuda:1, mps", **kw: Any) -> Any:
    return _field("device", DEVICE, help, **kw)


def dtype_option(help: str = "model dtype: " + ", ".join(DTYPES), **kw: Any) -> Any:
    return _field("dtype", DTYPE, help, metavar="DTYPE", **kw)


def run_device(device: str, *, fix: str = "use --device cpu") -> str:
    """The device a run uses for ``device``, as a string (config.json, run.json): the one reading of
    ``auto`` is :func:`longrope.models.loading.auto_device`'s (CUDA when this machine has it, else cpu);
    any other name is checked to exist here (a one-line error otherwise)."""
    from longrope.models.loading import auto_device

    return str(auto_device(device, fix=fix))


# -- the one check of each concept -------------------------------------------------------------------


def group_fields(cls_or_cfg: Any, concept: str) -> list[dataclasses.Field]:
    """The fields of a config (class or instance) declared for ``concept`` by a factory above."""
    return [f for f in dataclasses.fields(cls_or_cfg) if f.metadata.get("concept") == concept]


def _check_field(cfg: Any, f: dataclasses.Field) -> None:
    concept, name, value = f.metadata["concept"], f.name, getattr(cfg, f.name)
    if concept in ("samples", "windows_per_doc"):
        check_int(cfg, name, 1, MAX_COUNT)
    elif concept == "seed":
        check_int(cfg, name, 0, MAX_SEED, optional=f.default is None)
    elif concept == "trials":
        lo = 0 if f.metadata.get("lo") == 0 else 1
        problem = int_problem(value, lo, PASSKEY_MAX_TRIALS)
        if problem:
            raise ConfigError(name, "{name} " + problem + (" (0 skips the passkey test)" if lo == 0 else ""))
        setattr(cfg, name, int(value))
    elif concept == "heldout_fraction":
        setattr(cfg, name, check_heldout_fraction(value, name))
    elif concept == "depths":
        setattr(cfg, name, check_passkey_depths(value, name))
    elif concept == "data" and value is not None and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(name, "{name} must name a shard folder from 'longrope tokenize', got " + repr(value))
    elif concept == "device" and (not isinstance(value, str) or not value.strip()):
        raise ConfigError(name, "{name} must name a device (auto, cpu, cuda, cuda:1, mps), got " + repr(value))
    elif concept == "dtype" and str(value).lower() not in (*DTYPES, *DTYPE_ALIASES):
        raise ConfigError(name, "{name} must be one of " + f"{', '.join(DTYPES)}, got {shown(value)}")
    elif concept == "bos" and not isinstance(value, bool):
        raise ConfigError(name, "{name} must be true or false, got " + repr(value))


def check_groups(cfg: Any) -> None:
    """Check every group field of ``cfg`` (and every field with declared ``choices``) by its concept:
    the one check of each shared setting, so a command line, a saved configuration, a plan's stage and
    a Python caller are refused alike, naming the field."""
    check_shapes(cfg)
    check_choices(cfg)
    for f in dataclasses.fields(cfg):
        if f.metadata.get("concept"):
            _check_field(cfg, f)


def resolve_lengths(cfg: Any, model_field: str = "model") -> None:
    """Read the length fields of ``cfg`` as the command line does (``"16k"``) and turn their context ratios
    (``8x``) into tokens, times the original context L of the model ``cfg.<model_field>`` names (read from
    its config, no weights; only when a ratio is given). A config that overrides L (a non-None ``original_length``:
    ``longrope baseline``, ``export``, ``generate --original-length``) has its ratios of that L, the L its factors
    are for. A model whose L cannot be read is a :class:`ConfigError` naming the length's field."""
    override = getattr(cfg, "original_length", None)
    if override is not None:  # checked by the config before (an integer >= 2)
        resolve_ratios(cfg, lambda: int(override))
        return

    def original() -> int:
        from longrope.models.loading import read_rope_info

        field = next(f.name for f in dataclasses.fields(cfg) if f.metadata.get("length") and any(
            map(is_ratio, (lambda v: v if isinstance(v, (tuple, list)) else (v,))(getattr(cfg, f.name)))))
        model = getattr(cfg, model_field)
        try:
            info = read_rope_info(model)
            if not info.supported:
                raise UserError(info.reason)
            return int(info.original_max_position_embeddings)
        except UserError as exc:
            raise ConfigError(field, "{name} " + f"is a ratio of the model's original context, which cannot be "
                              f"read from {model}: {exc}; give the length in tokens (e.g. 16k)") from None

    resolve_ratios(cfg, original)
