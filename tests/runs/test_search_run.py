"""``longrope search`` end to end on a tiny random Llama (d = 16 → 8 factors, L = 32) and a small
shard folder of random tokens: outputs, modes, resume and bad input. Seconds, not minutes."""

from __future__ import annotations

import json

import numpy as np
import pytest

from longrope.cli import main
from tests.runs.run_helpers import L

TARGET = 128
KNOBS = ["--population", "6", "--parents", "3", "--mutations", "2", "--crossovers", "2", "--iterations", "2",
         "--samples", "2", "--heldout-samples", "2", "--quiet", "--initial", "6"]


def _search(tiny, out, *extra):
    # the loop's machinery at 128 tokens, too short to plant a pass key: the perplexity fitness, unless a test
    # names its fitness or strategy (the joint fitness has its own tests below, at 256)
    fitness = [] if {"--fitness", "longrope2"} & set(extra) else ["--fitness", "ppl"]
    argv = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "-o", str(out), *KNOBS,
            *fitness, *extra]
    return main(argv)


@pytest.mark.parametrize("strategy", ["paper", "steady"])
def test_search_writes_every_output(tiny, tmp_path, strategy):
    from longrope.rope import FactorSet

    out = tmp_path / strategy
    assert _search(tiny, out, "--target-length", str(TARGET), "--strategy", strategy) == 0
    fs = FactorSet.load(out / "factors.json")
    assert fs.max_position_embeddings == TARGET and fs.original_max_position_embeddings == L
    assert fs.long_factor.shape == (8,) and np.all(np.diff(fs.long_factor) >= 0)
    assert np.all(fs.long_factor >= 1.0) and np.all(fs.long_factor <= 1.25 * TARGET / L + 1e-9)
    hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert hist and all("fitness" in h and "factors" in h for h in hist)
    report = json.loads((out / "summary.json").read_text())
    assert set(report["heldout"]["ppl"]) == {"searched", "pi", "ntk", "yarn"}
    assert report["search"]["best_ppl"] == pytest.approx(min(np.exp(h["fitness"]) for h in hist if h["full"]))
    # ours searches the attention temperature; the paper keeps LongRoPE's formula (None)
    m = report["search"]["attention_factor"]
    assert (m is None) == (strategy == "paper")
    assert fs.attention_factor == m
    config = json.loads((out / "config.json").read_text())
    assert config["command"] == "search" and config["config"]["strategy"] == strategy
    assert json.loads((out / "run.json").read_text())["plan"]["length"] == TARGET
    assert (out / "factors.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # resuming a finished run changes nothing
    before = (out / "factors.json").read_text()
    assert _search(tiny, out, "--target-length", str(TARGET), "--strategy", strategy, "--resume") == 0
    assert (out / "factors.json").read_text() == before


def test_short_progressive_and_longrope2_modes(tiny, tmp_path):
    from longrope.rope import FactorSet

    base = tmp_path / "base"
    assert _search(tiny, base, "--target-length", str(TARGET)) == 0
    # short-factor recovery at the original length: fills short_factor, keeps the long factors
    assert _search(tiny, tmp_path / "short", "--short", "--base-factors", str(base / "factors.json")) == 0
    b, s = FactorSet.load(base / "factors.json"), FactorSet.load(tmp_path / "short" / "factors.json")
    np.testing.assert_array_equal(b.long_factor, s.long_factor)
    assert np.all(s.short_factor >= 1.0) and np.all(s.short_factor <= 2.0)
    # progressive: λ_final = λ_base ⊙ λ'
    assert _search(tiny, tmp_path / "prog", "--target-length", str(2 * TARGET), "--base-factors",
                   str(base / "factors.json")) == 0
    p = FactorSet.load(tmp_path / "prog" / "factors.json")
    rel = np.asarray(p.provenance["relative_factor"])
    np.testing.assert_allclose(p.long_factor, b.long_factor * rel)
    assert p.max_position_embeddings == 2 * TARGET
    # LongRoPE2: needle fitness, λ ≥ s above the searched critical dimension
    # (the passkey prompt needs ~140 tokens with this tokenizer: search at 256)
    assert _search(tiny, tmp_path / "lr2", "--target-length", str(2 * TARGET), "--strategy", "longrope2") == 0
    q = FactorSet.load(tmp_path / "lr2" / "factors.json")
    crit = q.provenance["search"]["critical_dim"]
    assert crit is not None and np.all(q.long_factor[crit:] >= 2 * TARGET / L - 1e-9)
    assert q.provenance["search"]["fitness"] == "needle"


def test_resume_after_kill_matches_uninterrupted(tiny, tmp_path, monkeypatch):
    """Kill (an exception escaping after k evaluations) then --resume: identical factors and history."""
    from longrope.search import objective as obj_mod

    common = ("--target-length", str(TARGET), "--no-report")
    assert _search(tiny, tmp_path / "ref", *common) == 0

    real = obj_mod.PerplexityObjective.__call__
    calls = {"n": 0}

    class Killed(BaseException):
        pass

    def dying(self, factors, start_tokens, docs, attention_factor=None):
        calls["n"] += 1
        if calls["n"] > 7:
            raise Killed()
        return real(self, factors, start_tokens, docs, attention_factor)

    monkeypatch.setattr(obj_mod.PerplexityObjective, "__call__", dying)
    with pytest.raises(Killed):
        _search(tiny, tmp_path / "run", *common)
    monkeypatch.setattr(obj_mod.PerplexityObjective, "__call__", real)
    assert _search(tiny, tmp_path / "run", *common, "--resume") == 0

    def strip(path):
        return [(h["ticket"], h["factors"], h["start_tokens"], h["fitness"])
                for h in map(json.loads, path.read_text().splitlines())]

    assert strip(tmp_path / "run" / "history.jsonl") == strip(tmp_path / "ref" / "history.jsonl")
    assert (tmp_path / "run" / "factors.json").read_text() == (tmp_path / "ref" / "factors.json").read_text()


def test_bad_input_is_one_line(tiny, tmp_path, capsys):
    assert _search(tiny, tmp_path / "a", "--target-length", str(L)) == 2
    assert "must exceed the model's original context 32" in capsys.readouterr().err
    assert _search(tiny, tmp_path / "b", "--target-length", "4096") == 2
    err = capsys.readouterr().err
    assert "only 0 search window(s) of 4096 tokens" in err and len(err.strip().splitlines()) == 1  # before any load
    assert _search(tiny, tmp_path / "c", "--target-length", str(TARGET), "--samples", "9") == 2
    err = capsys.readouterr().err
    assert "only 5 search window(s)" in err and "lower --samples" in err
    assert _search(tiny, tmp_path / "d", "--short") == 2
    assert "--base-factors" in capsys.readouterr().err
    out = tmp_path / "e"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report") == 0
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report") == 2
    assert "add --resume" in capsys.readouterr().err
    assert _search(tiny, out, "--target-length", str(2 * TARGET), "--no-report", "--resume") == 2
    err = capsys.readouterr().err
    assert "--resume refused" in err and "config.target_length: 128 -> 256" in err
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--resume", "--dtype", "bfloat16") == 2
    err = capsys.readouterr().err
    assert "--resume refused" in err and "config.dtype: 'float32' -> 'bfloat16'" in err and len(err.splitlines()) == 1


def test_a_worker_that_fails_on_every_candidate_stops_with_its_error(tiny, tmp_path, monkeypatch, capsys):
    from longrope.search import objective as obj_mod

    def broken(self, factors, start_tokens, docs, attention_factor=None):
        raise RuntimeError("CUDA error: device-side assert triggered")

    monkeypatch.setattr(obj_mod.PerplexityObjective, "__call__", broken)
    assert _search(tiny, tmp_path / "f", "--target-length", str(TARGET)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1  # one line (transformers' own loading bar may precede it)
    assert "RuntimeError: CUDA error: device-side assert triggered" in err[0] and "--resume" in err[0]
    assert (tmp_path / "f" / "checkpoint.json").exists()


def test_a_held_out_report_out_of_memory_after_the_search_says_how_to_finish(tiny, tmp_path, monkeypatch, capsys):
    """Battery 25b: the held-out report ran out of memory under ulimit -v after the whole search had run, and its
    line said only "evaluate shorter lengths", an option search has not; it now says the search is done and that
    --resume --no-report finishes the run."""
    from longrope.errors import UserError
    from longrope.runs import search as search_mod

    def out_of_memory(*args, **kwargs):
        raise UserError("out of memory on cpu evaluating perplexity with factors 'searched' at length 128")

    monkeypatch.setattr(search_mod, "heldout_report", out_of_memory)
    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET)) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(err) == 1 and "--resume --no-report" in err[0] and str(out / "factors.json") in err[0]
    assert _search(tiny, out, "--target-length", str(TARGET), "--resume", "--no-report") == 0
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_config_validation_names_the_field_and_the_flag(tiny, tmp_path):
    from longrope.errors import ConfigError
    from longrope.options import field_flags
    from longrope.runs.search import SearchConfig

    flags = field_flags(SearchConfig).get
    with pytest.raises(ConfigError, match="samples must be an integer in \\[1, ") as err:
        SearchConfig(model="m", data="d", output="o", target_length=64, samples=0)
    assert err.value.render(flags).startswith("--samples must be an integer in [1, ")
    with pytest.raises(ConfigError) as err:
        SearchConfig(model="m", data="d", output="o", target_length=64, workers=2, ray_address="auto")
    assert "only one of --workers, --devices and --ray-address" in err.value.render(flags)
    with pytest.raises(ConfigError, match="strategy must be one of"):
        SearchConfig(model="m", data="d", output="o", target_length=64, strategy="random")
    # --step inf made a grid of NaN factors: found by three failed evaluations, not before (battery 5)
    with pytest.raises(ConfigError, match="step must be a number from 1e-6 to 1e6, got inf"):
        SearchConfig(model="m", data="d", output="o", target_length=64, step=float("inf"))


