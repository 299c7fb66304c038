"""``longrope.runs.evaluate``: what the eval commands say about the sets they compare."""

from __future__ import annotations

import json
import shutil

import pytest

from longrope.cli import main


def test_none_on_a_model_with_its_own_scaling_is_said_to_be_that_model(tiny, tmp_path, capsys):
    """On a folder ``longrope export`` wrote, 'none' (documented as unscaled) is the model as it loads, with the
    scaling in its config: its row equalled the searched set's, under the name of the unscaled model (battery 5)."""
    scaled = tmp_path / "scaled"
    shutil.copytree(tiny / "model", scaled)
    config = json.loads((scaled / "config.json").read_text())
    config["rope_scaling"] = {"rope_type": "yarn", "factor": 2.0, "original_max_position_embeddings": 32}
    config["max_position_embeddings"] = 64
    (scaled / "config.json").write_text(json.dumps(config))
    for model, said in ((scaled, True), (tiny / "model", False)):
        assert main(["eval", "ppl", "--model", str(model), "--data", str(tiny / "data"), "--lengths", "32",
                     "--samples", "1", "--quiet", "-o", str(tmp_path / f"ppl-{said}")]) == 0
        err = capsys.readouterr().err
        assert ("carries its own RoPE scaling (yarn): 'none' is the model as it loads" in err) is said, err


def test_a_factor_file_named_in_bytes_that_are_not_utf8_gets_a_printable_set_name(tmp_path):
    """battery 9a: eval ppl --factors $'y\\xff.json' ran the whole evaluation, then writing ppl.csv was a
    UnicodeEncodeError traceback (the set's name held a lone surrogate) and the run folder was lost."""
    import os

    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.evaluate import factor_sets

    info = read_rope_info("tiny")
    path = tmp_path / os.fsdecode(b"y\xff.json")
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(path)
    names = [n for n, _ in factor_sets((str(path),), skip_none=False, info=info, target=512)]
    assert names == ["none", "y\\xff"] and all(n.encode("utf-8") for n in names)


def test_the_records_name_the_factor_file_each_set_came_from(tmp_path, capsys):
    """summary.json's "factors" said "file": null for every factors.json given (only an HF config.json or a CSV
    carried its path), so a record did not say which file a row measured (battery 20c)."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    path = tmp_path / "yarn.json"
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(path)
    out = tmp_path / "pk"
    assert main(["eval", "passkey", "--model", "tiny", "--lengths", "256", "--trials", "1", "--depths", "0.5",
                 "--mode", "needle", "--factors", str(path), "--quiet", "-o", str(out)]) == 0, capsys.readouterr().err
    records = json.loads((out / "summary.json").read_text())["factors"]
    assert [(r["name"], r["file"]) for r in records] == [("none", None), ("yarn", str(path))]


def test_a_perplexity_that_is_not_finite_is_said_in_words_and_written_as_json_null(tmp_path, monkeypatch, capsys):
    """A model overflowing in float16 printed 'ppl nan' as if it were a number and wrote NaN into summary.json and
    ppl.json, which strict JSON readers (jq, JSON.parse) refuse (battery 20c)."""
    import longrope.evaluate.suite as suite
    real = suite.evaluate_perplexity

    def overflowed(*a, **k):
        import dataclasses

        return dataclasses.replace(real(*a, **k), nll_sum=float("nan"))

    monkeypatch.setattr(suite, "evaluate_perplexity", overflowed)
    shards = tmp_path / "shards"
    from longrope.embedded import CORPUS_DIR as corpus

    assert main(["tokenize", "--tokenizer", "tiny", "--input", f"heldout={corpus}/heldout", "-o", str(shards),
                 "--quiet"]) == 0
    out = tmp_path / "ppl"
    assert main(["eval", "ppl", "--model", "tiny", "--data", str(shards), "--lengths", "64", "--samples", "1",
                 "--skip-none", "--factors", "none", "--quiet", "-o", str(out)]) == 0
    printed = capsys.readouterr()
    assert "nan" not in printed.out + printed.err and "ppl not finite" in printed.out, printed
    for name in ("summary.json", "ppl.json"):
        text = (out / name).read_text()
        assert "NaN" not in text
        json.loads(text, parse_constant=lambda c, name=name: pytest.fail(f"{name} holds {c}"))
    # the passkey's answer NLL, null in the record: printed in words (was a TypeError traceback)
    from longrope.runs.evaluate import PASSKEY_SPEC

    record = {"accuracy": {"none": 0.0}, "reference": "none", "retrieval": {"none": {"256": {
        "keys": 1, "correct": 0, "accuracy": 0.0, "ci95": [0.0, 0.79], "answer_nll": None}}}}
    assert "answer NLL not finite" in PASSKEY_SPEC.render(record)


def test_one_factor_set_given_twice_is_refused_before_any_work(tmp_path, capsys):
    """eval --factors y.json --factors ./y.json measured one set twice, as rows 'y' and 'y-2' (battery 20 open
    item); the same for 'none' twice. Every eval command (ppl, passkey, ruler) refuses it by its config's check."""
    from longrope.runs.evaluate import PasskeyConfig

    (tmp_path / "y.json").write_text("{}")  # never read: refused before
    for factors in ([str(tmp_path / "y.json"), str(tmp_path / "." / "y.json")], ["none", "none"]):
        argv = ["eval", "passkey", "--model", "tiny", "--lengths", "256", "-o", str(tmp_path / "pk")]
        for f in factors:
            argv += ["--factors", f]
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--factors" in err and "give each factor set once" in err, err
        with pytest.raises(ValueError, match="give each factor set once"):
            PasskeyConfig(model="tiny", lengths=[256], output="pk", factors=tuple(factors))
    assert not (tmp_path / "pk").exists()


