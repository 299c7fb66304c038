"""One held-out share for every command (``longrope.settings.HELDOUT_FRACTION``).

The search, the held-out report, the evaluations, the demo, fine-tuning and the pipeline's stages
must split a shard folder the same way: a document one of them holds out must never be searched on or
trained on by another. With default settings each command's real code path is run up to the point
where it draws its held-out documents from one shard folder of unpinned documents (so the hash split
decides), the draw is recorded, and the command is stopped there (no weights are loaded).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from longrope.settings import HELDOUT_FRACTION
from tests.runs.run_helpers import L

N_DOCS = 24
DOC_TOKENS = 300


class _Drawn(Exception):
    """Raised by a spy once a command has drawn its held-out documents."""


@pytest.fixture(scope="module")
def unpinned(tiny, tmp_path_factory):
    """A shard folder of ``N_DOCS`` documents without a pinned role (the hash split decides) and two
    pinned ``train`` documents (fine-tuning needs some), tokenized for the ``tiny`` model."""
    from transformers import AutoTokenizer

    from longrope.data.shards import ShardWriter, vocab_sha256, write_meta

    tok = AutoTokenizer.from_pretrained(tiny / "model")
    folder = tmp_path_factory.mktemp("unpinned") / "shards"
    rng = np.random.default_rng(7)
    writer = ShardWriter(folder, np.dtype("<u2"))
    for k in range(N_DOCS):
        writer.add(f"book-{k:02d}", rng.integers(3, len(tok), size=DOC_TOKENS), None)
    for k in range(2):
        writer.add(f"train-{k}", rng.integers(3, len(tok), size=DOC_TOKENS), "train")
    files = writer.finish()
    write_meta(folder, {"format": "longrope-token-shards", "version": 1, "dtype": "uint16",
                        "n_docs": writer.n_docs, "n_tokens": writer.n_tokens,
                        "tokenizer": {"name": "tiny-bpe", "vocab_sha256": vocab_sha256(tok)}, **files})
    return folder


def _heldout_names(folder: Path, fraction: float) -> set[str]:
    from longrope.data import TokenCorpus, document_roles

    corpus = TokenCorpus.open(folder)
    return {name for name, role in zip(corpus.names, document_roles(corpus, fraction)) if role == "heldout"}


def _spy_draws(monkeypatch, module, name: str, draws: list) -> None:
    """Wrap ``module.name`` (``select_windows`` or ``sample_documents``): a held-out draw is recorded as
    ``(the held-out share it used, its documents)`` and stops the command."""
    real = getattr(module, name)
    signature = inspect.signature(real)

    def spy(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        drawn = real(*args, **kwargs)
        if bound.arguments["split"] != "heldout":
            return drawn
        draws.append((bound.arguments["heldout_fraction"], sorted({s.doc_id.split("@")[0] for s in drawn})))
        raise _Drawn

    monkeypatch.setattr(module, name, spy)


def _spy_training(monkeypatch, draws: list) -> None:
    """Fine-tuning holds documents out by refusing them: record the share its refusal used."""
    import longrope.train.loop as loop

    real = loop.training_documents

    def spy(corpus, *, heldout_fraction=HELDOUT_FRACTION, exclude=(), **more):
        real(corpus, heldout_fraction=heldout_fraction, exclude=exclude, **more)  # the real checks still pass
        draws.append((heldout_fraction, sorted(_heldout_names(Path(corpus.path), heldout_fraction))))
        raise _Drawn

    monkeypatch.setattr(loop, "training_documents", spy)


def _draw(monkeypatch, run) -> tuple[float, list[str]]:
    """Run ``run()`` with the spies in place; the one held-out draw it made."""
    import longrope.data
    import longrope.evaluate.windows

    draws: list = []
    _spy_draws(monkeypatch, longrope.evaluate.windows, "select_windows", draws)
    _spy_draws(monkeypatch, longrope.data, "sample_documents", draws)
    _spy_training(monkeypatch, draws)
    with pytest.raises(_Drawn):
        run()
    monkeypatch.undo()
    assert len(draws) == 1, draws
    return draws[0]


def _factor_file(tmp_path: Path, model: Path) -> Path:
    from longrope.models import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info(str(model))
    path = tmp_path / "pi.json"
    make_baseline("pi", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=L,
                  target_length=2 * L).save(path)
    return path


def test_every_command_holds_out_the_same_documents(tiny, unpinned, tmp_path, monkeypatch):
    from longrope.data import TokenCorpus
    from longrope.options import config_from_dict
    from longrope.runs import demo, pipeline
    from longrope.runs import search as search_run
    from longrope.runs.evaluate import PasskeyConfig, PplConfig, run_passkey, run_ppl
    from longrope.runs.search import SearchConfig
    from longrope.train.config import FinetuneConfig
    from longrope.train.loop import _Trainer

    model, data = str(tiny / "model"), str(unpinned)
    heldout = _heldout_names(unpinned, HELDOUT_FRACTION)
    # the folder discriminates: another share would hold out other documents
    assert 0 < len(heldout) < N_DOCS and _heldout_names(unpinned, 0.3) != heldout
    plan = SimpleNamespace(length=2 * L, baselines={})
    in_process = SimpleNamespace(model=None, tokenizer=None, bos_id=1)
    factors = _factor_file(tmp_path, tiny / "model")
    draws = {}

    search_cfg = SearchConfig(model=model, data=data, output=str(tmp_path / "search"), target_length=2 * L)
    unchecked = SimpleNamespace(model_sha256=None, data_digest=None)  # the digests a search started with: not asked here
    draws["search"] = _draw(monkeypatch, lambda: search_run.heldout_report(search_cfg, plan, None, in_process, unchecked))
    draws["eval ppl"] = _draw(monkeypatch, lambda: run_ppl(
        PplConfig(model=model, data=data, lengths=(2 * L,), output=str(tmp_path / "ppl"), quiet=True)))
    draws["eval passkey --data"] = _draw(monkeypatch, lambda: run_passkey(
        PasskeyConfig(model=model, data=data, lengths=(8 * L,), trials=1, output=str(tmp_path / "pk"), quiet=True)))
    finetune_cfg = FinetuneConfig(model=model, factors=str(factors), data=data, output=str(tmp_path / "ft"))
    draws["finetune"] = _draw(monkeypatch, lambda: _Trainer(finetune_cfg, None).set_up())
    demo_cfg = demo.DemoConfig(domains=("books",))
    demo_ctx = SimpleNamespace(config=demo_cfg, target=2 * L, lengths=[2 * L], notes=[], say=lambda m: None)
    corpora = {demo_cfg.domains[0]: TokenCorpus.open(data)}
    draws["demo"] = _draw(monkeypatch, lambda: demo._select_windows(demo_ctx, corpora))

    # the pipeline: a search and a fine-tuning stage with default settings, and the compare stage
    def stage(run: str, settings: dict) -> tuple:
        ctx = pipeline.StageContext(name=run, run=run, plan={"model": model}, entry={}, settings=settings,
                                    folder=tmp_path / f"stage-{run}", running=True, quiet=True, say=lambda m: None)
        return pipeline.STAGES[run], ctx

    search_stage, ctx = stage("search", {"data": data, "target_length": 2 * L})
    staged_search = search_stage.settings(ctx)
    draws["pipeline search stage"] = _draw(
        monkeypatch, lambda: search_run.heldout_report(staged_search, plan, None, in_process, unchecked))
    finetune_stage, ctx = stage("finetune", {"data": data, "factors": str(factors)})
    staged_finetune = finetune_stage.settings(ctx)
    draws["pipeline finetune stage"] = _draw(monkeypatch, lambda: _Trainer(staged_finetune, None).set_up())
    compare_stage, compare_ctx = stage("compare", {"data": data, "ratios": ["2x"],
                                                   "methods": {"pi": {"model": model, "factors": {"2x": "pi"}}}})
    draws["pipeline compare stage"] = _draw(
        monkeypatch, lambda: compare_stage.run(compare_stage.settings(compare_ctx), compare_ctx))

    for command, (fraction, documents) in draws.items():
        assert fraction == HELDOUT_FRACTION, f"{command} holds out a share of {fraction}"
        assert documents and set(documents) <= heldout, f"{command} drew {documents}, held out: {sorted(heldout)}"
    # what fine-tuning refuses is the whole held-out set
    assert set(draws["finetune"][1]) == heldout == set(draws["pipeline finetune stage"][1])
    # a saved config without the field (an old run folder) gets the same default
    assert config_from_dict(SearchConfig, {"model": model, "data": data, "output": "o", "target_length": 64}
                            ).heldout_fraction == HELDOUT_FRACTION


def test_every_default_and_check_is_the_shared_one():
    """The field defaults and the function defaults are the constant; every config refuses a share
    outside [0, 1] with the same message."""
    from longrope.data import document_role, document_roles, sample_documents
    from longrope.errors import ConfigError, UserError
    from longrope.evaluate.windows import select_windows
    from longrope.runs.compare import CompareConfig
    from longrope.runs.evaluate import PasskeyConfig, PplConfig
    from longrope.runs.search import SearchConfig
    from longrope.search.objective import ObjectiveSpec
    from longrope.train.config import FinetuneConfig
    from longrope.train.data import training_documents

    for cls in (SearchConfig, PplConfig, PasskeyConfig, FinetuneConfig, ObjectiveSpec, CompareConfig):
        field = {f.name: f for f in dataclasses.fields(cls)}["heldout_fraction"]
        assert field.default == HELDOUT_FRACTION, cls.__name__
    for fn in (select_windows, sample_documents, document_role, document_roles, training_documents):
        assert inspect.signature(fn).parameters["heldout_fraction"].default == HELDOUT_FRACTION, fn.__name__

    base = {"model": "m", "data": "d", "output": "o"}
    makers = {
        "search": lambda v: SearchConfig(**base, target_length=64, heldout_fraction=v),
        "eval ppl": lambda v: PplConfig(**base, lengths=(64,), heldout_fraction=v),
        "eval passkey": lambda v: PasskeyConfig(**{**base, "data": "d"}, lengths=(64,), heldout_fraction=v),
        "finetune": lambda v: FinetuneConfig(**base, factors="f", heldout_fraction=v),
    }
    for command, make in makers.items():
        with pytest.raises(ConfigError) as err:
            make(1.5)
        assert str(err.value) == "heldout_fraction must be in [0, 1], got 1.5", command
        assert make(0.25).heldout_fraction == 0.25
    with pytest.raises(ConfigError, match=r"^heldout_fraction must be in \[0, 1\], got 1.5$"):
        CompareConfig(data="d", ratios=("1x",), methods={"m": {"model": "m", "factors": {}}}, heldout_fraction=1.5)
    with pytest.raises(UserError, match=r"heldout_fraction must be in \[0, 1\], got -0.1"):
        document_role("doc", -0.1)
