"""``finetune``: continued pre-training with LongRoPE factors installed, on accelerate.

The story, top to bottom (each part a method below):

1. **Set-up** — everything that can be wrong with the input is checked before the model loads:
   the run folder, the factor file, the shards and the training/search/held-out overlap. Then the
   model is loaded (float32 master weights), the factors installed through the existing patch
   (:func:`longrope.models.install_factors`: a replaced rotary module whose tables are buffers, so
   they are never trained), LoRA and gradient checkpointing applied on request, and model,
   optimizer and schedule handed to ``Accelerator.prepare`` — one process on a CPU, or whatever
   ``accelerate launch`` set up (DDP, FSDP; see docs/finetune.md).
2. **Train** — per optimizer step: long or short windows (:func:`~longrope.train.data.is_short_step`),
   the patch switched to the matching factors, the global batch's rows cut from the document
   stream, this process's micro-batches run through :class:`~longrope.train.loss.CausalLMLoss`
   under ``accelerator.accumulate``, one optimizer and schedule step, a log line, and every
   ``checkpoint_every`` steps an atomic accelerate checkpoint.
3. **Export** — LoRA merged, the weights and the factor set written by
   :func:`longrope.models.export_hf` as a folder stock transformers loads.

**Which factors a window gets.** The patch, like transformers' ``longrope`` type, picks the long
factors when ``max(position_ids) + 1 > L`` for the whole batch. Packed windows restart position ids
in every segment, so a long window made of short documents would silently get the short factors.
The loop therefore installs *forced* factor sets — the long factors for both regimes on long
steps, the short ones for both on short steps — which is LongRoPE2's mixed-context-window rule:
rescaled RoPE for long windows, the original-window factors for windows of at most L.

**Loss normalisation.** A step's loss is the mean over every target token of the global batch. Each
micro-batch contributes ``nll_sum · (processes · accumulation) / global_targets``; accelerate
divides by the accumulation count and DDP averages over processes, so the gradient is exactly the
gradient of that mean whatever the split into processes and micro-steps — one process with
``tokens_per_step`` T trains the same as two with the same T (up to float summation order).
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from longrope.data import TokenCorpus
from longrope.errors import ConfigError, PeerLost, UserError
from longrope.io import expand_user
from longrope.train.checkpoint import (
    TrainState,
    check_same_run,
    latest_checkpoint,
    load_checkpoint,
    newest_intact_checkpoint,
    save_checkpoint,
    take_run_id,
)
from longrope.train.config import TRAJECTORY_FIELDS, FinetuneConfig
from longrope.train.data import (
    PackedWindows,
    documents_with_targets,
    is_short_step,
    materialize,
    passkey_row,
    passkey_rows,
    require_training_documents,
    row_targets,
    training_documents,
)
from longrope.train.loss import CausalLMLoss, default_loss_chunk
from longrope.train.record import LossLog, plot_losses, progress_bar
from longrope.train.result import FinetuneResult

__all__ = ["finetune", "check_settings", "LOG_FILE", "PLOT_FILE", "MODEL_DIR"]

LOG_FILE = "train_log.jsonl"
PLOT_FILE = "loss.png"
MODEL_DIR = "model"
_PRECISION = {"float32": "no", "bfloat16": "bf16", "float16": "fp16"}

_log = logging.getLogger(__name__)


def finetune(config: FinetuneConfig, *, log: Callable[[str], None] | None = None,
             on_checked: Callable[[], None] | None = None) -> FinetuneResult:
    """Fine-tune ``config.model`` with ``config.factors`` installed; write ``config.output``.

    Under ``accelerate launch`` every process calls this with the same config. Bad input raises
    :class:`~longrope.errors.UserError` (or its :class:`~longrope.errors.ConfigError` form naming the
    field) before the model is loaded. ``on_checked`` is called once the input has passed every check
    (a resume's checkpoint included), before the model loads: the run folder's records are written then.
    """
    from longrope.options import require_config
    from longrope.train.launch import launch_problem, launcher_pid

    require_config(config, FinetuneConfig, "longrope.train.finetune")
    launcher_pid()  # read now, while the launcher is this process's parent (the command line read it first)
    if (stray := launch_problem(training=True)) is not None:  # (the command line checks LOCAL_RANK for every command)
        raise UserError(stray)
    trainer = _Trainer(config, log, on_checked)
    try:
        trainer.set_up()
        trainer.train()
        return trainer.export()
    except RuntimeError as exc:
        if (lost := _launcher_lost(trainer)) is not None:  # (the group's set-up failing on the gone launcher's store)
            raise lost from None
        if getattr(trainer, "world", 1) > 1 and _peer_lost(exc):  # a 40-line gloo traceback before (battery 15)
            raise PeerLost(f"another process of the {trainer.world}-process group stopped (the connection to it "
                           f"closed); the checkpoints in {trainer.out / 'checkpoints'} are kept: launch the same "
                           "command with --resume") from None
        raise
    finally:
        trainer.close()


def _peer_lost(exc: RuntimeError) -> bool:
    """Whether a collective failed because another process of the group went away (killed, crashed): torch's
    distributed errors (NCCL), or gloo's transport failing on a closed connection."""
    import torch.distributed as dist

    if isinstance(exc, getattr(dist, "DistError", ())):
        return True
    text = str(exc)
    return "/gloo/transport/" in text or any(s in text for s in ("Connection closed by peer",
                                                                  "Connection reset by peer"))


def _launcher_lost(trainer: _Trainer) -> PeerLost | None:
    """The one line of a process whose launcher stopped (``kill -9`` of ``accelerate launch`` or of its process group),
    or None while it runs: asked before the group forms, at every step and when a collective fails. A launcher killed
    while the group formed left one process with torch's 70-line store traceback and the other waiting on the gone
    launcher's store for 30 minutes (battery 27a); killed during the set-up, they trained on unseen (battery 20)."""
    from longrope.train.launch import launcher_stopped

    if not launcher_stopped():
        return None
    out = trainer.out
    if latest_checkpoint(out) is not None:
        again = f"the checkpoints in {out / 'checkpoints'} are kept: launch the same command with --resume"
    elif trainer.cfg.resume or trainer.recorded:  # the run folder holds the run: a plain start is refused
        again = "launch the same command with --resume"
    else:
        again = "launch the same command again"
    world = getattr(trainer, "world", None) or os.environ.get("WORLD_SIZE", "?")  # (known once the group formed)
    return PeerLost(f"the launcher of this {world}-process group stopped (killed?), so its processes stop too; {again}")


def _abs_if_path(value: str) -> str:
    p = expand_user(value)
    return str(p.resolve()) if p.exists() else value


def _rows_digest(rows: np.ndarray) -> str:
    """The digest of the training rows a run records (``train_docs_sha256``)."""
    return hashlib.sha256(np.asarray(rows, dtype="<i8").tobytes()).hexdigest()


class _Trainer:
    """One run's state; the methods are the steps of :func:`finetune`."""

    def __init__(self, config: FinetuneConfig, log: Callable[[str], None] | None,
                 on_checked: Callable[[], None] | None = None):
        self.cfg = config
        self._sink = log
        self._on_checked = on_checked
        self.out = Path(config.output)
        self.recorded = False  # whether the run folder's records were written (on_checked called)
        self.accelerator: Any = None
        self.bar: Any = None
        self._record: dict[str, Any] | None = None

    # ------------------------------------------------------------------------------ messages
    def say(self, msg: str, *, warning: bool = False) -> None:
        """A message of the main process to the caller's ``log``; without one, to this module's logger — a
        warning at WARNING, so that it reaches the user of a command line that configures no logging (at INFO
        the CLI's skipped damaged checkpoints and too-short documents were never shown)."""
        if self.accelerator is not None and not self.accelerator.is_main_process:
            return
        if self._sink is not None:
            self._sink(msg)
        else:
            _log.log(logging.WARNING if warning else logging.INFO, msg)

    def warn(self, msg: str) -> None:
        self.say(f"warning: {msg}", warning=True)

    # ------------------------------------------------------------------------------ 1. set-up
    def set_up(self) -> None:
        from longrope.models.factor_files import load_factors_for
        from longrope.models.loading import load_config, read_rope_info

        cfg = self.cfg
        if cfg.quiet:  # quiet through the Python API too: transformers' loading and saving bars were drawn there
            from transformers.utils import logging as hf_logging

            if hf_logging.is_progress_bar_enabled():  # on again when the run ends (close), for the caller's own use
                hf_logging.disable_progress_bar()
                self._bars_off = True
        self._check_output()
        self.corpus = TokenCorpus.open(cfg.data)
        self.train_rows = training_documents(self.corpus, heldout_fraction=cfg.heldout_fraction, exclude=cfg.exclude,
                                             bos=cfg.bos)
        # the one judge of whether a factor file fits the model (rotary dim, base, L), from its config
        self.factor_set = load_factors_for(cfg.factors, read_rope_info(cfg.model), model=cfg.model, override_flag=None)
        self.corpus.check_fits(getattr(load_config(cfg.model), "vocab_size", 0))
        self.seq_len, self.short_length = check_lengths(cfg, self.factor_set)
        longest = int(self.corpus.lengths[self.train_rows].max())
        if longest + int(cfg.bos) < self.seq_len:
            self._warnings = [f"the longest training document has {longest} tokens, fewer than seq_len {self.seq_len}: "
                              "every window packs several documents and positions beyond that are never trained"]
        else:
            self._warnings = []
        self.tokenizer = None
        if cfg.passkey_share > 0:
            from longrope.data.tokenizer_loading import load_tokenizer

            self.tokenizer = load_tokenizer(cfg.model)
            try:  # a window too short for the prompt fails here, not at the first passkey row
                passkey_row(self.tokenizer, self.seq_len, seed=cfg.seed, step=0, row=0,
                            bos_id=self.tokenizer.bos_token_id if cfg.bos else None)
            except UserError as exc:
                raise ConfigError(("passkey_share", "seq_len"), "{name0} needs windows that hold the passkey "
                                  f"prompt: {exc}") from None
        if (lost := _launcher_lost(self)) is not None:  # before the group forms on its store
            raise lost
        self._make_accelerator()
        for w in self._warnings:
            self.warn(w)
        self._find_resume_point()  # a damaged checkpoint or changed input is refused before the model loads
        if self._on_checked is not None:
            self._on_checked()
        self.recorded = True
        self._load_model()
        self._prepare()
        self._resume_or_start()

    def _check_output(self) -> None:
        out = self.out
        if out.exists() and not out.is_dir():
            raise UserError(f"output {out} exists and is not a folder; choose another -o")
        if os.path.lexists(out / MODEL_DIR) and not (out / MODEL_DIR).is_dir():  # found before training, not at export
            raise UserError(f"{out / MODEL_DIR} is not a folder (the run exports its model there); move it away, or "
                            "choose another -o")
        if not self.cfg.resume and (latest_checkpoint(out) is not None or (out / MODEL_DIR).exists()):
            raise UserError(f"{out} already holds a fine-tuning run; pass --resume to continue it, or another -o")

    def _make_accelerator(self) -> None:
        from accelerate import Accelerator
        from accelerate.state import AcceleratorState

        from longrope.models import auto_device

        cfg = self.cfg
        cpu = auto_device(cfg.device).type == "cpu"  # "cuda" without a GPU: a one-line error
        check_precision(cfg, cpu)
        if cfg.dtype == "auto":
            launched = "ACCELERATE_MIXED_PRECISION" in os.environ  # the launcher's config decides
            bf16 = not cpu and torch.cuda.is_available() and torch.cuda.is_bf16_supported()
            precision = None if launched else ("bf16" if bf16 else "no")
        else:
            precision = _PRECISION[cfg.dtype]
        if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
            # In-process callers (tests, notebooks) may run several trainings with different settings;
            # accelerate's state is a process-wide singleton, so start each single-process run afresh.
            AcceleratorState._reset_state(reset_partial_state=True)
        from accelerate import PartialState

        world = PartialState(cpu=cpu).num_processes
        self.world = int(world)
        accum = accumulation(cfg, self.seq_len, self.world)
        self.grad_accum = int(accum)
        self.global_rows = cfg.batch_size * self.grad_accum * self.world
        self.accelerator = Accelerator(cpu=cpu, mixed_precision=precision, gradient_accumulation_steps=self.grad_accum,
                                       step_scheduler_with_optimizer=False)
        acc = self.accelerator
        self.say(f"accelerate: {acc.distributed_type.value}, {self.world} process(es) on {acc.device}, mixed precision "
                 f"{acc.mixed_precision}; {self.global_rows} windows of {self.seq_len} tokens per step "
                 f"({self.grad_accum} micro-step(s) of {cfg.batch_size} per process)")

    def _load_model(self) -> None:
        from accelerate.utils import set_seed

        from longrope.models import install_factors, load_model
        from longrope.train.lora import apply_lora, trainable_summary

        cfg = self.cfg
        self.say(f"loading {cfg.model}")
        model, tokenizer = load_model(cfg.model, dtype="float32", device="cpu",
                                      attn_implementation=cfg.attn_implementation)
        if tokenizer is not None:
            self.corpus.check_tokenizer(tokenizer, model_name=cfg.model)
        self.tokenizer = tokenizer
        self.vocab_size = int(model.get_output_embeddings().weight.shape[0])
        bos = tokenizer.bos_token_id if tokenizer is not None else getattr(model.config, "bos_token_id", None)
        if cfg.bos and bos is None:
            # "{name} is on ...; turn it off" read "--no-bos is on" on the command line, the opposite of its fix
            raise ConfigError("bos", "the model has no BOS token, so training segments cannot begin with one; train "
                              "without it ({name})")
        self.bos_id = int(bos) if cfg.bos else None
        self.export_dtype = cfg.export_dtype or _stored_dtype(model)
        # Forced factor sets (see the module doc): each regime's factors whatever the positions.
        fs = self.factor_set
        self.long_fs = fs.with_(short_factor=fs.long_factor)
        self.short_fs = fs.with_(long_factor=fs.short_factor)
        self.patch = install_factors(model, self.long_fs)
        self.kind = "long"
        # No KV cache while training: the loss asks its forward for none (train.loss). The config keeps its own
        # use_cache: set False here, it was saved in the exported model, whose stock forward calls then returned
        # no cache (battery 23c).
        if cfg.gradient_checkpointing:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        set_seed(cfg.seed)  # LoRA's adapter init draws from torch's generator
        if cfg.lora:
            model = apply_lora(model, rank=cfg.lora_rank, alpha=cfg.lora_alpha, dropout=cfg.lora_dropout,
                               targets=cfg.lora_targets, trainable=cfg.lora_trainable)
        model.train()
        self.trainable, total = trainable_summary(model)
        self.say(f"training {self.trainable:,} of {total:,} parameters on {len(self.train_rows)} documents "
                 f"({int(self.corpus.lengths[self.train_rows].sum()):,} tokens); windows of {self.seq_len} tokens"
                 + (f", {cfg.short_share:.0%} of steps short (segments <= {self.short_length})"
                    if cfg.short_share > 0 else ""))
        self.wrapper = CausalLMLoss(model, chunk=cfg.loss_chunk or default_loss_chunk(self.vocab_size))

    def _prepare(self) -> None:
        from transformers import get_scheduler

        cfg = self.cfg
        params = [p for p in self.wrapper.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        name = "constant_with_warmup" if cfg.lr_schedule == "constant" else cfg.lr_schedule
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=cfg.warmup, num_training_steps=cfg.steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.wrapper, optimizer, scheduler)
        module = self.patch.module
        if any(getattr(module, n).dtype != torch.float64 for n in ("short_inv_freq", "long_inv_freq")):
            raise RuntimeError("the rotary tables lost their float64 precision in accelerate.prepare (an FSDP1 "
                               "buffer_dtype?); use the shipped FSDP2 config")

    def _run_record(self) -> dict[str, Any]:
        """The settings a resumed run must share with the checkpoint (resolved values, absolute paths)."""
        if self._record is not None:  # computed once (the model digest reads every weight byte)
            return dict(self._record)
        from longrope.models.loading import model_digest

        d = self.cfg.to_dict()
        run = {k: d[k] for k in TRAJECTORY_FIELDS}
        for k in ("model", "factors", "data"):
            run[k] = _abs_if_path(run[k])
        run["exclude"] = [_abs_if_path(p) for p in run["exclude"]]
        run.update(seq_len=self.seq_len, short_length=self.short_length, warmup_steps=self.cfg.warmup,
                   tokens_per_step=self.global_rows * self.seq_len,
                   mixed_precision=str(self.accelerator.mixed_precision),
                   # what the run reads, by content (a file rewritten in place is another input)
                   factors_sha256=self.factor_set.digest(), data_sha256=self.corpus.content_digest,
                   train_docs_sha256=_rows_digest(self.train_rows))
        digest = model_digest(self.cfg.model)
        if digest is not None:  # a hub model is named by its id
            run["model_sha256"] = digest
        self._record = run
        return dict(run)

    def _find_resume_point(self) -> None:
        """With ``resume``: the newest intact checkpoint (damaged newer ones skipped, said so) whose state
        fits this run — the same settings and inputs by content, its step and data cursor in range."""
        self.resume_point: tuple[Path, TrainState] | None = None
        if not self.cfg.resume:
            return
        found = newest_intact_checkpoint(self.out, self.warn)
        if found is None:
            return
        path, state = found
        self._take_rows_of_an_older_no_bos_run(state.run)
        check_same_run(state.run, self._run_record(),
                       tokens_per_step_given=self.cfg.tokens_per_step is not None and self.cfg.grad_accum is None)
        if state.step > self.cfg.steps:
            raise UserError(f"{path}: step {state.step} is past the run's {self.cfg.steps} steps; the checkpoint "
                            "does not belong to this run (delete it, or start a new run folder)")
        stream = PackedWindows(self.corpus.lengths[self.train_rows], seed=self.cfg.seed, bos=self.cfg.bos)
        problem = stream.cursor_problem(state.cursor)
        if problem:
            raise UserError(f"{path}: the data cursor {state.cursor.to_dict()} {problem}; the checkpoint does not "
                            "belong to this data (delete it, or start a new run folder)")
        self.resume_point = found

    def _take_rows_of_an_older_no_bos_run(self, saved: dict[str, Any]) -> None:
        """A run without BOS started before one-token training documents were left out (they hold no target
        without it) trained on every non-empty one: it resumes on those rows (a one-token segment carries no
        target), not refused as if the held-out split or ``exclude`` had changed."""
        digest, record = saved.get("train_docs_sha256"), self._run_record()
        if self.cfg.bos or digest is None or digest == record["train_docs_sha256"]:
            return
        train = require_training_documents(self.corpus, self.cfg.heldout_fraction)  # training_documents checked them
        rows = documents_with_targets(self.corpus, train, bos=True)  # every non-empty one: the selection of then
        if _rows_digest(rows) == digest:
            self.train_rows = rows
            self._record = {**record, "train_docs_sha256": digest}

    def _resume_or_start(self) -> None:
        self.log_file = LossLog(self.out / LOG_FILE)
        self.windows = PackedWindows(self.corpus.lengths[self.train_rows], seed=self.cfg.seed, bos=self.cfg.bos)
        run = self._run_record()
        ckpt = self.resume_point[0] if self.resume_point is not None else None
        self.resumed_from: int | None = None
        self.last_checkpoint: Path | None = ckpt
        if self.resume_point is not None:
            self.state = load_checkpoint(self.accelerator, *self.resume_point)
            self.resumed_from = self.state.step
            if self.accelerator.is_main_process:
                kept = self.log_file.truncate(self.state.step)
                if [e["step"] for e in kept] != list(range(1, self.state.step + 1)):
                    self.warn(f"{self.out / LOG_FILE} holds {len(kept)} of the {self.state.step} steps before the "
                              "checkpoint (lines edited or damaged); the loss curve and the first loss show only those")
            self.say(f"resumed from {ckpt} (step {self.state.step})")
        else:
            if self.cfg.resume:
                self.say(f"nothing to resume in {self.out}; starting afresh")
            self.state = TrainState(run=run)
            if self.accelerator.is_main_process:
                self.out.mkdir(parents=True, exist_ok=True)
                self.log_file.truncate(0)
        take_run_id(self.out, self.state, main=self.accelerator.is_main_process,
                    resumed=self.resume_point is not None)  # its checkpoints are this run's
        self.accelerator.wait_for_everyone()

    # ------------------------------------------------------------------------------ 2. train
    def _use(self, kind: str) -> None:
        if kind != self.kind:
            self.patch.swap(self.short_fs if kind == "short" else self.long_fs)
            self.kind = kind

    def _tokens(self, j: int, start: int, stop: int) -> np.ndarray:
        return self.corpus.tokens(int(self.train_rows[j]), start, stop)

    def train(self) -> None:
        cfg, acc = self.cfg, self.accelerator
        self.bar = progress_bar(cfg.steps, self.state.step, enabled=not cfg.quiet and acc.is_main_process)
        params = [p for p in self.model.parameters() if p.requires_grad]
        rank, W, B, N = acc.process_index, self.world, cfg.batch_size, self.seq_len
        for step in range(self.state.step, cfg.steps):
            if (lost := _launcher_lost(self)) is not None:
                raise lost
            t0 = time.perf_counter()
            kind = "short" if is_short_step(step, cfg.short_share) else "long"
            self._use(kind)
            segment = self.short_length if kind == "short" else N
            rows, cursor = self.windows.rows(self.state.cursor, self.global_rows, N, segment)
            synthetic = passkey_rows(cfg.seed, step, len(rows), cfg.passkey_share if kind == "long" else 0.0)
            targets = sum(N - 1 if g in synthetic else row_targets(r, cfg.bos) for g, r in enumerate(rows))
            # the step's longest segment: a passkey row is one of N tokens (it replaces the packed row it stands in for)
            longest = max(N if g in synthetic else max(b - a for _, a, b in row) + int(cfg.bos)
                          for g, row in enumerate(rows))
            scale = W * self.grad_accum / targets
            lr = float(self.optimizer.param_groups[0]["lr"])
            nll = torch.zeros((), dtype=torch.float32, device=acc.device)
            grad_norm = None
            for a in range(self.grad_accum):
                first = (a * W + rank) * B
                batch = materialize(rows[first : first + B], self._tokens, row_len=N, bos_id=self.bos_id,
                                    vocab_size=self.vocab_size)
                for i in range(B):
                    if first + i in synthetic:
                        row = passkey_row(self.tokenizer, N, seed=cfg.seed, step=step, row=first + i,
                                          bos_id=self.bos_id)
                        for k, v in row.items():
                            batch[k][i] = v
                batch = {k: torch.from_numpy(v).to(acc.device) for k, v in batch.items()}
                with acc.accumulate(self.model):
                    loss, part = self.model(batch["input_ids"], batch["position_ids"], batch["targets"], scale)
                    acc.backward(loss)
                    nll += part
                    if acc.sync_gradients:
                        if cfg.max_grad_norm > 0:
                            grad_norm = float(acc.clip_grad_norm_(params, cfg.max_grad_norm))
                        self.optimizer.step()
                        self.scheduler.step()
                        self.optimizer.zero_grad(set_to_none=True)
            mean = float(acc.reduce(nll, reduction="sum")) / targets
            if not math.isfinite(mean):  # settings that diverge: the user's to change, one line (was a traceback)
                raise ConfigError(("learning_rate", "lora_alpha") if cfg.lora else "learning_rate",
                                  f"the loss is {mean} at step {step + 1}: training diverged; start a new run "
                                  "folder with a lower {name0}" + (" or {name1}" if cfg.lora else ""))
            dt = time.perf_counter() - t0
            step_tokens = self.global_rows * N
            self.state.step, self.state.cursor = step + 1, cursor
            self.state.tokens += step_tokens
            self.state.seconds += dt
            if acc.is_main_process:
                self.log_file.append({"step": step + 1, "loss": mean, "kind": kind, "segment": segment, "longest_segment": longest, "lr": lr,
                                      "grad_norm": grad_norm, "targets": targets, "passkey_rows": len(synthetic), "tokens": self.state.tokens,
                                      "seconds": dt, "tokens_per_s": step_tokens / dt})
            self.bar.update(1)
            self.bar.set_postfix(loss=f"{mean:.4f}", tok_s=f"{step_tokens / dt:,.0f}", kind=kind, refresh=False)
            if (step + 1) % cfg.checkpoint_every == 0 or step + 1 == cfg.steps:
                self.last_checkpoint = save_checkpoint(acc, self.out, self.state, keep=cfg.keep_checkpoints)
                if acc.is_main_process:
                    plot_losses(self.log_file.read(), self.out / PLOT_FILE)
        self.bar.close()

    # ------------------------------------------------------------------------------ 3. export
    def export(self) -> FinetuneResult:
        from longrope.models import export_hf

        cfg, acc = self.cfg, self.accelerator
        entries = self.log_file.read()
        model = self._full_model()
        warnings: tuple[str, ...] = ()
        model_dir = self.out / MODEL_DIR
        if acc.is_main_process:
            if cfg.lora:
                from longrope.train.lora import merge_lora

                model = merge_lora(model)
            summary = {"model": cfg.model, "data": str(cfg.data), "steps": self.state.step,
                       "seq_len": self.seq_len, "short_share": cfg.short_share, "short_length": self.short_length,
                       "tokens": self.state.tokens, "learning_rate": cfg.learning_rate, "lora": cfg.lora,
                       "final_loss": entries[-1]["loss"] if entries else None}
            fs = self.factor_set
            exported = fs.with_(provenance={**fs.provenance, "finetune": summary})
            result = export_hf(model, self.tokenizer, exported, model_dir, dtype=_torch_dtype(self.export_dtype),
                               overwrite=True)
            warnings = result.warnings
            if entries:
                plot_losses(entries, self.out / PLOT_FILE)
            self.say(f"exported the fine-tuned model to {model_dir}")
        acc.wait_for_everyone()
        return FinetuneResult(
            output=self.out, model_dir=model_dir, steps=self.state.step, resumed_from=self.resumed_from,
            losses=tuple(float(e["loss"]) for e in entries), kinds=tuple(e["kind"] for e in entries),
            tokens=self.state.tokens, seconds=self.state.seconds, seq_len=self.seq_len,
            short_length=self.short_length, tokens_per_step=self.global_rows * self.seq_len,
            grad_accum=self.grad_accum, num_processes=self.world, trainable_parameters=self.trainable,
            log_path=self.out / LOG_FILE, plot_path=self.out / PLOT_FILE, checkpoint=self.last_checkpoint,
            export_warnings=tuple(warnings))

    def _full_model(self) -> Any:
        """The trained model with whole (unsharded) weights on the main process."""
        from accelerate.utils import DistributedType

        acc = self.accelerator
        if acc.distributed_type not in (DistributedType.FSDP, DistributedType.DEEPSPEED):
            return acc.unwrap_model(self.model).lm
        # Sharded weights: gather a full state dict (collective) and load it into a fresh CPU copy.
        state = acc.get_state_dict(self.model)
        if not acc.is_main_process:
            return None
        inner = acc.unwrap_model(self.model).lm
        base = inner.get_base_model() if self.cfg.lora else inner
        fresh = type(base)._from_config(base.config, dtype=torch.float32)
        if self.cfg.lora:
            from longrope.train.lora import apply_lora

            fresh = apply_lora(fresh, rank=self.cfg.lora_rank, alpha=self.cfg.lora_alpha, dropout=0.0,
                               targets=self.cfg.lora_targets, trainable=())
        fresh.load_state_dict({k[len("lm."):]: v for k, v in state.items() if k.startswith("lm.")})
        return fresh

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if getattr(self, "_bars_off", False):
            from transformers.utils import logging as hf_logging

            hf_logging.enable_progress_bar()
            self._bars_off = False


# ------------------------------------------------------------------------------------------------
# the checks of the settings that need neither weights nor data: the run's set-up and a pipeline's
# plan check (before any stage runs) both call these, so a plan is refused for what the command refuses


def check_lengths(cfg: FinetuneConfig, factor_set: Any) -> tuple[int, int]:
    """``(seq_len, short_length)`` the run trains with ``factor_set`` (its L' and L fill the unset ones)."""
    L = int(factor_set.original_max_position_embeddings)
    seq_len = int(cfg.seq_len or factor_set.max_position_embeddings)
    short_length = int(cfg.short_length or L)
    if cfg.seq_len is None and seq_len < 2:
        raise ConfigError("seq_len", "{name} must be >= 2 tokens")
    if short_length > seq_len and cfg.short_length is None:  # the user set only seq_len
        if cfg.short_share == 0:  # no step is short: a shorter --short-length would be refused as unused
            raise ConfigError("seq_len", "{name} " + f"({seq_len}) is below the factor set's original length L = {L}: "
                              "the long factors it trains are used beyond L only; give a {name} of at least "
                              f"{L}")
        raise ConfigError(("seq_len", "short_length"), "{name0} " + f"({seq_len}) is below the factor set's "
                          f"original length L = {L}, the default of " + "{name1}; give a {name0} of at least "
                          f"{L}, or a shorter " + "{name1}")
    check_short_length(cfg, seq_len, short_length)
    if cfg.short_share > 0 and short_length > L:
        raise ConfigError("short_length", "{name} " + f"({short_length}) must be at most the factor set's "
                          f"original length L = {L}: short windows train the short factors, used up to L")
    return seq_len, short_length


def check_short_length(cfg: FinetuneConfig, seq_len: int, short_length: int) -> None:
    """Short windows no longer than the long ones."""
    if short_length > seq_len:
        raise ConfigError(("short_length", "seq_len"), "{name0} " + f"({short_length}) must not exceed "
                          + "{name1} " + f"({seq_len})")


def check_precision(cfg: FinetuneConfig, cpu: bool) -> None:
    """float16 needs its gradient scaler, which runs on a GPU only."""
    if cpu and cfg.dtype == "float16":
        raise ConfigError("dtype", "{name} float16 (mixed precision with a gradient scaler) needs a GPU; use "
                          "bfloat16 or float32 on a CPU")


def accumulation(cfg: FinetuneConfig, seq_len: int, world: int) -> int:
    """Micro-steps per optimizer step: ``grad_accum``, or what ``tokens_per_step`` needs over ``world`` processes."""
    per_row = cfg.batch_size * seq_len * world
    if cfg.tokens_per_step is None:
        return cfg.grad_accum or 1
    if cfg.tokens_per_step % per_row:
        raise ConfigError(("tokens_per_step", "batch_size", "seq_len"),
                          "{name0} " + f"({cfg.tokens_per_step}) must be a multiple of " + "{name1} x {name2} "
                          + f"x processes = {cfg.batch_size} x {seq_len} x {world} = {per_row}")
    accum = cfg.tokens_per_step // per_row
    if cfg.grad_accum is not None and cfg.grad_accum != accum:
        raise ConfigError(("grad_accum", "tokens_per_step"), "{name0} " + f"{cfg.grad_accum} contradicts "
                          + "{name1} " + f"{cfg.tokens_per_step} (which needs {accum}); give one of them")
    return accum


def check_settings(cfg: FinetuneConfig, *, facts_model: str | None, machine: bool) -> None:
    """What :class:`_Trainer` checks of ``cfg`` before it reads data or weights, for a run not started yet (a
    pipeline's plan): the lengths against the factor file when it can be read now (``facts_model`` names the
    model whose RoPE it must fit; None: the file is an earlier stage's output), else against each other; the
    tokens per step over this launch's processes; and, on the machine that will run it, the precision."""
    from longrope.models import auto_device

    seq_len = cfg.seq_len
    if facts_model is not None:
        from longrope.models.factor_files import load_factors_for
        from longrope.models.loading import read_rope_info

        factor_set = load_factors_for(cfg.factors, read_rope_info(facts_model), model=facts_model, override_flag=None)
        seq_len = check_lengths(cfg, factor_set)[0]
    elif seq_len is not None and cfg.short_length is not None:
        check_short_length(cfg, seq_len, cfg.short_length)
    if seq_len is not None:
        accumulation(cfg, seq_len, max(1, int(os.environ.get("WORLD_SIZE", "1"))))
    if machine:
        check_precision(cfg, auto_device(cfg.device).type == "cpu")
        from longrope.train.launch import launch_problem

        if (stray := launch_problem(training=True)) is not None:
            raise UserError(stray)


def _stored_dtype(model: Any) -> str:
    """The dtype the input model's folder stores its weights in (what the export writes by default)."""
    import json

    name = ""
    source = getattr(model, "_longrope_source", None) or {}
    if source.get("kind") == "folder":
        try:
            stored = json.loads((Path(source["location"]) / "config.json").read_text(encoding="utf-8"))
            name = str(stored.get("dtype") or stored.get("torch_dtype") or "").replace("torch.", "")
        except (OSError, ValueError):
            name = ""
    return name if name in ("float32", "bfloat16", "float16") else "float32"


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]

