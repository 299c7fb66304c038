"""``longrope search``: a whole search run — plan, evaluate, checkpoint, report — in one run folder.

Files (besides the run folder's ``config.json``, ``run.json`` and ``summary.json``):

- ``checkpoint.json``: the resumable state, rewritten atomically after every told evaluation;
- ``history.jsonl``: every evaluated genome, its documents and fitness, in the order told;
- ``yarn_reference.json`` (constrained fitness): YaRN's answer NLL per search window, the bound,
  measured at the first start and read back by a resume;
- ``factors.json``: the best factor set (``FactorSet.save``), with the search in its provenance;
- ``factors.png``: λ per dimension against PI, NTK and YaRN;
- ``summary.json``: the search's outcome and, unless ``report`` is off, the held-out perplexity of
  the result beside the closed-form baselines on the same held-out windows.
"""

from __future__ import annotations

import hashlib
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from longrope.errors import ConfigError, UserError
from longrope.groups import (
    check_groups,
    data_option,
    device_option,
    dtype_option,
    heldout_fraction_option,
    resolve_lengths,
    run_device,
    samples_option,
    seed_option,
    windows_per_doc_option,
)
from longrope.io import read_json
from longrope.options import MAX_TOKENS, check_int, config_to_dict, is_integer, nested, option, output_option
from longrope.runs import RunSpec
from longrope.search.backends import BACKEND_FIELDS, backends_given
from longrope.search.objective import (
    FITNESSES,
    LEGACY_ANSWER,
    REFERENCE_FILE,
    WEIGHT_HELP,
    answer_protocol,
    check_constrained,
    check_fitness,
    default_fitness,
    legacy_fitness,
)
from longrope.search.plan import STRATEGY_NAMES
from longrope.search.space import PAPER_START_TOKENS
from longrope.search.strategies import SEARCH_STRATEGIES, StrategyConfig, search_strategy
from longrope.settings import MAX_SLOTS, check_budget, dtype_name

COMMAND = "search"
_EVAL = "evaluation"
_MODES = "modes"


def fitness_option(default_text: str, **kw: Any) -> Any:
    """The ``fitness`` field of a command that searches (search, demo): it follows the strategy (and ``short``)
    only where the record holds the fitness they resolved it to; one the run chose otherwise stays."""
    return option(None, "what a candidate is scored by: " + "; ".join(f"{f.name}: {f.help}" for f in FITNESSES.values()),
                  choices=tuple(FITNESSES), default_text=default_text,
                  tags={"follows": ("strategy", "short"), "keep": _chosen_fitness}, **kw)


def _chosen_fitness(recorded: dict, new: dict) -> bool:
    """Whether a recorded fitness was chosen rather than resolved from the recorded strategy and mode (kept then,
    when ``--config RUN`` changes them: ``--config RUN --strategy paper`` of a ``--fitness ppl`` run stays ppl)."""
    strategy = recorded.get("strategy", "steady")
    if not isinstance(strategy, str) or strategy not in SEARCH_STRATEGIES:
        return True  # no strategy to resolve it from: kept, and checked as it is
    return recorded.get("fitness") != default_fitness(strategy, recorded.get("short") is True)


def _used_space_setting(name: str) -> Any:
    """``keep`` of a space setting that a strategy or mode may ignore: a recorded value is kept under the new
    strategy and mode unless they ignore it (``--config RUN --strategy longrope2`` of a run with ``--min-factor``
    drops it rather than refusing a value no flag unsets)."""

    def keep(recorded: dict, new: dict) -> bool:
        strategy = new.get("strategy", "steady")
        value = recorded.get(name)
        inert = _inert_space_settings(strategy if isinstance(strategy, str) else "", new.get("short") is True,
                                      new.get("base_factors") is not None,
                                      value if name == "min_factor" else None,
                                      value if name == "start_tokens" else PAPER_START_TOKENS)
        return inert is None

    return keep


def retrieval_weight_option(**kw: Any) -> Any:
    """The ``retrieval_weight`` field of a command that searches."""
    return option(None, WEIGHT_HELP, metavar="W", tags={"follows": "fitness"}, **kw)


def resolve_fitness(config: Any, mode: str) -> None:
    """Set ``config.fitness`` (the strategy's default when unset; resolved here, so config.json says which
    fitness ran) and ``config.retrieval_weight`` (the fitness's default when unset); a weight the fitness
    does not take, or a fitness the search ``mode`` cannot use, is a :class:`ConfigError`."""
    config.fitness = config.fitness or default_fitness(config.strategy, mode == "short")
    try:
        config.retrieval_weight = check_fitness(config.fitness, config.retrieval_weight)
    except ValueError as exc:
        raise ConfigError(("retrieval_weight", "fitness"), "{name0}: " + f"{exc} (see {{name1}})") from None
    try:
        check_constrained(config.fitness, mode)
    except ValueError as exc:
        raise ConfigError("fitness", "{name}: " + str(exc)) from None

