"""The package's one error type (``longrope.errors``): what a library caller can catch, what a user reads."""

from __future__ import annotations

import pytest

from longrope.errors import ConfigError, UserError
from longrope.rope import make_baseline
from longrope.search.plan import plan_search


def test_a_refusal_is_a_value_error_and_keeps_its_own_words_under_wrapping_code():
    """An API caller's ``except ValueError`` catches the package's refusals (battery 19: it did not); code that
    turns a library's ValueError into its own message still lets a refusal of this package through unchanged."""
    assert issubclass(UserError, ValueError) and issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError, match="rope_theta must be a finite number > 0"):
        make_baseline("pi", rope_theta=-1.0, rotary_dim=64, original_length=256, target_length=512)
    rope = {"family": "Llama", "rope_theta": 10000.0, "rotary_dim": 64, "original_length": 64}
    with pytest.raises(ConfigError) as err:  # plan_search maps SearchSpace's ValueErrors to the bound flags
        plan_search(rope, target_length=512, start_tokens=(0, 4, 600))
    assert err.value.fields == ("start_tokens",)


def test_a_refusal_is_one_line_whatever_it_quotes():
    """A path or value holding a line break, or a library's multi-line words, printed a refusal over several lines
    (battery 19: 'sh\\nards: no such shard folder', torch's 8-line TypeError for device=None)."""
    from longrope.data import TokenCorpus
    from longrope.models import resolve_device

    for call in (lambda: TokenCorpus.open("sh\nards\u2028x"), lambda: resolve_device(None),
                 lambda: resolve_device("cpu\rx")):
        with pytest.raises(UserError) as err:
            call()
        assert len(str(err.value).splitlines()) == 1, str(err.value)
    assert "sh\\nards" in str(UserError("sh\nards: no such shard folder"))
    assert ConfigError("x", "{name} = 'a\nb'").render(lambda f: "--x") == "--x = 'a\\nb'"


def test_numbers_past_every_bound_are_refused_in_a_short_line():
    """10**400 as rope_theta was an OverflowError, as rotary_dim numpy's 'Maximum allowed size exceeded', as an
    evaluation length or a sample's min_tokens echoed whole; a 5,000-digit integer made the message itself fail
    (str() refuses it); FactorSet.from_dict(rotary_dim='x') was taken (battery 19)."""
    from longrope.errors import shown
    from longrope.evaluate.windows import check_length
    from longrope.rope import FactorSet

    assert shown(10**5000) == "an integer of 5,001 digits" and shown("x" * 1000).endswith("...")
    base = {"rope_theta": 1e4, "rotary_dim": 64, "original_length": 256, "target_length": 512}
    calls = [lambda: make_baseline("pi", **{**base, "rope_theta": 10**400}),
             lambda: make_baseline("ntk", **{**base, "rotary_dim": 10**400}),
             lambda: check_length(10**400), lambda: check_length(10**5000)]
    good = make_baseline("pi", **base).to_dict()
    calls += [lambda v=v: FactorSet.from_dict(good, rotary_dim=v) for v in ("x", True, 10**400)]
    for call in calls:
        with pytest.raises(UserError) as err:
            call()
        assert len(str(err.value)) < 160, str(err.value)


def test_a_setting_of_five_thousand_digits_is_refused_in_a_short_line_by_the_api():
    """Refusals that quoted the value with repr were Python's "Exceeds the limit (4300 digits) for integer string
    conversion" traceback for -10**5000: evaluate_perplexity's batch_size, max_tokens, chunk_size and stride, a
    patch's mode and cache policy, generate's mode, resolve_dtype (battery 29a). They quote through shown() now."""
    import numpy as np

    from longrope.evaluate import evaluate_perplexity
    from longrope.models import generate, inspect_model, install_factors
    from longrope.settings import resolve_dtype
    from tests.models.model_helpers import build_tiny

    big = -10**5000
    model = build_tiny("llama")
    info = inspect_model(model)
    patch = install_factors(model, make_baseline("pi", rope_theta=info.rope_theta, rotary_dim=info.rotary_dim,
                                                 original_length=32, target_length=64))
    docs = [np.arange(1, 100)]
    kwargs = [{"batch_size": big}, {"stride": 8, "max_tokens": big}, {"chunk_size": big}, {"stride": big}]
    calls = [lambda kw=kw: evaluate_perplexity(model, docs, 32, bos_id=1, **kw) for kw in kwargs]
    calls += [lambda: setattr(patch, "mode", big), lambda: setattr(patch, "cache_policy", big),
              lambda: generate(model, None, [[1, 2, 3]], 2, mode=big), lambda: resolve_dtype(big)]
    for call in calls:
        with pytest.raises(UserError) as err:
            call()
        assert "5,001 digits" in str(err.value) and len(str(err.value)) < 160, str(err.value)
