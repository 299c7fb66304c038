"""``longrope.evaluate.plots``: PNG plots of results."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"


def test_an_unwritable_matplotlib_config_folder_costs_no_lines_on_stderr(tmp_path):
    """battery 9a: with HOME (or MPLCONFIGDIR) unwritable, every eval printed matplotlib's "mkdir -p failed" and
    "created a temporary cache directory" lines; matplotlib uses a temporary folder either way."""
    env = {**os.environ, "MPLCONFIGDIR": "/proc/longrope-no-such-folder", "PYTHONPATH": str(SRC)}
    code = ("from longrope.evaluate.plots import plot_ppl_vs_length\n"
            f"plot_ppl_vs_length({{'a': [(256, 9.0), (512, 8.0)]}}, {str(tmp_path / 'p.png')!r})\n")
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stderr == "", proc.stderr
    assert (tmp_path / "p.png").stat().st_size > 0


def test_plots_of_nothing_are_drawn_silently_and_inputs_they_cannot_draw_are_one_line_errors(tmp_path):
    """Battery 20d: an empty series, passkey or RULER grid gave matplotlib's 'No artists with labels' and
    'singular limits' warnings; a length of 0 its 'cannot be log-scaled' warning and a plot anyway; a reference
    curve of another length its 'x and y must have same first dimension'."""
    import warnings

    import pytest

    from longrope.errors import UserError
    from longrope.evaluate import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_ppl_vs_length({}, tmp_path / "a.png")
        plots.plot_passkey_heatmap([], tmp_path / "b.png")
        plots.plot_passkey_methods([], tmp_path / "c.png", length=64, methods=[])
        plots.plot_ruler_heatmaps({"yarn": {}}, ["niah"], [], tmp_path / "d.png")
        plots.plot_factors(tmp_path / "e.png", [], "none", references={}, title="t")
    assert all((tmp_path / f"{n}.png").read_bytes().startswith(b"\x89PNG") for n in "abcde")
    with pytest.raises(UserError, match="positive token counts, got 0"):
        plots.plot_ppl_vs_length({"yarn": [(0, 3.0), (64, 4.0)]}, tmp_path / "f.png")
    with pytest.raises(UserError, match="reference 'pi' has 2 factors but 'found' has 3"):
        plots.plot_factors(tmp_path / "g.png", [1.0, 2.0, 3.0], "found", references={"pi": [1.0, 2.0]}, title="t")
    assert not (tmp_path / "f.png").exists() and not (tmp_path / "g.png").exists()


def test_rows_a_plot_cannot_read_or_gives_twice_are_one_line(tmp_path):
    """plot_passkey_heatmap([{'length': 256}]) was a bare KeyError 'depth'; two rows of one cell, or two points of a
    series at one length, were drawn over each other (a vertical segment as if a curve) without a word (battery 20d
    open items). plot_passkey_methods draws the rows of its own length only."""
    from longrope.errors import UserError
    from longrope.evaluate.plots import plot_passkey_heatmap, plot_passkey_methods, plot_ppl_vs_length

    png = tmp_path / "p.png"
    for rows, said in (([{"length": 256}], "row 0 has no 'depth'"), ([3], "row 0 has no 'length'"),
                       ([{"length": 256, "depth": 0.5, "accuracy": 1.0}] * 2, "two rows for the same cell")):
        with pytest.raises(UserError, match=said):
            plot_passkey_heatmap(rows, png)
    with pytest.raises(UserError, match="series 'x' has two points at length 256"):
        plot_ppl_vs_length({"x": [(256, 3.0), (256, 4.0)]}, png)
    assert not png.exists()
    rows = [{"factors": "y", "depth": 0.5, "accuracy": a, "length": n} for n, a in ((256, 1.0), (512, 0.0))]
    plot_passkey_methods(rows, png, length=256, methods=["y"])
    assert png.exists()


def test_values_a_plot_cannot_place_are_one_line(tmp_path):
    """A text perplexity was a TypeError traceback and a text accuracy a ValueError; a negative perplexity, an
    accuracy of 2 and original_length -5 were drawn (or left off the axis) without a word (battery 25c). NaN and inf
    (a 16-bit overflow) are still drawn as gaps."""
    from longrope.errors import UserError
    from longrope.evaluate.plots import (
        plot_passkey_heatmap,
        plot_passkey_methods,
        plot_ppl_vs_length,
        plot_ruler_heatmaps,
    )

    png = tmp_path / "p.png"
    for points, kwargs, said in (([(256, "x")], {}, "perplexities must be numbers"),
                                 ([(256, -5.0)], {}, "got -5.0"),
                                 ([(256, 3.0)], {"original_length": -5}, "original_length must be a positive"),
                                 ([(256, 3.0)], {"original_length": "x"}, "original_length must be a positive")):
        with pytest.raises(UserError, match=said):
            plot_ppl_vs_length({"a": points}, png, **kwargs)
    for bad in ("x", 2.0, -0.5, math.inf):
        with pytest.raises(UserError, match="accuracies must be numbers in \\[0, 1\\]"):
            plot_passkey_heatmap([{"length": 256, "depth": 0.5, "accuracy": bad}], png)
        with pytest.raises(UserError, match="accuracies must be numbers in \\[0, 1\\]"):
            plot_passkey_methods([{"factors": "a", "depth": 0.5, "accuracy": bad}], png, length=256, methods=["a"])
        with pytest.raises(UserError, match="accuracies must be numbers in \\[0, 1\\]"):
            plot_ruler_heatmaps({"a": {("vt", 512): bad}}, ["vt"], [512], png)
    assert not png.exists()
    plot_ppl_vs_length({"a": [(256, math.nan), (512, math.inf), (1024, 3.0)]}, png, original_length=256)
    plot_passkey_heatmap([{"length": 256, "depth": 0.5, "accuracy": math.nan}], png)
    assert png.exists()


def test_a_perplexity_or_factor_near_the_largest_float_is_drawn_without_numpy_s_overflow_warning(tmp_path):
    """battery 25c's open item: a diverged model's perplexity of 1e308 drew, but numpy's "overflow encountered in exp"
    (matplotlib's log axis margins) reached the user, who can do nothing about it."""
    import warnings

    from longrope.evaluate import plots

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plots.plot_ppl_vs_length({"a": [(256, 1e308), (512, 1.5e308)], "b": [(256, 2.0), (512, 3.0)]},
                                 tmp_path / "p.png")
        plots.plot_factors(tmp_path / "f.png", [1.0, 1e300, 1.5e308], "found", references={}, title="t")
    assert all((tmp_path / f).read_bytes().startswith(b"\x89PNG") for f in ("p.png", "f.png"))
