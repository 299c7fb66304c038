"""Long-context fine-tuning on an existing engine (accelerate; optional LoRA through peft).

- :class:`FinetuneConfig` (``config``): every knob and its default, each field documented.
- :func:`finetune` (``loop``) → :class:`FinetuneResult` (``result``): continued pre-training with a
  factor set installed through :func:`longrope.models.install_factors`, resumable, exported as a
  Hugging Face folder with the factors in its config.
- ``data``: training documents (role ``train``, disjoint from search/held-out), packed windows with
  per-document position ids, LongRoPE2's short/long mix. ``loss``: the LM head and loss in chunks.
  ``lora``: peft adapters. ``checkpoint``: atomic accelerate checkpoints. ``record``: log and plot.
- :func:`accelerate_config`: the accelerate config files shipped for multi-process runs.

Importing this package imports neither torch nor transformers (``config`` and ``result`` are pure).
"""

from longrope.train.config import FinetuneConfig
from longrope.train.launch import ACCELERATE_CONFIGS, accelerate_config
from longrope.train.result import FinetuneResult

__all__ = ["ACCELERATE_CONFIGS", "FinetuneConfig", "FinetuneResult", "accelerate_config", "finetune"]


def __getattr__(name: str):
    # ``finetune`` pulls in torch, transformers and accelerate: import it on first use only.
    if name == "finetune":
        from longrope.train.loop import finetune

        return finetune
    raise AttributeError(f"module 'longrope.train' has no attribute {name!r}")
