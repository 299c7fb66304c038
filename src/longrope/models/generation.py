"""Generate text with a patched model, exact across the short/long switch.

:func:`generate` runs transformers' own ``model.generate()`` on a model that carries a LongRoPE
patch (:func:`longrope.models.install_factors`). Two modes:

- ``"switch"`` (transformers' rule): short factors while the sequence fits in L, long beyond. What
  happens to the KV cache at the crossing is the patch's cache policy
  (:mod:`longrope.models.cache_switch`): by default the sequence is re-fed once with the long
  factors, so every step after the crossing produces the logits of a from-scratch forward with the
  long factors, for every family; ``cache_policy="rerotate"`` re-rotates the cached keys instead
  (cheaper, exact for the first layer only).
- ``"long"``: long factors from the first token, what a runtime that fixes the factors at start does
  (vLLM with ``max_model_len > L``, llama.cpp with a context larger than L).

Prompts may be text (needs the tokenizer), one list of token ids, a list of lists (ragged: left
padded here) or a ``[batch, seq]`` tensor with an optional attention mask. Greedy by default;
sampling is seeded (``torch.random.fork_rng``, the caller's global RNG state is left untouched).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import torch

from longrope.errors import UserError, shown
from longrope.models.patch import check_cache_policy, check_mode, current_patch, install_factors
from longrope.options import check_flag
from longrope.settings import SEED, check_decoding

__all__ = ["GenerationResult", "chat_prompt_ids", "check_token_ids", "generate", "prepare_batch",
           "quiet_length_reminder"]


@dataclasses.dataclass(frozen=True)
class GenerationResult:
    """What :func:`generate` produced, one entry per batch row."""

    prompt_tokens: list[list[int]]
    """Each row's prompt ids, without padding."""
    new_tokens: list[list[int]]
    """Each row's generated ids (up to and including EOS when ``stop_at_eos``)."""
    text: list[str] | None
    """The decoded new tokens (special tokens skipped), when a tokenizer was given."""
    mode: str
    """"switch" or "long"."""
    reprefills: int
    """How many times the sequence was re-fed at the switch during this call (policy "reprefill")."""
    rerotations: int
    """How many times the KV cache was re-rotated at the switch during this call (policy "rerotate")."""
    logits: torch.Tensor | None = None
    """``[batch, steps, vocab]`` float32 logits of each generated position (``return_logits=True``)."""


class _DropLengthReminder(logging.Filter):
    """Drops transformers' "exceeded the model's predefined maximum length" reminder, nothing else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "exceeded the model's predefined maximum length" not in record.getMessage()


@contextlib.contextmanager
def quiet_length_reminder() -> Iterator[None]:
    """Within the block, transformers' generation does not print its reminder that the sequence passed
    ``config.max_position_embeddings``: the config's L is the trained length, which a LongRoPE patch (and
    a long-context evaluation of the unscaled model) passes on purpose; where a length past the factors'
    L' deserves a warning, the caller gives its own (``longrope generate`` does)."""
    logger = logging.getLogger("transformers.generation.stopping_criteria")
    drop = _DropLengthReminder()
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


@contextlib.contextmanager
def evaluation_mode(model: Any) -> Iterator[None]:
    """Within the block the model runs in eval mode (dropout off); afterwards every module has its own mode again.
    A model a user's training loop left in ``train()`` (a peft model with ``lora_dropout``) gave another
    perplexity, passkey answer or generation at every call, where evaluation is documented deterministic."""
    modules = list(model.modules()) if callable(getattr(model, "modules", None)) else []
    modes = [m.training for m in modules]
    for m in modules:
        m.training = False
    reset_dynamic_rope(modules)
    try:
        yield
    finally:
        for m, mode in zip(modules, modes):
            m.training = mode


def reset_dynamic_rope(modules: Any) -> None:
    """Put a model's own dynamic RoPE (transformers' ``dynamic`` rope type) back to its unscaled start, so that the
    next forward computes the base for its own length. transformers keeps the base of the longest sequence seen
    so far for every shorter one above L: the ``none`` row of a model with dynamic scaling at 2L read 155.06 after
    an 8L measurement and 155.91 fresh (``eval ppl --lengths 8192,2048``, a passkey after a perplexity; battery
    27b). Every measurement starts here (:func:`evaluation_mode`, a RULER cell)."""
    for m in modules:
        if is_dynamic_rope(m):
            with torch.no_grad():
                m.inv_freq = m.original_inv_freq.to(m.inv_freq.device).clone()
            m.max_seq_len_cached = m.original_max_seq_len