@dataclass
class SearchConfig:
    """Everything ``longrope search`` does; the only home of its defaults."""

    model: str = option(help='"tiny", "smollm2", a model folder, a .gguf file or a hub id', path=True)
    data: str = data_option()
    output: str = output_option("run folder (created; holds the checkpoint)", metavar="RUN_DIR")
    target_length: int | None = option(None, "target context L' in tokens: 16384, 16k, or 8x the model's original "
                                             "context (required except with --short)", metavar="N", length=True)
    strategy: str = option("steady", "search strategy: steady (ours), paper (Algorithm 1 as published), "
                                     "longrope2 (critical dimension + needle fitness)", choices=STRATEGY_NAMES)
    seed: int = seed_option("seed of the search and of the window sample")
    samples: int = samples_option("search windows the fitness is computed on (each BOS + L'-1 tokens; several may "
                                  "come from one long document, see --windows-per-doc)", metavar="N")
    knobs: StrategyConfig = nested(StrategyConfig, "the strategies' knobs")
    step: float = option(0.01, "grid of λ: its multiples, so it must divide the lower bound (1.0: 0.01, 0.02, 0.05 ...)",
                         group="the paper's knobs (LongRoPE Table 4 defaults)")
    min_factor: float | None = option(None, "lower bound of λ", default_text="1.0",
                                      group="the paper's knobs (LongRoPE Table 4 defaults)",
                                      tags={"follows": ("strategy", "short"), "keep": _used_space_setting("min_factor")})
    max_factor: float | None = option(None, "upper bound of λ", default_text="1.25·s; 2.0 with --short; 2·s "
                                      "for longrope2", group="the paper's knobs (LongRoPE Table 4 defaults)")
    start_tokens: tuple[int, ...] = option(PAPER_START_TOKENS, "n̂ values searched (steady and paper extension "
                                           "searches)", group="the paper's knobs (LongRoPE Table 4 defaults)",
                                           metavar="N,N", tags={"follows": ("strategy", "short"),
                                                                "keep": _used_space_setting("start_tokens")})
    fixed_attention: bool = option(False, "steady: keep LongRoPE's attention temperature instead of searching it",
                                   group="ours (--strategy steady / longrope2)")
    critical_floor: bool = option(False, "install λ_i >= s for every pair from LongRoPE2's critical pair on "
                                         "(steady / paper, extension searches)",
                                  group="ours (--strategy steady / longrope2)")
    fitness: str | None = fitness_option("joint; needle for longrope2; ppl with --short",
                                         group="ours (--strategy steady / longrope2)")
    retrieval_weight: float | None = retrieval_weight_option(group="ours (--strategy steady / longrope2)")
    max_evals: float | None = option(None, "stop after this many full-fidelity evaluations (racing counts "
                                           "fractions); 0 or unset: no limit", metavar="N", group="budgets")
    max_seconds: float | None = option(None, "stop after this many seconds of search (a resumed search's "
                                             "earlier time included); 0 or unset: no limit", metavar="S",
                                       group="budgets")
    reuse: str | None = option(None, "start from the window scores of an earlier search's run folder (same model, "
                                     "data, length, windows, search space and dtype; strategy knobs may differ): "
                                     "no window is scored twice, and the budgets count only new scores",
                               metavar="RUN_DIR", group="budgets", path=True)
    short: bool = option(False, "search the short factors of --base-factors at length L", group=_MODES)
    base_factors: str | None = option(None, "factor file the model was fine-tuned with (progressive search), or "
                                            "whose short factors to fill (--short)", metavar="F", group=_MODES,
                                      path=True)
    heldout_samples: int = samples_option("held-out windows in the report", metavar="N", group=_EVAL)
    windows_per_doc: int = windows_per_doc_option(group=_EVAL)
    heldout_fraction: float = heldout_fraction_option(group=_EVAL)
    report: bool = option(True, "score the result and PI/NTK/YaRN on held-out windows", group=_EVAL)
    workers: int = option(0, "CPU worker processes (0: evaluate in this process)", group=_EVAL)
    devices: tuple[str, ...] = option((), "one worker process per device, e.g. cuda:0,cuda:1", group=_EVAL,
                                      metavar="D,D")
    ray_address: str | None = option(None, "Ray cluster address ('auto', 'ray://host:10001'); needs "
                                           "pip install longrope[ray]", group=_EVAL)
    device: str = device_option("device of the in-process evaluator and of the report: auto (CUDA when available, "
                                "else cpu), cpu, cuda, cuda:1", group=_EVAL)
    dtype: str = dtype_option(group=_EVAL)
    attn_implementation: str | None = option(None, "attention implementation (sdpa, eager, ...)", group=_EVAL,
                                             default_text="the family's working one")
    unordered: bool = option(False, "parallel evaluators: tell results as they arrive (never idle, not "
                                    "reproducible)", group=_EVAL)
    resume: bool = option(False, "continue the search saved in the run folder")
    quiet: bool = option(False, "no progress bar")

    def __post_init__(self) -> None:
        self.max_evals = check_budget(self.max_evals, "max_evals")  # first: its own message says what 0 means
        self.max_seconds = check_budget(self.max_seconds, "max_seconds")
        resolve_lengths(self)
        check_groups(self)
        check_int(self, "workers", 0, MAX_SLOTS)
        check_int(self, "target_length", 2, MAX_TOKENS, optional=True)
        for name, what in (("base_factors", "a factor file"), ("reuse", "a search run folder"),
                           ("ray_address", "a Ray cluster address")):
            value = getattr(self, name)  # '' (an unset shell variable) meant the option was not given at all
            if value is not None and not value.strip():
                raise ConfigError(name, "{name} is empty; give " + what + ", or leave {name} out")
        given = backends_given(self.workers, self.devices, self.ray_address)
        if len(given) > 1:
            raise ConfigError(BACKEND_FIELDS, "give only one of {name0}, {name1} and {name2}")
        if self.unordered and not given:
            raise ConfigError(("unordered", *BACKEND_FIELDS),
                              "{name0} orders the results of parallel evaluators; give {name1}, {name2} or {name3} "
                              "too, or drop {name0}")
        if self.short and self.base_factors is None:
            raise ConfigError(("short", "base_factors"),
                              "{name0} fills the short factors of an existing factor file: give it with {name1}")
        if self.critical_floor and (self.short or self.base_factors or search_strategy(self.strategy).space == "critical"):
            raise ConfigError("critical_floor", "{name} applies to a first extension search (steady or paper); "
                                                "longrope2 has its own floor, --short and --base-factors none")
        if self.fixed_attention and self.short:  # accepted, and it changed nothing (battery 8)
            raise ConfigError(("fixed_attention", "short"), "{name0} keeps the temperature that steady searches; "
                                                            "{name1} searches none: drop {name0}")
        if self.fixed_attention and not search_strategy(self.strategy).searches_attention:
            raise ConfigError(("fixed_attention", "strategy"), "{name0} keeps the temperature that {name1} steady "
                              f"searches; {self.strategy} searches none: drop " + "{name0}")
        inert = _inert_space_settings(self.strategy, self.short, self.base_factors is not None, self.min_factor,
                                      self.start_tokens)
        if inert:  # accepted, and the search space ignored them (battery 11b)
            raise ConfigError((inert[0], "strategy", "short"), "{name0} " + inert[1] + ": drop {name0}")
        if self.short and search_strategy(self.strategy).space == "critical":
            raise ConfigError(("short", "strategy"), "{name0} and {name1} longrope2 do not combine")
        if not self.short and self.target_length is None:
            raise ConfigError("target_length", "{name} is required (except with --short)")
        if self.target_length is not None and self.target_length < 2:
            raise ConfigError("target_length", "{name} must be >= 2 tokens, got " + str(self.target_length))
        if not self.step > 0:
            raise ConfigError("step", "{name} must be > 0, got " + str(self.step))
        for name in ("min_factor", "max_factor"):
            v = getattr(self, name)
            if v is not None and not 0 < v <= 1e6:
                raise ConfigError(name, "{name} must be > 0 and at most 1e6, got " + str(v))
        if not 1e-6 <= self.step <= 1e6:  # inf: a grid of NaN factors, found only by the evaluations
            raise ConfigError("step", "{name} must be a number from 1e-6 to 1e6, got " + str(self.step))
        if self.min_factor is not None and self.max_factor is not None and self.min_factor >= self.max_factor:
            raise ConfigError(("min_factor", "max_factor"), "{name0} must be below {name1}")
        if not self.start_tokens or min(self.start_tokens) < 0 or max(self.start_tokens) > MAX_TOKENS:
            raise ConfigError("start_tokens", "{name} must be integers in " + f"[0, {MAX_TOKENS:,}]")
        self.start_tokens = tuple(sorted(set(self.start_tokens)))
        resolve_fitness(self, "short" if self.short else "progressive" if self.base_factors else "long")

    @property
    def fitness_name(self) -> str:
        return fitness_name(self.strategy, self.fitness)


