"""Which model families the adapter supports, and what their RoPE looks like (``RopeInfo``).

Everything here reads a transformers config (through :mod:`longrope.formats.hf_config`, the one
reader of a config's RoPE part) or a loaded model and nothing else; it never touches weights, so ``longrope inspect`` and ``longrope baseline`` stay cheap.

Supported means: the decoder computes ``position_embeddings = self.rotary_emb(hidden, position_ids)``
once and hands ``(cos, sin)`` to every attention layer (transformers ≥ 4.48, all of 5.x), so
replacing that one module changes the RoPE of every layer (see :mod:`longrope.models.patch`).
Each family below was checked against transformers 5.24 with tiny random models in
``tests/models``; a family is listed only once such a test exists.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import numbers
from collections.abc import Mapping
from typing import Any

from longrope.errors import UserError
from longrope.formats import hf_config
from longrope.options import check_loaded_model
from longrope.rope.values import MAX_LENGTH, int_field, short_repr

__all__ = [
    "FAMILIES",
    "Family",
    "RopeInfo",
    "rope_info_from_config",
    "inspect_model",
    "require_supported",
    "require_rope",
    "has_rope",
    "attn_implementation_for",
    "supported_families_text",
]


@dataclasses.dataclass(frozen=True)
class Family:
    """How one ``model_type`` applies RoPE."""

    model_type: str
    """transformers' ``config.model_type``."""
    name: str
    """Human name shown in messages."""
    honours_partial_rotary: bool
    """Whether attention rotates only the first ``rotary_dim`` channels (Phi-3 slices by
    ``cos.shape[-1]``). Other families rotate the whole head: a ``partial_rotary_factor`` in their
    config would make the cos/sin width disagree with the head and is refused."""
    attn_implementation: str = "sdpa"
    """The attention implementation :func:`longrope.models.load_model` asks transformers for by
    default. SDPA where transformers offers it (fast, exact); Gemma 2 soft-caps its attention
    logits, which transformers' SDPA path does not do, so it refuses SDPA for Gemma 2 ("does not
    support an attention implementation through torch.nn.functional.scaled_dot_product_attention"):
    eager there."""
    gguf_arch: str = "llama"
    """The llama.cpp architecture a GGUF of this family is written as / read from (``general.architecture``).
    Mistral maps to ``llama`` as in llama.cpp's converter; Qwen2 (Llama with q/k/v biases, which the ``llama``
    architecture accepts) is written as ``llama`` because llama.cpp's own ``qwen2`` does not read the factors."""
    gguf_factors: bool = True
    """Whether llama.cpp reads LongRoPE factor tensors for :attr:`gguf_arch`. Its qwen3/gemma/gemma2
    architectures read neither rope_factors_long/short nor rope_freqs (a file with them fails to load:
    "wrong number of tensors"), and their layouts (q/k norms; Gemma's GELU MLP, embedding scale,
    soft-capping) have no llama-architecture equivalent: a GGUF export of them is refused. Checked with
    the llama.cpp that node-llama-cpp 3.21.1 bundles."""
    resets_cache_at_switch: bool = False
    """Whether transformers' model class drops the KV cache and re-prefills when generation crosses L
    (Phi-3's own ``prepare_inputs_for_generation``); other families keep their cached keys."""
    hf4_three_key_scaling: bool = False
    """Whether transformers 4.x accepts only ``type``/``short_factor``/``long_factor`` in this family's
    ``rope_scaling`` and derives m itself (Phi-3): the export writes that form when m is the default."""


FAMILIES: dict[str, Family] = {
    f.model_type: f
    for f in (
        Family("llama", "Llama", False),
        Family("mistral", "Mistral", False),
        Family("qwen2", "Qwen2", False),
        Family("qwen3", "Qwen3", False, gguf_arch="qwen3", gguf_factors=False),
        Family("phi3", "Phi-3", True, gguf_arch="phi3", resets_cache_at_switch=True, hf4_three_key_scaling=True),
        Family("gemma", "Gemma", False, gguf_arch="gemma", gguf_factors=False),
        Family("gemma2", "Gemma 2", False, attn_implementation="eager", gguf_arch="gemma2", gguf_factors=False),
    )
}

