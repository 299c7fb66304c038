"""A whole search run as ``longrope search`` performs it: resolve the configuration, build the
space, seeds, objective and evaluator, run (or resume) the loop, write the outputs, and score the
result and the closed-form baselines on held-out documents.

Outputs in the run folder:

- ``config.json``: the fully resolved configuration and provenance (what was run, exactly);
- ``checkpoint.json``: the resumable state, rewritten atomically after every told evaluation;
- ``history.jsonl``: every evaluated genome, its documents and fitness, in the order told;
- ``factors.json``: the best factor set (``FactorSet.save``), with the search in its provenance;
- ``factors.png``: λ per dimension against PI, NTK and YaRN;
- ``report.json``: held-out perplexity of the result beside the baselines on the same documents.
"""

from __future__ import annotations

import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from longrope.errors import UserError
from longrope.io import write_json
from longrope.search.archive import Archive
from longrope.search.loop import Progress, SearchLoop, SearchResult
from longrope.search.objective import CandidateMapper, ObjectiveSpec
from longrope.search.seeds import (
    SHORT_UPPER_DEFAULT,
    attention_choices,
    critical_window,
    extended_seeds,
    long_space,
    longrope2_seeds,
    longrope2_space,
    paper_seeds,
    short_seeds,
)
from longrope.search.space import PAPER_START_TOKENS, SearchSpace
from longrope.search.strategies import StrategyConfig, make_strategy

JOB_STRATEGIES = ("steady", "paper", "longrope2")


@dataclass
class SearchJob:
    """Everything ``longrope search`` needs; validated in ``__post_init__`` (errors name the flag)."""

    model: str
    data: str
    output: str
    target_length: int | None = None
    """L' (required except with --short, where the search runs at the original length)"""
    strategy: str = "steady"
    seed: int = 0
    samples: int = 5
    """documents of the search split the fitness is computed on (the paper: 5)"""
    heldout_samples: int = 5
    windows_per_doc: int = 1
    """non-overlapping windows taken from each long document when sampling"""
    heldout_fraction: float = 0.5
    config: StrategyConfig = field(default_factory=StrategyConfig)
    step: float = 0.01
    min_factor: float | None = None
    max_factor: float | None = None
    start_tokens: tuple[int, ...] = PAPER_START_TOKENS
    short: bool = False
    base_factors: str | None = None
    fitness: str | None = None
    """"ppl" or "needle"; default: needle for longrope2, ppl otherwise"""
    workers: int = 0
    """CPU worker processes (0: evaluate in this process)"""
    devices: tuple[str, ...] = ()
    """one worker process per device (e.g. cuda:0,cuda:1)"""
    ray_address: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    ordered: bool | None = None
    """tell results in ticket order: reproducible for a given worker count, at the price of a worker
    occasionally waiting for the oldest running ticket (never for a whole generation). Default yes;
    ``--unordered`` tells results as they arrive (no waiting, not reproducible)."""
    resume: bool = False
    report: bool = True
    progress: bool = True
    search_attention: bool = True
    """ours (steady): also search the attention temperature m among a few values (the paper and
    longrope2 keep LongRoPE's formula)"""

    def __post_init__(self) -> None:
        if self.strategy not in JOB_STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(JOB_STRATEGIES)}, got {self.strategy!r}")
        for name in ("samples", "heldout_samples", "windows_per_doc"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(self, name)}")
        if self.workers < 0:
            raise UserError(f"--workers must be >= 0, got {self.workers}")
        if sum([self.workers > 0, bool(self.devices), bool(self.ray_address)]) > 1:
            raise UserError("give only one of --workers, --devices and --ray-address")
        if self.short and self.base_factors is None:
            raise UserError("--short fills the short factors of an existing factor file: give it with --base-factors")
        if self.short and self.strategy == "longrope2":
            raise UserError("--short and --strategy longrope2 do not combine; use --strategy steady or paper")
        if not self.short and self.target_length is None:
            raise UserError("--target-length is required (except with --short)")
        if self.fitness is None:
            self.fitness = "needle" if self.strategy == "longrope2" else "ppl"
        if self.fitness not in ("ppl", "needle"):
            raise UserError(f"--fitness must be ppl or needle, got {self.fitness!r}")
        if not self.step > 0:
            raise UserError(f"--step must be > 0, got {self.step}")

    @property
    def loop_strategy(self) -> str:
        return "paper" if self.strategy == "paper" else "steady"


