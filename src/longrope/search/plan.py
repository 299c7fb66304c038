"""What a search is over, resolved from the model's RoPE facts: space, seeds, candidate mapping,
and the closed-form factor sets the result is compared with. Pure numpy (no model is loaded).

Three modes (docs/method.md §4–§5):

- ``long``: λ for L → L' (``strategy`` paper/steady: the paper's space ``[1, 1.25·s]`` with n̂;
  longrope2: the critical-dimension space ``[s, 2s]`` above ``d_rcd``);
- ``progressive`` (``base`` given, not ``short``): λ' relative to a model fine-tuned with
  ``base``; the installed factors are ``λ_base ⊙ λ'`` (bounds of λ' as for ``s = L'/L'_base``);
- ``short`` (``base`` given): the short factors of ``base`` at the original length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from longrope.errors import ConfigError, UserError
from longrope.rope.values import START_TOKENS_WHY
from longrope.search.objective import CandidateMapper
from longrope.search.seeds import (
    SHORT_UPPER_DEFAULT,
    attention_choices,
    critical_window,
    extended_seeds,
    long_space,
    longrope2_seeds,
    longrope2_space,
    paper_seeds,
    progressive_seeds,
    short_seeds,
)
from longrope.search.space import PAPER_START_TOKENS, Genome, SearchSpace
from longrope.search.strategies import SEARCH_STRATEGIES, search_strategy

#: Search strategies by name (their meaning: :data:`longrope.search.strategies.SEARCH_STRATEGIES`).
STRATEGY_NAMES = tuple(SEARCH_STRATEGIES)
BASELINE_NAMES = ("pi", "ntk", "yarn")

__all__ = ["SearchPlan", "plan_search", "STRATEGY_NAMES", "BASELINE_NAMES", "loop_strategy"]


#: the seed makers of an extension search, by :attr:`SearchStrategy.seeds`
_SEEDS = {"paper": paper_seeds, "extended": extended_seeds, "longrope2": longrope2_seeds}


def loop_strategy(strategy: str) -> str:
    """The loop strategy behind a search strategy name (longrope2 runs ours in its own space)."""
    return search_strategy(strategy).loop


@dataclass
class SearchPlan:
    """What a search resolves to before anything heavy runs."""

    space: SearchSpace
    seeds: list[Genome]
    mapper: CandidateMapper
    length: int
    """the evaluation length (L' or, for short factors, ≤ L)"""
    rope: dict
    """the model's RoPE facts the plan rests on"""
    baselines: dict[str, Any]
    """name → FactorSet compared with the result on held-out documents"""
    references: dict[str, np.ndarray]
    """name → λ curve drawn beside the result in factors.png"""


def plan_search(rope: dict, **kwargs: Any) -> SearchPlan:
    """Resolve the search from ``rope`` = ``{"rope_theta", "rotary_dim", "original_length", ...}``; see
    :func:`_plan` for the keyword arguments. Bounds that leave no room (``min_factor`` above the
    upper bound, say) are a :class:`~longrope.errors.ConfigError` naming them."""
    from longrope.search.space import SpaceError

    try:
        return _plan(rope, **kwargs)
    except SpaceError as e:  # SearchSpace's own checks: bounds, grid, n̂ set
        raise ConfigError(("min_factor", "max_factor", "step"),
                          f"these search bounds make no search space ({e}); check {{name0}}, {{name1}} and "
                          "{name2}") from None
    except UserError:  # a field of its own already named (start_tokens, target_length, base_factors ...)
        raise
    except (ValueError, OverflowError) as e:  # absurd sizes
        raise ConfigError(("min_factor", "max_factor", "step"),
                          f"these search bounds leave no valid factors ({e}); check {{name0}}, {{name1}} and "
                          "{name2}") from None


def start_token_grid(start_tokens: tuple[int, ...], L: int) -> tuple[int, ...]:
    """The n̂ values a search may use on a model trained on L tokens: n̂ ≤ L (as for every factor set,
    :func:`~longrope.rope.values.start_tokens_limit`; a search's L' is above L). The paper's grid (the default) is
    cut to that; a grid the user gave with a larger value is refused naming it."""
    grid = tuple(int(t) for t in start_tokens)
    if grid == PAPER_START_TOKENS:
        return tuple(t for t in grid if t <= L)
    if max(grid) > L:
        raise ConfigError("start_tokens", f"{{name}} {max(grid)} is more than the model's original length L = {L}: "
                          f"{START_TOKENS_WHY}; give values from 0 to {L}")
    return grid


def _plan(
    rope: dict,
    *,
    target_length: int | None,
    strategy: str = "steady",
    base: Any = None,
    short: bool = False,
    step: float = 0.01,
    min_factor: float | None = None,
    max_factor: float | None = None,
    start_tokens: tuple[int, ...] = PAPER_START_TOKENS,
    search_attention: bool = True,
    critical_floor: bool = False,
) -> SearchPlan:
    """Resolve the search from ``rope`` = ``{"rope_theta", "rotary_dim", "original_length", ...}``.

    ``base`` is a FactorSet (short / progressive modes). Errors name the config fields
    (``target_length``, ``base_factors``) as :class:`~longrope.errors.ConfigError`.
    """
    from longrope.models.factor_files import rotary_fit_problem
    from longrope.rope import make_baseline

    theta, d, L = float(rope["rope_theta"]), int(rope["rotary_dim"]), int(rope["original_length"])
    n = d // 2
    start_tokens = start_token_grid(start_tokens, L)

    def refs(L0: int, Lt: int) -> dict[str, np.ndarray]:
        return {m: make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L0, target_length=Lt).long_factor
                for m in BASELINE_NAMES}

    if base is not None and rotary_fit_problem(base, d, theta):
        raise ConfigError("base_factors", "{name} is for rotary dim " + f"{base.rotary_dim} / base "
                          f"{base.rope_theta:g}, the model has {d} / {theta:g}")
    kind = search_strategy(strategy)
    attention = attention_choices if kind.searches_attention and search_attention else None

    if short:
        if base is None:
            raise ConfigError("base_factors", "short-factor recovery fills the short factors of a factor file: "
                                              "give it with {name}")
        length = L if target_length is None else int(target_length)
        if length > L:
            raise ConfigError("target_length", "short factors are searched at most at the original length "
                              f"{L}; got {{name}} {length}")
        upper = max_factor if max_factor is not None else SHORT_UPPER_DEFAULT
        space = SearchSpace(n_dims=n, lower=min_factor or 1.0, upper=upper, step=step,
                            start_tokens=(base.start_tokens,))
        mapper = CandidateMapper("short", theta, L, base.max_position_embeddings, base.to_dict())
        baselines = {"base-file": base, "no-short-factors": base.with_(short_factor=np.ones(n),
                                                                        method="no-short-factors")}
        return SearchPlan(space, short_seeds(space, base.short_factor), mapper, length, rope, baselines,
                          {"base short": base.short_factor})

    if target_length is None:
        raise ConfigError("target_length", "{name} is required (except for short-factor recovery)")
    Lt = int(target_length)
    if base is not None:  # progressive: λ' relative to the fine-tuned model's factors
        L0 = base.max_position_embeddings
        if Lt <= L0:
            raise ConfigError("target_length", f"{{name}} {Lt} must exceed the base factors' length {L0} for a "
                                               "progressive search (short factors: use short-factor recovery)")
        space = long_space(n, Lt / L0, step=step, lower=min_factor, upper=max_factor, start_tokens=start_tokens,
                           attention=attention(Lt / L, L) if attention else ())
        if kind.seeds == "paper":
            seeds = paper_seeds(space, theta, d, L0, Lt)
        else:
            seeds = progressive_seeds(space, theta, d, L, L0, Lt, base.long_factor)
        mapper = CandidateMapper("progressive", theta, L, Lt, base.to_dict())
        baselines = {"base-file": base.with_(max_position_embeddings=Lt, method="base-file")}
        for m, lam in refs(L0, Lt).items():
            baselines[f"base*{m}"] = mapper.factor_set(lam, 0).with_(method=f"base*{m}")
        return SearchPlan(space, seeds, mapper, Lt, rope, baselines, refs(L0, Lt))

    if Lt <= L:
        raise ConfigError("target_length", f"{{name}} {Lt} must exceed the model's original context {L} "
                                           "(short factors at the original length: use short-factor recovery)")
    s = Lt / L
    if kind.space == "critical":
        space = longrope2_space(n, s, critical_window(theta, d, L), step=step, upper=max_factor)
    else:
        space = long_space(n, s, step=step, lower=min_factor, upper=max_factor, start_tokens=start_tokens,
                           attention=attention(s, L) if attention else ())
    seeds = _SEEDS[kind.seeds](space, theta, d, L, Lt)
    floor = None
    if critical_floor:
        from longrope.rope.critical import theoretical_critical_dim

        floor = theoretical_critical_dim(theta, d, L)
    mapper = CandidateMapper("long", theta, L, Lt, floor_from=floor)
    baselines = {m: make_baseline(m, rope_theta=theta, rotary_dim=d, original_length=L, target_length=Lt)
                 for m in BASELINE_NAMES}
    return SearchPlan(space, seeds, mapper, Lt, rope, baselines, refs(L, Lt))
