"""Configuration dataclasses as the one home of every default, and the command line derived from them.

A run's configuration is a dataclass whose fields are declared with :func:`option`: the default,
a help text, and how the field is spelled on the command line. :func:`add_options` turns the
fields into argparse options (with ``argparse.SUPPRESS`` defaults, so only what the user typed is
seen), and :func:`config_from_args` builds the dataclass from the defaults, an optional saved
configuration (``--config RUN_DIR/config.json``) and the flags, in that order of precedence.
:func:`config_to_dict` / :func:`config_from_dict` are the JSON round trip ``longrope rerun`` uses.

Field types understood: ``bool`` (``--flag``, or ``--no-flag`` when the default is True), ``int``,
``float``, ``str``, ``X | None``, ``tuple[int | float | str, ...]`` (comma-separated on the command
line), and a nested config dataclass (``nested=True``: its fields become flags of their own).

Only argparse and the standard library are imported here, so ``--help`` stays instant.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import numbers
import os
import re
import sys
import types
import typing
from collections.abc import Callable
from typing import Any

from longrope.errors import ConfigError, UserError, shown

__all__ = ["option", "nested", "check_choices", "check_flag", "check_int", "require_config", "int_problem", "MAX_TOKENS", "MAX_EXACT", "MAX_COUNT",
           "MAX_SEED", "config_to_argv", "add_options", "config_from_args", "config_to_dict", "config_from_dict",
           "flag_of", "field_flags", "parse_list", "parse_length", "parse_lengths", "token_count", "is_ratio",
           "resolve_ratios",
           "renamed_keys", "user_path_text", "check_chat_template"]


def option(default: Any = dataclasses.MISSING, help: str = "", *, flag: str | None = None, short: str | None = None,
           choices: tuple | Callable[[], tuple] | None = None, metavar: str | None = None,
           parse: Callable[[str], Any] | None = None, group: str | None = None, cli: bool = True,
           default_text: str | None = None, multiple: bool = False, aliases: tuple[str, ...] = (),
           length: bool = False, path: bool = False, tags: dict | None = None) -> Any:
    """A documented config field.

    ``help`` is required (every field is documented); ``flag`` overrides ``--field-name``;
    ``choices`` may be a callable (a registry's names, resolved when the parser is built);
    ``parse`` converts the command-line text; ``cli=False`` keeps the field out of the command line
    (it is still saved and re-read); ``default_text`` replaces the default shown in ``--help``;
    ``multiple`` (tuple fields) takes space-separated values (``--factors a.json b.json``) instead
    of one comma-separated string; ``aliases`` are older spellings of the flag, still accepted and left
    out of ``--help``; ``length`` (an ``int`` or ``tuple[int, ...]`` field of tokens) reads every length
    as :func:`parse_lengths` does — ``16384``, ``16k`` and ``8x`` (times the model's original context,
    resolved by :func:`resolve_ratios` once the model is known); ``tags`` is more metadata (the shared
    setting a field stands for, :mod:`longrope.groups`); ``path`` (a field naming files or folders): the command
    line reads a leading ``~`` as the shell does, where the shell leaves it (:func:`user_path_text`).
    """
    if not help:
        raise TypeError("option() needs a help text: every config field is documented")
    meta = {"help": help, "flag": flag, "short": short, "choices": choices, "metavar": metavar, "parse": parse,
            "group": group, "cli": cli, "default_text": default_text,
            "multiple": multiple, "aliases": tuple(aliases), "length": length, "path": path,
            **(tags or {})}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed; use a tuple")
    return dataclasses.field(default=default, metadata=meta)


OUTPUT_FLAGS = ("-o", "--output")
OUTPUT_ALIASES = ("--out",)  # the older spelling, still read in every command (README "The commands")


def output_option(help: str, *, metavar: str, default: Any = dataclasses.MISSING, **kw: Any) -> Any:
    """A command's output (``-o``/``--output``; ``--out`` still read): the one declaration of that spelling,
    so every command takes the same flags (search, eval, finetune and pipeline did not read ``--out``)."""
    return option(default, help, short=OUTPUT_FLAGS[0], metavar=metavar, aliases=OUTPUT_ALIASES, path=True, **kw)


def nested(factory: Callable[[], Any], help: str, *, group: str | None = None) -> Any:
    """A nested config dataclass whose own fields become command-line options; ``factory()`` gives
    its defaults (a class, or e.g. ``lambda: StrategyConfig(population=16)`` for other defaults)."""
    return dataclasses.field(default_factory=factory, metadata={"help": help, "nested": True, "group": group,
                                                                  "cli": True})


def check_choices(cfg: Any) -> None:
    """Raise :class:`ConfigError` for a field whose value is not among its declared ``choices``
    (argparse checks the command line; this checks configs built in Python or read from JSON)."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if not choices:
            continue
        allowed = tuple(choices()) if callable(choices) else tuple(choices)
        value = getattr(cfg, f.name)
        values = value if isinstance(value, tuple) else (value,)
        bad = [v for v in values if v is not None and v not in allowed]
        if bad:
            raise ConfigError(f.name, "{name} must be one of " + f"{', '.join(map(str, allowed))}, got {shown(bad[0])}")


#: Upper bound of a length or token count (context lengths, windows, generated tokens): 8x the 2M-token
#: context of LongRoPE's longest model; a larger number is a typo that would run for ever or overflow.
MAX_TOKENS = 1 << 24
#: The largest integer a float holds exactly: the bound of a setting checked by a later, finer rule.
MAX_EXACT = 1 << 53
#: Upper bound of other counts (steps, windows, trials, workers, ...).
MAX_COUNT = (1 << 31) - 1
#: Seeds are in [0, MAX_SEED] (what numpy's and torch's generators take alike).
MAX_SEED = (1 << 32) - 1


def is_integer(v: Any) -> bool:
    """Whether ``v`` is an integer value: an int or a numpy integer (``np.arange``'s, ``argmax``'s), not a bool. The
    one test of every integer setting and API argument: a numpy integer was refused by some ("trials must be a
    positive integer, got np.int64(1)") and taken by others (battery 11a)."""
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    """Whether ``v`` is a real number (int, float or a numpy scalar of either), not a bool."""
    return isinstance(v, numbers.Real) and not isinstance(v, bool)


def is_finite_number(v: Any) -> bool:
    """Whether ``v`` is a real number (:func:`is_number`) of finite value: the one finiteness test of every bound.
    An integer past a float's range is not (10**400 was float()'s OverflowError); a numpy float is compared as
    the Python float it is (np.float32 against ``sys.float_info.max`` warned "overflow encountered in cast",
    battery 21b)."""
    if not is_number(v):
        return False
    if isinstance(v, numbers.Integral):
        return abs(int(v)) <= sys.float_info.max
    return math.isfinite(float(v))


def int_problem(v: Any, lo: int, hi: int) -> str | None:
    """Why ``v`` is not an integer in ``[lo, hi]`` ("must be an integer in [lo, hi], got ..."), or None."""
    if not is_integer(v) or not lo <= v <= hi:
        return f"must be an integer in [{lo:,}, {hi:,}], got {shown(v)}"
    return None


def text_problem(v: Any, *, optional: bool = False) -> str | None:
    """Why ``v`` is not a non-empty string (None allowed when ``optional``): "must be a non-empty string, got ...",
    or None. The one rule of a name-like setting (a text field, a split, a tokenizer name)."""
    if (v is None and optional) or (isinstance(v, str) and v.strip()):
        return None
    return f"must be a non-empty string, got {shown(v)}"


def check_text(cfg: Any, name: str, *, optional: bool = False) -> None:
    """Raise :class:`ConfigError` unless field ``name`` of ``cfg`` passes :func:`text_problem`."""
    problem = text_problem(getattr(cfg, name), optional=optional)
    if problem:
        raise ConfigError(name, "{name} " + problem)


def check_flag(value: Any, name: str) -> bool:
    """A library caller's on/off argument is a bool (or a numpy bool): the one check of every such argument. A
    string is truthy whatever it says: export_hf(overwrite='no') replaced the folder, tokenize_corpus(force='no')
    rebuilt it, generate(do_sample='false') sampled (battery 19)."""
    if isinstance(value, bool):
        return value
    if _is_numpy_bool(value):  # read as the bool it is, as a config's bool field reads it (check_shapes)
        return bool(value)
    raise UserError(f"{name} must be True or False, got {shown(value)}")


def require_config(config: Any, cls: type, who: str) -> None:
    """A run's ``config`` is its config dataclass (``run_ppl(PplConfig(...))``): the one check of every ``run``
    function. None, a dict or another command's config was an AttributeError deep in the run (battery 19)."""
    if not isinstance(config, cls):
        hint = f" (build it with {cls.__name__}(**fields) or longrope.options.config_from_dict)" \
            if isinstance(config, dict) else ""
        raise UserError(f"{who} takes a {cls.__name__}, got {type(config).__name__}{hint}")
    if dataclasses.is_dataclass(config):
        # its checks again, on a copy: a config changed after it was built (cfg.steps = -1 on one reused from an
        # earlier run) ran 0 steps into a run folder, and a NaN learning rate or an unknown dtype reached torch
        # (a ValueError / KeyError traceback) where the constructor would have refused it in one line (battery 20d)
        dataclasses.replace(config)


def check_seed(seed: Any) -> None:
    """A library caller's seed is an integer in [0, 2^32 - 1], as ``--seed`` (the one check of the passkey keys'
    and the document sample's seed: -1 was numpy's ValueError traceback, 1.5 a TypeError or the draw of seed 1)."""
    if not is_integer(seed) or not 0 <= seed <= MAX_SEED:
        raise UserError(f"seed must be an integer in [0, {MAX_SEED:,}], got {shown(seed)}")


def check_loaded_model(model: Any, who: str, hint: str = "load it first: longrope.models.load_model(name)", *,
                       weights: bool = True) -> None:
    """A library caller's model is a loaded torch model (not its name, not None) and, with ``weights``, one whose
    weights are loaded (not on the meta device): the one check of every function that runs one. A name was
    'AttributeError: 'str' object has no attribute 'get_input_embeddings'' from evaluate_perplexity (battery 18), a
    model built on the meta device torch's "Tensor.item() cannot be called on meta tensors" (battery 20b)."""
    if not hasattr(model, "named_modules"):  # a torch module (a test double without a config too)
        shown = f" ({hint})" if isinstance(model, (str, os.PathLike)) else ""
        raise UserError(f"{who} takes a loaded transformers model, got {type(model).__name__}{shown}")
    parameters = getattr(model, "parameters", None)
    if weights and callable(parameters) and any(getattr(p, "is_meta", False) for p in parameters()):
        raise UserError(f"{who}: the model's weights are on the meta device (not loaded yet): load them first "
                        "(load_model, from_pretrained, or to_empty() and load_state_dict())")


def tokenizer_fit_problem(tokenizer: Any, rows: int) -> str | None:
    """Why ``tokenizer`` does not fit a model of ``rows`` token embeddings, or None: judged by its base vocabulary
    (``vocab_size``, without added tokens), the ids ordinary text becomes. Published models add special tokens past
    their embeddings that text never becomes (CodeLlama-34b: 32,004 tokens for 32,000 rows; Gemma 3): judged by the
    tokenizer's length they were refused (the reviews of battery 27c). One rule for loading a folder and for
    writing an export's tokenizer."""
    base = getattr(tokenizer, "vocab_size", None)
    if not isinstance(base, int) or isinstance(base, bool):
        base = len(tokenizer.get_vocab())
    if base <= rows:
        return None
    return f"its base vocabulary has {base:,} tokens but the model has {rows:,} token embeddings"


def check_loaded_tokenizer(tokenizer: Any, who: str) -> None:
    """A library caller's tokenizer is a loaded one: the one check of every function that encodes text (a name
    or None was "'str' object is not callable" from the passkey prompts, battery 18)."""
    if not callable(getattr(tokenizer, "get_vocab", None)):
        raise UserError(f"{who} takes a loaded tokenizer (longrope.data.tokenizer_loading.load_tokenizer('tiny'), or "
                        f"the one load_model returns), got {type(tokenizer).__name__}")


def check_chat_template(tokenizer: Any, model: Any = None) -> None:
    """Refuse a chat template asked of a tokenizer that has none (``model``: how the message names the model; its
    flag for a config's ``chat_template`` field): the one check of ``eval ruler --chat-template`` and ``generate
    --chat-template``, made before the weights load."""
    if getattr(tokenizer, "chat_template", None):
        return
    if model is None:
        raise UserError("the tokenizer has no chat template; give the prompt as it is, without one")
    raise ConfigError(("chat_template", "model"), "{name0}: the tokenizer of {name1} " + f"{model} has no chat "
                      "template; leave the flag out")


def check_sequence(value: Any, name: str, example: str) -> None:
    """A library caller's list argument is a non-empty list (or tuple, array): one value alone was "'int' object is
    not iterable", None "object of type 'NoneType' has no len()" (battery 18)."""
    if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or not hasattr(value, "__iter__"):
        raise UserError(f"{name} must be a list, got {shown(value)} (write {example} for one)")
    if len(value) == 0:  # passkey_accuracy(lengths=[]) measured nothing and returned an empty result (battery 19)
        raise UserError(f"{name} is empty: there is nothing to measure; give at least one (e.g. {example})")


def check_once(values: Any, name: str, what: str) -> None:
    """Each of a caller's ``values`` given once: a length or task listed twice was measured or averaged twice
    (battery 25c, 27)."""
    seen: set = set()
    for v in values:
        if v in seen:
            raise UserError(f"{name} gives {shown(v)} twice; give each {what} once")
        seen.add(v)


def check_int(cfg: Any, name: str, lo: int = 1, hi: int = MAX_COUNT, *, optional: bool = False) -> None:
    """Raise :class:`ConfigError` unless field ``name`` of ``cfg`` is an integer in ``[lo, hi]`` (or None
    when ``optional``): the one check of an integer setting, so the command line, a plan, a saved
    configuration and a Python caller are refused alike."""
    v = getattr(cfg, name)
    problem = None if optional and v is None else int_problem(v, lo, hi)
    if problem:
        raise ConfigError(name, "{name} " + problem)
    if v is not None and type(v) is not int:  # a numpy integer: recorded in config.json as the int it is
        setattr(cfg, name, int(v))


#: The field every command writes to (its run folder or output file): a new name, checked by :func:`check_shapes`.
OUTPUT_FIELD = "output"


#: A control character (C0 or DEL): what no name a user meant holds, and what a one-line message escapes.
CONTROL_CHARACTER = re.compile("[\x00-\x1f\x7f]")


def control_character(text: str) -> str | None:
    """The first control character of ``text`` (:data:`CONTROL_CHARACTER`), or None."""
    found = CONTROL_CHARACTER.search(text)
    return found.group() if found else None


def check_shapes(cfg: Any) -> None:
    """Refuse, naming the field, a Python caller's value of another shape than the command line gives: None for
    a required setting, a list setting that is not a list or tuple (a string was read letter by letter:
    ``factors="yarn.json"`` looked for a factor file 'y', ``tasks="vt"`` for a task 'v'; ``lengths=512`` was a
    TypeError), a switch that is not true or false (``quiet="no"`` was on). A path object (``pathlib.Path``)
    where a path string goes becomes that string: ``output=Path("e")`` passed the checks and the run failed writing
    config.json ("Object of type PosixPath is not JSON serializable"), after the model was loaded; ``data=Path(..)``
    was refused as naming no shard folder (battery 11a)."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        if f.metadata.get("nested"):
            continue
        inner, optional = _unwrap_optional(hints[f.name])
        given = getattr(cfg, f.name)
        value = _path_strings(given, inner)
        if value is not given:
            setattr(cfg, f.name, value)
        if value is None:
            if not optional and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f.name, "{name} is required, got None")
            if not optional:  # a setting with a default but no "unset" (sigma=None was '<' between int and None)
                raise ConfigError(f.name, "{name} must be given a value, got None (leave it out for its default)")
        elif inner is str and f.default is dataclasses.MISSING and isinstance(value, str) and not value.strip():
            # -o "" was read as the current folder ("--output . is the current folder"), --model "" as a hub id
            raise ConfigError(f.name, "{name} is required, got an empty text; give a value")
        elif f.name == OUTPUT_FIELD and isinstance(value, str) and control_character(value):
            raise ConfigError(f.name, "{name} " + shown(value) + " holds a control character ("
                              + repr(control_character(value)) + "), which no file name a user meant holds (a "
                              "line copied with its end, a script saved with CRLF line ends); give the name without it")
        elif _tuple_item(inner) is not None and not isinstance(value, (list, tuple)):
            raise ConfigError(f.name, "{name} must be a list or tuple of values, got " + shown(value)
                              + (f" (write [{value!r}] for one)" if isinstance(value, (str, int)) else ""))
        elif _tuple_item(inner) is not None and Ellipsis not in typing.get_args(inner) \
                and len(value) != len(typing.get_args(inner)):  # a pair (sigma_bounds=(0.1,)) was an IndexError
            raise ConfigError(f.name, "{name} must have " + f"{len(typing.get_args(inner))} values, got {shown(value)}")
        elif inner is bool and not isinstance(value, bool):
            if not _is_numpy_bool(value):
                raise ConfigError(f.name, "{name} must be True or False, got " + shown(value))
            setattr(cfg, f.name, bool(value))  # np.True_ (a numpy comparison's) was "must be True or False, got np.True_"
        elif not (f.metadata.get("length") or f.metadata.get("parse")):  # texts a later reader parses: theirs
            setattr(cfg, f.name, _checked_scalars(f.name, inner, value))
    for f in dataclasses.fields(cfg):
        if f.metadata.get("nested") and not isinstance(getattr(cfg, f.name), type(f.default_factory())):  # type: ignore[misc]
            kind = type(f.default_factory()).__name__  # type: ignore[misc]
            raise ConfigError(f.name, "{name} must be a " + f"{kind} (e.g. {kind}(population=16)), got "
                              + shown(getattr(cfg, f.name)))


def _checked_scalars(name: str, tp: Any, value: Any) -> Any:
    """``value`` of a text, number or integer field (or a list of them) as the command line gives it (path
    objects were read as their text before, :func:`_path_strings`); another type is a :class:`ConfigError`
    naming the field (``min_factor="1.1"`` was a TypeError, ``step=True`` a grid of 1, ``start_tokens=(0.5,)``
    a fractional n̂)."""
    item = _tuple_item(tp)
    if item is not None:
        if not isinstance(value, (list, tuple)):
            return value
        if _unwrap_optional(item)[0] is str and any(isinstance(v, str) and not v.strip() for v in value):
            # the command line drops empty items ("a,,b"); in Python lora_trainable=["", "embed"] matched every
            # parameter name (LoRA trained all weights), exclude=[""] read the current folder
            raise ConfigError(name, "{name} holds an empty text in " + shown(value) + "; give names only")
        return tuple(_checked_scalars(name, item, v) for v in value)
    if tp is str and not isinstance(value, str):
        raise ConfigError(name, "{name} must be text, got " + shown(value))
    if (tp is int and not is_integer(value)) or (tp is float and not is_number(value)):
        raise ConfigError(name, "{name} must be " + ("an integer" if tp is int else "a number") + ", got "
                          + shown(value))
    # plain numbers, as the command line gives them: np.float32(1e-4) passed here and a later check of the field
    # (isinstance float) refused it as "must be a finite number > 0, got np.float32(0.0001)" (battery 12b)
    return int(value) if tp is int else float(value) if tp is float else value


def _is_numpy_bool(value: Any) -> bool:
    """Whether ``value`` is a numpy bool (``np.True_``), read as the bool it is."""
    import numpy as np

    return isinstance(value, np.bool_)


def _path_strings(value: Any, tp: Any) -> Any:
    """``value`` with a path object read as the string it names, where ``tp`` (a field's type) takes strings."""
    if tp is str and isinstance(value, os.PathLike):
        return os.fspath(value)
    if _tuple_item(tp) is str and isinstance(value, (list, tuple)) and any(isinstance(v, os.PathLike) for v in value):
        return type(value)(os.fspath(v) if isinstance(v, os.PathLike) else v for v in value)
    return value


# ---------------------------------------------------------------------------------------------
# field introspection


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` → ``(X, True)``; anything else → ``(tp, False)``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(tp)) == 2:
            return args[0], True
    return tp, False


def _tuple_item(tp: Any) -> Any | None:
    """``tuple[X, ...]`` or ``tuple[X, X]`` → X; else None."""
    if typing.get_origin(tp) is tuple:
        args = [a for a in typing.get_args(tp) if a is not Ellipsis]
        if args and all(a == args[0] for a in args):
            return args[0]
    return None


def flag_of(name: str, f: dataclasses.Field | None = None) -> str:
    """The command-line spelling of a field (``--no-x`` for a switch that is on by default)."""
    if f is not None and f.metadata.get("flag"):
        return f.metadata["flag"]
    if f is not None and f.default is True:
        return "--no-" + name.replace("_", "-")
    return "--" + name.replace("_", "-")


def field_flags(cls: type) -> dict[str, str]:
    """``{field name: flag}`` for every field of ``cls`` and of its nested configs."""
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            out.update(field_flags(type(f.default_factory())))  # type: ignore[misc]
        else:
            out[f.name] = flag_of(f.name, f)
    return out


def parse_list(text: str, item: Callable[[str], Any], flag: str) -> tuple:
    """``"a,b,c"`` → ``(item(a), item(b), item(c))``; empty or ``none`` → ``()``."""
    parts = [t.strip() for t in str(text).split(",") if t.strip()]
    if len(parts) == 1 and parts[0].lower() == "none":
        return ()
    try:
        return tuple(item(p) for p in parts)
    except (TypeError, ValueError):
        kind = getattr(item, "__name__", "value")
        raise UserError(f"{flag} must be comma-separated {kind} values, got {shown(text)}") from None


# Lengths, as every command that takes one spells them (the command line, run configs, pipeline plans).
def _length_item(part: str, text: str, flag: str, ratios: bool) -> int | str:
    """One length: ``2048`` or ``4k`` (x 1024) → int; with ``ratios``, ``8x`` or ``1.5x`` (times the model's
    original context) → the normalized text ``"8x"``, resolved by :func:`resolve_ratios`."""
    if ratios and part[-1] in "xX":
        try:
            r = float(part[:-1])
        except ValueError:
            r = float("nan")
        if not 1 <= r <= MAX_TOKENS:
            raise UserError(f"{flag}: a context ratio is a number from 1 to {MAX_TOKENS:,} before 'x' (e.g. 8x), "
                            f"got {shown(part)}")
        return f"{r:g}x"
    mult, given = 1, part  # the message shows the item as typed: '0.5k' was echoed as '0.5' (battery 11a)
    if part[-1] in "kK":
        part, mult = part[:-1], 1024
    if part.isdigit() and len(part) > 18:  # past int()'s 4,300 digits it was "not a whole number" (battery 19)
        raise UserError(f"{flag} must be an integer in [2, {MAX_TOKENS:,}], got an integer of {len(part):,} digits")
    try:
        n = int(part) * mult
    except ValueError:
        eg = "2048, 4k or 8x" if ratios else "2048 or 4k"
        raise UserError(f"{flag}: a length is a whole number of tokens (e.g. {eg}), got {shown(given)}") from None
    if n < 2:
        raise UserError(f"{flag}: a length is at least 2 tokens, got {n}")
    if n > MAX_TOKENS:  # checked later by check_length as "length must be at most ...", without naming the flag
        raise UserError(f"{flag}: a length is at most {MAX_TOKENS:,} tokens, got {n:,}")
    return n


def parse_lengths(text: str, flag: str = "--lengths", *, ratios: bool = False) -> list:
    """``"2048,4k,8K"`` → ``[2048, 4096, 8192]`` (sorted, unique); anything else is a one-line error.
    With ``ratios`` an item may also be ``8x`` (kept as ``"8x"`` until :func:`resolve_ratios`)."""
    out = [_length_item(t, text, flag, ratios) for t in (t.strip() for t in str(text).split(",")) if t]
    if not out:
        raise UserError(f"{flag} is empty; give e.g. {flag} 2048,4096")
    if all(isinstance(n, int) for n in out):
        return sorted(set(out))
    return list(dict.fromkeys(out))


def parse_length(text: str, flag: str, *, ratios: bool = False) -> int | str:
    """One length as ``--lengths`` spells them (``16384``, ``16k``; ``8x`` with ``ratios``); anything else
    is a one-line error."""
    if "," in str(text):
        raise UserError(f"{flag} takes one length (e.g. 16k), got {shown(text)}")
    return parse_lengths(text, flag, ratios=ratios)[0]


def token_count(flag: str) -> Callable[[str], int]:
    """The parser of a count of tokens where a ratio of the context does not apply (a stride, a chunk, L itself):
    ``2048`` or ``2k``; its bounds are the field's check."""

    def parse(text: str) -> int:
        t = str(text).strip()
        mult = 1024 if t[-1:] in ("k", "K") else 1
        try:
            return int(t[:-1] if mult > 1 else t) * mult
        except ValueError:
            raise UserError(f"{flag} must be a number of tokens (e.g. 2048 or 2k), got {shown(text)}") from None

    parse.__name__ = "token count"
    return parse


def is_ratio(value: Any) -> bool:
    """Whether ``value`` is a context ratio (``"8x"``) as :func:`parse_lengths` keeps them."""
    return isinstance(value, str) and value[-1:] in ("x", "X")


def _length_value(value: Any, f: dataclasses.Field, tp: Any) -> Any:
    """A saved or planned value of a ``length`` field, its texts (``"16k"``, ``"8x"``) read as on the command line."""
    flag = "{name}"  # the message names the field as its reader spells it (ConfigError)
    try:
        if isinstance(value, str):
            tuple_field = _tuple_item(_unwrap_optional(tp)[0]) is not None
            return tuple(parse_lengths(value, flag, ratios=True)) if tuple_field \
                else parse_length(value, flag, ratios=True)
        if isinstance(value, (list, tuple)):
            return [parse_length(v, flag, ratios=True) if isinstance(v, str) else v for v in value]
    except UserError as exc:
        raise ConfigError(f.name, str(exc)) from None
    return value


def _token_value(value: Any, f: dataclasses.Field) -> Any:
    """A saved or planned value of a token-count field (``--tokens-per-step`` ...), its text (``"4k"``) read as
    on the command line; any other value as it is."""
    parse = f.metadata.get("parse")
    if not isinstance(value, str) or getattr(parse, "__name__", None) != "token count":
        return value
    try:
        return parse(value)
    except UserError as exc:
        raise ConfigError(f.name, str(exc)) from None


def resolve_ratios(cfg: Any, original_length: Callable[[], int]) -> None:
    """Replace every context ratio (``"8x"``) in the ``length`` fields of ``cfg`` by its tokens,
    ``round(r * original_length())``; ``original_length`` is only called when a ratio is there (it reads
    the model's config). Texts (``"16k"``, a Python caller's) are read first, as the command line reads them.
    Tuples of lengths end sorted and unique."""
    hints = _hints(type(cfg))
    for f in dataclasses.fields(cfg):
        if not f.metadata.get("length"):
            continue
        value = getattr(cfg, f.name)
        if isinstance(value, str) or (isinstance(value, (tuple, list)) and any(isinstance(v, str) for v in value)):
            value = _length_value(value, f, hints[f.name])
            setattr(cfg, f.name, tuple(value) if isinstance(value, list) else value)
        items = value if isinstance(value, (tuple, list)) else (value,)
        if not any(is_ratio(v) for v in items):
            continue
        n = original_length()
        resolved = [int(round(float(v[:-1]) * n)) if is_ratio(v) else v for v in items]
        for v, r in zip(items, resolved):
            if is_ratio(v) and r > MAX_TOKENS:  # was "length must be at most ..." from a later check, no flag named
                raise UserError(f"{flag_of(f.name, f)}: {v} of the model's {n:,} tokens is {r:,} tokens, more than "
                                f"the {MAX_TOKENS:,} a length may be; give a smaller ratio")
        setattr(cfg, f.name, tuple(sorted(set(resolved))) if isinstance(value, (tuple, list)) else resolved[0])


#: ``NAME=~...``: a tilde after the ``=`` of a word such as ``search=~/books`` (bash reads it so in an assignment)
_NAMED_TILDE = re.compile(r"([A-Za-z_][\w-]*=)(~.*)", re.S)


def user_path_text(text: str) -> str:
    """``text`` (a path as typed) with a leading ``~`` or ``~user``, or one after ``NAME=``, read as that home
    folder. The shell does this for ``--factors ~/f.json`` but not for ``--factors=~/f.json``, ``-o '~/x'`` or
    ``search=~/books``: those named a folder called '~' in the current one (only ``--model`` expanded it)."""
    from longrope.io import expand_user

    named = _NAMED_TILDE.fullmatch(text)
    if named:
        return named.group(1) + user_path_text(named.group(2))
    return os.fspath(expand_user(text)) if text.startswith("~") else text


def _converter(tp: Any, f: dataclasses.Field, flag: str) -> Callable[[str], Any]:
    conv = _plain_converter(tp, f, flag)
    if f.metadata.get("path"):
        conv = _as_user_paths(conv)

    def convert(text: str) -> Any:  # argparse reports ArgumentTypeError as one line, naming the flag
        try:
            return conv(text)
        except UserError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(conv, "__name__", "value")
    return convert


def _as_user_paths(conv: Callable[[str], Any]) -> Callable[[str], Any]:
    """``conv`` (a path field's conversion) with each path it gives read by :func:`user_path_text`."""

    def convert(text: str) -> Any:
        value = conv(text)
        if isinstance(value, tuple):
            return tuple(user_path_text(v) if isinstance(v, str) else v for v in value)
        return user_path_text(value) if isinstance(value, str) else value

    convert.__name__ = getattr(conv, "__name__", "value")
    return convert


def _plain_converter(tp: Any, f: dataclasses.Field, flag: str) -> Callable[[str], Any]:
    parse = f.metadata.get("parse")
    if parse is not None:
        return parse
    inner, _ = _unwrap_optional(tp)
    item = _tuple_item(inner)
    if f.metadata.get("length"):
        if item is not None:
            return lambda text: tuple(parse_lengths(text, flag, ratios=True))
        return lambda text: parse_length(text, flag, ratios=True)
    if item is not None:
        return lambda text: parse_list(text, item, flag)
    if inner in (int, float, str):
        return inner
    raise TypeError(f"field {f.name}: type {tp!r} has no command-line form; give parse=")


# ---------------------------------------------------------------------------------------------
# argparse


def _default_text(f: dataclasses.Field, defaults: Any = None) -> str | None:
    d = getattr(defaults, f.name) if defaults is not None else f.default
    # a nested config's own default (not one its command overrides) is shown as the field declares it: search's
    # --patience (None: the strategy's stall rule) showed no default at all
    if f.metadata.get("default_text") is not None and (defaults is None or d is f.default or d == f.default):
        return f.metadata["default_text"]
    if d is dataclasses.MISSING or d is None or d is False or d == ():
        return None
    if isinstance(d, tuple):
        return ",".join(str(x) for x in d)
    return str(d)


class _Once(argparse.Action):
    """An option tagged ``once`` (one value here, several in another command) given twice with two values is
    refused; other options keep argparse's "the last one counts". ``export --factors a.json --factors b.json``
    exported b without a word, where ``eval --factors`` takes both."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        if hasattr(namespace, self.dest) and getattr(namespace, self.dest) != values:
            raise argparse.ArgumentError(self, f"given twice ({getattr(namespace, self.dest)!r}, then {values!r}); "
                                               "it takes one value: give it once")
        setattr(namespace, self.dest, values)


def add_options(parser: argparse.ArgumentParser, cls: type, *, groups: dict | None = None,
                defaults: Any = None) -> None:
    """Add one option per (nested) field of ``cls`` to ``parser``; defaults stay in the dataclass
    (``defaults``: an instance whose values ``--help`` shows instead, for nested configs)."""
    hints = _hints(cls)
    groups = {} if groups is None else groups
    for f in dataclasses.fields(cls):
        meta = f.metadata
        if not meta.get("cli", True):
            continue
        if "help" not in meta:
            raise TypeError(f"{cls.__name__}.{f.name} has no help text; declare it with option()")
        if meta.get("nested"):
            inst = f.default_factory()  # type: ignore[misc]
            add_options(parser, type(inst), groups=groups, defaults=inst)
            continue
        target = parser
        if meta.get("group"):
            if meta["group"] not in groups:
                groups[meta["group"]] = parser.add_argument_group(meta["group"])
            target = groups[meta["group"]]
        flag = flag_of(f.name, f)
        names = [flag] + ([meta["short"]] if meta.get("short") else [])
        tp = hints[f.name]
        helptext = meta["help"]
        if f.default is dataclasses.MISSING:
            helptext += " (required)"
        elif (dt := _default_text(f, defaults)) is not None and tp is not bool:
            helptext += f" (default {dt})"
        helptext = helptext.replace("%", "%%")
        if tp is bool:
            action = "store_false" if f.default is True and not meta.get("flag") else "store_true"
            if action == "store_false":
                helptext += " (on by default; this turns it off)"
            target.add_argument(*names, dest=f.name, action=action, default=argparse.SUPPRESS, help=helptext)
            for alias in meta.get("aliases", ()):  # an older spelling: still read, not shown
                target.add_argument(alias, dest=f.name, action=action, default=argparse.SUPPRESS,
                                    help=argparse.SUPPRESS)
            continue
        choices = meta.get("choices")
        if callable(choices):
            choices = tuple(choices())
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": helptext,
                                  "type": _converter(tp, f, flag)}
        if choices:
            kwargs["choices"] = choices
        if meta.get("multiple"):
            item = _tuple_item(_unwrap_optional(tp)[0])
            kwargs.update(nargs="+", action="extend", type=user_path_text if meta.get("path") and item is str else item)
        elif meta.get("once"):
            kwargs["action"] = _Once
        if meta.get("metavar"):
            kwargs["metavar"] = meta["metavar"]
        elif not choices:
            kwargs["metavar"] = {int: "N", float: "X"}.get(_unwrap_optional(tp)[0], "TEXT")
        target.add_argument(*names, **kwargs)
        for alias in meta.get("aliases", ()):  # an older spelling: still read, not shown
            target.add_argument(alias, **{**kwargs, "help": argparse.SUPPRESS})


def _given(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    """The values the user typed, as a (nested) dict keyed like :func:`config_to_dict`."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if f.metadata.get("nested"):
            sub = _given(args, type(f.default_factory()))  # type: ignore[misc]
            if sub:
                out[f.name] = sub
        elif hasattr(args, f.name):
            v = getattr(args, f.name)
            out[f.name] = tuple(v) if isinstance(v, list) else v
    return out


def _merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def config_from_args(cls: type, args: argparse.Namespace, *, saved: dict | None = None) -> Any:
    """Defaults ← ``saved`` (a :func:`config_to_dict` of an earlier run) ← the flags given. A saved field tagged
    ``follows: F`` (a value resolved from the default of F, or of any of the fields F names: the retrieval
    weight from the fitness, the fitness from the strategy) is dropped when F changes — given another value, or
    dropped itself — and the field is not given: it is resolved again, as a fresh start resolves it. A field also
    tagged ``keep`` (``keep(recorded, new)``: the recorded and the new values, leaders included) is dropped only
    where that says False: a fitness the run chose (``--fitness ppl`` under steady, whose own is joint) stays, and
    is checked with the new leaders. Leaders come before their followers in the class."""
    given = _given(args, cls)
    saved = dict(saved or {})
    recorded, new = dict(saved), _merge(saved, given)
    changed = {k for k, v in given.items() if v != saved.get(k)}
    for f in dataclasses.fields(cls):
        leaders = f.metadata.get("follows") or ()
        leaders = (leaders,) if isinstance(leaders, str) else tuple(leaders)
        keep = f.metadata.get("keep")
        if f.name not in given and changed.intersection(leaders) and f.name in saved \
                and not (keep is not None and keep(recorded, new)):
            saved.pop(f.name)
            changed.add(f.name)
    values = _merge(saved, given)
    return config_from_dict(cls, values)


# ---------------------------------------------------------------------------------------------
# JSON round trip


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain JSON-able dict of a config (tuples become lists, nested configs dicts)."""

    def plain(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (tuple, list)):
            return [plain(x) for x in v]
        return v

    return plain(cfg)


def _coerce(tp: Any, value: Any, name: str) -> Any:
    inner, optional = _unwrap_optional(tp)
    if value is None:
        if optional:
            return None
        raise ConfigError(name, "{name} must not be empty")
    item = _tuple_item(inner)
    if item is not None:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(name, "{name} must be a list, got " + repr(value))
        n = len(typing.get_args(inner))
        if Ellipsis not in typing.get_args(inner) and len(value) != n:
            raise ConfigError(name, "{name} must have " + f"{n} values, got {list(value)!r}")
        return tuple(_coerce(item, v, name) for v in value)
    if inner is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if inner in (int, float, str, bool) and not isinstance(value, inner):
        raise ConfigError(name, "{name} must be " + f"{inner.__name__}, got {shown(value)}")
    if inner is int and isinstance(value, bool):
        raise ConfigError(name, "{name} must be " + f"int, got {shown(value)}")
    return value


def config_from_dict(cls: type, values: dict[str, Any]) -> Any:
    """Build ``cls`` from a (possibly partial) dict; unknown keys and missing required fields are
    :class:`~longrope.errors.ConfigError` s naming the field."""
    if not isinstance(values, dict):
        raise UserError(f"a {cls.__name__} must be a JSON object, got {type(values).__name__}")
    hints = _hints(cls)
    known = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(unknown[0], "{name} is not a setting of this command (saved by another version?)")
    kwargs: dict[str, Any] = {}
    for name, f in known.items():
        if name not in values:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(name, "{name} is required")
            continue
        if f.metadata.get("nested"):
            if not isinstance(values[name], dict):
                raise ConfigError(name, "{name} must be a JSON object of settings, got " + shown(values[name]))
            inst = f.default_factory()  # type: ignore[misc]
            kwargs[name] = config_from_dict(type(inst), {**config_to_dict(inst), **values[name]})
        elif f.metadata.get("length"):
            value = _length_value(values[name], f, hints[name])
            items = value if isinstance(value, (list, tuple)) else (value,)
            kwargs[name] = (tuple(value) if isinstance(value, list) else value) if any(map(is_ratio, items)) \
                else _coerce(hints[name], value, name)
        else:
            kwargs[name] = _coerce(hints[name], _token_value(values[name], f), name)
    return cls(**kwargs)


def renamed_keys(saved: dict, renames: dict[str, str]) -> dict:
    """A recorded configuration with its keys renamed (``{old: new}``): how a config that renamed a field
    keeps reading the run folders written before (a key given both ways keeps the new one)."""
    if not isinstance(saved, dict):
        return saved
    out = {renames.get(k, k): v for k, v in saved.items() if not (k in renames and renames[k] in saved)}
    return out


def config_to_argv(cfg: Any) -> list[str]:
    """Command-line arguments that rebuild ``cfg`` (every field spelled out, unset ones left out),
    for records that must replay a run even if a later version changes a default."""
    out: list[str] = []
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if f.metadata.get("nested"):
            out += config_to_argv(value)
            continue
        if not f.metadata.get("cli", True) or value is None:
            continue
        flag = flag_of(f.name, f)
        if isinstance(value, bool):
            if f.default is True and not f.metadata.get("flag"):
                out += [] if value else [flag]
            elif value:
                out.append(flag)
            continue
        if isinstance(value, tuple):
            if not value:
                continue
            out += [flag, *map(str, value)] if f.metadata.get("multiple") else [flag, ",".join(map(str, value))]
            continue
        out += [flag, str(value)]
    return out
