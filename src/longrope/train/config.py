"""``FinetuneConfig``: every knob of a fine-tuning run and its default, in one place.

Each field is a documented :func:`longrope.options.option` (help, and ``choices``/``metavar``/
``group``/``short`` where they help): the command line is derived from them; no argparse lives here.
Values that depend on the model, the factors or the number of processes (``seq_len`` = L' when
unset, ``short_length`` = L, the gradient-accumulation count behind ``tokens_per_step``) are
resolved at run time and recorded in every checkpoint (:mod:`longrope.train.checkpoint`).

Validation that needs nothing but the values happens in ``__post_init__`` and raises
:class:`~longrope.errors.ConfigError` naming the field, so the CLI can name the flag.
This module imports no torch.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from longrope import settings
from longrope.errors import ConfigError, shown
from longrope.groups import (
    bos_option,
    check_groups,
    data_option,
    device_option,
    heldout_fraction_option,
    resolve_lengths,
    seed_option,
)
from longrope.options import MAX_TOKENS, check_int, check_shapes, option, output_option, token_count

__all__ = ["FinetuneConfig", "SCHEDULES", "DTYPES", "DEVICES", "TRAJECTORY_FIELDS", "WARMUP_STEPS"]

SCHEDULES = ("linear", "cosine", "constant")
DTYPES = ("auto", *settings.DTYPES)
DEVICES = ("auto", "cpu", "cuda")

_DATA = "data"
_OPT = "optimisation"
_MEM = "memory and precision"
_LORA = "LoRA (peft)"
_RUN = "checkpoints and output"

#: The warm-up when none is given (clamped to ``steps - 1``: a short run warms up over all its steps but the last).
WARMUP_STEPS = 20



#: the default LoRA targets: the attention projections as the Llama layout names them; a model that has other names
#: for them (Phi-3's fused qkv_proj) gets its own in their place (longrope.train.lora.targets_for)
LORA_ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")

@dataclass
class FinetuneConfig:
    """Continued pre-training with LongRoPE factors installed (docs/method.md §5, §6)."""

    model: str = option(help='model to fine-tune: "tiny", "smollm2", a Hugging Face folder, a .gguf file or a hub id',
                      metavar="M", path=True)
    factors: str = option(help="factor file (factors.json, a longrope config.json or a run folder) installed "
                             "while training; its tables are fixed, not trained", metavar="F",
                          path=True)
    data: str = data_option("shard folder from 'longrope tokenize' holding documents of role 'train' "
                            "(--input train=PATH)")
    output: str = output_option("run folder: checkpoints/, train_log.jsonl, loss.png and the exported model/",
                                metavar="OUT")
    seq_len: int | None = option(None, "training window N in tokens: 16384, 16k, or 8x the model's original "
                                       "context", metavar="N", length=True,
                                 default_text="the factor set's target length L'", group=_DATA)
    short_share: float = option(0.0, "share of steps trained on windows of at most --short-length tokens with the "
                                   "short factors (LongRoPE2 mixed context windows); the rest use the long "
                                   "factors at N", metavar="P", group=_DATA)
    short_length: int | None = option(None, "length of the short windows (2048, 2k or 1x)", metavar="S",
                                      length=True, default_text="the factor set's original length L", group=_DATA)
    passkey_share: float = option(0.0, "share of the rows of long steps replaced by the standard passkey prompt of the "
                                       "window's length with its answer (random 5-digit key and depth; needs the "
                                       "model's tokenizer): keeps retrieval in the mixture while positions are "
                                       "re-learned", metavar="P", group=_DATA)
    bos: bool = bos_option("begin every packed segment (a document, or the rest of one, in a window) with BOS "
                           "at position 0, as evaluation windows do", group=_DATA)
    heldout_fraction: float = heldout_fraction_option("the hash split's held-out share, as in search and eval (decides "
                                                      "which unpinned documents are search or held-out, all refused "
                                                      "for training)", group=_DATA)
    exclude: tuple[str, ...] = option((), "more shard folders whose search and held-out documents must not be "
                                        "trained on (checked by document id and by content)",
                                    metavar="DIR,DIR", group=_DATA, path=True)
    steps: int = option(400, "optimizer steps (LongRoPE: 400 at 128k, then 600 at 256k)", group=_OPT)
    learning_rate: float = option(2e-5, "peak learning rate (LongRoPE on LLaMA2: 2e-5)", metavar="LR", group=_OPT)
    lr_schedule: str = option("linear", "decay after warm-up: linear or cosine to 0, or constant",
                            choices=SCHEDULES, group=_OPT)
    warmup_steps: int | None = option(None, "linear warm-up from 0, in optimizer steps (inside --steps)",
                                      default_text=f"{WARMUP_STEPS}, or --steps - 1 when fewer", group=_OPT)
    batch_size: int = option(1, "windows per process per micro-step", group=_OPT)
    grad_accum: int | None = option(None, "micro-steps per optimizer step", default_text="1, or what "
                                  "--tokens-per-step needs", group=_OPT)
    tokens_per_step: int | None = option(None, "tokens per optimizer step over all processes (batch-size x "
                                             "seq-len x grad-accum x processes; 64k ...); sets grad-accum",
                                       metavar="T", parse=token_count("--tokens-per-step"), group=_OPT)
    weight_decay: float = option(0.0, "AdamW weight decay", group=_OPT)
    max_grad_norm: float = option(1.0, "clip the gradient norm to this (0: no clipping)", group=_OPT)
    seed: int = seed_option("seeds the document order, the weight init of LoRA adapters and torch", group=_OPT)
    gradient_checkpointing: bool = option(False, "recompute each layer's activations in the backward pass "
                                               "(less memory, ~30% more time)", group=_MEM)
    dtype: str = option("auto", "compute precision (mixed, through accelerate; weights and optimizer stay "
                              "float32): auto = bfloat16 where the device supports it, else float32; or "
                              + ", ".join(settings.DTYPES) + " (also fp32, bf16, fp16)", metavar="DTYPE", group=_MEM)
    device: str = device_option("auto (CUDA when available), cpu or cuda; under 'accelerate launch' each process "
                                "gets its own device", choices=DEVICES, group=_MEM)
    attn_implementation: str | None = option(None, "attention kernel: sdpa (packed documents get a [N, N] mask "
                                                   "per window), flash_attention_2 (varlen, no mask; CUDA), eager",
                                           default_text="the family's working one",
                                           group=_MEM)
    loss_chunk: int | None = option(None, "positions per chunk of the LM head and the loss (never [N, vocab] "
                                        "logits)", default_text="max(128, 2^21 / vocab)", metavar="N",
                                      parse=token_count("--loss-chunk"), group=_MEM)
    lora: bool = option(False, "train LoRA adapters (peft) instead of all weights; merged into the export",
                      group=_LORA)
    lora_rank: int = option(8, "LoRA rank r", group=_LORA)
    lora_alpha: float = option(16.0, "LoRA alpha (scaling alpha / r)", group=_LORA)
    lora_dropout: float = option(0.0, "dropout on the LoRA input", group=_LORA)
    lora_targets: tuple[str, ...] = option(LORA_ATTENTION, "module names that get adapters", metavar="NAME,NAME",
                                         default_text=f"{','.join(LORA_ATTENTION)}: the attention projections "
                                                      "(a model that names them otherwise, as Phi-3's fused "
                                                      "qkv_proj, its own)", group=_LORA)
    lora_trainable: tuple[str, ...] = option(("embed", "norm"), "parameters whose name contains one of these are "
                                                              "trained fully alongside the adapters (LongLoRA "
                                                              "trains embeddings and norms)",
                                           metavar="PART,PART", group=_LORA)
    checkpoint_every: int = option(50, "save a resumable checkpoint every this many steps (and at the end)",
                                 group=_RUN)
    keep_checkpoints: int = option(2, "checkpoints kept (older ones are deleted)", group=_RUN)
    resume: bool = option(False, "continue from the newest checkpoint in the run folder (starts afresh when "
                               "there is none)", group=_RUN)
    export_dtype: str | None = option(None, "dtype of the exported weights: " + ", ".join(settings.DTYPES)
                                    + " (also fp32, bf16, fp16)", metavar="DTYPE",
                                    default_text="the input model's", group=_RUN)
    quiet: bool = option(False, "no progress bar", group=_RUN)

    def __post_init__(self) -> None:
        check_shapes(self)  # first: a path object is its text ('factors is required' for factors=Path(...))
        for name in ("model", "factors", "data", "output"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ConfigError(name, "{name} is required")
        resolve_lengths(self)
        check_groups(self)
        for name in ("steps", "batch_size", "lora_rank", "checkpoint_every", "keep_checkpoints"):
            check_int(self, name)
        for name in ("grad_accum", "tokens_per_step"):
            check_int(self, name, optional=True)
        for name in ("seq_len", "short_length", "loss_chunk"):
            check_int(self, name, hi=MAX_TOKENS, optional=True)
        if self.seq_len is not None and self.seq_len < 2:
            raise ConfigError("seq_len", "{name} must be >= 2 tokens, got " + str(self.seq_len))
        if self.short_length is not None and self.short_length < 2:
            raise ConfigError("short_length", "{name} must be >= 2 tokens, got " + str(self.short_length))
        # not given (None, and so saved): the default within the run, resolved by ``warmup`` each time,
        # so a run started again with more --steps gets the default, not an old run's clamp
        if self.warmup_steps is not None:
            if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
                raise ConfigError("warmup_steps", "{name} must be an integer >= 0, got " + repr(self.warmup_steps))
            if self.warmup_steps < 0 or self.warmup_steps > self.steps:
                raise ConfigError(("warmup_steps", "steps"), "{name0} must be in [0, {name1}], got "
                                  + str(self.warmup_steps))
            if self.warmup_steps == self.steps == 1:  # the warm-up's first step has learning rate 0
                raise ConfigError(("warmup_steps", "steps"), "{name0} 1 gives the only step of a {name1} 1 run a "
                                  "learning rate of 0 (a warm-up starts from 0), so nothing would be trained; give "
                                  "{name0} 0, or more {name1}")
        for name, lo, hi in (("short_share", 0.0, 1.0), ("passkey_share", 0.0, 1.0), ("lora_dropout", 0.0, 0.999)):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and lo <= v <= hi):
                raise ConfigError(name, "{name} must be in " + f"[{lo:g}, {hi:g}], got {shown(v)}")
        # a setting of steps that will not happen would be ignored: refuse it, as a LoRA setting without --lora
        if self.short_length is not None and self.short_share == 0:
            raise ConfigError(("short_length", "short_share"), "{name0} sets the length of short steps, but {name1} is "
                              "0 (no step is short); give {name1} P > 0 (or drop {name0})")
        if self.passkey_share > 0 and self.short_share == 1:
            raise ConfigError(("passkey_share", "short_share"), "{name0} replaces rows of long steps, but {name1} is 1 "
                              "(every step is short); lower {name1} (or drop {name0})")
        for name in ("learning_rate", "lora_alpha"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(name, "{name} must be a finite number > 0, got " + repr(v))
        for name in ("weight_decay", "max_grad_norm"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ConfigError(name, "{name} must be a finite number >= 0, got " + repr(v))
        for name, allowed in (("lr_schedule", SCHEDULES), ("device", DEVICES)):
            if getattr(self, name) not in allowed:
                raise ConfigError(name, "{name} must be one of " + ", ".join(allowed)
                                  + f", got {shown(getattr(self, name))}")
        for name, auto in (("dtype", "auto"), ("export_dtype", None)):  # the names every command takes (fp32 ...)
            value = getattr(self, name)
            if value != auto:
                canonical = settings.dtype_name(value)
                if canonical is None:
                    raise ConfigError(name, "{name} must be one of " + ", ".join(DTYPES if auto else settings.DTYPES)
                                      + f" (or fp32, bf16, fp16), got {shown(value)}")
                setattr(self, name, canonical)  # the trainer and the resume fingerprint read one spelling
        if not self.lora:  # a LoRA setting changed without --lora would be ignored: refuse it
            import dataclasses

            for f in dataclasses.fields(self):
                value = getattr(self, f.name)
                if f.name.startswith("lora_") and (tuple(value) if isinstance(value, list) else value) != f.default:
                    raise ConfigError((f.name, "lora"), "{name0} applies to LoRA training; add {name1} (or drop "
                                      "{name0} to train all weights)")
        if self.lora and not self.lora_targets:
            raise ConfigError("lora_targets", "{name} must name at least one module when LoRA is on")
        self.exclude = tuple(self.exclude)
        self.lora_targets = tuple(self.lora_targets)
        self.lora_trainable = tuple(self.lora_trainable)

    @property
    def warmup(self) -> int:
        """The warm-up in optimizer steps: ``warmup_steps`` when given, else the default clamped to ``steps - 1``
        (a warm-up starts from learning rate 0: a shorter run warms up over all its steps but the last, which
        trains at the peak; a 1-step run trains at the peak)."""
        return min(WARMUP_STEPS, self.steps - 1) if self.warmup_steps is None else self.warmup_steps

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able dict (tuples become lists)."""
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v)
                for f in dataclasses.fields(self)}


#: Fields that decide the sequence of weights a run produces: a resumed run must have the same values
#: (the others — progress, checkpoint cadence, export — may change between the killed run and ``resume``).
TRAJECTORY_FIELDS = tuple(
    f.name for f in dataclasses.fields(FinetuneConfig)
    if f.name not in ("output", "resume", "quiet", "checkpoint_every", "keep_checkpoints", "export_dtype",
                      "device", "grad_accum", "batch_size")
)
