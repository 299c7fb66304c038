"""``longrope baseline``: write the factors of a closed-form method (PI, NTK, dynamic NTK, YaRN, llama3).

The model's rope base, rotary dim and original length L come from its config (no weights are
read); ``--original-length`` overrides L when the config's ``max_position_embeddings`` is not the
length the model was trained at. The result is a ``factors.json`` that ``eval``, ``search`` (as
a seed) and ``export`` read. Method options (docs/method.md §3): YaRN ``--beta-fast``/``--beta-slow``
(defaults 32/1; Mistral used 128/2), dynamic NTK ``--length`` (the current length ℓ), llama3
``--factor``/``--low-freq-factor``/``--high-freq-factor``.
"""

from __future__ import annotations

import json
import shlex

from longrope.tools import BaselineConfig

CONFIG = BaselineConfig

COMMAND = "baseline"
HELP = "write the rescale factors of a closed-form method (pi, ntk, dynamic-ntk, yarn, llama3) as factors.json"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope baseline --model smollm2 --method yarn --target-length 32768 -o yarn-32k.json
  longrope baseline --model tiny --method pi --target-length 8192 --start-tokens 4 -o pi.json
"""



def _command_line(args: BaselineConfig) -> str:
    """The fully resolved command (from the config, so it is right when called in-process too)."""
    from longrope.options import config_to_argv

    return shlex.join(["longrope", COMMAND, *config_to_argv(args)])


def run(args: BaselineConfig) -> int:
    from longrope.errors import UserError
    from longrope.formats.outputs import check_replaceable_file
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    given = args.method_options()
    check_replaceable_file(args.output, writes="a factors.json",
                           is_own=lambda doc: isinstance(doc, dict) and "long_factor" in doc and "rope_theta" in doc)
    info = read_rope_info(args.model)
    if not info.supported:
        raise UserError(info.reason)
    original = info.original_max_position_embeddings if args.original_length is None else args.original_length
    if args.method == "yarn" and args.attention_factor is not None:
        given["attention_factor"] = args.attention_factor
    fs = make_baseline(
        args.method,
        rope_theta=info.rope_theta,
        rotary_dim=info.rotary_dim,
        original_length=original,
        target_length=args.target_length,
        **given,
    )
    changes = {"start_tokens": args.start_tokens}
    if args.attention_factor is not None and args.method != "yarn":
        changes["attention_factor"] = args.attention_factor
    provenance = {**fs.provenance, "command": _command_line(args), "model": args.model,
                  "model_type": info.model_type}
    fs = fs.with_(provenance=provenance, **changes)
    fs.save(args.output)
    summary = {
        "output": args.output,
        "method": fs.method,
        "rotary_dim": fs.rotary_dim,
        "original_length": fs.original_max_position_embeddings,
        "target_length": fs.max_position_embeddings,
        "scale": fs.scale,
        "attention_factor": fs.resolved_attention_factor(),
        "start_tokens": fs.start_tokens,
        "long_factor_range": [float(fs.long_factor.min()), float(fs.long_factor.max())],
    }
    print(json.dumps(summary, indent=2))
    return 0
