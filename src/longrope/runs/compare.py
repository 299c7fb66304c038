"""The comparison stage of a pipeline: several (model, factor set) methods × context ratios, measured
on the same held-out windows and the same seeded pass keys.

A *method* is a model (each loaded once) and, per ratio, the factor set it runs with there:

- ``"none"``: the model's own RoPE;
- ``"pi@8x"`` (``ntk``, ``yarn``, ``dynamic-ntk``, ``llama3``, ...): the closed-form set for the
  target ``8·L`` (L = the model's original context), built from the model's RoPE facts;
- a factor file or run folder (``factors.json``, a longrope ``config.json`` ...).

At ratio ``r`` every method is scored at ``r·L`` tokens: held-out perplexity (token-weighted, the
same windows for every method; windows hold ``BOS + r·L − 1`` tokens) and passkey accuracy (the
same seeded keys and depths). A LongRoPE set is applied as transformers applies it: its short
factors while the sequence fits in L, its long factors beyond.

Each (method, ratio) result is appended to ``cells.jsonl`` as soon as it is measured, so a killed
comparison resumes at the next unmeasured cell. ``goals`` are checked on the result: each compares
one cell (``"heldout_ppl.32x.ours"``) with a number or with ``K*`` another cell.
"""

from __future__ import annotations

import json
import math
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError, one_line, shown
from longrope.groups import (
    check_groups,
    depths_option,
    device_option,
    dtype_option,
    heldout_fraction_option,
    mode_option,
    run_device,
    seed_option,
    trials_option,
)
from longrope.options import MAX_COUNT, MAX_TOKENS, check_int, int_problem, option, text_problem

CELLS_FILE = "cells.jsonl"
METRICS = ("heldout_ppl", "passkey", "ruler")
# ASCII digits, matched whole (re.fullmatch): "８x" (a full-width digit) and "8x\n" were ratios of their own
_RATIO = re.compile(r"(\d+(?:\.\d+)?)x", re.ASCII)
_CLOSED_FORM = re.compile(r"([a-z0-9_-]+)@(\d+(?:\.\d+)?)x", re.ASCII)
_CELL = re.compile(r"(heldout_ppl|passkey|ruler)\.(\d+(?:\.\d+)?x)\.(.+)", re.ASCII | re.DOTALL)
#: the keys of a goal (a misspelt "at_lest" beside "at_most" was taken without a word)
GOAL_KEYS = ("name", "value", "at_most", "at_least")

__all__ = ["CompareConfig", "parse_ratio", "ratio_length", "check_methods", "check_goals", "evaluate_goals", "factor_set",
           "run_compare"]


def parse_ratio(text: Any) -> float:
    """``"8x"`` → 8.0 (a ratio of the model's original context); anything else is a UserError."""
    m = _RATIO.fullmatch(text) if isinstance(text, str) else None
    if not m or not 1 <= float(m.group(1)) < math.inf:
        raise UserError(f"{shown(text)} is not a context ratio; write it like \"8x\" (at least \"1x\")")
    return float(m.group(1))


def ratio_length(ratio: str | float, original_length: int) -> int:
    """Tokens at ``ratio`` × L (rounded): ``ratio`` a text ("8x") or a number >= 1, ``original_length`` an integer
    >= 1 (NaN was int()'s ValueError, -2 a length of -64, None a TypeError; battery 20b)."""
    from longrope.options import is_finite_number

    r = parse_ratio(ratio) if isinstance(ratio, str) else ratio
    if not is_finite_number(r) or not 1 <= r:
        raise UserError(f"a context ratio must be a finite number >= 1 or a text like \"8x\", got {shown(ratio)}")
    if (problem := int_problem(original_length, 1, MAX_TOKENS)) is not None:
        raise UserError(f"original_length {problem}")
    return int(round(float(r) * int(original_length)))