def fitness_name(strategy: str, fitness: str | None) -> str:
    """The fitness a recorded search used: the one its config names; unset (records older than the joint
    fitness) meant needle for longrope2 and ppl otherwise."""
    return fitness or legacy_fitness(strategy)


def recorded_config(saved: dict) -> dict:
    """A recorded search (or demo) configuration in today's terms: an unset fitness was resolved when the run
    started only since the joint fitness became the default; in older records it meant
    :func:`legacy_fitness`, which ``rerun`` and ``--config`` must repeat rather than today's default."""
    saved = _without_inert_settings(saved)
    strategy = saved.get("strategy", "steady") if isinstance(saved, dict) else None
    if isinstance(strategy, str) and strategy in SEARCH_STRATEGIES and saved.get("fitness") is None:
        return {**saved, "fitness": legacy_fitness(strategy)}  # another strategy: its field's own check refuses it
    return saved


def _inert_space_settings(strategy: str, short: bool, progressive: bool, min_factor: Any,
                          start_tokens: Any) -> tuple[str, str] | None:
    """``(field, why)`` of a space setting the search would ignore: longrope2's first extension fixes λ's floor (1
    below its critical dimension, s from it) and n̂ = 0 (a progressive search, with ``base_factors``, searches the
    extension space whatever the strategy); a short search keeps the base file's n̂. None when every one is used."""
    critical = strategy in SEARCH_STRATEGIES and search_strategy(strategy).space == "critical" and not progressive
    if critical and min_factor is not None:
        return "min_factor", "bounds the λ that steady and paper search; {name1} longrope2 sets its own floor"
    given = isinstance(start_tokens, (list, tuple)) and all(map(is_integer, start_tokens)) \
        and tuple(sorted(set(start_tokens))) != PAPER_START_TOKENS  # other items: the field's own check names them
    if given and (critical or short is True):
        return "start_tokens", ("are the n̂ values steady and paper search; {name1} longrope2 keeps n̂ = 0" if critical
                                else "are the n̂ values an extension search tries; {name2} keeps the base file's n̂")
    return None


def _without_inert_settings(saved: Any) -> Any:
    """A recorded setting that changed nothing read as unset: ``fixed_attention`` where no temperature is searched
    (a strategy that searches none, or a short search), ``min_factor`` for longrope2, ``start_tokens`` for longrope2
    or a short search. Such runs were accepted before they were refused, and their rerun, ``--config`` and
    ``--resume`` must keep working (the search they ran is the same)."""
    if not isinstance(saved, dict):
        return saved
    strategy = saved.get("strategy", "steady")
    if not isinstance(strategy, str):  # a hand-edited config.json's list or object: the strategy field's own check
        return saved  # names it in one line ("strategy in SEARCH_STRATEGIES" was 'unhashable type: list', battery 21b)
    short = saved.get("short") is True
    out = dict(saved)
    if saved.get("fixed_attention") is True and (short or (strategy in SEARCH_STRATEGIES
                                                           and not search_strategy(strategy).searches_attention)):
        out["fixed_attention"] = False
    for _ in range(2):  # min_factor, then start_tokens
        inert = _inert_space_settings(strategy, short, out.get("base_factors") is not None, out.get("min_factor"),
                                      out.get("start_tokens"))
        if inert:
            out[inert[0]] = None if inert[0] == "min_factor" else list(PAPER_START_TOKENS)
    return out if out != saved else saved


def _upgrade_fingerprint(old: dict) -> dict:
    """A fingerprint written before the joint fitness, in today's terms (its fitness named, no weight)."""
    cfg = old.get("config")
    if not isinstance(cfg, dict):
        return old
    cfg = dict(_without_inert_settings(cfg))
    if cfg.get("fitness") is None:
        cfg["fitness"] = legacy_fitness(str(cfg.get("strategy", "")))
    cfg.setdefault("retrieval_weight", None)
    cfg.setdefault("critical_floor", False)
    if isinstance(cfg.get("dtype"), str):  # recorded as spelled before: compared by the precision it names
        cfg["dtype"] = dtype_name(cfg["dtype"]) or cfg["dtype"]
    rope = old.get("rope")
    if cfg.get("target_length") is None and cfg.get("short") is True and isinstance(rope, dict):
        cfg["target_length"] = rope.get("original_length")  # recorded unset before: a short search runs at L
    planted = FITNESSES.get(cfg["fitness"]) is not None and FITNESSES[cfg["fitness"]].needs_tokenizer
    return {"answer": LEGACY_ANSWER if planted else None, **old, "config": cfg}


def _inputs_by_path(fp: Any) -> str | None:
    """What a search fingerprint written before fingerprints held the inputs' contents lacks (None for one that
    holds them): such a record names the model and the shard folder by their paths, which tell nothing of what
    they hold now, so neither a resume nor ``--reuse`` can be checked against it (its differences from today's
    form are no differences of the run)."""
    cfg = fp.get("config") if isinstance(fp, dict) else None
    if not isinstance(cfg, dict) or "data" not in cfg:  # today's fingerprints hold the data by content only
        return None
    return ("it was written by an older longrope, which recorded the model and the shard folder by their paths, "
            "not their contents")


#: Fields that never change the trajectory of a search (a resume may change them). The dtype is not one
#: of them: scores in two precisions in one archive compare unlike numbers (``--reuse`` refuses it too).
_RUNTIME_FIELDS = ("output", "resume", "workers", "devices", "ray_address", "device", "quiet", "report",
                   "heldout_samples", "max_evals", "max_seconds", "attn_implementation")


