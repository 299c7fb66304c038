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
