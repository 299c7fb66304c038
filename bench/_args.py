"""The command-line side of the benchmark scripts: argparse types that refuse what a benchmark cannot use by
option name (whole numbers, amounts, length lists, name lists), and :func:`refusing`, the one place a script's
``main`` says the library's refusals in one line with exit status 2."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def count(minimum: int = 1, maximum: int = 2**40):
    """An argparse ``type``: a whole number in [``minimum``, ``maximum``]. A benchmark given ``--repeats 0`` or
    ``--mb -1`` ran its set-up and then failed with a traceback (battery 27); argparse now says which option."""
    from longrope.options import int_problem

    def parse(text: str) -> int:
        try:
            value = int(text.replace("_", ""))
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
        if (problem := int_problem(value, minimum, maximum)) is not None:
            raise argparse.ArgumentTypeError(problem)
        return value

    return parse


def refusing(main: Callable) -> Callable:
    """A benchmark's ``main``, with the library's refusals (a model that is not there, a shard folder that is not one)
    said in one line, exit status 2, as the commands say them: `bench_search --data /nowhere` and `bench_generate
    --decode-models x` ended in the UserError's traceback (battery 31)."""
    from longrope.errors import UserError

    @functools.wraps(main)
    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except UserError as exc:
            print(f"{Path(main.__code__.co_filename).name}: error: {exc}", file=sys.stderr)
            return 2

    return run


def length_list(text: str) -> list[int]:
    """An argparse ``type``: context lengths as the commands' ``--lengths`` read them (``2048,4k``; sorted, each
    once). ``--lengths x`` was int()'s traceback and ``4k`` refused (battery 31)."""
    from longrope.errors import UserError
    from longrope.options import parse_lengths

    try:
        return parse_lengths(text, "--lengths")
    except UserError as exc:  # argparse names the option first
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--lengths: ")) from None


def names(known: tuple[str, ...], *, required: tuple[str, ...] = ()):
    """An argparse ``type``: a comma-separated subset of ``known`` (each once, in the order given) holding every
    name of ``required`` (the reference the others are divided by). ``--modes zz`` measured another mode and
    recorded it as "zz" (bench_eval), or ran its whole benchmark and failed at the table (bench_train)."""

    def parse(text: str) -> list[str]:
        given = list(dict.fromkeys(t.strip() for t in text.split(",") if t.strip()))
        unknown = [t for t in given if t not in known]
        if unknown or not given:
            raise argparse.ArgumentTypeError(f"unknown name(s) {', '.join(unknown) or '(none given)'}; "
                                             f"choose from {', '.join(known)}")
        missing = [t for t in required if t not in given]
        if missing:
            raise argparse.ArgumentTypeError(f"must include {', '.join(missing)} (the reference the others are "
                                             f"compared with), got {', '.join(given)}")
        return given

    return parse


def amount(text: str) -> float:
    """An argparse ``type``: a finite number > 0 (megabytes, seconds, a factor); NaN and -1 ran into a traceback."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
    return value