def _data_fingerprint(data: str) -> dict:
    """Identity of a shard folder by content: its meta's checksums (cheap; no token is read)."""
    try:
        meta = read_json(Path(data) / "meta.json", what="shard folder's meta.json")
        shards = meta.get("shards", [])
        if not isinstance(shards, list) or not all(isinstance(r, dict) for r in shards):
            raise UserError("malformed")
    except UserError:
        raise ConfigError("data", f"{{name}} {data} is not a shard folder (no readable meta.json); create one with "
                                  "'longrope tokenize'") from None
    def digest(key: str) -> Any:
        rec = meta.get(key)
        return rec.get("sha256") if isinstance(rec, dict) else None

    # the index (document boundaries, pinned roles) and names too: a folder rebuilt with the same tokens
    # but other roles selects other windows
    return {"n_docs": meta.get("n_docs"), "n_tokens": meta.get("n_tokens"),
            "shards": [r.get("sha256") for r in shards], "index": digest("index"), "names": digest("names")}


#: Settings that only shape the search space, which the fingerprint holds as resolved (its bounds, grid and n̂
#: values): a resume compares them through it, so an unset bound and the same bound spelled out
#: (``--min-factor 1.0``) are the same run.
_SPACE_FIELDS = ("step", "min_factor", "max_factor", "start_tokens")

#: Paths whose content the fingerprint holds instead of their names (a folder moved elsewhere resumes,
#: one rebuilt in place does not).
_CONTENT_FIELDS = ("data", "base_factors")


def fingerprint(config: SearchConfig, plan: Any) -> dict:
    """What must match for a resume: model, data, and every setting that changes the trajectory,
    inputs by content (a local model by its digest, a hub model by its id)."""
    from longrope.models.loading import model_digest

    digest = model_digest(config.model)  # a local model by its content: moved elsewhere, it resumes
    by_content = _CONTENT_FIELDS + (("model",) if digest is not None else ())
    cfg = {k: v for k, v in config_to_dict(config).items() if k not in _RUNTIME_FIELDS + by_content}
    cfg["space"] = plan.space.to_dict()
    cfg["dtype"] = dtype_name(config.dtype)  # the precision, not its spelling: --dtype fp32 resumes a float32 run
    cfg["target_length"] = plan.length  # resolved: a short search's unset length is L, as --target-length L says
    model = config.model if digest is None else {"sha256": digest}
    ident = {"model": model, "rope": plan.rope, "data": _data_fingerprint(config.data), "config": cfg,
             "answer": answer_protocol(config.fitness_name)}
    if config.base_factors:  # the scores depend on the factors the file holds, not on its name or its bytes
        ident["base_factors_digest"] = _base_factor_set(config, plan).digest()
    return ident


def _base_factor_set(config: SearchConfig, plan: Any) -> Any:
    from longrope.rope import FactorSet

    return FactorSet.load(config.base_factors, rope_theta=plan.rope["rope_theta"],
                          original_length=plan.rope["original_length"])


def _base_file_sha256(path: str) -> str:
    """SHA-256 of the bytes of the base factor file (what fingerprints recorded before the factor set's digest)."""
    from longrope.formats.factors import factor_file  # a folder: the file the factors are read from

    return hashlib.sha256(factor_file(path).read_bytes()).hexdigest()


def _as_recorded(ident: dict, old: dict, config: SearchConfig) -> dict:
    """``ident`` in the terms of the recorded fingerprint ``old``: one written before the factor set's digest
    named the base factor file by the SHA-256 of its bytes (it is resumed with the same bytes)."""
    if "base_factors_sha256" not in old or "base_factors_digest" not in ident or not config.base_factors:
        return ident
    mine = {k: v for k, v in ident.items() if k != "base_factors_digest"}
    return {**mine, "base_factors_sha256": _base_file_sha256(config.base_factors)}


#: The settings a window's score depends on (with model, rope, data and the search space); the
#: others (strategy, knobs, budgets) only choose which candidates get scored.
_SCORE_FIELDS = ("target_length", "seed", "samples", "windows_per_doc", "heldout_fraction", "short", "critical_floor")


def _score_identity(ident: dict, strategy: str, fitness: str | None, dtype: str) -> dict:
    cfg = ident.get("config", {})
    return {"model": ident.get("model"), "rope": ident.get("rope"), "data": ident.get("data"),
            "space": cfg.get("space"), "fitness": fitness_name(strategy, fitness),
            "retrieval_weight": cfg.get("retrieval_weight"), "answer": ident.get("answer"),
            "dtype": dtype_name(dtype) or dtype, "base_factors": ident.get("base_factors_digest", ident.get("base_factors_sha256")),
            **{k: cfg.get(k) for k in _SCORE_FIELDS}}


def reuse_refusal(where: Any, diffs: list[str]) -> ConfigError:
    """The one refusal of a ``--reuse`` whose window scores mean something else here (``diffs``: what differs), by
    the search and by a pipeline's plan check. The search's named what differed and no fix (battery 27c)."""
    return ConfigError("reuse", "{name} " + f"{where}: its window scores mean something else here: "
                       + "; ".join(diffs[:4]) + (" ..." if len(diffs) > 4 else "")
                       + "; give the same model, data and settings as that search, or drop {name}")


def reuse_conflicts(config: SearchConfig, source: SearchConfig) -> list[str]:
    """The settings a window's score depends on that differ between a search and the search whose folder it
    would ``--reuse``, as far as their configurations tell (a pipeline's plan check, before either runs: the
    model, the data and the search space are compared from the source's checkpoint when the search starts)."""
    fields = (*_SCORE_FIELDS, "fitness", "retrieval_weight", "dtype")

    def compared(cfg: SearchConfig, k: str) -> Any:
        return dtype_name(cfg.dtype) if k == "dtype" else getattr(cfg, k)

    # an unset length (a short search's: L) is compared when the search starts, its model's L known
    return [f"{k}: {getattr(source, k)!r} -> {getattr(config, k)!r}" for k in fields
            if compared(source, k) != compared(config, k)
            and not (k == "target_length" and None in (source.target_length, config.target_length))]


