"""``longrope eval ppl|passkey``: perplexity and passkey retrieval for several factor sets at once."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from longrope.cli._parse import parse_lengths

COMMAND = "eval"
HELP = "evaluate perplexity or passkey retrieval of a model with several factor sets"
DESCRIPTION = """\
Evaluate one model with several factor sets in one run (the model is loaded once; factors are
installed once and swapped). The unscaled model is always included as 'none' unless
--skip-none. Results: JSON + CSV + PNG in the output folder.

  eval ppl      token-weighted perplexity on sampled documents of a shard folder
                (truncate mode: BOS + the first length-1 tokens; --stride: sliding windows)
  eval passkey  the standard passkey prompt, sized exactly in tokens; --mode generate (greedy
                decoding, KV cache) or --mode needle (teacher-forced answer tokens)"""
EXAMPLE = """\
examples:
  longrope eval ppl --model tiny --factors runs/yarn/factors.json --data shards/tiny \\
      --lengths 256,512,1024 --samples 3 -o results/ppl
  longrope eval passkey --model tiny --lengths 512,1024 --trials 3 -o results/passkey"""


def _floats(text: str, flag: str) -> list[float]:
    from longrope.errors import UserError

    try:
        vals = [float(t) for t in str(text).split(",") if t.strip()]
    except ValueError:
        raise UserError(f"{flag} must be comma-separated numbers in [0, 1], got {text!r}") from None
    if not vals or any(not 0.0 <= v <= 1.0 for v in vals):
        raise UserError(f"{flag} must be comma-separated numbers in [0, 1], got {text!r}")
    return vals


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, metavar="M",
                   help='"tiny", "smollm2", a model folder, a .gguf file or a hub id')
    p.add_argument("--factors", nargs="+", action="extend", default=[], metavar="F",
                   help="factor files (factors.json, HF config.json, reference CSV) or folders; 'none' = unscaled")
    p.add_argument("--skip-none", action="store_true", help="do not evaluate the unscaled model")
    p.add_argument("--lengths", required=True, help="context lengths in tokens, comma-separated (4k = 4096)")
    p.add_argument("--seed", type=int, default=0, help="seed for document sampling / pass keys (default 0)")
    p.add_argument("--dtype", default="float32", help="model dtype: float32, bfloat16, float16 (default float32)")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--no-bos", action="store_true", help="do not prepend the tokenizer's BOS token")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="output folder")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="eval_kind", metavar="KIND", required=True)
    fmt = argparse.RawDescriptionHelpFormatter
    ppl = sub.add_parser("ppl", help="perplexity vs length on documents of a shard folder", formatter_class=fmt,
                         epilog="example:\n  longrope eval ppl --model tiny --data shards/tiny --lengths 256,512 "
                                "--factors runs/yarn/factors.json -o results/ppl")
    _common(ppl)
    ppl.add_argument("--data", required=True, metavar="DIR", help="shard folder from 'longrope tokenize'")
    ppl.add_argument("--samples", type=int, default=5, metavar="K", help="documents to evaluate (default 5)")
    ppl.add_argument("--stride", type=int, default=None, metavar="S",
                     help="sliding-window mode with this stride (default: truncate mode)")
    ppl.add_argument("--max-tokens", type=int, default=None, metavar="N",
                     help="sliding mode: evaluate at most N tokens of each document")
    ppl.add_argument("--split", default="heldout", choices=["heldout", "search", "all"],
                     help="which documents: held-out (default), search, or all")
    ppl.add_argument("--heldout-fraction", type=float, default=0.5, help="share of documents held out (default 0.5)")
    ppl.add_argument("--windows-per-doc", type=int, default=1, metavar="W",
                     help="non-overlapping windows taken from each long document (default 1)")
    ppl.add_argument("--batch-size", type=int, default=1, help="windows per forward pass (default 1)")
    ppl.add_argument("--chunk-size", type=int, default=None, help="positions per LM-head chunk (default: auto)")
    ppl.add_argument("--verify", default="sample", choices=["size", "sample", "full"],
                     help="shard check on open (default: sizes + sampled checksums)")
    pk = sub.add_parser("passkey", help="passkey retrieval accuracy over length x depth", formatter_class=fmt,
                        epilog="example:\n  longrope eval passkey --model tiny --lengths 512,1024 --trials 3 "
                               "-o results/passkey")
    _common(pk)
    pk.add_argument("--trials", type=int, default=5, metavar="N", help="keys per (length, depth) (default 5)")
    pk.add_argument("--depths", default="0,0.25,0.5,0.75,1", help="needle depths in [0, 1] (default 0,0.25,0.5,0.75,1)")
    pk.add_argument("--mode", default="generate", choices=["generate", "needle"],
                    help="generate: greedy decoding; needle: teacher-forced answer score (default generate)")
    pk.add_argument("--max-new-tokens", type=int, default=8, help="tokens to generate (default 8)")
    pk.add_argument("--data", default=None, metavar="DIR",
                    help="hide the needle in real documents of this shard folder instead of the filler")
    pk.add_argument("--split", default="heldout", choices=["heldout", "search", "all"],
                    help="with --data: which documents (default heldout)")
    pk.add_argument("--heldout-fraction", type=float, default=0.5, help="with --data: share held out (default 0.5)")


def _say(msg: str) -> None:
    print(msg, file=sys.stderr)


def _factor_sets(specs: list[str], *, skip_none: bool, model, lengths: list[int]):
    """``[(name, FactorSet | None)]``: 'none' first unless skipped, names from file/folder names."""
    from longrope.errors import UserError

    sets: list[tuple[str, object]] = []
    seen: set[str] = set()

    def add(name: str, fs: object) -> None:
        base, k = name, 2
        while name in seen:
            name, k = f"{base}-{k}", k + 1
        seen.add(name)
        sets.append((name, fs))

    if not skip_none and "none" not in specs:
        add("none", None)
    info = None
    for spec in specs:
        if spec == "none":
            add("none", None)
            continue
        from longrope.models import inspect_model
        from longrope.rope import FactorSet

        if info is None:
            info = inspect_model(model)
        p = Path(spec)
        fs = FactorSet.load(p, rope_theta=info.rope_theta, original_length=info.original_max_position_embeddings,
                            target_length=max(lengths))
        name = p.name if p.is_dir() else (p.parent.name if p.name in ("factors.json", "config.json") and
                                          p.parent.name else p.stem)
        add(name or spec, fs)
    if not sets:
        raise UserError("nothing to evaluate: --skip-none without --factors")
    return sets


def _config(args: argparse.Namespace, sets, extra: dict) -> dict:
    import platform

    import torch
    import transformers

    from longrope import __version__

    return {
        "command": "eval " + args.eval_kind,
        "argv": sys.argv[1:],
        "model": args.model,
        "factors": [{"name": n, "file": None if fs is None else (fs.provenance or {}).get("source"),
                     "method": None if fs is None else fs.method,
                     "target_length": None if fs is None else fs.max_position_embeddings} for n, fs in sets],
        "dtype": args.dtype,
        "device": args.device,
        "seed": args.seed,
        "versions": {"longrope": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        **extra,
    }


def run(args: argparse.Namespace) -> int:
    from longrope.errors import UserError

    lengths = parse_lengths(args.lengths)
    if args.eval_kind == "ppl":
        for flag, v in (("--samples", args.samples), ("--batch-size", args.batch_size),
                        ("--windows-per-doc", args.windows_per_doc)):
            if v < 1:
                raise UserError(f"{flag} must be a positive integer, got {v}")
        if not 0.0 <= args.heldout_fraction <= 1.0:
            raise UserError(f"--heldout-fraction must be in [0, 1], got {args.heldout_fraction}")
        if args.max_tokens is not None and args.stride is None:
            raise UserError("--max-tokens needs --stride (it applies to sliding-window mode)")
        if args.stride is not None and not 1 <= args.stride <= min(lengths):
            raise UserError(f"--stride must be between 1 and the shortest length ({min(lengths)}), got {args.stride}")
        return _run_ppl(args, lengths)
    if args.trials < 1:
        raise UserError(f"--trials must be a positive integer, got {args.trials}")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens must be a positive integer, got {args.max_new_tokens}")
    return _run_passkey(args, lengths, _floats(args.depths, "--depths"))


def _quiet_transformers(args: argparse.Namespace) -> None:
    """--quiet also silences transformers' weight-loading progress bar."""
    if args.quiet:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()