def check_methods(methods: Any, ratios: list[str]) -> None:
    """The ``methods`` table's shape: ``{name: {"model": M, "factors": {ratio: spec}}}``."""
    if not isinstance(methods, dict) or not methods:
        raise UserError("compare: 'methods' must be a JSON object {name: {\"model\": ..., \"factors\": {...}}}")
    if not isinstance(ratios, (list, tuple)):  # a text was searched as a substring ("2x" in "32x")
        raise UserError(f"compare: ratios must be a list like [\"1x\", \"8x\"], got {shown(ratios)}")
    for name, m in methods.items():
        if text_problem(name) or name != one_line(name):  # a name is a cell's key
            raise UserError(f"compare: a method's name must be a non-empty string on one line, got {shown(name)}")
        if not isinstance(m, dict) or text_problem(m.get("model")) \
                or not isinstance(m.get("factors"), dict):
            raise UserError(f"compare: method {name!r} needs \"model\" (a non-empty string) and \"factors\" "
                            "({ratio: spec})")
        extra = sorted(set(m) - {"model", "factors", "description"})
        if extra:
            raise UserError(f"compare: method {name!r} has unknown key(s) {extra}; it takes model, factors, "
                            "description")
        for ratio, spec in m["factors"].items():
            if ratio not in ratios:
                raise UserError(f"compare: method {name!r} names ratio {ratio!r}, which is not in ratios {ratios}")
            if not isinstance(spec, str) or not spec:
                raise UserError(f"compare: method {name!r} at {ratio}: the factor spec must be a non-empty string")
            cf = _CLOSED_FORM.fullmatch(spec)
            if cf:
                from longrope.rope.baselines import baseline_options

                baseline_options(cf.group(1))  # unknown method → UserError naming the known ones
                if not 1 <= float(cf.group(2)) <= MAX_TOKENS:  # "yarn@0x" failed when the stage started
                    raise UserError(f"compare: method {name!r} at {ratio}: {spec!r} extends to less than the "
                                    "original context or past any length; write the ratio like \"8x\" (at least "
                                    f"\"1x\", at most \"{MAX_TOKENS}x\")")


def _parse_operand(text: Any) -> tuple[float, str | None]:
    """``0.9*heldout_ppl.32x.yarn`` → (0.9, path); ``"heldout_ppl.1x.base"`` → (1, path); 3 → (3, None)."""
    from longrope.options import is_finite_number, is_number

    if is_number(text):  # a finite number: NaN was a goal never met, 10**400 an OverflowError (battery 20b)
        if not is_finite_number(text):
            raise UserError(f"compare: a goal bound must be a finite number, got {shown(text)}")
        return float(text), None
    if not isinstance(text, str):
        raise UserError(f"compare: a goal bound must be a number or 'K*metric.ratio.method', got {shown(text)}")
    factor, _, path = text.rpartition("*")
    try:
        k = float(factor) if factor else 1.0
    except ValueError:
        raise UserError(f"compare: {text!r}: the factor before '*' must be a number") from None
    if not (math.isfinite(k) and k > 0):  # "nan*" or "-1*" another cell: a bound no measurement meets
        raise UserError(f"compare: {text!r}: the factor before '*' must be a finite number > 0")
    return k, path


def _cell_path(path: str) -> tuple[str, str, str] | None:
    """``"heldout_ppl.1.5x.ours"`` → (metric, ratio, method); None when it does not read so."""
    m = _CELL.fullmatch(path)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _check_path(path: str, methods: dict, what: str, measured: dict[str, tuple]) -> None:
    """``path`` names a cell that is measured: ``measured`` gives per metric the ratios and the methods it is
    measured at (None: every one)."""
    parts = _cell_path(path)
    if parts is None:
        raise UserError(f"compare: {what} {path!r} must read METRIC.RATIO.METHOD with METRIC one of "
                        f"{', '.join(METRICS)}")
    metric, ratio, method = parts
    ratios, names = measured.get(metric, (None, None))
    if (method not in methods or ratio not in methods[method]["factors"]
            or (ratios is not None and ratio not in ratios) or (names is not None and method not in names)):
        raise UserError(f"compare: {what} {path!r} names a cell that is not measured (method {parts[2]!r} at "
                        f"{parts[1]})")


def check_goals(goals: Any, methods: dict, passkey_ratios: list[str] | None = None,
                passkey_methods: list[str] | None = None, ruler_ratios: list[str] | None = (),
                ruler_methods: list[str] | None = None) -> None:
    """Each goal: ``{"name", "value": PATH, "at_most" | "at_least": number or "K*PATH"}``, naming
    cells that are measured (a passkey cell only at ``passkey_ratios`` and for ``passkey_methods``,
    when given; a RULER cell only at ``ruler_ratios`` — none by default — and for ``ruler_methods``)."""
    measured = {"passkey": (passkey_ratios, passkey_methods), "ruler": (ruler_ratios, ruler_methods)}
    if not isinstance(goals, list):
        raise UserError("compare: 'goals' must be a list")
    names: set[str] = set()
    for g in goals:
        bounds = _check_goal(g, names)
        _check_path(g["value"], methods, f"goal {g['name']!r}", measured)
        _, ref = _parse_operand(g[bounds[0]])
        if ref is not None:
            _check_path(ref, methods, f"goal {g['name']!r}", measured)