def scored_under(checkpoint: dict) -> dict:
    """The settings a search checkpoint's window scores were computed under, as its fingerprint records them (in
    today's terms; unset ones and what is no setting left out): what ``--reuse`` trusts over the folder's
    config.json, which every start rewrites and a hand may edit."""
    import dataclasses

    fp = checkpoint.get("fingerprint")
    cfg = _upgrade_fingerprint(fp).get("config") if isinstance(fp, dict) else None
    settings = {f.name for f in dataclasses.fields(SearchConfig)} - {"model", "reuse"}
    return {k: v for k, v in cfg.items() if v is not None and k in settings} if isinstance(cfg, dict) else {}


def read_reuse_source(where: Path) -> tuple[dict, dict]:
    """The checkpoint and recorded configuration of the search run folder ``--reuse`` names; anything else is a
    one-line :class:`ConfigError` (read by the search and by a pipeline's plan check, before any stage)."""
    from longrope.search.loop import CHECKPOINT_FORMAT

    try:
        other = read_json(where / "checkpoint.json", what="search checkpoint")
        other_cfg = read_json(where / "config.json", what="run configuration")["config"]
        if other.get("format") != CHECKPOINT_FORMAT or not isinstance(other_cfg, dict):
            raise ValueError
    except (UserError, ValueError, KeyError, TypeError, AttributeError, IndexError):
        from longrope.formats.factors import run_record_command

        kind = run_record_command(where / "config.json")  # a pipeline folder said only "not a search run folder"
        if kind is not None and kind != "a search":
            raise ConfigError("reuse", f"{{name}} {where} is {kind} run folder, not a search run folder; give the "
                              "folder of a search" + (f" (a pipeline's search stages are under {where / 'stages'})"
                                                      if kind == "a pipeline" else "")) from None
        raise ConfigError("reuse", f"{{name}} {where} is not a search run folder (no readable checkpoint.json "
                                   "and config.json)") from None
    older = _inputs_by_path(other.get("fingerprint"))
    if older:
        raise ConfigError("reuse", f"{{name}} {where}: its window scores cannot be checked to mean the same here "
                                   f"({older}); search without {{name}}, or give a search run by this longrope")
    return other, other_cfg


def reused_scores(config: SearchConfig, ident: dict, space: Any = None) -> list:
    """The fitness cache of the search in ``config.reuse``, refused (one line) unless its window
    scores mean the same as this search's."""
    from longrope.search.archive import Archive
    from longrope.search.loop import describe_differences

    where = Path(config.reuse)
    other, other_cfg = read_reuse_source(where)
    # what the scores were computed under is what the checkpoint's own fingerprint says; config.json (rewritten
    # by every start, editable by hand) only fills what an older fingerprint did not hold
    theirs_fp = other.get("fingerprint", {})
    theirs_fp = _upgrade_fingerprint(theirs_fp) if isinstance(theirs_fp, dict) else {}
    recorded = theirs_fp.get("config", {}) if isinstance(theirs_fp.get("config"), dict) else {}

    def known(key: str, default: Any) -> Any:
        return recorded[key] if recorded.get(key) is not None else other_cfg.get(key, default)

    theirs = _score_identity(theirs_fp, known("strategy", ""), known("fitness", None), known("dtype", "float32"))
    mine = _score_identity(_as_recorded(ident, theirs_fp, config), config.strategy, config.fitness, config.dtype)
    diffs = describe_differences(theirs, mine)
    if diffs:
        raise reuse_refusal(where, diffs)
    try:  # well-formed for these windows (the same as its own, checked above; its genomes are checked later)
        Archive.from_json(config.samples, other["cache"], space)
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        why = str(exc).replace("{", "(").replace("}", ")")[:160] if isinstance(exc, ValueError) else ""
        raise ConfigError("reuse", f"{{name}} {where} is not a search run folder one can reuse: its checkpoint.json "
                          "holds a malformed cache" + (f" ({why})" if why else "") + "; give another search's folder") \
            from None
    return list(other.get("cache", []))


def make_plan(config: SearchConfig):
    """The search plan from the model's RoPE facts (config only, no weights)."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import FactorSet
    from longrope.search.plan import plan_search

    info = read_rope_info(config.model)
    if not info.supported:
        raise ConfigError("model", f"cannot search factors for {{name}} {config.model}: {info.reason}")
    rope = {"family": info.family, "rope_theta": float(info.rope_theta), "rotary_dim": int(info.rotary_dim),
            "original_length": int(info.original_max_position_embeddings)}
    base = None
    if config.base_factors:
        base = FactorSet.load(config.base_factors, rope_theta=rope["rope_theta"], original_length=rope["original_length"])
    return plan_search(rope, target_length=config.target_length, strategy=config.strategy, base=base,
                       short=config.short, step=config.step, min_factor=config.min_factor,
                       max_factor=config.max_factor, start_tokens=config.start_tokens,
                       search_attention=not config.fixed_attention, critical_floor=config.critical_floor)


def check_devices(config: SearchConfig) -> None:
    """The devices this machine must have (the in-process evaluator's and the report's, and each of
    ``devices``), before a folder is opened; a Ray cluster's are checked by connecting to it."""
    from longrope.models.loading import resolve_device

    in_process = not backends_given(config.workers, config.devices, config.ray_address)
    if in_process or config.report:
        _device_field(run_device, config.device, "device")
    for d in config.devices:
        _device_field(resolve_device, d, "devices")


def _device_field(resolve: Callable, device: str, field: str) -> None:
    try:
        resolve(device, fix="give cpu or a device this machine has")
    except UserError as exc:  # name the field (the CLI spells it as its flag, a pipeline as its key)
        raise ConfigError(field, "{name} " + f"{device}: {exc}") from None


def _check_windows(config: SearchConfig, length: int) -> None:
    """Enough windows in both splits, and token ids the model has embeddings for, before a model is loaded or a
    worker started."""
    from longrope.data import TokenCorpus
    from longrope.data.sampling import empty_split, none_in_split
    from longrope.evaluate.windows import resolve_bos, select_windows
    from longrope.models.loading import load_config

    corpus = TokenCorpus.open(config.data)
    corpus.check_fits(getattr(load_config(config.model), "vocab_size", 0))
    bos = resolve_bos(None, corpus=corpus) is not None
    needs = [("search", config.samples, "samples")] + ([("heldout", config.heldout_samples, "heldout_samples")]
                                                       if config.report else [])
    for split, n, field in needs:
        if empty_split(corpus, split, config.heldout_fraction) is not None:  # no fix of the windows helps
            raise ConfigError("heldout_fraction", none_in_split(corpus, split, config.heldout_fraction,
                                                                fraction="{name}", other=""))
        got = len(select_windows(corpus, length, n, split=split, seed=config.seed, bos=bos,
                                 heldout_fraction=config.heldout_fraction, windows_per_doc=config.windows_per_doc))
        if got < n:  # the held-out share moves documents between the splits: name it, the way it helps
            share = "lower" if split == "search" else "raise"
            raise ConfigError((field, "windows_per_doc", "heldout_fraction"),
                              f"{config.data} holds only {got} {split} window(s) of {length} tokens, {n} are "
                              f"needed: lower {{name0}} or the length, raise {{name1}}, {share} {{name2}} "
                              f"(now {config.heldout_fraction:g}), or add longer documents")


