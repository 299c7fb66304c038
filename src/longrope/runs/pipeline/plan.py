"""A pipeline's plan: its format and shape checks, references between stages (``@NAME``, ``{model}``,
ratios), and a stage's settings resolved into the :class:`~longrope.runs.pipeline.stages.StageContext`
its check and its run see."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError
from longrope.io import check_no_link_loop, read_json
from longrope.runs.pipeline.stages import STAGES, StageContext, main_output, rope_facts

PLAN_FORMAT = "longrope-pipeline/1"
PLAN_KEYS = ("format", "description", "model", "stages")
STAGES_DIR = "stages"
LENGTH_FIELDS = ("target_length", "seq_len", "short_length", "length")
#: a stage's name: its folder stages/NAME and the build folders beside it (".NAME.tokenize-PID") must fit a file
#: name (255 bytes): a 300-character name failed when its stage started, after the stages before it
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_REF = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9_.-]*)(/.*)?$")
#: what a plan key takes, for the keys a whole stage's output (``@NAME``) is given to (a compare method's
#: ``factors`` holds one per ratio)
_TAKES = {"data": "data", "model": "model", "factors": "factors", "base_factors": "factors"}
#: the keys whose ``@NAME`` is the stage's folder itself, and the command that stage must run: a search's
#: ``reuse`` takes an earlier search's run folder (its main output, factors.json, was refused at stage start)
_FOLDER_OF = {"reuse": "search"}


def shipped_plan() -> Path:
    """The showcase plan shipped with the package (sized for the embedded tiny model)."""
    from longrope.embedded import ASSETS_DIR

    return ASSETS_DIR / "pipeline" / "tiny.json"


def load_plan(path: str | Path, model: str | None = None) -> dict:
    """Read and check a plan; ``model`` replaces its model. Errors name the stage and the fix."""
    path = Path(path)
    if not path.exists():
        check_no_link_loop(path, "--plan")
        raise ConfigError("plan", f"{{name}} {path} does not exist")
    try:
        plan = read_json(path, what="plan (JSON)", expect=None)
    except UserError as exc:
        raise ConfigError("plan", "{name} " + str(exc)) from None
    return check_plan(plan, model=model, source=str(path))


def check_plan(plan: Any, *, model: str | None = None, source: str = "plan", strict: bool = True) -> dict:
    """Validate the plan's shape (formats, keys, names, runs, references); return a copy with ``model``
    set. ``strict=False`` (a plan recorded in a manifest) tolerates top-level keys unknown today."""
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise UserError(f"{source} is not a {PLAN_FORMAT} plan (it needs \"format\": \"{PLAN_FORMAT}\")")
    unknown = [k for k in plan if k not in PLAN_KEYS]
    if strict and unknown:
        raise UserError(f"{source}: unknown key {unknown[0]!r} in the plan; a plan takes only "
                        + ", ".join(PLAN_KEYS) + " (settings belong in a stage)")
    plan = copy.deepcopy(plan)
    if model is not None:
        plan["model"] = model
    if not isinstance(plan.get("model"), str) or not plan["model"]:
        raise UserError(f"{source}: no model; give one in the plan (\"model\") or with --model")
    stages = plan.get("stages")
    if not isinstance(stages, list) or not stages:
        raise UserError(f"{source}: \"stages\" must be a non-empty list")
    seen: list[str] = []
    for i, st in enumerate(stages):
        _check_entry(st, i, seen, stages, source)
        seen.append(st["name"])
    return plan


def _check_entry(st: Any, i: int, seen: list[str], stages: list, source: str) -> None:
    """One stage entry's shape: its name, its run, and references to stages before it only."""
    if not isinstance(st, dict):
        raise UserError(f"{source}: stage {i + 1} must be a JSON object")
    name, run = st.get("name"), st.get("run")
    if not isinstance(name, str) or not _NAME.fullmatch(name):  # fullmatch: "yarn\n" is no name
        raise UserError(f"{source}: stage {i + 1} needs a \"name\" of letters, digits, '_', '-', '.' (at most 100)")
    if name in seen:
        raise UserError(f"{source}: two stages are named {name!r}; names must be unique")
    if run not in STAGES:
        raise UserError(f"{source}: stage {name!r} has run {run!r}; known: {', '.join(STAGES)}")
    for inside in ref_paths(st):
        if inside.is_absolute() or ".." in inside.parts:
            raise UserError(f"{source}: stage {name!r} refers to @.../{inside}: a reference may name a path "
                            "inside a stage's folder only (no '..')")
    for ref in refs(st):
        if ref not in seen:
            what = "a later stage" if any(s.get("name") == ref for s in stages) else "no stage"
            raise UserError(f"{source}: stage {name!r} refers to @{ref}, which is {what}; a stage may "
                            "only use the outputs of stages before it")
    runs = {s.get("name"): s.get("run") for s in stages if isinstance(s, dict)}
    for key, run in _FOLDER_OF.items():
        m = _REF.fullmatch(st[key]) if isinstance(st.get(key), str) else None
        if m and not m.group(2) and runs[m.group(1)] != run:
            raise UserError(f"{source}: stage {name!r} gives @{m.group(1)} as {key!r}, but @{m.group(1)} is a "
                            f"{runs[m.group(1)]} stage, not a {run} stage")
    for key, ref in _whole_refs(st):
        if _TAKES[key] not in STAGES[runs[ref]].gives:
            raise UserError(f"{source}: stage {name!r} gives @{ref} as {key!r}, but @{ref} is the output of a "
                            f"{runs[ref]} stage, not {_TAKES[key]}")


