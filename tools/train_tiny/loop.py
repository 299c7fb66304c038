"""The training loop of the tiny model: from scratch (or a warm start), resumable, deterministic.

The model is a plain ``LlamaForCausalLM`` with standard RoPE trained at a short context (256), so
that everything beyond 256 tokens is context extension, the thing this project studies. Training
windows always start with BOS at position 0 (the evaluation protocol's layout) and come from random
offsets of the training books, so the model sees every position 0..255 with real text. A share of
passkey sequences (standard wording, 5-digit keys, within the trained window) teaches it to
retrieve, so that a demo can show which scaling method keeps that ability at 8x.

Determinism: all randomness flows from ``TinyConfig.seed`` through one ``numpy.random.Generator``
(data) and ``torch.manual_seed`` at init (weights, before any other torch RNG use); a checkpoint
(:mod:`tools.train_tiny.checkpoint`) stores the model, optimizer, step, log and the generator
state, so a resumed run continues the same sequence of batches.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from longrope.errors import ConfigError, UserError
from longrope.io import write_text
from tools.train_tiny.batches import BatchSampler
from tools.train_tiny.checkpoint import load_checkpoint, load_model_tensors, load_optimizer, save_checkpoint
from tools.train_tiny.config import TinyConfig
from tools.train_tiny.model import build_model
from tools.train_tiny.report import PASSKEY_MARGIN, eval_spans, heldout_ppl, passkey_rate


def lr_at(step: int, cfg: TinyConfig) -> float:
    """Linear warmup then cosine decay to ``min_lr_ratio * lr`` at ``max_steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    t = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t)))