def is_dynamic_rope(module: Any) -> bool:
    """Whether ``module`` is a transformers rotary embedding of the ``dynamic`` rope type: its base follows the length
    of the sequence past ``original_max_seq_len``, so a cache filled at one length is not the prefix of a longer
    forward."""
    kind = getattr(module, "rope_type", None)
    return isinstance(kind, str) and "dynamic" in kind and hasattr(module, "original_max_seq_len") \
        and isinstance(getattr(module, "original_inv_freq", None), torch.Tensor) \
        and isinstance(getattr(module, "inv_freq", None), torch.Tensor)


def own_longrope_length(module: Any) -> float | None:
    """The L at which ``module``, a transformers rotary embedding of the ``longrope`` rope type (a folder ``longrope
    export`` wrote, Phi-3-128k), switches from its short factors to its long ones, or None for any other module: a
    forward whose last position is at least L uses the long factors for every position, so a cache filled below L
    is not the prefix of a forward past it. Read where the module reads it (its config's
    ``rope_parameters["original_max_position_embeddings"]``, which transformers fills from the top-level value or
    ``max_position_embeddings``), as the number it is: written ``256.0`` it was no int, read as no switch, and the
    answer was scored on short-factor keys again (review of battery 30a)."""
    import numbers

    config = getattr(module, "config", None)
    if getattr(module, "rope_type", None) != "longrope" or config is None:
        return None
    params = getattr(config, "rope_parameters", None)
    if isinstance(params, dict):
        value = params.get("original_max_position_embeddings")
    else:  # transformers 4.x (no rope_parameters): its rotary reads the top-level value, else max_position_embeddings
        value = getattr(config, "original_max_position_embeddings", None) or getattr(config, "max_position_embeddings",
                                                                                     None)
    return float(value) if isinstance(value, numbers.Real) and not isinstance(value, bool) else None


#: the fields of a model's generation_config.json that say which tokens are which, kept by :func:`plain_decoding`
_TOKEN_FIELDS = ("bos_token_id", "eos_token_id", "pad_token_id", "decoder_start_token_id")


@contextlib.contextmanager
def plain_decoding(model: Any) -> Iterator[None]:
    """Within the block, ``model.generate`` decodes only as its caller asks: the model folder's
    ``generation_config.json`` keeps its token ids, not its decoding settings. transformers fills every setting a
    call leaves unset from that file, so a model shipped with ``repetition_penalty`` or ``no_repeat_ngram_size``
    changed longrope's greedy generation and passkey answers without a word, and one shipped with
    ``temperature``/``top_p``/``max_length`` printed transformers' notes about them on every call (battery 9a).
    RULER cells are not wrapped: they decode as stock lm-eval does, so they match lm-eval on the same export."""
    from transformers import GenerationConfig

    own = getattr(model, "generation_config", None)
    if own is None:
        yield
        return
    plain = GenerationConfig(**{k: getattr(own, k) for k in _TOKEN_FIELDS if getattr(own, k, None) is not None})
    model.generation_config = plain
    try:
        yield
    finally:
        model.generation_config = own


def _pad_id(model: Any, tokenizer: Any) -> int:
    for source in (tokenizer, getattr(model, "generation_config", None), getattr(model, "config", None)):
        for name in ("pad_token_id", "eos_token_id"):
            value = getattr(source, name, None) if source is not None else None
            if isinstance(value, (list, tuple)):
                value = value[0] if value else None
            if isinstance(value, int):
                return value
    return 0


def _eos_ids(model: Any, tokenizer: Any) -> list[int] | None:
    for source in (getattr(model, "generation_config", None), tokenizer, getattr(model, "config", None)):
        value = getattr(source, "eos_token_id", None) if source is not None else None
        if isinstance(value, int):
            return [value]
        if isinstance(value, (list, tuple)) and value:
            return [int(v) for v in value]
    return None


_PROMPT_KINDS = "text, a list of token ids, a list of such lists or a [batch, seq] tensor or array of ids"


