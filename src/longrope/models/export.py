"""Export a model with LongRoPE factors as a Hugging Face folder that stock transformers loads.

The folder (weights as safetensors, tokenizer, ``config.json``) needs no longrope at load time:
the factors travel in the config's standard ``longrope`` rope type (docs/method.md §8), written in
both spellings so transformers 4.51+ and 5.x read the same thing:

- top-level ``rope_theta``, ``max_position_embeddings = L'``, ``original_max_position_embeddings = L``;
- ``rope_scaling`` (what 4.x reads, and what 5.x reads first when present):
  ``{rope_type: "longrope", short_factor, long_factor, original_max_position_embeddings: L,
  factor: s, attention_factor: m}``;
- ``rope_parameters`` (5.x): the same keys plus ``rope_theta``.

Version facts this relies on (checked in the 4.51.3 and 5.24.0 sources):

- 5.x: ``rope_scaling`` in config.json takes precedence over ``rope_parameters``; ``rope_theta`` and
  ``partial_rotary_factor`` are filled in from the top level. The rotary module picks the long
  factors when ``max(position_ids)+1 > L`` and scales cos/sin by ``attention_factor``.
- 4.51 non-Phi-3 models use the top-level ``original_max_position_embeddings`` as L and
  ``factor = max/original``; they honour ``attention_factor``.
- 4.51 Phi-3 refuses a ``rope_scaling`` with anything but exactly ``type``, ``short_factor`` and
  ``long_factor``, and always derives m = sqrt(1 + ln s / ln L). So for Phi-3 we write those three
  keys when m equals that default (the usual case); with a custom m we write the full dict, which
  5.x honours and 4.x Phi-3 rejects loudly (never a silently different m) — a warning says so.

vLLM reads ``short_mscale`` / ``long_mscale`` from the same dict (and ignores ``attention_factor`` and
``factor``): it multiplies the short-factor cos/sin table by ``short_mscale`` and the long one by
``long_mscale``, each defaulting to sqrt(1 + ln(max_position_embeddings/L) / ln L). A factor set has
one m, applied to both regimes by transformers and by our patch, so both keys get m: without them a
searched m (e.g. the demo's 1.083 where the default is 1.172) would silently become the default in
vLLM. transformers 5.24 warns once about these two keys it does not know, then ignores them. For
Phi-3 with the default m the 4.x-compatible three-key ``rope_scaling`` stays as it is (vLLM's
default equals m there) and ``rope_parameters`` carries the mscale keys.

The folder also gets a ``README.md`` saying how to serve it with transformers, vLLM and llama.cpp.

n̂ (retained start tokens) has no key in any runtime. It is stored as ``longrope_start_tokens``
in config.json, and the whole factor set (n̂ and provenance included) as ``factors.json`` next to
it, which ``FactorSet.load(folder)`` reads first; stock runtimes ignore both. Position 0 has angle 0 under any factors, so
n̂ = 1 changes nothing and the export is exact for n̂ ≤ 1. For n̂ ≥ 2 the exported model rotates
positions 1 … n̂−1 with the rescaled factors instead of the original ones: its logits equal the
patched model's only at position 0 (every later query sees those keys). A warning says so.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from longrope.errors import UserError
from longrope.formats.hf_config import START_TOKENS_CONFIG_KEY
from longrope.io import (
    aside_prefix,
    check_replaceable_target,
    check_utf8_path,
    give_default_modes,
    holds_work,
    is_disk_full,
    make_folder,
    os_error_fix,
    output_target,
    path_argument,
    path_kind,
    place_new,
    remove_dead_leftovers,
    replace_folder,
    sibling_prefix,
    write_json,
    write_text,
)
from longrope.models.families import FAMILIES, RopeInfo, inspect_model, require_no_adapters, require_supported
from longrope.options import check_flag, check_loaded_model
from longrope.rope.attention import longrope_attention_factor

__all__ = [
    "ExportResult",
    "START_TOKENS_KEY",
    "check_output_folder",
    "check_target_length",
    "export_hf",
    "longrope_config_entries",
    "remove_stale_temporaries",
    "serving_readme",
]

log = logging.getLogger(__name__)

START_TOKENS_KEY = START_TOKENS_CONFIG_KEY
FACTORS_FILE = "factors.json"  # FactorSet.load(folder) reads it first: n̂ and provenance survive


@dataclasses.dataclass(frozen=True)
class ExportResult:
    """What :func:`export_hf` wrote."""

    path: Path
    """The output folder."""
    warnings: tuple[str, ...]
    """Caveats for the user (n̂ ignored by stock runtimes, Phi-3 and 4.x, ...)."""


def longrope_config_entries(factor_set: Any, info: RopeInfo) -> tuple[dict[str, Any], list[str]]:
    """The top-level config.json keys that carry ``factor_set``, and the warnings that go with them.

    Pure (no torch): the keys of docs/method.md §8 for the family described by ``info``.
    """
    from longrope.models.factor_files import check_fits
    from longrope.rope.factors import require_factor_set

    require_factor_set(factor_set)
    # Rotary dim and base: the one judge (commands already refused another L before loading the
    # model; a library caller's L is taken as given, so it is passed as the deliberate L here).
    check_fits(factor_set, info, source=f"factor set ({factor_set.method})",
               original_length=int(factor_set.original_max_position_embeddings))
    long_f = [float(x) for x in factor_set.long_factor]
    short_f = [float(x) for x in factor_set.short_factor]
    L = int(factor_set.original_max_position_embeddings)
    L_target = int(factor_set.max_position_embeddings)
    check_target_length(factor_set)
    s = L_target / L
    m = float(factor_set.resolved_attention_factor())
    n_hat = int(factor_set.start_tokens)
    warnings: list[str] = []
    scaling: dict[str, Any] = {
        "rope_type": "longrope",
        "short_factor": short_f,
        "long_factor": long_f,
        "original_max_position_embeddings": L,
        "factor": s,
        "attention_factor": m,
        # vLLM: one m per regime (see module doc); ours is the same m for both.
        "short_mscale": m,
        "long_mscale": m,
    }
    prf = info.rotary_dim / info.head_dim
    family = FAMILIES[info.model_type]
    entries: dict[str, Any] = {
        "rope_theta": float(info.rope_theta),
        "max_position_embeddings": L_target,
        "original_max_position_embeddings": L,
    }
    if family.honours_partial_rotary:
        scaling["partial_rotary_factor"] = prf
        entries["partial_rotary_factor"] = prf
    parameters = {**scaling, "rope_theta": float(info.rope_theta)}
    if family.hf4_three_key_scaling:
        if _three_key_scaling(factor_set, info):
            # transformers 4.x Phi-3 accepts exactly these three keys and derives the same m.
            scaling = {"type": "longrope", "short_factor": short_f, "long_factor": long_f}
        else:
            warnings.append(
                f"attention factor {m:.6g} differs from Phi-3's built-in sqrt(1+ln s/ln L) = "
                f"{longrope_attention_factor(s, L):.6g}: transformers 5.x honours it, transformers 4.x refuses this "
                "config (its Phi-3 rope_scaling allows only type/short_factor/long_factor)"
            )
    entries["rope_scaling"] = scaling
    entries["rope_parameters"] = parameters
    if n_hat > 0:
        entries[START_TOKENS_KEY] = n_hat
    if n_hat >= 2:
        warnings.append(
            f"n̂ = {n_hat} retained start tokens cannot be expressed in a Hugging Face config: stock "
            f"runtimes ignore '{START_TOKENS_KEY}' and rotate positions 1..{n_hat - 1} with the rescaled "
            "factors, so their logits match the patched model only at position 0"
        )
    return entries, warnings


def _three_key_scaling(factor_set: Any, info: RopeInfo) -> bool:
    """Whether the export's ``rope_scaling`` is the three keys transformers 4.x's Phi-3 requires (a Phi-3-like family
    whose m is the default sqrt(1 + ln s / ln L)): transformers 5 then notes the missing ``factor``, not the vLLM keys."""
    L = int(factor_set.original_max_position_embeddings)
    s = int(factor_set.max_position_embeddings) / L
    return FAMILIES[info.model_type].hf4_three_key_scaling and math.isclose(
        float(factor_set.resolved_attention_factor()), longrope_attention_factor(s, L), rel_tol=1e-12)


def check_target_length(factor_set: Any) -> None:
    """Refuse a factor set whose target length L' is below its original length L (one line)."""
    from longrope.rope.factors import require_factor_set

    require_factor_set(factor_set)
    L = int(factor_set.original_max_position_embeddings)
    L_target = int(factor_set.max_position_embeddings)
    if L_target < L:
        raise UserError(
            f"factor set targets L' = {L_target} tokens, below its original length L = {L}; exporting it would "
            "shrink the context: fix max_position_embeddings (or --target-length) to at least L"
        )


