"""Benchmark records: one JSON file per benchmark, and the Markdown rendered from it.

Every script in ``bench/`` writes ``bench/results/NAME.json`` (the record: what was run, when, on
what, and every number it reports) and ``bench/results/NAME.md`` (rendered from the record by
:func:`render_record`); ``bench/report.py`` fills ``BENCHMARKS.md`` from the records. Numbers are
formatted here and nowhere else: a script stores raw numbers, with a format spec where the default
does not suit. Markdown is never written by hand or by a script's own f-strings.

The API a benchmark script uses (scripts run as modules from the repository root:
``python -m bench.bench_swap``)::

    from bench._args import count, refusing          # argparse types; main's one-line refusals
    from bench._report import add_out_option, new_record, put_table, put_value, write_record

    @refusing
    def main(argv=None): ap = argparse.ArgumentParser(...); ap.add_argument("--repeats", type=count(), default=3)
    add_out_option(ap, "swap")                       # --out, default bench/results/swap.json
    args = ap.parse_args()
    rec = new_record("swap", "Factor swap vs reload", script=__file__,
                     settings={"model": args.model, "repeats": args.repeats},
                     description="What is measured and how (Markdown; no measured numbers).")
    ...                                              # measure
    put_value(rec, "swap_median_us", 44.2, ".1f")    # BENCHMARKS template: {{swap.value.swap_median_us}}
    put_table(rec, "forward", ["tokens", "patched / unpatched"], [[2048, 0.97], [4096, 1.03]],
              formats=[None, ".3f"], title="Forward pass", note="Markdown under the table")
    rec["notes"].append("Markdown shown under the tables (no measured numbers: put those in values)")
    rec["data"]["times_s"] = [...]                   # raw measurements: kept in the JSON, not rendered
    write_record(rec, args.out)                      # NAME.json + NAME.md, atomically; prints the .md

``new_record`` takes the command line as typed (``argv=`` for a ``main(argv)`` called from a test),
the UTC start time and the load average; ``write_record`` adds the wall time and the machine facts
(python, torch, transformers, CPUs, threads, load average: :func:`_record.machine`), or the
``machine=`` it is given (e.g. a run folder's ``run.json`` versions). ``load_record(path)`` reads
and checks one. A benchmark whose numbers come from elsewhere (a run folder) records that under
``rec["source"]`` (scalars: ``command``, ``run_dir``, ...).

Record layout (``format``: ``longrope-bench/1``)::

    name, title, description, command, argv, utc, seconds, machine{...}, settings{...},
    source{...}, values{key: scalar}, value_formats{key: spec},
    tables{key: {title, columns[...], rows[[...]], formats[spec|null], note}}, notes[...], data{...}

Keys of values, tables and settings are ``[A-Za-z0-9_.-]+`` (they appear in placeholders);
values and settings are scalars (or lists of scalars), table cells scalars.

Format specs: Python's mini-language (``.2f``, ``,.0f``, ``.1%``, ``+.3f``), and ``A|B`` for a
boolean (``A`` when true). Without one: ints as they are, floats to 4 significant digits
(thousands separated from 10,000 up), None and NaN as "—", booleans as "yes" / "no".
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path
from typing import Any

from bench._record import command, load_average, utc_now
from bench._record import machine as machine_facts
from longrope.errors import shown

FORMAT = "longrope-bench/1"
RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEY = re.compile(r"^[A-Za-z0-9_.-]+$")
NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")

__all__ = ["FORMAT", "RESULTS_DIR", "RecordError", "fmt", "new_record", "put_value", "table", "put_table",
           "add_out_option", "record_paths", "write_record", "load_record", "check_record", "render_table",
           "render_record", "render_time"]


class RecordError(ValueError):
    """A record that is missing, malformed or asked for something it does not hold (one line)."""


# ------------------------------------------------------------------------------------------------
# numbers


def fmt(value: Any, spec: str | None = None) -> str:
    """One cell or value as text (see the module docstring for the specs)."""
    if isinstance(value, (list, tuple)):
        return ", ".join(fmt(v, spec) for v in value)
    if value is None:
        return "—"
    if isinstance(value, bool):
        if spec and "|" in spec:
            yes, no = spec.split("|", 1)
            return yes if value else no
        return "yes" if value else "no"
    if isinstance(value, str):
        return value
    if isinstance(value, float) and not math.isfinite(value):
        return "—"
    if not isinstance(value, (int, float)):
        raise RecordError(f"cannot format {type(value).__name__} value {value!r}")
    if spec:
        try:
            return format(value, spec)
        except ValueError:
            raise RecordError(f"bad format spec {spec!r} for {shown(value)}") from None
        except OverflowError:  # an integer past float's range under '.2f' was a traceback (battery 21b)
            raise RecordError(f"value {shown(value)} is past a float's range for format spec {spec!r}") from None
    if isinstance(value, int):
        return str(value) if abs(value) < 10**4000 else shown(value)  # str() refuses integers past 4,300 digits
    if abs(value) >= 1e4:
        return f"{value:,.0f}"
    text = f"{value:.4g}"
    return text if "e" not in text else f"{value:.3e}"


def render_time(utc: str) -> str:
    """``2026-11-30T04:40:12Z`` → ``2026-11-30 04:40 UTC``."""
    m = re.match(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)", str(utc))
    return f"{m.group(1)} {m.group(2)} UTC" if m else str(utc)


# ------------------------------------------------------------------------------------------------
# building a record


def _scalar(v: Any) -> bool:
    return v is None or isinstance(v, (bool, int, float, str))


def _plain(v: Any) -> Any:
    """numpy scalars → Python; lists/tuples of scalars kept; anything else is an error."""
    if hasattr(v, "item") and callable(v.item) and getattr(v, "shape", None) == ():
        v = v.item()
    if isinstance(v, (list, tuple)):
        return [_plain(x) for x in v]
    if not _scalar(v):
        raise RecordError(f"{v!r} is not a number, string, boolean or null")
    return v


def _flatten(d: dict, prefix: str = "") -> dict:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = _plain(v)
    return out


def new_record(name: str, title: str, *, script: str | None = None, argv: list[str] | None = None,
               settings: dict | None = None, description: str = "") -> dict:
    """A new record: command as typed, UTC start time, load average now; ``settings`` (nested dicts
    are flattened to dotted keys) is what the run was asked to do."""
    if not NAME.match(name):
        raise RecordError(f"record name {name!r} must be lower-case letters, digits, '_' or '-'")
    return {
        "format": FORMAT, "name": name, "title": title, "description": description.strip(),
        "command": command(script, argv), "argv": list(sys.argv[1:] if argv is None else argv),
        "utc": utc_now(), "seconds": None, "machine": {}, "load_average_start": load_average(),
        "settings": _flatten(settings or {}), "source": {}, "values": {}, "value_formats": {}, "tables": {},
        "notes": [], "data": {}, "_t0": time.time(),
    }


def relative_paths(value: Any, base: str | Path | None = None) -> Any:
    """``value`` with every string that is an absolute path under ``base`` (default: the working directory)
    made relative to it, inside dicts and lists: a record names its files as they lie in the repository,
    never as one machine's absolute paths."""
    root = str(Path(base or Path.cwd()).resolve())
    if isinstance(value, dict):
        return {k: relative_paths(v, root) for k, v in value.items()}
    if isinstance(value, list):
        return [relative_paths(v, root) for v in value]
    if isinstance(value, str) and value.startswith(f"{root}/"):
        return value[len(root) + 1:]
    return value