def test_a_factor_file_named_with_a_control_character_gets_a_one_line_set_name(tmp_path):
    """A factor file named 'a\\tb.json' printed its tab raw in the eval table (its row a column wider) and kept it in
    the records' names (battery 21a open item): a set's name escapes control characters as it escapes non-UTF-8
    bytes (data.sources.printable)."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.evaluate import factor_sets

    info = read_rope_info("tiny")
    path = tmp_path / "a\tb.json"
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(path)
    assert [n for n, _ in factor_sets((str(path),), skip_none=True, info=info, target=512)] == ["a\\tb"]


def test_sliding_mode_with_several_windows_per_document_is_refused_before_any_work(tmp_path, capsys):
    """battery 28b: eval ppl --stride 128 --windows-per-doc 2 cut each document into windows of the longest length,
    over which the stride had nothing to slide: each was scored as in truncate mode and recorded as sliding ("each
    document scored over its sliding windows"). One window per document (the default) slides over it whole."""
    from longrope.runs.evaluate import PplConfig

    argv = ["eval", "ppl", "--model", "tiny", "--data", str(tmp_path / "shards"), "--lengths", "256", "--stride",
            "128", "--windows-per-doc", "2", "-o", str(tmp_path / "ppl")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--windows-per-doc" in err and "--stride" in err and "drop" in err, err
    assert not (tmp_path / "ppl").exists()
    base = {"model": "tiny", "data": "shards", "lengths": [256], "output": "ppl"}
    with pytest.raises(ValueError, match="nothing to slide"):
        PplConfig(**base, stride=128, windows_per_doc=2)
    PplConfig(**base, stride=128)
    PplConfig(**base, windows_per_doc=2)


def test_eval_ppl_and_passkey_run_twice_into_one_folder_replace_their_own_outputs(tiny, tmp_path, capsys):
    """A rerun into the same folder replaces a finished run that holds nothing but that run's records and outputs;
    the names of those outputs were written down twice (the writers' literals and PPL_OUTPUTS / PASSKEY_OUTPUTS), so
    a new output file would have made every rerun refuse its own file (battery 29e): the writers now name their
    files from the same constants, and what a run writes is exactly what its rerun replaces."""
    import fnmatch

    from longrope.evaluate.suite import PASSKEY_OUTPUTS, PPL_OUTPUTS
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.folder import CONFIG_FILE, RESULT_FILE, RUN_FILE

    info = read_rope_info("tiny")
    yarn = tmp_path / "yarn.json"
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(yarn)
    commands = {
        PPL_OUTPUTS: ["eval", "ppl", "--model", str(tiny / "model"), "--data", str(tiny / "data"), "--lengths", "32",
                      "--samples", "1", "--quiet", "-o", str(tmp_path / "ppl")],
        PASSKEY_OUTPUTS: ["eval", "passkey", "--model", "tiny", "--lengths", "256", "--trials", "1", "--depths", "0.5",
                          "--mode", "needle", "--factors", str(yarn), "--quiet", "-o", str(tmp_path / "passkey")],
    }
    for outputs, argv in commands.items():
        for _ in range(2):
            assert main(argv) == 0, capsys.readouterr().err
        written = {p.name for p in (tmp_path / argv[-1]).iterdir()} - {CONFIG_FILE, RUN_FILE, RESULT_FILE}
        assert written and all(any(fnmatch.fnmatchcase(n, p) for p in outputs) for n in written), written
        assert all(fnmatch.filter(written, p) for p in outputs), (written, outputs)
    assert {p.name for p in (tmp_path / "passkey").glob("passkey_*.png")} == {"passkey_none.png", "passkey_yarn.png"}


def test_passkey_verdicts_compare_with_the_yarn_set_whatever_its_file_is_named(tmp_path, capsys):
    """eval passkey on the demo's factors_yarn.json compared every set with 'none': the default reference was only a
    set named yarn (battery 30a). A YaRN set under another name is the reference now; one named yarn comes first."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.evaluate import default_reference

    info = read_rope_info("tiny")
    made = {name: make_baseline(method, rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                                target_length=512) for name, method in (("pi", "pi"), ("factors_yarn", "yarn"))}
    for name, fs in made.items():
        fs.save(tmp_path / f"{name}.json")
    out = tmp_path / "pk"
    assert main(["eval", "passkey", "--model", "tiny", "--lengths", "256", "--trials", "1", "--depths", "0.5",
                 "--mode", "needle", "--factors", str(tmp_path / "pi.json"), str(tmp_path / "factors_yarn.json"),
                 "--quiet", "-o", str(out)]) == 0, capsys.readouterr().err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["reference"] == "factors_yarn" and set(summary["verdicts"]) == {"none", "pi"}
    sets = [("none", None), ("pi", made["pi"]), ("factors_yarn", made["factors_yarn"])]
    assert default_reference(sets + [("yarn", made["factors_yarn"])]) == "yarn"
    assert default_reference(sets[:2]) == "none"
