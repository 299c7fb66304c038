"""``longrope finetune``: long-context fine-tuning with LongRoPE factors installed, in a run folder.

The work is :func:`longrope.train.finetune` (accelerate; one process here, ``accelerate launch`` for
several); this module gives it the run-folder layout (``config.json``, ``run.json``,
``summary.json`` beside ``checkpoints/``, ``train_log.jsonl``, ``loss.png`` and ``model/``). Under
``accelerate launch`` only the main process writes the run records.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from longrope.options import config_to_dict
from longrope.runs import RunSpec
from longrope.train.config import FinetuneConfig

COMMAND = "finetune"


def _main_process() -> bool:
    return int(os.environ.get("RANK", "0")) == 0


def run(config: FinetuneConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Fine-tune, export ``OUT/model``; returns the result (also in ``summary.json``)."""
    from longrope.options import require_config

    require_config(config, FinetuneConfig, "longrope.runs.finetune.run")
    from longrope.errors import UserError
    from longrope.models.factor_files import load_factors_for
    from longrope.models.loading import read_rope_info
    from longrope.runs.folder import RunFolder, read_run_config
    from longrope.train import finetune
    from longrope.train.checkpoint import CHECKPOINTS

    # The factor file against the model's config (no weights) before the run folder, the
    # accelerator and minutes of weight loading: a file for another model fails here, in seconds.
    load_factors_for(config.factors, read_rope_info(config.model), model=config.model, override_flag=None)
    from longrope.train.launch import launch_problem

    if (stray := launch_problem(training=True)) is not None:  # before the run folder: RANK decides who writes it
        raise UserError(stray)
    folder = None
    if _main_process():
        try:
            previous = read_run_config(config.output)[0] == COMMAND
        except UserError:
            previous = False
        # a fine-tuning the Python API ran there (longrope.train.finetune: checkpoints, no run record) is taken up
        # as this run's: its checkpoints are checked against this config as any resume's are (--resume said the
        # folder "already exists and is not empty", not why)
        adopt = config.resume and not previous and (Path(config.output) / CHECKPOINTS).is_dir()
        # locked until closed: a second process into this folder (a second --resume) is refused
        folder = RunFolder.open(config.output, COMMAND, staged=False, resume=config.resume and previous, adopt=adopt)
    def checked() -> None:
        # the records once the input passed its checks: a refused --resume (another seed, another factor file)
        # rewrote config.json and run.json with the refused settings, and `rerun` then repeated those
        if folder is not None:
            folder.start(config_to_dict(config), device=config.device)

    try:
        try:
            result = finetune(config, log=log, on_checked=checked).to_dict()
        except BaseException:
            if folder is not None:
                folder.abandon()  # a set-up failure leaves no stub folder (a folder with work stays)
            raise
        if folder is not None:
            folder.finish(result)
        return result
    finally:
        if folder is not None:
            folder.close()


def render(result: dict) -> str:
    last = result.get("final_loss")
    tail = f", last loss {last:.4f}" if last is not None else ""
    return f"fine-tuned {result['steps']} steps ({result['tokens']} tokens){tail}; model in {result['model_dir']}"


SPEC = RunSpec(
    command=COMMAND,
    help="fine-tune a model with LongRoPE factors installed (accelerate; resumable; exports an HF folder)",
    description="""\
Continued pre-training at --seq-len (default: the factors' L') with the factors installed through
the model patch (its tables are fixed), on packed windows of the shard folder's 'train' documents
(tokenize them with --input train=PATH; documents that are also search or held-out documents are
refused). --short-share P trains that share of steps on windows of at most L tokens with the short
factors (LongRoPE2's mixed context windows). The loss runs through the LM head in chunks (never
[N, vocab] logits). Checkpoints (accelerate save_state) every --checkpoint-every steps: --resume
continues the same loss curve after a kill. The result is OUT/model, a Hugging Face folder with the
factors in its config that stock transformers loads; also train_log.jsonl and loss.png.

Several processes or GPUs: accelerate launch --config_file CONFIG -m longrope finetune ...
with a config shipped in longrope/embedded/assets/accelerate/ (see docs/finetune.md).""",
    example="""\
example:
  longrope tokenize --tokenizer tiny --input train=my_books/ -o shards/train
  longrope finetune --model tiny --factors runs/search/factors.json --data shards/train --steps 200 -o runs/ft
  longrope finetune --model tiny --factors runs/search/factors.json --data shards/train --steps 200 -o runs/ft --resume""",
    config=FinetuneConfig,
    run=run,
    render=render,
)