@pytest.mark.parametrize("flag", ["--base-factors", "--reuse", "--ray-address"])
def test_an_empty_optional_input_is_refused_not_taken_as_unset(tiny, tmp_path, capsys, flag):
    """``--base-factors "$F"`` with F unset ran a first extension search instead of the progressive one asked
    for (and --reuse '' reused nothing, --ray-address '' evaluated in-process) without a word (battery 9b)."""
    out = tmp_path / "run"
    assert _search(tiny, out, "--target-length", str(TARGET), "--max-evals", "1", flag, "") == 2
    err = capsys.readouterr().err.strip()
    assert f"{flag} is empty" in err and len(err.splitlines()) == 1, err
    assert not out.exists()


@pytest.mark.slow
def test_cpu_worker_processes_give_the_same_result_as_in_process(tiny, tmp_path):
    """--workers 2 (spawned processes, each loading the model once) in ordered mode: the paper
    strategy's generations make the result independent of the worker count."""
    common = ("--target-length", str(TARGET), "--strategy", "paper", "--no-report")
    assert _search(tiny, tmp_path / "one", *common) == 0
    assert _search(tiny, tmp_path / "two", *common, "--workers", "2") == 0
    one = (tmp_path / "one" / "factors.json").read_text()
    assert (tmp_path / "two" / "factors.json").read_text() == one