def put_value(rec: dict, key: str, value: Any, spec: str | None = None) -> None:
    """A named number (or string/boolean) of the record; ``spec`` is how it is shown by default."""
    if not KEY.match(key):
        raise RecordError(f"value key {key!r} must match {KEY.pattern}")
    rec["values"][key] = _plain(value)
    if spec is not None:
        rec["value_formats"][key] = spec
    else:
        rec["value_formats"].pop(key, None)


def table(columns: list[str], rows: list[list[Any]], *, formats: list[str | None] | None = None,
          title: str | None = None, note: str | None = None) -> dict:
    """A table as data: ``rows`` of scalars, one per column; ``formats`` one spec (or None) per column."""
    columns = [str(c) for c in columns]
    formats = list(formats) if formats is not None else [None] * len(columns)
    if len(formats) != len(columns):
        raise RecordError(f"table {title or ''!r}: {len(formats)} formats for {len(columns)} columns")
    out_rows = []
    for i, row in enumerate(rows):
        row = [_plain(c) for c in row]
        if len(row) != len(columns) or any(isinstance(c, list) for c in row):
            raise RecordError(f"table {title or ''!r}: row {i} has {len(row)} cells for {len(columns)} columns")
        out_rows.append(row)
    return {"title": title, "columns": columns, "rows": out_rows, "formats": formats, "note": note}


