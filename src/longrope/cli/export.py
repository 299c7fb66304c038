"""``longrope export``: the model with its factors, as a Hugging Face folder or a GGUF file.

``--format hf`` (default) writes safetensors weights, the tokenizer, a ``config.json`` whose
``rope_scaling`` and ``rope_parameters`` carry the factors as transformers' standard ``longrope``
rope type (read the same by transformers 4.51+ and 5.x, plus ``short_mscale``/``long_mscale`` for
vLLM; see ``longrope.models.export``) and a README.md on serving it. GGUF models are saved
dequantized.

``--format gguf`` writes one file llama.cpp applies the factors from (``rope_factors_long/short``
tensors and ``rope.scaling.*`` keys; see ``longrope.models.gguf``): from a GGUF model (``smollm2``, a
``.gguf``) every field and tensor is copied unchanged, quantized ones included; from a Hugging Face
model the weights are written in f16 (``--dtype float16``, default) or f32 with the tokenizer.
Llama, Mistral, Qwen2 and Phi-3 only: llama.cpp does not read the factors for Qwen3 and Gemma.

n̂ cannot be expressed in either format: a warning says what runtimes do instead. A reference-code
CSV factor file holds only the long factors: L comes from the model (``--original-length``
overrides it) and L' must be given with ``--target-length``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path

from longrope.tools import ExportConfig

CONFIG = ExportConfig

COMMAND = "export"
HELP = "write the model with its factors: a Hugging Face folder (transformers, vLLM) or a GGUF file (llama.cpp)"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope export --model smollm2 --factors factors.json -o smollm2-32k
  longrope export --model smollm2 --factors factors.json --format gguf -o smollm2-32k.gguf
  longrope export --model tiny --factors ref.csv --target-length 2048 -o tiny-2k
"""


def run(args: ExportConfig) -> int:
    from longrope.models.exporter import export_model

    with _held(args.output):
        out = export_model(args.model, args.factors, args.output, fmt=args.format, dtype=args.dtype,
                           overwrite=args.overwrite, original_length=args.original_length,
                           target_length=args.target_length)
    for w in out["warnings"]:
        print(f"longrope export: warning: {w}", file=sys.stderr)
    from longrope.cli import stdout_json

    print(stdout_json(out, indent=2))
    return 0


@contextlib.contextmanager
def _held(output: str) -> Iterator[None]:
    """Hold the lock of a run folder ``--overwrite`` would replace: one another longrope process works in is
    refused in one line (a search went on into the replaced folder and finished rc 0 with its checkpoint and
    results gone, battery 5)."""
    from longrope.runs.folder import LOCK_FILE, FolderLock

    if not (Path(output).is_dir() and (Path(output) / LOCK_FILE).is_file()):
        yield
        return
    with FolderLock.acquire(output, "export"):
        yield
