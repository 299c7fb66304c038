"""What a training run leaves behind while it works: the loss log, the loss plot, the progress bar.

- ``train_log.jsonl``: one JSON object per optimizer step (step, loss, window kind, learning rate,
  gradient norm, tokens, timing), appended and flushed as the run goes. On resume the lines after the
  checkpoint's step (written by the killed run) are dropped, atomically, so the log always reads as
  one uninterrupted curve.
- ``loss.png``: loss against step (short-window steps marked apart), rewritten atomically at each
  checkpoint and at the end.
- A tqdm bar on stderr with the loss, tokens/s and tqdm's ETA.
"""

from __future__ import annotations

import io
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

from longrope.io import append_text, write_bytes, write_text

__all__ = ["LossLog", "plot_losses", "progress_bar"]


class LossLog:
    """Append-only JSON-lines log of training steps."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def read(self) -> list[dict[str, Any]]:
        """Every complete entry (a line cut short by a kill is skipped)."""
        if not self.path.is_file():
            return []
        out = []
        with open(self.path, "rb") as f:  # bytes: a line that is not UTF-8 is damaged like any other
            for line in f:
                if not line.endswith(b"\n"):
                    break
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError):  # torn or damaged (not UTF-8 too): the log ends here
                    break
                if not _well_formed(entry):  # edited by hand: the log ends here too
                    break
                out.append(entry)
        return out

    def truncate(self, step: int) -> list[dict[str, Any]]:
        """Keep the entries of steps ``<= step`` (atomic rewrite); returns them."""
        kept = [e for e in self.read() if int(e.get("step", 0)) <= step]
        write_text(self.path, "".join(json.dumps(e) + "\n" for e in kept))
        return kept

    def append(self, entry: dict[str, Any]) -> None:
        append_text(self.path, json.dumps(entry) + "\n")


def _well_formed(entry: Any) -> bool:
    """Whether a line of the log has the fields its readers use, of their kinds: a step (an int >= 1), a loss (a
    number; NaN for a step with no targets), a kind (long or short) and a segment (an int or null). A hand-edited
    line such as ``"loss": "abc"`` passed the step check and crashed the export with a traceback after the whole
    training (battery 19c)."""
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    return (isinstance(entry, dict) and isinstance(entry.get("step"), int) and not isinstance(entry["step"], bool)
            and entry["step"] >= 1 and number(entry.get("loss")) and entry.get("kind") in ("long", "short")
            and (entry.get("segment") is None or (isinstance(entry["segment"], int)
                                                  and not isinstance(entry["segment"], bool))))


def plot_losses(entries: list[dict[str, Any]], path: str | os.PathLike, *, title: str = "Fine-tuning loss") -> None:
    """Loss per step (long windows as a line, short-window steps as dots), written atomically."""
    from longrope.evaluate.plots import legend, quiet_matplotlib_cache_notes

    quiet_matplotlib_cache_notes()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6.4, 4.0))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for kind, style in (("long", {"linestyle": "-", "marker": None}), ("short", {"linestyle": "", "marker": "."})):
        pts = [(e["step"], e["loss"]) for e in entries if e.get("kind") == kind and math.isfinite(e["loss"])]
        if pts:
            seg = next(e.get("segment") for e in entries if e.get("kind") == kind)
            label = f"{kind} windows" + (f" (segments <= {seg} tokens)" if seg else "")
            ax.plot([s for s, _ in pts], [v for _, v in pts], label=label, **style)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss (token mean, nats)")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    legend(ax)  # none when no loss was finite (matplotlib warned of an empty legend)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    write_bytes(path, buf.getvalue())


def progress_bar(total: int, initial: int, *, enabled: bool):
    """A tqdm bar over optimizer steps on stderr (disabled: a no-op bar)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, unit="step", desc="finetune", disable=not enabled,
                file=sys.stderr, dynamic_ncols=True, smoothing=0.1)
