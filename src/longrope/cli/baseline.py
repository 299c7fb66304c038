"""``longrope baseline``: write the factors of a closed-form method (PI, NTK, dynamic NTK, YaRN, llama3).

The model's rope base, rotary dim and original length L come from its config (no weights are
read); ``--original-length`` overrides L when the config's ``max_position_embeddings`` is not the
length the model was trained at. The result is a ``factors.json`` that ``eval``, ``search`` (as
a seed) and ``export`` read. Method options (docs/method.md §3): YaRN ``--beta-fast``/``--beta-slow``
(defaults 32/1; Mistral used 128/2), dynamic NTK ``--length`` (the current length ℓ), llama3
``--factor``/``--low-freq-factor``/``--high-freq-factor``.
"""

from __future__ import annotations

from longrope.tools import BaselineConfig

CONFIG = BaselineConfig

COMMAND = "baseline"
HELP = "write the rescale factors of a closed-form method (pi, ntk, dynamic-ntk, yarn, llama3) as factors.json"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope baseline --model smollm2 --method yarn --target-length 32768 -o yarn-32k.json
  longrope baseline --model tiny --method pi --target-length 8192 --start-tokens 4 -o pi.json
"""



def run(args: BaselineConfig) -> int:
    from longrope.formats.outputs import check_replaceable_file

    out = check_replaceable_file(args.output, writes="a factors.json",
                                 is_own=lambda doc: isinstance(doc, dict) and "long_factor" in doc and "rope_theta" in doc)
    fs = args.factor_set()
    fs.save(out)
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
    from longrope.cli import stdout_json

    print(stdout_json(summary, indent=2))
    return 0
