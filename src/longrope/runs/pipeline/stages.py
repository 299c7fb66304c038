"""The kinds of pipeline stage, one :class:`Stage` entry each in :data:`STAGES`: the one place a stage kind is
declared.

An entry holds the stage's settings type (a config dataclass whose fields are the plan keys, checked by its
``__post_init__`` — for search and finetune the command's own config), its main output (what ``@NAME``
means), its run function, its plan check (what needs the model's RoPE facts or this machine's devices,
done for every stage before the first one runs) and what a resume may change. The driver
(:func:`longrope.runs.pipeline.run`) knows no stage by name: a new kind of stage is one new entry.

Every stage's settings are its command's own config: ``tokenize``, ``baseline`` and ``export`` take
:class:`longrope.tools.TokenizeConfig`, :class:`~longrope.tools.BaselineConfig` and
:class:`~longrope.tools.ExportConfig`, ``search`` and ``finetune`` their runs' configs, ``compare``
:class:`longrope.runs.compare.CompareConfig`: a plan key is the command's setting, checked by the same code.
"""

from __future__ import annotations

import dataclasses
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError
from longrope.io import make_folder, read_json, write_json, write_text
from longrope.options import MAX_TOKENS, config_from_dict
from longrope.runs.compare import CompareConfig
from longrope.runs.search import SearchConfig
from longrope.tools import BaselineConfig, ExportConfig, TokenizeConfig
from longrope.train.config import FinetuneConfig

__all__ = ["Stage", "StageContext", "Outcome", "STAGES", "COMPARE_EDITABLE", "NAMED_INPUTS", "main_output", "named_inputs",
           "rope_facts", "settings_of"]


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)


@dataclass
class StageContext:
    """One stage of one plan, as its check and its run see it."""

    name: str
    run: str
    plan: dict
    entry: dict
    """the stage as the plan writes it (before references are resolved)"""
    settings: dict
    """its settings resolved (references, ``{model}``, ratios), without name, run and description"""
    folder: Path
    model_is_output: bool = False
    """the stage's ``model`` is an earlier stage's output (not there yet when the plan is checked)"""
    machine: bool = True
    """it will run on this machine (its devices are checked)"""
    running: bool = False
    """built to run now (not only to check the plan)"""
    quiet: bool = False
    say: Callable[[str], None] = _stderr

    @property
    def model(self) -> str:
        """The model the stage runs on: its own ``model``, or the pipeline's."""
        return self.settings.get("model") or self.plan["model"]

    @property
    def facts_model(self) -> str:
        """The model whose RoPE facts the stage's settings are checked against before anything runs: an
        earlier stage's output does not exist yet, and keeps the RoPE of the pipeline's model."""
        return self.plan["model"] if self.model_is_output else self.model


@dataclass
class Outcome:
    """What a stage's run returns: its ``outputs`` (name → path), ``metrics`` and other ``record`` fields
    of its manifest entry."""

    outputs: dict
    metrics: dict
    record: dict = field(default_factory=dict)


def _no_check(config: Any, ctx: StageContext) -> None:
    return None


@dataclass(frozen=True)
class Stage:
    """The contract of a stage kind."""

    config: type
    """its settings (plan keys are the fields)"""
    output: Callable[[Path, dict], Path]
    """its main output, from its folder and its plan entry (what ``@NAME`` means)"""
    run: Callable[[Any, StageContext], Outcome]
    """run it: (settings, context) → outcome"""
    check: Callable[[Any, StageContext], None] = _no_check
    """its checks beyond the settings' own, before the first stage runs (RoPE facts, devices)"""
    editable: tuple[str, ...] = ()
    """plan keys a resume may change (the stage then runs again, keeping what still stands)"""
    build: Callable[[StageContext], Any] | None = None
    """settings from the context; default: :func:`settings_of` its config"""
    stale: Callable[[Any, dict], str | None] | None = None
    """(settings, manifest record) → why a done stage must run again (its inputs changed), or None"""
    summary_keys: tuple[str, ...] = ()
    """keys of its ``outputs["summary"]`` the pipeline's summary shows (from the last such stage done)"""
    gives: tuple[str, ...] = ()
    """what its main output (``@NAME``) can stand for in another stage: "data", "factors", "model"
    (a Hugging Face folder holds its factors in config.json, so a model is factors too)"""

    def settings(self, ctx: StageContext) -> Any:
        return self.build(ctx) if self.build is not None else settings_of(self.config, ctx)

    def check_plan(self, ctx: StageContext) -> None:
        """Every check of the stage that needs no earlier stage's output."""
        config = self.settings(ctx)
        if ctx.machine:
            _check_named_inputs(ctx)
        self.check(config, ctx)