def _check_goal(g: Any, names: set[str]) -> list[str]:
    """One goal's keys (``names``: the goals' names so far, each given once); its bound's key in a list."""
    if not isinstance(g, dict) or not isinstance(g.get("name"), str) or not isinstance(g.get("value"), str):
        raise UserError(f"compare: goal {shown(g)} needs a name and a value (METRIC.RATIO.METHOD)")
    unknown = sorted(set(g) - set(GOAL_KEYS), key=str)
    if unknown:
        raise UserError(f"compare: goal {g['name']!r} has unknown key(s) {unknown}; a goal takes "
                        f"{', '.join(GOAL_KEYS)}")
    if g["name"] in names:  # the result's goals are read by name: one hid the other
        raise UserError(f"compare: two goals are named {g['name']!r}; give each goal its own name")
    names.add(g["name"])
    bounds = [k for k in ("at_most", "at_least") if k in g]
    if len(bounds) != 1:
        raise UserError(f"compare: goal {g['name']!r} needs exactly one of at_most, at_least")
    return bounds


def _lookup(result: dict, path: str) -> float | None:
    parts = _cell_path(path)
    if parts is None:
        return None
    metric, ratio, method = parts
    return result.get(metric, {}).get(ratio, {}).get(method)


def evaluate_goals(goals: list[dict], result: dict) -> list[dict]:
    """Each goal with the measured value, its bound and whether it is met (None: not measured). The goals are
    checked as :func:`check_goals` checks them, less the cells they name (a goal naming no cell is not met)."""
    if not isinstance(goals, list) or not isinstance(result, dict):
        raise UserError(f"evaluate_goals takes a list of goals and a result dict, got {type(goals).__name__} and "
                        f"{type(result).__name__}")
    for g in goals:
        _check_goal(g, set())
        _parse_operand(g["at_most" if "at_most" in g else "at_least"])
    out = []
    for g in goals:
        op = "at_most" if "at_most" in g else "at_least"
        value = _lookup(result, g["value"])
        k, ref = _parse_operand(g[op])
        ref_value = _lookup(result, ref) if ref is not None else 1.0
        bound = None if ref_value is None else k * ref_value
        if value is None or bound is None:
            met = None
        elif not (math.isfinite(value) and math.isfinite(bound)):  # an overflow (inf, NaN) meets no goal: "ours at
            met = False  # most yarn" was met when both perplexities overflowed to inf (battery 25c)
        else:
            met = value <= bound if op == "at_most" else value >= bound
        ratio = (value / ref_value if ref is not None and value is not None and ref_value
                 and math.isfinite(value) and math.isfinite(ref_value) else None)
        out.append({"name": g["name"], "value": g["value"], op: g[op], "measured": value, "bound": bound,
                    "ratio_to_reference": ratio, "met": met})
    return out


# ------------------------------------------------------------------------------------------------
# The stage's settings.


