"""The RULER cells of a comparison (a compare stage's ``ruler_ratios``): RULER accuracy of a (method, ratio)
measured through ``longrope eval ruler``'s code — its samples (lm-eval's RULER task code, stored in the
stage folder under ``ruler/samples/`` and reused while they match), its scoring (lm-eval's metric, on the
model the comparison has loaded, with the method's factors installed) — and kept in the comparison's
``cells.jsonl`` with the cell's perplexity.

A cell's ``ruler`` is the mean accuracy over ``ruler_tasks`` at the ratio's length (the number of the
paper's RULER table); ``ruler_tasks`` holds each task's cell as ``eval ruler`` records it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrope.errors import UserError

RULER_DIR = "ruler"


def protocol(config: Any) -> dict:
    """What decides a cell's RULER numbers besides its model and factors: a cell measured otherwise is measured
    again."""
    from longrope.data.ruler import LM_EVAL_VERSION

    return {"tasks": list(config.ruler_tasks), "samples": config.ruler_samples, "seed": config.seed,
            "lm_eval": LM_EVAL_VERSION}


def check_lengths(config: Any, lengths: dict[str, int]) -> None:
    """A RULER ratio shorter than RULER's shortest prompt is refused before any cell is measured."""
    from longrope.data.ruler import MIN_LENGTH

    short = [r for r in config.ruler_ratios if lengths[r] < MIN_LENGTH]
    if short:
        raise UserError(f"compare: ruler_ratios {short} are {lengths[short[0]]} tokens; RULER needs at least "
                        f"{MIN_LENGTH} (drop them from ruler_ratios)")


class RulerScorer:
    """RULER cells on one loaded model: its samples (made once per model's tokenizer) and lm-eval's ``HFLM``
    around the model (whatever factors it carries when a cell is scored)."""

    def __init__(self, config: Any, model_name: str, model: Any, tokenizer: Any, folder: Path,
                 lengths: dict[str, int], say: Callable[[str], None]) -> None:
        from longrope.evaluate.ruler import ruler_lm

        if tokenizer is None:
            raise UserError(f"compare: {model_name} has no tokenizer; RULER needs one (drop the ruler_ratios)")
        self.config, self.lengths = config, lengths
        self.samples = _samples(config, model_name, tokenizer, folder / RULER_DIR,
                                sorted({lengths[r] for r in config.ruler_ratios}), say)
        self.lm = ruler_lm(model, tokenizer, max_length=max(lengths[r] for r in config.ruler_ratios) + 256)

    def measure(self, method: str, ratio: str) -> dict:
        """The cell's RULER fields: the mean accuracy over the tasks, each task's cell, the protocol."""
        from longrope.evaluate import ruler as scoring  # module attribute: tests may replace score_cell

        length = self.lengths[ratio]
        cells = [scoring.score_cell(self.lm, method, task, length, self.samples[(task, length)])
                 for task in self.config.ruler_tasks]
        return {"ruler": sum(c.accuracy for c in cells) / len(cells),
                "ruler_tasks": {c.task: c.to_dict() for c in cells}, "ruler_protocol": protocol(self.config)}


def _samples(config: Any, model_name: str, tokenizer: Any, out: Path, lengths: list[int],
             say: Callable[[str], None]) -> dict[tuple[str, int], list[dict]]:
    """``{(task, length): rows}``: ``eval ruler``'s samples for this tokenizer (stored ones reused, the others
    made and stored in ``out``)."""
    from longrope.data.ruler import check_lm_eval
    from longrope.runs.ruler import RulerConfig, samples_for

    check_lm_eval()
    rcfg = RulerConfig(model=model_name, lengths=tuple(lengths), output=str(out), tasks=tuple(config.ruler_tasks),
                       samples=config.ruler_samples, seed=config.seed, quiet=True)
    return samples_for(rcfg, tokenizer, out, say)