def put_table(rec: dict, key: str, columns: list[str], rows: list[list[Any]], **kwargs: Any) -> dict:
    """``rec["tables"][key] = table(columns, rows, **kwargs)``; returns the table."""
    if not KEY.match(key):
        raise RecordError(f"table key {key!r} must match {KEY.pattern}")
    rec["tables"][key] = table(columns, rows, **kwargs)
    return rec["tables"][key]


def add_out_option(parser: argparse.ArgumentParser, name: str, flag: str = "--out", *,
                   fixed: bool = True) -> None:
    """``--out PATH`` (or ``flag``): the record's path, default ``bench/results/NAME.json``; the
    Markdown is written next to it with the suffix ``.md``. ``fixed=False``: NAME is a pattern the
    script's options complete (the default is then None, which :func:`write_record` reads as the
    record's own name)."""
    parser.add_argument(flag, dest="out", default=str(RESULTS_DIR / f"{name}.json") if fixed else None,
                        metavar="PATH", help=f"the record (JSON; the Markdown goes next to it as .md) "
                                             f"(default bench/results/{name}.json)")


def record_paths(out: str | Path) -> tuple[Path, Path]:
    """``(NAME.json, NAME.md)`` for ``--out`` (given with either suffix, or none)."""
    out = Path(out)
    if out.suffix in (".json", ".md"):
        out = out.with_suffix("")
    return out.with_name(out.name + ".json"), out.with_name(out.name + ".md")


def write_record(rec: dict, out: str | Path | None = None, *, machine: dict | None = None,
                 quiet: bool = False) -> str:
    """Finish ``rec`` (wall time, machine facts), write ``NAME.json`` and ``NAME.md`` atomically,
    print the Markdown (unless ``quiet``) and return it."""
    from longrope.io import json_safe, write_json, write_text

    rec = dict(rec)
    t0 = rec.pop("_t0", None)
    if rec.get("seconds") is None and t0 is not None:
        rec["seconds"] = round(time.time() - t0, 1)
    if machine is None:
        machine = machine_facts()
    start = rec.pop("load_average_start", None)
    rec["machine"] = {**machine, **({"load_average_start": start} if start is not None else {})}
    rec = json.loads(json.dumps(json_safe(rec)))  # exactly what a reader of the JSON gets
    check_record(rec)
    json_path, md_path = record_paths(out if out is not None else RESULTS_DIR / f"{rec['name']}.json")
    text = render_record(rec)
    write_json(json_path, rec, indent=1)
    write_text(md_path, text)
    if not quiet:
        print(text)
        print(f"wrote {json_path} and {md_path}")
    return text


# ------------------------------------------------------------------------------------------------
# reading a record


REQUIRED = {"format": str, "name": str, "title": str, "command": str, "utc": str, "machine": dict,
            "settings": dict, "values": dict, "tables": dict}


