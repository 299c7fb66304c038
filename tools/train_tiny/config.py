"""What determines the tiny model: :class:`TinyConfig` (recorded verbatim in ``training.json``) and its
fingerprint (the name of a run's checkpoint)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from longrope.errors import ConfigError
from longrope.options import option


@dataclass
class TinyConfig:
    """Everything that determines the trained model (recorded verbatim in ``training.json``)."""

    seed: int = option(0, "seed of the weight init (torch) and the batch sampler (numpy)")
    vocab_size: int = option(4096, "BPE vocabulary including the 3 special tokens")
    hidden_size: int = option(256, "hidden size")
    num_layers: int = option(4, "transformer layers")
    num_heads: int = option(4, "attention heads; head_dim = hidden_size / num_heads (64 gives 32 RoPE pairs)")
    intermediate_size: int = option(768, "MLP size")
    context: int = option(256, "training length L in tokens (the model's original_max_position_embeddings)")
    rope_theta: float = option(10000.0, "RoPE base")
    batch_size: int = option(16, "sequences per step")
    max_steps: int = option(3000, "training steps (also the cosine schedule's length)")
    time_budget_s: float | None = option(None, "stop early (checkpointed, recorded as stopped_early) after this "
                                               "many seconds of training; where it stops depends on the machine, "
                                               "--stop-at-step replays such a run exactly", flag="--time-budget",
                                         metavar="S")
    stop_at_step: int | None = option(None, "stop after this step without changing the schedule (which still "
                                            "spans --max-steps)")
    lr: float = option(2e-3, "peak learning rate")
    min_lr_ratio: float = option(0.1, "final learning rate as a share of the peak (cosine floor)")
    warmup_steps: int = option(100, "linear warm-up steps")
    weight_decay: float = option(0.1, "AdamW weight decay of the matrices")
    grad_clip: float = option(1.0, "gradient-norm clip")
    passkey_fraction: float = option(0.1, "share of training sequences that are passkey prompts with their answer")
    passkey_answer_weight: float = option(1.0, "loss weight of the answer's key digits in passkey rows (1 = the "
                                               "plain LM loss)")
    copy_fraction: float = option(0.0, "share of training sequences that are synthetic copy rows: a random string "
                                       "after BOS, book text, then the same string again (only the second copy is "
                                       "a target); they make induction heads form")
    copy_max_length: int = option(32, "longest random string of a copy row (5..this many tokens; capped by half "
                                      "the context)")
    induction_steps: int = option(0, "the first N steps train on induction rows only (a random string of 4..40 "
                                     "tokens repeated to fill the row; grows copy heads in a few hundred steps)")
    induction_segments: int = option(1, "induction batches hold batch_size x this rows of context / this tokens")
    eval_passkey_trials: int = option(0, "passkey prompts near L scored at each periodic evaluation (0 = none; "
                                         "logging only)")
    tokenizer: str | None = option(None, "reuse this tokenizer (a folder with tokenizer.json, or the file) "
                                         "instead of training one", metavar="PATH",
                                   path=True)
    init_from: str | None = option(None, "start from the weights of this train-tiny checkpoint (.safetensors; "
                                         "its optimizer and schedule do not carry over; old .pt pickles are "
                                         "refused, never unpickled)", metavar="CKPT",
                                   path=True)
    eval_every: int = option(250, "steps between periodic evaluations")
    eval_windows: int = option(24, "held-out windows of L tokens scored at each periodic evaluation (logging only)")
    checkpoint_every_s: float = option(120.0, "seconds between checkpoints", flag="--checkpoint-every", metavar="S")
    threads: int = option(1, "torch threads")
    tie_embeddings: bool = option(True, "tie the input embedding and the LM head")

    def __post_init__(self) -> None:
        positive = ["vocab_size", "hidden_size", "num_layers", "num_heads", "intermediate_size",
                    "context", "batch_size", "max_steps", "eval_every", "eval_windows", "threads"]
        for name in positive:
            if int(getattr(self, name)) < 1:
                raise ConfigError(name, "{name} must be >= 1, got " + str(getattr(self, name)))
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            raise ConfigError(("hidden_size", "num_heads"), f"{{name0}} {self.hidden_size} must split into "
                                                            f"{{name1}} {self.num_heads} heads of even size")
        if self.vocab_size < 300:
            raise ConfigError("vocab_size", f"{{name}} {self.vocab_size} is below the 256 bytes + specials a "
                                            "byte-level BPE needs; use >= 300")
        if self.context < 64:
            raise ConfigError("context", f"{{name}} {self.context} is too short for a passkey prompt; use >= 64")
        if not 0.0 <= self.passkey_fraction < 1.0:
            raise ConfigError("passkey_fraction", "{name} must be in [0, 1), got " + str(self.passkey_fraction))
        if not 0.0 <= self.copy_fraction < 1.0 or self.passkey_fraction + self.copy_fraction >= 1.0:
            raise ConfigError(("copy_fraction", "passkey_fraction"),
                              "{name0} must be in [0, 1) with {name1} + {name0} < 1, got "
                              f"{self.copy_fraction} and {self.passkey_fraction}")
        if self.copy_max_length < 5:
            raise ConfigError("copy_max_length", "{name} must be >= 5, got " + str(self.copy_max_length))
        if not 0 <= self.induction_steps <= self.max_steps:
            raise ConfigError(("induction_steps", "max_steps"), "{name0} must be in [0, {name1}], got "
                              + str(self.induction_steps))
        if not 1 <= self.induction_segments <= self.context // 16:
            raise ConfigError("induction_segments", "{name} must be in [1, context / 16], got "
                              + str(self.induction_segments))
        if self.eval_passkey_trials < 0:
            raise ConfigError("eval_passkey_trials", "{name} must be >= 0, got " + str(self.eval_passkey_trials))
        if self.passkey_answer_weight <= 0:
            raise ConfigError("passkey_answer_weight", "{name} must be > 0, got " + str(self.passkey_answer_weight))
        if self.lr <= 0 or not 0 <= self.min_lr_ratio <= 1:
            raise ConfigError(("lr", "min_lr_ratio"), "{name0} must be > 0 and {name1} in [0, 1]")
        if self.warmup_steps < 0:
            raise ConfigError("warmup_steps", "{name} must be >= 0, got " + str(self.warmup_steps))
        if self.stop_at_step is not None and not 1 <= self.stop_at_step <= self.max_steps:
            raise ConfigError(("stop_at_step", "max_steps"), "{name0} must be in [1, {name1}], got "
                              + str(self.stop_at_step))
        if self.time_budget_s is not None and self.time_budget_s <= 0:
            raise ConfigError("time_budget_s", "{name} must be > 0 seconds, got " + str(self.time_budget_s))

    def fingerprint(self) -> str:
        """Hash of the fields that shape the run (not the budget/checkpoint cadence)."""
        d = dataclasses.asdict(self)
        for k in ("time_budget_s", "stop_at_step", "checkpoint_every_s", "threads"):
            d.pop(k)
        # Options added later are left out at their neutral values, so that older checkpoints
        # (the shipped run's first stage among them) keep their fingerprints.
        for k, neutral in (("passkey_answer_weight", 1.0), ("init_from", None), ("copy_fraction", 0.0),
                           ("copy_max_length", 32), ("eval_passkey_trials", 0), ("induction_steps", 0),
                           ("induction_segments", 1), ("tokenizer", None)):
            if d[k] == neutral:
                d.pop(k)
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]
