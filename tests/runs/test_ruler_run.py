"""``longrope eval ruler`` end to end on the embedded tiny model: lm-eval's RULER code in process.

Short lengths (256/512), one fast task (niah_single_1, the repeat haystack), two samples per cell.
lm-eval's RULER code takes ~20 s to import on two cores (it builds its word lists), once per session.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

pytest.importorskip("lm_eval", reason="needs the ruler extra: pip install 'longrope[ruler]'")

from longrope.cli import main  # noqa: E402

TASK = "niah_single_1"


@pytest.fixture(scope="module")
def yarn(tmp_path_factory):
    """A YaRN factor file for the tiny model (L = 256) at 1024, n̂ = 0."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    fs = make_baseline("yarn", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                       original_length=info.original_max_position_embeddings, target_length=1024)
    path = tmp_path_factory.mktemp("ruler") / "yarn.json"
    fs.save(path)
    return path


def _argv(out, yarn, *extra):
    return ["eval", "ruler", "--model", "tiny", "--factors", str(yarn), "--lengths", "256,512", "--tasks", TASK,
            "--samples", "2", "-o", str(out), "--quiet", *extra]


@pytest.fixture(scope="module")
def finished(tmp_path_factory, yarn):
    out = tmp_path_factory.mktemp("ruler-run") / "out"
    assert main(_argv(out, yarn)) == 0
    return out


def test_the_command_writes_the_paper_table_and_every_cell(finished):
    names = {p.name for p in finished.iterdir()}
    assert {"config.json", "run.json", "summary.json", "ruler.json", "ruler.csv", "table.md", "ruler.png",
            "cells.json", "samples"} <= names
    rows = list(csv.DictReader((finished / "ruler.csv").open()))
    assert {(r["factors"], int(r["length"]), r["task"]) for r in rows} == {
        (s, n, TASK) for s in ("none", "yarn") for n in (256, 512)}
    for r in rows:
        acc, lo, hi = float(r["accuracy"]), float(r["ci95_low"]), float(r["ci95_high"])
        assert int(r["n"]) == 2 and 0.0 <= lo <= acc <= hi <= 1.0 and float(r["seconds_per_sample"]) > 0
    table = (finished / "table.md").read_text()
    assert "| Factors | 256 | 512 | Avg |" in table and "| none |" in table and "| yarn |" in table
    assert f"| {TASK} |" in table  # the per-task table
    doc = json.loads((finished / "ruler.json").read_text())
    cells = doc["cells"]
    # every factor set answered the same prompts
    for n in (256, 512):
        assert len({c["samples_sha256"] for c in cells if c["length"] == n}) == 1
    assert all(len(c["scores"]) == len(c["responses"]) == 2 for c in cells)
    run = json.loads((finished / "run.json").read_text())
    assert run["status"] == "done" and run["command"] == "eval ruler"


def test_a_killed_run_keeps_its_cells_and_the_same_command_measures_only_the_rest(tmp_path, yarn, monkeypatch,
                                                                                 capsys):
    import longrope.evaluate.ruler as ruler

    real, calls = ruler.score_cell, []

    def dies_at_the_third(*args, **kwargs):
        calls.append(args[1:4])
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(ruler, "score_cell", dies_at_the_third)
    out = tmp_path / "out"
    assert main(_argv(out, yarn)) == 130
    kept = json.loads((out / "cells.json").read_text())["cells"]
    assert len(kept) == 2 and json.loads((out / "run.json").read_text())["status"] == "interrupted"
    before = {(c["factors"], c["length"]): c["cell"] for c in kept}

    calls.clear()
    monkeypatch.setattr(ruler, "score_cell", lambda *a, **k: (calls.append(a[1:4]), real(*a, **k))[1])
    assert main(_argv(out, yarn)) == 0
    assert len(calls) == 2  # only the missing cells
    after = {(c["factors"], c["length"]): c for c in json.loads((out / "ruler.json").read_text())["cells"]}
    assert len(after) == 4
    for key, cell in before.items():  # measured cells come back unchanged (their timing included)
        assert after[key]["seconds"] == cell["seconds"] and after[key]["responses"] == cell["responses"]
    # --resume says the same; nothing left to measure
    calls.clear()
    assert main(_argv(out, yarn, "--resume")) == 0 and calls == []


