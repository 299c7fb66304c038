"""Helpers of the benchmark scripts' tests: the evaluation plan they run scaled down, and the factor folders
their pass-key runs read (a pass-key run names each set by its folder)."""

from __future__ import annotations

import json
from pathlib import Path

from longrope.cli import main as cli


def run_plan(plan: dict, out: Path, model: str = "tiny") -> Path:
    """``plan`` (a pipeline plan, edited by the test) run into ``out`` on ``model``."""
    plan_file = out.with_name(out.name + ".plan.json")
    plan_file.write_text(json.dumps(plan))
    assert cli(["pipeline", "--plan", str(plan_file), "--model", model, "-o", str(out), "--quiet"]) == 0
    return out


def factor_folders(root: Path, sets: dict[str, Path], *, yarn_target: int | None = None) -> dict[str, Path]:
    """A factor folder ``root/NAME`` holding a copy of each ``sets[NAME]``, and ``root/yarn`` with YaRN's
    factors for ``yarn_target`` on the embedded model when given; the folders by name."""
    folders = {}
    if yarn_target is not None:
        folders["yarn"] = root / "yarn"
        assert cli(["baseline", "--model", "tiny", "--method", "yarn", "--target-length", str(yarn_target),
                    "-o", str(folders["yarn"] / "factors.json")]) == 0
    for name, source in sets.items():
        folders[name] = root / name
        folders[name].mkdir(parents=True, exist_ok=True)
        (folders[name] / "factors.json").write_bytes(source.read_bytes())
    return folders
