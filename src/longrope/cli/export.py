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

import argparse
import json
import sys

COMMAND = "export"
HELP = "write the model with its factors: a Hugging Face folder (transformers, vLLM) or a GGUF file (llama.cpp)"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope export --model smollm2 --factors factors.json -o smollm2-32k
  longrope export --model smollm2 --factors factors.json --format gguf -o smollm2-32k.gguf
  longrope export --model tiny --factors ref.csv --target-length 2048 -o tiny-2k
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="'tiny', 'smollm2', a Hugging Face folder, a .gguf file or a hub id")
    parser.add_argument("--factors", required=True,
                        help="factors.json (or a longrope config.json / reference CSV) to export")
    parser.add_argument("-o", "--output", required=True,
                        help="output folder (hf: must not exist or be empty) or file (gguf)")
    parser.add_argument("--format", choices=("hf", "gguf"), default="hf",
                        help="hf: a Hugging Face folder (default); gguf: one llama.cpp file")
    parser.add_argument("--dtype", default=None,
                        help="dtype of the saved weights: float32, bfloat16, float16 (hf default: as loaded, "
                             "float32 for GGUF sources; gguf default: float16 — gguf takes float16/float32)")
    parser.add_argument("--original-length", type=int, default=None,
                        help="L of a reference CSV (default: the model's); for another factor file, its own L "
                             "when that differs from the model's (refused otherwise)")
    parser.add_argument("--target-length", type=int, default=None, help="reference CSV factors only: L'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    from longrope.models.exporter import export_model

    out = export_model(args.model, args.factors, args.output, fmt=args.format, dtype=args.dtype,
                       overwrite=args.overwrite, original_length=args.original_length,
                       target_length=args.target_length)
    for w in out["warnings"]:
        print(f"longrope export: warning: {w}", file=sys.stderr)
    print(json.dumps(out, indent=2))
    return 0