# Decoders compute position_embeddings once and pass them to every layer from this version on
# (the adapter is tested with 5.24; the structural check in inspect_model guards the rest).
MIN_TRANSFORMERS = (4, 48)

# Architectures that position tokens without RoPE, to give a precise reason instead of "unknown".
_NO_ROPE = {
    "gpt2": "learned absolute position embeddings",
    "gpt_bigcode": "learned absolute position embeddings",
    "opt": "learned absolute position embeddings",
    "bert": "learned absolute position embeddings",
    "bloom": "ALiBi attention biases",
    "mpt": "ALiBi attention biases",
    "falcon": "ALiBi or its own RoPE layout",
}


def attn_implementation_for(model_type: str) -> str | None:
    """The default attention implementation for ``model_type`` (None: transformers' own choice)."""
    family = FAMILIES.get(model_type)
    return family.attn_implementation if family is not None else None


def supported_families_text() -> str:
    """``"Llama (llama), Mistral (mistral), …"`` for error messages."""
    return ", ".join(f"{f.name} ({f.model_type})" for f in FAMILIES.values())


@dataclasses.dataclass(frozen=True)
class RopeInfo:
    """The RoPE facts of one model, as ``longrope inspect`` prints them."""

    model_type: str
    """``config.model_type`` ("llama", "phi3", ...)."""
    family: str | None
    """Family name when supported ("Llama"), else None."""
    head_dim: int | None
    """Channels per attention head."""
    rotary_dim: int | None
    """Rotated channels per head, d = head_dim · partial_rotary_factor (Phi-3); len(factors) = d/2."""
    rope_theta: float | None
    """The rope base b."""
    original_max_position_embeddings: int | None
    """L: the original (pre-training) context; from the present scaling's original length, else
    ``max_position_embeddings``."""
    max_position_embeddings: int | None
    """The config's ``max_position_embeddings`` (L' when the model already carries scaling)."""
    rope_scaling: dict[str, Any] | None
    """The rope parameters the model already has when their type is not "default" (e.g. Llama 3.1's
    ``llama3`` or Phi-3-128k's ``longrope``), else None. Installed factors replace them."""
    supported: bool
    """Whether :func:`longrope.models.install_factors` accepts this model."""
    reason: str | None
    """Why not, when ``supported`` is False."""

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def has_rope(config: Any) -> bool:
    """Whether the config positions tokens with a rotary embedding (rope parameters or theta)."""
    return hf_config.rope_parameters(config) is not None


def require_rope(config: Any, *, label: str | None = None) -> None:
    """Raise a one-line :class:`UserError` when the model has no RoPE (GPT-2, OPT, BLOOM, ...).

    Loading such a model would let a command measure it at short lengths as if nothing were
    wrong, while nothing this package does (factors, search, export) applies to it.
    """
    if has_rope(config):
        return
    model_type = str(hf_config.getter(config)("model_type") or "unknown")
    why = _NO_ROPE.get(model_type, "no rotary position embedding in its config")
    who = f"{label}: " if label else ""
    raise UserError(f"{who}model type {model_type!r} has no RoPE ({why}), so context extension by RoPE "
                    f"rescaling does not apply; use a RoPE model: {supported_families_text()}")


def _head_dim(config: Any) -> int | None:
    head_dim = hf_config.head_dim(config)
    return head_dim if isinstance(head_dim, int) and not isinstance(head_dim, bool) and head_dim > 0 else None


def _real_or_none(value: Any) -> float | None:
    """A config's real number as a float (NaN and inf kept, for the range check to name), None for anything else
    (a string, a list, a boolean)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except (OverflowError, ValueError):
        return math.inf


def _config_length(value: Any, field: str) -> tuple[int | None, str | None]:
    """``(length, None)`` for a config's context length written as an integer in [1, MAX_LENGTH] (4096.0 too),
    ``(None, None)`` when it is not written, ``(None, why)`` otherwise."""
    if value is None:
        return None, None
    try:
        return int_field(value, field, 1, MAX_LENGTH), None
    except UserError:
        return None, f"{field} {short_repr(value)}, not a context length in [1, {MAX_LENGTH:,}]"


#: What to do about a RoPE fact a model folder's config.json writes wrong.
CONFIG_FIX = "fix it in its config.json"
#: What to do about a GGUF file whose header or tensors are refused or disagree: it has no config.json to fix (its
#: refusals said "fix it in its config.json", "use the config.json saved with them"; battery 25a).
GGUF_FIX = ("write the file again from its model (llama.cpp's convert_hf_to_gguf.py, or longrope export --format "
            "gguf), or pass the model's Hugging Face folder")


def config_value_errors() -> tuple[type[BaseException], ...]:
    """What transformers raises for config values it refuses: its field checks (huggingface_hub's
    StrictDataclassError), and what a config class's own checks divide or compare by (num_attention_heads 0 was a
    ZeroDivisionError traceback, "integer modulo by zero", in every command; battery 21c). The one list of both
    readers of a config's values: a config.json loaded from a folder and a config.json dict."""
    from huggingface_hub.errors import StrictDataclassError

    return (ValueError, KeyError, TypeError, ArithmeticError, StrictDataclassError)