def check_fitness_fits(model: str, fitness: str, length: int, seed: int) -> None:
    """A fitness that plants pass keys needs the model's tokenizer and room for the prompt at ``length``:
    checked with the tokenizer alone, before a model loads (one line naming the fix otherwise)."""
    from longrope.errors import UserError
    from longrope.models.loading import load_tokenizer_of
    from longrope.search.objective import FITNESSES

    if not FITNESSES[fitness].needs_tokenizer:
        return
    tokenizer = load_tokenizer_of(model)
    if tokenizer is None:
        raise ConfigError(("model", "fitness"), "{name0} " + f"{model} has no tokenizer files, and the {fitness} "
                          "fitness plants pass keys; give {name1} ppl")
    from longrope.evaluate.passkey import build_passkey_prompt

    try:
        build_passkey_prompt(tokenizer, length, 10_000, 0.5, bos_id=getattr(tokenizer, "bos_token_id", None),
                             with_answer=True)
    except UserError as exc:
        raise ConfigError(("fitness", "target_length"), f"the {fitness} fitness plants a pass key in every window, "
                          f"and {exc}: give {{name0}} ppl, or a longer {{name1}}") from None


def run(config: SearchConfig, *, log: Callable[[str], None] | None = None) -> dict:
    """Run (or resume) the search; returns the result (also in ``summary.json``)."""
    from longrope.options import require_config

    require_config(config, SearchConfig, "longrope.runs.search.run")
    from longrope.runs.folder import RunFolder

    say = log or (lambda msg: print(msg, file=sys.stderr))
    plan = make_plan(config)
    ident = fingerprint(config, plan)
    preload = reused_scores(config, ident, plan.space) if config.reuse and not config.resume else None
    check_devices(config)
    folder = RunFolder.open(config.output, COMMAND, staged=False, resume=config.resume)  # locked until closed
    try:
        return _search_in(folder, config, plan, ident, preload, say)
    finally:
        folder.close()


def _search_in(folder: Any, config: SearchConfig, plan: Any, ident: dict, preload: list | None,
               say: Callable[[str], None]) -> dict:
    """:func:`run`'s work, in its open (locked) run folder."""
    from longrope.data import TokenCorpus
    from longrope.models.loading import digest_facts, model_digest
    from longrope.search.backends import make_evaluator
    from longrope.search.objective import ObjectiveSpec

    ckpt = folder / "checkpoint.json"
    try:  # set-up: a failure here leaves no folder behind (or the one that was there)
        if config.resume:
            ident = _refuse_other_run(ckpt, ident, config)
        elif ckpt.exists():
            raise ConfigError(("output", "resume"), "{name0} " + f"{config.output} already holds a search; add "
                                                     "{name1} to continue it or choose a new folder")
        _check_windows(config, plan.length)
        check_fitness_fits(config.model, config.fitness_name, plan.length, config.seed)
        # the records first (pid and host): a second search into this folder while this one loads its
        # model is refused; a set-up that fails below removes what it wrote (abandon)
        folder.start(_with_first_evaluator(config_to_dict(config), folder / "config.json", config.resume),
                     device=run_device(config.device),
                     extra={"plan": {"length": plan.length, "space": plan.space.to_dict(),
                                     "n_seeds": len(plan.seeds), "rope": plan.rope}})
        model_sha256 = model_digest(config.model)  # this process's digest of its files: read once, by fingerprint()
        spec = ObjectiveSpec(model=config.model, data=config.data, length=plan.length, n_docs=config.samples,
                             model_sha256=model_sha256, model_facts=digest_facts(config.model, model_sha256),
                             data_digest=TokenCorpus.open(config.data).content_digest,
                             mapper=plan.mapper, fitness=config.fitness_name, seed=config.seed, split="search",
                             heldout_fraction=config.heldout_fraction, dtype=config.dtype,
                             windows_per_doc=config.windows_per_doc, attn_implementation=config.attn_implementation,
                             retrieval_weight=config.retrieval_weight,
                             reference_file=str(folder / REFERENCE_FILE) if config.fitness_name == "constrained" else None)
        evaluator, objective = make_evaluator(spec, workers=config.workers, devices=config.devices,
                                              ray_address=config.ray_address, device=run_device(config.device))
    except BaseException:
        folder.abandon()
        raise
    try:
        return _search_and_report(config, plan, folder, evaluator, objective, ckpt, ident, preload, say, spec)
    except BaseException:
        folder.abandon()  # its checkpoint stays for --resume; run.json says how it stopped
        raise


