"""The loss plot of a fine-tuning run (longrope.train.record)."""

from __future__ import annotations

import warnings


def test_a_loss_plot_with_no_finite_loss_is_drawn_without_a_warning(tmp_path):
    """A run whose every loss was NaN (fp16 overflow) drew its loss.png with matplotlib's 'No artists with labels
    found to put in legend' warning on stderr (battery 20d): the legend is drawn only when a line is."""
    from longrope.train.record import plot_losses

    entries = [{"step": 1, "loss": float("nan"), "kind": "long"}, {"step": 2, "loss": float("inf"), "kind": "short"}]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        plot_losses(entries, tmp_path / "loss.png")
    assert (tmp_path / "loss.png").read_bytes().startswith(b"\x89PNG")
