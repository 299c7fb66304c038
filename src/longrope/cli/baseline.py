"""``longrope baseline``: write the factors of a closed-form method (PI, NTK, dynamic NTK, YaRN, llama3).

The model's rope base, rotary dim and original length L come from its config (no weights are
read); ``--original-length`` overrides L when the config's ``max_position_embeddings`` is not the
length the model was trained at. The result is a ``factors.json`` that ``eval``, ``search`` (as
a seed) and ``export`` read. Method options (docs/method.md §3): YaRN ``--beta-fast``/``--beta-slow``
(defaults 32/1; Mistral used 128/2), dynamic NTK ``--length`` (the current length ℓ), llama3
``--factor``/``--low-freq-factor``/``--high-freq-factor``.
"""

from __future__ import annotations

import argparse
import json
import shlex

COMMAND = "baseline"
HELP = "write the rescale factors of a closed-form method (pi, ntk, dynamic-ntk, yarn, llama3) as factors.json"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope baseline --model smollm2 --method yarn --target-length 32768 -o yarn-32k.json
  longrope baseline --model tiny --method pi --target-length 8192 --start-tokens 4 -o pi.json
"""

METHODS = ("pi", "ntk", "dynamic-ntk", "yarn", "llama3")  # longrope.rope.BASELINES, kept import-free
# flag dest -> make_baseline option name; only options the user gave are passed on.
_OPTIONS = ("beta_fast", "beta_slow", "length", "factor", "low_freq_factor", "high_freq_factor", "mscale",
            "mscale_all_dim")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="'tiny', 'smollm2', a Hugging Face folder, a .gguf file or a hub id")
    parser.add_argument("--method", required=True, choices=METHODS, help="closed-form method")
    parser.add_argument("--target-length", required=True, help="target context L' in tokens (16384 or 16k)")
    parser.add_argument("-o", "--output", required=True, help="factors.json to write")
    parser.add_argument("--original-length", type=int, default=None,
                        help="override the original context L, an integer >= 2 (default: from the model config)")
    parser.add_argument("--attention-factor", type=float, default=None,
                        help="attention temperature m (default: the method's own; YaRN 0.1 ln s + 1, others 1)")
    parser.add_argument("--start-tokens", type=int, default=0, help="retained start tokens n̂ (default 0)")
    g = parser.add_argument_group("method options")
    g.add_argument("--beta-fast", type=float, default=None, help="yarn: β_fast (default 32)")
    g.add_argument("--beta-slow", type=float, default=None, help="yarn: β_slow (default 1)")
    g.add_argument("--mscale", type=float, default=None, help="yarn: DeepSeek-style mscale")
    g.add_argument("--mscale-all-dim", type=float, default=None, help="yarn: DeepSeek-style mscale_all_dim")
    g.add_argument("--length", type=int, default=None, help="dynamic-ntk: the current length ℓ (default L')")
    g.add_argument("--factor", type=float, default=None,
                   help="yarn/llama3/dynamic-ntk: scale factor (default L'/L; Llama 3.1 ships 8)")
    g.add_argument("--low-freq-factor", type=float, default=None, help="llama3: low_freq_factor (default 1)")
    g.add_argument("--high-freq-factor", type=float, default=None, help="llama3: high_freq_factor (default 4)")


def _command_line(args: argparse.Namespace) -> str:
    """The fully resolved command (from the parsed flags, so it is right when called in-process too)."""
    argv = ["longrope", COMMAND, "--model", str(args.model), "--method", args.method,
            "--target-length", str(args.target_length), "-o", str(args.output)]
    for dest in ("original_length", "attention_factor", "start_tokens", *_OPTIONS):
        value = getattr(args, dest)
        if value is not None and not (dest == "start_tokens" and value == 0):
            argv += ["--" + dest.replace("_", "-"), str(value)]
    return shlex.join(argv)


def run(args: argparse.Namespace) -> int:
    from longrope.errors import UserError
    from longrope.models.loading import read_rope_info
    from longrope.options import parse_length
    from longrope.rope import baseline_options, make_baseline

    args.target_length = parse_length(args.target_length, "--target-length")
    if not 0 <= args.start_tokens < args.target_length:
        raise UserError(f"--start-tokens must be in [0, --target-length) = [0, {args.target_length}), got "
                        f"{args.start_tokens}: n̂ positions keep their original angles, so n̂ ≥ L' rescales nothing")
    if args.original_length is not None and args.original_length < 2:
        # 0 used to fall back to the config's L silently; 1 makes ln L = 0 in the attention factor
        raise UserError(f"--original-length must be an integer >= 2 (or omitted to use the model's), "
                        f"got {args.original_length}")
    given = {k: getattr(args, k) for k in _OPTIONS if getattr(args, k) is not None}
    allowed = set(baseline_options(args.method))
    wrong = sorted(k for k in given if k not in allowed)
    if wrong:
        flags = ", ".join("--" + k.replace("_", "-") for k in wrong)
        raise UserError(f"{flags} does not apply to --method {args.method}")
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