def test_reuse_scores_no_window_twice_and_refuses_other_windows(tiny, tmp_path, capsys):
    """A second search with other racing knobs starts from the first one's window scores: every
    genome the first scored is taken from its cache, the budget counts only new scores, and a
    search whose windows differ (another length, sample count or dtype) is refused in one line."""
    first = tmp_path / "first"
    assert _search(tiny, first, "--target-length", str(TARGET), "--max-evals", "4", "--no-report") == 0
    old = json.loads((first / "checkpoint.json").read_text())["cache"]
    second = tmp_path / "second"
    assert _search(tiny, second, "--target-length", str(TARGET), "--max-evals", "3", "--no-report",
                   "--race-rank", "1", "--reuse", str(first)) == 0
    hist = [json.loads(line) for line in (second / "history.jsonl").read_text().splitlines()]
    ckpt = json.loads((second / "checkpoint.json").read_text())
    reused = sum(len(s) for _, s in old)
    assert ckpt["reused_doc_evals"] == reused
    scores = {json.dumps(g): s for g, s in ckpt["cache"]}
    for g, s in old:  # the reused scores are kept as they were
        assert {d: v for d, v in scores[json.dumps(g)].items() if d in s} == s
    computed = sum(len(h["scored"]) for h in hist)
    assert computed == sum(len(s) for s in scores.values()) - reused
    assert any(not h["scored"] for h in hist) and any(h["scored"] for h in hist)
    summary = json.loads((second / "summary.json").read_text())["search"]
    assert summary["reused_doc_evals"] == reused and summary["full_evals"] == pytest.approx(computed / 2)
    assert summary["full_evals"] < 3 + 1  # the budget counted only new scores (plus one in flight)
    assert summary["best_ppl"] <= min(np.exp(h["fitness"]) for h in
                                      map(json.loads, (first / "history.jsonl").read_text().splitlines()) if h["full"])
    capsys.readouterr()
    for extra in (["--target-length", str(2 * TARGET)], ["--target-length", str(TARGET), "--samples", "1"],
                  ["--target-length", str(TARGET), "--dtype", "bfloat16"]):
        assert _search(tiny, tmp_path / "bad", *extra, "--reuse", str(first)) == 2
        err = capsys.readouterr().err.strip()
        assert "--reuse" in err and "mean something else" in err and len(err.splitlines()) == 1
        assert err.endswith("; give the same model, data and settings as that search, or drop --reuse"), err  # 27c
        assert not (tmp_path / "bad").exists()
    assert _search(tiny, tmp_path / "bad2", "--target-length", str(TARGET), "--reuse", str(tmp_path)) == 2
    assert "not a search run folder" in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "config.json").write_text((first / "config.json").read_text())
    for text in ("[]", json.dumps({**json.loads((first / "checkpoint.json").read_text()), "cache": {"x": 1}})):
        (broken / "checkpoint.json").write_text(text)
        assert _search(tiny, tmp_path / "bad3", "--target-length", str(TARGET), "--reuse", str(broken)) == 2
        err = capsys.readouterr().err.strip()
        assert "not a search run folder" in err and len(err.splitlines()) == 1 and not (tmp_path / "bad3").exists()