def test_a_run_killed_while_it_stores_its_samples_is_continued_by_the_same_command(tmp_path, yarn, monkeypatch):
    """Battery 14c: the samples (and a GGUF's tokenizer) were written into a new run folder before its
    config.json: a run killed then left samples/ alone, and every later run refused the folder ("already
    exists and is not empty", --resume "holds no eval ruler run"). The records now come first."""
    import longrope.runs.ruler as ruler_run
    from longrope.runs.folder import RunFolder

    real = ruler_run.store_samples

    def killed_after(samples, folder):
        real(samples, folder)
        raise KeyboardInterrupt  # the process dies here: none of its clean-up runs

    monkeypatch.setattr(ruler_run, "store_samples", killed_after)
    monkeypatch.setattr(RunFolder, "abandon", RunFolder.close)
    out = tmp_path / "out"
    assert main(_argv(out, yarn)) == 130
    assert (out / "samples").is_dir()
    monkeypatch.undo()
    assert main(_argv(out, yarn)) == 0
    assert json.loads((out / "run.json").read_text())["status"] == "done"


def test_the_tokenizer_a_run_saves_is_as_readable_as_the_rest_of_the_run(tmp_path, yarn, monkeypatch):
    """battery 31a: a GGUF's (or hub id's) tokenizer saved into the run folder kept its scratch folder's 0700 mode:
    the group and others who could read ruler.json could not read the tokenizer/ it names."""
    import longrope.runs.ruler as ruler_run
    from longrope.io import current_umask

    def saved(config, tokenizer, out, scratch):  # as for a model with no tokenizer folder of its own
        tokenizer.save_pretrained(str(scratch))
        return str(scratch), True

    monkeypatch.setattr(ruler_run, "_tokenizer_source", saved)
    out = tmp_path / "out"
    assert main(_argv(out, yarn)) == 0
    assert (out / "tokenizer").stat().st_mode & 0o777 == 0o777 & ~current_umask()


def test_a_task_that_needs_the_hub_is_skipped_with_one_line(finished, yarn, capsys):
    # the same folder: every cell is there, so nothing runs but the skip notice and the outputs
    argv = _argv(finished, yarn)
    argv[argv.index("--tasks") + 1] = f"{TASK},qa_squad"
    assert main(argv) == 0
    err = capsys.readouterr().err
    skips = [ln for ln in err.splitlines() if ln.startswith("skipping")]
    assert len(skips) == 1 and "ruler_qa_squad" in skips[0] and "hub" in skips[0]
    assert json.loads((finished / "summary.json").read_text())["skipped_tasks"]


@pytest.mark.parametrize("change, needle", [
    (["--tasks", "niah_nope"], "--tasks: unknown RULER task 'niah_nope'"),
    (["--lengths", "128"], "--lengths: RULER needs at least 256"),
    (["--tasks", "vt"], "--lengths: 256 tokens is too short for ruler_vt"),
    (["--samples", "501"], "--samples must be between 1 and 500"),
    (["--haystack", "no/such/books"], "--haystack no/such/books: no such file or folder"),
    (["--chat-template", ""], "--chat-template: the tokenizer of --model tiny has no chat template"),
])
def test_bad_input_is_one_line_exit_2_before_the_model_loads(tmp_path, yarn, change, needle, capsys, no_weights):
    out = tmp_path / "out"
    argv = _argv(out, yarn)
    for i in range(0, len(change), 2):
        if not change[i + 1]:  # a switch
            argv.append(change[i])
        elif change[i] in argv:
            argv[argv.index(change[i]) + 1] = change[i + 1]
        else:
            argv += change[i:i + 2]
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if "error:" in ln]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert needle in lines[0], lines[0]
    assert not out.exists()


