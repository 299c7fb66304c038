"""``longrope demo``: configuration errors, and smoke runs that check every output.

The smoke runs use a budget of seconds (target 2×L, lengths L and 2L, one window, three full
evaluations, one passkey trial): they check the files, not the numbers.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from longrope.cli import main
from longrope.errors import ConfigError, UserError
from longrope.options import field_flags
from longrope.runs.demo import METHODS, DemoConfig, default_lengths

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# -- pure pieces ---------------------------------------------------------------------------------
def test_default_lengths_is_the_issue_grid():
    assert default_lengths(256, 2048) == [256, 512, 1024, 2048, 4096]
    # a target that is not a power-of-two multiple is kept, with its stretch point
    assert default_lengths(8192, 32768) == [8192, 16384, 32768, 65536]
    assert default_lengths(256, 600) == [256, 512, 600, 1200]


@pytest.mark.parametrize(
    ("kwargs", "flag"),
    [
        ({"samples": 0}, "--samples"),
        ({"search_samples": 0}, "--search-samples"),
        ({"passkey_trials": -1}, "--passkey-trials"),
        ({"max_seconds": -1}, "--max-seconds"),
        ({"max_evals": -2}, "--max-evals"),
        ({"target_length": 1}, "--target-length"),
        ({"lengths": (1, 512)}, "--lengths"),
        ({"passkey_depths": (0.5, 1.5)}, "--passkey-depths"),
        ({"strategy": "random"}, "--strategy"),
        ({"domains": ("books", "code")}, "--domains"),
        ({"domains": ()}, "--domains"),
    ],
)
def test_config_errors_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        DemoConfig(**kwargs)
    assert flag in err.value.render(field_flags(DemoConfig).get)


def test_zero_budgets_mean_no_limit():
    cfg = DemoConfig(max_seconds=0, max_evals=0)
    assert cfg.max_seconds is None and cfg.max_evals is None


def test_a_demo_recorded_with_budget_seconds_reads_as_max_seconds():
    """Demos recorded before the time budget took the search's spelling (max_seconds) rerun with their budget."""
    from longrope.options import config_from_dict
    from longrope.runs.demo import SPEC

    for old, new in ((None, None), (60.0, 60.0)):
        cfg = config_from_dict(DemoConfig, SPEC.recorded({"budget_seconds": old, "max_evals": 3.0}))
        assert cfg.max_seconds == new and cfg.max_evals == 3.0


def test_out_folder_that_holds_files_is_refused(tmp_path, demo_model_dir):
    (tmp_path / "keep.txt").write_text("x")
    from longrope.runs.demo import run

    with pytest.raises(UserError, match="--output"):
        run(DemoConfig(model=str(demo_model_dir), output=str(tmp_path), quiet=True))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_model_with_its_own_scaling_is_said_to_be_the_row_none(tmp_path, demo_model_dir):
    """demo labelled a model's own scaling (a Phi-3-128k's, a yarn config's) 'none' without a word, where eval says
    'none' is the model as it loads, not the unscaled model (battery 26a): one wording, runs.evaluate.none_note."""
    import shutil

    from longrope.runs.demo import _setup

    folder = tmp_path / "yarn-model"
    shutil.copytree(demo_model_dir, folder)
    config = json.loads((folder / "config.json").read_text())
    L = config["max_position_embeddings"]
    config.update(max_position_embeddings=2 * L, rope_scaling={"rope_type": "yarn", "factor": 2.0,
                                                               "original_max_position_embeddings": L})
    config.pop("rope_parameters", None)
    (folder / "config.json").write_text(json.dumps(config))
    said: list[str] = []
    ctx = _setup(DemoConfig(model=str(folder), output=str(tmp_path / "out"), quiet=True), said.append)
    try:
        assert any("carries its own RoPE scaling (yarn): 'none' is the model as it loads" in n for n in ctx.notes)
    finally:
        ctx.folder.abandon()
        ctx.folder.close()


