"""The strategy table: every ``--strategy`` is one row that the CLI, the plan, the loop and the default
fitness all read (a new strategy is one row)."""

from __future__ import annotations

import pytest

from longrope.runs.demo import DemoConfig
from longrope.runs.search import SearchConfig
from longrope.search.objective import FITNESSES, default_fitness, legacy_fitness
from longrope.search.plan import _SEEDS, STRATEGY_NAMES, loop_strategy, plan_search
from longrope.search.strategies import SEARCH_STRATEGIES, STRATEGIES, search_strategy

ROPE = {"rope_theta": 10000.0, "rotary_dim": 16, "original_length": 256}


@pytest.mark.parametrize("name", list(SEARCH_STRATEGIES))
def test_every_row_names_things_that_exist(name):
    row = SEARCH_STRATEGIES[name]
    assert row.loop in STRATEGIES and row.seeds in _SEEDS and row.space in ("paper", "critical")
    assert {row.fitness, row.short_fitness, row.legacy_fitness} <= set(FITNESSES)
    assert loop_strategy(name) == row.loop
    assert default_fitness(name) == row.fitness and default_fitness(name, short=True) == row.short_fitness
    assert legacy_fitness(name) == row.legacy_fitness


def test_the_cli_choices_are_the_table():
    assert STRATEGY_NAMES == tuple(SEARCH_STRATEGIES)
    for cfg in (SearchConfig, DemoConfig):
        field = cfg.__dataclass_fields__["strategy"]
        assert tuple(field.metadata["choices"]) == STRATEGY_NAMES


def test_the_plan_follows_the_row():
    """The row decides the space and whether the temperature is searched."""
    steady = plan_search(ROPE, target_length=2048, strategy="steady")
    paper = plan_search(ROPE, target_length=2048, strategy="paper")
    lr2 = plan_search(ROPE, target_length=2048, strategy="longrope2")
    assert steady.space.has_attention and not paper.space.has_attention and not lr2.space.has_attention
    assert len(paper.seeds) == 3 and len(steady.seeds) > 3
    s = 2048 / 256
    assert lr2.space.upper >= 2 * s - 1e-9  # the critical space reaches 2s


def test_an_unknown_name_is_one_line():
    with pytest.raises(ValueError, match="unknown strategy 'nope'; choose one of steady, paper, longrope2"):
        search_strategy("nope")


@pytest.mark.parametrize("knob", [{"sigma": float("inf")}, {"sigma_bounds": (0.1, float("inf"))},
                                  {"min_delta": float("inf")}, {"race_margin": float("inf")}])
def test_a_knob_that_is_not_finite_is_refused(knob):
    """--sigma inf, --sigma-bounds 0.1,inf, --min-delta inf and --race-margin inf ran (battery 5): a mutation
    step, a stall tolerance or a racing margin of infinity is no setting."""
    from longrope.errors import ConfigError
    from longrope.search.strategies import StrategyConfig

    with pytest.raises(ConfigError, match="finite"):
        StrategyConfig(**knob)
    StrategyConfig(sigma=0.5, sigma_bounds=(0.1, 2.0), min_delta=0.0, race_margin=0.1)  # finite ones still do


def test_strategy_config_refuses_values_of_another_kind_in_one_line():
    """StrategyConfig checks each field's kind as every config does (check_shapes): a text, None, a lone number for
    a list or a pair of another length was a TypeError or IndexError from its range checks (battery 21b)."""
    import pytest

    from longrope.errors import ConfigError
    from longrope.search.strategies import StrategyConfig

    for field, value in [("sigma", "0.1"), ("sigma", None), ("mutation_prob", None), ("min_delta", None),
                         ("race", 2), ("race", None), ("sigma_bounds", (0.1,)), ("sigma_bounds", None),
                         ("race_margin", [0.1])]:
        with pytest.raises(ConfigError, match=field) as e:
            StrategyConfig(**{field: value})
        assert "\n" not in str(e.value)


def test_search_names_and_counts_are_refused_as_user_errors():
    """A fitness, strategy or mapper mode that is unknown or no name, and an n_docs that is no count, are one-line
    UserErrors (the CLI's exit 2): they were plain ValueErrors (a traceback when one reached the command line: the
    recorded strategy '' of a hand-edited config.json), a KeyError (named_parts) or a TypeError ('unhashable type',
    '<' between str and int) (battery 21b)."""
    import pytest

    from longrope.errors import UserError
    from longrope.search.archive import Archive
    from longrope.search.objective import CandidateMapper, ObjectiveSpec, check_fitness, named_parts
    from longrope.search.space import SearchSpace
    from longrope.search.strategies import StrategyConfig, make_strategy, search_strategy

    mapper = CandidateMapper("long", 1e4, 256, 2048)
    for call in (lambda: check_fitness("frob", None), lambda: check_fitness(["joint"], None),
                 lambda: check_fitness("ppl", 0.5), lambda: search_strategy(""), lambda: search_strategy(["paper"]),
                 lambda: make_strategy("x", SearchSpace(n_dims=4), Archive(2), StrategyConfig()),
                 lambda: CandidateMapper("x", 1e4, 256, 2048), lambda: named_parts("frob", [1.0], 1),
                 lambda: ObjectiveSpec(model="tiny", data="d", length=512, n_docs="3", mapper=mapper)):
        with pytest.raises(UserError):
            call()


def test_ours_keeps_more_genomes_than_the_population_whose_help_says_it_counts_in_the_budget():
    """--population bounds nothing in ours (its help said "archive size bound of ours"): it counts in the candidate
    budget P + T·(N1+N2), and the archive keeps every genome scored."""
    import dataclasses

    from longrope.search import InProcessEvaluator, StrategyConfig, SyntheticObjective, run_search
    from longrope.search.seeds import long_space, paper_seeds

    space = long_space(8, 8.0)
    config = StrategyConfig(population=4, parents=2, mutations=2, crossovers=2, iterations=3, initial=4)
    res = run_search(space, paper_seeds(space, 10000.0, 16, 256, 2048), InProcessEvaluator(SyntheticObjective(8, 8.0, 2)),
                     n_docs=2, config=config, seed=0)
    assert res.n_candidates == config.budget == 16
    assert len({(tuple(h["factors"]), h["start_tokens"]) for h in res.history}) > config.population
    text = next(f for f in dataclasses.fields(StrategyConfig) if f.name == "population").metadata["help"]
    assert "bound" not in text and "budget" in text