def _whole_refs(value: Any, key: str | None = None) -> list[tuple[str, str]]:
    """``(key, NAME)`` of the ``@NAME`` references (no ``/REL`` path) given to a key of :data:`_TAKES`."""
    if isinstance(value, str):
        m = _REF.fullmatch(value)
        return [(key, m.group(1))] if m and not m.group(2) and key in _TAKES else []
    if isinstance(value, dict):
        return [r for k, v in value.items() if k not in ("name", "run")
                for r in _whole_refs(v, k if k in _TAKES or key not in _TAKES else key)]
    if isinstance(value, list):
        return [r for v in value for r in _whole_refs(v, key)]
    return []


def ref_paths(value: Any) -> list[Path]:
    """The ``REL`` parts of the ``@NAME/REL`` references in ``value`` (a stage entry or any of its values)."""
    if isinstance(value, str):
        m = _REF.fullmatch(value)
        return [Path(m.group(2).lstrip("/"))] if m and m.group(2) else []
    if isinstance(value, dict):
        return [r for k, v in value.items() if k not in ("name", "run") for r in ref_paths(v)]
    if isinstance(value, list):
        return [r for v in value for r in ref_paths(v)]
    return []


def refs(value: Any) -> list[str]:
    """The stage names ``value`` (a stage entry or any of its values) refers to with ``@NAME``."""
    if isinstance(value, str):
        m = _REF.fullmatch(value)
        return [m.group(1)] if m else []
    if isinstance(value, dict):
        return [r for k, v in value.items() if k not in ("name", "run") for r in refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in refs(v)]
    return []


class Resolver:
    """Turns a stage's plan entry into concrete settings (references, ``{model}``, ratios)."""

    def __init__(self, plan: dict, out: Path) -> None:
        self.plan, self.out = plan, out
        self.entries = {s["name"]: s for s in plan["stages"]}
        self._original: int | None = None

    def stage_dir(self, name: str) -> Path:
        return self.out / STAGES_DIR / name

    def original_length(self) -> int:
        if self._original is None:
            self._original = int(rope_facts(self.plan["model"]).original_max_position_embeddings)
        return self._original

    def value(self, v: Any, key: str | None = None, *, ratios: bool = True) -> Any:
        """``v`` resolved; ``ratios``: a length given as a ratio (``8x``) becomes tokens of the plan model's L."""
        if isinstance(v, dict):
            return {k: self.value(x, k, ratios=ratios) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x, ratios=ratios) for x in v]
        if not isinstance(v, str):
            return v
        m = _REF.fullmatch(v)
        if m:
            folder = self.stage_dir(m.group(1))
            entry = self.entries[m.group(1)]
            if m.group(2):
                return str(folder / m.group(2).lstrip("/"))
            return str(folder if key in _FOLDER_OF else main_output(entry["run"], folder, entry))
        v = v.replace("{model}", self.plan["model"])
        if ratios and key in LENGTH_FIELDS and v.endswith("x"):
            from longrope.runs.compare import ratio_length

            return ratio_length(v, self.original_length())
        return v

    def stage(self, entry: dict) -> dict:
        """The stage's settings resolved (without its name, run and description). A stage that gives its own
        ``original_length`` (a baseline's, as ``longrope baseline --original-length``) reads its ratios of that L:
        they are left to its config, which reads them as the command does."""
        ratios = "original_length" not in entry
        return {k: self.value(v, k, ratios=ratios) for k, v in entry.items() if k not in ("name", "run", "description")}

    def context(self, name: str, **kw: Any) -> StageContext:
        """What stage ``name``'s check and run see (``kw``: machine, running, quiet, say)."""
        entry = self.entries[name]
        return StageContext(name=name, run=entry["run"], plan=self.plan, entry=entry, settings=self.stage(entry),
                            folder=self.stage_dir(name), model_is_output=bool(refs(entry.get("model"))), **kw)


def check_stage(run: str, cfg: dict, plan: dict, entry: dict | None = None, *, machine: bool = True) -> None:
    """Check a stage's settings ``cfg`` (resolved) before anything runs (outputs of earlier stages need not
    exist yet): its settings type's checks and the stage kind's plan check (RoPE facts; with ``machine``,
    the devices this machine has — only for a stage that will run here: a finished one, or one left out by
    ``--only``/``--until``, may have run on another machine). ``entry``: the stage as the plan writes it."""
    entry = entry or {}
    ctx = StageContext(name=entry.get("name", run), run=run, plan=plan, entry=entry, settings=cfg,
                       folder=Path("stage"), model_is_output=bool(refs(entry.get("model"))), machine=machine)
    STAGES[run].check_plan(ctx)
