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
import os
import re
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from longrope.errors import UserError

CELLS_FILE = "cells.jsonl"
METRICS = ("heldout_ppl", "passkey")
_RATIO = re.compile(r"^(\d+(?:\.\d+)?)x$")
_CLOSED_FORM = re.compile(r"^([a-z0-9_-]+)@(\d+(?:\.\d+)?)x$")
_CELL = re.compile(r"^(heldout_ppl|passkey)\.(\d+(?:\.\d+)?x)\.(.+)$")

__all__ = ["parse_ratio", "ratio_length", "check_methods", "check_goals", "evaluate_goals", "run_compare"]


def parse_ratio(text: Any) -> float:
    """``"8x"`` → 8.0 (a ratio of the model's original context); anything else is a UserError."""
    m = _RATIO.match(str(text))
    if not m or float(m.group(1)) < 1:
        raise UserError(f"{text!r} is not a context ratio; write it like \"8x\" (at least \"1x\")")
    return float(m.group(1))


def ratio_length(ratio: str | float, original_length: int) -> int:
    """Tokens at ``ratio`` × L (rounded)."""
    r = parse_ratio(ratio) if isinstance(ratio, str) else float(ratio)
    return int(round(r * original_length))


def check_methods(methods: Any, ratios: list[str]) -> None:
    """The ``methods`` table's shape: ``{name: {"model": M, "factors": {ratio: spec}}}``."""
    if not isinstance(methods, dict) or not methods:
        raise UserError("compare: 'methods' must be a JSON object {name: {\"model\": ..., \"factors\": {...}}}")
    for name, m in methods.items():
        if not isinstance(m, dict) or not isinstance(m.get("model"), str) or not isinstance(m.get("factors"), dict):
            raise UserError(f"compare: method {name!r} needs \"model\" (a string) and \"factors\" "
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
            cf = _CLOSED_FORM.match(spec)
            if cf:
                from longrope.rope.baselines import baseline_options

                baseline_options(cf.group(1))  # unknown method → UserError naming the known ones


def _parse_operand(text: Any) -> tuple[float, str | None]:
    """``0.9*heldout_ppl.32x.yarn`` → (0.9, path); ``"heldout_ppl.1x.base"`` → (1, path); 3 → (3, None)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text), None
    if not isinstance(text, str):
        raise UserError(f"compare: a goal bound must be a number or 'K*metric.ratio.method', got {text!r}")
    factor, _, path = text.rpartition("*")
    try:
        k = float(factor) if factor else 1.0
    except ValueError:
        raise UserError(f"compare: {text!r}: the factor before '*' must be a number") from None
    return k, path


def _cell_path(path: str) -> tuple[str, str, str] | None:
    """``"heldout_ppl.1.5x.ours"`` → (metric, ratio, method); None when it does not read so."""
    m = _CELL.match(path)
    return (m.group(1), m.group(2), m.group(3)) if m else None


def _check_path(path: str, methods: dict, what: str, passkey_ratios: list[str] | None,
                passkey_methods: list[str] | None = None) -> None:
    parts = _cell_path(path)
    if parts is None:
        raise UserError(f"compare: {what} {path!r} must read METRIC.RATIO.METHOD with METRIC one of "
                        f"{', '.join(METRICS)}")
    if (parts[2] not in methods or parts[1] not in methods[parts[2]]["factors"]
            or (parts[0] == "passkey" and passkey_ratios is not None and parts[1] not in passkey_ratios)
            or (parts[0] == "passkey" and passkey_methods is not None and parts[2] not in passkey_methods)):
        raise UserError(f"compare: {what} {path!r} names a cell that is not measured (method {parts[2]!r} at "
                        f"{parts[1]})")


def check_goals(goals: Any, methods: dict, passkey_ratios: list[str] | None = None,
                passkey_methods: list[str] | None = None) -> None:
    """Each goal: ``{"name", "value": PATH, "at_most" | "at_least": number or "K*PATH"}``, naming
    cells that are measured (a passkey cell only at ``passkey_ratios`` and for ``passkey_methods``,
    when given)."""
    if not isinstance(goals, list):
        raise UserError("compare: 'goals' must be a list")
    for g in goals:
        if not isinstance(g, dict) or not isinstance(g.get("name"), str) or not isinstance(g.get("value"), str):
            raise UserError(f"compare: goal {g!r} needs a name and a value (METRIC.RATIO.METHOD)")
        bounds = [k for k in ("at_most", "at_least") if k in g]
        if len(bounds) != 1:
            raise UserError(f"compare: goal {g['name']!r} needs exactly one of at_most, at_least")
        _check_path(g["value"], methods, f"goal {g['name']!r}", passkey_ratios, passkey_methods)
        _, ref = _parse_operand(g[bounds[0]])
        if ref is not None:
            _check_path(ref, methods, f"goal {g['name']!r}", passkey_ratios, passkey_methods)


def _lookup(result: dict, path: str) -> float | None:
    metric, ratio, method = _cell_path(path)
    return result.get(metric, {}).get(ratio, {}).get(method)


def evaluate_goals(goals: list[dict], result: dict) -> list[dict]:
    """Each goal with the measured value, its bound and whether it is met (None: not measured)."""
    out = []
    for g in goals:
        op = "at_most" if "at_most" in g else "at_least"
        value = _lookup(result, g["value"])
        k, ref = _parse_operand(g[op])
        ref_value = _lookup(result, ref) if ref is not None else 1.0
        bound = None if ref_value is None else k * ref_value
        met = None if value is None or bound is None else (value <= bound if op == "at_most" else value >= bound)
        out.append({"name": g["name"], "value": g["value"], op: g[op], "measured": value, "bound": bound,
                    "ratio_to_reference": (value / ref_value if ref is not None and value is not None
                                           and ref_value else None),
                    "met": met})
    return out


# ------------------------------------------------------------------------------------------------


def _read_cells(path: Path) -> dict[tuple[str, str], dict]:
    """Cells measured so far (a torn last line from a kill is ignored)."""
    cells: dict[tuple[str, str], dict] = {}
    if not path.exists():
        return cells
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):  # a line torn by a kill: drop it, so the next append starts clean
        data = data[: data.rfind(b"\n") + 1]
        with open(path, "r+b") as f:
            f.truncate(len(data))
    for line in data.decode("utf-8").splitlines():
        try:
            c = json.loads(line)
            cells[(c["method"], c["ratio"])] = c
        except (ValueError, KeyError, TypeError, RecursionError):
            continue
    return cells


def _append_cell(path: Path, cell: dict) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(cell, sort_keys=True) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _factor_set(spec: str, info: Any, length: int) -> Any:
    """``none`` → None; ``METHOD@Nx`` → the closed-form set; else a factor file or folder."""
    from longrope.rope import FactorSet, make_baseline

    if spec == "none":
        return None
    L = int(info.original_max_position_embeddings)
    cf = _CLOSED_FORM.match(spec)
    if cf:
        return make_baseline(cf.group(1), rope_theta=float(info.rope_theta), rotary_dim=int(info.rotary_dim),
                             original_length=L, target_length=ratio_length(float(cf.group(2)), L))
    from longrope.models.factor_files import check_fits

    fs = FactorSet.load(spec, rope_theta=info.rope_theta, original_length=L, target_length=max(length, L),
                        rotary_dim=int(info.rotary_dim))
    return check_fits(fs, info, source=spec, override_flag=None)  # a file made for another model: refused


def factor_digests(methods: dict, ratios: list[str]) -> dict[str, str]:
    """``"METHOD@RATIO"`` → SHA-256 of the factor set a cell applies, for every cell whose factors
    come from a file or folder (closed forms and ``none`` are fixed by their name). A cell measured
    with other factors than these is stale: a resumed comparison measures it again. The digest
    covers what is applied, not the file's provenance: a search resumed without a new best
    rewrites its factor file with other provenance, and its cells stay measured."""
    from longrope.models.loading import read_rope_info

    infos: dict[str, Any] = {}
    out: dict[str, str] = {}
    for name, m in methods.items():
        for ratio, spec in m["factors"].items():
            if ratio not in ratios or spec == "none" or _CLOSED_FORM.match(spec):
                continue
            if m["model"] not in infos:
                infos[m["model"]] = read_rope_info(m["model"])
            info = infos[m["model"]]
            fs = _factor_set(spec, info, ratio_length(ratio, int(info.original_max_position_embeddings)))
            out[f"{name}@{ratio}"] = fs.digest()
    return out


def _stale_cell(cell: dict, methods: dict, digests: dict[str, str], needs_passkey: bool) -> str | None:
    """Why a measured cell no longer stands for its (method, ratio) of the plan, or None if it does:
    the method now names another model, other factors (for a factor file: other content, wherever
    it lies; for a closed form or ``none``: another name), or asks for a passkey the cell lacks. (A
    cell of a method the plan no longer has is kept, unused.)"""
    name, ratio = cell["method"], cell["ratio"]
    m = methods.get(name)
    if m is None or ratio not in m["factors"]:
        return None
    if cell.get("model", m["model"]) != m["model"]:
        return "the method names another model"
    if cell.get("factors_sha256") is not None:
        if cell["factors_sha256"] != digests.get(f"{name}@{ratio}"):
            return "its factors changed"
    elif cell.get("factors", m["factors"][ratio]) != m["factors"][ratio]:
        return "the method names other factors"
    if needs_passkey and "passkey" not in cell:
        return "its passkey is asked for"
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


def run_compare(*, data: str, methods: dict, ratios: list[str], folder: Path, samples: int | dict[str, int],
                windows_per_doc: int | None,
                seed: int, heldout_fraction: float, passkey_trials: int, passkey_depths: tuple[float, ...],
                passkey_mode: str, dtype: str, device: str, goals: list[dict], passkey_ratios: list[str] | None = None,
                passkey_methods: list[str] | None = None, log: Callable[[str], None] | None = None) -> dict:
    """Measure every (method, ratio) cell not yet in ``folder/cells.jsonl``; returns the tables.

    ``samples``: held-out windows per ratio (one number, or ``{ratio: n}`` so that short ratios can
    rest on as many tokens as long ones); ``windows_per_doc`` None spreads them over the documents.
    ``passkey_ratios``: where the passkey is measured (default: every ratio; at 1× the answer is
    decoded past L, so a LongRoPE set switches to its long factors mid-answer).
    ``passkey_methods``: the methods whose passkey is measured (default: every method; each
    trial is one full-length prompt, so on a slow machine the passkey is the costliest cell).
    """
    from longrope.data import TokenCorpus
    from longrope.evaluate.passkey import passkey_accuracy
    from longrope.evaluate.perplexity import evaluate_perplexity
    from longrope.evaluate.suite import factor_switch
    from longrope.evaluate.windows import resolve_bos, select_windows
    from longrope.models import inspect_model
    from longrope.models.loading import load_model, read_rope_info

    say = log or (lambda msg: print(msg, file=sys.stderr))
    check_methods(methods, ratios)
    passkey_ratios = list(ratios if passkey_ratios is None else passkey_ratios)
    unknown = [r for r in passkey_ratios if r not in ratios]
    if unknown:
        raise UserError(f"compare: passkey_ratios {unknown} are not in ratios {ratios}")
    passkey_methods = list(methods if passkey_methods is None else passkey_methods)
    unknown = [m for m in passkey_methods if m not in methods]
    if unknown:
        raise UserError(f"compare: passkey_methods {unknown} are not among the methods {list(methods)}")
    check_goals(goals, methods, passkey_ratios, passkey_methods)
    corpus = TokenCorpus.open(data)
    models = list(dict.fromkeys(m["model"] for m in methods.values()))
    L = {}
    for name in models:
        info = read_rope_info(name)
        if not info.supported:
            raise UserError(f"compare: model {name} cannot take RoPE factors: {info.reason}")
        L[name] = int(info.original_max_position_embeddings)
    if len(set(L.values())) != 1:
        raise UserError(f"compare: the methods' models have different original contexts {L}; ratios would "
                        "mean different lengths")
    original = next(iter(L.values()))
    lengths = {r: ratio_length(r, original) for r in ratios}
    bos = resolve_bos(None, corpus=corpus) is not None
    if isinstance(samples, dict):
        missing = [r for r in ratios if r not in samples]
        if missing:
            raise UserError(f"compare: samples gives no window count for ratio(s) {missing}")
    windows = {}
    for r in ratios:
        n = int(samples[r]) if isinstance(samples, dict) else int(samples)
        if n < 1:
            raise UserError(f"compare: samples at {r} must be >= 1, got {n}")
        windows[r] = select_windows(corpus, lengths[r], n, split="heldout", seed=seed,
                                    heldout_fraction=heldout_fraction, windows_per_doc=windows_per_doc, bos=bos)
        if not windows[r]:
            raise UserError(f"compare: {data} holds no held-out window of {lengths[r]} tokens (ratio {r}); "
                            "lower the ratio or add longer held-out documents")
    cells_path = folder / CELLS_FILE
    cells = _read_cells(cells_path)
    digests = factor_digests(methods, ratios)
    for (name, ratio), c in list(cells.items()):
        why = _stale_cell(c, methods, digests, passkey_trials > 0 and ratio in passkey_ratios
                          and name in passkey_methods)
        if why:
            say(f"compare: {name} at {ratio}: {why} since the cell was measured; measuring it again")
            del cells[(name, ratio)]
    todo = [(n, r) for n, m in methods.items() for r in ratios if r in m["factors"] and (n, r) not in cells]
    if cells:
        say(f"compare: {len(cells)} cell(s) already measured, {len(todo)} to go")
    for model_name in models:
        mine = [(n, r) for n, r in todo if methods[n]["model"] == model_name]
        if not mine:
            continue
        model, tokenizer = load_model(model_name, dtype=dtype, device=device)
        info = inspect_model(model)
        bos_id = resolve_bos(tokenizer, corpus=corpus, model=model)
        if tokenizer is not None:
            corpus.check_tokenizer(tokenizer, model_name=model_name)
        with factor_switch(model, []) as use:
            for name, ratio in mine:
                spec = methods[name]["factors"][ratio]
                fs = _factor_set(spec, info, lengths[ratio])
                use(fs)
                t0 = time.perf_counter()
                ppl = evaluate_perplexity(model, windows[ratio], lengths[ratio], bos_id=bos_id)
                cell = {"method": name, "ratio": ratio, "length": lengths[ratio], "model": model_name,
                        "factors": spec, "ppl": ppl.ppl, "n_tokens": ppl.n_tokens, "n_windows": ppl.n_docs}
                if f"{name}@{ratio}" in digests:
                    cell["factors_sha256"] = digests[f"{name}@{ratio}"]
                if passkey_trials and ratio in passkey_ratios and name in passkey_methods:
                    if tokenizer is None:
                        raise UserError(f"compare: {model_name} has no tokenizer; the passkey needs one "
                                        "(set passkey_trials to 0)")
                    pk = passkey_accuracy(model, tokenizer, [lengths[ratio]], depths=list(passkey_depths),
                                          trials=passkey_trials, seed=seed, bos_id=bos_id, mode=passkey_mode)
                    cell["passkey"] = pk.accuracy
                    cell["passkey_trials"] = passkey_trials * len(passkey_depths)
                    summary = pk.summary()
                    cell["passkey_ci95"] = summary["ci95"]
                    if "answer_nll" in summary:
                        cell["passkey_answer_nll"] = summary["answer_nll"]
                cell["seconds"] = round(time.perf_counter() - t0, 3)
                rss = _peak_rss_mb()
                if rss is not None:
                    cell["peak_rss_mb"] = rss
                _append_cell(cells_path, cell)
                cells[(name, ratio)] = cell
                say(f"compare: {name:>18s} {ratio:>4s} ({lengths[ratio]} tokens)  ppl {ppl.ppl:9.4f}"
                    + (f"  passkey {cell['passkey']:.2f}" if "passkey" in cell else "")
                    + f"  [{spec}]")
        del model
    result = tables(cells, methods, ratios, lengths)
    result["windows"] = {r: [d.doc_id for d in windows[r]] for r in ratios}
    result["goals"] = evaluate_goals(goals, result)
    result["factor_digests"] = digests
    return result


def tables(cells: dict[tuple[str, str], dict], methods: dict, ratios: list[str], lengths: dict[str, int]) -> dict:
    """``heldout_ppl`` / ``passkey`` keyed by ratio then method (methods in plan order; a method not
    measured at a ratio is absent), and the tokens each ratio's perplexities rest on."""
    ppl: dict[str, dict[str, float]] = {}
    passkey: dict[str, dict[str, float]] = {}
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
    trials = next((c.get("passkey_trials") for c in cells.values() if "passkey_trials" in c), None)
    return {"ratios": list(ratios), "lengths": lengths, "heldout_ppl": ppl, "heldout_tokens": tokens,
            "passkey": passkey, "passkey_trials": trials,
            "methods": {n: {"model": m["model"], "factors": m["factors"],
                            **({"description": m["description"]} if "description" in m else {})}
                        for n, m in methods.items()}}


def format_table(result: dict) -> str:
    """Markdown: one row per method, PPL and passkey per ratio."""
    ratios = result["ratios"]
    pk = [r for r in ratios if r in result["passkey"]]
    head = "| method | " + " | ".join([f"PPL {r}" for r in ratios] + [f"passkey {r}" for r in pk]) + " |"
    rows = [head, "|---|" + "---:|" * (len(ratios) + len(pk))]

    def cell(metric: str, r: str, n: str, fmt: str) -> str:
        v = result[metric].get(r, {}).get(n)
        return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)

    for n in result["methods"]:
        rows.append(f"| {n} | " + " | ".join([cell("heldout_ppl", r, n, ".2f") for r in ratios]
                                            + [cell("passkey", r, n, ".2f") for r in pk]) + " |")
    return "\n".join(rows)
