"""Rebuild the embedded corpus, tokenizer and tiny model reproducibly (``python -m tools.train_tiny``).

The story: fetch and clean the books (or read ``text_dir``), split them by whole book and write
the search/held-out texts with ``split.json`` to ``OUT/corpus``; train a BPE tokenizer on the
training books (or reuse one); train the Llama from scratch (checkpointing to ``cache_dir`` as
``.safetensors`` with JSON metadata and resuming a matching checkpoint; ``.pt`` pickles are never
loaded); save it in fp16 as a plain Hugging Face folder ``OUT/tiny`` with ``training.json`` (the
full command, seed, resolved config, corpus summary, versions, held-out report) and
``train_log.jsonl``; report on the shipped weights through ``longrope.evaluate``. The shipped
``src/longrope/embedded/assets`` is this command's output. ``report_only`` skips everything but the
report (after a change of the report protocol).

OUT is a run folder (``config.json``, ``run.json``, ``summary.json`` = the report) written in place;
a rerun into the same folder replaces its outputs. Run folders record the command ``train-tiny`` (its
name when it was ``longrope train-tiny``), so older ones still serve as ``--config RUN_DIR``.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.embedded.corpus import DOMAINS
from longrope.errors import ConfigError, UserError
from longrope.options import config_to_argv, config_to_dict, nested, option
from longrope.runs import RunSpec
from tools.train_tiny.config import TinyConfig

#: the name run folders record (``longrope train-tiny``'s, so that its folders stay readable)
COMMAND = "train-tiny"
#: how the tool is run, from the repository root
PROGRAM = "python -m tools.train_tiny"


@dataclass
class TrainTinyConfig:
    """Everything ``python -m tools.train_tiny`` does; ``model`` determines the trained weights."""

    output: str = option(help="output folder (gets corpus/ and tiny/)", short="-o", metavar="DIR", aliases=("--out",),
                         path=True)
    cache_dir: str = option(".corpus", "where raw downloads, unpacked packages and checkpoints go", metavar="DIR",
                           path=True)
    text_dir: str | None = option(None, "use this folder of .txt files as the corpus instead of downloading "
                                        "books (needs --search-docs and --heldout-docs)", metavar="DIR",
                                  path=True)
    search_docs: tuple[str, ...] = option((), "book names (file stems) used as search documents",
                                          default_text="the built-in split", metavar="A,B")
    heldout_docs: tuple[str, ...] = option((), "book names held out for the report",
                                           default_text="the built-in split", metavar="A,B")
    domains: tuple[str, ...] = option(DOMAINS, "default sources to fetch: books (PG19 stand-in) and/or maths (HOL "
                                               "Light, the Proof-Pile stand-in)", metavar="D,D")
    resume: bool = option(True, "continue a matching checkpoint in --cache-dir (--no-resume deletes it)")
    report_passkey_trials: int = option(20, "passkey prompts per setting in the final report (0 = skip)")
    report_only: bool = option(False, "skip corpus and training: recompute the report of the model in OUT/tiny on "
                                      "OUT/corpus's held-out documents and rewrite training.json's report")
    model: TinyConfig = nested(TinyConfig, "what determines the trained model")

    def __post_init__(self) -> None:
        if self.text_dir and (not self.search_docs or not self.heldout_docs):
            raise ConfigError(("text_dir", "search_docs", "heldout_docs"),
                              "{name0} needs {name1} and {name2} naming its files (stems)")
        if not self.domains or any(d not in DOMAINS for d in self.domains):
            raise ConfigError("domains", "{name} must name some of " + f"{', '.join(DOMAINS)}, got {list(self.domains)}")
        if self.report_passkey_trials < 0:
            raise ConfigError("report_passkey_trials", "{name} must be >= 0, got " + str(self.report_passkey_trials))


def command_line(config: TrainTinyConfig, stopped_at: int | None = None) -> str:
    """The full command with every option spelled out; with ``stopped_at`` (a run cut short by
    ``--time-budget``) the budget becomes ``--stop-at-step``, which replays it exactly anywhere."""
    if stopped_at is not None:
        config = dataclasses.replace(config, model=dataclasses.replace(config.model, time_budget_s=None,
                                                                       stop_at_step=stopped_at))
    return shlex.join([*PROGRAM.split(), *config_to_argv(dataclasses.replace(config, report_only=False))])


def run(config: TrainTinyConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Build corpus, tokenizer and model into ``config.output``; returns the held-out report."""
    from longrope.runs.folder import RunFolder, read_run_config

    t0 = time.time()
    say = log or (lambda msg: print(f"[{time.time() - t0:7.1f}s] {msg}", flush=True))
    out = Path(config.output)
    try:
        previous = read_run_config(out)[0] == COMMAND
    except UserError:  # not a run folder (yet)
        previous = False
    folder = RunFolder.open(out, COMMAND, staged=False, resume=previous, adopt=config.report_only)
    try:  # the folder is locked until closed: one process at a time
        if config.report_only:
            return _report_only(config, folder, say)
        checkpoint = _checkpoint_path(config)
        folder.start(config_to_dict(config), extra={"command_line": command_line(config)})
        split, tokenizer, origin, docs = _corpus_and_tokenizer(config, say)
        model, summary = _train(config, tokenizer, docs, out / "tiny", checkpoint, say)
        report = _report(config, out / "tiny", docs["heldout_by_domain"], say)
        _write_training_json(config, out / "tiny", split, docs, origin, summary, report)
        say(f"wrote {out / 'tiny'} and {out / 'corpus'}")
        folder.finish(report)
        return report
    finally:
        folder.close()