def check_record(rec: Any, where: str = "record") -> None:
    """Raise :class:`RecordError` naming the first thing wrong with ``rec``."""
    if not isinstance(rec, dict):
        raise RecordError(f"{where}: not a JSON object")
    if rec.get("format") != FORMAT:
        raise RecordError(f"{where}: format is {rec.get('format')!r}, not {FORMAT!r}; rerun the benchmark")
    for k, tp in REQUIRED.items():
        if not isinstance(rec.get(k), tp):
            raise RecordError(f"{where}: field {k!r} is missing or not a {tp.__name__}")
    for group in ("values", "settings", "tables"):
        for k in rec[group]:
            if not KEY.match(k):
                raise RecordError(f"{where}: {group} key {k!r} must match {KEY.pattern}")
    for group in ("values", "settings", "machine", "source"):  # every field the Markdown renders, by its shape: a
        # hand-edited "source": [1], "notes": 5 or a dict among the settings was a TypeError traceback (battery 25c)
        fields = rec.get(group, {})
        if not isinstance(fields, dict):
            raise RecordError(f"{where}: field {group!r} must be a JSON object of scalars")
        for k, v in fields.items():
            if not _scalar_or_list(v) and not (group == "machine" and isinstance(v, dict)
                                               and all(map(_scalar, v.values()))):
                raise RecordError(f"{where}: {group} {k!r} is not a scalar (a number, text, boolean or null)")
    for k in ("description", "seconds"):
        if not (rec.get(k) is None or isinstance(rec[k], str if k == "description" else (int, float))
                and not isinstance(rec[k], bool)):
            raise RecordError(f"{where}: field {k!r} must be {'text' if k == 'description' else 'a number'} or null")
    notes = rec.get("notes", [])
    if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
        raise RecordError(f"{where}: field 'notes' must be a list of text")
    formats = rec.get("value_formats", {})  # a spec is text: 5 was format()'s TypeError with a traceback (21b)
    if not isinstance(formats, dict) or not all(_spec(f) for f in formats.values()):
        raise RecordError(f"{where}: value_formats must map value keys to format specs (text such as '.2f')")
    for k, t in rec["tables"].items():
        if not isinstance(t, dict) or not isinstance(t.get("columns"), list) or not isinstance(t.get("rows"), list):
            raise RecordError(f"{where}: table {k!r} needs 'columns' and 'rows'")
        if t.get("formats") is not None and (not isinstance(t["formats"], list) or not all(map(_spec, t["formats"]))):
            raise RecordError(f"{where}: table {k!r} formats must be a list of format specs (text) or nulls")
        n = len(t["columns"])
        if any(not isinstance(r, list) or len(r) != n for r in t["rows"]):
            raise RecordError(f"{where}: table {k!r} has a row whose length is not {n}")
        if not all(_scalar(c) for r in t["rows"] for c in r):
            raise RecordError(f"{where}: table {k!r} has a cell that is not a scalar (a number, text, boolean or null)")
        if any(t.get(f) is not None and not isinstance(t[f], str) for f in ("title", "note")):
            raise RecordError(f"{where}: table {k!r} title and note must be text or null")
        if t.get("formats") is not None and len(t["formats"]) != n:
            raise RecordError(f"{where}: table {k!r} has {len(t['formats'])} formats for {n} columns")


def _scalar_or_list(v: Any) -> bool:
    return _scalar(v) or (isinstance(v, list) and all(_scalar(x) for x in v))


def _spec(spec: Any) -> bool:
    """Whether ``spec`` is a format spec :func:`fmt` takes: text, or null for the default."""
    return spec is None or isinstance(spec, str)


def load_record(path: str | Path) -> dict:
    """Read and check one record; :class:`RecordError` (one line) when it is missing or malformed."""
    from longrope.errors import UserError
    from longrope.io import read_json

    path = Path(path)
    if not path.exists():
        raise RecordError(f"{path} is missing; run the benchmark that writes it")
    try:  # the project's one reader of JSON records: bounded in size and depth (a record nested 100,000 deep
        # was json's RecursionError with a traceback, battery 25c)
        rec = read_json(path, what="benchmark record", expect=None, fix="rerun the benchmark that writes it")
    except UserError as exc:
        raise RecordError(str(exc)) from None
    check_record(rec, str(path))
    return rec


