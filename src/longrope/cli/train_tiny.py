"""``longrope train-tiny``: rebuild the embedded corpus, tokenizer and tiny model reproducibly.

Steps: fetch and clean the books (or read ``--text-dir``), split them by whole book, write the
search/held-out texts and ``split.json`` to ``OUT/corpus``, train a BPE tokenizer on the training
books, train the Llama from scratch (checkpointing to ``--cache-dir``, resuming a matching
checkpoint), save it in fp16 as a normal HF folder in ``OUT/tiny`` with ``training.json`` (the
full command, seed, resolved config, corpus summary, versions, held-out report) and
``train_log.jsonl``. The shipped ``src/longrope/embedded/assets`` is this command's output.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys

COMMAND = "train-tiny"
HELP = "rebuild the embedded offline corpus and tiny Llama model from scratch (seeded)"
DESCRIPTION = __doc__
EXAMPLE = """example (a 20-second smoke run on your own text files):
  longrope train-tiny --text-dir my_books/ --search-docs a --heldout-docs b --out /tmp/tiny \\
      --vocab-size 400 --hidden-size 64 --num-layers 2 --num-heads 2 --intermediate-size 128 \\
      --context 64 --batch-size 4 --max-steps 20 --eval-every 10
"""

_CONFIG_HELP = {
    "seed": "seed of weight init and batch sampling",
    "max_steps": "training steps (also the cosine schedule's length)",
    "time_budget_s": "stop early after this many seconds of training (recorded as stopped_early)",
    "passkey_fraction": "share of training sequences that are passkey prompts",
    "copy_fraction": "share of training sequences that are synthetic copy rows (a random string repeated "
                     "after a gap; teaches induction)",
    "eval_passkey_trials": "passkey prompts at --context scored at each periodic evaluation (0 = none)",
    "context": "training length L in tokens",
    "induction_steps": "the first N steps train on induction rows only (a random string repeated; grows "
                       "copy heads)",
    "tokenizer": "reuse this tokenizer (folder with tokenizer.json, or the file) instead of training one",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # Defaults come from TinyConfig, read without importing torch (the module imports numpy only).
    from longrope.embedded.train import TinyConfig

    parser.add_argument("--out", required=True, help="output folder (gets corpus/ and tiny/)")
    parser.add_argument("--cache-dir", default=".corpus",
                        help="where raw downloads, unpacked packages and checkpoints go (default .corpus)")
    parser.add_argument("--text-dir", default=None,
                        help="use this folder of .txt files as the corpus instead of downloading books")
    parser.add_argument("--search-docs", default=None,
                        help="comma-separated book names used as search documents (default: built-in split)")
    parser.add_argument("--heldout-docs", default=None,
                        help="comma-separated book names held out for the report (default: built-in split)")
    parser.add_argument("--domains", default="books,maths",
                        help="which default sources to fetch: books (PG19 stand-in) and/or maths (HOL Light, the "
                             "Proof-Pile stand-in); the default split keeps the names of the domains fetched "
                             "(default books,maths)")
    parser.add_argument("--no-resume", action="store_true",
                        help="ignore (and overwrite) a matching checkpoint in --cache-dir")
    parser.add_argument("--report-passkey-trials", type=int, default=20,
                        help="passkey prompts per setting in the final report (0 = skip)")
    for f in dataclasses.fields(TinyConfig):
        flag = "--" + f.name.replace("_", "-").replace("-s", "") if f.name.endswith("_s") else \
            "--" + f.name.replace("_", "-")
        typ = {"float": float, "float | None": float, "str | None": str}.get(f.type, int)
        if f.type == "bool":
            parser.add_argument(flag, dest=f.name, type=_bool, default=f.default, metavar="{true,false}",
                                help=f"(default {str(f.default).lower()})")
            continue
        parser.add_argument(flag, dest=f.name, type=typ, default=f.default,
                            help=f"{_CONFIG_HELP.get(f.name, f.name.replace('_', ' '))} (default {f.default})")


def _bool(text: str) -> bool:
    if text.lower() in ("1", "true", "yes"):
        return True
    if text.lower() in ("0", "false", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [n.strip() for n in text.split(",") if n.strip()]


def resolved_command(args: argparse.Namespace, cfg, stopped_at: int | None = None) -> str:
    """The full command line with every option spelled out.

    With ``stopped_at`` (a run cut short by ``--time-budget``), the budget is replaced by
    ``--stop-at-step``, which replays the same run exactly on any machine.
    """
    if stopped_at is not None:
        cfg = dataclasses.replace(cfg, time_budget_s=None, stop_at_step=stopped_at)
    parts = ["longrope", COMMAND, "--out", str(args.out), "--cache-dir", str(args.cache_dir)]
    if args.text_dir:
        parts += ["--text-dir", str(args.text_dir)]
    else:
        parts += ["--domains", args.domains]
    if args.search_docs:
        parts += ["--search-docs", args.search_docs]
    if args.heldout_docs:
        parts += ["--heldout-docs", args.heldout_docs]
    parts += ["--report-passkey-trials", str(args.report_passkey_trials)]
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        flag = "--" + f.name.replace("_", "-")
        if f.name.endswith("_s"):
            flag = flag[: -len("-s")]
        parts += [flag, str(value).lower() if isinstance(value, bool) else str(value)]
    return shlex.join(parts)


def run(args: argparse.Namespace) -> int:
    import json
    import platform
    import time
    from pathlib import Path

    import numpy as np
    import tokenizers
    import torch
    import transformers

    from longrope.embedded import corpus as corpus_mod
    from longrope.embedded import train as tr
    from longrope.io import write_json

    cfg = tr.TinyConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(tr.TinyConfig)})
    out = Path(args.out)
    cache = Path(args.cache_dir)
    t0 = time.time()

    def say(msg: str) -> None:
        print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True)

    # 1. corpus
    if args.text_dir:
        books = corpus_mod.read_text_dir(args.text_dir)
        if args.search_docs is None or args.heldout_docs is None:
            from longrope.errors import UserError

            raise UserError("--text-dir needs --search-docs and --heldout-docs naming its files (stems)")
    else:
        books = corpus_mod.fetch_books(cache, _names(args.domains) or [])
    present = {b.name for b in books}
    search = _names(args.search_docs) or [n for n in corpus_mod.DEFAULT_SEARCH if n in present]
    heldout = _names(args.heldout_docs) or [n for n in corpus_mod.DEFAULT_HELDOUT if n in present]
    split = corpus_mod.split_books(books, search, heldout)
    say(f"corpus: {len(split.train)} training books, search {search}, held-out {heldout}")

    # 2. tokenizer
    if cfg.tokenizer:
        tokenizer = tr.load_tokenizer(cfg.tokenizer, cfg.vocab_size)
        origin = f"tiny/tokenizer.json (reused from {cfg.tokenizer}; trained on an earlier stage's training books)"
    else:
        tokenizer = tr.train_tokenizer([b.text for b in split.train], cfg.vocab_size)
        origin = "tiny/tokenizer.json (BPE trained on the training books only)"
    train_docs = tr.encode_docs(tokenizer, [b.text for b in split.train])
    heldout_docs = tr.encode_docs(tokenizer, [b.text for b in split.heldout])
    search_docs = tr.encode_docs(tokenizer, [b.text for b in split.search])
    split.notes = {"tokens": {b.name: int(len(d)) for b, d in zip(split.train + split.search + split.heldout,
                                                                   train_docs + search_docs + heldout_docs)},
                   "tokenizer": origin}
    # Reports are per domain (books = PG19 stand-in, maths = Proof-Pile stand-in); the periodic
    # evaluation uses the books, like the earlier stages' logs.
    by_domain: dict[str, list] = {}
    for b, d in zip(split.heldout, heldout_docs):
        by_domain.setdefault(b.domain, []).append(d)
    main_domain = "books" if "books" in by_domain else next(iter(by_domain))
    corpus_mod.write_corpus(split, out / "corpus")
    say(f"tokenizer: {len(tokenizer)} tokens; {sum(map(len, train_docs))} training tokens")

    # 3. model
    tiny = out / "tiny"
    checkpoint = cache / "checkpoints" / f"train-tiny-{cfg.fingerprint()}.pt"
    if args.no_resume and checkpoint.exists():
        checkpoint.unlink()
    if checkpoint.exists():
        say(f"resuming {checkpoint}")

    def progress(e: dict) -> None:
        extra = f", held-out ppl {e[f'heldout_ppl_{cfg.context}']:.2f}" if f"heldout_ppl_{cfg.context}" in e else ""
        if f"passkey_{cfg.context}" in e:
            extra += f", passkey@{cfg.context} {e[f'passkey_{cfg.context}']:.2f}"
        say(f"step {e['step']}/{cfg.max_steps}: loss {e['train_loss']:.3f}{extra}")

    model, log, summary = tr.train(cfg, tokenizer, train_docs, by_domain[main_domain], checkpoint=checkpoint,
                                   log_path=tiny / "train_log.jsonl", progress=progress)
    say(f"trained {summary['steps']} steps in {summary['train_seconds']} s")
    tr.export(model, tokenizer, tiny)

    # 4. report on the shipped (fp16-rounded) weights, loaded as a user would load them
    from transformers import AutoModelForCausalLM, AutoTokenizer

    shipped = AutoModelForCausalLM.from_pretrained(tiny, dtype=torch.float32)
    shipped_tok = AutoTokenizer.from_pretrained(tiny)
    rep = tr.report(shipped, shipped_tok, by_domain[main_domain], cfg, passkey_trials=args.report_passkey_trials)
    rep["domain"] = main_domain
    say("report: " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v) for k, v in rep.items()
                                 if k != "protocol"}))
    for domain, docs in by_domain.items():
        if domain != main_domain:
            rep.setdefault("domains", {})[domain] = extra = tr.report(shipped, shipped_tok, docs, cfg, passkey_trials=0)
            say(f"report ({domain}): " + json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                                                     for k, v in extra.items() if k != "protocol"}))
    n_params = sum(p.numel() for p in shipped.parameters())
    write_json(tiny / "training.json", {
        "command": resolved_command(args, cfg),
        "reproduce_command": resolved_command(args, cfg, summary["steps"] if summary["stopped_early"] else None),
        "argv": sys.argv,
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "config_fingerprint": cfg.fingerprint(),
        "parameters": n_params,
        "weights_dtype": "float16",
        "corpus": {"split": "corpus/split.json", "training_books": [b.name for b in split.train],
                   "training_tokens_by_domain": {dom: int(sum(len(d) for b, d in zip(split.train, train_docs)
                                                                if b.domain == dom))
                                                 for dom in sorted({b.domain for b in split.train})},
                   "training_tokens": int(sum(map(len, train_docs))),
                   "search": search, "heldout": heldout},
        "run": summary,
        "report": rep,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "threads": cfg.threads},
    })
    _make_readable(tiny, out / "corpus")
    say(f"wrote {tiny} and {out / 'corpus'}")
    return 0


def _make_readable(*folders) -> None:
    """Atomic writes create files with mode 0600 (mkstemp); shipped package data must be readable
    by every user of an installation, so give the outputs the umask's usual mode."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for folder in folders:
        for path in folder.rglob("*"):
            if path.is_file():
                path.chmod(0o666 & ~umask)