def prepare_batch(
    model: Any, tokenizer: Any, prompts: Any, attention_mask: Any = None, *, who: str = "prepare_batch"
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(input_ids, attention_mask)`` ``[batch, seq]`` on the model's device, ragged rows left-padded.

    ``tokenizer``: None or a loaded one (``who`` names the caller in the refusal). ``attention_mask`` goes with ids
    of one width (a tensor, an array or equal lists); it must have their shape and hold only 0 and 1.
    (It was ignored for lists, a reshape traceback for another shape; float ids were truncated, 1.7 -> 1; numpy
    arrays were refused; ``[["a"]]`` was a ValueError; a tokenizer's name was "'str' object is not callable", a mask
    of 2s "1 is not in list", a mask of text "too many dimensions 'str'", battery 23c.)"""
    from longrope.options import check_loaded_tokenizer

    device = next(model.parameters()).device
    if isinstance(prompts, str) or (
        isinstance(prompts, Sequence) and prompts and all(isinstance(p, str) for p in prompts)
    ):
        if tokenizer is None:
            raise UserError("text prompts need a tokenizer; pass token ids or a model with a tokenizer")
        if attention_mask is not None:
            raise UserError("attention_mask goes with token ids; text prompts are tokenized and padded here")
        check_loaded_tokenizer(tokenizer, who)
        texts = [prompts] if isinstance(prompts, str) else list(prompts)
        check_text_prompts(texts)
        rows = [list(tokenizer(t, add_special_tokens=True)["input_ids"]) for t in texts]
    else:
        if tokenizer is not None:  # it decodes the new tokens: refused now, not after the whole generation
            check_loaded_tokenizer(tokenizer, who)
        rows = _id_rows(prompts)
        if attention_mask is not None or hasattr(prompts, "shape"):
            if len({len(r) for r in rows}) != 1:
                raise UserError("attention_mask goes with ids of one width; give lists of ids without it (rows "
                                "of different lengths are left-padded here)")
            ids = torch.tensor(rows, dtype=torch.long, device=device)
            if attention_mask is None:
                mask = torch.ones_like(ids)
            else:
                mask = _mask_tensor(attention_mask, device)
                if mask.ndim == 1:
                    mask = mask[None]
                if tuple(mask.shape) != tuple(ids.shape):
                    raise UserError(f"attention_mask has shape {list(mask.shape)} but the ids {list(ids.shape)}")
                mask = mask.to(torch.long)
                if bool((mask[:, -1] == 0).any()):
                    raise UserError("padded batches must be left-padded (the last column of attention_mask is 0)")
            _check_ids(model, tokenizer, ids)
            return ids, mask
    if any(len(r) == 0 for r in rows):
        raise UserError("every prompt needs at least one token")
    width, pad = max(len(r) for r in rows), _pad_id(model, tokenizer)
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows], dtype=torch.long, device=device)
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows], dtype=torch.long, device=device)
    _check_ids(model, tokenizer, ids)
    return ids, mask


def _mask_tensor(attention_mask: Any, device: Any) -> torch.Tensor:
    """A caller's attention mask as a tensor of 0s and 1s (bools, integers or floats that are exactly 0 or 1)."""
    try:
        mask = torch.as_tensor(attention_mask, device=device)
    except (TypeError, ValueError, RuntimeError):
        mask = None
    if mask is None or mask.dtype.is_complex or not bool(((mask == 0) | (mask == 1)).all()):
        raise UserError("attention_mask must hold only 0 (padding) and 1 (a token), as a tensor, an array or lists "
                        "of the ids' shape")
    return mask


def check_text_prompts(texts: Sequence[str]) -> None:
    """Text prompts a tokenizer can take and the model can continue: not empty (``longrope generate`` refused
    one, ``generate(model, tok, "")`` generated from the BOS alone, battery 19), no lone surrogates."""
    from longrope.data.sources import valid_text

    if not all(texts):
        raise UserError("the prompt is empty; give the text to continue")
    if not all(map(valid_text, texts)):  # tokenizers' TypeError "TextEncodeInput must be Union[...]"
        raise UserError("the prompt holds lone surrogates (bytes that are not UTF-8, e.g. from argv or "
                        "errors='surrogateescape'); give valid Unicode text")


def chat_prompt_ids(tokenizer: Any, text: str) -> list[int]:
    """The token ids of ``text`` sent as one user message through the tokenizer's chat template, ready for the
    assistant's reply (``add_generation_prompt``): what an instruct model such as SmolLM2-Instruct was trained to
    answer. The template writes its own special tokens, so none is added on top (a second BOS otherwise); a
    tokenizer without a template is refused (:func:`longrope.options.check_chat_template` says so first)."""
    from longrope.options import check_chat_template

    check_text_prompts([text])
    check_chat_template(tokenizer)
    try:
        from jinja2 import TemplateError  # transformers renders templates with jinja2
    except ImportError:  # then apply_chat_template says it needs jinja2 itself
        TemplateError = ()  # noqa: N806
    try:  # a template may refuse a conversation ('must start with a system message'): a traceback otherwise
        templated = tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                  add_generation_prompt=True)
    except TemplateError as exc:
        raise UserError(f"the tokenizer's chat template refuses a prompt sent as one user message ({shown(str(exc))}); "
                        "give the prompt without the chat template, or a model whose template takes it") from None
    return list(tokenizer(templated, add_special_tokens=False)["input_ids"])


