"""PNG plots of results: perplexity vs length, passkey accuracy heatmaps, rescale factors per dimension.

Built on ``matplotlib.figure.Figure`` directly (no pyplot, no global backend switch), rendered
with the Agg canvas into memory and written atomically.
"""

from __future__ import annotations

import functools
import io
import logging
import math
import os
from collections.abc import Mapping, Sequence

from longrope.errors import UserError, shown
from longrope.io import write_bytes
from longrope.options import is_integer, is_number

__all__ = ["plot_ppl_vs_length", "plot_passkey_heatmap", "plot_passkey_methods", "plot_factors",
           "plot_ruler_heatmaps", "quiet_matplotlib_cache_notes", "legend"]


class _CacheDirNotes(logging.Filter):
    """Drops matplotlib's notes that its config folder (~/.config/matplotlib, MPLCONFIGDIR) cannot be written and
    that it uses a temporary one instead: it does, the plots are the same, and with an unwritable HOME (a service
    user, a read-only container) every eval printed those two lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        msg = record.getMessage()
        return not ("mkdir -p failed for path" in msg or "is not a writable directory" in msg
                    or "created a temporary cache directory" in msg)


def quiet_matplotlib_cache_notes() -> None:
    """Install :class:`_CacheDirNotes` on matplotlib's logger (once; matplotlib itself is not imported)."""
    logger = logging.getLogger("matplotlib")
    if not any(isinstance(f, _CacheDirNotes) for f in logger.filters):
        logger.addFilter(_CacheDirNotes())


quiet_matplotlib_cache_notes()  # before any plot function imports matplotlib