@dataclass
class Plan:
    """What a job resolves to before anything heavy runs."""

    space: SearchSpace
    seeds: list
    mapper: CandidateMapper
    length: int
    rope: dict
    baselines: dict[str, Any]
    """name -> FactorSet compared with the result on held-out documents"""
    plot_refs: dict[str, np.ndarray]


def plan(job: SearchJob) -> Plan:
    """Resolve lengths, space, seeds and the candidate mapping from the model's RoPE facts."""
    from longrope.models.loading import read_rope_info
    from longrope.rope import FactorSet, make_baseline

    info = read_rope_info(job.model)
    if not info.supported:
        raise UserError(f"cannot search factors for {job.model}: {info.reason}")
    theta, d, L = float(info.rope_theta), int(info.rotary_dim), int(info.original_max_position_embeddings)
    rope = {"family": info.family, "rope_theta": theta, "rotary_dim": d, "original_length": L}
    n = d // 2

    def refs(L0: int, Lt: int) -> dict[str, np.ndarray]:
        return {m: make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L0, target_length=Lt).long_factor
                for m in ("pi", "ntk", "yarn")}

    base = None
    if job.base_factors:
        base = FactorSet.load(job.base_factors, rope_theta=theta, original_length=L)
        if base.rotary_dim != d or base.rope_theta != theta:
            raise UserError(f"{job.base_factors} is for rotary dim {base.rotary_dim} / base {base.rope_theta:g}, "
                            f"the model has {d} / {theta:g}")

    if job.short:
        length = L if job.target_length is None else int(job.target_length)
        if length > L:
            raise UserError(f"--short searches at most the original length {L}; got --target-length {length}")
        upper = job.max_factor if job.max_factor is not None else SHORT_UPPER_DEFAULT
        space = SearchSpace(n_dims=n, lower=job.min_factor or 1.0, upper=upper, step=job.step,
                            start_tokens=(base.start_tokens,))
        seeds = short_seeds(space, base.short_factor)
        mapper = CandidateMapper("short", theta, L, base.max_position_embeddings, base.to_dict())
        original = base.with_(short_factor=np.ones(n), method="no-short-factors")
        baselines = {"base-file": base, "no-short-factors": original}
        return Plan(space, seeds, mapper, length, rope, baselines, {"base short": base.short_factor})

    Lt = int(job.target_length)
    if base is not None:  # progressive: λ' relative to the fine-tuned model's factors
        L0 = base.max_position_embeddings
        if Lt <= L0:
            raise UserError(f"--target-length {Lt} must exceed the base factors' length {L0} for a progressive "
                            f"search (use --short for short factors)")
        s = Lt / L0
        space = long_space(n, s, step=job.step, lower=job.min_factor, upper=job.max_factor,
                           start_tokens=job.start_tokens, attention=_attention(job, Lt / L, L))
        seeds = (paper_seeds if job.strategy == "paper" else extended_seeds)(space, theta, d, L0, Lt)
        mapper = CandidateMapper("progressive", theta, L, Lt, base.to_dict())
        baselines = {"base-file": base.with_(max_position_embeddings=Lt, method="base-file")}
        for m, lam in refs(L0, Lt).items():
            baselines[f"base*{m}"] = mapper.factor_set(lam, 0).with_(method=f"base*{m}")
        return Plan(space, seeds, mapper, Lt, rope, baselines, refs(L0, Lt))

    if Lt <= L:
        raise UserError(f"--target-length {Lt} must exceed the model's original context {L} "
                        f"(use --short to search short factors at the original length)")
    s = Lt / L
    if job.strategy == "longrope2":
        space = longrope2_space(n, s, critical_window(theta, d, L), step=job.step, upper=job.max_factor)
        seeds = longrope2_seeds(space, theta, d, L, Lt)
    else:
        space = long_space(n, s, step=job.step, lower=job.min_factor, upper=job.max_factor,
                           start_tokens=job.start_tokens, attention=_attention(job, s, L))
        seeds = (paper_seeds if job.strategy == "paper" else extended_seeds)(space, theta, d, L, Lt)
    mapper = CandidateMapper("long", theta, L, Lt)
    baselines = {m: make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
                 for m in ("pi", "ntk", "yarn")}
    return Plan(space, seeds, mapper, Lt, rope, baselines, refs(L, Lt))


