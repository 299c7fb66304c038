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

The package: :mod:`.stages` declares every kind of stage (one :class:`~.stages.Stage` entry each: its
settings type, main output, run, plan check, what a resume may change); :mod:`.plan` checks a plan and
resolves its references; :mod:`.manifest` reads and writes ``pipeline.json``; this module is the driver.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from longrope.errors import ConfigError, UserError
from longrope.io import write_json
from longrope.options import check_shapes, config_to_dict, option, output_option
from longrope.runs import RunSpec
from longrope.runs.pipeline import manifest as records
from longrope.runs.pipeline.manifest import (
    MANIFEST,
    MANIFEST_FORMAT,
    as_recorded_model,
    editable_keys,
    in_todays_terms,
    is_done,
    model_identity,
    new_manifest,
    plan_differences,
    read_manifest,
    save,
    summarize,
)
from longrope.runs.pipeline.plan import (
    LENGTH_FIELDS,
    PLAN_FORMAT,
    PLAN_KEYS,
    STAGES_DIR,
    Resolver,
    check_plan,
    check_stage,
    load_plan,
    refs,
    shipped_plan,
)
from longrope.runs.pipeline.stages import (
    COMPARE_EDITABLE,
    STAGES,
    Outcome,
    Stage,
    StageContext,
    main_output,
    named_inputs,
)

COMMAND = "pipeline"
STAGE_RUNS = tuple(STAGES)

__all__ = ["PipelineConfig", "run", "render", "SPEC", "load_plan", "check_plan", "check_stage", "shipped_plan",
           "main_output", "summarize", "is_done", "STAGES", "STAGE_RUNS", "Stage", "StageContext", "Outcome",
           "COMPARE_EDITABLE", "PLAN_FORMAT", "PLAN_KEYS", "MANIFEST", "MANIFEST_FORMAT", "STAGES_DIR",
           "LENGTH_FIELDS"]


@dataclass
class PipelineConfig:
    """Everything ``longrope pipeline`` does."""

    output: str = output_option("pipeline folder (created; holds every stage)", metavar="OUT")
    plan: str | None = option(None, "plan file (JSON, longrope-pipeline/1), or a pipeline folder: the plan it ran",
                              metavar="FILE", path=True,
                              default_text="the shipped showcase plan (sized for --model tiny)")
    model: str | None = option(None, "model; replaces the plan's 'model'", metavar="M", path=True,
                               default_text="the plan's")
    only: str | None = option(None, "run this one stage (the stages it refers to must be done)", metavar="STAGE")
    until: str | None = option(None, "stop after this stage (--resume continues)", metavar="STAGE")
    resume: bool = option(False, "continue the pipeline in the folder: finished stages are skipped, an interrupted "
                                 "one resumes from its checkpoint")
    quiet: bool = option(False, "no progress bars")

    def __post_init__(self) -> None:
        check_shapes(self)  # a Python caller's plan={...} or only=[...] was taken as given
        if not isinstance(self.output, str) or not self.output.strip():
            raise ConfigError("output", "{name} is required")
        if self.only is not None and self.until is not None:
            raise ConfigError(("only", "until"), "give only one of {name0} and {name1}")


# ------------------------------------------------------------------------------------------------
# The driver.


