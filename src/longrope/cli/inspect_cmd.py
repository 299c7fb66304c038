"""``longrope inspect``: print a model's RoPE facts as JSON (family, rotary dim, base, L, scaling).

Reads only the config (config.json or the GGUF header), so it is quick even for big models.
``--load`` also loads the weights and checks the module structure the patch relies on (one
shared ``rotary_emb`` whose (cos, sin) every attention layer takes).
"""

from __future__ import annotations

from longrope.tools import InspectConfig

CONFIG = InspectConfig

COMMAND = "inspect"
HELP = "print a model's RoPE facts (family, rotary dim, rope_theta, original length, scaling) as JSON"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope inspect --model smollm2
  longrope inspect --model path/to/hf-folder --load
"""


def run(args: InspectConfig) -> int:
    from longrope.formats.outputs import check_replaceable_file
    from longrope.io import write_json
    from longrope.models.loading import read_rope_info

    out = None
    if args.output:  # before the weights load, not after
        out = check_replaceable_file(args.output, writes="an inspect report",
                                     is_own=lambda doc: isinstance(doc, dict) and {"model", "rotary_dim", "supported"} <= set(doc))
    if args.load:
        from transformers.utils import logging as hf_logging

        from longrope.models import inspect_model
        from longrope.models.loading import load_model

        hf_logging.disable_progress_bar()  # the output is the JSON: transformers' loading bar was noise, as in generate
        model, _ = load_model(args.model, require_rope=False)
        info = inspect_model(model)
    else:
        info = read_rope_info(args.model)
    result = {"model": args.model, **info.to_dict()}
    from longrope.cli import stdout_json

    print(stdout_json(result, indent=2))
    if out is not None:
        write_json(out, result)
    return 0