def _given(ctx: StageContext, key: str) -> str | None:
    """The stage's resolved ``key`` when the plan names it itself (a path or a name, not an earlier stage's
    ``@NAME``), else None."""
    written = ctx.entry.get(key)
    return ctx.settings.get(key) if isinstance(written, str) and not written.startswith("@") else None


#: the settings that name a stage's inputs by path (not an earlier stage's ``@NAME``), whose content a resume binds
NAMED_INPUTS = ("model", "data", "factors", "base_factors")


def named_inputs(ctx: StageContext) -> dict[str, str]:
    """The inputs stage ``ctx`` names itself (:data:`NAMED_INPUTS`), role → path, the pipeline's model aside (its
    content binds the whole pipeline: ``manifest.model_identity``)."""
    paths = {key: _given(ctx, key) for key in NAMED_INPUTS}
    return {key: p for key, p in paths.items() if isinstance(p, str) and p and p != ctx.plan["model"]}


def _check_named_inputs(ctx: StageContext) -> None:
    """The model, shard folder and factor files a stage names itself, read as its command reads them at its
    start, before the first stage runs (they were read when the stage started, after the stages before it had
    run: a missing factor file of a fine-tuning stage showed after the search before it). Only for a stage that
    runs now: a finished one keeps what it read. A tokenize or compare stage checks its own inputs."""
    from longrope.models.factor_files import load_factors_for
    from longrope.rope import FactorSet

    if _given(ctx, "model"):
        rope_facts(_given(ctx, "model"))
    if _given(ctx, "data"):
        from longrope.data.shards import TokenCorpus

        TokenCorpus.open(_given(ctx, "data"), verify="size")
    if _given(ctx, "factors"):  # as finetune and export read theirs: against the model's RoPE
        info = rope_facts(ctx.facts_model)
        # an export stage's L and L' of a reference CSV, as longrope export passes its flags
        takes = {f.name for f in dataclasses.fields(STAGES[ctx.run].config)} & {"original_length", "target_length"}
        lengths = {k: ctx.settings[k] for k in takes if isinstance(ctx.settings.get(k), int)}
        load_factors_for(_given(ctx, "factors"), info, model=ctx.facts_model,
                         override_flag="original_length" if "original_length" in takes else None,
                         target_flag="target_length" if "target_length" in takes else None, **lengths)
    if _given(ctx, "reuse"):  # a search run folder (its scores are compared with the stage's when it starts)
        from longrope.runs.search import read_reuse_source

        read_reuse_source(Path(_given(ctx, "reuse")))
    if _given(ctx, "base_factors"):  # as search reads them
        info = rope_facts(ctx.facts_model)
        FactorSet.load(_given(ctx, "base_factors"), rope_theta=info.rope_theta,
                       original_length=int(info.original_max_position_embeddings))


def _article(run: str) -> str:
    return "an" if run[0] in "aeiou" else "a"


def settings_of(cls: type, ctx: StageContext, values: dict | None = None, *, filled: tuple[str, ...] = ()) -> Any:
    """``cls`` from the stage's settings (or ``values``): an unknown key or a missing required one names
    the stage kind and what it takes; a bad value is the config's :class:`ConfigError`. ``filled``: fields
    the pipeline sets (a plan may leave them out)."""
    values = _nested_by_flag_name(cls, ctx.settings if values is None else values)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        takes = [n for n in fields if n not in filled]
        known = (f"it takes {', '.join(takes)}" if len(takes) <= 16
                 else f"its settings are those of longrope {ctx.run}")
        raise UserError(f"{_article(ctx.run)} {ctx.run} stage has no setting {unknown[0]!r}; {known}")
    for name, f in fields.items():
        if name not in values and name not in filled and f.default is dataclasses.MISSING \
                and f.default_factory is dataclasses.MISSING:
            raise UserError(f"{_article(ctx.run)} {ctx.run} stage needs {name!r} ({f.metadata.get('help', '')})")
    return config_from_dict(cls, values)