def _id_rows(prompts: Any) -> list[list[int]]:
    """Token-id prompts as rows of Python ints: a tensor or array of integers ([seq] or [batch, seq]), a list of
    ids or a list of such lists; anything else (floats, bools, strings in lists) is refused. Bytes are refused too,
    though a sequence of integers: b'\\xff\\xfe' was generated from as the token ids 255, 254 (battery 19)."""
    if isinstance(prompts, (bytes, bytearray, memoryview)) or (
            isinstance(prompts, Sequence) and any(isinstance(r, (bytes, bytearray, memoryview)) for r in prompts)):
        raise UserError("a prompt of bytes is neither text nor token ids; decode it first (e.g. "
                        "data.decode('utf-8')), or give a list of token ids")
    if hasattr(prompts, "shape") and hasattr(prompts, "dtype"):  # torch or numpy
        if isinstance(prompts, torch.Tensor):
            integer = not (prompts.dtype.is_floating_point or prompts.dtype.is_complex or prompts.dtype == torch.bool)
        else:
            import numpy as np

            integer = np.issubdtype(np.asarray(prompts).dtype, np.integer)
        if not integer:
            raise UserError(f"token ids must be integers, got an array of {str(prompts.dtype).replace('torch.', '')}")
        arr = prompts if isinstance(prompts, torch.Tensor) else torch.tensor(np.asarray(prompts).tolist(),
                                                                             dtype=torch.long)
        if arr.ndim == 1:
            arr = arr[None]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise UserError(f"input_ids must be [batch, seq] with seq >= 1, got shape {list(prompts.shape)}")
        return arr.tolist()
    if isinstance(prompts, Sequence) and prompts and all(_is_id(t) for t in prompts):
        return _in_range([[int(t) for t in prompts]])
    if isinstance(prompts, Sequence) and prompts and all(
            isinstance(r, Sequence) and not isinstance(r, str) for r in prompts):
        bad = next((t for r in prompts for t in r if not _is_id(t)), None)
        if bad is not None:
            raise UserError(f"token ids must be integers, got {shown(bad)}")
        return _in_range([[int(t) for t in r] for r in prompts])
    raise UserError(f"prompt must be {_PROMPT_KINDS}")


def _in_range(rows: list[list[int]]) -> list[list[int]]:
    """``rows`` when every id fits a tensor of token ids (int64); one past it (10**30) was torch's "Overflow when
    unpacking long long" traceback, before the check that names an id without an embedding (battery 29a)."""
    bad = next((t for r in rows for t in r if not -(2**63) <= t < 2**63), None)
    if bad is not None:
        raise UserError(f"the prompt holds token id {shown(bad)}, past any model's token embeddings: give token ids "
                        "of this model's tokenizer")
    return rows


def _is_id(t: Any) -> bool:
    import numbers

    return isinstance(t, numbers.Integral) and not isinstance(t, bool)


def _check_ids(model: Any, tokenizer: Any, ids: torch.Tensor) -> None:
    """Every prompt token has an embedding: a tokenizer with more tokens than the model (transformers' GGUF
    reader adds '<|endoftext|>' to a byte-level vocabulary that lacks it, one past the last embedding) made
    such text an IndexError traceback deep in the model."""
    check_token_ids(model, ids, what="the prompt", tokenizer=tokenizer,
                    fix="its tokenizer knows tokens the model has none for; leave that text out of the prompt")


def check_token_ids(model: Any, ids: Any, *, what: str, fix: str, tokenizer: Any = None) -> None:
    """The one check that token ids have a row in ``model``'s input embeddings (else an IndexError traceback
    deep in the model): one :class:`UserError` line, ``what`` holds the id, ``fix`` says what to do."""
    rows = int(model.get_input_embeddings().num_embeddings)
    ids = torch.as_tensor(ids)
    bad = ids[(ids < 0) | (ids >= rows)]
    if bad.numel():
        token = int(bad[0])
        piece = tokenizer.convert_ids_to_tokens(token) if tokenizer is not None and token >= 0 else None
        raise UserError(f"{what} holds token id {token}" + (f" ({piece!r})" if piece else "") + f", but the "
                        f"model has {rows:,} token embeddings: {fix}")


