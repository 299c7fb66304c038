"""The RoPE part of a Hugging Face config, read in one place.

A config is a ``config.json`` dict or a transformers config object (attributes): both are read
through :func:`getter`. transformers 5.x keeps the rope settings in ``rope_parameters`` (with
``rope_theta``), 4.x in ``rope_scaling`` plus a top-level ``rope_theta``; either may be one dict or a
per-layer-type dict of dicts (``{"full_attention": {...}, ...}``).

Used by :mod:`longrope.models.families` (the RoPE facts of any model: :class:`~longrope.models.RopeInfo`)
and by :meth:`longrope.rope.FactorSet.from_hf_config` (the longrope factors a config carries).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping
from typing import Any

from longrope.errors import UserError
from longrope.rope.attention import resolve_attention_factor
from longrope.rope.frequencies import check_rope_theta, rotary_dim
from longrope.rope.values import (
    MAX_LENGTH,
    RotaryDimMismatch,
    check_list_lengths,
    factor_array,
    int_field,
    real_number,
)

__all__ = [
    "LONGROPE_TYPES",
    "SCALED_TYPES",
    "START_TOKENS_CONFIG_KEY",
    "getter",
    "head_dim",
    "longrope_fields",
    "longrope_parameters",
    "original_length",
    "partial_rotary_factor",
    "rope_parameters",
    "rope_theta",
    "rope_type",
    "rotary_dim_of",
]

#: Where ``longrope export`` records n̂ in a Hugging Face config.json (no runtime has a key for it;
#: stock runtimes ignore this one). Read back by :func:`longrope_fields`.
START_TOKENS_CONFIG_KEY = "longrope_start_tokens"
#: rope types transformers treats as LongRoPE ("su" is the name early Phi-3 configs used).
LONGROPE_TYPES = ("longrope", "su")
#: rope types whose ``original_max_position_embeddings`` is the pre-training length L.
SCALED_TYPES = ("llama3", "yarn", "longrope")


def getter(config: Any) -> Callable[[str], Any]:
    """``get(key)``: the value of ``key`` in a config dict or on a config object (None when absent)."""
    if isinstance(config, Mapping):
        return config.get
    return lambda key: getattr(config, key, None)


def rope_type(params: Mapping[str, Any]) -> str | None:
    """A rope dict's type (``rope_type``, or 4.x's ``type``), None when it names none."""
    t = params.get("rope_type", params.get("type"))
    return t if isinstance(t, str) else None


def rope_parameters(config: Any) -> Mapping[str, Any] | None:
    """The config's flat rope parameter dict (5.x ``rope_parameters``; 4.x ``rope_scaling`` + ``rope_theta``);
    None when the config has no RoPE."""
    get = getter(config)
    params = get("rope_parameters")
    if isinstance(params, Mapping) and params:
        return params
    theta = get("rope_theta")
    if theta is None:
        return None
    scaling = get("rope_scaling")
    merged = dict(scaling) if isinstance(scaling, Mapping) else {}
    merged.setdefault("rope_type", merged.get("type", "default"))
    merged.setdefault("rope_theta", theta)
    return merged


def head_dim(config: Any) -> Any:
    """The config's ``head_dim`` as written, else ``hidden_size // num_attention_heads`` (both positive
    integers), else None."""
    get = getter(config)
    value = get("head_dim")
    if value is not None:
        return value
    hidden, heads = get("hidden_size"), get("num_attention_heads")
    if isinstance(hidden, int) and isinstance(heads, int) and heads > 0:
        return hidden // heads
    return None


def partial_rotary_factor(config: Any, params: Mapping[str, Any]) -> Any:
    """The share of each head that rotates: the rope dict's, else the config's, else 1.0."""
    prf = params.get("partial_rotary_factor", getter(config)("partial_rotary_factor"))
    return 1.0 if prf is None else prf


def rope_theta(config: Any, params: Mapping[str, Any]) -> Any:
    """The rope base as written: the rope dict's ``rope_theta``, else the config's (None when neither)."""
    return params.get("rope_theta", getter(config)("rope_theta"))


def original_length(config: Any, params: Mapping[str, Any]) -> Any:
    """L as written, or None when the rope type does not say (the model then runs at its
    ``max_position_embeddings``). LongRoPE follows transformers: the top-level
    ``original_max_position_embeddings`` wins over the rope dict's (Phi-3 keeps it there); the other
    scaled types (llama3, yarn) take the rope dict's first."""
    kind = (rope_type(params) or "").lower()
    top, inner = getter(config)("original_max_position_embeddings"), params.get("original_max_position_embeddings")
    if kind in LONGROPE_TYPES:
        return top if top is not None else inner
    if kind in SCALED_TYPES:
        return inner if inner is not None else (top if isinstance(top, int) else None)
    return None