def _nested_by_flag_name(cls: type, values: dict) -> dict:
    """A plan names a setting like its flag, ``"population": 8`` for ``--population 8``; a config keeps such
    settings in a nested config (search: ``knobs``), where they are moved. (A search stage refused them, "its
    settings are those of longrope search", which has the flag.) ``"knobs": {...}`` is read too."""
    out = dict(values)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("nested"):
            continue
        inner = {g.name for g in dataclasses.fields(type(f.default_factory()))}
        flat = {k: out.pop(k) for k in list(out) if k in inner}
        given = out.get(f.name)
        if flat and isinstance(given, dict):
            twice = sorted(set(flat) & set(given))
            if twice:
                raise UserError(f"{twice[0]!r} is given twice, alone and in {f.name!r}; give it once")
            out[f.name] = {**given, **flat}
        elif flat and given is None:
            out[f.name] = flat
        elif flat:  # a nested setting that is no object: its own check names it
            out.update(flat)
    return out


def _at(name: str) -> Callable[[Path, dict], Path]:
    return lambda folder, entry: folder / name if name else folder


def _wrong(key: str, got: Any, expected: str) -> ConfigError:
    """A plan value of the wrong kind: names the key, what it got and what it takes."""
    return ConfigError(key, "'{name}' must be " + f"{expected}, got {got!r}")


def rope_facts(model: str) -> Any:
    """The model's RoPE facts; a model the factors cannot apply to is a one-line error."""
    from longrope.models.loading import read_rope_info

    info = read_rope_info(model)
    if not info.supported:
        raise UserError(f"model {model} cannot take RoPE factors: {info.reason}")
    return info


# ------------------------------------------------------------------------------------------------
# tokenize: documents → a shard folder


#: a tokenize stage's plan key for longrope tokenize's --input (a list: the plan format's spelling)
_INPUTS = "inputs"


def _tokenize_config(ctx: StageContext) -> TokenizeConfig:
    """A tokenize stage is ``longrope tokenize``'s own config (its plan keys are the command's settings:
    ``inputs``, ``tokenizer`` — the pipeline's model unless given —, ``split``, ``text_field``, ``id_field``,
    ``shard_tokens``), written into the stage folder; ``"embedded"`` among the inputs stands for the shipped
    search, held-out and fine-tuning documents."""
    from longrope.embedded import document_paths

    _refuse_pipeline_keys(ctx, ("output", "quiet"))
    if "input" in ctx.settings:  # the command's flag is --input; a plan lists them under one key
        raise UserError("a tokenize stage takes its documents as 'inputs' (a list of role=PATH or \"embedded\"): "
                        "rename 'input' to 'inputs'")
    inputs = ctx.settings.get(_INPUTS)
    if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) for i in inputs):
        raise _wrong(_INPUTS, inputs, "a non-empty list of role=PATH or \"embedded\"")
    specs: list[str] = []
    for item in inputs:
        specs += ([f"{role}={p}" for role in ("search", "heldout", "train") for p in document_paths(role)]
                  if item == "embedded" else [item])
    values = {k: v for k, v in ctx.settings.items() if k != _INPUTS}
    values = {**values, "tokenizer": values.get("tokenizer") or ctx.plan["model"], "input": specs,
              "output": str(ctx.folder), "quiet": ctx.quiet}
    return settings_of(TokenizeConfig, ctx, values, filled=("tokenizer", "input", "output", "quiet"))


def _check_tokenize(config: TokenizeConfig, ctx: StageContext) -> None:
    """The tokenizer and the documents a tokenize stage names, as ``longrope tokenize`` checks them at its start."""
    if not ctx.machine:
        return
    from longrope.data.sources import resolve_sources
    from longrope.models.loading import resolve_source

    resolve_source(config.tokenizer)
    for source in resolve_sources(list(config.input), split=config.split, text_field=config.text_field,
                                  id_field=config.id_field):
        source.preflight()


def _run_tokenize(config: TokenizeConfig, ctx: StageContext) -> Outcome:
    report = config.tokenize(lambda w: ctx.say(f"tokenize: warning: {w}"))  # as longrope tokenize does
    meta = read_json(ctx.folder / "meta.json", what="shard folder's meta.json")
    return Outcome({"shards": str(ctx.folder)}, {"documents": meta.get("n_docs"), "tokens": meta.get("n_tokens"),
                                                 "skipped": len(report.skipped)})


# ------------------------------------------------------------------------------------------------
# baseline: a closed-form factor set → factors.json