def _is_quantized(model: Any) -> bool:
    return bool(getattr(model, "hf_quantizer", None) or getattr(model, "is_quantized", False))


def _clean_copy(model: Any, dtype: Any) -> Any:
    """A plain (non-quantized) model of the same class and config holding ``model``'s weights.

    transformers refuses ``save_pretrained`` on a GGUF-loaded model ("quantized with gguf"); the
    weights are already dequantized in memory, so a fresh module with the same state dict saves.
    """
    config = copy.deepcopy(model.config)
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    fresh = type(model)._from_config(config, dtype=dtype)
    missing, unexpected = fresh.load_state_dict(model.state_dict(), strict=False)
    # Non-persistent buffers never appear; tied lm_head may be absent from one side only.
    tied = {k for k in missing if k.endswith("lm_head.weight")} if config.tie_word_embeddings else set()
    if set(missing) - tied or unexpected:
        raise RuntimeError(f"state dict mismatch while copying the model: missing {missing}, unexpected {unexpected}")
    if getattr(model, "generation_config", None) is not None:
        fresh.generation_config = copy.deepcopy(model.generation_config)
    return fresh.eval()


def remove_stale_temporaries(out: str | os.PathLike) -> list[Path]:
    """Delete what killed exports to ``out`` left behind: ``.{name}.tmp-*`` / ``.{name}.old-*`` siblings.

    Each holds a full copy of the weights. Only leftovers of processes that no longer run are
    removed, so an export running now in another process keeps its folder. Returns what was removed.
    """
    out = path_argument(out, "remove_stale_temporaries's out (the export's folder or file)")
    parent = out.parent if str(out.parent) else Path(".")
    removed = [p for prefix in (sibling_prefix(out, "tmp-"), aside_prefix(out)) for p in remove_dead_leftovers(parent, prefix)]
    for path in removed:
        log.info("removed %s left by an interrupted export", path)
    return removed