def train(cfg: TinyConfig, tokenizer, train_docs: list[np.ndarray], eval_docs: list[np.ndarray],
          *, checkpoint: Path | None = None, log_path: Path | None = None,
          progress: Callable[[dict], None] | None = None) -> tuple[object, list[dict], dict]:
    """Train from scratch (or resume ``checkpoint``); return (model, log records, run summary).

    Checkpoints (model + optimizer + step + sampler RNG + log) are written atomically every
    ``checkpoint_every_s`` and at the end, so a killed run loses at most that much work. The
    log is rewritten atomically as JSON lines at each record.
    """
    import torch

    torch.set_num_threads(cfg.threads)
    model = build_model(cfg, tokenizer)
    init_info = _warm_start(model, cfg)
    opt = _optimizer(model, cfg)
    rng = np.random.default_rng(cfg.seed)
    step, log, elapsed_before = _resume(checkpoint, cfg, model, opt, rng)
    sampler = BatchSampler(train_docs, tokenizer, cfg, rng)
    periodic = eval_spans(eval_docs, cfg.context, max(1, cfg.eval_windows // max(1, len(eval_docs))))

    def write_checkpoint() -> None:
        if checkpoint is None:
            return
        save_checkpoint(checkpoint, model, opt, {
            "fingerprint": cfg.fingerprint(), "config": dataclasses.asdict(cfg), "step": step, "log": log,
            "rng": rng.bit_generator.state,  # PCG64: {"bit_generator", "state": {"state", "inc"}, ...}, ints
            "elapsed_s": elapsed_before + time.perf_counter() - t_start})

    def record(entry: dict) -> None:
        log.append(entry)
        if log_path is not None:
            write_text(log_path, "".join(json.dumps(e) + "\n" for e in log))
        if progress is not None:
            progress(entry)

    t_start = time.perf_counter()
    last_ckpt = t_start
    running, n_running, tokens_per_step = 0.0, 0, cfg.batch_size * (cfg.context - 1)
    stopped_early = False
    model.train()
    while step < cfg.max_steps:
        elapsed = elapsed_before + time.perf_counter() - t_start
        if ((cfg.time_budget_s is not None and time.perf_counter() - t_start >= cfg.time_budget_s)
                or (cfg.stop_at_step is not None and step >= cfg.stop_at_step)):
            stopped_early = True
            break
        lr = lr_at(step, cfg)
        induction = step < cfg.induction_steps
        loss, gnorm = _train_step(model, opt, sampler, cfg, lr=lr, induction=induction)
        step += 1
        running += loss
        n_running += 1
        if step % cfg.eval_every == 0 or step in (cfg.max_steps, cfg.stop_at_step, cfg.induction_steps):
            entry = {"step": step, "phase": "induction" if induction else "mixed", "lr": lr,
                     "train_loss": running / n_running, "grad_norm": gnorm,
                     "tokens": step * tokens_per_step, "elapsed_s": round(elapsed, 1),
                     **_periodic_scores(model, tokenizer, cfg, periodic)}
            model.train()
            running, n_running = 0.0, 0
            record(entry)
        if time.perf_counter() - last_ckpt >= cfg.checkpoint_every_s:
            write_checkpoint()
            last_ckpt = time.perf_counter()
    write_checkpoint()
    summary = {"steps": step, "tokens_seen": step * tokens_per_step, "stopped_early": stopped_early,
               "train_seconds": round(elapsed_before + time.perf_counter() - t_start, 1)}
    if init_info is not None:
        summary["init_from"] = init_info
    model.eval()
    return model, log, summary


def _warm_start(model, cfg: TinyConfig) -> dict | None:
    """Load ``cfg.init_from`` (a train-tiny checkpoint) into ``model``; what the summary records of it."""
    if cfg.init_from is None:
        return None
    init_path = Path(cfg.init_from)
    if not init_path.is_file():
        raise ConfigError("init_from", f"{{name}} {init_path} is not a file; give a train-tiny checkpoint "
                                       "(.safetensors)")
    tensors, init = load_checkpoint(init_path, what="--init-from")
    load_model_tensors(model, tensors, init_path, "--init-from")
    return {"path": str(init_path), "sha256": hashlib.sha256(init_path.read_bytes()).hexdigest(),
            "fingerprint": init["fingerprint"], "config": init.get("config"), "step": init["step"],
            "log": init["log"]}


def _optimizer(model, cfg: TinyConfig):
    """AdamW with weight decay on the matrices only."""
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
    )


def _resume(checkpoint: Path | None, cfg: TinyConfig, model, opt, rng: np.random.Generator) -> tuple[int, list, float]:
    """Restore model, optimizer and generator from ``checkpoint`` when it exists; ``(step, log, elapsed s)``."""
    if checkpoint is None or not checkpoint.exists():
        return 0, [], 0.0
    tensors, state = load_checkpoint(checkpoint, what="checkpoint")
    if state["fingerprint"] != cfg.fingerprint():
        raise UserError(f"checkpoint {checkpoint} is from a different config; delete it or pass "
                        "--no-resume")
    load_model_tensors(model, tensors, checkpoint, "checkpoint")
    load_optimizer(opt, tensors, state, checkpoint)
    try:
        rng.bit_generator.state = state["rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f"checkpoint {checkpoint} has no usable generator state ({e}); delete it or pass "
                        "--no-resume") from None
    return int(state["step"]), list(state["log"]), float(state.get("elapsed_s", 0.0))


def _train_step(model, opt, sampler: BatchSampler, cfg: TinyConfig, *, lr: float, induction: bool) -> tuple[float, float]:
    """One optimizer step at learning rate ``lr``; ``(loss, gradient norm before clipping)``. Plain LM loss
    unless answer tokens are weighted, copies are mixed in or the induction phase runs."""
    import torch

    for g in opt.param_groups:
        g["lr"] = lr
    if cfg.passkey_answer_weight == 1.0 and cfg.copy_fraction == 0.0 and not induction:
        x = torch.from_numpy(sampler.batch())  # [batch, context]
        loss = model(input_ids=x, labels=x).loss
    else:
        ids, w = sampler.induction_batch() if induction else sampler.weighted_batch()
        x, w = torch.from_numpy(ids), torch.from_numpy(w)  # [batch, context] each
        logits = model(input_ids=x).logits[:, :-1].float()  # [batch, context-1, vocab]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), x[:, 1:], reduction="none")
        loss = (nll * w[:, 1:]).sum() / w[:, 1:].sum()
    opt.zero_grad(set_to_none=True)
    loss.backward()
    gnorm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip))
    opt.step()
    return loss.item(), gnorm


def _periodic_scores(model, tokenizer, cfg: TinyConfig, periodic: list) -> dict:
    """The held-out perplexity at L and the passkey rate just inside it, for a log record."""
    scores = {}
    if periodic:
        scores[f"heldout_ppl_{cfg.context}"] = heldout_ppl(model, periodic, cfg.context, tokenizer.bos_token_id)
    if cfg.eval_passkey_trials:
        rate = passkey_rate(model, tokenizer, cfg.context - PASSKEY_MARGIN, cfg.eval_passkey_trials, seed=cfg.seed + 1)
        if rate is not None:
            scores[f"passkey_{cfg.context}"] = rate
    return scores