def test_stock_lm_eval_on_an_export_gives_the_same_numbers(tmp_path, yarn, capsys):
    """``lm_eval`` with ``--model hf --model_args pretrained=EXPORT`` on a folder ``longrope export``
    wrote (n̂ = 0) answers the same samples with the same text and scores as ``eval ruler``. At 512 the
    prompts are past the tiny model's L = 256 from their first token, where stock transformers and
    the patch agree (stock keeps short-factor keys when generation crosses L; the patch re-prefills)."""
    import lm_eval

    from longrope.data.ruler import use_shipped_punkt

    export = tmp_path / "export"
    assert main(["export", "--model", "tiny", "--factors", str(yarn), "-o", str(export)]) == 0
    out = tmp_path / "ours"
    assert main(["eval", "ruler", "--model", "tiny", "--factors", str(yarn), "--skip-none", "--lengths", "512",
                 "--tasks", TASK, "--samples", "2", "-o", str(out), "--quiet"]) == 0
    ours = json.loads((out / "ruler.json").read_text())
    max_length = ours["config"]["hflm_max_length"]
    use_shipped_punkt()  # lm-eval would download punkt_tab otherwise
    res = lm_eval.simple_evaluate(model="hf", model_args=f"pretrained={export},max_length={max_length},dtype=float32",
                                  device="cpu", tasks=[TASK], metadata={"max_seq_lengths": [512]}, limit=2,
                                  bootstrap_iters=0)
    stock = sorted(res["samples"][TASK], key=lambda s: s["doc_id"])
    cell = ours["cells"][0]
    assert [s["filtered_resps"][0] for s in stock] == cell["responses"]
    assert [float(s["512"]) for s in stock] == cell["scores"]
    samples = json.loads((out / "samples" / f"{TASK}-512.json").read_text())["rows"]
    assert [s["doc"]["input"] for s in stock] == [r["input"] for r in samples]


def test_the_help_example_parses():
    import shlex

    from longrope.cli import build_parser
    from longrope.runs.ruler import SPEC

    line = " ".join(ln.strip().rstrip("\\") for ln in SPEC.example.splitlines()[1:])
    args = build_parser().parse_args(shlex.split(line)[1:])
    assert args._spec is SPEC and args.tasks == ("niah_single_1", "vt")


