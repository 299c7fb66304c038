"""``longrope pipeline``: LongRoPE's progressive recipe as declared stages, resumable, in one folder.

A *plan* (JSON, ``format: longrope-pipeline/1``) names a model and a list of stages; each stage is
one of the package's runs with its settings written as that run's config fields:

- ``tokenize``  documents → a shard folder (``inputs``: ``role=PATH`` or ``"embedded"``, the
  shipped search, held-out and fine-tuning documents; ``tokenizer``, default the model);
- ``baseline``  a closed-form factor set (``method``, ``target_length``) → ``factors.json``;
- ``search``    ``longrope search`` (``SearchConfig``) → ``factors.json``; with ``base_factors`` on
  a fine-tuned model it is the progressive second search (λ_final = λ_ft ⊙ λ'), with ``short`` the
  short-context recovery;
- ``finetune``  ``longrope finetune`` (``FinetuneConfig``) → ``model/`` (a Hugging Face folder);
- ``compare``   methods × ratios on the same held-out windows (:mod:`longrope.runs.compare`);
- ``export``    ``longrope export`` → ``model/`` (or ``model.gguf``).

Values may refer to the plan: ``"{model}"`` is the pipeline's model; ``"@NAME"`` is stage NAME's
main output (the path above), ``"@NAME/REL"`` a path inside its folder; lengths
(``target_length``, ``seq_len``, ``short_length``) may be ratios of the model's original context
(``"8x"``). A stage may only refer to stages before it.

Layout: ``OUT/`` is a run folder (``config.json``, ``run.json``, ``summary.json``) with
``pipeline.json`` (the manifest: the plan, and per stage its resolved config, inputs, outputs,
metrics, status and times, rewritten atomically at every transition) and ``stages/NAME/``, each an
ordinary run folder of its command (``longrope search --config OUT/stages/NAME`` re-runs one alone).
``--resume`` continues a killed pipeline: finished stages are skipped, a search or fine-tuning
stage resumes from its own checkpoint, a comparison from its last measured cell.
"""

from __future__ import annotations

import copy
import re
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError
from longrope.io import read_json, write_json, write_text
from longrope.options import MAX_COUNT, MAX_SEED, config_to_dict, int_problem, option
from longrope.runs import RunSpec
from longrope.settings import (
    HELDOUT_FRACTION,
    PASSKEY_DEPTHS,
    PASSKEY_MAX_TRIALS,
    check_heldout_fraction,
    check_passkey_depths,
)

COMMAND = "pipeline"
PLAN_FORMAT = "longrope-pipeline/1"
MANIFEST_FORMAT = "longrope-pipeline-manifest/1"
MANIFEST = "pipeline.json"
STAGES_DIR = "stages"
STAGE_RUNS = ("tokenize", "baseline", "search", "finetune", "compare", "export")
PLAN_KEYS = ("format", "description", "model", "stages")
LENGTH_FIELDS = ("target_length", "seq_len", "short_length")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REF = re.compile(r"^@([A-Za-z0-9][A-Za-z0-9_.-]*)(/.*)?$")


def shipped_plan() -> Path:
    """The showcase plan shipped with the package (sized for the embedded tiny model)."""
    from longrope.embedded import ASSETS_DIR

    return ASSETS_DIR / "pipeline" / "tiny.json"


@dataclass
class PipelineConfig:
    """Everything ``longrope pipeline`` does."""

    output: str = option(help="pipeline folder (created; holds every stage)", short="-o", metavar="OUT")
    plan: str | None = option(None, "plan file (JSON, longrope-pipeline/1)", metavar="FILE",
                              default_text="the shipped showcase plan (sized for --model tiny)")
    model: str | None = option(None, "model; replaces the plan's 'model'", metavar="M",
                               default_text="the plan's")
    only: str | None = option(None, "run this one stage (the stages it refers to must be done)", metavar="STAGE")
    until: str | None = option(None, "stop after this stage (--resume continues)", metavar="STAGE")
    resume: bool = option(False, "continue the pipeline in the folder: finished stages are skipped, an interrupted "
                                 "one resumes from its checkpoint")
    quiet: bool = option(False, "no progress bars")

    def __post_init__(self) -> None:
        if not isinstance(self.output, str) or not self.output.strip():
            raise ConfigError("output", "{name} is required")
        if self.only is not None and self.until is not None:
            raise ConfigError(("only", "until"), "give only one of {name0} and {name1}")


# ------------------------------------------------------------------------------------------------
# The plan.