def longrope_parameters(config: Any, source: str) -> Mapping[str, Any]:
    """The longrope rope dict of a config; rope_parameters (5.x) and rope_scaling (4.x) must agree."""
    get = getter(config)
    found: dict[str, Mapping[str, Any]] = {}
    other_types: list[str] = []
    for key in ("rope_parameters", "rope_scaling"):
        value = get(key)
        if value is None:
            continue
        if not isinstance(value, Mapping):
            raise UserError(f"{source}: {key} must be a JSON object, got {type(value).__name__}")
        candidates: list[Mapping[str, Any]]
        if (
            rope_type(value) is None
            and value
            and all(isinstance(v, Mapping) or v is None for v in value.values())
        ):
            # 5.x per-layer-type form: {"full_attention": {...}, "sliding_attention": {...}}
            candidates = [v for v in value.values() if isinstance(v, Mapping)]
        else:
            candidates = [value]
        longrope = [c for c in candidates if (rope_type(c) or "").lower() in LONGROPE_TYPES]
        other_types += [str(rope_type(c)) for c in candidates if c not in longrope]
        if len(longrope) > 1:
            first = longrope[0]
            if any(c.get("long_factor") != first.get("long_factor") for c in longrope[1:]):
                raise UserError(f"{source}: {key} holds several different longrope entries; not supported")
        if longrope:
            found[key] = longrope[0]
    if not found:
        kinds = ", ".join(sorted(set(other_types))) or "none"
        raise UserError(f"{source} has no longrope rope scaling (rope type: {kinds}); nothing to load: give a "
                        "factors.json instead ('longrope baseline --model MODEL --method pi|ntk|yarn|llama3' writes one; "
                        "'none' is the model with its own scaling as it loads)")
    if len(found) == 2:
        a, b = found["rope_parameters"], found["rope_scaling"]
        for k in ("long_factor", "short_factor"):
            if a.get(k) is not None and b.get(k) is not None and a[k] != b[k]:
                raise UserError(f"{source}: rope_parameters and rope_scaling disagree on {k}")
        return {**b, **a}
    return next(iter(found.values()))


def rotary_dim_of(config: Any, params: Mapping[str, Any], source: str) -> int | None:
    """The model's rotary dim from its head dim and partial_rotary_factor, checked (None: no head dim)."""
    dim = head_dim(config)
    if dim is None:
        return None
    prf = partial_rotary_factor(config, params)
    if isinstance(dim, numbers.Integral) and not isinstance(dim, bool):
        dim = int_field(dim, f"{source}: head_dim", 2)
    if isinstance(prf, numbers.Real) and not isinstance(prf, bool):
        prf = real_number(prf, f"{source}: partial_rotary_factor")
    try:
        return rotary_dim(dim, prf)
    except UserError as e:
        raise UserError(f"{source}: {e}") from None