def config_problem(e: Exception, where: str = "its config.json") -> str:
    """The first line of a load failure, and where to look when it is the RoPE scaling block. A config class's
    field or validator check is two lines ("Validation error for field 'head_dim':" and the reason below it): both,
    as one (the first alone ended in a colon, the reason dropped; battery 21c)."""
    from huggingface_hub.errors import StrictDataclassError

    text = str(e).strip()
    first = text.splitlines()[0] if text else type(e).__name__
    if isinstance(e, StrictDataclassError) and text:
        first = " ".join(line.strip() for line in text.splitlines()[:2])
    if "rope_parameters" in text or "rope_scaling" in text or "rope_type" in text:
        return (f"{first.rstrip('.:')}; fix or remove the rope_scaling block of its config.json "
                "(a mapping with rope_type and that type's keys)")
    gguf = "GGUF" in where
    if isinstance(e, StrictDataclassError):
        fix = GGUF_FIX if gguf else "fix that field in its config.json (or use the config.json saved with its weights)"
        return f"{where} is refused by transformers' check: {first.rstrip('.')}; {fix}"
    if isinstance(e, (ArithmeticError, TypeError)):
        fix = GGUF_FIX if gguf else "fix it in its config.json"
        return (f"{where} is refused by transformers' check ({type(e).__name__}: {first.rstrip('.')}): a size such "
                f"as num_attention_heads is 0 or of the wrong kind; {fix}")
    if gguf:  # transformers' GGUF reader's own words name no fix: a bare "'tokens'" (a KeyError for a header without
        # its token list), "cannot reshape array of size 65536 into shape (3,42,2,256)", "architecture bogus is not
        # supported yet" (battery 25a)
        if isinstance(e, KeyError):
            first = f"its GGUF header lacks {first} (a key transformers' GGUF reader needs)"
        return f"{first.rstrip('.')}; {GGUF_FIX}"
    return first


def _as_config_object(values: Mapping[str, Any]) -> tuple[Any, str | None]:
    """``values`` (a config.json dict) as the config object transformers makes of that file, its class's defaults
    for the keys it leaves out (read key by key, a Llama dict without rope_theta had 'no RoPE' and a Qwen3 one without
    head_dim a head of 16 channels where the model has 128; review of battery 29); ``values`` itself where transformers
    does not know its model type: read key by key through :func:`~longrope.formats.hf_config.getter` (a Llama dict
    was "model type 'unknown'", battery 29a). With it, why transformers refuses the values (None: it takes them), as
    loading the file from a folder says it (read key by key, such a dict got another reason: a Phi-3 one with factors
    of the wrong length 'has no RoPE'; third review of battery 29)."""
    model_type = values.get("model_type")
    from transformers import CONFIG_MAPPING, AutoConfig

    if not isinstance(model_type, str) or model_type not in CONFIG_MAPPING or any(not isinstance(k, str) for k in values):
        return values, None
    try:  # a deep copy: the config class edits nested dicts (rope_scaling) in place, and they are the caller's
        return AutoConfig.for_model(**copy.deepcopy(dict(values))), None
    except (*config_value_errors(), AttributeError) as exc:
        return values, config_problem(exc)