def load_plan(path: str | Path, model: str | None = None) -> dict:
    """Read and check a plan; ``model`` replaces its model. Errors name the stage and the fix."""
    path = Path(path)
    if not path.exists():
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
        if not isinstance(st, dict):
            raise UserError(f"{source}: stage {i + 1} must be a JSON object")
        name, run = st.get("name"), st.get("run")
        if not isinstance(name, str) or not _NAME.fullmatch(name):  # fullmatch: "yarn\n" is no name
            raise UserError(f"{source}: stage {i + 1} needs a \"name\" of letters, digits, '_', '-', '.'")
        if name in seen:
            raise UserError(f"{source}: two stages are named {name!r}; names must be unique")
        if run not in STAGE_RUNS:
            raise UserError(f"{source}: stage {name!r} has run {run!r}; known: {', '.join(STAGE_RUNS)}")
        for inside in _ref_paths(st):
            if inside.is_absolute() or ".." in inside.parts:
                raise UserError(f"{source}: stage {name!r} refers to @.../{inside}: a reference may name a path "
                                "inside a stage's folder only (no '..')")
        for ref in _refs(st):
            if ref not in seen:
                what = "a later stage" if any(s.get("name") == ref for s in stages) else "no stage"
                raise UserError(f"{source}: stage {name!r} refers to @{ref}, which is {what}; a stage may "
                                "only use the outputs of stages before it")
        seen.append(name)
    return plan


def _ref_paths(value: Any) -> list[Path]:
    """The ``REL`` parts of the ``@NAME/REL`` references in ``value`` (a stage entry or any of its values)."""
    if isinstance(value, str):
        m = _REF.fullmatch(value)
        return [Path(m.group(2).lstrip("/"))] if m and m.group(2) else []
    if isinstance(value, dict):
        return [r for k, v in value.items() if k not in ("name", "run") for r in _ref_paths(v)]
    if isinstance(value, list):
        return [r for v in value for r in _ref_paths(v)]
    return []


def _refs(value: Any) -> list[str]:
    if isinstance(value, str):
        m = _REF.fullmatch(value)
        return [m.group(1)] if m else []
    if isinstance(value, dict):
        return [r for k, v in value.items() if k not in ("name", "run") for r in _refs(v)]
    if isinstance(value, list):
        return [r for v in value for r in _refs(v)]
    return []


def main_output(run: str, folder: Path, entry: dict | None = None) -> Path:
    """What ``@NAME`` means for a stage of ``run`` in ``folder`` (``entry``: its plan entry)."""
    if run == "export" and (entry or {}).get("format") == "gguf":
        return folder / "model.gguf"
    return {"tokenize": folder, "baseline": folder / "factors.json", "search": folder / "factors.json",
            "finetune": folder / "model", "compare": folder, "export": folder / "model"}[run]


def _rope_facts(model: str) -> Any:
    """The model's RoPE facts; a model the factors cannot apply to is a one-line error."""
    from longrope.models.loading import read_rope_info

    info = read_rope_info(model)
    if not info.supported:
        raise UserError(f"model {model} cannot take RoPE factors: {info.reason}")
    return info


class _Resolver:
    """Turns a stage's plan entry into concrete settings (references, ``{model}``, ratios)."""

    def __init__(self, plan: dict, out: Path) -> None:
        self.plan, self.out = plan, out
        self.entries = {s["name"]: s for s in plan["stages"]}
        self._original: int | None = None

    def stage_dir(self, name: str) -> Path:
        return self.out / STAGES_DIR / name

    def original_length(self) -> int:
        if self._original is None:
            self._original = int(_rope_facts(self.plan["model"]).original_max_position_embeddings)
        return self._original

    def value(self, v: Any, key: str | None = None) -> Any:
        if isinstance(v, dict):
            return {k: self.value(x, k) for k, x in v.items()}
        if isinstance(v, list):
            return [self.value(x) for x in v]
        if not isinstance(v, str):
            return v
        m = _REF.fullmatch(v)
        if m:
            folder = self.stage_dir(m.group(1))
            entry = self.entries[m.group(1)]
            return str(folder / m.group(2).lstrip("/") if m.group(2) else main_output(entry["run"], folder, entry))
        v = v.replace("{model}", self.plan["model"])
        if key in LENGTH_FIELDS and v.endswith("x"):
            from longrope.runs.compare import ratio_length

            return ratio_length(v, self.original_length())
        return v

    def stage(self, entry: dict) -> dict:
        return {k: self.value(v, k) for k, v in entry.items() if k not in ("name", "run", "description")}


# ------------------------------------------------------------------------------------------------
# Stage runners: (settings, stage folder, plan, quiet, log) -> (outputs, metrics). Their settings
# have passed :func:`check_stage` (every stage is checked before the first one runs).