def _baseline_config(ctx: StageContext) -> BaselineConfig:
    """A baseline stage is ``longrope baseline``'s own config (its plan keys are the command's settings: method,
    target_length, the method's options, attention_factor, start_tokens, original_length), written into the stage
    folder; checked against the pipeline's model when the plan is checked (an earlier stage's output is not there
    yet), run on the stage's model."""
    _refuse_pipeline_keys(ctx, ("output",))
    model = ctx.model if ctx.running else ctx.facts_model
    return settings_of(BaselineConfig, ctx, {**ctx.settings, "model": model,
                                             "output": str(ctx.folder / "factors.json")}, filled=("model", "output"))


def _run_baseline(config: BaselineConfig, ctx: StageContext) -> Outcome:
    fs = config.factor_set(rope_facts(config.model))  # the factor set longrope baseline writes
    make_folder(ctx.folder)
    fs.save(config.output)
    return Outcome({"factors": config.output}, {"method": config.method, "target_length": config.target_length})


# ------------------------------------------------------------------------------------------------
# search and finetune: the commands' own configs and runs


def _command_config(command: str, ctx: StageContext, resume: bool, **over: Any) -> Any:
    from longrope.runs import get_run

    spec = get_run(command)
    filled = ("model", spec.output_field, "resume", "quiet")
    _refuse_pipeline_keys(ctx, filled[1:])
    values = {"model": ctx.plan["model"], **ctx.settings, **over, spec.output_field: str(ctx.folder),
              "resume": resume, "quiet": ctx.quiet}
    return settings_of(spec.config, ctx, values, filled=filled)


def _refuse_pipeline_keys(ctx: StageContext, keys: tuple[str, ...]) -> None:
    """A stage's plan setting ``keys`` the pipeline sets itself: a plan's own value would be dropped unsaid."""
    ours = [key for key in keys if key in ctx.settings]
    if ours:
        raise UserError(f"{_article(ctx.run)} {ctx.run} stage cannot set {ours[0]!r}: the pipeline sets it (each stage "
                        "writes into its own folder stages/NAME, resumes with --resume, is quiet with --quiet); "
                        "remove it from the plan")


def _search_config(ctx: StageContext) -> Any:
    """A search stage resumes from its checkpoint; one the plan leaves the fitness of goes on with the
    fitness it ran (a stage started before the joint default meant another one than today's)."""
    resume = ctx.running and (ctx.folder / "checkpoint.json").exists()
    over = {"fitness": _recorded_fitness(ctx.folder)} if resume and "fitness" not in ctx.settings else {}
    return _command_config("search", ctx, resume, **over)


def _recorded_fitness(folder: Path) -> str | None:
    """The fitness the search in ``folder`` started with (None when its record is unreadable: the search's own
    resume check then names the difference)."""
    from longrope.runs.folder import read_run_config
    from longrope.runs.search import recorded_config

    try:
        command, saved = read_run_config(folder)
    except UserError:
        return None
    fitness = recorded_config(saved).get("fitness") if command == "search" else None
    return fitness if isinstance(fitness, str) else None


def _check_search(config: Any, ctx: StageContext) -> None:
    """What ``longrope search`` checks from the model's RoPE facts and tokenizer before it loads weights (the
    target above L, the bounds of λ, room for the fitness's pass key) and this machine's devices; a search
    on factors an earlier stage writes (progressive, short) is checked when it starts."""
    from longrope.runs.search import check_devices, check_fitness_fits, make_plan

    if config.base_factors is None:
        config = dataclasses.replace(config, model=ctx.facts_model)
        check_fitness_fits(ctx.facts_model, config.fitness_name, make_plan(config).length, config.seed)
    if ctx.machine:
        check_devices(config)
    if _given(ctx, "reuse"):
        _check_reuse_source(config, Path(_given(ctx, "reuse")))


def _check_reuse_source(config: Any, where: Path) -> None:
    """A search run folder the plan names as ``reuse``, scored under other settings than the stage's (another
    fitness, length, seed ...), is refused before the first stage runs, as an earlier stage's is (it was refused
    when the stage started, after the stages before it). What the scores were computed under is the checkpoint's
    fingerprint, its config.json filling the rest; the model and data are compared when the stage starts."""
    from longrope.options import config_from_dict
    from longrope.runs.search import (
        SearchConfig,
        read_reuse_source,
        recorded_config,
        reuse_conflicts,
        reuse_refusal,
        scored_under,
    )

    checkpoint, recorded = read_reuse_source(where)
    try:
        theirs = config_from_dict(SearchConfig, recorded_config({**recorded, **scored_under(checkpoint)}))
    except UserError:  # a record this check cannot read whole: the stage compares the checkpoint when it starts
        return
    diffs = reuse_conflicts(config, theirs)
    if diffs:
        raise reuse_refusal(where, diffs)


