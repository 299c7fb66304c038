"""``longrope.runs.compare``: the comparison's settings and when a measured cell still stands (the cells
themselves are measured through the pipeline in test_pipeline.py)."""

from __future__ import annotations

import dataclasses

from longrope.runs.compare import CompareConfig, _stale_cell, passkey_protocol
from longrope.runs.evaluate import PasskeyConfig

METHODS = {"yarn": {"model": "tiny", "factors": {"2x": "yarn@2x"}}}


def _config(**kw) -> CompareConfig:
    return CompareConfig(data="d", methods=METHODS, ratios=("2x",), **kw)


def test_the_passkey_protocol_and_the_machine_settings_default_as_in_the_commands():
    """The compare stage had its own passkey defaults (4 keys per depth, greedy only) and its own device
    (cpu) and dtype; they are now the shared groups' (issue 24: one default per field)."""
    compare = {f.name: f.default for f in dataclasses.fields(CompareConfig)}
    passkey = {f.name: f.default for f in dataclasses.fields(PasskeyConfig)}
    assert compare["passkey_trials"] == passkey["trials"]
    assert compare["passkey_depths"] == passkey["depths"]
    assert compare["passkey_mode"] == passkey["mode"]
    assert compare["device"] == passkey["device"] and compare["dtype"] == passkey["dtype"]


def test_a_cell_measured_by_another_passkey_protocol_is_measured_again():
    config = _config()
    digests = {"yarn@2x": "d"}
    cell = {"method": "yarn", "ratio": "2x", "model": "tiny", "factors_sha256": "d", "passkey": 0.5,
            "passkey_protocol": passkey_protocol(config)}
    assert _stale_cell(cell, METHODS, digests, True, None, passkey_protocol(config)) is None
    other = _config(passkey_trials=2, passkey_mode="generate")
    assert "passkey protocol" in _stale_cell(cell, METHODS, digests, True, None, passkey_protocol(other))
    # a cell from before cells kept their protocol is taken as it is; a cell without a passkey is asked for one
    legacy = {k: v for k, v in cell.items() if k != "passkey_protocol"}
    assert _stale_cell(legacy, METHODS, digests, True, None, passkey_protocol(other)) is None
    bare = {k: v for k, v in legacy.items() if k != "passkey"}
    assert _stale_cell(bare, METHODS, digests, True, None, passkey_protocol(config)) == "its passkey is asked for"
    assert _stale_cell(bare, METHODS, digests, False, None, None) is None


def test_a_comparison_s_ratios_names_and_goals_are_checked_as_written():
    """battery 20b: "８x" (a full-width digit) and "8x\\n" were ratios, a method named 3 or "" and a model "" were
    taken, a goal bound NaN, "nan*" or "-1*" another cell was a goal never met, 10**400 an OverflowError, a misspelt
    key beside the bound and two goals of one name were taken, ratio_length(nan) int()'s ValueError."""
    import pytest

    from longrope.errors import UserError
    from longrope.runs.compare import evaluate_goals, ratio_length

    methods = {"ours": {"model": "tiny", "factors": {"2x": "pi@2x"}}, "base": {"model": "tiny", "factors": {"2x": "none"}}}

    def config(**kw):
        return CompareConfig(**{"data": "x", "methods": methods, "ratios": ("2x",), **kw})

    def goal(bound, **kw):
        return ({"name": "g", "value": "heldout_ppl.2x.ours", "at_most": bound, **kw},)

    cases = [(dict(ratios=("２x",), methods={"a": {"model": "tiny", "factors": {"２x": "none"}}}), "not a context ratio"),
             (dict(ratios=("2x\n",), methods={"a": {"model": "tiny", "factors": {"2x\n": "none"}}}), "not a context ratio"),
             (dict(methods={3: methods["ours"]}), "a method's name must be a non-empty string"),
             (dict(methods={"": methods["ours"]}), "a method's name must be a non-empty string"),
             (dict(methods={"a": {"model": "", "factors": {"2x": "none"}}}), "a non-empty string"),
             (dict(goals=goal(float("nan"))), "a goal bound must be a finite number"),
             (dict(goals=goal(10**400)), "a goal bound must be a finite number"),
             (dict(goals=goal("nan*heldout_ppl.2x.base")), "must be a finite number > 0"),
             (dict(goals=goal("-1*heldout_ppl.2x.base")), "must be a finite number > 0"),
             (dict(goals=goal(3, at_lest=2)), r"unknown key\(s\) \['at_lest'\]"),
             (dict(goals=goal(3) * 2), "two goals are named 'g'")]
    for kw, said in cases:
        with pytest.raises(UserError, match=said):
            config(**kw)
    for ratio, length in ((float("nan"), 32), (-2.0, 32), (None, 32), (2.0, "32")):
        with pytest.raises(UserError):
            ratio_length(ratio, length)
    with pytest.raises(UserError, match="needs exactly one of at_most, at_least"):
        evaluate_goals([{"name": "g", "value": "x"}], {})


def test_the_table_gives_the_passkeys_interval_and_what_each_number_rests_on():
    """compare.md (and the table the pipeline prints) gave a passkey accuracy of 20 keys as a bare '0.65' and the
    perplexities without the tokens they rest on (battery 20c)."""
    from longrope.runs.compare import format_table, tables

    cells = {(n, "8x"): {"ppl": p, "n_tokens": 4094, "passkey": a, "passkey_trials": 20, "passkey_ci95": ci}
             for n, p, a, ci in (("none", 50.27, 0.0, [0.0, 0.161]), ("yarn", 20.45, 0.65, [0.433, 0.819]))}
    methods = {n: {"model": "tiny", "factors": {"8x": n}} for n in ("none", "yarn")}
    table = format_table(tables(cells, methods, ["8x"], {"8x": 2048}))
    assert "| yarn | 20.45 | 0.65 [0.43, 0.82] |" in table, table
    assert "4,094 tokens scored" in table and "2,048 tokens per window" in table and "20 seeded keys" in table