@dataclass
class CompareConfig:
    """Everything a compare stage does (its plan keys are these fields; every check is here, once)."""

    data: str = option(help="shard folder whose held-out documents give the windows (e.g. \"@data\")")
    methods: dict = option(help="{name: {\"model\": M, \"factors\": {ratio: spec}}}: what is compared")
    ratios: tuple[str, ...] = option(help="context ratios of the model's original context, e.g. [\"1x\", \"8x\"]")
    samples: int | dict = option(5, "held-out windows per ratio: a number, or {ratio: number}")
    windows_per_doc: int | None = option(None, "most windows taken from one document",
                                         default_text="spread over the documents")
    seed: int = seed_option("seed of the windows and the pass keys")
    heldout_fraction: float = heldout_fraction_option("share of documents held out")
    passkey_trials: int = trials_option("keys per (ratio, depth); 0 measures no passkey", skip_zero=True)
    passkey_depths: tuple[float, ...] = depths_option()
    passkey_mode: str = mode_option()
    passkey_ratios: tuple[str, ...] | None = option(None, "the ratios whose passkey is measured",
                                                    default_text="every ratio")
    passkey_methods: tuple[str, ...] | None = option(None, "the methods whose passkey is measured",
                                                     default_text="every method")
    dtype: str = dtype_option()
    device: str = device_option()
    goals: tuple[dict, ...] = option((), "[{\"name\", \"value\": CELL, \"at_most\" | \"at_least\": bound}]")
    ruler_ratios: tuple[str, ...] = option((), "the ratios whose RULER accuracy is measured (eval ruler's samples "
                                               "and metric)", default_text="none")
    ruler_methods: tuple[str, ...] | None = option(None, "the methods whose RULER accuracy is measured",
                                                   default_text="every method")
    ruler_tasks: tuple[str, ...] = option(("niah_single_1",), "RULER tasks (eval ruler's names); a cell's ruler is "
                                                              "their mean accuracy")
    ruler_samples: int = option(10, "RULER samples per (method, ratio, task)")

    def __post_init__(self) -> None:
        from longrope.options import check_shapes

        check_shapes(self)  # the fields' kinds first: ratios="8x" was read letter by letter ("'8' is not a ratio")
        if not self.ratios:
            raise ConfigError("ratios", "{name} must be a list like [\"1x\", \"8x\"]")
        values = [parse_ratio(r) for r in self.ratios]
        if len(set(values)) != len(values):  # ["1x", "1x"] measured every cell twice, two equal table columns
            raise ConfigError("ratios", "{name} must give each ratio once, got " + f"{list(self.ratios)!r}")
        check_methods(self.methods, list(self.ratios))
        self._check_samples()
        check_groups(self)  # seed, heldout_fraction, the passkey protocol, dtype, device: the shared checks
        check_int(self, "windows_per_doc", 1, MAX_COUNT, optional=True)
        if self.passkey_trials == 0 and any(str(g.get("value", "")).startswith("passkey.") for g in self.goals
                                            if isinstance(g, dict)):
            raise ConfigError(("passkey_trials", "goals"), "{name0} 0 measures no passkey; drop the passkey {name1}")
        if self.passkey_ratios is not None and any(r not in self.ratios for r in self.passkey_ratios):
            raise ConfigError("passkey_ratios", "{name} must be a list of the ratios " + f"{list(self.ratios)}, "
                              f"got {list(self.passkey_ratios)!r}")
        if self.passkey_methods is not None and any(m not in self.methods for m in self.passkey_methods):
            raise ConfigError("passkey_methods", "{name} must be a list of the methods " + f"{list(self.methods)}, "
                              f"got {list(self.passkey_methods)!r}")
        self._check_ruler()
        check_goals(list(self.goals), self.methods, self._list(self.passkey_ratios), self._list(self.passkey_methods),
                    list(self.ruler_ratios), self._list(self.ruler_methods))

    @staticmethod
    def _list(v: tuple | None) -> list | None:
        return None if v is None else list(v)

    def _check_samples(self) -> None:
        counts = list(self.samples.values()) if isinstance(self.samples, dict) else [self.samples]
        if isinstance(self.samples, dict) and sorted(self.samples) != sorted(self.ratios):
            raise ConfigError("samples", "{name} must give a window count for each ratio " + str(list(self.ratios)))
        if any(int_problem(n, 1, MAX_COUNT) for n in counts):
            raise ConfigError("samples", "{name} must be an integer in " + f"[1, {MAX_COUNT:,}] or {{ratio: integer}}, "
                              f"got {self.samples!r}"[:300])

    def _check_ruler(self) -> None:
        from longrope.data.ruler import MAX_SAMPLES, TASKS, canonical_task

        if any(r not in self.ratios for r in self.ruler_ratios):
            raise ConfigError("ruler_ratios", "{name} must be a list of the ratios " + f"{list(self.ratios)}, "
                              f"got {list(self.ruler_ratios)!r}")
        if self.ruler_methods is not None and any(m not in self.methods for m in self.ruler_methods):
            raise ConfigError("ruler_methods", "{name} must be a list of the methods " + f"{list(self.methods)}, "
                              f"got {list(self.ruler_methods)!r}")
        try:
            self.ruler_tasks = tuple(dict.fromkeys(canonical_task(t) for t in self.ruler_tasks))
        except ConfigError as exc:
            raise ConfigError("ruler_tasks", exc.template) from None
        hub = [t for t in self.ruler_tasks if not TASKS[t].offline]
        if not self.ruler_tasks or hub:
            raise ConfigError("ruler_tasks", "{name} must name RULER tasks that run offline" + (
                f"; {hub[0]} {TASKS[hub[0]].why_not}" if hub else ", e.g. [\"niah_single_1\"]"))
        check_int(self, "ruler_samples", 1, MAX_SAMPLES)

    def samples_at(self, ratio: str) -> int:
        """Held-out windows at ``ratio``."""
        return int(self.samples[ratio] if isinstance(self.samples, dict) else self.samples)

    def measures_passkey(self, method: str, ratio: str) -> bool:
        """Whether the cell (``method``, ``ratio``) holds a passkey."""
        return (self.passkey_trials > 0 and (self.passkey_ratios is None or ratio in self.passkey_ratios)
                and (self.passkey_methods is None or method in self.passkey_methods))

    def measures_ruler(self, method: str, ratio: str) -> bool:
        """Whether the cell (``method``, ``ratio``) holds a RULER accuracy."""
        return ratio in self.ruler_ratios and (self.ruler_methods is None or method in self.ruler_methods)


# ------------------------------------------------------------------------------------------------