def _run_search(config: Any, ctx: StageContext) -> Outcome:
    from longrope.runs import get_run

    if not config.resume and ctx.folder.exists():  # stopped before its first evaluation: nothing to keep
        from longrope.runs.folder import FolderLock

        with FolderLock.acquire(ctx.folder, "search"):  # never under a search another process runs in it
            shutil.rmtree(ctx.folder)
    result = get_run("search").run(config, log=ctx.say)
    s = result["search"]
    metrics = {k: s.get(k) for k in ("best_ppl", "length", "candidates", "full_evals", "seconds", "stop_reason")}
    if "heldout" in result:
        metrics["heldout_ppl"] = result["heldout"]["ppl"]
    return Outcome({"factors": str(ctx.folder / "factors.json")}, metrics)


def _check_finetune(config: Any, ctx: StageContext) -> None:
    """What ``longrope finetune`` checks before it reads data or weights (lengths against the factor file the
    plan names, tokens per step, precision on this machine), and a shard folder the plan names without
    training documents (or without one that holds a target, as ``bos`` cuts them): all were found when the stage
    started, after every stage before it had run."""
    from longrope.train.loop import check_settings

    check_settings(config, facts_model=ctx.facts_model if ctx.machine and _given(ctx, "factors") else None,
                   machine=ctx.machine)
    if config.lora:  # against the model's layers (an earlier stage's output keeps the pipeline model's)
        from longrope.train.lora import check_lora_fits

        check_lora_fits(ctx.facts_model, rank=config.lora_rank, targets=config.lora_targets,
                        trainable=config.lora_trainable)
    if ctx.machine and _given(ctx, "data"):
        from longrope.data.shards import TokenCorpus
        from longrope.train.data import require_training_documents

        require_training_documents(TokenCorpus.open(_given(ctx, "data"), verify="size"), config.heldout_fraction,
                                   bos=config.bos)


def _run_finetune(config: Any, ctx: StageContext) -> Outcome:
    from longrope.runs import get_run

    result = get_run("finetune").run(config, log=ctx.say)
    return Outcome({"model": str(ctx.folder / "model")},
                   {k: result.get(k) for k in ("steps", "tokens", "final_loss", "seconds")})


# ------------------------------------------------------------------------------------------------
# compare: methods × ratios on the same held-out windows (:mod:`longrope.runs.compare`)

#: what a compare stage may change between runs of one pipeline: its cells are measured one by one and
#: stay valid while the windows and the passkey protocol stay the same (``run_compare`` measures the
#: cells of a new or changed method, and keeps the others)
COMPARE_EDITABLE = ("methods", "passkey_methods", "ruler_methods", "goals")


def _check_compare(config: Any, ctx: StageContext) -> None:
    from longrope.groups import run_device
    from longrope.models.loading import resolve_dtype

    resolve_dtype(config.dtype)
    if config.ruler_ratios:  # lm-eval's RULER code, checked before the first stage
        from longrope.data.ruler import check_lm_eval

        check_lm_eval()
    if ctx.machine:  # a stage that will not run here need not find its device on this machine
        try:
            run_device(config.device, fix="give auto, cpu or a device this machine has")
        except UserError as exc:
            raise UserError(f"a compare stage's {exc}") from None
        _check_compare_inputs(config, ctx)
        _check_compare_ruler(config, ctx)