# -- smoke runs ----------------------------------------------------------------------------------
def _read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def check_run_folder(run: Path, *, target: int, lengths: list[int], depths: list[float], trials: int,
                     domains: tuple[str, ...] = ("books", "maths")) -> dict:
    """Every file the demo promises exists and is well-formed; returns summary.json."""
    from longrope.rope import FactorSet

    summary = json.loads((run / "summary.json").read_text())
    assert summary["domain"] == domains[0] and list(summary["domains"]) == list(domains)
    assert summary["domains"][domains[0]]["heldout_ppl"] == summary["heldout_ppl"]
    for dom, d in summary["domains"].items():
        assert set(d["heldout_ppl"]) == set(METHODS) and all(v > 1.0 for v in d["heldout_ppl"].values()), dom
        assert d["longrope_vs_best_baseline"] == pytest.approx(d["heldout_ppl"]["longrope"]
                                                               / d["heldout_ppl"][d["best_baseline"]])
    assert summary["target_length"] == target
    assert summary["lengths"] == lengths
    assert set(summary["heldout_ppl"]) == set(METHODS)
    for m, v in summary["heldout_ppl"].items():
        assert isinstance(v, float) and v > 1.0, (m, v)
        assert v == summary["ppl_vs_length"][m][str(target)]
    assert summary["best_baseline"] in ("pi", "ntk", "yarn")
    ratio = summary["heldout_ppl"]["longrope"] / summary["heldout_ppl"][summary["best_baseline"]]
    assert summary["longrope_vs_best_baseline"] == pytest.approx(ratio)
    assert summary["goal"]["met"] == (ratio <= 0.90)
    assert set(summary["passkey_accuracy"]) == set(METHODS)
    assert all(0.0 <= a <= 1.0 for a in summary["passkey_accuracy"].values())
    # retrieval: greedy accuracy with its interval and the teacher-forced answer NLL of the same keys, and a
    # verdict for every method but the reference (the best closed form at the target)
    for m, p in summary["passkey"].items():
        assert p["accuracy"] == summary["passkey_accuracy"][m] and p["keys"] == trials * len(depths)
        assert 0.0 <= p["ci95"][0] <= p["accuracy"] <= p["ci95"][1] <= 1.0 and p["answer_nll"] >= 0.0
    assert set(summary["verdicts"]) == set(METHODS) - {summary["best_baseline"]}
    from longrope.search.objective import default_fitness

    s = summary["search"]
    assert s["fitness"] == default_fitness(s["strategy"]) and s["keys"] == s["search_windows"]
    assert summary["search"]["full_evals"] >= 1.0

    config = json.loads((run / "run.json").read_text())
    assert config["status"] == "done"
    assert config["resolved"]["target_length"] == target and config["resolved"]["lengths"] == lengths
    held = config["documents"]["heldout"]
    search = set(config["documents"]["search"]["ids"])
    assert list(held) == list(domains) and search and all(held[d][str(n)] for d in domains for n in lengths)
    # the search never saw a held-out document (ids are "<file>.txt", "@offset" after the first window)
    held_ids = [i for by_len in held.values() for ids in by_len.values() for i in ids]

    def doc(doc_id: str) -> str:
        return doc_id.split("@")[0].split("/")[-1]

    from longrope.embedded import document_paths

    # search windows from every domain's search documents (interleaved), never from held-out ones
    assert {doc(i) for i in search} <= {p.name for d in domains for p in document_paths("search", d)}
    if len(search) >= len(domains):
        assert all({doc(i) for i in search} & {p.name for p in document_paths("search", d)} for d in domains)
    assert {doc(i) for i in held_ids} <= {p.name for p in document_paths("heldout")}
    assert not {doc(i) for i in search} & {doc(i) for i in held_ids}
    for dom in domains:  # each domain's windows come from its own documents
        names = {p.name for p in document_paths("heldout", dom)}
        assert all(doc(i) in names for ids in held[dom].values() for i in ids), dom

    ppl = json.loads((run / "ppl_vs_length.json").read_text())
    assert {(r["domain"], r["factors"], r["length"]) for r in ppl["results"]} == {
        (d, m, n) for d in domains for m in METHODS for n in lengths}
    rows = _read_csv(run / "ppl_vs_length.csv")
    assert len(rows) == len(domains) * len(METHODS) * len(lengths)
    assert all(float(r["ppl"]) > 1.0 and int(r["n_tokens"]) > 0 and r["domain"] in domains for r in rows)

    pk = json.loads((run / "passkey.json").read_text())
    assert [r["factors"] for r in pk["results"]] == list(METHODS)
    rows = _read_csv(run / "passkey.csv")
    assert len(rows) == len(METHODS) * len(depths)
    assert all(int(r["length"]) == target and int(r["trials"]) == trials for r in rows)

    for name in ("ppl_vs_length.png", "passkey.png", "factors.png", *[f"passkey_{m}.png" for m in METHODS],
                 *[f"ppl_vs_length_{d}.png" for d in domains[1:]]):
        assert (run / name).read_bytes()[:8] == PNG_MAGIC, name

    searched = FactorSet.load(run / "factors.json")
    assert searched.max_position_embeddings == target and searched.method == "longrope"
    for m in ("pi", "ntk", "yarn"):
        fs = FactorSet.load(run / f"factors_{m}.json")
        assert fs.max_position_embeddings == target and fs.rotary_dim == searched.rotary_dim
    history = [json.loads(line) for line in (run / "search_history.jsonl").read_text().splitlines()]
    assert history and all("factors" in h and "fitness" in h for h in history)
    assert (run / "table.md").read_text().count("\n| ") == len(domains) * (len(METHODS) + 1)
    return summary