def rope_info_from_config(config: Any, *, fix: str = CONFIG_FIX) -> RopeInfo:
    """Read :class:`RopeInfo` from a transformers config object or a ``config.json`` dict (no weights needed; a dict
    as :func:`_as_config_object` makes it). ``fix``: what to do about a RoPE fact written wrong (:data:`GGUF_FIX` for
    a GGUF header)."""
    refused = None
    if isinstance(config, Mapping):
        config, refused = _as_config_object(config)
    get = hf_config.getter(config)
    model_type = str(get("model_type") or "unknown")
    family = FAMILIES.get(model_type)
    head_dim = _head_dim(config)
    max_pos, max_pos_problem = _config_length(get("max_position_embeddings"), "max_position_embeddings")
    params = hf_config.rope_parameters(config)

    def unsupported(reason: str, **known: Any) -> RopeInfo:
        fields = dict(model_type=model_type, family=None, head_dim=head_dim, rotary_dim=None, rope_theta=None,
                      original_max_position_embeddings=None, max_position_embeddings=max_pos, rope_scaling=None,
                      supported=False, reason=reason)
        return RopeInfo(**{**fields, **known})

    if refused is not None:  # an unsupported family is said so first, as for any other config
        return unsupported(refused if family is not None else f"model type {model_type!r} is not a supported family; "
                           f"supported families: {supported_families_text()}")
    if params is None:
        why = _NO_ROPE.get(model_type, "no rotary position embedding in its config")
        return unsupported(
            f"model type {model_type!r} has no RoPE ({why}); supported families: {supported_families_text()}"
        )
    labels = get("_rope_type_labels") or get("layer_types") or ()
    if any(k in labels for k in params):
        return unsupported(
            f"model type {model_type!r} has per-layer-type rope parameters, which are not supported; "
            f"supported families: {supported_families_text()}"
        )
    written_theta = hf_config.rope_theta(config, params)
    theta = _real_or_none(written_theta)
    rope_type = hf_config.rope_type(params) or "default"
    scaling = {k: v for k, v in params.items() if k not in ("rope_theta",)} if rope_type != "default" else None
    original, original_problem = _config_length(hf_config.original_length(config, params),
                                                "original_max_position_embeddings")
    if original is None and original_problem is None:
        original, original_problem = max_pos, max_pos_problem
    written_prf = hf_config.partial_rotary_factor(config, params)
    prf = _real_or_none(written_prf)
    known = dict(
        rope_theta=theta if theta is not None and math.isfinite(theta) and theta > 0 else None,
        original_max_position_embeddings=original,
        rope_scaling=dict(scaling) if scaling else None,
    )
    if family is None:
        return unsupported(
            f"model type {model_type!r} is not a supported family; supported families: {supported_families_text()}",
            **known,
        )
    # the RoPE facts as written, each checked (a rope_theta "abc" or partial_rotary_factor "half" was a ValueError
    # traceback in every command, a rope_theta "10000" passed as supported and failed in transformers' forward, and
    # max_position_embeddings 0 or -1 was read as L and printed back in a fix "--target-length -2"; battery 21c)
    if problem := max_pos_problem or original_problem:
        return unsupported(f"{family.name} config has {problem}; {fix}", **known)
    if written_theta is not None and not (theta is not None and math.isfinite(theta) and theta > 0):
        if theta is None:
            return unsupported(f"{family.name} config has rope_theta {short_repr(written_theta)}, which is not a number > 0; "
                               f"{fix}", **known)
        return unsupported(f"{family.name} config has rope_theta {theta}, not a finite number > 0; {fix}", **known)
    if prf is None:
        return unsupported(f"{family.name} config has partial_rotary_factor {short_repr(written_prf)}, not a number in "
                           f"(0, 1]; {fix}", **known)
    if head_dim is None or theta is None or original is None:
        return unsupported(f"{family.name} config lacks head_dim, rope_theta or max_position_embeddings", **known)
    if problem := (rope_type_problem(rope_type) or scaling_factor_problem(rope_type, params)
                   or linear_scaling_problem(rope_type, params, max_pos)):
        return unsupported(problem, **known)
    if prf != 1.0 and not family.honours_partial_rotary:
        return unsupported(
            f"{family.name} rotates the whole head but its config has partial_rotary_factor={prf}", **known
        )
    if not (math.isfinite(prf) and 0 < prf <= 1):  # (Phi-3 with 1.5 rotated more channels than a head has)
        return unsupported(f"{family.name} config has partial_rotary_factor {prf}, not a number in (0, 1]; {fix}", **known)
    rotary_dim = int(head_dim * prf)
    if rotary_dim < 2 or rotary_dim % 2:
        return unsupported(f"rotary dim {rotary_dim} (head_dim {head_dim} × {prf}) is not even", **known)
    if rope_type.lower() in hf_config.LONGROPE_TYPES:  # its own factors, read as --factors reads a config.json:
        try:  # hand-edited ones (long_factor ["a", ...], 5 values) were supported, then a transformers traceback
            hf_config.longrope_fields(config, source="its config.json", rotary_dim=rotary_dim)
        except UserError as exc:
            return unsupported(str(exc), **known)
    return RopeInfo(
        model_type=model_type,
        family=family.name,
        head_dim=head_dim,
        rotary_dim=rotary_dim,
        max_position_embeddings=max_pos,
        supported=True,
        reason=None,
        **known,
    )


