"""``longrope export``: a Hugging Face folder with the factors in its config, loadable without longrope.

Writes safetensors weights, the tokenizer and a ``config.json`` whose ``rope_scaling`` and
``rope_parameters`` carry the factors as transformers' standard ``longrope`` rope type (read the
same by transformers 4.51+ and 5.x; see ``longrope.models.export``). GGUF models are saved
dequantized. n̂ cannot be expressed in a Hugging Face config: it is stored as
``longrope_start_tokens`` and a warning explains what stock runtimes do instead.
"""

from __future__ import annotations

import argparse
import json
import sys

COMMAND = "export"
HELP = "write a Hugging Face model folder with the factors in its config (loads in stock transformers)"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope export --model smollm2 --factors factors.json -o smollm2-32k
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="'tiny', 'smollm2', a Hugging Face folder, a .gguf file or a hub id")
    parser.add_argument("--factors", required=True,
                        help="factors.json (or a longrope config.json / reference CSV) to export")
    parser.add_argument("-o", "--output", required=True, help="output folder (must not exist or be empty)")
    parser.add_argument("--dtype", default=None,
                        help="dtype of the saved weights: float32, bfloat16, float16 (default: as loaded, "
                             "float32 for GGUF)")
    parser.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")


def run(args: argparse.Namespace) -> int:
    import torch

    from longrope.models.export import export_hf
    from longrope.models.loading import load_config, load_model, resolve_dtype, resolve_source
    from longrope.rope import FactorSet

    factor_set = FactorSet.load(args.factors)  # fail fast on a bad factor file, before loading weights
    if args.dtype:
        dtype = resolve_dtype(args.dtype)
    elif resolve_source(args.model).kind == "gguf":  # dequantized weights: float32 (no stored dtype)
        dtype = torch.float32
    else:  # keep the dtype the weights are stored in (fp16 stays fp16)
        stored = getattr(load_config(args.model), "dtype", None)
        dtype = stored if isinstance(stored, torch.dtype) and stored.is_floating_point else torch.float32
    model, tokenizer = load_model(args.model, dtype=dtype)
    result = export_hf(model, tokenizer, factor_set, args.output, dtype=dtype, overwrite=args.overwrite)
    for w in result.warnings:
        print(f"longrope export: warning: {w}", file=sys.stderr)
    print(json.dumps({"output": str(result.path), "tokenizer": tokenizer is not None,
                      "warnings": list(result.warnings)}, indent=2))
    return 0
