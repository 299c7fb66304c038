"""What a run shows while it works: timestamped lines and the search's progress bar (stderr).

stdout is kept for each command's result (a table, the run folder), so these go to stderr.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from collections.abc import Callable
from typing import Any

__all__ = ["Log", "SearchBar", "eta"]


def eta(seconds: float) -> str:
    """``m:ss`` (``?`` when unknown)."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    m, s = divmod(int(round(seconds)), 60)
    return f"{m}:{s:02d}"


class Log:
    """Timestamped progress lines; ``sink`` receives them instead of stderr (tests, callers)."""

    def __init__(self, enabled: bool, sink: Callable[[str], None] | None = None) -> None:
        self.enabled = enabled or sink is not None
        self.sink = sink
        self.t0 = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, msg: str) -> None:
        if not self.enabled:
            return
        line = f"[{self.elapsed():7.1f}s] {msg}"
        if self.sink is not None:
            self.sink(line)
        else:
            print(line, file=sys.stderr, flush=True)


class SearchBar:
    """tqdm line for a search: candidates done of the budget, best PPL, evaluations/s, ETA."""

    def __init__(self, desc: str, enabled: bool) -> None:
        self.bar = None
        self._lines = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=None, desc=desc, unit="cand", dynamic_ncols=True, file=sys.stderr)
            self._lines = _LinesAboveBar(self.bar)  # the search's own warnings (a worker replaced) above the bar
            logging.getLogger("longrope.search").addHandler(self._lines)

    def __call__(self, p) -> None:
        if self.bar is None:
            return
        self.bar.total = p.budget
        self.bar.n = p.done
        rate = p.full_evals / p.elapsed if p.elapsed > 0 else 0.0
        self.bar.set_postfix_str(f"best score {p.best_ppl:.4g}, {p.full_evals:.1f} evals, {rate:.2f} evals/s")

    def close(self) -> None:
        if self._lines is not None:
            logging.getLogger("longrope.search").removeHandler(self._lines)
            self._lines = None
        if self.bar is not None:
            self.bar.close()


class _LinesAboveBar(logging.Handler):
    """A warning of the search's loggers written above its bar (``tqdm.write``), not onto the bar's line."""

    def __init__(self, bar: Any) -> None:
        super().__init__(logging.WARNING)
        self.bar = bar

    def emit(self, record: logging.LogRecord) -> None:
        self.bar.write(record.getMessage(), file=sys.stderr)