def test_reuse_compares_the_base_factors_by_content(tiny, tmp_path, capsys):
    """Progressive scores depend on the base factor file's contents: the same file elsewhere is
    reusable, a changed file at the same path is not."""
    import shutil

    base = tmp_path / "base"
    assert _search(tiny, base, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    first_base = tmp_path / "base.json"
    shutil.copy(base / "factors.json", first_base)
    prog = ["--target-length", str(2 * TARGET), "--max-evals", "2", "--no-report"]
    assert _search(tiny, tmp_path / "p1", *prog, "--base-factors", str(first_base)) == 0
    moved = tmp_path / "moved.json"
    shutil.copy(first_base, moved)
    assert _search(tiny, tmp_path / "p2", *prog, "--base-factors", str(moved), "--reuse", str(tmp_path / "p1")) == 0
    from longrope.rope import FactorSet

    fs = FactorSet.load(first_base)
    FactorSet.from_dict({**fs.to_dict(), "long_factor": [f * 1.01 for f in fs.long_factor]}).save(first_base)
    capsys.readouterr()
    assert _search(tiny, tmp_path / "p3", *prog, "--base-factors", str(first_base),
                   "--reuse", str(tmp_path / "p1")) == 2
    assert "base_factors:" in capsys.readouterr().err


def test_a_resume_knows_the_base_factors_by_the_factors_not_the_files_bytes(tiny, tmp_path, capsys):
    """The base factor file was fingerprinted by its bytes: the same factors saved again (other spacing, another
    provenance) were refused on --resume, unlike a fine-tuning resume, which compares the factor set (battery
    9b). The factors decide; a run recorded with the bytes' digest still resumes with the same bytes."""
    import hashlib

    from longrope.rope import FactorSet

    base = tmp_path / "base"
    assert _search(tiny, base, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    fs = FactorSet.load(base / "factors.json")
    prog, out = ["--target-length", str(2 * TARGET), "--no-report"], tmp_path / "prog"
    assert _search(tiny, out, *prog, "--max-evals", "1", "--base-factors", str(base / "factors.json")) == 0
    again = tmp_path / "again.json"
    again.write_text(json.dumps(fs.to_dict(), separators=(",", ":")))  # the same factors, other bytes
    assert _search(tiny, out, *prog, "--max-evals", "2", "--base-factors", str(again), "--resume") == 0
    FactorSet.from_dict({**fs.to_dict(), "long_factor": [f * 1.01 for f in fs.long_factor]}).save(again)
    capsys.readouterr()
    assert _search(tiny, out, *prog, "--max-evals", "3", "--base-factors", str(again), "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "the base factor file holds other factors" in err and len(err.splitlines()) == 1, err
    ckpt = json.loads((out / "checkpoint.json").read_text())  # as an older longrope recorded it
    ckpt["fingerprint"].pop("base_factors_digest")
    ckpt["fingerprint"]["base_factors_sha256"] = hashlib.sha256((base / "factors.json").read_bytes()).hexdigest()
    (out / "checkpoint.json").write_text(json.dumps(ckpt))
    assert _search(tiny, out, *prog, "--max-evals", "3", "--base-factors", str(base / "factors.json"),
                   "--resume") == 0


def test_too_few_windows_names_the_held_out_share(tiny, tmp_path, capsys):
    """Battery 8: --heldout-fraction 1 left no search window, and the message named --samples, the length and
    --windows-per-doc, not the share that caused it; it names --heldout-fraction too, with its value."""
    assert _search(tiny, tmp_path / "s", "--target-length", str(TARGET), "--samples", "100000",
                   "--heldout-fraction", "0.75") == 2
    err = capsys.readouterr().err
    assert "lower --heldout-fraction (now 0.75)" in err and len(err.strip().splitlines()) == 1


def test_base_factors_may_be_a_search_run_folder(tiny, tmp_path):
    """Battery 8: --base-factors RUN (a search run folder, read as its factors.json like --factors) stopped with
    'Is a directory (RUN)': the fingerprint hashed the path itself. It hashes the file the factors are read
    from, so the folder and its factors.json are the same base (the folder's run resumes with the file)."""
    base = tmp_path / "base"
    assert _search(tiny, base, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    prog = ["--target-length", str(2 * TARGET), "--no-report"]
    assert _search(tiny, tmp_path / "p", *prog, "--max-evals", "2", "--base-factors", str(base)) == 0
    assert _search(tiny, tmp_path / "p", *prog, "--max-evals", "3", "--resume",
                   "--base-factors", str(base / "factors.json")) == 0
    assert len((tmp_path / "p" / "history.jsonl").read_text().splitlines()) == 3


def test_joint_fitness_is_the_default_and_reports_what_it_is_made_of(tiny, tmp_path):
    """The default fitness plants a key in every window: history and summary carry the document perplexity
    and the answer NLL beside the joint score, and the score is their weighted sum."""
    from longrope.search.objective import DEFAULT_RETRIEVAL_WEIGHT

    out = tmp_path / "joint"
    argv = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "-o", str(out), *KNOBS,
            "--target-length", str(2 * TARGET), "--no-report"]
    assert main(argv) == 0
    config = json.loads((out / "config.json").read_text())["config"]
    assert config["fitness"] == "joint" and config["retrieval_weight"] == DEFAULT_RETRIEVAL_WEIGHT
    s = json.loads((out / "summary.json").read_text())["search"]
    assert s["keys"] == 2 and 0 <= s["answer_exact"] <= 2
    # score = mean document NLL + w x mean answer NLL (windows of equal length)
    assert np.log(s["best_score"]) == pytest.approx(np.log(s["doc_ppl"]) + DEFAULT_RETRIEVAL_WEIGHT * s["answer_nll"],
                                                    rel=1e-9)
    assert s["best_ppl"] == s["doc_ppl"]  # a perplexity field holds a perplexity, the document's
    hist = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert all(len(h["parts"]) == 5 for h in hist)


def test_joint_fitness_bad_input_is_refused_before_any_load(tiny, tmp_path, capsys):
    # 128 tokens cannot hold the passkey prompt with this tokenizer: one line naming both ways out
    base = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), *KNOBS]
    assert main([*base, "-o", str(tmp_path / "a"), "--target-length", str(TARGET)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--fitness ppl" in err and "--target-length" in err
    assert not (tmp_path / "a").exists()
    # a weight belongs to the joint and constrained fitnesses only
    assert main([*base, "-o", str(tmp_path / "b"), "--target-length", str(2 * TARGET), "--fitness", "ppl",
                 "--retrieval-weight", "0.5"]) == 2
    assert "joint and constrained fitnesses only" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "c"), "--target-length", str(2 * TARGET), "--retrieval-weight", "-1"]) == 2
    assert "[0, 100]" in capsys.readouterr().err
    # the constrained fitness's reference is YaRN's extension: a recovery search has none
    assert main([*base, "-o", str(tmp_path / "d"), "--short", "--base-factors", str(tmp_path / "f.json"),
                 "--fitness", "constrained"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--fitness: the constrained fitness" in err and "extension searches only" in err


def test_resume_of_a_search_recorded_before_the_joint_fitness(tiny, tmp_path, capsys):
    """A checkpoint whose config left the fitness unset (it meant ppl) resumes with --fitness ppl, and the
    new default is refused with the change named."""
    out = tmp_path / "old"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report") == 0
    ckpt = json.loads((out / "checkpoint.json").read_text())
    ckpt["fingerprint"]["config"]["fitness"] = None  # as written before the joint fitness
    del ckpt["fingerprint"]["config"]["retrieval_weight"]
    (out / "checkpoint.json").write_text(json.dumps(ckpt))
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--resume") == 0
    argv = ["search", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "-o", str(out), *KNOBS,
            "--target-length", str(2 * TARGET), "--no-report", "--resume"]
    assert main(argv) == 2
    assert "config.fitness: 'ppl' -> 'joint'" in capsys.readouterr().err
@pytest.mark.parametrize("resume", [False, True])
def test_a_second_process_into_the_folder_is_refused(tiny, tmp_path, capsys, resume):
    from longrope.runs.folder import FolderLock

    out = tmp_path / "run"
    out.mkdir()
    with FolderLock.acquire(out, "search"):  # what a search running in the folder holds
        assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", *(["--resume"] if resume else [])) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "is in use by another longrope process" in err[0], err
    assert sorted(p.name for p in out.iterdir()) == [".lock"]  # nothing written


def test_resume_is_bound_to_the_shards_content_not_their_path(tiny, tmp_path, capsys):
    """The same shards moved elsewhere resume; the same tokens at the same path with other search/held-out
    roles (other windows, so not the same search) are refused."""
    import shutil

    from longrope.data import TokenCorpus
    from longrope.data.shards import ShardWriter, write_meta

    data = tmp_path / "data"
    shutil.copytree(tiny / "data", data)
    out = tmp_path / "run"
    argv = ["search", "--model", str(tiny / "model"), "--data", str(data), "-o", str(out), *KNOBS,
            "--target-length", str(TARGET), "--no-report", "--fitness", "ppl"]
    assert main(argv) == 0
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)  # by content, not by path: the same shards elsewhere resume
    assert main([*argv, "--data", str(moved), "--resume"]) == 0, capsys.readouterr().err
    old = TokenCorpus.open(data)
    docs = [(old.names[i], np.asarray(old.tokens(i)), "heldout" if old.pinned_role(i) == "search" else "search")
            for i in range(len(old))]
    meta = {k: v for k, v in old.meta.items() if k in ("format", "version", "dtype", "tokenizer")}
    shutil.rmtree(data)
    w = ShardWriter(data, np.dtype("<u2"))
    for name, ids, role in docs:
        w.add(name, ids, role)
    write_meta(data, {**meta, "n_docs": w.n_docs, "n_tokens": w.n_tokens, **w.finish()})
    capsys.readouterr()
    assert main([*argv, "--resume"]) == 2
    err = capsys.readouterr().err
    assert "--resume refused" in err and len(err.strip().splitlines()) == 1, err
    # said in words, not as the digests' hex (battery 19)
    assert "shard folder holds other tokens or documents than the run started with (its index differ" in err, err
    assert "data.index" not in err and "data.shards" not in err, err


def test_a_needle_search_scored_on_the_old_answer_is_not_resumed(tiny, tmp_path, capsys):
    """Window scores of the needle fitness made when the answer was " K" (before its full stop was scored)
    mean something else: --resume is refused with the change named."""
    out = tmp_path / "lr2"
    args = ["--target-length", str(2 * TARGET), "--strategy", "longrope2", "--no-report"]
    assert _search(tiny, out, *args) == 0
    ckpt = json.loads((out / "checkpoint.json").read_text())
    assert ckpt["fingerprint"]["answer"] == " {key}."
    del ckpt["fingerprint"]["answer"]  # as written before the answer protocol was recorded
    ckpt["fingerprint"]["config"]["fitness"] = None
    (out / "checkpoint.json").write_text(json.dumps(ckpt))
    capsys.readouterr()
    assert _search(tiny, out, *args, "--resume") == 2
    err = capsys.readouterr().err
    assert "answer: ' {key}' -> ' {key}.'" in err and len(err.strip().splitlines()) == 1
def test_reuse_judges_the_scores_by_the_checkpoint_not_by_an_edited_config(tiny, tmp_path, capsys):
    """The reused scores were computed under what the source checkpoint's fingerprint says: config.json edited to
    another dtype, fitness or weight never lets float32 (or joint) scores into a bfloat16 (or ppl) search."""
    first = tmp_path / "first"
    assert _search(tiny, first, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    record = json.loads((first / "config.json").read_text())
    for edit, extra in (({"dtype": "bfloat16"}, ["--dtype", "bfloat16"]),  # (the first search is a ppl one)
                        ({"fitness": "joint", "retrieval_weight": 0.5}, ["--fitness", "joint", "--retrieval-weight",
                                                                         "0.5"])):
        (first / "config.json").write_text(json.dumps({**record, "config": {**record["config"], **edit}}))
        capsys.readouterr()
        assert _search(tiny, tmp_path / "bad", "--target-length", str(TARGET), *extra, "--reuse", str(first)) == 2
        err = capsys.readouterr().err.strip()
        assert "mean something else" in err and len(err.splitlines()) == 1, err
        assert not (tmp_path / "bad").exists()


def test_a_resume_does_not_need_the_reuse_source_by_its_path(tiny, tmp_path, capsys):
    """The reused scores are in the checkpoint from the start: a resume without --reuse, or naming its moved
    source, was refused ("config.reuse: 'first' -> None") while the old name of a deleted source passed
    (battery 9b). Both resume, the record keeps the source; --reuse given to resume a run that started without
    one (it would be ignored) is refused in one line."""
    first, second = tmp_path / "first", tmp_path / "second"
    assert _search(tiny, first, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    assert _search(tiny, second, "--target-length", str(TARGET), "--max-evals", "2", "--no-report",
                   "--reuse", str(first)) == 0
    moved = first.rename(tmp_path / "moved")
    assert _search(tiny, second, "--target-length", str(TARGET), "--max-evals", "3", "--no-report", "--resume") == 0
    assert json.loads((second / "config.json").read_text())["config"]["reuse"] == str(first)
    assert _search(tiny, second, "--target-length", str(TARGET), "--max-evals", "4", "--no-report", "--resume",
                   "--reuse", str(moved)) == 0
    capsys.readouterr()
    assert _search(tiny, moved, "--target-length", str(TARGET), "--max-evals", "3", "--no-report", "--resume",
                   "--reuse", str(second)) == 2
    err = capsys.readouterr().err.strip()
    assert "started without it" in err and "drop --reuse" in err and len(err.splitlines()) == 1, err


def test_a_resume_knows_a_local_model_by_its_content_not_its_path(tiny, tmp_path, capsys):
    """The model was compared by its path as well as its digest: a model folder moved or copied elsewhere (a
    pipeline folder moved with its fine-tuned model) could not be resumed at all (battery 9b). A copy resumes;
    other content is refused."""
    import shutil

    out, copy = tmp_path / "run", tmp_path / "elsewhere" / "model"
    assert _search(tiny, out, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    shutil.copytree(tiny / "model", copy)
    argv = ["search", "--model", str(copy), "--data", str(tiny / "data"), "-o", str(out), *KNOBS, "--fitness", "ppl",
            "--target-length", str(TARGET), "--no-report", "--resume"]
    assert main([*argv, "--max-evals", "3"]) == 0
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    capsys.readouterr()
    assert main([*argv, "--max-evals", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.sha256" in err and "config.model" not in err and len(err.splitlines()) == 1, err


def test_a_checkpoint_naming_its_inputs_by_path_is_refused_as_older_not_as_another_configuration(tiny, tmp_path,
                                                                                                  capsys):
    """A search checkpoint written before fingerprints held the inputs' contents (its config names the model and
    the shard folder; no dtype, no index digests: longrope of 12-06 00:59 and before) was refused on --resume as
    'a different configuration' listing eight internal keys, told to 'use the same settings' (the same command
    line), and --reuse of it said its scores 'mean something else'. Both now say what it is and what to do."""
    out = tmp_path / "old"
    assert _search(tiny, out, "--target-length", str(TARGET), "--max-evals", "2", "--no-report") == 0
    ckpt = json.loads((out / "checkpoint.json").read_text())
    fp = ckpt["fingerprint"]
    fp["model"] = str(tiny / "model")  # as the older longrope recorded it
    fp["config"].update(model=str(tiny / "model"), data=str(tiny / "data"), base_factors=None)
    del fp["config"]["dtype"], fp["data"]["index"], fp["data"]["names"]
    (out / "checkpoint.json").write_text(json.dumps(ckpt))
    capsys.readouterr()
    assert _search(tiny, out, "--target-length", str(TARGET), "--max-evals", "3", "--no-report", "--resume") == 2
    err = capsys.readouterr().err.strip()
    assert "older longrope" in err and f"delete {out} to start it over" in err and "different configuration" not in err, err
    assert len(err.splitlines()) == 1
    assert _search(tiny, tmp_path / "new", "--target-length", str(TARGET), "--max-evals", "2", "--no-report",
                   "--reuse", str(out)) == 2
    err = capsys.readouterr().err.strip()
    assert "older longrope" in err and "without --reuse" in err and len(err.splitlines()) == 1, err
    assert not (tmp_path / "new").exists()


def test_critical_floor_installs_lambda_at_least_s_from_the_critical_pair(tiny, tmp_path, capsys):
    from longrope.rope import FactorSet
    from longrope.rope.critical import theoretical_critical_dim
    from longrope.search.objective import CandidateMapper

    mapper = CandidateMapper("long", 10000.0, L, TARGET, floor_from=5)
    lam = mapper.factor_set(np.linspace(1.0, 2.0, 8), 0).long_factor
    np.testing.assert_allclose(lam[:5], np.linspace(1.0, 2.0, 8)[:5])
    assert np.all(lam[5:] >= TARGET / L) and lam[7] == TARGET / L  # raised, never lowered
    out = tmp_path / "floor"
    assert _search(tiny, out, "--target-length", str(TARGET), "--critical-floor", "--no-report") == 0
    fs = FactorSet.load(out / "factors.json")
    crit = theoretical_critical_dim(fs.rope_theta, fs.rotary_dim, L)
    assert crit < 8 and np.all(fs.long_factor[crit:] >= TARGET / L - 1e-12)
    assert json.loads((out / "config.json").read_text())["config"]["critical_floor"] is True
    capsys.readouterr()
    assert _search(tiny, tmp_path / "x", "--short", "--base-factors", str(out / "factors.json"),
                   "--critical-floor") == 2
    assert "--critical-floor applies to a first extension search" in capsys.readouterr().err


@pytest.mark.parametrize("kw,named", [({"strategy": "paper"}, "strategy"), ({"strategy": "longrope2"}, "strategy"),
                                      ({"short": True, "base_factors": "f.json"}, "short")])
def test_fixed_attention_where_no_temperature_is_searched_is_refused(kw, named):
    """--fixed-attention with paper, longrope2 or --short was accepted and changed nothing (battery 8)."""
    from longrope.errors import ConfigError
    from longrope.runs.search import SearchConfig

    with pytest.raises(ConfigError) as e:
        SearchConfig(model="tiny", data="d", output="o", target_length=512, fixed_attention=True, **kw)
    assert e.value.fields == ("fixed_attention", named) and "drop" in str(e.value)
    assert SearchConfig(model="tiny", data="d", output="o", target_length=512, fixed_attention=True).fixed_attention


def test_a_run_recorded_with_an_inert_fixed_attention_reruns_and_resumes(tiny, tmp_path, capsys):
    """A paper search recorded with --fixed-attention (accepted, and a no-op, before it was refused) could never
    be rerun, taken by --config or resumed: the recorded flag was refused and no flag turns it off (battery 10)."""
    out = tmp_path / "old"
    assert _search(tiny, out, "--strategy", "paper", "--target-length", str(TARGET), "--no-report") == 0
    record = json.loads((out / "config.json").read_text())
    record["config"]["fixed_attention"] = True  # as battery 8's runs recorded it
    (out / "config.json").write_text(json.dumps(record))
    ckpt = json.loads((out / "checkpoint.json").read_text())
    ckpt["fingerprint"]["config"]["fixed_attention"] = True
    (out / "checkpoint.json").write_text(json.dumps(ckpt))
    assert main(["rerun", str(out), "-o", str(tmp_path / "again")]) == 0
    assert main(["search", "--config", str(out), "--resume", "-o", str(out)]) == 0
    assert _search(tiny, out, "--strategy", "paper", "--target-length", str(TARGET), "--no-report", "--resume") == 0
    assert "fixed" not in capsys.readouterr().err


def test_a_resume_or_reuse_with_the_same_settings_spelled_otherwise_is_the_same_run(tiny, tmp_path, capsys):
    """battery 11b: ``--resume --dtype fp32`` of a float32 run ('float32' -> 'fp32'), ``--reuse`` of it with
    ``--dtype FP32``, and ``--resume --min-factor 1.0`` (the unset bound spelled out: None -> 1.0) were refused:
    the precision is compared, not its spelling, and the space's settings through the space they resolve to."""
    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "2") == 0
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "3", "--resume",
                   "--dtype", "fp32", "--min-factor", "1.0") == 0
    assert _search(tiny, tmp_path / "r", "--target-length", str(TARGET), "--no-report", "--max-evals", "1",
                   "--reuse", str(out), "--dtype", "FP32") == 0
    capsys.readouterr()
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "4", "--resume",
                   "--min-factor", "1.01") == 2  # another space: still refused
    assert "space.lower" in capsys.readouterr().err
    # a short search's unset length is L: --target-length L spells the same run (also for a run recorded before
    # the fingerprint held the resolved length)
    short = tmp_path / "short"
    assert _search(tiny, short, "--short", "--base-factors", str(out / "factors.json"), "--no-report",
                   "--max-evals", "1") == 0
    ckpt = json.loads((short / "checkpoint.json").read_text())
    ckpt["fingerprint"]["config"]["target_length"] = None  # as recorded before
    (short / "checkpoint.json").write_text(json.dumps(ckpt))
    assert _search(tiny, short, "--short", "--base-factors", str(out / "factors.json"), "--no-report",
                   "--max-evals", "2", "--resume", "--target-length", str(L)) == 0


def test_a_space_setting_the_strategy_or_mode_ignores_is_refused_and_dropped_from_records(tiny, tmp_path, capsys):
    """battery 11b: longrope2 ignored --min-factor and --start-tokens, a short search --start-tokens (rc0, a
    search other than asked); they are refused, and a record holding one still reruns (read as unset)."""
    from longrope.errors import ConfigError
    from longrope.runs.search import SearchConfig

    for kw, named in (({"strategy": "longrope2", "min_factor": 1.5}, "min_factor"),
                      ({"strategy": "longrope2", "start_tokens": (0, 4)}, "start_tokens"),
                      ({"short": True, "base_factors": "f.json", "start_tokens": (0, 4)}, "start_tokens")):
        with pytest.raises(ConfigError, match="drop") as e:
            SearchConfig(model="tiny", data="d", output="o", target_length=512, **kw)
        assert e.value.fields[0] == named
    # a progressive longrope2 search (base_factors) searches the extension space: both are used there
    assert SearchConfig(model="tiny", data="d", output="o", target_length=512, strategy="longrope2",
                        base_factors="f.json", min_factor=1.5, start_tokens=(0, 4)).min_factor == 1.5
    out = tmp_path / "old"
    assert _search(tiny, out, "--strategy", "longrope2", "--fitness", "ppl", "--target-length", str(TARGET),
                   "--no-report", "--max-evals", "1") == 0
    record = json.loads((out / "config.json").read_text())
    record["config"]["min_factor"] = 1.5  # as such a run recorded it
    (out / "config.json").write_text(json.dumps(record))
    assert main(["rerun", str(out), "-o", str(tmp_path / "again")]) == 0
    assert main(["search", "--config", str(out), "--resume", "-o", str(out), "--max-evals", "2"]) == 0


def test_a_resume_of_a_search_whose_checkpoint_was_deleted_names_the_lost_checkpoint(tiny, tmp_path, capsys):
    """battery 11b: with checkpoint.json deleted beside the run's other files, --resume said "nothing to resume
    (no checkpoint.json); run without --resume" and the fresh start "already holds a search run; add --resume":
    each message sent the user to the other."""
    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "1") == 0
    (out / "checkpoint.json").unlink()
    capsys.readouterr()
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--resume") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "its checkpoint.json, the state a search continues from, is missing" in err[0], err
    assert "run without --resume" not in err[0]


def test_reuse_of_another_command_s_run_folder_says_what_it_is(tmp_path):
    """``--reuse PIPELINE_FOLDER`` said only "is not a search run folder (no readable checkpoint.json and
    config.json)" (battery 12b): the refusal names the folder's command, and for a pipeline where its searches are."""
    from longrope.errors import ConfigError
    from longrope.runs.search import read_reuse_source

    for command in ("pipeline", "finetune"):
        folder = tmp_path / command
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"format": "longrope-run/1", "command": command, "config": {}}))
        with pytest.raises(ConfigError) as info:
            read_reuse_source(folder)
        assert f"is a {command} run folder, not a search run folder" in str(info.value)
        assert ("stages" in str(info.value)) == (command == "pipeline")