def _checkpoint_path(config: TrainTinyConfig) -> Path:
    """The run's checkpoint; an old ``.pt`` pickle of the same run is refused (never loaded) unless
    ``--no-resume``, which deletes both. A bad ``--init-from`` or checkpoint fails here, before any work."""
    from tools.train_tiny.checkpoint import load_checkpoint

    cfg = config.model
    checkpoint = Path(config.cache_dir) / "checkpoints" / f"train-tiny-{cfg.fingerprint()}.safetensors"
    legacy = checkpoint.with_suffix(".pt")  # torch.save pickles of earlier versions
    if not config.resume:
        checkpoint.unlink(missing_ok=True)
        legacy.unlink(missing_ok=True)
    if legacy.exists() and not checkpoint.exists():
        raise UserError(f"{legacy} is an old pickle-format checkpoint of this run, which longrope no longer "
                        "loads (unpickling can run code); pass --no-resume to delete it and start over")
    if checkpoint.exists():
        load_checkpoint(checkpoint, what="checkpoint")
    if cfg.init_from is not None:
        if not Path(cfg.init_from).is_file():
            raise ConfigError("init_from", f"{{name}} {cfg.init_from} is not a file; give a train-tiny checkpoint "
                                           "(.safetensors)")
        load_checkpoint(Path(cfg.init_from), what="--init-from")
    return checkpoint