def _check_compare_ruler(config: Any, ctx: StageContext) -> None:
    """Each RULER length fits each RULER task (its shortest prompt, with each RULER method's tokenizer), before
    the first stage runs: the stage itself finds out only when it makes its samples, after the stages before
    it."""
    from longrope.data.ruler import TOO_FEW, length_problem
    from longrope.models.loading import load_tokenizer_of
    from longrope.runs.compare import ratio_length

    written = ctx.entry.get("methods") if isinstance(ctx.entry.get("methods"), dict) else {}
    models: dict[str, list[str]] = {}
    for name in config.ruler_methods if config.ruler_methods is not None else config.methods:
        plan_method = written.get(name) if isinstance(written.get(name), dict) else {}
        own_model = not str(plan_method.get("model", "")).startswith("@")
        models.setdefault(config.methods[name]["model"] if own_model else ctx.plan["model"], []).append(name)
    for model, names in models.items():
        tokenizer = load_tokenizer_of(model)
        if tokenizer is None:  # the stage found it when it reached the method, after the stages before it
            raise ConfigError("ruler_methods", f"{model} has no tokenizer files, and RULER needs them to make "
                              f"its samples (method(s) {', '.join(names)}): list only the other methods in "
                              "{name}, or add the tokenizer files to the model folder")
        L = int(rope_facts(model).original_max_position_embeddings)
        for ratio in config.ruler_ratios:
            for task in config.ruler_tasks:
                length = ratio_length(ratio, L)
                problem = length_problem(task, length, tokenizer, samples=config.ruler_samples)
                if problem:
                    fewer = ", ask fewer ruler_samples" if problem.endswith(TOO_FEW) else ""
                    raise ConfigError("ruler_ratios", "{name} " + f"{ratio} is {length} tokens, too short for RULER "
                                      f"task {task} ({problem}): drop {ratio} from " + "{name}" + f"{fewer} or "
                                      f"{task} from ruler_tasks")


def _check_compare_inputs(config: Any, ctx: StageContext) -> None:
    """The models, closed forms and factor files a compare stage's methods name themselves, built or read as the
    comparison does (an earlier stage's output is read when the stage starts; it keeps the pipeline model's
    RoPE)."""
    from longrope.runs.compare import factor_set, ratio_length

    L = int(rope_facts(ctx.plan["model"]).original_max_position_embeddings)
    for ratio in config.ratios:  # "99999999x" asked the shard folder for windows of 25,599,999,744 tokens
        if ratio_length(ratio, L) > MAX_TOKENS:
            raise UserError(f"ratio {ratio} is {ratio_length(ratio, L):,} tokens at L = {L}; a length is at most "
                            f"{MAX_TOKENS:,} tokens: lower the ratio")
    written = ctx.entry.get("methods") if isinstance(ctx.entry.get("methods"), dict) else {}
    for name, method in config.methods.items():
        plan_method = written.get(name) if isinstance(written.get(name), dict) else {}
        own_model = not str(plan_method.get("model", "")).startswith("@")
        info = rope_facts(method["model"] if own_model else ctx.plan["model"])
        specs = plan_method.get("factors") if isinstance(plan_method.get("factors"), dict) else {}
        for ratio, spec in method["factors"].items():
            if str(specs.get(ratio, "")).startswith("@"):
                continue
            try:
                factor_set(spec, info, ratio_length(ratio, int(info.original_max_position_embeddings)))
            except UserError as exc:
                raise UserError(f"method {name!r} at {ratio}: {exc}") from None


def _run_compare(config: Any, ctx: StageContext) -> Outcome:
    from longrope.runs.compare import format_table, run_compare

    make_folder(ctx.folder)
    result = run_compare(config, ctx.folder, log=ctx.say)
    write_json(ctx.folder / "summary.json", result)
    write_text(ctx.folder / "compare.md", format_table(result) + "\n")
    ctx.say("compare:\n" + format_table(result))
    for g in result["goals"]:
        ctx.say(f"goal {'met' if g['met'] else 'MISSED' if g['met'] is False else 'not measured'}: {g['name']} "
                f"({g['value']} = {g['measured']}, bound {g['bound']})")
    return Outcome({"summary": str(ctx.folder / "summary.json")},
                   {k: result[k] for k in ("heldout_ppl", "passkey", "ruler", "goals")},
                   {"factor_digests": result["factor_digests"], "model_digests": result["model_digests"]})


def _compare_changed_factors(config: CompareConfig, record: dict) -> str | None:
    """Why a done comparison runs again: its factor files now hold other factors, or its models other files,
    than it measured."""
    from longrope.runs.compare import factor_digests, model_digests

    if "factor_digests" in record and factor_digests(config.methods, list(config.ratios)) != record["factor_digests"]:
        return ("factor files changed since it ran (or, for a dynamic NTK set, the set applied at a length); measuring "
                "the changed cells again")
    if isinstance(record.get("model_digests"), dict):
        was, now = record["model_digests"], model_digests(config.methods)
        if any(was.get(m) is not None and was.get(m) != d for m, d in now.items()):
            return "models changed since it ran (weights, config or tokenizer); measuring their cells again"
    return None