def test_a_search_resumed_with_another_worker_count_records_the_evaluator_its_order_comes_from(tiny, tmp_path):
    """A search started with --workers 2 and resumed in process continues the 2-slot trajectory (the checkpoint's
    lag), but config.json recorded the resume's workers 0, so ``rerun`` / ``--config`` ran a 1-slot search to other
    factors (battery 12b). A resume records the evaluator of the start it continues (its own argv is in run.json)."""
    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "1") == 0
    doc = json.loads((out / "config.json").read_text())
    doc["config"]["workers"] = 2  # as a start with two workers records it (the lag is the checkpoint's business)
    (out / "config.json").write_text(json.dumps(doc))
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "2", "--resume") == 0
    assert json.loads((out / "config.json").read_text())["config"]["workers"] == 2


def test_a_checkpoint_of_another_version_is_refused_before_the_model_loads(tiny, tmp_path, capsys, monkeypatch):
    """A checkpoint.json whose version was hand-edited to 1e400 was refused only once the model had loaded and the
    loop started, and version true (== 1) was resumed (battery 19): search --resume checks the format first."""
    import longrope.search.backends as backends

    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "1") == 0
    text = (out / "checkpoint.json").read_text()

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the checkpoint was checked")

    monkeypatch.setattr(backends, "make_evaluator", no_model)
    for version in ("1e400", "true", '"1"'):
        (out / "checkpoint.json").write_text(text.replace('"version": 1', f'"version": {version}', 1))
        capsys.readouterr()
        assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--resume") == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is not a version-1 longrope search checkpoint" in err[0], err