def _attention(job: SearchJob, scale: float, L: int) -> tuple[float, ...]:
    """Temperature choices: searched by ours unless --fixed-attention; never by the paper strategy."""
    if job.strategy != "steady" or not job.search_attention:
        return ()
    return attention_choices(scale, L)


def _data_fingerprint(data: str) -> dict:
    """Identity of a shard folder: its meta's checksums (cheap; no token is read)."""
    import json

    meta_path = Path(data) / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, ValueError):
        raise UserError(f"{data}: not a shard folder (no readable meta.json); create one with 'longrope tokenize'") from None
    return {
        "path": str(Path(data).resolve()),
        "n_docs": meta.get("n_docs"),
        "n_tokens": meta.get("n_tokens"),
        "shards": [s.get("sha256") for s in meta.get("shards", [])],
    }


def _resolved_config(job: SearchJob, p: Plan) -> dict:
    d = asdict(job)
    d["config"] = job.config.to_dict()
    d["start_tokens"] = list(job.start_tokens)
    d["devices"] = list(job.devices)
    d["space"] = p.space.to_dict()
    d["length"] = p.length
    d["rope"] = p.rope
    d["n_seeds"] = len(p.seeds)
    return d


def _fingerprint(job: SearchJob, p: Plan) -> dict:
    """What must match for --resume: model, data, and every setting that changes the trajectory."""
    cfg = _resolved_config(job, p)
    for k in ("output", "resume", "workers", "devices", "ray_address", "device", "progress", "report", "dtype",
              "heldout_samples"):
        cfg.pop(k, None)
    return {"model": job.model, "rope": p.rope, "data": _data_fingerprint(job.data), "config": cfg}


class _Bar:
    """tqdm progress line: best PPL, candidates done, evaluations/s and ETA (tqdm's)."""

    def __init__(self, total: int, desc: str, enabled: bool) -> None:
        self.bar = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, desc=desc, unit="cand", dynamic_ncols=True, file=sys.stderr)

    def __call__(self, p: Progress) -> None:
        if self.bar is None:
            return
        self.bar.total = p.budget
        self.bar.n = p.done
        rate = p.full_evals / p.elapsed if p.elapsed > 0 else 0.0
        self.bar.set_postfix_str(f"best ppl {p.best_ppl:.4g}, {p.full_evals:.1f} evals, {rate:.2f} evals/s")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def make_evaluator(job: SearchJob, spec: ObjectiveSpec):
    """In-process (default), one process per device / CPU worker, or Ray; plus the in-process objective."""
    from longrope.search.evaluators import InProcessEvaluator, ProcessPoolEvaluator

    if job.ray_address:
        from longrope.search.ray_evaluator import RayEvaluator

        return RayEvaluator(spec, address=job.ray_address), None
    if job.devices:
        return ProcessPoolEvaluator(spec, list(job.devices)), None
    if job.workers > 0:
        threads = max(1, (spec.threads or 1))
        spec.threads = threads
        return ProcessPoolEvaluator(spec, ["cpu"] * job.workers), None
    objective = spec(job.device)
    return InProcessEvaluator(objective), objective