def _search_and_report(config: SearchConfig, plan: Any, folder: Any, evaluator: Any, objective: Any, ckpt: Any,
                       ident: Any, preload: Any, say: Callable[[str], None], spec: Any) -> dict[str, Any]:
    """The search itself, its factors, plot and report, into ``folder`` (set up and started by :func:`run`)."""
    from longrope.evaluate.plots import plot_factors
    from longrope.evaluate.suite import ppl_text
    from longrope.runs.progress import SearchBar
    from longrope.search.loop import StopRules, run_search
    from longrope.search.plan import loop_strategy

    bar = SearchBar(f"search {config.strategy}", enabled=not config.quiet)
    try:
        result = run_search(plan.space, plan.seeds, evaluator, n_docs=config.samples,
                            strategy=loop_strategy(config.strategy), config=config.knobs,
                            stop=StopRules(config.max_evals, config.max_seconds), seed=config.seed,
                            checkpoint=ckpt, history=folder / "history.jsonl", fingerprint=ident,
                            ordered=not config.unordered, resume=config.resume, on_progress=bar,
                            preload=preload)
    finally:
        bar.close()
    from longrope.search.objective import named_parts

    parts = named_parts(config.fitness_name, result.parts, result.n_docs)
    say(f"search: best {describe_best(config.fitness_name, result.ppl, parts)} after {result.n_candidates} "
        f"candidates, {result.full_evals:.1f} full evaluations, {result.seconds:.1f} s ({result.stop_reason})")
    outcome = {"fitness": config.fitness_name, "retrieval_weight": config.retrieval_weight, "length": plan.length,
               "best_fitness": result.fitness, "best_score": result.ppl,
               "best_ppl": result.ppl if config.fitness_name == "ppl" else parts.get("doc_ppl"), **parts, "start_tokens": result.start_tokens,
               "attention_factor": result.attention_factor,
               "critical_dim": result.best.critical if result.best.critical >= 0 else None,
               "candidates": result.n_candidates, "doc_evals": result.n_doc_evals,
               "reused_doc_evals": result.reused_doc_evals,
               "full_evals": result.full_evals, "seconds": result.seconds, "stop_reason": result.stop_reason}
    best = plan.mapper.factor_set(result.factors, result.start_tokens, attention_factor=result.attention_factor,
                                  provenance={"search": {"strategy": config.strategy, "seed": config.seed,
                                                         "model": config.model, "samples": config.samples,
                                                         **{k: v for k, v in outcome.items() if k != "seconds"}}})
    best.save(folder / "factors.json")
    plot_factors(folder / "factors.png", *result_curve(best, plan, config.strategy), references=plan.references,
                 title=f"{config.model}: L'={plan.length}")
    report: dict[str, Any] = {"strategy": config.strategy, "search": outcome}
    if config.report:
        try:
            report["heldout"] = heldout_report(config, plan, best, objective, spec)
        except UserError as exc:  # out of memory at the report's length (ulimit -v): the hours of search are done
            raise UserError(f"{exc}; the search itself is done (its factors are in {folder.final / 'factors.json'}): "
                            "the same command with --resume --no-report finishes the run without the held-out "
                            "report") from None
        held = report["heldout"]  # what the numbers rest on, as the record says it
        say(f"held-out ppl at {held['length']} tokens ({len(held['docs'])} windows, {held['scored_tokens_per_set']:,} "
            "tokens scored per set): " + ", ".join(f"{k} {ppl_text(v, '.4f')}" for k, v in held["ppl"].items()))
    folder.finish(report)
    return report


_BASE_CHANGED = "the base factor file holds other factors than the run started with"

#: the digests of a shard folder's fingerprint (``_data_fingerprint``), which a refusal names in words
_DATA_DIGESTS = ("data.shards:", "data.index:", "data.names:")


def _with_first_evaluator(record: dict, recorded: Path, resume: bool) -> dict:
    """The configuration a (resumed) search records: a resume keeps the evaluator of the start it continues (its
    slots set the order of the search, kept in the checkpoint as the lag), so that ``rerun`` and ``--config`` repeat
    the trajectory; the resume's own workers were recorded, and a run started with --workers 2 and resumed in process
    was rerun in process, to other factors (battery 12b). The resume's command line is in run.json."""
    if not resume:
        return record
    try:
        saved = read_json(recorded, what="run configuration")["config"]
    except (UserError, KeyError, TypeError):
        return record
    first = {k: saved.get(k) for k in BACKEND_FIELDS if k in saved} if isinstance(saved, dict) else {}
    workers, devices, address = first.get("workers", 0), first.get("devices", []), first.get("ray_address")
    if len(first) == len(BACKEND_FIELDS) and type(workers) is int and workers >= 0 and isinstance(devices, list) \
            and all(isinstance(d, str) for d in devices) and (address is None or isinstance(address, str)):
        return {**record, **first}
    return record




def _refuse_other_run(ckpt: Path, ident: dict, config: SearchConfig) -> dict:
    """A resume with other settings than the saved run's is refused before any model is loaded; returns the
    fingerprint to go on with (the recorded one, which may be written in an older but equivalent form).

    A local model is compared by its digest, not its path (a pipeline folder moved with its fine-tuned model
    resumes). ``--reuse`` is not compared by its path either: the scores it gave are in the checkpoint since the run started, so a
    resume needs it no more (it is recorded again from the checkpoint when not given) and its source may have
    moved; given to resume a run that started without it, it would be ignored, so it is refused."""
    from longrope.search.loop import check_checkpoint_format, describe_differences

    if not ckpt.exists():
        if any((ckpt.parent / name).exists() for name in ("history.jsonl", "factors.json")):  # its work, not its state
            raise ConfigError("resume", f"nothing to resume in {ckpt.parent}: its checkpoint.json, the state a "
                              "search continues from, is missing (its other files remain); restore it, or start "
                              "over in a new folder (or delete this one)")
        raise ConfigError("resume", f"nothing to resume in {ckpt.parent} (no checkpoint.json); run without {{name}}")
    old = read_json(ckpt, what="search checkpoint", fix="delete the folder to start over, or choose a new one")
    check_checkpoint_format(old, ckpt)
    old = old.get("fingerprint", {})
    if not isinstance(old, dict):
        raise UserError(f"{ckpt} is malformed (its fingerprint is no object); delete the folder to start over")
    older = _inputs_by_path(old)
    if older:
        raise ConfigError("resume", f"{{name}} refused: {ckpt} cannot be checked to hold this run ({older}); "
                          f"delete {ckpt.parent} to start it over (a pipeline's --resume then runs the stage afresh), or "
                          "finish it with the longrope that started it")
    upgraded = _upgrade_fingerprint(old)
    reused = upgraded["config"].get("reuse") if isinstance(upgraded.get("config"), dict) else None
    if config.reuse is not None and reused is None:
        raise ConfigError(("reuse", "resume"), "{name0} gives scores to a search as it starts; the run in "
                          f"{ckpt.parent} started without it, so a {{name1}} cannot take them: drop {{name0}}")
    if config.reuse is None and isinstance(reused, str):
        config.reuse = reused  # recorded as the run started (config.json is rewritten by every start)

    def comparable(fp: dict) -> dict:  # a model known by its digest is compared by it (older records named it too)
        named = ("reuse", *_SPACE_FIELDS) + (("model",) if isinstance(fp.get("model"), dict) else ())
        return {**fp, "config": {k: v for k, v in fp["config"].items() if k not in named}} \
            if isinstance(fp.get("config"), dict) else fp

    diffs = describe_differences(comparable(upgraded), comparable(_as_recorded(ident, upgraded, config)))
    changed = _BASE_CHANGED + (" (a run recorded before factor sets had digests: compared by the file's bytes)"
                               if "base_factors_sha256" in upgraded else "")
    diffs = [changed if d.startswith("base_factors_") else d for d in diffs]
    digests = [d.split(":")[0].removeprefix("data.") for d in diffs if d.startswith(_DATA_DIGESTS)]
    if digests:  # hex digests said in words (they were listed raw, battery 19)
        diffs = [d for d in diffs if not d.startswith(_DATA_DIGESTS)] + [
            f"data: the shard folder holds other tokens or documents than the run started with (its "
            f"{' and '.join(digests)} {'differs' if len(digests) == 1 else 'differ'}: rebuilt?)"]
    if diffs:
        raise ConfigError("resume", "{name} refused, the run in this folder used a different configuration: "
                          + "; ".join(diffs) + " (use the same settings, or a new output folder)")
    return old