def _bos(args, tokenizer, fallback: int | None = None) -> int | None:
    if args.no_bos:
        return None
    bos = getattr(tokenizer, "bos_token_id", None) if tokenizer is not None else fallback
    if bos is None:
        _say("longrope eval: note: the tokenizer has no BOS token; windows start with document tokens")
    return bos


def _run_ppl(args: argparse.Namespace, lengths: list[int]) -> int:
    from longrope.data import TokenCorpus, sample_documents
    from longrope.errors import UserError
    from longrope.evaluate.suite import ppl_suite, write_ppl_outputs
    from longrope.models.loading import load_model

    corpus = TokenCorpus.open(args.data, verify=args.verify)
    # Sample first (cheap): too-long lengths fail before the model loads. The shards record the BOS
    # of the tokenizer they were made with; the vocabulary check below ties it to the model's.
    def sample(with_bos: bool):
        need = max(lengths) - with_bos
        return need, sample_documents(corpus, need, args.samples, seed=args.seed, split=args.split,
                                      heldout_fraction=args.heldout_fraction, windows_per_doc=args.windows_per_doc)

    meta_bos = not args.no_bos and corpus.tokenizer_info.get("bos_token_id") is not None
    need, docs = sample(meta_bos)
    _quiet_transformers(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    vocab = int(getattr(model.config, "vocab_size", 0) or 0)
    if tokenizer is not None:
        corpus.check_tokenizer(tokenizer, model_name=args.model)
    else:
        _say(f"longrope eval: warning: {args.model} has no tokenizer; cannot check that {args.data} was tokenized "
             f"for it (shards say {corpus.tokenizer_info['name']!r})")
    if vocab and corpus.tokenizer_info.get("vocab_size", 0) > vocab:
        raise UserError(f"{args.data} uses a {corpus.tokenizer_info['vocab_size']}-token vocabulary but the model "
                        f"has {vocab} embeddings; tokenize with the model's tokenizer")
    bos = _bos(args, tokenizer, corpus.tokenizer_info.get("bos_token_id"))
    if (bos is not None) != meta_bos:
        need, docs = sample(bos is not None)
    if len(docs) < args.samples:
        _say(f"longrope eval: warning: only {len(docs)} {args.split} document window(s) have the {need} tokens "
             f"length {max(lengths)} needs; evaluating those (asked for {args.samples})")
    sets = _factor_sets(args.factors, skip_none=args.skip_none, model=model, lengths=lengths)
    _say(f"{'factors':>16s}  {'length':>8s}")
    results = ppl_suite(model, docs, sets, lengths, bos_id=bos, stride=args.stride, max_tokens=args.max_tokens,
                        chunk_size=args.chunk_size, batch_size=args.batch_size, progress=not args.quiet, log=_say)
    from longrope.models import inspect_model

    info = inspect_model(model)
    config = _config(args, sets, {
        "data": str(args.data), "tokenizer": corpus.tokenizer_info, "lengths": lengths, "samples": args.samples,
        "split": args.split, "heldout_fraction": args.heldout_fraction, "windows_per_doc": args.windows_per_doc,
        "mode": "truncate" if args.stride is None else "sliding", "stride": args.stride,
        "max_tokens": args.max_tokens, "bos_id": bos, "documents": [d.doc_id for d in docs],
        "weighting": "ppl = exp(sum of NLL / number of scored tokens); ppl_doc_mean = exp(mean of per-doc mean NLL)",
        "original_max_position_embeddings": info.original_max_position_embeddings,
    })
    paths = write_ppl_outputs(args.output, results, config, original_length=info.original_max_position_embeddings)
    print(f"wrote {paths['json']}, {paths['csv']}, {paths['png']}")
    return 0


def _run_passkey(args: argparse.Namespace, lengths: list[int], depths: list[float]) -> int:
    from longrope.errors import UserError
    from longrope.evaluate.suite import passkey_suite, write_passkey_outputs
    from longrope.models.loading import load_model

    _quiet_transformers(args)
    model, tokenizer = load_model(args.model, dtype=args.dtype, device=args.device)
    if tokenizer is None:
        raise UserError(f"{args.model} has no tokenizer files; the passkey prompt needs one")
    bos = _bos(args, tokenizer)
    haystacks = None
    if args.data:
        from longrope.data import TokenCorpus, sample_documents

        corpus = TokenCorpus.open(args.data)
        corpus.check_tokenizer(tokenizer, model_name=args.model)
        haystacks = sample_documents(corpus, max(lengths), len(depths) * args.trials, seed=args.seed,
                                     split=args.split, heldout_fraction=args.heldout_fraction)
    sets = _factor_sets(args.factors, skip_none=args.skip_none, model=model, lengths=lengths)
    results = passkey_suite(model, tokenizer, sets, lengths, depths=depths, trials=args.trials, seed=args.seed,
                            bos_id=bos, mode=args.mode, max_new_tokens=args.max_new_tokens, haystacks=haystacks,
                            progress=not args.quiet, log=_say)
    config = _config(args, sets, {"lengths": lengths, "depths": depths, "trials": args.trials, "mode": args.mode,
                                  "max_new_tokens": args.max_new_tokens, "bos_id": bos,
                                  "haystack": "synthetic filler" if haystacks is None else
                                  {"data": str(args.data), "split": args.split,
                                   "documents": [d.doc_id for d in haystacks]},
                                  "correct_if": "first integer of the greedy output equals the key" if
                                  args.mode == "generate" else "every answer token is the argmax (teacher-forced)"})
    paths = write_passkey_outputs(args.output, results, config)
    print("wrote " + ", ".join(str(p) for p in paths.values()))
    return 0