def test_a_model_rebuilt_at_the_same_path_is_measured_again(tmp_path, monkeypatch):
    """Cells are bound to the model's content, not its path: other weights written over the same folder between
    two runs (a fine-tune redone, an export replaced) are scored afresh, never answered from the old cells."""
    import shutil

    from safetensors.torch import load_file, save_file

    import longrope.evaluate.ruler as ruler
    from longrope.embedded import TINY_MODEL_DIR

    model = tmp_path / "model"
    shutil.copytree(TINY_MODEL_DIR, model)
    real, calls = ruler.score_cell, []
    monkeypatch.setattr(ruler, "score_cell", lambda *a, **k: (calls.append(a[1:4]), real(*a, **k))[1])
    argv = ["eval", "ruler", "--model", str(model), "--lengths", "256", "--tasks", TASK, "--samples", "1",
            "-o", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0 and len(calls) == 1
    assert main(argv) == 0 and len(calls) == 1  # the same model: its cell is kept
    weights = next(model.glob("*.safetensors"))
    tensors = load_file(weights)
    save_file({k: (0.5 * v).contiguous() for k, v in tensors.items()}, weights, metadata={"format": "pt"})
    assert main(argv) == 0 and len(calls) == 2


def test_hand_edited_cells_and_samples_are_measured_again_and_planted_pipes_never_block(finished, yarn, tmp_path,
                                                                                       monkeypatch):
    """What a rerun keeps is what was measured: a cell whose score, count or key was edited (or that lost a
    field) is measured again, a samples file whose prompts were edited is made again (the cells measured on the
    originals then still match), and a named pipe where cells.json or a samples file belongs is never
    waited on."""
    import os
    import shutil

    import longrope.evaluate.ruler as ruler

    out = tmp_path / "out"
    shutil.copytree(finished, out)
    doc = json.loads((out / "cells.json").read_text())
    forged = doc["cells"][0]["cell"]
    forged.update(scores=[1.0, 1.0], score_sum=2.0)  # consistent in itself, not what was measured
    doc["cells"][1]["cell"].pop("n")
    doc["cells"][2]["cell"]["task"] = "vt"
    (out / "cells.json").write_text(json.dumps(doc))
    sample_file = out / "samples" / f"{TASK}-512.json"
    samples = json.loads(sample_file.read_text())
    original_rows = samples["rows"]
    samples["rows"] = [{**r, "input": r["input"].replace("the", "THE")} for r in original_rows]
    sample_file.write_text(json.dumps(samples))
    real, calls = ruler.score_cell, []
    monkeypatch.setattr(ruler, "score_cell", lambda *a, **k: (calls.append(a[1:4]), real(*a, **k))[1])
    assert main(_argv(out, yarn)) == 0
    assert len(calls) == 3  # the three edited cells, not the intact one
    assert json.loads(sample_file.read_text())["rows"] == original_rows
    assert (forged["factors"], TASK, forged["length"]) in calls  # the forged score is not what the table shows
    calls.clear()
    (out / "cells.json").unlink()
    os.mkfifo(out / "cells.json")
    (out / "samples" / f"{TASK}-256.json").unlink()
    os.mkfifo(out / "samples" / f"{TASK}-256.json")
    # a pipe where the run writes is refused in one line before any cell, never waited on nor replaced
    # (battery 5: outputs that are devices or pipes are left alone)
    assert main(_argv(out, yarn)) == 2 and calls == []


def test_a_length_too_short_for_a_later_task_is_refused_before_any_sample_is_made(tmp_path, yarn, monkeypatch,
                                                                                  capsys):
    """The default tasks at 512: vt's length check ran when its samples were made, after every task before it
    had made its own (minutes at real lengths) (battery 11a). Every (task, length) is checked first."""
    import longrope.data.ruler as ruler

    monkeypatch.setattr(ruler, "make_samples", lambda *a, **k: pytest.fail("samples were made first"))
    argv = _argv(tmp_path / "r", yarn)
    argv[argv.index(TASK)] = f"{TASK},vt"
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "too short for ruler_vt" in err


def test_samples_far_shorter_than_their_length_are_noted(tmp_path, yarn, monkeypatch, capsys):
    """lm-eval's essay tasks grow their haystack 500 words at a time: at 1024 niah_single_2 made 228-token
    samples, reported under 1024 without a word (battery 13). A cell whose samples are under half its length
    says so."""
    import longrope.data.ruler as ruler

    real = ruler.make_samples

    def short(*a, **k):
        return [{**r, "length": 200} for r in real(*a, **k)]

    monkeypatch.setattr(ruler, "make_samples", short)
    argv = _argv(tmp_path / "r", yarn)
    argv[argv.index("256,512")] = "512"
    assert main(argv) == 0
    assert "take at most 200 tokens" in capsys.readouterr().err


def test_the_printed_table_says_its_unit(finished, capsys):
    """The printed table gave accuracy in % with no unit beside cell lines in fractions ('accuracy 0.50' above
    '50.0'), and without the samples behind each number (battery 20c)."""
    from longrope.runs.ruler import SPEC

    printed = SPEC.render(json.loads((finished / "summary.json").read_text()))
    first = printed.splitlines()[0]
    assert "accuracy in %" in first and "2 samples" in first, printed


def test_a_haystack_changed_between_two_runs_into_one_folder_is_said_before_its_cells_are_measured_again(
        tmp_path, monkeypatch, capsys):
    """The essay haystack's text edited between two runs of the same command: its samples were made again and their
    cells re-measured with no word of why (a rerun that keeps everything is expected to measure nothing). The note
    names the changed input (battery 25c)."""
    import longrope.evaluate.ruler as ruler

    haystack = tmp_path / "hay"
    haystack.mkdir()
    book = next((Path(__file__).resolve().parents[2] / "src/longrope/embedded/assets/corpus/heldout").glob("*.txt"))
    text = book.read_text(encoding="utf-8")
    (haystack / "a.txt").write_text(text[:60_000], encoding="utf-8")
    real, calls = ruler.score_cell, []
    monkeypatch.setattr(ruler, "score_cell", lambda *a, **k: (calls.append(a[1:4]), real(*a, **k))[1])
    argv = ["eval", "ruler", "--model", "tiny", "--lengths", "512", "--tasks", "niah_single_2", "--samples", "1",
            "--haystack", str(haystack), "-o", str(tmp_path / "out"), "--quiet"]
    assert main(argv) == 0 and len(calls) == 1
    capsys.readouterr()
    assert main(argv) == 0 and len(calls) == 1  # nothing changed: nothing measured, nothing said
    assert "made from" not in capsys.readouterr().err
    (haystack / "a.txt").write_text(text[60_000:120_000], encoding="utf-8")
    assert main(argv) == 0 and len(calls) == 2
    err = capsys.readouterr().err
    assert "niah_single_2 samples at 512 tokens were made from another haystack" in err


def test_cells_of_a_dynamic_ntk_file_measured_with_the_file_s_own_set_are_measured_again(tmp_path, monkeypatch):
    """The review of battery 27b: cells were keyed by the factor file as written, so a run folder measured before a
    dynamic NTK set followed the length (the file's 1024-token set applied at 512) kept those cells beside new ones.
    The key is now the set applied at the cell's length: such cells are measured again, then kept."""
    import longrope.evaluate.ruler as ruler
    import longrope.rope.baselines as baselines
    from longrope.models.loading import read_rope_info
    from longrope.rope import make_baseline

    info = read_rope_info("tiny")
    dyn = tmp_path / "dyn.json"
    make_baseline("dynamic-ntk", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                  original_length=info.original_max_position_embeddings, target_length=1024).save(dyn)
    real, calls = ruler.score_cell, []
    monkeypatch.setattr(ruler, "score_cell", lambda *a, **k: (calls.append(a[1:4]), real(*a, **k))[1])
    argv = ["eval", "ruler", "--model", "tiny", "--factors", str(dyn), "--skip-none", "--lengths", "512",
            "--tasks", TASK, "--samples", "1", "-o", str(tmp_path / "out"), "--quiet"]
    with monkeypatch.context() as old:
        old.setattr(baselines, "at_length", lambda fs, length: fs)  # as before: the file's set at every length
        assert main(argv) == 0 and len(calls) == 1
    assert main(argv) == 0 and len(calls) == 2  # measured again with the set of 512 tokens
    assert main(argv) == 0 and len(calls) == 2  # and kept from then on


def test_samples_stored_under_a_gguf_tokenizer_s_hash_of_before_are_kept(tmp_path):
    """The review of battery 27c: a GGUF's vocabulary hash no longer counts its [PAD{id}] slots, so RULER samples
    stored under the hash of before were made again (lm-eval's import and generation) with the note that they came
    from another tokenizer, which was not so. Every reader of a recorded hash takes both
    (data.shards.recorded_vocab_hashes)."""
    import json

    from longrope.data.ruler import samples_sha256
    from longrope.data.shards import recorded_vocab_hashes
    from longrope.models.loading import load_tokenizer_of
    from longrope.runs.ruler import SAMPLES_DIR, RulerConfig, _all_samples, _samples_key

    tok = load_tokenizer_of("tiny")
    tok.add_tokens([f"[PAD{len(tok)}]"])  # a GGUF writer's unused slot
    now, before = recorded_vocab_hashes(tok)
    config = RulerConfig(model="tiny", lengths=(256,), tasks=(TASK,), samples=1, output=str(tmp_path / "o"))
    rows = [{"input": "x", "outputs": ["1"], "gen_prefix": None}]
    (tmp_path / SAMPLES_DIR).mkdir()
    (tmp_path / SAMPLES_DIR / f"{TASK}-256.json").write_text(json.dumps(
        {"key": _samples_key(TASK, 256, config, before, None), "rows": rows, "sha256": samples_sha256(rows)}))
    said = []
    found = _all_samples(config, [TASK], tokenizer=tok, tokenizer_path="tiny", haystack=None, out=tmp_path,
                         say=said.append)
    assert found[(TASK, 256)]["rows"] == rows and found[(TASK, 256)]["key"]["tokenizer"] == now and said == []