def temporary_sibling(out: Path, *, folder: bool) -> Path:
    """A new hidden temporary folder/file next to ``out``, named ``.{name}.tmp-{pid}-XXXX``."""
    prefix = f"{sibling_prefix(out, 'tmp-')}{os.getpid()}-"
    if folder:
        return Path(tempfile.mkdtemp(prefix=prefix, dir=out.parent))
    fd, name = tempfile.mkstemp(prefix=prefix, dir=out.parent)
    os.close(fd)
    return Path(name)


def _swap_into_place(tmp: Path, out: Path, overwrite: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` (atomic rename when ``out`` does not exist)."""
    if out.exists() and not (out.is_dir() and not holds_work(out)):
        if not (overwrite and out.is_dir()):
            raise UserError(f"output folder {out} already exists and is not empty; pass --overwrite or another -o")
        replace_folder(tmp, out, problem=_not_a_model_folder)
    else:  # new (or an empty folder): a folder that another export put there meanwhile is not replaced
        place_new(tmp, out)


def check_output_folder(out: str | os.PathLike, overwrite: bool) -> None:
    """One-line errors for an output that cannot become the export folder (checked before any work); a link is
    judged by its target (:func:`~longrope.io.output_target`), which is what is written, as for a GGUF file: the
    command line's early check judged the link itself (the review of battery 23a and 23c)."""
    out = output_target(path_argument(out, "check_output_folder's out (the export folder)"))
    overwrite = check_flag(overwrite, "overwrite")
    check_utf8_path(out.resolve())
    if out.exists() and not out.is_dir():
        raise UserError(f"output {out} is {path_kind(out)}, not a folder; give a folder path with -o (or --format gguf "
                        "for a .gguf file)")
    check_replaceable_target(out)
    if out.exists() and holds_work(out):
        if not overwrite:
            raise UserError(f"output folder {out} already exists and is not empty; pass --overwrite or another -o")
        _check_a_model_folder(out)
    check_writable_parent(out)


def _check_a_model_folder(out: Path) -> None:
    """``--overwrite`` replaces a model folder (an earlier export), never a run folder or a folder of other
    files: an idle search folder was replaced whole, its checkpoint and results lost."""
    if (why := _not_a_model_folder(out)) is not None:
        raise UserError(f"output folder {out} {why}: --overwrite replaces only an exported model folder; choose "
                        "another -o")


def _not_a_model_folder(out: Path) -> str | None:
    """Why ``--overwrite`` may not replace ``out`` (None: an exported model folder): the one rule of the check before
    the work and of the one at the swap, where a run folder or the user's files that arrived meanwhile were
    replaced (the review of battery 23b)."""
    from longrope.formats.factors import run_record_command
    from longrope.formats.hf_config import is_model_config
    from longrope.io import read_json

    if not out.is_dir():
        return "is not a folder"
    config = out / "config.json"
    command = run_record_command(config) if config.is_file() else None
    if command is not None:
        return f"is {command} run folder, not a model folder"
    try:
        doc = read_json(config, what="model configuration (config.json)", expect=None) if config.is_file() else None
    except UserError:
        doc = None
    return None if is_model_config(doc) else "holds no model (no model config.json)"


def check_writable_parent(out: Path) -> None:
    """The nearest existing ancestor of ``out`` must be a folder an entry can be created in (one-line error
    otherwise), tried, not asked: ``os.access`` says yes to root everywhere, so an export to /sys or /proc loaded the
    whole model first and then failed naming its hidden temporary file (battery 11a)."""
    probe = out.parent if str(out.parent) else Path(".")
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"cannot create {out}: {probe} is a file")
    try:
        fd, name = tempfile.mkstemp(prefix=".longrope-write-test-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        if is_disk_full(exc):
            raise
        raise UserError(f"cannot write into {probe} ({exc.strerror or exc}); {os_error_fix(exc, 'choose another -o')}") \
            from None


def serving_readme(factor_set: Any, info: RopeInfo, name: str, *, tokenizer: bool = True) -> str:
    """The export folder's README.md: what the factors are and how to serve them in each runtime. ``tokenizer``:
    whether the folder holds one (without, the card loaded one from the folder, which transformers refused; battery
    31b)."""
    from longrope.rope.factors import require_factor_set

    require_factor_set(factor_set)
    require_supported(info)
    L = int(factor_set.original_max_position_embeddings)
    L_target = int(factor_set.max_position_embeddings)
    m = float(factor_set.resolved_attention_factor())
    n_hat = int(factor_set.start_tokens)
    n_hat_line = (
        f"- **Retained start tokens n̂ = {n_hat}**: no runtime has a key for it (it is stored as "
        f"`{START_TOKENS_KEY}` and in `factors.json`); transformers, vLLM and llama.cpp rotate positions "
        f"1…{n_hat - 1} with the rescaled factors, so they match `longrope` exactly only at position 0.\n"
        if n_hat >= 2 else ""
    )
    reads = "twice for the two lines above: the model's load and the tokenizer's" if tokenizer else \
        "once for the line above, the model's load"
    load_lines = (f'from transformers import AutoModelForCausalLM, AutoTokenizer\nmodel = AutoModelForCausalLM.from_pretrained('
                  f'"{name}")\ntokenizer = AutoTokenizer.from_pretrained("{name}")' if tokenizer else
                  f'from transformers import AutoModelForCausalLM\nmodel = AutoModelForCausalLM.from_pretrained("{name}")\n'
                  "# no tokenizer was exported with this folder (its source had none): load the source model's")
    vllm_tokenizer = "" if tokenizer else " --tokenizer SOURCE_MODEL   # this folder has no tokenizer"
    transformers_note = (
        "transformers 5\nlogs once \"This model config has set a `rope_parameters['original_max_position_embeddings']` "
        "field ...\nPlease set the `factor` field\": `rope_scaling` is the three keys transformers 4.x's Phi-3 requires "
        "(it refuses\na `factor`); transformers derives the same s and m from `max_position_embeddings`, so nothing "
        "needs setting.\nvLLM reads the same three keys (its `short_mscale` / `long_mscale` below are then its default, this m)."
        if _three_key_scaling(factor_set, info) else
        "transformers\nnotes \"Unrecognized keys in `rope_parameters`\" of `short_mscale` and `long_mscale` each time it "
        f"reads\nthis config.json ({reads}): those two keys\n"
        "are vLLM's (below), written on purpose; transformers ignores them and reads m from `attention_factor`.")
    return f"""# {name}: a {info.family} model with LongRoPE factors

Original context L = {L} tokens, target L' = {L_target} (s = {L_target / L:g}), rope base {info.rope_theta:g},
rotary dim {info.rotary_dim}, attention factor m = {m:.6g}, factor method `{factor_set.method}`.
The factors are in `config.json` (`rope_scaling` and `rope_parameters`, rope type `longrope`) and in
`factors.json` (what `longrope` reads back, n̂ and provenance included).
{n_hat_line}
## transformers (4.51+ and 5.x)

```python
{load_lines}
```

transformers uses the short factors while `max(position)+1 <= {L}` and the long ones beyond, with m
on both. When `generate()` crosses {L} tokens, every family but Phi-3 keeps the keys it cached with
the short factors beside queries rotated with the long ones (an inexact mix); `longrope generate`
re-feeds the sequence once at that step and stays exact (`--cache-policy reprefill`). {transformers_note}

## vLLM

```bash
vllm serve {name} --max-model-len {L_target}{vllm_tokenizer}
```

vLLM picks one factor set for the whole engine at start: the long factors when `--max-model-len` >
{L}, else the short ones; it applies `long_mscale` / `short_mscale` (both written as m = {m:.6g}) and
ignores `attention_factor`. It cannot switch per request length, and it has no n̂: serving long
contexts means the long factors for short prompts too (`longrope generate --mode long` gives the
same tokens).

## llama.cpp

Convert with `longrope export --format gguf -o {name}.gguf` (same `--model`/`--factors`): it writes the
factors as the `rope_factors_long.weight` / `rope_factors_short.weight` tensors and
`{{arch}}.rope.scaling.*` keys. llama.cpp uses the long factors when the context size (`-c`) exceeds {L}
and the short ones otherwise, for the whole context; it multiplies cos/sin by
`rope.scaling.attn_factor`. It has no n̂ either.
"""


def check_export_tokenizer(model: Any, tokenizer: Any, who: str, *, every_token: bool = False) -> None:
    """The tokenizer written beside the weights: None (none written) or a loaded tokenizer the model's embeddings fit
    (:func:`~longrope.options.tokenizer_fit_problem`), checked before anything is written (both writers). A
    name was "'str' object has no attribute 'save_pretrained'" after the weights were saved; another model's larger
    tokenizer was written without a word, a Hugging Face folder that fails on its new tokens (battery 20b).
    ``every_token`` (a GGUF, one token per embedding row): added tokens past the embeddings are refused too, saying
    so (a model's own added tokens were "give this model's own tokenizer", the second review of battery 27)."""
    if tokenizer is None:
        return
    from longrope.options import check_loaded_tokenizer, tokenizer_fit_problem

    check_loaded_tokenizer(tokenizer, who)
    rows = int(model.get_input_embeddings().num_embeddings)
    if (problem := tokenizer_fit_problem(tokenizer, rows)) is not None:
        raise UserError(f"{who}: the tokenizer: {problem}: give this model's own tokenizer (or None to write none)")
    size = len(tokenizer) if callable(getattr(tokenizer, "__len__", None)) else len(tokenizer.get_vocab())
    if every_token and size > rows:
        raise UserError(f"{who}: the tokenizer has {size - rows:,} added token(s) past the model's {rows:,} token "
                        "embeddings, and a GGUF holds one token per embedding row: export a Hugging Face folder "
                        "(--format hf), which keeps them")


#: config.json keys besides max_position_embeddings that vLLM reads as the longest context (it serves the smallest
#: present; transformers keeps such foreign keys of a source config, e.g. early Llama conversions' max_sequence_length)
_CONTEXT_LENGTH_KEYS = ("n_positions", "max_seq_len", "seq_length", "model_max_length", "max_sequence_length",
                       "max_seq_length", "seq_len")


def _saved_lengths_to_target(folder: Path, original: int, length: int, source_length: Any) -> None:
    """The context lengths the saved files state besides ``max_position_embeddings``, set to the export's L'
    (battery 31b): raised when below it as follows, and lowered when above it up to the source's own
    ``max_position_embeddings`` (``source_length``: they stated the source's context, e.g. an export's L' exported again
    at a shorter L'; a larger one, such as a tokenizer's "no limit", is not a context and stays):

    - the tokenizer's ``model_max_length`` and config.json's :data:`_CONTEXT_LENGTH_KEYS`, when below L'. A model's
      own tokenizer says L there (Phi-3-mini-4k: 4096): vLLM serves at most the smallest of them and
      max_position_embeddings (``vllm serve FOLDER --max-model-len L'``, the README's command, was refused) and
      transformers' tokenizer warned of indexing errors past L;
    - ``generation_config.json``'s ``max_length`` when it is the model's context (L or the source's
      max_position_embeddings, below L'; Llama 2 says 4096):
      stock ``generate()`` and ``pipeline("text-generation")`` refused every prompt past L ("Input length of input_ids
      is ..., but `max_length` is set to ..."). Another one below L' is a generation budget and stays (one above L', up to
      the source's context, is lowered as the rest: no generation runs past L')."""
    from longrope.io import read_json
    from longrope.options import is_number

    for name, keys, lowest in (("tokenizer_config.json", ("model_max_length",), None),
                               ("config.json", _CONTEXT_LENGTH_KEYS, None),
                               ("generation_config.json", ("max_length",), original)):
        path = folder / name
        if not path.is_file():
            continue
        doc = read_json(path, what=name)
        changed = {key: length for key in keys if is_number(doc.get(key)) and (
            (doc[key] < length and (lowest is None or doc[key] in (lowest, source_length)))
            or (is_number(source_length) and length < doc[key] <= source_length))}
        if changed:
            write_json(path, {**doc, **changed})


def export_hf(
    model: Any,
    tokenizer: Any,
    factor_set: Any,
    out_dir: str | os.PathLike,
    *,
    dtype: Any = None,
    overwrite: bool = False,
) -> ExportResult:
    """Write ``model`` + ``factor_set`` as a Hugging Face folder stock transformers loads.

    ``model`` may be patched or not (the export never reads the rotary module; the factors go into
    the config). ``dtype`` (default: the model's) is the dtype of the saved weights. Everything is
    written into a temporary sibling folder and renamed into place at the end.
    """
    import torch
    from transformers import AutoConfig

    from longrope.rope.baselines import as_made
    from longrope.settings import resolve_dtype

    out = output_target(path_argument(out_dir, "export_hf's out_dir (the folder to write)"))
    require_no_adapters(model, "export_hf")
    check_loaded_model(model, "export_hf")  # on the meta device: "Cannot copy out of meta tensor" while writing (battery 23c)
    info = require_supported(inspect_model(model))
    check_export_tokenizer(model, tokenizer, "export_hf")
    entries, warnings = longrope_config_entries(factor_set, info)
    check_output_folder(out, overwrite)
    make_folder(out.parent)
    remove_stale_temporaries(out)
    weights_dtype = resolve_dtype(dtype) if dtype is not None else next(model.parameters()).dtype
    tmp = temporary_sibling(out, folder=True)
    try:
        src = model
        if _is_quantized(model) or weights_dtype != next(model.parameters()).dtype:
            src = _clean_copy(model, weights_dtype)
        with torch.no_grad():
            src.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        cfg_path = tmp / "config.json"
        config = json.loads(cfg_path.read_text())
        source_length = config.get("max_position_embeddings")  # the source's context, before the export's L'
        # n̂ is written only when > 0: an export exported again (or fine-tuned) with n̂ = 0 kept its source's n̂ in
        # config.json beside factors.json's 0, and --factors FOLDER/config.json read the old n̂ (battery 23c)
        config.pop(START_TOKENS_KEY, None)
        config.update(entries)
        write_json(cfg_path, config)
        _saved_lengths_to_target(tmp, entries["original_max_position_embeddings"], entries["max_position_embeddings"],
                                 source_length)
        factors = as_made(factor_set).to_dict() if hasattr(factor_set, "to_dict") else None  # what config.json applies
        if factors is not None:
            write_json(tmp / FACTORS_FILE, factors)
        write_text(tmp / "README.md", serving_readme(factor_set, info, out.name, tokenizer=tokenizer is not None))
        # Read back with the installed transformers: the factors must arrive where its rotary reads them.
        loaded = AutoConfig.from_pretrained(tmp)
        params = loaded.rope_parameters
        if (
            params.get("rope_type") != "longrope"
            or [float(x) for x in params["long_factor"]] != entries["rope_parameters"]["long_factor"]
            or int(loaded.max_position_embeddings) != entries["max_position_embeddings"]
        ):
            raise RuntimeError(f"exported config is not read back as longrope by this transformers: {params}")
        give_default_modes(tmp)  # mkdtemp/mkstemp made it 0700/0600
        _swap_into_place(tmp, out, overwrite)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for w in warnings:
        log.warning(w)
    return ExportResult(out, tuple(warnings))
