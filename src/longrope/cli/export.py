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
                        help="reference CSV factors only: L (default: the model's)")
    parser.add_argument("--target-length", type=int, default=None, help="reference CSV factors only: L'")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from longrope.errors import UserError
    from longrope.models.export import check_output_folder, check_target_length, export_hf
    from longrope.models.factor_files import load_factors_for
    from longrope.models.families import require_supported
    from longrope.models.loading import load_config, load_model, read_rope_info, resolve_dtype, resolve_source

    source = resolve_source(args.model)
    info = require_supported(read_rope_info(args.model))
    # fail fast on a bad factor file or output, before loading weights
    factor_set = load_factors_for(args.factors, info, original_length=args.original_length,
                                  target_length=args.target_length)
    check_target_length(factor_set)
    if args.format == "gguf":
        from longrope.models.gguf import check_output_file, export_gguf, export_gguf_from_gguf

        check_output_file(Path(args.output), args.overwrite)
        dtype = resolve_dtype(args.dtype or "float16")
        if dtype not in (torch.float16, torch.float32):
            raise UserError(f"--format gguf writes float16 or float32 weights, not {args.dtype}")
        if source.kind == "gguf":
            if args.dtype:
                raise UserError("--dtype does not apply to a GGUF source: its tensors are copied unchanged")
            result = export_gguf_from_gguf(Path(source.location) / source.gguf_file, factor_set, args.output,
                                           overwrite=args.overwrite)
            tokenizer_out = "copied from the source GGUF"
        else:
            from longrope.models.gguf import NO_GGUF_FACTORS, _no_factors_message

            if info.model_type in NO_GGUF_FACTORS:  # before loading the weights
                raise UserError(_no_factors_message(NO_GGUF_FACTORS[info.model_type]))
            model, tokenizer = load_model(args.model, dtype=torch.float32)
            result = export_gguf(model, tokenizer, factor_set, args.output,
                                 outtype="f16" if dtype == torch.float16 else "f32", overwrite=args.overwrite)
            tokenizer_out = tokenizer is not None
    else:
        check_output_folder(Path(args.output), args.overwrite)
        if args.dtype:
            dtype = resolve_dtype(args.dtype)
        elif source.kind == "gguf":  # dequantized weights: float32 (no stored dtype)
            dtype = torch.float32
        else:  # keep the dtype the weights are stored in (fp16 stays fp16)
            stored = getattr(load_config(args.model), "dtype", None)
            dtype = stored if isinstance(stored, torch.dtype) and stored.is_floating_point else torch.float32
        model, tokenizer = load_model(args.model, dtype=dtype)
        result = export_hf(model, tokenizer, factor_set, args.output, dtype=dtype, overwrite=args.overwrite)
        tokenizer_out = tokenizer is not None
    for w in result.warnings:
        print(f"longrope export: warning: {w}", file=sys.stderr)
    print(json.dumps({"output": str(result.path), "format": args.format, "tokenizer": tokenizer_out,
                      "warnings": list(result.warnings)}, indent=2))
    return 0