def run(config: PipelineConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the plan's stages in order; returns ``summary.json``'s content."""
    from longrope.options import require_config

    require_config(config, PipelineConfig, "longrope.runs.pipeline.run")
    say = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(config.output).resolve()  # stored paths do not depend on the working directory
    base = _plan_base(config, out)
    if base is not None and base.resolve() != Path.cwd().resolve():  # -o, a model and a plan path as typed here,
        config = replace(config, output=str(out))  # read there (the plan is read here: its records, config.json's
        for key in ("model", "plan"):  # plan and the manifest's plan_file, named it from this folder)
            typed = getattr(config, key)
            if isinstance(typed, str) and typed and os.path.lexists(typed):
                config = replace(config, **{key: os.path.abspath(typed)})
    old, plan, plan_file = _open_plan(config, out)
    with _in_folder(base):
        return _run(config, out, old, plan, plan_file, say)


def _plan_base(config: PipelineConfig, out: Path) -> Path | None:
    """The folder the relative paths of the plan to run are read against: for a resume, and for a plan read from a
    pipeline folder's record (--plan PIPELINE_FOLDER, --config, rerun), the folder that pipeline was started
    in, as ``longrope rerun`` reads a recorded run's paths; None (the current folder) for a new pipeline's plan file.
    A resume typed in another folder read the recorded plan's ``inputs: [search=docs/]`` there: it tokenized that
    folder's docs/ when it had one, without a word (battery 23a); so did a resume given its plan file again
    (``--resume --plan FILE``), which must be the plan the pipeline ran, read where it ran (battery 29c)."""
    from longrope.runs.folder import read_run_cwd

    if config.plan is None or config.resume:
        return read_run_cwd(out) if read_manifest(out) is not None else None
    ran = Path(config.plan)
    ran = ran if ran.is_dir() else ran.parent if ran.name == MANIFEST else None
    return read_run_cwd(ran) if ran is not None and (ran / MANIFEST).is_file() else None


@contextlib.contextmanager
def _in_folder(base: Path | None) -> Iterator[None]:
    """Work in ``base`` (when given and not the current folder) while the plan runs, and come back after."""
    here = os.getcwd()
    if base is None or base.resolve() == Path(here).resolve():
        yield
        return
    os.chdir(base)
    try:
        yield
    finally:
        os.chdir(here)


def _run(config: PipelineConfig, out: Path, old: dict | None, plan: dict, plan_file: str,
         say: Callable[[str], None]) -> dict:
    from longrope.runs.folder import RunFolder

    plan = as_recorded_model(plan, old)
    names = [s["name"] for s in plan["stages"]]
    selected = _selected(config, names)
    edited = _edits(old, plan)
    model_sha256 = model_identity(plan["model"], old)
    resolver = Resolver(plan, out)
    finished = {n for n, st in ((old or {}).get("stages") or {}).items()
                if st.get("status") == "done" and n not in edited}
    for name in names:  # every stage's settings, before the first one runs
        _check(resolver.context(name, machine=name in selected and name not in finished))
    _check_stage_folders([out / STAGES_DIR, *(resolver.stage_dir(n) for n in selected)])
    _check_reuses(resolver, [n for n in selected if n not in finished])
    done = {n for n in finished if old is not None and is_done(old, n)}
    _refuse_changed_named(old, done, out)  # a stage to be made again (its folder deleted) reads the inputs as they are
    for name in selected:  # an earlier stage --only leaves out and that has not run: before the folder is written
        _refuse_missing(name, [r for r in _inputs(plan, name) if r not in done], finished)
        done.add(name)
    folder = RunFolder.open(out, COMMAND, staged=False, resume=config.resume)  # locked: one process per folder
    try:
        manifest = old or new_manifest(plan, plan_file)
        manifest["model_sha256"] = model_sha256  # (a manifest written before this record gains it now)
        if edited:  # the plan to run now is the edited one; its edited stages run again
            records.take_edits(manifest, plan, plan_file, edited, say)
        folder.start(config_to_dict(config), extra={"plan_file": plan_file})
        save(out, manifest, summary=False)
        t_all = time.time()
        for name in selected:
            ctx = resolver.context(name, running=True, quiet=config.quiet, say=say)
            _run_stage(ctx, manifest, out, f"[{names.index(name) + 1}/{len(names)}]")
        summary = summarize(manifest)
        summary["seconds_this_run"] = round(time.time() - t_all, 3)
        if summary["complete"]:
            folder.finish(summary)
        else:
            write_json(out / "summary.json", summary)
    except BaseException:
        folder.abandon()  # what ran stays for --resume; run.json says how it stopped
        raise
    finally:
        folder.close()
    return summary


def _open_plan(config: PipelineConfig, out: Path) -> tuple[dict | None, dict, str]:
    """``(old manifest, plan, plan file)``: a new pipeline's plan, or on ``--resume`` the folder's manifest and
    the plan it ran unless one is given; a folder that holds a pipeline without ``--resume`` is refused."""
    old = read_manifest(out) if out.is_dir() else None
    if old is not None and not config.resume:
        raise ConfigError(("output", "resume"), "{name0} " + f"{out} already holds a pipeline; add {{name1}} to "
                                                "continue it or choose a new folder")
    if old is None and config.resume:
        if (out / STAGES_DIR).is_dir():  # its stages remain: "run without --resume" then said "add --resume"
            raise ConfigError("resume", f"nothing to resume in {out}: its {MANIFEST}, the record of the stages it "
                              f"ran, is missing (its {STAGES_DIR}/ remain); restore it, or start over in a new "
                              "folder (or delete this one)")
        from longrope.runs.folder import nothing_to_resume

        raise UserError(nothing_to_resume(out, COMMAND))  # the one wording: a folder a fresh start refuses too
    if old is not None and config.plan is None:  # resuming: the plan the folder ran, unless one is given
        plan = check_plan(old["plan"], model=config.model, source=str(out / MANIFEST), strict=False)
        return old, plan, old.get("plan_file", "")
    plan_file = config.plan or str(shipped_plan())
    ran = Path(plan_file)
    ran = ran if ran.is_dir() else ran.parent if ran.name == MANIFEST else None
    if ran is not None:  # a pipeline folder: the plan it ran (what `longrope rerun` repeats), not today's file
        recorded = read_manifest(ran)
        if recorded is None:
            raise ConfigError("plan", f"{{name}} {plan_file} is a folder without a {MANIFEST}; give a plan file")
        return old, check_plan(recorded["plan"], model=config.model, source=str(ran / MANIFEST), strict=False), \
            plan_file
    plan = load_plan(plan_file, model=config.model)  # on --resume: in the terms the folder ran it
    return old, in_todays_terms(plan, out) if old is not None else plan, plan_file


def _recorded_in(saved: dict, run_dir: Path) -> dict:
    """A pipeline's recorded configuration as ``longrope rerun RUN_DIR`` and ``--config RUN_DIR`` read it: the plan
    that folder ran (its manifest), not the plan file as it reads now (edited, moved or gone since: ``--config``
    read the file, so it ran another plan than rerun, and ``--config RUN --resume`` was refused as a plan that
    differs from the one RUN ran). Which stages the last invocation ran (``--only``, ``--until``) is no setting of
    the pipeline, as ``--resume`` is none: after ``--resume --only compare`` a rerun repeated that one stage in an
    empty folder and was refused for want of the stages before it (battery 12a); the whole plan runs unless
    the flag is given again."""
    saved = {**saved, "only": None, "until": None}
    return {**saved, "plan": str(run_dir.resolve())} if (run_dir / MANIFEST).is_file() else saved


def _check_stage_folders(paths: list[Path]) -> None:
    """Refuse, before any stage runs, a file or a broken (or looping) link where a stage folder goes: found
    after the stages before it, it was an OS error ('File exists') or a refusal naming --output."""
    for where in paths:
        if (where.is_symlink() or where.exists()) and not where.is_dir():
            raise UserError(f"{where} is not a folder (a file or a broken link where the pipeline keeps its stages); "
                            "move it away, or start the pipeline in a new folder")


def _selected(config: PipelineConfig, names: list[str]) -> list[str]:
    """The stages this invocation runs (``--only``, ``--until``)."""
    for field in ("only", "until"):
        v = getattr(config, field)
        if v is not None and v not in names:
            raise ConfigError(field, f"{{name}} {v!r} is not a stage of the plan; stages: {', '.join(names)}")
    if config.only is not None:
        return [config.only]
    return names[: names.index(config.until) + 1] if config.until is not None else names


def _edits(old: dict | None, plan: dict) -> list[str]:
    """The stages a resume runs again because the plan edited what their kind lets change; any other
    difference from the plan the folder ran is refused."""
    if old is None:
        return []
    diffs, edited = plan_differences(old["plan"], plan)
    if diffs:
        raise ConfigError("resume", "{name} refused: the plan differs from the one this pipeline ran: "
                          + "; ".join(diffs) + f" (use the same plan, or a new output folder; {editable_keys()})")
    return edited


def _check(ctx: StageContext) -> None:
    """A stage's plan check, its message naming the stage."""
    try:
        STAGES[ctx.run].check_plan(ctx)
    except ConfigError as exc:
        raise UserError(f"plan stage {ctx.name!r} ({ctx.run}): {exc.render(lambda f: f)}") from None
    except UserError as exc:
        raise UserError(f"plan stage {ctx.name!r} ({ctx.run}): {exc}") from None


def _refuse_changed_named(old: dict | None, done: set[str], out: Path) -> None:
    """Refuse a resume where an input a stage skipped as done named by path (``"data": "shards/"``) holds other
    content now, as one whose model holds other files is: the stages still to run would read the new content beside
    the finished ones made from the old. A stage that runs again (its folder deleted: the way to redo one) is not
    asked: it reads the new content too (it was refused: fix 29p). The refusal names every such stage that read the
    input, and the folders whose deletion makes them again (it named one stage, and no way but a new pipeline)."""
    readers: dict[str, list[str]] = {}
    for name in sorted(done):
        for path in records.changed_named_inputs(old["stages"][name]):
            readers.setdefault(os.path.abspath(path), []).append(name)  # f.json and ./f.json: one input
    if not readers:
        return
    # every changed input at once (one each time, the user deleted folders resume by resume), each found from
    # anywhere: the record's path is read in the folder the pipeline started in
    said = "; ".join(f"{path} (read by {', '.join(map(repr, names))})" for path, names in readers.items())
    stages = sorted({n for names in readers.values() for n in names})
    folders = " ".join(str(out / STAGES_DIR / n) for n in stages)
    raise ConfigError("resume", "{name} refused: " + f"{said} {'holds' if len(readers) == 1 else 'hold'} other "
                      f"content than when {'that stage' if len(stages) == 1 else 'those stages'} ran; restore "
                      f"{'it' if len(readers) == 1 else 'them'}, delete {folders} to make "
                      f"{'it' if len(stages) == 1 else 'them'} again from the new content, or start the pipeline in "
                      "a new folder")


def _check_reuses(resolver: Resolver, running: list[str]) -> None:
    """A search stage reusing an earlier search stage's scores (``"reuse": "@NAME"``) under settings where they
    mean something else is refused before the first stage runs (it was refused when it started, after the
    stages before it had run)."""
    from longrope.runs.search import reuse_conflicts

    for name in running:
        entry = resolver.entries[name]
        source = refs(entry.get("reuse")) if entry["run"] == "search" else []
        if not source or resolver.entries[source[0]]["run"] != "search":
            continue
        mine, theirs = (STAGES["search"].settings(resolver.context(n, machine=False)) for n in (name, source[0]))
        diffs = reuse_conflicts(mine, theirs)
        if diffs:
            raise UserError(f"plan stage {name!r} (search): reuse @{source[0]}: its window scores mean something "
                            "else here: " + "; ".join(diffs) + "; give both stages the same settings, or drop reuse")


def _inputs(plan: dict, name: str) -> list[str]:
    """The earlier stages whose outputs stage ``name`` reads (its ``@NAME`` references)."""
    entry = next(s for s in plan["stages"] if s["name"] == name)
    return list(dict.fromkeys(refs(entry)))


def _refuse_missing(name: str, missing: list[str], ran: set[str] = frozenset()) -> None:
    """Refuse a stage whose inputs ``missing`` are not done; those in ``ran`` ran, and their output changed or went
    since (an edited factors.json): they were said only to be 'not done' (battery 24a)."""
    if missing:
        edited = [m for m in missing if m in ran]
        since = (f" ({', '.join(edited)}: ran, but {'its' if len(edited) == 1 else 'their'} output was changed or "
                 "removed since)") if edited else ""
        raise UserError(f"stage {name!r} needs the outputs of {', '.join(missing)}, which "
                        f"{'is' if len(missing) == 1 else 'are'} not done{since}; run those first (or the whole "
                        "pipeline with --resume)")


def _run_stage(ctx: StageContext, manifest: dict, out: Path, counter: str) -> None:
    """Run one stage unless it is done (and still stands), recording every transition in the manifest."""
    stage, st = STAGES[ctx.run], manifest["stages"][ctx.name]
    changed = records.changed_inputs(manifest, ctx.name)
    if changed:  # made from outputs that were made again since, with other content: its own work is void
        ctx.say(f"pipeline: {ctx.name}: {', '.join(changed)} made again since it ran, with other output; making it "
                "again from the start")
        st["status"] = "stale"
        save(out, manifest, summary=False)
        _start_over(ctx)
    why = stage.stale(stage.settings(ctx), st) if is_done(manifest, ctx.name) and stage.stale else None
    if why:
        ctx.say(f"pipeline: {ctx.name}: {why}")
        st["status"] = "stale"
    if is_done(manifest, ctx.name):
        ctx.say(f"pipeline: {counter} {ctx.name} ({ctx.run}): done, skipped")
        return
    lost = records.lost_outputs(st)
    if lost:
        ctx.say(f"pipeline: {ctx.name}: {', '.join(lost)} removed or changed since it ran; making it again")
    used = list(dict.fromkeys(refs(ctx.entry)))
    _refuse_missing(ctx.name, [r for r in used if not is_done(manifest, r)])
    records.start(manifest, ctx.name, ctx.settings, {r: str(ctx.folder.parent / r) for r in used}, named_inputs(ctx))
    save(out, manifest, summary=False)
    ctx.say(f"pipeline: {counter} {ctx.name} ({ctx.run})" + (" — resuming" if st["attempts"] > 1 and not changed else ""))
    t0 = time.time()
    try:
        outcome = stage.run(stage.settings(ctx), ctx)
    except BaseException as exc:
        records.fail(st, exc)
        save(out, manifest)
        raise
    records.finish(st, outcome, time.time() - t0)
    save(out, manifest)


def _start_over(ctx: StageContext) -> None:
    """Remove a stage's folder (its checkpoints, cells and outputs were made from inputs it no longer has: a
    search or a fine-tuning resumed from them is refused, a comparison keeps cells of a model at the same path)."""
    import shutil

    from longrope.runs.folder import FolderLock

    if ctx.folder.is_dir():
        with FolderLock.acquire(ctx.folder, ctx.run):  # never under a run another process holds in it
            shutil.rmtree(ctx.folder)


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
YaRN baseline; ~50 min on 2 idle CPU cores, BENCHMARKS.md §9).

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
    recorded_in=_recorded_in,
)