def _read_cells(path: Path) -> tuple[dict[tuple[str, str], dict], int]:
    """Cells measured so far, and how many lines were left out because they do not match their seal
    (edited by hand or damaged: their cells are measured again). A torn last line from a kill is
    dropped from the file."""
    from longrope.io import seal_intact, write_bytes

    cells: dict[tuple[str, str], dict] = {}
    broken = 0
    if not path.exists():
        return cells, broken
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a line torn by a kill: drop it, so the next append starts clean
        data = data[: data.rfind(b"\n") + 1]
        write_bytes(path, data)  # a new file (the old one may be shared with a cp -al copy of the run folder)
    for line in data.decode("utf-8", errors="replace").splitlines():
        try:
            c = json.loads(line)
            if not seal_intact(c):
                raise ValueError("unsealed")
            cells[(c["method"], c["ratio"])] = c
        except (ValueError, KeyError, TypeError, RecursionError):
            broken += bool(line.strip())
    return cells, broken


def _append_cell(path: Path, cell: dict) -> None:
    from longrope.io import append_text, sealed

    append_text(path, json.dumps(sealed(cell), sort_keys=True) + "\n", sync=True)


def factor_set(spec: str, info: Any, length: int) -> Any:
    """``none`` → None; ``METHOD@Nx`` → the closed-form set; else a factor file or folder."""
    from longrope.rope import FactorSet, make_baseline

    if not isinstance(spec, str):
        raise UserError(f"compare: a factor spec is a text (none, METHOD@Nx or a factor file), got {shown(spec)}")
    from longrope.models.families import require_supported

    require_supported(info)
    if spec == "none":
        return None
    L = int(info.original_max_position_embeddings)
    cf = _CLOSED_FORM.fullmatch(spec)
    if cf:
        return make_baseline(cf.group(1), rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                             original_length=L, target_length=ratio_length(float(cf.group(2)), L))
    from longrope.models.factor_files import check_fits

    fs = FactorSet.load(spec, rope_theta=info.rope_theta, original_length=L, target_length=max(length, L),
                        rotary_dim=int(info.rotary_dim))
    return check_fits(fs, info, source=spec, override_flag=None)  # a file made for another model: refused


def factor_digests(methods: dict, ratios: list[str]) -> dict[str, str]:
    """``"METHOD@RATIO"`` → SHA-256 of the factor set a cell applies, for every cell whose factors
    come from a file or folder, or are a dynamic NTK closed form away from its own ratio (other closed forms and
    ``none`` are fixed by their name). A cell measured
    with other factors than these is stale: a resumed comparison measures it again. The digest
    covers what is applied, not the file's provenance: a search resumed without a new best
    rewrites its factor file with other provenance, and its cells stay measured."""
    from longrope.models.loading import read_rope_info
    from longrope.rope.baselines import at_length, follows_length

    infos: dict[str, Any] = {}
    out: dict[str, str] = {}
    for name, m in methods.items():
        for ratio, spec in m["factors"].items():
            if ratio not in ratios or spec == "none":
                continue
            if m["model"] not in infos:
                infos[m["model"]] = read_rope_info(m["model"])
            info = infos[m["model"]]
            length = ratio_length(ratio, int(info.original_max_position_embeddings))
            fs = factor_set(spec, info, length)
            applied = at_length(fs, length)
            if _CLOSED_FORM.fullmatch(spec) and (not follows_length(fs) or applied.digest() == fs.digest()):
                continue  # bound by its name: the same set in every version (a dynamic one at its own ratio too)
            # the set applied at this length: a dynamic NTK set's of that length (a closed form's too), so that a
            # cell measured with the file's set at another length, before, is measured again (the reviews of
            # battery 27b)
            out[f"{name}@{ratio}"] = applied.digest()
    return out


def model_digests(methods: dict) -> dict[str, str | None]:
    """Each model the methods name → the SHA-256 of its content (:func:`longrope.models.loading.model_digest`;
    None for a hub model). A cell measured on a model that now holds other weights, config or tokenizer at
    the same path is stale; one whose model moved with the same content (a copied run folder) is not."""
    from longrope.models.loading import model_digest

    return {m["model"]: model_digest(m["model"]) for m in methods.values()}