def _run_tokenize(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    from longrope.data import tokenize_corpus
    from longrope.data.tokenizer_loading import load_tokenizer
    from longrope.embedded import document_paths

    name = cfg.get("tokenizer") or plan["model"]
    specs: list[str] = []
    for item in cfg["inputs"]:
        if item == "embedded":
            specs += [f"{role}={p}" for role in ("search", "heldout", "train") for p in document_paths(role)]
        else:
            specs.append(item)
    tokenizer = load_tokenizer(name)
    report = tokenize_corpus(tokenizer, specs, folder, tokenizer_name=name, progress=not quiet)
    meta = read_json(folder / "meta.json", what="shard folder's meta.json")
    return {"shards": str(folder)}, {"documents": meta.get("n_docs"), "tokens": meta.get("n_tokens"),
                                     "skipped": len(getattr(report, "skipped", []) or [])}


def _baseline_set(cfg: dict, model: str) -> Any:
    """The factor set a baseline stage writes: ``make_baseline`` on ``model``'s RoPE facts, the stage's
    method, target length and options (the stage checks this before anything runs, and runs it)."""
    from longrope.rope import make_baseline

    info = _rope_facts(model)
    options = {k: v for k, v in cfg.items() if k not in ("method", "target_length", "model")}
    return make_baseline(cfg["method"], rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                         original_length=int(info.original_max_position_embeddings),
                         target_length=cfg["target_length"], **options)


def _run_baseline(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    fs = _baseline_set(cfg, cfg.get("model", plan["model"]))
    folder.mkdir(parents=True, exist_ok=True)
    fs.save(folder / "factors.json")
    return {"factors": str(folder / "factors.json")}, {"method": cfg["method"], "target_length": cfg["target_length"]}


def _run_config_stage(command: str, cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable,
                      resume: bool) -> dict:
    from longrope.options import config_from_dict
    from longrope.runs import get_run

    spec = get_run(command)
    values = {"model": plan["model"], **cfg, spec.output_field: str(folder), "resume": resume, "quiet": quiet}
    return spec.run(config_from_dict(spec.config, values), log=say)


def _run_search(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    resume = (folder / "checkpoint.json").exists()
    if not resume and folder.exists():  # stopped before its first evaluation: nothing to keep
        from longrope.runs.folder import FolderLock

        with FolderLock.acquire(folder, "search"):  # never under a search another process runs in it
            shutil.rmtree(folder)
    if resume and "fitness" not in cfg:  # a search the plan leaves the fitness of goes on with the one it ran
        cfg = {**cfg, "fitness": _recorded_fitness(folder)}
    result = _run_config_stage("search", cfg, folder, plan, quiet, say, resume)
    s = result["search"]
    metrics = {k: s.get(k) for k in ("best_ppl", "length", "candidates", "full_evals", "seconds", "stop_reason")}
    if "heldout" in result:
        metrics["heldout_ppl"] = result["heldout"]["ppl"]
    return {"factors": str(folder / "factors.json")}, metrics


def _recorded_fitness(folder: Path) -> str | None:
    """The fitness the search in ``folder`` started with (None when its record is unreadable: the search's own
    resume check then names the difference): a stage started before the joint default meant another fitness
    than a plan without ``fitness`` resolves to today."""
    from longrope.runs.folder import read_run_config
    from longrope.runs.search import recorded_config

    try:
        command, saved = read_run_config(folder)
    except UserError:
        return None
    fitness = recorded_config(saved).get("fitness") if command == "search" else None
    return fitness if isinstance(fitness, str) else None


def _run_finetune(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    result = _run_config_stage("finetune", cfg, folder, plan, quiet, say, True)
    metrics = {k: result.get(k) for k in ("steps", "tokens", "final_loss", "seconds")}
    return {"model": str(folder / "model")}, metrics


#: The compare stage's settings and their defaults.
COMPARE_DEFAULTS = {"data": None, "methods": None, "ratios": None, "samples": 5, "windows_per_doc": None, "seed": 0,
                    "heldout_fraction": HELDOUT_FRACTION, "passkey_trials": 4, "passkey_depths": list(PASSKEY_DEPTHS),
                    "passkey_mode": "generate", "passkey_ratios": None, "passkey_methods": None, "dtype": "float32", "device": "cpu",
                    "goals": []}


def _compare_settings(cfg: dict, *, machine: bool = True) -> dict:
    from longrope.runs.compare import check_goals, check_methods, parse_ratio

    extra = sorted(set(cfg) - set(COMPARE_DEFAULTS))
    if extra:
        raise UserError(f"a compare stage takes {', '.join(COMPARE_DEFAULTS)}; not {extra}")
    c = {**COMPARE_DEFAULTS, **cfg}
    for key in ("data", "methods", "ratios"):
        if c[key] is None:
            raise UserError(f"a compare stage needs {key!r}")
    if not isinstance(c["ratios"], list) or not c["ratios"]:
        raise UserError("a compare stage's ratios must be a list like [\"1x\", \"8x\"]")
    for r in c["ratios"]:
        parse_ratio(r)
    check_methods(c["methods"], c["ratios"])
    samples = c["samples"]
    counts = list(samples.values()) if isinstance(samples, dict) else [samples]
    if isinstance(samples, dict) and sorted(samples) != sorted(c["ratios"]):
        raise UserError(f"a compare stage's samples must give a window count for each ratio {c['ratios']}")
    if any(int_problem(n, 1, MAX_COUNT) for n in counts):
        raise UserError(f"a compare stage's samples must be an integer in [1, {MAX_COUNT:,}] or {{ratio: integer}}, "
                        f"got {samples!r}"[:300])
    wpd = c["windows_per_doc"]
    for key, v, lo, hi in (("seed", c["seed"], 0, MAX_SEED), ("passkey_trials", c["passkey_trials"], 0, PASSKEY_MAX_TRIALS),
                           ("windows_per_doc", 1 if wpd is None else wpd, 1, MAX_COUNT)):
        problem = int_problem(v, lo, hi)
        if problem:
            raise UserError(f"a compare stage's {key} {problem}")
    try:
        check_passkey_depths(c["passkey_depths"], "passkey_depths")
        check_heldout_fraction(c["heldout_fraction"])
    except ConfigError as exc:
        raise UserError(f"a compare stage's {exc}") from None
    from longrope.models.loading import resolve_device, resolve_dtype

    resolve_dtype(c["dtype"])
    if machine:  # a stage that will not run here need not find its device on this machine
        try:
            resolve_device(c["device"], fix="give cpu or a device this machine has")
        except UserError as exc:
            raise UserError(f"a compare stage's {exc}") from None
    if c["passkey_trials"] == 0 and any(str(g.get("value", "")).startswith("passkey.") for g in c["goals"]
                                        if isinstance(g, dict)):
        raise UserError("a compare stage with passkey_trials 0 measures no passkey; drop its passkey goals")
    pk = c["passkey_ratios"]
    if pk is not None and (not isinstance(pk, list) or any(r not in c["ratios"] for r in pk)):
        raise UserError(f"a compare stage's passkey_ratios must be a list of its ratios {c['ratios']}, got {pk!r}")
    pm = c["passkey_methods"]
    if pm is not None and (not isinstance(pm, list) or any(not isinstance(m, str) or m not in c["methods"]
                                                           for m in pm)):
        raise UserError(f"a compare stage's passkey_methods must be a list of its methods {list(c['methods'])}, "
                        f"got {pm!r}")
    check_goals(c["goals"], c["methods"], pk, pm)
    from longrope.settings import PASSKEY_MODES

    if c["passkey_mode"] not in PASSKEY_MODES:
        raise UserError(f"a compare stage's passkey_mode must be one of {', '.join(PASSKEY_MODES)}, got "
                        f"{c['passkey_mode']!r}")
    return c


def _run_compare(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    from longrope.runs.compare import format_table, run_compare

    c = _compare_settings(cfg)
    folder.mkdir(parents=True, exist_ok=True)
    result = run_compare(data=c["data"], methods=c["methods"], ratios=c["ratios"], folder=folder,
                         samples=c["samples"] if isinstance(c["samples"], dict) else int(c["samples"]),
                         windows_per_doc=None if c["windows_per_doc"] is None else int(c["windows_per_doc"]),
                         seed=int(c["seed"]),
                         heldout_fraction=float(c["heldout_fraction"]), passkey_trials=int(c["passkey_trials"]),
                         passkey_depths=tuple(float(d) for d in c["passkey_depths"]), passkey_mode=c["passkey_mode"],
                         dtype=c["dtype"], device=c["device"], goals=c["goals"], passkey_ratios=c["passkey_ratios"],
                         passkey_methods=c["passkey_methods"], log=say)
    write_json(folder / "summary.json", result)
    write_text(folder / "compare.md", format_table(result) + "\n")
    say("compare:\n" + format_table(result))
    for g in result["goals"]:
        say(f"goal {'met' if g['met'] else 'MISSED' if g['met'] is False else 'not measured'}: {g['name']} "
            f"({g['value']} = {g['measured']}, bound {g['bound']})")
    return {"summary": str(folder / "summary.json")}, {k: result[k] for k in ("heldout_ppl", "passkey", "goals",
                                                                              "factor_digests")}


def _run_export(cfg: dict, folder: Path, plan: dict, quiet: bool, say: Callable) -> tuple[dict, dict]:
    from longrope.models.exporter import export_model

    fmt = cfg.get("format", "hf")
    folder.mkdir(parents=True, exist_ok=True)
    out = export_model(cfg.get("model", plan["model"]), cfg["factors"], main_output("export", folder, cfg), fmt=fmt,
                       dtype=cfg.get("dtype"), overwrite=True)
    for w in out["warnings"]:
        say(f"export: warning: {w}")
    return {"model": out["output"]}, {"format": fmt, "warnings": out["warnings"]}


def _wrong(key: str, got: Any, expected: str) -> UserError:
    """A plan value of the wrong kind: names the key, what it got and what it takes."""
    return UserError(f"{key!r} must be {expected}, got {got!r}")


def _facts_model(entry: dict, cfg: dict, plan: dict) -> str | None:
    """The model whose RoPE facts a stage's settings are checked against before anything runs: its own
    ``model``, or the pipeline's when it has none or when it is an earlier stage's output (which does
    not exist yet, and keeps the RoPE of the pipeline's model); None when it is no string."""
    model = cfg.get("model", plan["model"])
    if not isinstance(model, str):
        return None
    return plan["model"] if _refs(entry.get("model")) else model


def _check_search_plan(config: Any, model: str | None) -> None:
    """What ``longrope search`` checks from the model's RoPE facts and tokenizer before it loads weights (the
    target above L, the bounds of λ, room for the fitness's pass key), done before the first stage runs; a
    search on factors an earlier stage writes (progressive, short) is checked when it starts."""
    import dataclasses

    from longrope.runs.search import check_fitness_fits, make_plan

    if model is None or config.base_factors is not None:
        return
    config = dataclasses.replace(config, model=model)
    length = make_plan(config).length
    check_fitness_fits(model, config.fitness_name, length, config.seed)


def check_stage(run: str, cfg: dict, plan: dict, entry: dict | None = None, *, machine: bool = True) -> None:
    """Check a stage's settings before anything runs (outputs of earlier stages need not exist yet),
    with the checks of the command the stage runs: search and finetune settings build their config
    (and a search checks its devices); a baseline is built (cheap: the model's config and a few numbers);
    the others check their keys and values. Messages name the plan keys; ``entry``: the stage as the
    plan writes it (before references are resolved); ``machine``: also check that this machine has
    the devices the stage names (only for a stage that will run here: a finished one, or one left
    out by ``--only``/``--until``, may have run on another machine)."""
    entry = entry or {}
    if run in ("search", "finetune"):
        from longrope.options import config_from_dict
        from longrope.runs import get_run

        spec = get_run(run)
        config = config_from_dict(spec.config, {"model": plan["model"], **cfg, spec.output_field: "stage",
                                                "resume": False})
        if run == "search":
            _check_search_plan(config, _facts_model(entry, cfg, plan))
        if run == "search" and machine:
            from longrope.runs.search import check_devices

            check_devices(config)
    elif run == "compare":
        _compare_settings(cfg, machine=machine)
    elif run == "tokenize":
        extra = sorted(set(cfg) - {"tokenizer", "inputs"})
        if extra:
            raise UserError(f"a tokenize stage takes \"inputs\" and optionally \"tokenizer\"; not {extra}")
        inputs = cfg.get("inputs")
        if inputs is None:
            raise UserError("a tokenize stage needs \"inputs\" (a list of role=PATH or \"embedded\")")
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
            raise _wrong("inputs", entry.get("inputs", inputs), "a non-empty list of role=PATH or \"embedded\"")
        if not isinstance(cfg.get("tokenizer") or "", str):  # null: the model's, as the runner reads it
            raise _wrong("tokenizer", entry.get("tokenizer"), "a tokenizer name or folder")
    elif run == "baseline":
        _check_baseline(cfg, plan, entry)
    elif run == "export":
        _check_export(cfg, plan, entry)


def _check_baseline(cfg: dict, plan: dict, entry: dict) -> None:
    """Build the factor set the stage will write (what ``longrope baseline`` checks, on the same
    function): a bad method, option or value is refused before the first stage runs."""
    for key in ("method", "target_length"):
        if key not in cfg:
            raise UserError(f"a baseline stage needs {key!r} (method: pi, ntk, dynamic-ntk, yarn, llama3; "
                            "target_length: tokens or a ratio like \"8x\")")
    method, target = cfg["method"], cfg["target_length"]
    if not isinstance(method, str):
        raise _wrong("method", method, "a method name (pi, ntk, dynamic-ntk, yarn, llama3)")
    if isinstance(target, bool) or not isinstance(target, int):
        raise _wrong("target_length", entry.get("target_length", target), "tokens (an integer) or a ratio like \"8x\"")
    model = _facts_model(entry, cfg, plan)
    if model is None:
        raise _wrong("model", cfg.get("model"), "a model name or folder")
    _baseline_set(cfg, model)


def _check_export(cfg: dict, plan: dict, entry: dict) -> None:
    """The settings ``longrope export`` checks on its flags, worded with the plan's keys.

    The option checks are :func:`longrope.models.exporter.check_export_options`, the same that
    ``longrope export`` runs, naming the plan's keys."""
    extra = sorted(set(cfg) - {"model", "factors", "format", "dtype"})
    if extra:
        raise UserError("an export stage takes \"factors\", and optionally \"model\", \"format\" (hf, gguf) "
                        f"and \"dtype\"; not {extra}")
    if "factors" not in cfg:
        raise UserError("an export stage needs \"factors\" (a factor file, e.g. \"@search\")")
    if not isinstance(cfg["factors"], str):
        raise _wrong("factors", cfg["factors"], "a factor file (a path or \"@STAGE\")")
    fmt = cfg.get("format", "hf")
    model = _facts_model(entry, cfg, plan)
    if model is None:
        raise _wrong("model", cfg.get("model"), "a model name or folder")
    from longrope.models.exporter import check_export_options
    from longrope.models.loading import resolve_source

    known = not _refs(entry.get("model"))  # an earlier stage's output is not there yet: its kind is unknown
    check_export_options(fmt, cfg.get("dtype"), source_kind=resolve_source(model).kind if known else None,
                         model_type=_rope_facts(model).model_type if fmt == "gguf" else None,
                         spell=repr)


_RUNNERS: dict[str, Callable[..., tuple[dict, dict]]] = {
    "tokenize": _run_tokenize, "baseline": _run_baseline, "search": _run_search, "finetune": _run_finetune,
    "compare": _run_compare, "export": _run_export,
}


# ------------------------------------------------------------------------------------------------
# The manifest and the driver.


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _model_identity(model: str, old: dict | None) -> str | None:
    """The plan's model by content (None for a hub model); a resume whose local model now holds other weights
    or configs than the pipeline started with is refused: its finished stages were made from the old one."""
    from longrope.models.loading import model_digest

    digest = model_digest(model)
    recorded = (old or {}).get("model_sha256")
    if recorded is not None and recorded != digest:
        raise ConfigError("resume", "{name} refused: " + f"the model {model} holds other files than when this "
                          "pipeline started (its finished stages were made from those); restore them, or start "
                          "the pipeline in a new folder")
    return digest


def _new_manifest(plan: dict, plan_file: str) -> dict:
    return {"format": MANIFEST_FORMAT, "plan_file": plan_file, "plan": plan,
            "stages": {s["name"]: {"run": s["run"], "status": "pending"} for s in plan["stages"]}}


def _read_manifest(out: Path) -> dict | None:
    path = out / MANIFEST
    if not path.exists():
        return None
    fix = "restore it, or start the pipeline in a new folder"
    doc = read_json(path, what=f"{MANIFEST_FORMAT} manifest", fix=fix)
    if doc.get("format") != MANIFEST_FORMAT:
        raise UserError(f"{path} is not a {MANIFEST_FORMAT} manifest; {fix}")
    stages = doc.get("stages")
    if not isinstance(doc.get("plan"), dict) or not isinstance(stages, dict) \
            or not all(isinstance(st, dict) and isinstance(st.get("status", ""), str) for st in stages.values()) \
            or not isinstance(doc.get("plan_file", ""), str) or not isinstance(doc.get("model_sha256", ""), (str, type(None))):
        raise UserError(f"{path} is malformed (its plan must be an object, its stages an object of stage "
                        f"records, its model_sha256 a string); {fix}")
    for st in stages.values():
        if not isinstance(st.get("outputs", {}), dict) or not isinstance(st.get("attempts", 0), int):
            raise UserError(f"{path} is malformed (a stage record's outputs or attempts); {fix}")
    planned = [s.get("name") for s in doc["plan"].get("stages", []) if isinstance(s, dict)]
    if sorted(stages) != sorted(planned):  # a record removed or added by hand
        raise UserError(f"{path} is malformed (its stage records {sorted(stages)} are not its plan's stages "
                        f"{sorted(map(str, planned))}); {fix}")
    return doc


#: what a compare stage may change between runs of one pipeline: its cells are measured one by one and
#: stay valid while the windows and the passkey protocol stay the same (``run_compare`` measures the
#: cells of a new or changed method, and keeps the others)
COMPARE_EDITABLE = ("methods", "passkey_methods", "goals")


def _edited_comparison(a: dict | None, b: dict | None) -> bool:
    """Both versions are one compare stage that differ only in :data:`COMPARE_EDITABLE` fields."""
    if a is None or b is None or a.get("run") != "compare" or b.get("run") != "compare":
        return False
    return {k: v for k, v in a.items() if k not in COMPARE_EDITABLE} == \
        {k: v for k, v in b.items() if k not in COMPARE_EDITABLE}


def _plan_differences(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """``(refused, edited)``: the differences a resume refuses, and the compare stages whose methods
    or goals were edited (a resume measures their new cells; see :data:`COMPARE_EDITABLE`)."""
    diffs, edited = [], []
    if old.get("model") != new.get("model"):
        diffs.append(f"model {old.get('model')!r} -> {new.get('model')!r}")
    a = {s["name"]: s for s in old.get("stages", [])}
    b = {s["name"]: s for s in new.get("stages", [])}
    for name in list(a) + [n for n in b if n not in a]:
        if a.get(name) == b.get(name):
            continue
        if _edited_comparison(a.get(name), b.get(name)):
            edited.append(name)
        else:
            diffs.append(f"stage {name!r} " + ("added" if name not in a else "removed" if name not in b else "changed"))
    return diffs, edited


def _changed_factors(entry: dict, st: dict, resolver: Any) -> bool:
    """A done compare stage whose factor files now hold other factors than it measured."""
    if entry["run"] != "compare" or "factor_digests" not in st:
        return False
    from longrope.runs.compare import factor_digests

    cfg = resolver.stage(entry)
    return factor_digests(cfg["methods"], cfg["ratios"]) != st["factor_digests"]


def is_done(manifest: dict, name: str) -> bool:
    """A stage is done when the manifest says so and its main output still exists."""
    st = manifest["stages"].get(name, {})
    return st.get("status") == "done" and all(Path(p).exists() for p in st.get("outputs", {}).values())


def summarize(manifest: dict) -> dict:
    """``summary.json``: every stage's status and metrics, and the last comparison's tables at the top."""
    out: dict[str, Any] = {"model": manifest["plan"]["model"],
                           "complete": all(s.get("status") == "done" for s in manifest["stages"].values()),
                           "stages": {n: {k: s.get(k) for k in ("run", "status", "seconds", "metrics", "outputs")
                                          if k in s} for n, s in manifest["stages"].items()}}
    compares = [n for n, s in manifest["stages"].items() if s.get("run") == "compare" and s.get("status") == "done"]
    if compares:
        path = Path(manifest["stages"][compares[-1]]["outputs"]["summary"])
        if path.exists():
            res = read_json(path, what="comparison summary")
            for key in ("heldout_ppl", "passkey", "heldout_tokens", "lengths", "passkey_trials", "goals", "methods"):
                out[key] = res.get(key)
    return out


def _check_stage_folders(paths: list[Path]) -> None:
    """Refuse, before any stage runs, a file or a broken (or looping) link where a stage folder goes: found
    after the stages before it, it was an OS error ('File exists') or a refusal naming --output."""
    for where in paths:
        if (where.is_symlink() or where.exists()) and not where.is_dir():
            raise UserError(f"{where} is not a folder (a file or a broken link where the pipeline keeps its stages); "
                            "move it away, or start the pipeline in a new folder")


def run(config: PipelineConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the plan's stages in order; returns ``summary.json``'s content."""
    from longrope.runs.folder import RunFolder

    say = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(config.output).resolve()  # stored paths do not depend on the working directory
    old = _read_manifest(out) if out.is_dir() else None
    if old is not None and not config.resume:
        raise ConfigError(("output", "resume"), "{name0} " + f"{out} already holds a pipeline; add {{name1}} to "
                                                "continue it or choose a new folder")
    if old is None and config.resume:
        raise ConfigError("resume", f"nothing to resume in {out} (no {MANIFEST}); run without {{name}}")
    if old is not None and config.plan is None:  # resuming: the plan the folder ran, unless one is given
        plan_file = old.get("plan_file", "")
        plan = check_plan(old["plan"], model=config.model, source=str(out / MANIFEST), strict=False)
    else:
        plan_file = config.plan or str(shipped_plan())
        plan = load_plan(plan_file, model=config.model)
    names = [s["name"] for s in plan["stages"]]
    for field in ("only", "until"):
        v = getattr(config, field)
        if v is not None and v not in names:
            raise ConfigError(field, f"{{name}} {v!r} is not a stage of the plan; stages: {', '.join(names)}")
    edited: list[str] = []
    if old is not None:
        diffs, edited = _plan_differences(old["plan"], plan)
        if diffs:
            raise ConfigError("resume", "{name} refused: the plan differs from the one this pipeline ran: "
                              + "; ".join(diffs) + " (use the same plan, or a new output folder; a compare "
                              "stage may change only its " + ", ".join(COMPARE_EDITABLE) + ")")
    model_sha256 = _model_identity(plan["model"], old)
    resolver = _Resolver(plan, out)
    entries = {s["name"]: s for s in plan["stages"]}
    selected = ([config.only] if config.only is not None
                else names[: names.index(config.until) + 1] if config.until is not None else names)
    finished = {n for n, st in ((old or {}).get("stages") or {}).items()
                if st.get("status") == "done" and n not in edited}
    for name, entry in entries.items():  # every stage's settings, before the first one runs
        try:
            check_stage(entry["run"], resolver.stage(entry), plan, entry,
                        machine=name in selected and name not in finished)
        except ConfigError as exc:
            raise UserError(f"plan stage {name!r} ({entry['run']}): {exc.render(lambda f: f)}") from None
        except UserError as exc:
            raise UserError(f"plan stage {name!r} ({entry['run']}): {exc}") from None
    _check_stage_folders([out / STAGES_DIR, *(resolver.stage_dir(n) for n in selected)])
    folder = RunFolder.open(out, COMMAND, staged=False, resume=config.resume)  # locked: one process per folder
    try:
        manifest = old or _new_manifest(plan, plan_file)
        manifest["model_sha256"] = model_sha256  # (a manifest written before this record gains it now)
        if edited:  # the plan to run now is the edited one; its compare stages measure their new cells
            manifest.update(plan=plan, plan_file=plan_file)
            for name in edited:
                if manifest["stages"].get(name, {}).get("status") == "done":
                    manifest["stages"][name]["status"] = "stale"
                say(f"pipeline: {name}: methods or goals edited since it ran; measuring the new cells")
        folder.start(config_to_dict(config), extra={"plan_file": plan_file})
        write_json(out / MANIFEST, manifest)
        todo = selected
        t_all = time.time()
        for name in todo:
            entry = entries[name]
            if is_done(manifest, name) and _changed_factors(entry, manifest["stages"][name], resolver):
                say(f"pipeline: {name}: factor files changed since it ran; measuring the changed cells again")
                manifest["stages"][name]["status"] = "stale"
            if is_done(manifest, name):
                say(f"pipeline: [{names.index(name) + 1}/{len(names)}] {name} ({entry['run']}): done, skipped")
                continue
            missing = [r for r in dict.fromkeys(_refs(entry)) if not is_done(manifest, r)]
            if missing:
                raise UserError(f"stage {name!r} needs the outputs of {', '.join(missing)}, which "
                                f"{'is' if len(missing) == 1 else 'are'} not done; run those first (or the whole "
                                "pipeline with --resume)")
            cfg = resolver.stage(entry)
            st = manifest["stages"][name]
            st.update(status="running", config=cfg, started=_now(), attempts=st.get("attempts", 0) + 1,
                      inputs={r: str(resolver.stage_dir(r)) for r in dict.fromkeys(_refs(entry))})
            st.pop("error", None)
            write_json(out / MANIFEST, manifest)
            say(f"pipeline: [{names.index(name) + 1}/{len(names)}] {name} ({entry['run']})"
                + (" — resuming" if st["attempts"] > 1 else ""))
            t0 = time.time()
            try:
                outputs, metrics = _RUNNERS[entry["run"]](cfg, resolver.stage_dir(name), plan, config.quiet, say)
            except BaseException as exc:
                st.update(status="failed" if isinstance(exc, Exception) else "interrupted", ended=_now(),
                          error=f"{type(exc).__name__}: {exc}")
                write_json(out / MANIFEST, manifest)
                write_json(out / "summary.json", summarize(manifest))
                raise
            digests = metrics.pop("factor_digests", None)
            st.update(status="done", ended=_now(), seconds=round(time.time() - t0, 3),
                      outputs=outputs, metrics=metrics, **({"factor_digests": digests} if digests is not None else {}))
            write_json(out / MANIFEST, manifest)
            write_json(out / "summary.json", summarize(manifest))
        summary = summarize(manifest)
        summary["seconds_this_run"] = round(time.time() - t_all, 3)
        if summary["complete"]:
            folder.finish(summary)
        else:
            write_json(out / "summary.json", summary)
    finally:
        folder.close()
    return summary


def render(result: dict) -> str:
    lines = [f"{n:>20s}  {s['run']:<9s} {s['status']}" + (f"  ({s['seconds']:.0f} s)" if s.get("seconds") else "")
             for n, s in result["stages"].items()]
    for g in result.get("goals") or []:
        state = "met" if g["met"] else "MISSED" if g["met"] is False else "not measured"
        lines.append(f"goal {state}: {g['name']}")
    return "\n".join(lines)


SPEC = RunSpec(
    command=COMMAND,
    help="the progressive recipe as declared stages: search, fine-tune, search again, recover, compare, export",
    description="""\
Run a plan of stages in one folder: LongRoPE's progressive recipe (search at s1, fine-tune at s1,
a second search on the fine-tuned model at s2 giving λ_final = λ_ft ⊙ λ', short-context recovery
at L, evaluation, export), or any other sequence of tokenize / baseline / search / finetune /
compare / export stages. Without --plan, the shipped showcase plan runs (sized for --model tiny:
8x search and fine-tuning, 32x second search, recovery, and the comparison against the fine-tuned
YaRN baseline; ~30 min on 2 CPU cores).

OUT/pipeline.json records each stage's resolved settings, inputs, outputs, metrics and status;
each stage is an ordinary run folder under OUT/stages/. A killed pipeline continues with --resume
(finished stages skipped, a search or fine-tuning resumes from its checkpoint); --only STAGE runs
one stage alone, --until STAGE stops after it. The plan format is in docs/pipeline.md.""",
    example="""\
examples:
  longrope pipeline --model tiny -o runs/pipeline
  longrope pipeline --model tiny -o runs/pipeline --resume
  longrope pipeline --plan my-plan.json -o runs/my-model --until finetune-8x""",
    config=PipelineConfig,
    run=run,
    render=render,
)