def test_a_checkpoint_s_counters_are_checked_before_the_model_loads(tiny, tmp_path, capsys, monkeypatch):
    """A checkpoint.json with "elapsed": -5 (or a next_ticket, history or lag no search writes) was refused only
    after the model had loaded (battery 19): its plain state is checked with its format, before the model."""
    import json

    import longrope.search.backends as backends

    out = tmp_path / "s"
    assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--max-evals", "1") == 0
    saved = json.loads((out / "checkpoint.json").read_text())

    def no_model(*args, **kwargs):
        raise AssertionError("the model was loaded before the checkpoint was checked")

    monkeypatch.setattr(backends, "make_evaluator", no_model)
    for key, value in (("elapsed", -5), ("elapsed", "1"), ("next_ticket", "x"), ("history", 5), ("lag", 0),
                       ("pending", [[1]]), ("reused_doc_evals", True)):
        (out / "checkpoint.json").write_text(json.dumps({**saved, key: value}))
        capsys.readouterr()
        assert _search(tiny, out, "--target-length", str(TARGET), "--no-report", "--resume") == 2, key
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "is malformed" in err[0], (key, err)


def test_the_held_out_line_says_what_its_perplexities_rest_on(tiny, tmp_path, capsys):
    """search printed 'held-out ppl: searched 32.4762, pi 44.6003, ...' without the length or the tokens those
    perplexities rest on (the record holds both) (battery 20c); it counted the windows as documents ('3 documents'
    of two held-out documents, one giving two windows; battery 30a)."""
    assert _search(tiny, tmp_path / "s", "--target-length", str(TARGET), "--max-evals", "2") == 0
    line = next(x for x in capsys.readouterr().err.splitlines() if x.startswith("held-out ppl"))
    held = json.loads((tmp_path / "s" / "summary.json").read_text())["heldout"]
    assert line.startswith(f"held-out ppl at {TARGET} tokens ({len(held['docs'])} windows, "
                           f"{held['scored_tokens_per_set']:,} tokens scored per set): searched "), line