def run_job(job: SearchJob, *, log=None) -> dict:
    """Run (or resume) the search described by ``job``; returns the report dict."""
    say = log or (lambda msg: print(msg, file=sys.stderr))
    out = Path(job.output)
    p = plan(job)
    ckpt = out / "checkpoint.json"
    if ckpt.exists() and not job.resume:
        raise UserError(f"{out} already holds a search; add --resume to continue it or choose a new -o folder")
    if job.resume and not ckpt.exists():
        raise UserError(f"nothing to resume in {out} (no checkpoint.json); run without --resume")
    fingerprint = _fingerprint(job, p)
    spec = ObjectiveSpec(
        model=job.model, data=job.data, length=p.length, n_docs=job.samples, mapper=p.mapper,
        fitness=job.fitness, seed=job.seed, split="search", heldout_fraction=job.heldout_fraction,
        dtype=job.dtype, windows_per_doc=job.windows_per_doc,
    )
    if job.resume:
        # refuse a different configuration before loading any model
        import json

        try:
            old = json.loads(ckpt.read_text()).get("fingerprint", {})
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {ckpt}: {exc}") from None
        from longrope.search.loop import describe_differences

        diffs = describe_differences(old, fingerprint)
        if diffs:
            raise UserError("--resume refused, the run in this folder used a different configuration: "
                            + "; ".join(diffs) + " (use the same flags, or a new output folder)")
    # Fail on missing/short documents now, before a model is loaded or a worker is started.
    from longrope.search.objective import load_documents

    load_documents(job.data, p.length, job.samples, seed=job.seed, split="search",
                   heldout_fraction=job.heldout_fraction, windows_per_doc=job.windows_per_doc)
    if job.report:
        load_documents(job.data, p.length, job.heldout_samples, seed=job.seed, split="heldout",
                       heldout_fraction=job.heldout_fraction, windows_per_doc=job.windows_per_doc)
    config = {
        "command": "longrope search",
        "argv": sys.argv,
        "resolved": _resolved_config(job, p),
        "objective": spec.to_dict(),
        "seeds": [g.to_json() for g in p.seeds],
        "python": platform.python_version(),
        "numpy": np.__version__,
    }
    write_json(out / "config.json", config)
    evaluator, objective = make_evaluator(job, spec)
    archive = Archive(job.samples)
    strategy = make_strategy(job.loop_strategy, p.space, archive, job.config)
    bar = _Bar(strategy.budget, f"search {job.strategy}", job.progress)
    ordered = True if job.ordered is None else job.ordered
    loop = SearchLoop(p.space, strategy, evaluator, seed=job.seed, checkpoint=ckpt,
                      history_path=out / "history.jsonl", fingerprint=fingerprint, ordered=ordered,
                      on_progress=bar)
    try:
        result = loop.resume() if job.resume else loop.run(p.seeds)
    finally:
        bar.close()
    say(f"search: best ppl {result.ppl:.4f} after {result.n_candidates} candidates, "
        f"{result.full_evals:.1f} full evaluations, {result.seconds:.1f} s ({result.stop_reason})")
    best = p.mapper.factor_set(result.factors, result.start_tokens, provenance=_provenance(job, p, result),
                               attention_factor=result.attention_factor)
    best.save(out / "factors.json")
    plot_factors(out / "factors.png", best, p, job)
    report = {
        "strategy": job.strategy,
        "search": {
            "fitness": job.fitness,
            "length": p.length,
            "best_fitness": result.fitness,
            "best_ppl": result.ppl,
            "start_tokens": result.start_tokens,
            "attention_factor": result.attention_factor,
            "critical_dim": result.best.critical if result.best.critical >= 0 else None,
            "candidates": result.n_candidates,
            "doc_evals": result.n_doc_evals,
            "full_evals": result.full_evals,
            "seconds": result.seconds,
            "stop_reason": result.stop_reason,
        },
    }
    if job.report:
        report["heldout"] = heldout_report(job, p, best, objective)
        h = report["heldout"]
        say("held-out ppl: " + ", ".join(f"{k} {v:.4f}" for k, v in h["ppl"].items()))
    write_json(out / "report.json", report)
    return report