def _smoke(capsys, tmp_path, model: str, L: int, *extra: str, domains: tuple[str, ...] = ("books", "maths")) -> dict:
    target, lengths, depths = 2 * L, [L, 2 * L], [0.5]
    run = tmp_path / "run"
    rc = main(["demo", "--model", model, "--target-length", str(target), "--lengths", f"{L},{2 * L}",
               "--samples", "1", "--search-samples", "2", "--max-evals", "3", "--budget-seconds", "60",
               "--passkey-trials", "1", "--passkey-depths", "0.5", "--device", "cpu", "--out", str(run), "--domains", ",".join(domains), *extra])
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert out.out.rstrip("\n").splitlines()[-1] == str(run)
    assert "longrope" in out.out and "search:" in out.err  # the table on stdout, progress on stderr
    return check_run_folder(run, target=target, lengths=lengths, depths=depths, trials=1, domains=domains)


def test_demo_smoke_on_a_model_folder(capsys, tmp_path, demo_model_dir):
    _smoke(capsys, tmp_path, str(demo_model_dir), 128)  # the fixture model's L (tests/runs/conftest.py)


def test_demo_smoke_on_the_embedded_model(capsys, tmp_path):
    """The main job on the shipped tiny model (trained at L = 256), with a budget of seconds."""
    _smoke(capsys, tmp_path, "tiny", 256)


def test_demo_smoke_with_the_longrope2_needle_fitness(capsys, tmp_path, demo_model_dir):
    summary = _smoke(capsys, tmp_path, str(demo_model_dir), 128, "--strategy", "longrope2", domains=("books",))
    assert summary["search"]["strategy"] == "longrope2" and summary["search"]["fitness"] == "needle"


def test_a_model_without_a_tokenizer_is_refused_before_its_weights_load(tmp_path, monkeypatch, capsys):
    """The demo needs the tokenizer (it tokenizes the shipped books and plants pass keys): its absence is one line,
    found with the tokenizer files alone, before any weights load and before a run folder appears."""
    import shutil

    import longrope.models
    import longrope.models.loading
    from longrope.cli import main
    from longrope.embedded import TINY_MODEL_DIR

    model = tmp_path / "model"
    model.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(TINY_MODEL_DIR / name, model / name)

    def no_weights(*args, **kwargs):
        raise AssertionError("the weights were loaded")

    monkeypatch.setattr(longrope.models, "load_model", no_weights)
    monkeypatch.setattr(longrope.models.loading, "load_model", no_weights)
    assert main(["demo", "--model", str(model), "-o", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "has no tokenizer" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "out").exists()


def test_a_demo_started_in_the_same_second_as_another_gets_its_own_default_folder(tmp_path, monkeypatch):
    """Two demos started in one folder in the same second both chose runs/demo-<stamp> (the folder appears when a
    demo finishes); the one that finished second was refused after its work. A name another demo is making (its
    staged folder beside it) is taken."""
    from datetime import datetime

    from longrope.io import sibling_prefix
    from longrope.runs import demo

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(demo, "datetime", Frozen)
    monkeypatch.chdir(tmp_path)
    first = demo._default_folder()
    assert first == str(Path("runs") / "demo-20260102T030405Z")
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / f"{sibling_prefix(first, 'partial-')}4242").mkdir()  # the other demo at work
    assert demo._default_folder() == first + "-2"