def test_a_model_or_shard_folder_replaced_while_a_search_runs_is_refused_where_it_is_loaded_again(tiny, tmp_path,
                                                                                                 capsys, monkeypatch):
    """Battery 23b: the held-out report opened the shard folder again (and, after worker processes, loaded the model
    again), as a worker restarted after a crash did, with no check that they were still the ones the search started
    with: a model replaced at its path mid-search gave a report of the searched factors on another model (held-out
    perplexity 2369 instead of 23). Each place they are loaded again now compares them with the start's digests."""
    import shutil

    from longrope.errors import UserError
    from longrope.io import file_sha256
    from longrope.models.loading import model_digest
    from longrope.search import loop
    from longrope.search.objective import ObjectiveSpec

    model, data = tmp_path / "model", tmp_path / "data"
    shutil.copytree(tiny / "model", model)
    shutil.copytree(tiny / "data", data)

    def rebuild_data():  # the same tokens under other names: a shard folder rebuilt with other content
        names = data / "names.jsonl"
        names.write_text("".join(json.dumps(f"other{k}") + "\n" for k in range(len(names.read_text().splitlines()))))
        meta = json.loads((data / "meta.json").read_text())
        meta["names"] = {**meta["names"], "bytes": names.stat().st_size, "sha256": file_sha256(names)}
        (data / "meta.json").write_text(json.dumps(meta))

    real = loop.run_search

    def then_rebuilt(*a, **k):
        result = real(*a, **k)
        rebuild_data()
        return result

    monkeypatch.setattr(loop, "run_search", then_rebuilt)
    argv = ["search", "--model", str(model), "--data", str(data), "-o", str(tmp_path / "run"), *KNOBS, "--fitness",
            "ppl", "--target-length", str(TARGET)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]  # after the search's own line
    assert f"the shard folder {data} changed while the search ran" in err and "--resume" in err, err
    assert err.startswith("longrope search: error:") and not (tmp_path / "run" / "summary.json").exists()

    # a worker (re)started after the model was replaced at its path
    from longrope.runs.search import SearchConfig, make_plan

    plan = make_plan(SearchConfig(model=str(model), data=str(data), output=str(tmp_path / "x"), target_length=TARGET))
    spec = ObjectiveSpec(model=str(model), data=str(data), length=TARGET, n_docs=2, mapper=plan.mapper,
                         model_sha256=model_digest(model))
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "rms_norm_eps": 1e-3}))
    with pytest.raises(UserError, match=f"the model {model} changed while the search ran"):
        spec("cpu")