def _stale_cell(cell: dict, methods: dict, digests: dict[str, str], needs_passkey: bool,
                ruler: dict | None = None, passkey: dict | None = None,
                models: dict[str, str | None] | None = None) -> str | None:
    """Why a measured cell no longer stands for its (method, ratio) of the plan, or None if it does:
    the method now names another model, other factors (for a factor file: other content, wherever
    it lies; for a closed form or ``none``: another name, and for a dynamic NTK closed form away from its own ratio
    a cell measured before such a set followed the length), or asks for a passkey the cell lacks or one by
    another ``passkey`` protocol (a cell written before cells recorded it is taken as is), or a RULER
    accuracy measured with ``ruler`` (its protocol) the cell lacks. (A
    cell of a method the plan no longer has is kept, unused.)"""
    name, ratio = cell["method"], cell["ratio"]
    m = methods.get(name)
    if m is None or ratio not in m["factors"]:
        return None
    now = (models or {}).get(m["model"])
    if cell.get("model_sha256") is not None and now is not None:  # the model's content decides, wherever it lies
        if cell["model_sha256"] != now:
            return "its model holds other files (weights, config or tokenizer)"
    elif cell.get("model", m["model"]) != m["model"]:
        return "the method names another model"
    if cell.get("factors_sha256") is not None:
        if cell["factors_sha256"] != digests.get(f"{name}@{ratio}"):
            return "its factors changed"
    elif f"{name}@{ratio}" in digests and _CLOSED_FORM.fullmatch(m["factors"][ratio]):
        return "it was measured before a dynamic NTK set followed the length"
    elif cell.get("factors", m["factors"][ratio]) != m["factors"][ratio]:
        return "the method names other factors"
    if needs_passkey and "passkey" not in cell:
        return "its passkey is asked for"
    if needs_passkey and cell.get("passkey_protocol", passkey) != passkey:
        return "its passkey protocol (trials, depths, mode) changed"
    if ruler is not None and cell.get("ruler_protocol") != ruler:
        return "its RULER is asked for" if "ruler" not in cell else "its RULER protocol changed"
    return None


def _peak_rss_mb() -> float | None:
    """The process's resident-memory high-water mark so far (MiB; None where the OS has no
    getrusage). It never decreases: after a cell it bounds what that cell, and every earlier one, held."""
    try:
        import resource
    except ImportError:
        return None
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return round(kib / 1024 / (1024 if sys.platform == "darwin" else 1), 1)


def run_compare(config: CompareConfig, folder: Path, *, log: Callable[[str], None] | None = None) -> dict:
    """Measure every (method, ratio) cell not yet in ``folder/cells.jsonl``; returns the tables.

    ``config`` has passed its own checks (:class:`CompareConfig`); what needs the data and the models
    (their original contexts, enough held-out windows) is checked here, before the first cell."""
    from longrope.data import TokenCorpus

    say = log or (lambda msg: print(msg, file=sys.stderr))
    corpus = TokenCorpus.open(config.data)
    original = _original_length(config.methods)
    lengths = {r: ratio_length(r, original) for r in config.ratios}
    windows = _heldout_windows(config, corpus, lengths)
    if config.ruler_ratios:
        from longrope.runs.compare_ruler import check_lengths

        check_lengths(config, lengths)
    cells_path = folder / CELLS_FILE
    cells, broken = _read_cells(cells_path)
    if broken:
        say(f"compare: {broken} line(s) of {cells_path} do not match their digest (edited or damaged); "
            "their cells are measured again")
    digests = factor_digests(config.methods, list(config.ratios))
    models = model_digests(config.methods)
    for (name, ratio), c in list(cells.items()):
        why = _stale_cell(c, config.methods, digests, config.measures_passkey(name, ratio),
                          _ruler_protocol(config, name, ratio), passkey_protocol(config), models)
        if why:
            say(f"compare: {name} at {ratio}: {why} since the cell was measured; measuring it again")
            del cells[(name, ratio)]
    todo = [(n, r) for n, m in config.methods.items() for r in config.ratios
            if r in m["factors"] and (n, r) not in cells]
    if cells:
        say(f"compare: {len(cells)} cell(s) already measured, {len(todo)} to go")
    for model_name in dict.fromkeys(m["model"] for m in config.methods.values()):
        mine = [(n, r) for n, r in todo if config.methods[n]["model"] == model_name]
        if mine:
            _measure_model(config, model_name, mine, corpus, windows, lengths, digests,
                           lambda cell: _keep_cell(cells_path, cells, cell), say, folder, models.get(model_name))
    result = tables(cells, config.methods, list(config.ratios), lengths)
    result["windows"] = {r: [d.doc_id for d in windows[r]] for r in config.ratios}
    result["goals"] = evaluate_goals(list(config.goals), result)
    result["factor_digests"] = digests
    result["model_digests"] = models
    return result


def passkey_protocol(config: CompareConfig) -> dict:
    """What decides a cell's pass keys besides its factors and the seed: kept with the cell, so that a
    resumed comparison whose protocol changed measures the passkey again rather than mixing protocols."""
    return {"trials": config.passkey_trials, "depths": list(config.passkey_depths), "mode": config.passkey_mode}


def _ruler_protocol(config: CompareConfig, method: str, ratio: str) -> dict | None:
    if not config.measures_ruler(method, ratio):
        return None
    from longrope.runs.compare_ruler import protocol

    return protocol(config)