def _save(fig, path: str | os.PathLike) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def legend(ax, **kwargs) -> None:
    """A legend when something labelled was drawn (matplotlib warns on an empty one: a plot of no series)."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(**kwargs)


def _imshow(ax, grid):
    """The accuracy image of ``grid``, or None when it has no cell (matplotlib warns of singular limits)."""
    if grid.size == 0:
        return None
    return ax.imshow(grid, vmin=0.0, vmax=1.0, cmap="RdYlGn", aspect="auto", origin="upper")


def _log_axis_overflow_quiet(plot):
    """``plot`` without numpy's overflow warnings from matplotlib's log axes: a value near the largest float (a
    diverged model's perplexity of 1e308, a factor of 1e308) overflows in the axis's margins, and the warning told the user nothing
    they could act on; the point is drawn at the top all the same (battery 25c's open item)."""

    @functools.wraps(plot)
    def quiet(*args, **kwargs):
        import numpy as np

        with np.errstate(over="ignore", under="ignore"):
            return plot(*args, **kwargs)

    return quiet


def _positive_lengths(lengths, what: str) -> None:
    """Refuse lengths a log-2 axis cannot place (0, negative) in one line, naming the plot's input."""
    bad = [n for n in lengths if not (isinstance(n, (int, float)) and not isinstance(n, bool) and n > 0)]
    if bad:
        raise UserError(f"{what}: lengths must be positive token counts, got {bad[0]!r}; drop that point")


def _check_values(values, what: str, *, low: float, high: float = math.inf, fix: str) -> None:
    """Refuse, in one line, a plotted value that is no number or lies outside ``[low, high]`` (NaN, and inf above
    ``high``, are drawn as gaps: a measurement that overflowed); a text perplexity was a TypeError traceback, a text
    accuracy a ValueError, a negative perplexity vanished from its log axis without a word (battery 25c)."""
    for v in values:
        if not is_number(v) or not (math.isnan(v) or low <= v <= high or (high == math.inf and v == math.inf)):
            raise UserError(f"{what} must be numbers in [{low:g}, {high:g}] (NaN for none), got {shown(v)}; {fix}")


def _check_rows(cells: Sequence[Mapping], keys: tuple[str, ...], cell_keys: tuple[str, ...], what: str) -> None:
    """Refuse, in one line, rows a heatmap cannot read: a row that is not a mapping or lacks one of ``keys`` (was a
    bare KeyError), or two rows of one cell (``cell_keys``; the later one was drawn over the earlier, battery 20d)."""
    seen = set()
    for k, c in enumerate(cells):
        missing = [key for key in keys if not isinstance(c, Mapping) or key not in c]
        if missing:
            raise UserError(f"{what}: row {k} has no {missing[0]!r} (each row needs {', '.join(keys)}), got "
                            f"{shown(c)}")
        cell = tuple(c[key] for key in cell_keys)
        if cell in seen:
            raise UserError(f"{what}: two rows for the same cell ({', '.join(f'{key} {c[key]!r}' for key in cell_keys)}"
                            "); give each cell once")
        seen.add(cell)


def _length_label(n: int) -> str:
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


@_log_axis_overflow_quiet
def plot_ppl_vs_length(series: Mapping[str, Sequence[tuple[int, float]]], path: str | os.PathLike, *,
                       title: str = "Perplexity vs context length", original_length: int | None = None) -> None:
    """One line per factor set: ``series[name] = [(length, ppl), ...]``; log-scale y when it spans >10×."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    values = []
    lengths = sorted({n for pts in series.values() for n, _ in pts})
    _positive_lengths(lengths, "plot_ppl_vs_length")
    for name, pts in series.items():  # two points at one length drew a vertical segment as if a curve (battery 20d)
        at = [n for n, _ in pts]
        if len(set(at)) < len(at):
            twice = next(n for n in at if at.count(n) > 1)
            raise UserError(f"plot_ppl_vs_length: series {name!r} has two points at length {twice}; give each length "
                            "once")
    _check_values([p for pts in series.values() for _, p in pts], "plot_ppl_vs_length: perplexities", low=0.0,
                  fix="give exp(mean NLL) of each point")
    if original_length is not None and not (is_integer(original_length) and original_length > 0):
        raise UserError(f"plot_ppl_vs_length: original_length must be a positive number of tokens or None, got "
                        f"{shown(original_length)}")
    for name, pts in series.items():
        pts = sorted(pts)
        xs = [n for n, _ in pts]
        ys = [p for _, p in pts]
        values += [y for y in ys if math.isfinite(y)]
        ax.plot(xs, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.set_xticks(lengths)
    ax.set_xticklabels([_length_label(n) for n in lengths])
    ax.minorticks_off()
    if values and min(values) > 0 and max(values) / min(values) > 10:
        ax.set_yscale("log")
    if original_length:
        ax.axvline(original_length, color="grey", linestyle=":", linewidth=1)
        ax.annotate("original L", (original_length, 1), xycoords=("data", "axes fraction"),
                    textcoords="offset points", xytext=(3, -12), fontsize=8, color="grey")
    ax.set_xlabel("context length (tokens)")
    ax.set_ylabel("perplexity (token-weighted)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    legend(ax)
    _save(fig, path)


def _accuracy_heatmap(grid, columns: Sequence[str], depths: Sequence[float], path: str | os.PathLike, *,
                      xlabel: str, title: str) -> None:
    """Draw ``grid[depth, column]`` accuracies (NaN = not measured) as an annotated heatmap PNG."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(1.4 + 0.95 * len(columns), 1.3 + 0.5 * len(depths)))
    ax = fig.add_subplot(1, 1, 1)
    im = _imshow(ax, grid)
    ax.set_xticks(range(len(columns)))
    ax.set_xticklabels(list(columns))
    ax.set_yticks(range(len(depths)))
    ax.set_yticklabels([f"{d:.0%}" for d in depths])
    for i in range(len(depths)):
        for j in range(len(columns)):
            if not math.isnan(grid[i, j]):
                ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("needle depth")
    ax.set_title(title)
    if im is not None:
        fig.colorbar(im, ax=ax, label="accuracy")
    _save(fig, path)


def plot_passkey_heatmap(cells: Sequence[Mapping], path: str | os.PathLike, *, title: str = "Passkey accuracy") -> None:
    """Accuracy over (depth × length) from rows with ``length``, ``depth``, ``accuracy``."""
    import numpy as np

    _check_rows(cells, ("length", "depth", "accuracy"), ("length", "depth"), "plot_passkey_heatmap")
    _check_values([c["accuracy"] for c in cells], "plot_passkey_heatmap: accuracies", low=0.0, high=1.0,
                  fix="give shares of keys answered")
    lengths = sorted({int(c["length"]) for c in cells})
    depths = sorted({float(c["depth"]) for c in cells})
    grid = np.full((len(depths), len(lengths)), np.nan)
    for c in cells:
        grid[depths.index(float(c["depth"])), lengths.index(int(c["length"]))] = float(c["accuracy"])
    _accuracy_heatmap(grid, [_length_label(n) for n in lengths], depths, path,
                      xlabel="context length (tokens)", title=title)


def plot_passkey_methods(cells: Sequence[Mapping], path: str | os.PathLike, *, length: int,
                         methods: Sequence[str]) -> None:
    """Accuracy over (depth × method) at one length, from rows with ``factors``, ``depth``, ``accuracy``.

    The other axis of :func:`plot_passkey_heatmap`: which factor sets keep retrieval at ``length``.
    """
    import numpy as np

    methods = list(methods)
    # rows of other lengths (a suite's cells at several) are not this plot's: they were drawn over its own
    cells = [c for c in cells if not (isinstance(c, Mapping) and "length" in c and c["length"] != length)]
    _check_rows(cells, ("factors", "depth", "accuracy"), ("factors", "depth"), "plot_passkey_methods")
    _check_values([c["accuracy"] for c in cells], "plot_passkey_methods: accuracies", low=0.0, high=1.0,
                  fix="give shares of keys answered")
    depths = sorted({float(c["depth"]) for c in cells})
    grid = np.full((len(depths), len(methods)), np.nan)
    for c in cells:
        if c["factors"] in methods:
            grid[depths.index(float(c["depth"])), methods.index(c["factors"])] = float(c["accuracy"])
    _accuracy_heatmap(grid, methods, depths, path, xlabel="method",
                      title=f"Passkey accuracy at {_length_label(length)} tokens")


@_log_axis_overflow_quiet
def plot_factors(path: str | os.PathLike, curve: Sequence[float], label: str, *,
                 references: Mapping[str, Sequence[float]], title: str) -> None:
    """λ per frequency index: ``curve`` (solid, labelled ``label``) against ``references`` (dashed,
    e.g. PI, NTK, YaRN), log y."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.2))
    ax = fig.add_subplot(1, 1, 1)
    i = list(range(len(curve)))
    for name, lam in references.items():
        if len(lam) != len(curve):
            raise UserError(f"plot_factors: reference {name!r} has {len(lam)} factors but {label!r} has {len(curve)}; "
                            "give references made for the same rotary dim")
        ax.plot(i, list(lam), linestyle="--", linewidth=1.2, label=name)
    ax.plot(i, list(curve), color="black", linewidth=2, label=label)
    ax.set_yscale("log")
    ax.set_xlabel("frequency index i (low i = high frequency)")
    ax.set_ylabel("rescale factor λ_i")
    ax.set_title(title)
    ax.grid(True, which="both", alpha=0.3)
    legend(ax, fontsize=8)
    _save(fig, path)


def plot_ruler_heatmaps(grids: Mapping[str, Mapping[tuple[str, int], float]], tasks: Sequence[str],
                        lengths: Sequence[int], path: str | os.PathLike, *, title: str = "RULER accuracy") -> None:
    """One task × length accuracy heatmap per factor set, side by side: ``grids[set][(task, length)]``
    (a missing cell is left blank)."""
    import numpy as np
    from matplotlib.figure import Figure

    names = list(grids)
    _check_values([acc for name in names for acc in grids[name].values()], "plot_ruler_heatmaps: accuracies",
                  low=0.0, high=1.0, fix="give mean scores of the cells")
    width = 1.0 + 0.8 * len(lengths)
    fig = Figure(figsize=(2.2 + width * len(names), 1.4 + 0.35 * len(tasks)))
    axes = [fig.add_subplot(1, len(names), k + 1) for k in range(len(names))]
    im = None
    for k, (ax, name) in enumerate(zip(axes, names)):
        grid = np.full((len(tasks), len(lengths)), np.nan)
        for (task, n), acc in grids[name].items():
            if task in tasks and n in lengths:
                grid[list(tasks).index(task), list(lengths).index(n)] = acc
        im = _imshow(ax, grid) or im
        ax.set_xticks(range(len(lengths)))
        ax.set_xticklabels([_length_label(n) for n in lengths])
        ax.set_yticks(range(len(tasks)))
        ax.set_yticklabels(list(tasks) if k == 0 else [])
        for i in range(len(tasks)):
            for j in range(len(lengths)):
                if not math.isnan(grid[i, j]):
                    ax.text(j, i, f"{grid[i, j]:.2f}", ha="center", va="center", fontsize=7)
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("context length")
    fig.suptitle(title)
    if im is not None:
        fig.colorbar(im, ax=axes, label="accuracy", fraction=0.05)
    _save(fig, path)