def test_a_perplexity_that_overflowed_meets_no_goal():
    """Two perplexities that overflowed (a 16-bit model: inf) met "ours at most yarn" (inf <= inf), with a NaN ratio
    (battery 25c). A non-finite measurement or bound meets no goal, and its ratio is not given."""
    import math

    from longrope.runs.compare import evaluate_goals

    result = {"heldout_ppl": {"8x": {"ours": math.inf, "yarn": math.inf, "pi": 12.0, "nan": math.nan}}}
    goals = [{"name": "a", "value": "heldout_ppl.8x.ours", "at_most": "1.0*heldout_ppl.8x.yarn"},
             {"name": "b", "value": "heldout_ppl.8x.pi", "at_most": "1.0*heldout_ppl.8x.yarn"},
             {"name": "c", "value": "heldout_ppl.8x.ours", "at_least": 5},
             {"name": "d", "value": "heldout_ppl.8x.nan", "at_most": 100}]
    a, b, c, d = evaluate_goals(goals, result)
    assert a["met"] is False and a["ratio_to_reference"] is None
    assert b["met"] is False and c["met"] is False and d["met"] is False
    assert evaluate_goals([{"name": "e", "value": "heldout_ppl.8x.pi", "at_most": 13}], result)[0]["met"] is True


def test_none_of_a_model_with_its_own_rope_scaling_is_noted_as_eval_notes_it(tmp_path, capsys):
    """Battery 27c: 'none' of an exported model (its config carries the factors) measured that scaling, and 'none'
    of its GGUF (whose scaling transformers' reader drops) the unscaled model, the same export 5.75 and 20.5 at 4x,
    without the note eval ppl and demo give."""
    import json

    from longrope.cli import main
    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.embedded import search_texts
    from longrope.models.exporter import export_model
    from longrope.rope import make_baseline

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.txt").write_text(next(iter(search_texts().values()))[:4000], encoding="utf-8")
    tokenize_corpus(load_tokenizer("tiny"), [f"heldout={docs}"], tmp_path / "shards", tokenizer_name="tiny",
                    progress=False)
    from longrope.models.loading import read_rope_info

    info = read_rope_info("tiny")
    make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim, original_length=256,
                  target_length=512).save(tmp_path / "yarn.json")
    export_model("tiny", tmp_path / "yarn.json", tmp_path / "exported")
    methods = {"exported": {"model": str(tmp_path / "exported"), "factors": {"1x": "none"}}}
    plan = {"format": "longrope-pipeline/1", "model": "tiny", "stages": [
        {"name": "cmp", "run": "compare", "data": str(tmp_path / "shards"), "ratios": ["1x"], "samples": 1,
         "passkey_trials": 0, "methods": methods}]}
    (tmp_path / "plan.json").write_text(json.dumps(plan))
    assert main(["pipeline", "--plan", str(tmp_path / "plan.json"), "-o", str(tmp_path / "out")]) == 0
    notes = [line for line in capsys.readouterr().err.splitlines() if line.startswith("note: ")]
    assert len(notes) == 1 and notes[0].startswith(f"note: method exported: {tmp_path / 'exported'} carries its own "
                                                   "RoPE scaling"), notes
    assert notes[0].endswith("'none' is the model as it loads, with that scaling, not the unscaled model")


def test_a_dynamic_ntk_cell_measured_with_another_length_s_set_is_measured_again(tmp_path):
    """The review of battery 27b: compare cells were bound to a factor file's set as written (and a closed form's to
    its name), so a comparison resumed after a dynamic NTK set came to follow the length kept cells measured with the
    set of another length. The digest is now the set applied at the cell's length, a dynamic closed form's too."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline
    from longrope.runs.compare import factor_digests

    info = read_rope_info("tiny")
    dyn = make_baseline("dynamic-ntk", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                        original_length=info.original_max_position_embeddings, target_length=8 * 256)
    dyn.save(tmp_path / "dyn.json")
    methods = {"file": {"model": "tiny", "factors": {"2x": str(tmp_path / "dyn.json"), "8x": str(tmp_path / "dyn.json")}},
               "closed": {"model": "tiny", "factors": {"2x": "dynamic-ntk@8x", "8x": "dynamic-ntk@8x"}},
               "yarn": {"model": "tiny", "factors": {"2x": "yarn@2x"}}}
    digests = factor_digests(methods, ["2x", "8x"])
    assert sorted(digests) == ["closed@2x", "file@2x", "file@8x"]  # a static closed form is bound by its name
    assert digests["file@8x"] == dyn.digest() != digests["file@2x"]  # at the file's own length, its own set
    old = {"method": "file", "ratio": "2x", "model": "tiny", "factors_sha256": dyn.digest()}
    assert _stale_cell(old, methods, digests, False) == "its factors changed"
    assert _stale_cell({**old, "ratio": "8x"}, methods, digests, False) is None
    legacy = {"method": "closed", "ratio": "2x", "model": "tiny", "factors": "dynamic-ntk@8x"}
    assert "before a dynamic NTK set followed the length" in _stale_cell(legacy, methods, digests, False)
    assert _stale_cell({**legacy, "factors_sha256": digests["closed@2x"]}, methods, digests, False) is None
    # at its own ratio a dynamic closed form is the same set in every version: its cell stands (the second review)
    assert "closed@8x" not in digests and _stale_cell({**legacy, "ratio": "8x"}, methods, digests, False) is None