# ------------------------------------------------------------------------------------------------
# export: ``longrope export`` → model/ (or model.gguf)


def _export_output(folder: Path, entry: dict) -> Path:
    return folder / ("model.gguf" if entry.get("format") == "gguf" else "model")


def _export_config(ctx: StageContext) -> ExportConfig:
    """An export stage is ``longrope export``'s own config (its plan keys are the command's settings: factors,
    format, dtype, model — the pipeline's unless given —, and for reference CSV factors original_length and
    target_length), writing stages/NAME/model (or model.gguf) afresh each time it runs."""
    _refuse_pipeline_keys(ctx, ("output", "overwrite", "quiet"))
    values = {**ctx.settings, "model": ctx.model, "output": str(_export_output(ctx.folder, ctx.settings)),
              "overwrite": True, "quiet": ctx.quiet}
    return settings_of(ExportConfig, ctx, values, filled=("model", "output", "overwrite", "quiet"))


def _check_export(config: ExportConfig, ctx: StageContext) -> None:
    """The option checks of ``longrope export`` (:func:`longrope.models.exporter.check_export_options`),
    naming the plan's keys."""
    from longrope.models.exporter import check_export_options
    from longrope.models.loading import resolve_source

    known = not ctx.model_is_output  # an earlier stage's output is not there yet: its kind is unknown
    check_export_options(config.format, config.dtype, source_kind=resolve_source(ctx.model).kind if known else None,
                         model_type=rope_facts(ctx.facts_model).model_type if config.format == "gguf" else None,
                         spell=repr)
    written = ctx.entry.get("factors")
    if config.target_length is not None and isinstance(written, str) and written.startswith("@") and "/" not in written:
        # an earlier stage's factors carry their own L' (it was refused when the stage ran, after the stages before)
        raise ConfigError(("target_length", "factors"), "{name0} gives the L' of reference CSV factors; {name1} "
                          + written + " are an earlier stage's, which carry their own: leave {name0} out")


def _run_export(config: ExportConfig, ctx: StageContext) -> Outcome:
    from longrope.models.exporter import export_model

    make_folder(ctx.folder)
    out = export_model(config.model, config.factors, config.output, fmt=config.format, dtype=config.dtype,
                       overwrite=True, original_length=config.original_length, target_length=config.target_length)
    for w in out["warnings"]:
        ctx.say(f"export: warning: {w}")
    return Outcome({"model": out["output"]}, {"format": config.format, "warnings": out["warnings"]})


# ------------------------------------------------------------------------------------------------


#: Every kind of stage, in the order ``--help`` and messages list them.
STAGES: dict[str, Stage] = {
    "tokenize": Stage(TokenizeConfig, _at(""), _run_tokenize, check=_check_tokenize, build=_tokenize_config,
                      gives=("data",)),
    "baseline": Stage(BaselineConfig, _at("factors.json"), _run_baseline,
                      check=lambda config, ctx: config.factor_set(rope_facts(config.model)), build=_baseline_config,
                      gives=("factors",)),
    "search": Stage(SearchConfig, _at("factors.json"), _run_search, check=_check_search,
                    build=_search_config, gives=("factors",)),
    "finetune": Stage(FinetuneConfig, _at("model"), _run_finetune, check=_check_finetune,
                      # resume what an earlier attempt left; a first attempt starts (no "nothing to resume" line)
                      build=lambda ctx: _command_config("finetune", ctx, resume=ctx.running and ctx.folder.exists()),
                      gives=("model", "factors")),
    "compare": Stage(CompareConfig, _at(""), _run_compare, check=_check_compare, editable=COMPARE_EDITABLE,
                     stale=_compare_changed_factors,
                     summary_keys=("heldout_ppl", "passkey", "passkey_ci95", "ruler", "heldout_tokens", "lengths", "passkey_trials",
                                   "goals", "methods")),
    "export": Stage(ExportConfig, _export_output, _run_export, check=_check_export, build=_export_config,
                    gives=("model", "factors")),
}


def main_output(run: str, folder: Path, entry: dict | None = None) -> Path:
    """What ``@NAME`` means for a stage of ``run`` in ``folder`` (``entry``: its plan entry)."""
    return STAGES[run].output(folder, entry or {})