def _original_length(methods: dict) -> int:
    """The original context L every method's model shares (ratios are of L); a model that cannot take
    factors, or models of different L, are refused."""
    from longrope.models.loading import read_rope_info

    L = {}
    for name in dict.fromkeys(m["model"] for m in methods.values()):
        info = read_rope_info(name)
        if not info.supported:
            raise UserError(f"compare: model {name} cannot take RoPE factors: {info.reason}")
        L[name] = int(info.original_max_position_embeddings)
    if len(set(L.values())) != 1:
        raise UserError(f"compare: the methods' models have different original contexts {L}; ratios would "
                        "mean different lengths")
    return next(iter(L.values()))


def _heldout_windows(config: CompareConfig, corpus: Any, lengths: dict[str, int]) -> dict[str, list]:
    """Per ratio, the held-out windows every method is scored on (the same for all)."""
    from longrope.evaluate.windows import resolve_bos, select_windows

    bos = resolve_bos(None, corpus=corpus) is not None
    windows = {}
    for r in config.ratios:
        windows[r] = select_windows(corpus, lengths[r], config.samples_at(r), split="heldout", seed=config.seed,
                                    heldout_fraction=config.heldout_fraction,
                                    windows_per_doc=config.windows_per_doc, bos=bos)
        if not windows[r]:
            raise UserError(f"compare: {config.data} holds no held-out window of {lengths[r]} tokens (ratio {r}); "
                            "lower the ratio or add longer held-out documents")
    return windows


def _keep_cell(path: Path, cells: dict, cell: dict) -> None:
    _append_cell(path, cell)
    cells[(cell["method"], cell["ratio"])] = cell


def _measure_model(config: CompareConfig, model_name: str, mine: list[tuple[str, str]], corpus: Any,
                   windows: dict, lengths: dict[str, int], digests: dict[str, str], keep: Callable[[dict], None],
                   say: Callable[[str], None], folder: Path, model_sha256: str | None = None) -> None:
    """Load ``model_name`` once and measure its cells ``mine`` (``(method, ratio)``), keeping each as it is done."""
    from longrope.evaluate.suite import factor_switch, ppl_text
    from longrope.evaluate.windows import resolve_bos
    from longrope.io import json_safe
    from longrope.models import inspect_model
    from longrope.models.loading import load_model, read_rope_info
    from longrope.rope.baselines import at_length
    from longrope.runs.evaluate import none_note

    model, tokenizer = load_model(model_name, dtype=config.dtype, device=run_device(config.device))
    info = inspect_model(model)
    plain = [n for n, r in mine if config.methods[n]["factors"][r] == "none"]
    if plain and (note := none_note(model_name, read_rope_info(model_name), "the method's factors")) is not None:
        say(f"note: method {', '.join(dict.fromkeys(plain))}: {note}")
    bos_id = resolve_bos(tokenizer, corpus=corpus, model=model)
    if tokenizer is not None:
        corpus.check_tokenizer(tokenizer, model_name=model_name)
    ruler = None
    if any(config.measures_ruler(n, r) for n, r in mine):
        from longrope.runs.compare_ruler import RulerScorer

        ruler = RulerScorer(config, model_name, model, tokenizer, folder, lengths, say)
    with factor_switch(model, []) as use:
        for name, ratio in mine:
            spec = config.methods[name]["factors"][ratio]
            use(at_length(factor_set(spec, info, lengths[ratio]), lengths[ratio]))  # dynamic NTK: at this length
            cell = _measure_cell(config, model, tokenizer, bos_id, name, ratio, windows[ratio], lengths[ratio])
            cell["model"] = model_name
            if model_sha256 is not None:
                cell["model_sha256"] = model_sha256
            if config.measures_ruler(name, ratio):
                cell.update(ruler.measure(name, ratio))
            if f"{name}@{ratio}" in digests:
                cell["factors_sha256"] = digests[f"{name}@{ratio}"]
            cell = json_safe(cell)  # a non-finite perplexity (a 16-bit overflow) is null: NaN is no JSON
            keep(cell)
            say(f"compare: {name:>18s} {ratio:>4s} ({lengths[ratio]} tokens)  ppl {ppl_text(cell['ppl'], '9.4f')}"
                + (f"  passkey {cell['passkey']:.2f}" if "passkey" in cell else "")
                + (f"  RULER {cell['ruler']:.2f}" if "ruler" in cell else "") + f"  [{spec}]")


