"""``FinetuneResult``: what :func:`longrope.train.finetune` did."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["FinetuneResult"]


@dataclass(frozen=True)
class FinetuneResult:
    """The outcome of a fine-tuning run (every process returns one; files are written by the main one)."""

    output: Path
    """The run folder."""
    model_dir: Path
    """The exported Hugging Face folder (``OUT/model``): fine-tuned weights, factors in config.json."""
    steps: int
    """Optimizer steps completed (the whole run, earlier runs of a resumed run included)."""
    resumed_from: int | None
    """The checkpoint step this call continued from, or None for a fresh start."""
    losses: tuple[float, ...]
    """Token-mean training loss of every step, step 1 first (the whole run)."""
    kinds: tuple[str, ...]
    """"long" or "short" for every step (LongRoPE2 mixed context windows)."""
    tokens: int
    """Input tokens trained on (all processes, the whole run)."""
    seconds: float
    """Training time (the whole run; set-up and export not included)."""
    seq_len: int
    """N, the long windows' length."""
    short_length: int
    """S, the longest segment of a short window."""
    tokens_per_step: int
    """Tokens per optimizer step over all processes."""
    grad_accum: int
    """Micro-steps per optimizer step on each process."""
    num_processes: int
    """Processes that trained (data parallel)."""
    trainable_parameters: int
    """Parameters the optimizer updated (LoRA: adapters plus embeddings/norms)."""
    log_path: Path
    """``train_log.jsonl``."""
    plot_path: Path
    """``loss.png``."""
    checkpoint: Path | None
    """The last checkpoint folder."""
    export_warnings: tuple[str, ...] = ()
    """Caveats of the export (n̂ is not expressible in a Hugging Face config, ...)."""

    @property
    def final_loss(self) -> float:
        return self.losses[-1] if self.losses else float("nan")

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        """JSON-able summary (paths as strings; per-step losses are in the log file, not here)."""
        return {
            "output": str(self.output), "model_dir": str(self.model_dir), "steps": self.steps,
            "resumed_from": self.resumed_from, "final_loss": self.final_loss,
            "first_loss": self.losses[0] if self.losses else None,
            "short_steps": sum(k == "short" for k in self.kinds), "tokens": self.tokens,
            "seconds": self.seconds, "tokens_per_second": self.tokens_per_second, "seq_len": self.seq_len,
            "short_length": self.short_length, "tokens_per_step": self.tokens_per_step,
            "grad_accum": self.grad_accum, "num_processes": self.num_processes,
            "trainable_parameters": self.trainable_parameters, "log": str(self.log_path),
            "plot": str(self.plot_path), "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "export_warnings": list(self.export_warnings),
        }