def _provenance(job: SearchJob, p: Plan, r: SearchResult) -> dict:
    return {
        "search": {
            "strategy": job.strategy,
            "seed": job.seed,
            "model": job.model,
            "fitness": job.fitness,
            "length": p.length,
            "samples": job.samples,
            "best_ppl": r.ppl,
            "candidates": r.n_candidates,
            "full_evals": r.full_evals,
            "critical_dim": r.best.critical if r.best.critical >= 0 else None,
        }
    }


def heldout_report(job: SearchJob, p: Plan, best: Any, objective: Any) -> dict:
    """PPL of the result and of the baselines on the same held-out documents at the search length."""
    from longrope.models import install_factors
    from longrope.models.loading import load_model
    from longrope.search.objective import load_documents, resolve_bos

    if objective is not None:  # in-process search: reuse its model (loaded once)
        model, patch, bos_id = objective.model, objective.patch, objective.bos_id
    else:
        model, tokenizer = load_model(job.model, dtype=job.dtype, device=job.device)
        patch = install_factors(model, best)
        bos_id = resolve_bos(model, tokenizer)
    docs = load_documents(job.data, p.length, job.heldout_samples, seed=job.seed, split="heldout",
                          heldout_fraction=job.heldout_fraction, windows_per_doc=job.windows_per_doc)
    return heldout_ppl(model, patch, bos_id, docs, p.length, {"searched": best, **p.baselines})


def heldout_ppl(model: Any, patch: Any, bos_id: int | None, docs: list, length: int, sets: dict) -> dict:
    """Token-weighted PPL of each factor set on the same ``docs``; the ratio of ``searched`` (when
    present) to the best of the others."""
    from longrope.evaluate import evaluate_perplexity

    t0 = time.perf_counter()
    ppl: dict[str, float] = {}
    for name, fs in sets.items():
        patch.swap(fs)
        ppl[name] = evaluate_perplexity(model, docs, length, bos_id=bos_id).ppl
    others = {k: v for k, v in ppl.items() if k != "searched"}
    best_name = min(others, key=others.get) if others else None
    ratio = ppl["searched"] / others[best_name] if best_name and "searched" in ppl else None
    return {
        "length": length,
        "docs": [getattr(d, "doc_id", str(i)) for i, d in enumerate(docs)],
        "ppl": ppl,
        "best_baseline": best_name,
        "ratio_to_best_baseline": ratio,
        "seconds": time.perf_counter() - t0,
    }


def plot_factors(path: Path, best: Any, p: Plan, job: SearchJob) -> None:
    """λ per dimension of the result against PI, NTK and YaRN (log y), written atomically."""
    import io

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from longrope.io import write_bytes

    fig = Figure(figsize=(6.4, 4.2))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    i = np.arange(len(best.long_factor))
    for name, lam in p.plot_refs.items():
        ax.plot(i, lam, linestyle="--", linewidth=1.2, label=name)
    if job.short:
        ax.plot(i, best.short_factor, color="black", linewidth=2, label="searched short factors")
    elif p.mapper.mode == "progressive":
        rel = np.asarray(best.provenance.get("relative_factor", best.long_factor))
        ax.plot(i, rel, color="black", linewidth=2, label="searched λ' (relative)")
    else:
        m = best.resolved_attention_factor()
        ax.plot(i, best.long_factor, color="black", linewidth=2,
                label=f"searched ({job.strategy}, n̂={best.start_tokens}, m={m:.3g})")
    ax.set_yscale("log")
    ax.set_xlabel("frequency index i (low i = high frequency)")
    ax.set_ylabel("rescale factor λ_i")
    ax.set_title(f"{job.model}: L'={p.length}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    write_bytes(path, buf.getvalue())