def describe_best(fitness: str, score_ppl: float, parts: dict) -> str:
    """The best candidate in words: what its fitness measures, not a perplexity it is not."""
    if fitness == "ppl":
        return f"ppl {score_ppl:.4f}"
    if fitness == "needle":
        return f"answer NLL {parts.get('answer_nll', float('nan')):.4f}"
    return (f"{fitness} score {score_ppl:.4f} (document ppl {parts.get('doc_ppl', float('nan')):.4f}, answer NLL "
            f"{parts.get('answer_nll', float('nan')):.4f}, {parts.get('answer_exact', 0)}/{parts.get('keys', 0)} keys "
            "exact)")


def result_curve(best: Any, plan: Any, strategy: str) -> tuple[list[float], str]:
    """The searched λ curve of ``best`` (what factors.png draws) and its legend label."""
    if plan.mapper.mode == "short":
        return list(best.short_factor), "searched short factors"
    if plan.mapper.mode == "progressive":
        return list(best.provenance.get("relative_factor", best.long_factor)), "searched λ' (relative)"
    m = best.resolved_attention_factor()
    return list(best.long_factor), f"searched ({strategy}, n̂={best.start_tokens}, m={m:.3g})"


def heldout_report(config: SearchConfig, plan: Any, best: Any, objective: Any, spec: Any) -> dict:
    """PPL of the result and of the baselines on the same held-out windows at the search length, on the model and
    shard folder the search ran on (``spec``'s digests)."""
    from longrope.data import TokenCorpus
    from longrope.evaluate.suite import compare_at_length
    from longrope.evaluate.windows import resolve_bos, select_windows
    from longrope.models.loading import load_model
    from longrope.search.objective import check_inputs_unchanged

    if objective is not None:  # in-process search: reuse its model (loaded once)
        model, tokenizer = objective.model, getattr(objective, "tokenizer", None)
    else:  # checked before it loads: a replaced model was loaded whole, then refused
        check_inputs_unchanged(config.model, None, model_sha256=spec.model_sha256)
        model, tokenizer = load_model(config.model, dtype=config.dtype, device=run_device(config.device),
                                      attn_implementation=config.attn_implementation)
    corpus = TokenCorpus.open(config.data)
    check_inputs_unchanged(config.model, corpus, data_digest=spec.data_digest)
    bos_id = objective.bos_id if objective is not None else resolve_bos(tokenizer, corpus=corpus, model=model)
    docs = select_windows(corpus, plan.length, config.heldout_samples, split="heldout", seed=config.seed,
                          heldout_fraction=config.heldout_fraction, windows_per_doc=config.windows_per_doc,
                          bos=bos_id is not None)
    return compare_at_length(model, docs, plan.length, {"searched": best, **plan.baselines}, bos_id=bos_id)


def render(result: dict) -> str:
    s = result["search"]
    best = describe_best(s.get("fitness") or "ppl", s.get("best_score", s["best_ppl"]), s)
    return (f"best {best} at length {s['length']} ({s['candidates']} candidates, "
            f"{s['full_evals']:.1f} full evaluations, {s['seconds']:.1f} s)")


SPEC = RunSpec(
    command=COMMAND,
    help="search LongRoPE rescale factors for a target length (evolution search, resumable)",
    description="""\
Evolution search of per-dimension RoPE rescale factors λ (and retained start tokens n̂) that
minimise a fitness at --target-length on windows of the search split of a shard folder
(LongRoPE, arXiv 2402.13753). The default fitness is joint: each window carries a planted pass
key, and a candidate is scored by the document tokens' perplexity plus --retrieval-weight times
the answer tokens' loss (one forward), so the search cannot buy perplexity with retrieval;
--fitness ppl is the paper's. Writes factors.json (the best set), history.jsonl (every
evaluated candidate), factors.png and summary.json (held-out PPL of the result beside PI, NTK
and YaRN on the same windows) into the run folder, with config.json and run.json. A checkpoint
is written after every evaluation: --resume continues a killed run exactly where it stopped
(budgets --max-evals/--max-seconds may be raised on resume; so may the worker count: the order of
the search stays that of its first start, so the trajectory is the uninterrupted run's).

strategies:
  steady     (default) ours: steady-state, racing on one window first, fitness cache,
             smooth mutations with adaptive step, more seeds, the attention temperature
             searched too (--fixed-attention: LongRoPE's), stops when the best stalls
  paper      the published algorithm: seeds PI/NTK/YaRN, (μ+λ) generations, 1,344
             evaluations with the default knobs
  longrope2  LongRoPE2: λ_i in [s, 2s] for i >= d_rcd, NTK-style below, d_rcd searched,
             needle-driven fitness (answer-token loss of planted pass keys)

modes:
  --short --base-factors F        search F's short factors at the original length
  --base-factors F (no --short)   progressive: search λ' on a model fine-tuned with F;
                                  writes λ_F ⊙ λ'""",
    example="""\
examples:
  longrope tokenize --tokenizer tiny -o shards/tiny --input search=src/longrope/embedded/assets/corpus/search \\
      heldout=src/longrope/embedded/assets/corpus/heldout
  longrope search --model tiny --data shards/tiny --target-length 2048 --windows-per-doc 4 --iterations 10 -o runs/tiny-2k
  longrope search --model tiny --data shards/tiny --target-length 2048 --windows-per-doc 4 --iterations 10 -o runs/tiny-2k \\
      --resume
  longrope rerun runs/tiny-2k -o runs/tiny-2k-again""",
    config=SearchConfig,
    run=run,
    render=render,
    upgrade=recorded_config,
)
