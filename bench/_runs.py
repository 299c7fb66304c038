"""Reading the run folders a benchmark records (``run.json``, ``config.json``, ``summary.json``,
``history.jsonl``): one reader each, a :class:`~longrope.errors.UserError` of one line on failure."""

from __future__ import annotations

import json
import shlex
from pathlib import Path


def read_json(path: Path, hint: str | None = None) -> dict:
    """A JSON object of a run folder, read by the project's one bounded reader of records; ``hint`` (what to do) is
    added to the one-line error (a record nested 100,000 deep was a RecursionError, a list an AttributeError later,
    battery 25c)."""
    from longrope.io import read_json as read_record

    return read_record(path, what="run record", fix=hint)


def read_jsonl(path: Path) -> list[dict]:
    """The rows of a JSON-lines file of a run folder (blank lines skipped)."""
    from longrope.errors import UserError

    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from None


def command(run: dict) -> str:
    """The command line a run folder's ``run.json`` recorded, as ``longrope ...``, its paths under the working
    directory relative to it. The program is dropped however it was typed: ``longrope`` or ``python -m longrope``
    (three words: the record said "longrope -m longrope pipeline ...")."""
    from bench._report import relative_paths

    argv = [str(a) for a in run.get("argv") or []]
    args = argv[3:] if argv[1:3] == ["-m", "longrope"] else argv[1:]
    return shlex.join(["longrope", *relative_paths(args)])