def _corpus_and_tokenizer(config: TrainTinyConfig, say: Callable[[str], None]):
    from longrope.embedded import corpus as corpus_mod
    from tools.train_tiny.tokenizer import encode_docs, load_tokenizer, train_tokenizer

    if config.text_dir:
        books = corpus_mod.read_text_dir(config.text_dir)
    else:
        books = corpus_mod.fetch_books(Path(config.cache_dir), list(config.domains))
    present = {b.name for b in books}
    search = list(config.search_docs) or [n for n in corpus_mod.DEFAULT_SEARCH if n in present]
    heldout = list(config.heldout_docs) or [n for n in corpus_mod.DEFAULT_HELDOUT if n in present]
    split = corpus_mod.split_books(books, search, heldout, corpus_mod.DEFAULT_FINETUNE)
    say(f"corpus: {len(split.train)} training books, search {search}, held-out {heldout}")
    cfg = config.model
    if cfg.tokenizer:
        tokenizer = load_tokenizer(cfg.tokenizer, cfg.vocab_size)
        origin = f"tiny/tokenizer.json (reused from {cfg.tokenizer}; trained on an earlier stage's training books)"
    else:
        tokenizer = train_tokenizer([b.text for b in split.train], cfg.vocab_size)
        origin = "tiny/tokenizer.json (BPE trained on the training books only)"
    docs = {role: encode_docs(tokenizer, [b.text for b in getattr(split, role)])
            for role in ("train", "search", "heldout")}
    split.notes = {"tokens": {b.name: int(len(d)) for b, d in zip(split.train + split.search + split.heldout,
                                                                   docs["train"] + docs["search"] + docs["heldout"])},
                   "tokenizer": origin}
    # Reports are per domain (books = PG19 stand-in, maths = Proof-Pile stand-in); the periodic
    # evaluation uses the first, like the earlier stages' logs.
    by_domain: dict[str, list] = {}
    for b, d in zip(split.heldout, docs["heldout"]):
        by_domain.setdefault(b.domain, []).append(d)
    docs["heldout_by_domain"] = dict(sorted(by_domain.items(), key=lambda kv: kv[0] != "books"))
    corpus_mod.write_corpus(split, Path(config.output) / "corpus")
    say(f"tokenizer: {len(tokenizer)} tokens; {sum(map(len, docs['train']))} training tokens")
    return split, tokenizer, origin, docs


def _train(config: TrainTinyConfig, tokenizer: Any, docs: dict, tiny: Path, checkpoint: Path,
           say: Callable[[str], None]):

    from tools.train_tiny.loop import train
    from tools.train_tiny.model import export

    cfg = config.model
    if checkpoint.exists():
        say(f"resuming {checkpoint}")

    def progress(e: dict) -> None:
        extra = f", held-out ppl {e[f'heldout_ppl_{cfg.context}']:.2f}" if f"heldout_ppl_{cfg.context}" in e else ""
        if f"passkey_{cfg.context}" in e:
            extra += f", passkey near {cfg.context} {e[f'passkey_{cfg.context}']:.2f}"
        say(f"step {e['step']}/{cfg.max_steps}: loss {e['train_loss']:.3f}{extra}")

    first = next(iter(docs["heldout_by_domain"].values()))
    model, _, summary = train(cfg, tokenizer, docs["train"], first, checkpoint=checkpoint,
                              log_path=tiny / "train_log.jsonl", progress=progress)
    say(f"trained {summary['steps']} steps in {summary['train_seconds']} s")
    export(model, tokenizer, tiny)
    return model, summary


def _report(config: TrainTinyConfig, tiny: Path, by_domain: dict, say: Callable[[str], None]) -> dict:
    """The held-out report on the shipped (fp16-rounded) weights, loaded as a user loads them."""
    from longrope.models import load_model
    from tools.train_tiny.report import report

    shipped, tok = load_model(str(tiny))
    rep: dict = {}
    for k, (domain, docs) in enumerate(by_domain.items()):
        r = report(shipped, tok, docs, config.model, passkey_trials=config.report_passkey_trials if k == 0 else 0)
        say(f"report ({domain}): " + json.dumps({key: (round(v, 3) if isinstance(v, float) else v)
                                                 for key, v in r.items() if key != "protocol"}))
        if k == 0:
            rep = {**r, "domain": domain}
        else:
            rep.setdefault("domains", {})[domain] = r
    return rep