# ------------------------------------------------------------------------------------------------
# Markdown


def _numeric(t: dict, j: int) -> bool:
    cells = [r[j] for r in t["rows"] if r[j] is not None]
    return bool(cells) and all(isinstance(c, (int, float)) and not isinstance(c, bool) for c in cells)


def render_table(t: dict) -> str:
    """The table's grid as Markdown (numeric columns right-aligned); no title, no note."""
    cols = t["columns"]
    formats = t.get("formats") or [None] * len(cols)
    cols = [str(c).replace("|", "\\|") for c in cols]  # a pipe inside a cell would end it
    lines = ["| " + " | ".join(cols) + " |",
             "|" + "|".join("---:" if _numeric(t, j) else "---" for j in range(len(cols))) + "|"]
    for row in t["rows"]:
        lines.append("| " + " | ".join(fmt(c, formats[j]).replace("|", "\\|") for j, c in enumerate(row)) + " |")
    return "\n".join(lines)


def _machine_line(m: dict) -> str:
    parts = []
    if m.get("platform"):
        parts.append(f"{m['platform']}" + (f" ({m['processor']})" if m.get("processor") else ""))
    if m.get("cpus") is not None:
        parts.append(f"{fmt(m['cpus'])} CPUs")
    if m.get("device_name"):
        parts.append(str(m["device_name"]))
    for key, label in (("python", "Python"), ("torch", "torch"), ("transformers", "transformers"),
                       ("numpy", "numpy")):
        if m.get(key):
            parts.append(f"{label} {m[key]}")
    if m.get("torch_threads") is not None:
        parts.append(f"torch threads {fmt(m['torch_threads'])}")
    if m.get("thread_variables"):
        parts.append(" ".join(f"{k}={v}" for k, v in m["thread_variables"].items()))
    loads = []
    if m.get("load_average_start"):
        loads.append(f"{fmt(m['load_average_start'], '.1f')} at the start")
    if m.get("load_average"):
        loads.append(f"{fmt(m['load_average'], '.1f')} at the end")
    if loads:
        parts.append("load average (1, 5, 15 min) " + "; ".join(loads))
    return "; ".join(parts)


def render_record(rec: dict) -> str:
    """The whole record as the Markdown file ``bench/results/NAME.md``."""
    lines = [f"# {rec['title']}", ""]
    if rec.get("description"):
        lines += [rec["description"], ""]
    lines += [f"Command: `{rec['command']}`  ",
              f"Run: {render_time(rec['utc'])}" + (f", {fmt(rec['seconds'], '.0f')} s" if rec.get("seconds") else "")
              + "  ", f"Machine: {_machine_line(rec['machine'])}", ""]
    source = rec.get("source") or {}
    if source:
        lines += ["Numbers from: " + "; ".join(f"{k} `{fmt(v)}`" for k, v in source.items()), ""]
    lines += [f"Record: `{rec['name']}.json` (this file is rendered from it by `bench/_report.py`).", ""]
    for key, t in rec["tables"].items():
        lines += [f"## {t.get('title') or key}", "", render_table(t), ""]
        if t.get("note"):
            lines += [t["note"], ""]
    if rec["values"]:
        formats = rec.get("value_formats") or {}
        lines += ["## Values", "", "| value | |", "|---|---:|"]
        lines += [f"| `{k}` | {fmt(v, formats.get(k))} |" for k, v in rec["values"].items()]
        lines.append("")
    if rec.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in rec["notes"]] + [""]
    if rec["settings"]:
        lines += ["## Settings", "", "| setting | |", "|---|---|"]
        lines += [f"| `{k}` | {fmt(v)} |" for k, v in rec["settings"].items()]
        lines.append("")
    return "\n".join(lines)