def rope_type_problem(rope_type: str | None) -> str | None:
    """Why a config's RoPE scaling type cannot be built by the installed transformers, or None."""
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    if rope_type in (None, "default") or rope_type in ROPE_INIT_FUNCTIONS:
        return None
    return (f"its config's rope_scaling has rope_type {rope_type!r}, which transformers does not know "
            f"({', '.join(sorted(ROPE_INIT_FUNCTIONS))}); fix or remove the rope_scaling block of its config.json")


def scaling_factor_problem(rope_type: str | None, params: Any) -> str | None:
    """Why a config's RoPE scaling ``factor`` cannot be used (a string "4": transformers warned, then failed with a
    TypeError when it built the rotary module; below 1 it warns), or None. Unscaled RoPE ignores it."""
    factor = params.get("factor") if hasattr(params, "get") else None
    if rope_type in (None, "default") or factor is None:
        return None
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not math.isfinite(float(factor)) \
            or float(factor) < 1:
        return (f"its config's rope_scaling ({rope_type}) has factor {factor!r}, not a number >= 1 (as transformers "
                "requires); fix the factor in its config.json")
    return None


def linear_scaling_problem(rope_type: str, params: Any, max_pos: int | None) -> str | None:
    """Why a model whose config already interpolates positions linearly (``rope_type`` linear, factor f != 1: a
    position-interpolation fine-tune such as LongChat) cannot take factors, or None. longrope's factors are
    relative to unscaled RoPE and replace the config's scaling, so installing any set would silently drop the
    ×f the weights were tuned for; and L is not written (published configs give max_position_embeddings as
    the length before the fine-tune or after it), so no ratio s = L'/L could be trusted (battery 14b)."""
    if rope_type.lower() != "linear":
        return None
    factor = params.get("factor") if hasattr(params, "get") else None
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or float(factor) == 1.0:
        return None
    after = f"{max_pos:,}" if isinstance(max_pos, int) else "max_position_embeddings"
    return (f"its config's rope_scaling is linear with factor {float(factor):g} (a position-interpolation fine-tune); "
            f"longrope's factors are relative to unscaled RoPE and would silently replace that ×{float(factor):g}, and "
            f"its context before the fine-tune is not written ({after} or that / {float(factor):g}); extend the "
            "model it was fine-tuned from instead")


def unwrap_adapters(model: Any) -> Any:
    """The transformers model inside an adapter wrapper (a peft ``PeftModel``: its ``get_base_model()``), else
    ``model``: factors are installed on, and looked up from, the wrapped model whichever object the caller holds."""
    get = getattr(model, "get_base_model", None) if hasattr(model, "peft_config") else None
    inner = get() if callable(get) else None
    return model if inner is None or inner is model else inner


def require_no_adapters(model: Any, who: str) -> None:
    """Refuse an adapter wrapper (peft) where the model's own weights are written out: its files are the adapters'."""
    if unwrap_adapters(model) is not model:
        raise UserError(f"{who} takes a model without adapters, got a peft {type(model).__name__}: merge the adapters "
                        "first (model = model.merge_and_unload()) or pass model.get_base_model() for the base weights")


def _find_rotary_owner(model: Any) -> Any | None:
    """The module that owns the shared ``rotary_emb`` (the decoder: ``model.model`` for *ForCausalLM)."""
    for candidate in (getattr(model, "model", None), model):
        if candidate is not None and hasattr(candidate, "rotary_emb") and hasattr(candidate, "layers"):
            return candidate
    return None