def _lengths(config: Any, params: Mapping[str, Any], source: str, where: str) -> tuple[int, int, float | None]:
    """``(L, L', factor)`` of a longrope config: L' is ``max_position_embeddings``, else L × ``factor``."""
    L = original_length(config, params)
    if L is None:
        raise UserError(f"{source} has no original_max_position_embeddings (top level or in the rope scaling)")
    L = int_field(L, f"{source}: original_max_position_embeddings", 1)
    factor = params.get("factor")
    if factor is not None:
        factor = real_number(factor, f"{where}: factor")
        if factor <= 0:
            raise UserError(f"{where}: factor must be > 0, got {factor}")
    L_target = getter(config)("max_position_embeddings")
    if L_target is None:
        if factor is None:
            raise UserError(f"{source} has neither max_position_embeddings nor a rope scaling factor")
        L_target = L * factor
        if L_target > MAX_LENGTH:
            raise UserError(f"{where}: factor {factor} × L {L} is beyond {MAX_LENGTH} positions")
        L_target = int(round(L_target))
    return L, int_field(L_target, f"{source}: max_position_embeddings", 1), factor


def longrope_fields(config: Any, *, source: str = "config.json", rotary_dim: int | None = None) -> dict[str, Any]:
    """The :class:`~longrope.rope.FactorSet` fields of the longrope factors a config carries.

    Follows transformers: top-level ``original_max_position_embeddings`` wins over the one in the rope
    dict (:func:`original_length`); without ``attention_factor`` the temperature comes from ``factor``
    when given, else from ``max_position_embeddings / L`` — when ``factor`` differs from L'/L the value
    transformers would use is stored explicitly, so behaviour is preserved. ``rotary_dim``: the model's,
    when known (a list of another length is a :class:`~longrope.rope.values.RotaryDimMismatch`).
    """
    params = longrope_parameters(config, source)
    where = f"{source}: longrope rope scaling"
    for key in ("long_factor", "short_factor"):
        if key not in params:
            raise UserError(f"{where} has no {key!r}")
    check_list_lengths(params, rotary_dim, "the model's rotary dim", prefix=f"{where}: ", error=RotaryDimMismatch)
    check_list_lengths(params, rotary_dim_of(config, params, source), "the model's rotary dim", prefix=f"{where}: ")
    L, L_target, factor = _lengths(config, params, source, where)
    theta = rope_theta(config, params)
    provenance: dict[str, Any] = {"source": source, "format": "hf-config"}
    if theta is None:
        theta = 10000.0  # transformers' default_theta for Llama/Phi-3-like models
        provenance["rope_theta_defaulted"] = True
    theta = real_number(theta, f"{source}: rope_theta")
    attention = params.get("attention_factor")
    if attention is None and factor is not None:
        s_hf = float(factor)
        if not math.isclose(s_hf, L_target / L, rel_tol=1e-12):
            attention = resolve_attention_factor("longrope", s_hf, L)
            provenance["attention_factor_from_factor"] = s_hf
    for extra in ("short_mscale", "long_mscale"):
        if extra in params:  # vLLM reads these; transformers does not (docs/method.md §8)
            provenance[extra] = params[extra]
    start = (config.get(START_TOKENS_CONFIG_KEY, 0) if isinstance(config, Mapping)
             else getattr(config, START_TOKENS_CONFIG_KEY, 0))
    return dict(
        long_factor=factor_array(params["long_factor"], f"{where}.long_factor"),
        short_factor=factor_array(params["short_factor"], f"{where}.short_factor"),
        start_tokens=int_field(start, f"{source}: {START_TOKENS_CONFIG_KEY}", 0),
        attention_factor=attention,
        original_max_position_embeddings=L,
        max_position_embeddings=L_target,
        rope_theta=check_rope_theta(theta, name=f"{source}: rope_theta"),
        method="longrope",
        provenance=provenance,
    )


def is_model_config(doc: Any) -> bool:
    """Whether a parsed config.json configures a model (transformers writes ``model_type``; older files only
    ``architectures``), as opposed to a longrope run record or anything else."""
    return isinstance(doc, Mapping) and "format" not in doc and ("model_type" in doc or "architectures" in doc)
