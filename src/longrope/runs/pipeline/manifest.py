"""``OUT/pipeline.json``, the manifest of a pipeline: the plan it runs and per stage its resolved settings,
inputs, outputs, metrics, status and times (rewritten atomically at every transition); what a resume
compares with the plan given; and ``summary.json`` made from it."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError, shown
from longrope.io import file_sha256, read_json, write_json
from longrope.runs.pipeline.plan import STAGES_DIR
from longrope.runs.pipeline.stages import NAMED_INPUTS, STAGES, Outcome

MANIFEST_FORMAT = "longrope-pipeline-manifest/1"
MANIFEST = "pipeline.json"


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def new_manifest(plan: dict, plan_file: str) -> dict:
    return {"format": MANIFEST_FORMAT, "plan_file": plan_file, "plan": plan,
            "stages": {s["name"]: {"run": s["run"], "status": "pending"} for s in plan["stages"]}}


#: The fields of a stage record that its readers use, with the kind each must have (a hand-edited manifest).
_RECORD_KINDS: dict[str, tuple[type | tuple[type, ...], str]] = {
    "run": (str, "a string"), "status": (str, "a string"), "attempts": (int, "an integer"),
    "seconds": ((int, float), "a number"), "started": (str, "a string"), "ended": (str, "a string"),
    "error": (str, "a string"), "config": (dict, "an object"), "inputs": (dict, "an object"),
    "outputs": (dict, "an object"), "metrics": (dict, "an object"), "output_sha256": (dict, "an object"),
    "input_sha256": (dict, "an object"), "named_sha256": (dict, "an object"),
}


def read_manifest(out: Path) -> dict | None:
    """The manifest in ``out`` (None when there is none); a damaged one is a one-line error."""
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
    for name, st in stages.items():
        bad = next((k for k, kinds in _RECORD_KINDS.items() if k in st and (not isinstance(st[k], kinds[0])
                                                                           or isinstance(st[k], bool))), None)
        if bad is not None:  # "seconds": "x" was a ValueError traceback when the summary table was printed
            raise UserError(f"{path} is malformed (stage {name!r}'s {bad} must be {_RECORD_KINDS[bad][1]}, got "
                            f"{shown(st[bad])}); {fix}")
    planned = doc["plan"].get("stages", [])
    if not isinstance(planned, list) or not all(isinstance(s, dict) and isinstance(s.get("name"), str)
                                                 and isinstance(s.get("run"), str) for s in planned):
        raise UserError(f"{path} is malformed (its plan's stages must be a list of stage objects, each with a name "
                        f"and a run); {fix}")
    planned = [s["name"] for s in planned]
    if sorted(stages) != sorted(planned):  # a record removed or added by hand
        raise UserError(f"{path} is malformed (its stage records {sorted(stages)} are not its plan's stages "
                        f"{sorted(map(str, planned))}); {fix}")
    for name, st in stages.items():
        if "outputs" in st:
            st["outputs"] = {k: anchor_output(out, name, v, fix=f"{path}: {fix}") for k, v in st["outputs"].items()}
    doc["plan"] = in_todays_terms(doc["plan"], out)
    return doc


def in_todays_terms(plan: dict, out: Path) -> dict:
    """``plan`` as the pipeline in ``out`` ran it: a pipeline whose search stages recorded no fitness ran before
    the joint fitness became the default, when an unset one meant the legacy fitness (ppl; needle for
    longrope2); its search stages that leave the fitness unset get that one written in, so that ``rerun``,
    ``--config`` and a resume search as it did, not under today's default (a rerun of such a pipeline searched
    with the joint fitness, to other factors and other numbers, while a rerun of a search of that time kept ppl)."""
    from longrope.search.objective import legacy_fitness
    from longrope.search.strategies import SEARCH_STRATEGIES

    stages = plan.get("stages")
    if not isinstance(stages, list) or not _ran_before_the_joint_fitness(out, stages):
        return plan

    def unset(s: Any) -> bool:
        return isinstance(s, dict) and s.get("run") == "search" and s.get("fitness") is None \
            and str(s.get("strategy", "steady")) in SEARCH_STRATEGIES

    return {**plan, "stages": [{**s, "fitness": legacy_fitness(s.get("strategy", "steady"))} if unset(s) else s
                               for s in stages]}


def _ran_before_the_joint_fitness(out: Path, stages: list) -> bool:
    """Whether a search stage of the pipeline in ``out`` recorded an unset fitness (resolved in every record
    since the joint fitness became the default)."""
    from longrope.runs.folder import read_run_config

    for s in stages:
        if not isinstance(s, dict) or s.get("run") != "search" or not isinstance(s.get("name"), str):
            continue
        try:
            command, saved = read_run_config(out / STAGES_DIR / s["name"])
        except (UserError, OSError):
            continue
        if command == "search" and saved.get("fitness") is None:
            return True
    return False


def anchor_output(out: Path, name: str, recorded: Any, *, fix: str) -> str:
    """A stage's recorded output path, re-anchored in the pipeline folder ``out`` as it is now: every output
    lies in its stage's own folder (``stages/NAME/...``), so a pipeline folder that was moved or copied keeps
    its finished stages, and a path edited to point anywhere else is refused in one line."""
    parts = Path(str(recorded)).parts
    starts = [i for i in range(len(parts) - 1) if parts[i] == STAGES_DIR and parts[i + 1] == name]
    rest = parts[starts[-1] + 2:] if starts and isinstance(recorded, str) else None
    if rest is None or any(p in ("..", ".", "") for p in rest):
        raise UserError(f"stage {name!r}'s recorded output {recorded!r} is not inside its stage folder "
                        f"{STAGES_DIR}/{name}/ (the manifest was edited); {fix}")
    return str(out.joinpath(STAGES_DIR, name, *rest))


def save(out: Path, manifest: dict, *, summary: bool = True) -> None:
    """Write the manifest (and ``summary.json`` from it)."""
    write_json(out / MANIFEST, manifest)
    if summary:
        write_json(out / "summary.json", summarize(manifest))


def model_identity(model: str, old: dict | None) -> str | None:
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


def as_recorded_model(plan: dict, old: dict | None) -> dict:
    """``plan`` with its model spelled as the pipeline in ``old`` recorded it, where both spellings name one local
    model folder or file (read in the folder the pipeline was started in): a resume typed in another folder with
    ``--model proj/m`` for the ``m`` typed at the start, or with ``--model ./m``, was refused as a plan whose
    model differs (``model 'm' -> '/…/proj/m'``), though it was the same folder (battery 29c). What the model
    holds is checked by its digest (:func:`model_identity`)."""
    from longrope.models.loading import resolve_source

    was = (old or {}).get("plan", {}).get("model")
    if not isinstance(was, str) or was == plan["model"]:
        return plan
    try:
        a, b = resolve_source(was), resolve_source(plan["model"])
    except UserError:
        return plan
    same = a.kind != "hub" and (a.kind, a.location, a.gguf_file) == (b.kind, b.location, b.gguf_file)
    return {**plan, "model": was} if same else plan


def _edited(a: dict | None, b: dict | None) -> bool:
    """Both versions are one stage that differ only in the keys its kind lets a resume change."""
    if a is None or b is None or a.get("run") != b.get("run") or a.get("run") not in STAGES:
        return False
    editable = STAGES[a["run"]].editable
    return bool(editable) and {k: v for k, v in a.items() if k not in editable} == \
        {k: v for k, v in b.items() if k not in editable}


def plan_differences(old: dict, new: dict) -> tuple[list[str], list[str]]:
    """``(refused, edited)``: the differences a resume refuses, and the stages edited only in the keys their
    kind lets change (:attr:`Stage.editable <longrope.runs.pipeline.stages.Stage.editable>`): they run again."""
    diffs, edited = [], []
    if old.get("model") != new.get("model"):
        diffs.append(f"model {old.get('model')!r} -> {new.get('model')!r}")
    # a stage's description documents it, as the plan's own does: editing it changes nothing that ran
    a = {s["name"]: {k: v for k, v in s.items() if k != "description"} for s in old.get("stages", [])}
    b = {s["name"]: {k: v for k, v in s.items() if k != "description"} for s in new.get("stages", [])}
    for name in list(a) + [n for n in b if n not in a]:
        if a.get(name) == b.get(name):
            continue
        if _edited(a.get(name), b.get(name)):
            edited.append(name)
        else:
            diffs.append(f"stage {name!r} " + ("added" if name not in a else "removed" if name not in b else "changed"))
    return diffs, edited


def take_edits(manifest: dict, plan: dict, plan_file: str, edited: list[str], say: Callable[[str], None]) -> None:
    """Record the edited ``plan`` as the one the pipeline runs; its ``edited`` stages run again."""
    manifest.update(plan=plan, plan_file=plan_file)
    runs = {s["name"]: s["run"] for s in plan["stages"]}
    for name in edited:
        if manifest["stages"].get(name, {}).get("status") == "done":
            manifest["stages"][name]["status"] = "stale"
        say(f"pipeline: {name}: its {', '.join(STAGES[runs[name]].editable)} edited since it ran; running it "
            "again for what changed")


def editable_keys() -> str:
    """What a resume lets change, for its refusal: "a compare stage may change only its methods, ..."."""
    return "; ".join(f"a {run} stage may change only its " + ", ".join(s.editable)
                     for run, s in STAGES.items() if s.editable)


def is_done(manifest: dict, name: str) -> bool:
    """A stage is done when the manifest says so, its outputs still hold what it wrote, and the earlier stages it
    read still hold what it read (:func:`changed_inputs`)."""
    return _finished(manifest["stages"].get(name, {})) and not changed_inputs(manifest, name)


def changed_inputs(manifest: dict, name: str) -> list[str]:
    """The earlier stages whose outputs are no longer those stage ``name`` read: each was made again since (its
    folder deleted, its output edited, its compare methods edited ...) and wrote other content. A stage made from
    them was skipped as done, and the pipeline reported numbers of documents, factors or a model it no longer
    holds (battery 20); such a stage is made again from the start. A record from before these digests reads none."""
    read = manifest["stages"].get(name, {}).get("input_sha256")
    if not isinstance(read, dict):
        return []
    return [r for r, digests in read.items() if manifest["stages"].get(r, {}).get("output_sha256") != digests]


def lost_outputs(st: dict) -> list[str]:
    """The outputs of a stage recorded done that no longer hold what it wrote (removed, edited or damaged since it
    ran): such a stage runs again — one edited between a kill and --resume (a search stage's factors.json) was read
    by the stages after it while the summary reported the stage's own numbers (battery 19) — and --resume says
    which (it said only "resuming": a factor file edited by hand was written over without a word, battery 24a)."""
    outputs = st.get("outputs")
    if st.get("status") != "done" or not isinstance(outputs, dict):
        return []
    recorded = st.get("output_sha256") if isinstance(st.get("output_sha256"), dict) else {}  # none: an old manifest
    now = _output_files({k: p for k, p in outputs.items() if k in recorded})
    return [str(p) for k, p in outputs.items() if not Path(p).exists() or (k in recorded and now.get(k) != recorded[k])] \
        + [f"its output {k!r}" for k in recorded if k not in outputs]


def _finished(st: dict) -> bool:
    """A stage record that says done and names its outputs, every one still there: a finished stage always records
    its main output, so none (or an empty set: ``"outputs": {}`` was skipped as done, and a later stage failed on
    the missing output, or the summary on a missing key) is an edited record, and the stage runs again."""
    outputs = st.get("outputs")
    return st.get("status") == "done" and isinstance(outputs, dict) and bool(outputs) and not lost_outputs(st)


def _output_files(outputs: dict) -> dict[str, str]:
    """The SHA-256 of each output of a stage that is one file (a factor file, a GGUF export) or a model folder (a
    fine-tuned or exported model: its weights, configs and tokenizer, as ``models.loading.model_digest`` reads
    them; a fine-tuned model replaced between a kill and --resume was loaded by every later stage while the
    summary named it the stage's own), or a shard folder (its meta.json, which records every shard's digest: a
    shard folder rebuilt from other documents was read by the later stages as the stage's)."""
    from longrope.models.loading import model_digest

    digests = {}
    for k, p in outputs.items():
        if isinstance(p, str) and Path(p).is_file():
            digests[k] = file_sha256(p)
        elif isinstance(p, str) and (Path(p) / "config.json").is_file():
            digests[k] = model_digest(p)
        elif isinstance(p, str) and (Path(p) / "meta.json").is_file():  # a shard folder: by what it holds, as a
            digests[k] = _shards_digest(Path(p))  # search or a fine-tuning knows its data (not the time it was made)
    return digests


def changed_named_inputs(st: dict) -> list[str]:
    """The inputs a finished stage named by path (a shard folder, a factor file, a model: ``"data": "shards/"``)
    that hold other content now than when it ran. A resume skipped such a stage as done while the stages still to
    run read the new content: two search stages of one pipeline searched two sets of documents, without a word
    (battery 29c). One removed since is none (no stage reads it now); one that no longer reads as its role is
    changed; a record from before these digests (or from before they were kept by role) reads none."""
    named = st.get("named_sha256")
    if st.get("status") != "done" or not isinstance(named, dict):
        return []
    return [str(named_path(role, rec["path"])) for role, rec in named.items() if role in NAMED_INPUTS and isinstance(rec, dict)
            and isinstance(rec.get("path"), str) and named_path(role, rec["path"]).exists()
            and _named_digest_or_none(role, rec["path"]) != rec.get("sha256")]


def named_path(role: str, path: str) -> Path:
    """Where an input a stage names in ``role`` lies: a model's ``~`` is its home folder, as the model loader reads it
    (``"model": "~/m"`` was looked for as ./~/m, found missing, and so never compared; second review of battery 29);
    other paths are as written."""
    from longrope.io import expand_user

    return expand_user(path) if role == "model" else Path(path)


def named_digest(role: str, path: str) -> str | None:
    """The content digest of an input a stage names by path, read as the stage reads it in that role
    (:data:`~longrope.runs.pipeline.stages.NAMED_INPUTS`): a model by ``model_digest`` (None: a hub model; a GGUF
    file is hashed once per process), a shard folder by its documents, factors by the file the factor reader picks
    (a folder's factors.json, else its config.json). An input that does not read so is the one-line error its
    stage gives: read as an output was, a folder holding factors.json, a search run folder given as factors or a
    GGUF model folder were recorded as no digest, which bound nothing (a resume read other factors)."""
    if role == "model":
        from longrope.models.loading import model_digest

        return model_digest(path)
    if role == "data":
        from longrope.data.shards import TokenCorpus

        return TokenCorpus.open(Path(path), verify="size").content_digest
    from longrope.formats.factors import factor_file

    return file_sha256(factor_file(path))


def _named_digest_or_none(role: str, path: str) -> str | None:
    try:
        return named_digest(role, path)
    except (UserError, OSError, KeyError, TypeError):  # no longer reads as it did: not what the stage read
        return None


def _shards_digest(folder: Path) -> str | None:
    """A shard folder's content digest (its tokens, documents and roles: ``TokenCorpus.content_digest``); a folder
    that no longer opens has none (its stage runs again). Its meta.json's own digest changed with the time it was
    written: the same documents tokenized again made every stage after the data stage run again (battery 20)."""
    from longrope.data.shards import TokenCorpus

    try:
        return TokenCorpus.open(folder, verify="size").content_digest
    except (UserError, OSError, KeyError, TypeError):
        return None


def start(manifest: dict, name: str, settings: dict, inputs: dict, named: dict | None = None) -> None:
    """Stage ``name``'s record at the start of an attempt; ``inputs``: the earlier stages it reads (name → folder),
    whose output digests it records (:func:`changed_inputs`); ``named``: the inputs it names itself (role → path),
    whose content digests it records (:func:`changed_named_inputs`)."""
    st = manifest["stages"][name]
    read = {r: manifest["stages"][r].get("output_sha256") for r in inputs}
    st.update(status="running", config=settings, started=now(), attempts=st.get("attempts", 0) + 1, inputs=inputs,
              input_sha256=read, named_sha256={role: {"path": p, "sha256": named_digest(role, p)}
                                               for role, p in (named or {}).items()})
    st.pop("error", None)


def fail(st: dict, exc: BaseException) -> None:
    st.update(status="failed" if isinstance(exc, Exception) else "interrupted", ended=now(),
              error=f"{type(exc).__name__}: {exc}")


def finish(st: dict, outcome: Outcome, seconds: float) -> None:
    st.update(status="done", ended=now(), seconds=round(seconds, 3), outputs=outcome.outputs,
              metrics=outcome.metrics, output_sha256=_output_files(outcome.outputs), **outcome.record)


def summarize(manifest: dict) -> dict:
    """``summary.json``: every stage's status and metrics, and the tables of the last done stage whose kind
    reports some (the last comparison) at the top."""
    # a done stage made from outputs replaced since is not complete (status "stale"); read from the records alone:
    # the outputs' digests (every weight byte of a model) are computed where a stage is about to be skipped
    standing = {n: s.get("status") == "done" and not changed_inputs(manifest, n) for n, s in manifest["stages"].items()}
    out: dict[str, Any] = {"model": manifest["plan"]["model"],
                           "complete": all(standing.values()),
                           "stages": {n: {k: s.get(k) for k in ("run", "status", "seconds", "metrics", "outputs")
                                          if k in s} for n, s in manifest["stages"].items()}}
    for n, s in out["stages"].items():
        if s.get("status") == "done" and not standing[n]:
            s["status"] = "stale"
    reporting = [s for n, s in manifest["stages"].items() if standing[n] and _finished(s)
                 and s.get("run") in STAGES and STAGES[s["run"]].summary_keys]
    if reporting:
        path = Path(reporting[-1]["outputs"].get("summary", ""))
        if path.name and path.exists():
            res = read_json(path, what="comparison summary")
            for key in STAGES[reporting[-1]["run"]].summary_keys:
                out[key] = res.get(key)
    return out
