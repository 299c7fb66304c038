"""``longrope generate``: greedy (or seeded sampled) generation with LongRoPE factors installed.

``--mode switch`` (default) uses the short factors while the sequence fits in the original
context L and the long ones beyond, like transformers; when generation crosses L the sequence is
re-fed once with the long factors (``--cache-policy reprefill``, exact: every later token equals a
from-scratch forward), or the cached keys are re-rotated (``rerotate``: cheaper, exact for the first
layer only), or kept as stock transformers does (``keep``). ``--mode long`` uses the long factors
from the first token, like vLLM with ``--max-model-len`` > L and llama.cpp with a context > L.
``--json`` prints ``{"prompt_tokens": [...], "new_tokens": [...], "text": "..."}``.
"""

from __future__ import annotations

import os
import sys

from longrope.tools import GenerateConfig

CONFIG = GenerateConfig
#: the most bytes of a prompt ``--prompt-file`` reads, from a file or standard input (``-``)
PROMPT_LIMIT = 256 << 20

COMMAND = "generate"
HELP = "generate text with the factors installed (exact across the short/long switch)"
DESCRIPTION = __doc__
EXAMPLE = """example:
  longrope generate --model tiny --factors runs/yarn.json --prompt "It was a dark night" --max-new-tokens 40
  longrope generate --model smollm2 --factors f.json --prompt-file book.txt --max-new-tokens 64 --mode long --json
  cat book.txt | longrope generate --model smollm2 --factors f.json --prompt-file - --max-new-tokens 64
  longrope generate --model smollm2 --factors f.json --chat-template --prompt "Summarize: ..." --max-new-tokens 64
"""


def run(args: GenerateConfig) -> int:
    from longrope.errors import UserError
    from longrope.groups import run_device
    from longrope.io import decode_text, os_error_words, read_at_most, read_regular
    from longrope.models import install_factors, load_model, read_rope_info, resolve_dtype
    from longrope.models.factor_files import load_factors_for
    from longrope.models.families import require_supported
    from longrope.models.generation import check_text_prompts, generate
    from longrope.models.loading import load_tokenizer_of

    # Every check on the input before the weights load (seconds, not minutes, on a real model): the counts, the
    # prompt and the decoding settings are the config's own checks (generate()'s, one rule each).
    given_opts = {k: v for k, v in (("temperature", args.temperature), ("top_p", args.top_p),
                                    ("cache_policy", args.cache_policy)) if v is not None}
    if args.prompt_file == "-":  # piped in: read to its end, within a bound (`yes |` never ends)
        if sys.stdin is None:  # closed ('<&-'): it was 'the prompt is empty', as if an empty text had been piped
            raise UserError("--prompt-file -: standard input is closed; pipe the prompt in (... | longrope generate "
                            "--prompt-file -), or give --prompt TEXT or --prompt-file FILE")
        if sys.stdin.isatty():  # no pipe: it waited for typed text without a word, as if hung (battery 28a)
            print("longrope generate: reading the prompt from the terminal: type it, then Ctrl-D on a line of its "
                  "own (or pipe it in: ... | longrope generate --prompt-file -)", file=sys.stderr)
        try:
            data = read_at_most(sys.stdin.buffer, PROMPT_LIMIT + 1)
        except OSError as e:  # '< /some/folder': 'Is a directory' with no word of which input (battery 21)
            raise UserError(f"cannot read --prompt-file - (standard input): {os_error_words(e)}") from None
    elif args.prompt_file is not None:
        try:
            # a pipe or /dev/zero: refused, not read; a file, within the bound (a 6 GB log was read whole, then
            # 'out of memory ... use shorter sequences, fewer samples' under ulimit -v, or the machine's memory gone)
            data = read_regular(args.prompt_file, limit=PROMPT_LIMIT)
        except OSError as e:
            import stat

            try:  # /dev/stdin under a pipe, <(cmd), a named pipe: the pipe has its own spelling, '-', bounded
                piped = stat.S_ISFIFO(os.stat(args.prompt_file).st_mode)
            except (OSError, ValueError):
                piped = False
            then = ("; a pipe is read with --prompt-file - as standard input (... | longrope generate --prompt-file -)"
                    if piped else "")
            raise UserError(f"cannot read --prompt-file {args.prompt_file}: {os_error_words(e)}{then}") from None
    if args.prompt_file is not None:
        what = "standard input" if args.prompt_file == "-" else args.prompt_file
        if len(data) > PROMPT_LIMIT:
            raise UserError(f"--prompt-file {'-: ' if args.prompt_file == '-' else ''}{what} holds more than "
                            f"{PROMPT_LIMIT >> 20} MiB; a prompt that long is no prompt: give a shorter text")
        try:  # a byte-order mark is no prompt text (it was 3 tokens before the prompt, battery 11a)
            text = decode_text(data, args.prompt_file)  # "-": converted on its way in
        except ValueError as e:
            raise UserError(f"--prompt-file {what} is {e}") from None
    else:
        text = args.prompt
    check_text_prompts([text])  # before the weights load
    info = require_supported(read_rope_info(args.model, args.original_length))  # the config only: no weights yet
    factor_set = load_factors_for(args.factors, info, original_length=args.original_length,
                                  target_length=args.target_length, model=args.model, target_flag="--target-length")
    tokenizer = load_tokenizer_of(args.model)
    if tokenizer is None:  # seconds: the weights (minutes for a real model) were read first
        raise UserError(f"{args.model} has no tokenizer; text prompts need one: give a model folder with its "
                        "tokenizer files")
    if args.chat_template:  # the prompt as the template makes it, before the weights (a template may refuse it)
        from longrope.models.generation import chat_prompt_ids
        from longrope.options import check_chat_template

        check_chat_template(tokenizer, args.model)
        prompt = [chat_prompt_ids(tokenizer, text)]
    else:
        prompt = text
    device = run_device(args.device)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # the output is the text: transformers' loading bar is noise here
    model, tokenizer = load_model(args.model, dtype=resolve_dtype(args.dtype), device=device)
    install_factors(model, factor_set)
    from longrope.models.generation import prepare_batch

    total = prepare_batch(model, tokenizer, prompt, None)[0].shape[1] + args.max_new_tokens  # as generate() feeds it
    if total > factor_set.max_position_embeddings:  # allowed (the angles extend), but past what was prepared for
        print(f"longrope generate: warning: prompt + --max-new-tokens reach {total:,} tokens, past the factors' "
              f"target length L' = {factor_set.max_position_embeddings:,}; text beyond L' is outside the extended "
              "context", file=sys.stderr)
    result = generate(model, tokenizer, prompt, args.max_new_tokens, args.mode, **given_opts,
                      do_sample=args.sample, seed=args.seed,
                      stop_at_eos=not args.ignore_eos)
    if args.json:
        from longrope.cli import stdout_json

        print(stdout_json({"prompt_tokens": result.prompt_tokens[0], "new_tokens": result.new_tokens[0],
                           "text": result.text[0]}))
    else:
        print(result.text[0])
    crossed = "re-fed once" if result.reprefills else "re-rotated" if result.rerotations else None
    if crossed:
        print(f"longrope generate: crossed L = {factor_set.original_max_position_embeddings}; "
              f"the KV cache was {crossed}", file=sys.stderr)
    return 0