def _write_training_json(config: TrainTinyConfig, tiny: Path, split: Any, docs: dict, origin: str, summary: dict,
                         report: dict) -> None:
    import platform

    import numpy as np
    import tokenizers
    import torch
    import transformers

    from longrope.io import write_json

    cfg = config.model
    n_params = sum(p.numel() for p in _load_params(tiny))
    write_json(tiny / "training.json", {
        "command": command_line(config),
        "reproduce_command": command_line(config, summary["steps"] if summary["stopped_early"] else None),
        "seed": cfg.seed,
        "config": dataclasses.asdict(cfg),
        "config_fingerprint": cfg.fingerprint(),
        "parameters": n_params,
        "weights_dtype": "float16",
        "corpus": {"split": "corpus/split.json", "training_books": [b.name for b in split.train],
                   "training_tokens_by_domain": {dom: int(sum(len(d) for b, d in zip(split.train, docs["train"])
                                                                if b.domain == dom))
                                                 for dom in sorted({b.domain for b in split.train})},
                   "training_tokens": int(sum(map(len, docs["train"]))),
                   "search": [b.name for b in split.search], "heldout": [b.name for b in split.heldout],
                   "tokenizer": origin},
        "run": summary,
        "report": report,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": transformers.__version__, "tokenizers": tokenizers.__version__,
                     "numpy": np.__version__},
        "machine": {"platform": platform.platform(), "threads": cfg.threads},
    })


def _load_params(tiny: Path):
    from safetensors.torch import load_file

    return load_file(tiny / "model.safetensors").values()


def _report_only(config: TrainTinyConfig, folder: Any, say: Callable[[str], None]) -> dict:
    """Recompute training.json's report for the model already in OUT/tiny."""
    import numpy as np

    from longrope.embedded import document_paths
    from longrope.io import write_json
    from longrope.models import load_model
    from tools.train_tiny.tokenizer import encoder

    out = Path(config.output)
    info_path = out / "tiny" / "training.json"
    if not info_path.exists():
        raise ConfigError("report_only", f"{{name}}: {info_path} does not exist; train the model first (without "
                                         "{name})")
    info = json.loads(info_path.read_text())
    cfg = TinyConfig(**info["config"])
    config = dataclasses.replace(config, model=cfg)
    folder.start(config_to_dict(config), extra={"command_line": command_line(config)})
    _, tok = load_model(str(out / "tiny"))
    encode = encoder(tok)
    from longrope.embedded import load_split
    from longrope.embedded.corpus import SOURCE_DOMAINS

    domains = [e.get("domain") or SOURCE_DOMAINS.get(e.get("source"), "local")
               for e in load_split(out / "corpus")["books"] if e["role"] == "heldout"]
    by_domain = {dom: [np.asarray(encode(p.read_text(encoding="utf-8")))
                       for p in document_paths("heldout", dom, corpus_dir=out / "corpus")]
                 for dom in sorted(set(domains), key=lambda d: (d != "books", domains.index(d)))}
    report = _report(config, out / "tiny", by_domain, say)
    info["report"] = report
    write_json(info_path, info)
    folder.finish(report)
    return report


def render(result: dict) -> str:
    keys = [k for k in result if k.startswith(("ppl_", "passkey_"))]
    return "\n".join(f"{k}: {result[k]:.4g}" if isinstance(result[k], float) else f"{k}: {result[k]}" for k in keys)


SPEC = RunSpec(
    command=COMMAND,
    help="rebuild the embedded offline corpus and tiny Llama model from scratch (seeded)",
    description=__doc__,
    example="""\
example (a 20-second smoke run on your own text files):
  python -m tools.train_tiny --text-dir my_books/ --search-docs a --heldout-docs b -o /tmp/tiny \\
      --vocab-size 400 --hidden-size 64 --num-layers 2 --num-heads 2 --intermediate-size 128 \\
      --context 64 --batch-size 4 --max-steps 20 --eval-every 10
repeat a recorded run (what `longrope rerun` did for it):
  python -m tools.train_tiny --config RUN_DIR -o NEW_DIR --no-resume""",
    config=TrainTinyConfig,
    run=run,
    render=render,
)
