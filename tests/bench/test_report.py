"""BENCHMARKS.md is what the benchmark records give; the record → Markdown renderer on a synthetic record."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bench import _report as r
from bench import report

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"


def test_benchmarks_md_is_what_the_records_give():
    out = subprocess.run([sys.executable, "-m", "bench.report", "--check"], capture_output=True, text=True,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr.strip()


def test_fmt_formats_numbers_in_one_place():
    assert r.fmt(None) == "—" and r.fmt(math.nan, ".2f") == "—"
    assert r.fmt(True, "met|NOT met") == "met" and r.fmt(False, "met|NOT met") == "NOT met"
    assert r.fmt(True) == "yes"
    assert r.fmt(4096) == "4096" and r.fmt(4458752, ",d") == "4,458,752"
    assert r.fmt(0.88346) == "0.8835" and r.fmt(123456.7) == "123,457"
    assert r.fmt(0.0262, ".1%") == "2.6%" and r.fmt([2048, 4096]) == "2048, 4096"
    with pytest.raises(r.RecordError):
        r.fmt(1.0, "not a spec")


def _toy_record(results: Path) -> dict:
    rec = r.new_record("toy", "A toy benchmark", script=str(BENCH / "bench_toy.py"), argv=["--n", "3"],
                       settings={"n": 3, "knobs": {"k": [1, 2]}}, description="Synthetic.")
    r.put_value(rec, "ratio", 0.87078, ".3f")
    r.put_value(rec, "ok", True, "met|NOT met")
    r.put_value(rec, "count", 192)
    r.put_table(rec, "t", ["method", "ppl", "n"], [["yarn", 85.2149, 3], ["longrope", 75.2201, None]],
                formats=[None, ".2f", None], title="PPL", note="A note.")
    rec["notes"].append("Stopped early.")
    r.write_record(rec, results / "toy.json", machine={"python": "3.11.7", "cpus": 2}, quiet=True)
    return json.loads((results / "toy.json").read_text())


def test_record_round_trip_and_markdown(tmp_path):
    rec = _toy_record(tmp_path)
    assert rec["format"] == r.FORMAT and rec["command"].endswith("-m bench.bench_toy --n 3")
    assert rec["settings"] == {"n": 3, "knobs.k": [1, 2]} and rec["machine"]["cpus"] == 2
    assert rec["tables"]["t"]["rows"][1] == ["longrope", 75.2201, None]  # numbers stay numbers
    md = (tmp_path / "toy.md").read_text()
    assert md == r.render_record(r.load_record(tmp_path / "toy.json"))
    assert "| method | ppl | n |\n|---|---:|---:|\n| yarn | 85.21 | 3 |\n| longrope | 75.22 | — |" in md
    assert "| `ratio` | 0.871 |" in md and "| `ok` | met |" in md and "- Stopped early." in md
    with pytest.raises(r.RecordError, match="row 0 has 2 cells"):
        r.table(["a", "b", "c"], [[1, 2]])


def test_template_placeholders_are_filled_and_checked(tmp_path, capsys):
    results = tmp_path / "results"
    rec = _toy_record(results)
    template = tmp_path / "T.md"
    template.write_text("# Title\n\nIntro {{toy.value.count}} candidates.\n\n## A\n\n"
                        "Ratio **{{toy.value.ratio}}** ({{ toy.value.ratio:.1% }}), goal {{toy.value.ok}}.\n\n"
                        "{{toy.table.t}}\n\n## B\n\nCommand: `{{toy.command}}`, n = {{toy.setting.n}}, "
                        "Python {{toy.machine.python}}.\n")
    out = tmp_path / "OUT.md"
    args = ["--template", str(template), "--results", str(results), "--output", str(out)]
    assert report.main(args) == 0
    text = out.read_text()
    assert text == (report.HEADER + "# Title\n\nIntro 192 candidates.\n\n## A\n\nRatio **0.871** (87.1%), goal met.\n\n"
                    "| method | ppl | n |\n|---|---:|---:|\n| yarn | 85.21 | 3 |\n| longrope | 75.22 | — |\n\n## B\n\n"
                    f"Command: `{rec['command']}`, n = 3, Python 3.11.7.\n")
    assert report.main([*args, "--check"]) == 0

    out.write_text(text.replace("0.871", "0.883"))  # a hand edit in section A
    capsys.readouterr()
    assert report.main([*args, "--check"]) == 1
    err = capsys.readouterr().err
    assert "## A" in err and err.count("\n") == 1

    out.write_text(text)
    (results / "toy.md").write_text("# A toy benchmark\n\nedited by hand\n")
    assert report.main([*args, "--check"]) == 1
    assert "toy.md" in capsys.readouterr().err
    assert report.main(args) == 0 and report.main([*args, "--check"]) == 0  # rewrites toy.md from toy.json

    for bad, why in (("{{toy.value.nope}}", "has no value 'nope'"), ("{{toy.colour.x}}", "unknown kind"),
                     ("{{other.value.x}}", "other.json is missing"), ("{{toy.table.t:.2f}}", "takes no format"),
                     ("{{toy.value.ratio", "unbalanced")):
        template.write_text(f"# T\n\n{bad}\n")
        assert report.main(args) == 2
        err = capsys.readouterr().err
        assert why in err and "T.md:3" in err and err.count("\n") == 1


def test_a_record_with_a_format_or_value_fmt_cannot_take_is_refused_in_one_line():
    """A record's value_formats entry that is no text, a table format that is none, or an integer past a float's
    range under a float spec is a RecordError (one line, exit 2), not format()'s TypeError or OverflowError with a
    traceback (battery 21b)."""
    rec = json.loads(json.dumps(r.new_record("x", "a title")))
    rec["values"]["v"] = 1.5
    r.check_record(rec)
    for bad in ({**rec, "value_formats": {"v": 5}}, {**rec, "value_formats": ["x"]},
                {**rec, "tables": {"t": {"columns": ["a"], "rows": [[1]], "formats": [3]}}}):
        with pytest.raises(r.RecordError):
            r.check_record(bad)
    with pytest.raises(r.RecordError, match="past a float's range"):
        r.fmt(10**400, ".2f")
    assert r.fmt(10**5000).startswith("an integer of")


@pytest.mark.parametrize("damage", [
    lambda d: d.update(source=[1, 2]), lambda d: d.update(notes=5), lambda d: d.update(description=5),
    lambda d: d.update(seconds={}), lambda d: d["settings"].update(n={"x": 1}),
    lambda d: d["machine"].update(cpus=[1, {}]), lambda d: d["tables"]["t"]["rows"][0].__setitem__(0, {"a": 1}),
    lambda d: d["tables"]["t"].update(note=7), "[" * 100_000 + "]" * 100_000, '{"format": "longrope-bench/1"',
])
def test_a_damaged_record_is_refused_in_one_line_naming_it(tmp_path, capsys, damage):
    """Every field the Markdown renders is checked by its shape when a record is read, the record read within the
    project's size and depth bounds, and every *.json of the results folder is a record: a hand-edited "source",
    "notes", description, table note or a dict among settings/cells was a TypeError traceback, a deeply nested one a
    RecursionError, and a damaged record the template did not name was skipped without a word (battery 25c)."""
    results = tmp_path / "results"
    results.mkdir()
    rec = _toy_record(results)
    if callable(damage):
        damage(rec)
        damage = json.dumps(rec)
    (results / "toy.json").write_text(damage)
    template = tmp_path / "T.md"
    template.write_text("# T\n")
    assert report.main(["--results", str(results), "--template", str(template),
                        "--output", str(tmp_path / "out.md"), "--check"]) == 2
    err = capsys.readouterr().err
    assert "toy.json" in err and err.count("\n") == 1 and "Traceback" not in err


def test_a_folder_where_report_reads_or_writes_a_file_is_one_line(tmp_path, capsys):
    """A folder given as --template or --output, or lying where a NAME.md belongs, was an IsADirectoryError
    traceback, and --output a folder without --check the project writer's UserError with one (battery 25c)."""
    results = tmp_path / "results"
    results.mkdir()
    _toy_record(results)
    template = tmp_path / "T.md"
    template.write_text("# T\n{{toy.value.count}}\n")
    (tmp_path / "dir").mkdir()
    base = ["--results", str(results), "--template", str(template), "--output", str(tmp_path / "out.md")]
    cases = [[*base[:2], "--template", str(tmp_path), *base[4:]], [*base[:4], "--output", str(tmp_path / "dir")],
             [*base[:4], "--output", str(tmp_path / "dir"), "--check"]]
    for argv in cases:
        assert report.main(argv) == 2
        err = capsys.readouterr().err
        assert "is a folder" in err and err.count("\n") == 1
    (results / "toy.md").unlink()
    (results / "toy.md").mkdir()
    for extra in ([], ["--check"]):
        assert report.main(base + extra) == 2
        err = capsys.readouterr().err
        assert "toy.md is a folder" in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, needle", [
    (["-m", "bench.bench_tokenize", "--mb", "-1"], "argument --mb: must be a finite number > 0, got -1"),
    (["-m", "bench.bench_tokenize", "--mb", "nan"], "argument --mb: must be a finite number > 0, got nan"),
    (["-m", "bench.bench_shard_verify", "--repeats", "0"], "argument --repeats: must be an integer in [1, "),
    (["-m", "bench.bench_swap", "--lengths", "1"], "argument --lengths: must be an integer in [2, "),
    (["-m", "bench.bench_train", "--steps", "x"], "argument --steps: must be a whole number, got 'x'"),
    (["-m", "bench.bench_eval", "--lengths", "2k,x"], "argument --lengths: a length is a whole number of tokens"),
    (["-m", "bench.bench_smollm2_long", "--lengths", "x"], "argument --lengths: a length is a whole number"),
    (["-m", "bench.bench_smollm2_speed", "--lengths", "1"], "argument --lengths: a length is at least 2 tokens"),
    (["-m", "bench.bench_eval", "--modes", "eval,zz"], "argument --modes: unknown name(s) zz; choose from bare, eval"),
    (["-m", "bench.bench_train", "--modes", "ours"], "argument --modes: must include plain (the reference"),
    (["-m", "bench.bench_fitness", "--closed-forms", "yarn,zz"], "argument --closed-forms: unknown name(s) zz;"),
    (["-m", "bench.bench_tokenize", "--tokenizer", "/nowhere", "--mb", "0.01", "--out", "{tmp}/t.json"],
     "bench_tokenize.py: error: the bench.bench_tokenize worker failed: no such model file or folder: /nowhere"),
    (["-m", "bench.bench_llamacpp", "--case", "tiny,target=4096,window=x"], "argument --case: window: must be a whole"),
    (["-m", "bench.bench_llamacpp", "--case", "tiny,window=512"], "argument --case: 'tiny,window=512' needs factors="),
    (["-m", "bench.bench_search", "--data", "/nowhere/shards"], "bench_search.py: error: /nowhere/shards: no such "),
    (["-m", "bench.bench_smollm2_joint", "--search", "/nowhere", "--eval", "/nowhere", "--keys", "/nowhere"],
     "bench_smollm2_joint.py: error: "),
])
def test_a_benchmark_s_numeric_option_it_cannot_use_is_refused_by_name_before_any_work(argv, needle, tmp_path):
    """Battery 27: `bench_tokenize --mb -1` built its corpus and failed with a UserError traceback, `--mb nan` with
    int()'s ValueError, `bench_shard_verify --repeats 0` wrote 100M tokens and then failed on min() of nothing.
    Every numeric option of the bench scripts now has its bounds in its argparse type (bench._args.count,
    amount): exit 2 and one error line naming the option. Battery 31: `--lengths x` was int()'s traceback (and 4k
    refused), `bench_eval --modes zz` timed the eval mode and recorded it as "zz", `bench_train --modes ours` ran
    the whole benchmark and failed at the table (bench._args.length_list, names); `bench_search --data /nowhere`
    ended in the library's UserError as a traceback (bench._args.refusing)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root / "src"), str(root)])}
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    proc = subprocess.run([sys.executable, *argv], cwd=root, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and needle in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr and needle in proc.stderr.strip().splitlines()[-1], proc.stderr


def test_length_and_name_lists_read_as_the_commands_read_them():
    from bench._args import length_list, names

    assert length_list("4k, 2048,4096") == [2048, 4096]
    assert names(("a", "b", "c"), required=("a",))("c,a,c") == ["c", "a"]
