"""``tools.train_tiny.config``: every check names its flag; the fingerprint follows what shapes the run."""

from __future__ import annotations

import pytest

from longrope.errors import ConfigError, UserError
from longrope.options import field_flags
from tools.train_tiny.config import TinyConfig


@pytest.mark.parametrize(
    "kwargs, flag",
    [({"hidden_size": 100, "num_heads": 3}, "--hidden-size"), ({"max_steps": 0}, "--max-steps"),
     ({"passkey_fraction": 1.0}, "--passkey-fraction"), ({"context": 16}, "--context"),
     ({"vocab_size": 100}, "--vocab-size"), ({"time_budget_s": 0}, "--time-budget")],
)


def test_config_errors_name_the_flag(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        TinyConfig(**kwargs)
    assert flag in err.value.render(field_flags(TinyConfig).get)


@pytest.mark.parametrize("kwargs, flag", [({"copy_fraction": -0.1}, "--copy-fraction"),
                                          ({"copy_fraction": 0.5, "passkey_fraction": 0.5}, "--copy-fraction"),
                                          ({"copy_max_length": 4}, "--copy-max-length"),
                                          ({"eval_passkey_trials": -1}, "--eval-passkey-trials")])


def test_copy_and_eval_passkey_options_are_checked(kwargs, flag):
    with pytest.raises(ConfigError) as err:
        TinyConfig(**kwargs)
    assert flag in err.value.render(field_flags(TinyConfig).get)


def test_fingerprint_ignores_budget_but_not_shape():
    a = TinyConfig()
    assert a.fingerprint() == TinyConfig(time_budget_s=10, checkpoint_every_s=1, threads=2).fingerprint()
    assert a.fingerprint() != TinyConfig(seed=1).fingerprint()
    assert a.fingerprint() != TinyConfig(max_steps=10).fingerprint()


def test_induction_steps_are_checked_and_neutral_options_keep_old_fingerprints():
    with pytest.raises(UserError, match="induction_steps"):
        TinyConfig(max_steps=10, induction_steps=11)
    assert TinyConfig().fingerprint() == TinyConfig(induction_steps=0, tokenizer=None).fingerprint()
    assert TinyConfig().fingerprint() != TinyConfig(induction_steps=5).fingerprint()
    old = TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400)
    assert old.fingerprint() == TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400,
                                           copy_fraction=0.0, eval_passkey_trials=0).fingerprint()
    assert old.fingerprint() != TinyConfig(context=256, batch_size=8, passkey_fraction=0.25, vocab_size=400,
                                           copy_fraction=0.1).fingerprint()