def check_generation_counts(max_new_tokens: Any, seed: Any, *, names: tuple[str, str] = ("max_new_tokens", "seed")
                            ) -> None:
    """The one check of generate()'s integers (``names``: how the caller spells them, e.g. as flags; a seed of
    None is not given)."""
    from longrope.options import MAX_SEED, MAX_TOKENS, int_problem

    for name, value, hi in ((names[0], max_new_tokens, MAX_TOKENS), (names[1], seed, MAX_SEED)):
        problem = None if value is None and hi == MAX_SEED else int_problem(value, 1 if hi == MAX_TOKENS else 0, hi)
        if problem:
            raise UserError(f"{name} {problem}")


def generate(
    model: Any,
    tokenizer: Any,
    input_ids: Any,
    max_new_tokens: int,
    mode: str = "switch",
    *,
    attention_mask: Any = None,
    factor_set: Any = None,
    cache_policy: str | None = None,
    do_sample: bool = False,
    temperature: float | None = None,
    top_p: float | None = None,
    seed: int | None = None,
    stop_at_eos: bool = True,
    return_logits: bool = False,
) -> GenerationResult:
    """Generate ``max_new_tokens`` tokens per row with the model's LongRoPE patch (see module doc).

    ``factor_set`` installs factors first (else the model must already carry a patch). The patch's
    mode (and ``cache_policy``, when given) are set for this call only and put back afterwards.
    """
    from transformers import GenerationConfig

    check_mode(mode)
    check_generation_counts(max_new_tokens, seed)
    do_sample, stop_at_eos = check_flag(do_sample, "do_sample"), check_flag(stop_at_eos, "stop_at_eos")
    return_logits = check_flag(return_logits, "return_logits")
    check_decoding(do_sample, temperature, top_p, seed, mode, cache_policy)
    # numpy integers pass the checks; transformers takes ints
    max_new_tokens, seed = int(max_new_tokens), int(SEED if seed is None else seed)
    if do_sample:
        temperature, top_p = float(1.0 if temperature is None else temperature), float(1.0 if top_p is None else top_p)
    # the prompt before the factors are installed: a refused prompt left the model with factor_set installed (an
    # unpatched model patched, a patched one's factors replaced; battery 29a)
    ids, mask = prepare_batch(model, tokenizer, input_ids, attention_mask, who="generate")
    if cache_policy is not None:
        check_cache_policy(cache_policy)
    patch = install_factors(model, factor_set) if factor_set is not None else current_patch(model)
    if patch is None or not patch.active:
        raise UserError("the model carries no active LongRoPE factors; install_factors(model, factor_set) first")
    pad = _pad_id(model, tokenizer)
    eos = _eos_ids(model, tokenizer) if stop_at_eos else None
    config = GenerationConfig(
        max_new_tokens=max_new_tokens,
        do_sample=do_sample,
        temperature=temperature if do_sample else None,
        top_p=top_p if do_sample else None,
        top_k=None,
        num_beams=1,
        pad_token_id=pad,
        eos_token_id=eos,
        bos_token_id=getattr(model.config, "bos_token_id", None),
        use_cache=True,
        return_dict_in_generate=True,
        output_logits=return_logits,
    )
    previous_mode, previous_policy = patch.mode, patch.cache_policy
    before = (patch.reprefills, patch.rerotations)
    patch.mode = mode
    try:
        if cache_policy is not None:
            patch.cache_policy = cache_policy
        with torch.no_grad(), evaluation_mode(model), torch.random.fork_rng(devices=[] if ids.device.type == "cpu" else [ids.device]):
            torch.manual_seed(seed)  # only sampling draws from it; the caller's RNG state is restored
            with quiet_length_reminder(), plain_decoding(model):
                out = model.generate(input_ids=ids, attention_mask=mask, generation_config=config)
    finally:
        patch.mode = previous_mode
        patch.cache_policy = previous_policy
    width = ids.shape[1]
    new = out.sequences[:, width:].tolist()
    prompt_rows = [row[mask_row.index(1):] for row, mask_row in zip(ids.tolist(), mask.tolist())]
    new_rows = []
    for row in new:
        if eos:
            for i, t in enumerate(row):
                if t in eos:
                    row = row[: i + 1]
                    break
        new_rows.append(row)
    text = [tokenizer.decode(r, skip_special_tokens=True) for r in new_rows] if tokenizer is not None else None
    logits = torch.stack(out.logits, dim=1).float() if return_logits else None
    return GenerationResult(
        prompt_rows, new_rows, text, mode, patch.reprefills - before[0], patch.rerotations - before[1], logits
    )