def _measure_cell(config: CompareConfig, model: Any, tokenizer: Any, bos_id: int | None, name: str, ratio: str,
                  windows: list, length: int) -> dict:
    """One cell: held-out perplexity at ``length`` (and the passkey where the config asks for it)."""
    from longrope.evaluate.passkey import passkey_accuracy
    from longrope.evaluate.perplexity import evaluate_perplexity

    t0 = time.perf_counter()
    ppl = evaluate_perplexity(model, windows, length, bos_id=bos_id)
    cell = {"method": name, "ratio": ratio, "length": length, "factors": config.methods[name]["factors"][ratio],
            "ppl": ppl.ppl, "n_tokens": ppl.n_tokens, "n_windows": ppl.n_docs}
    if config.measures_passkey(name, ratio):
        if tokenizer is None:
            raise UserError(f"compare: {config.methods[name]['model']} has no tokenizer; the passkey needs one "
                            "(set passkey_trials to 0)")
        pk = passkey_accuracy(model, tokenizer, [length], depths=list(config.passkey_depths),
                              trials=config.passkey_trials, seed=config.seed, bos_id=bos_id, mode=config.passkey_mode)
        summary = pk.summary()
        cell.update(passkey=pk.accuracy, passkey_trials=config.passkey_trials * len(config.passkey_depths),
                    passkey_ci95=summary["ci95"], passkey_protocol=passkey_protocol(config))
        if "answer_nll" in summary:
            cell["passkey_answer_nll"] = summary["answer_nll"]
    cell["seconds"] = round(time.perf_counter() - t0, 3)
    rss = _peak_rss_mb()
    if rss is not None:
        cell["peak_rss_mb"] = rss
    return cell


def tables(cells: dict[tuple[str, str], dict], methods: dict, ratios: list[str], lengths: dict[str, int]) -> dict:
    """``heldout_ppl`` / ``passkey`` / ``ruler`` keyed by ratio then method (methods in plan order; a method not
    measured at a ratio is absent), and the tokens each ratio's perplexities rest on."""
    ppl: dict[str, dict[str, float]] = {}
    passkey: dict[str, dict[str, float]] = {}
    passkey_ci95: dict[str, dict[str, list]] = {}
    ruler: dict[str, dict[str, float]] = {}
    tokens: dict[str, int] = {}
    for r in ratios:
        for n in methods:
            c = cells.get((n, r))
            if c is None:
                continue
            ppl.setdefault(r, {})[n] = c["ppl"]
            tokens[r] = c["n_tokens"]
            if "passkey" in c:
                passkey.setdefault(r, {})[n] = c["passkey"]
                if c.get("passkey_ci95") is not None:
                    passkey_ci95.setdefault(r, {})[n] = list(c["passkey_ci95"])
            if "ruler" in c:
                ruler.setdefault(r, {})[n] = c["ruler"]
    trials = next((c.get("passkey_trials") for c in cells.values() if "passkey_trials" in c), None)
    return {"ratios": list(ratios), "lengths": lengths, "heldout_ppl": ppl, "heldout_tokens": tokens,
            "passkey": passkey, "passkey_ci95": passkey_ci95, "passkey_trials": trials, "ruler": ruler,
            "methods": {n: {"model": m["model"], "factors": m["factors"],
                            **({"description": m["description"]} if "description" in m else {})}
                        for n, m in methods.items()}}


def format_table(result: dict) -> str:
    """Markdown: what the numbers rest on (tokens per ratio, keys per passkey cell), then one row per method, PPL,
    passkey (with its 95 % Wilson interval) and RULER per ratio."""
    ratios = result["ratios"]
    pk = [r for r in ratios if r in result["passkey"]]
    rl = [r for r in ratios if r in result.get("ruler", {})]
    lengths, tokens = result.get("lengths", {}), result.get("heldout_tokens", {})
    notes = ["PPL: held-out perplexity at each ratio's length, on the same windows for every method ("
             + ", ".join(f"{r}: {lengths.get(r, '?'):,} tokens per window, {tokens[r]:,} tokens scored"
                         if isinstance(lengths.get(r), int) else f"{r}: {tokens[r]:,} tokens scored"
                         for r in ratios if r in tokens) + ")."]
    if pk:
        keys = result.get("passkey_trials")
        notes.append(f"passkey: greedy accuracy on {keys if keys is not None else 'the same'} seeded keys per cell, "
                     "[95 % Wilson interval].")
    head = "| method | " + " | ".join([f"PPL {r}" for r in ratios] + [f"passkey {r}" for r in pk]
                                    + [f"RULER {r}" for r in rl]) + " |"
    rows = [*notes, "", head, "|---|" + "---:|" * (len(ratios) + len(pk) + len(rl))]

    def cell(metric: str, r: str, n: str, fmt: str) -> str:
        v = result[metric].get(r, {}).get(n)
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "—"
        ci = result.get("passkey_ci95", {}).get(r, {}).get(n) if metric == "passkey" else None
        return format(v, fmt) + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")

    for n in result["methods"]:
        rows.append(f"| {n} | " + " | ".join([cell("heldout_ppl", r, n, ".2f") for r in ratios]
                                            + [cell("passkey", r, n, ".2f") for r in pk]
                                            + [cell("ruler", r, n, ".2f") for r in rl]) + " |")
    return "\n".join(rows)