def test_a_split_without_documents_is_refused_with_a_fix_that_helps(tiny, tmp_path, capsys):
    """battery 28b: a shard folder whose every document was pinned to heldout was refused with "holds only 0 search
    window(s) ...: lower --samples or the length, raise --windows-per-doc, lower --heldout-fraction (now 0.5), or add
    longer documents", none of which helps (a pinned document keeps its role whatever the fraction)."""
    import shutil

    from longrope.data import TokenCorpus
    from longrope.data.shards import ShardWriter, write_meta

    src = TokenCorpus.open(tiny / "data")
    data = tmp_path / "heldout-only"
    w = ShardWriter(data, src.dtype)
    for i, name in enumerate(src.names):
        w.add(name, np.asarray(src.tokens(i)), "heldout")
    write_meta(data, {**{k: v for k, v in src.meta.items() if k not in ("shards", "index", "names")}, **w.finish()})
    argv = ["search", "--model", str(tiny / "model"), "--data", str(data), "-o", str(tmp_path / "s"), *KNOBS,
            "--fitness", "ppl", "--target-length", str(TARGET)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "no search documents among 10: every document was pinned" in err and "10 to heldout" in err, err
    assert "--heldout-fraction moves none of them" in err and "search=PATH" in err and "--split" not in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "s").exists()
    shutil.rmtree(data)