def inspect_model(model: Any) -> RopeInfo:
    """:class:`RopeInfo` of a loaded model: the config facts plus a structural check.

    The structural check catches the silent failure of docs/method.md §10: if the attention layers
    did not take ``position_embeddings`` from the decoder, replacing ``rotary_emb`` would change
    nothing. We require exactly one ``rotary_emb`` in the module tree, owned by the decoder, and an
    attention ``forward`` that accepts ``position_embeddings``.
    """
    import inspect as _inspect

    import transformers

    model = unwrap_adapters(model)
    check_loaded_model(model, "inspect_model", hint="for a name or path: read_rope_info", weights=False)
    if getattr(model, "config", None) is None:  # a bare torch module was "'Linear' object has no attribute 'config'"
        raise UserError(f"inspect_model takes a transformers model (one with a config), got {type(model).__name__}")
    source = getattr(model, "_longrope_source", None)
    gguf = isinstance(source, dict) and source.get("kind") == "gguf"
    info = rope_info_from_config(model.config, fix=GGUF_FIX if gguf else CONFIG_FIX)
    if not info.supported:
        return info
    scaling = getattr(model, "_longrope_gguf_scaling", None)  # the scaling its header declares (not applied)
    info = with_declared_scaling(info, scaling if isinstance(scaling, dict) else None)
    if not info.supported:
        return info
    version = tuple(int(p) for p in transformers.__version__.split(".")[:2] if p.isdigit())
    if version < MIN_TRANSFORMERS:
        return dataclasses.replace(
            info,
            supported=False,
            reason=f"transformers {transformers.__version__} is older than "
            f"{'.'.join(map(str, MIN_TRANSFORMERS))}, where decoders start passing one shared (cos, sin) "
            "to every layer; upgrade transformers",
        )
    owner = _find_rotary_owner(model)
    rotary_names = [n for n, _ in model.named_modules() if n.split(".")[-1] == "rotary_emb"]
    problem = None
    if owner is None:
        problem = "no decoder-level rotary_emb module"
    elif len(rotary_names) != 1:
        problem = f"{len(rotary_names)} rotary_emb modules (expected one, shared by all layers)"
    else:
        layers = getattr(owner, "layers", None)
        attn = getattr(layers[0], "self_attn", None) if layers is not None and len(layers) else None
        if attn is None or "position_embeddings" not in _inspect.signature(type(attn).forward).parameters:
            problem = "attention layers do not take position_embeddings from the decoder"
    if problem:
        return dataclasses.replace(
            info,
            supported=False,
            reason=f"{info.family} model structure not recognised by this transformers version: {problem}",
        )
    return info


def with_declared_scaling(info: RopeInfo, scaling: dict[str, Any] | None) -> RopeInfo:
    """``info`` of a model whose file declares RoPE scaling its config object does not carry (a GGUF header's
    ``rope.scaling.*``, which transformers' reader drops): that scaling, its original context as L, and the checks a
    config.json's scaling gets. A GGUF declaring linear ×4 (a position-interpolation fine-tune) was supported, and
    its factors silently replaced, while the same model as a folder is refused (battery 21c)."""
    if scaling is None or not info.supported:
        return info
    original = scaling.get("original_max_position_embeddings")
    info = dataclasses.replace(info, rope_scaling=scaling, original_max_position_embeddings=(
        original if original is not None else info.original_max_position_embeddings))
    problem = linear_scaling_problem(str(scaling.get("rope_type") or "none"), scaling, info.max_position_embeddings)
    return dataclasses.replace(info, supported=False, reason=problem) if problem else info


def require_supported(info: RopeInfo) -> RopeInfo:
    """Raise :class:`UserError` with the reason when ``info`` is not supported, or is no :class:`RopeInfo` at all (a
    model's name, None or a dict was an AttributeError in every function taking one; battery 20b)."""
    if not isinstance(info, RopeInfo):
        raise UserError(f"expected the model's RopeInfo (inspect_model(model) or read_rope_info(name)), got "
                        f"{type(info).__name__}")
    if not info.supported:
        raise UserError(info.reason or f"model type {info.model_type!r} is not supported")
    return info
