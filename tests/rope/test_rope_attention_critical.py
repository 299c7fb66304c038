"""Attention temperature policies and the LongRoPE2 critical dimension / factor shape."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longrope.errors import UserError
from longrope.rope import (
    inv_freq,
    longrope2_factors,
    longrope_attention_factor,
    resolve_attention_factor,
    theoretical_critical_dim,
    yarn_attention_factor,
)
from tests.rope.rope_strategies import original_lengths, rotary_dims, scales


def test_attention_policies_known_values():
    # Phi-3-mini-128k: s = 32, L = 4096.
    assert resolve_attention_factor("longrope", 32, 4096) == pytest.approx(1.1902380714238083)
    assert resolve_attention_factor(None, 32, 4096) == resolve_attention_factor("longrope", 32, 4096)
    assert resolve_attention_factor("su", 32, 4096) == resolve_attention_factor("longrope", 32, 4096)
    assert resolve_attention_factor("yarn", 16, 4096) == pytest.approx(0.1 * math.log(16) + 1)
    assert resolve_attention_factor("none", 16, 4096) == 1.0
    assert resolve_attention_factor(1.25, 16, 4096) == 1.25
    assert resolve_attention_factor("1.5", 16, 4096) == 1.5
    assert yarn_attention_factor(16, mscale=0.707) == pytest.approx(0.1 * 0.707 * math.log(16) + 1)


@given(s=st.floats(0.01, 1.0), L=original_lengths)
def test_no_temperature_without_extension(s, L):
    assert longrope_attention_factor(s, L) == 1.0
    assert yarn_attention_factor(s) == 1.0


@given(s=st.floats(1.0001, 1e4), L=original_lengths)
def test_temperatures_grow_with_scale(s, L):
    assert 1.0 < longrope_attention_factor(s, L) < longrope_attention_factor(2 * s, L)
    assert 1.0 < yarn_attention_factor(s) < yarn_attention_factor(2 * s)


@pytest.mark.parametrize(
    "value,message",
    [
        ("warm", "unknown attention factor policy 'warm'"),
        (0.0, "> 0"),
        (float("nan"), "> 0"),
        (True, "policy name"),
    ],
)
def test_bad_attention_policies(value, message):
    with pytest.raises(UserError, match=message):
        resolve_attention_factor(value, 8, 4096)


@settings(max_examples=60, deadline=None)
@given(d=rotary_dims, b=st.sampled_from([10000.0, 500000.0, 1e6]), L=original_lengths)
def test_theoretical_critical_dim_is_first_pair_without_a_full_turn(d, b, L):
    k = theoretical_critical_dim(b, d, L)
    period = 2 * math.pi / inv_freq(b, d)  # [d/2]
    assert 0 <= k <= d // 2
    assert np.all(period[k:] >= L * (1 - 1e-12))  # never a full turn inside L
    assert np.all(period[: max(k - 1, 0)] < L)  # pairs below the boundary turn at least once
    assert theoretical_critical_dim(b, d, L, offset=-1) == max(k - 1, 0)


def test_critical_dim_known_values():
    # Llama-2 (b 1e4, d 128, L 4096): 64·log_1e4(4096/2π) = 45.03 → 46; Llama-3 (b 5e5, L 8192) → 35.
    assert theoretical_critical_dim(10000.0, 128, 4096) == 46
    assert theoretical_critical_dim(500000.0, 128, 8192) == 35


@settings(max_examples=60, deadline=None)
@given(d=rotary_dims, L=original_lengths, s=scales, data=st.data())
def test_longrope2_shape(d, L, s, data):
    half = d // 2
    k = data.draw(st.integers(0, half))
    extra = np.sort(data.draw(st.lists(st.floats(0.0, 1.0), min_size=half - k, max_size=half - k)))
    high = s * (1.0 + np.asarray(extra))  # non-decreasing, in [s, 2s]
    fs = longrope2_factors(10000.0, d, L, L * s, k, high)
    lam = fs.long_factor
    assert lam.shape == (half,) and fs.method == "longrope2" and fs.attention_factor is None
    np.testing.assert_array_equal(lam[k:], high)
    assert np.all(np.diff(lam) >= -1e-12 * lam[1:])
    assert lam[0] == pytest.approx(1.0 if k else high[0])
    if k:  # geometric (NTK-style) ramp below the critical dim, reaching λ_k at i = k
        anchor = high[0] if half > k else s
        np.testing.assert_allclose(lam[:k], anchor ** (np.arange(k) / k), rtol=1e-12)


def test_longrope2_defaults_and_errors():
    fs = longrope2_factors(10000.0, 16, 4096, 32768, 5)
    np.testing.assert_array_equal(fs.long_factor[5:], 8.0)
    with pytest.raises(UserError, match=">= s = 8"):
        longrope2_factors(10000.0, 16, 4096, 32768, 5, 4.0)
    with pytest.raises(UserError, match="non-decreasing"):
        longrope2_factors(10000.0, 16, 4096, 32768, 5, [8.0, 9.0, 8.5])
    with pytest.raises(UserError, match="must have 3 values"):
        longrope2_factors(10000.0, 16, 4096, 32768, 5, [8.0, 9.0])
    with pytest.raises(UserError, match="critical_dim must be in"):
        longrope2_factors(10000.0, 16, 4096, 32768, 9)


@pytest.mark.parametrize("call, named", [
    (lambda: longrope_attention_factor("4", 4096), "scale"),
    (lambda: longrope_attention_factor(float("nan"), 4096), "scale"),
    (lambda: longrope_attention_factor(math.inf, 4096), "scale"),
    (lambda: longrope_attention_factor(4.0, "4096"), "original_length"),
    (lambda: yarn_attention_factor(None), "scale"),
    (lambda: yarn_attention_factor(4.0, float("nan")), "mscale"),
    (lambda: yarn_attention_factor(4.0, -100.0), "mscale"),
])
def test_the_attention_factor_functions_name_a_bad_argument(call, named):
    """The public attention functions took what they were given: a string scale was a bare TypeError ("'<=' not
    supported between instances of 'str' and 'float'"), NaN and inf came back as the factor, a negative mscale gave
    a negative factor (-12.9) that every factor set refuses (battery 18). Now the library's one error, naming it."""
    with pytest.raises(UserError, match=named):
        call()
    assert longrope_attention_factor(np.float64(4.0), np.int64(4096)) == longrope_attention_factor(4.0, 4096)


def test_rope_helpers_take_numbers_by_the_one_rule():
    """A scale of 0 or below is refused, not read as "no extension" (1.0); theoretical_critical_dim's offset is an
    integer by int_field's rule (2.5 was read as 2, True as 1, None a TypeError); same_factors' tolerance is the
    checked float (a 10**40 integer was numpy's isfinite TypeError) (battery 21b)."""
    import numpy as np
    import pytest

    from longrope.errors import UserError
    from longrope.rope import FactorSet, theoretical_critical_dim
    from longrope.rope.attention import (
        longrope_attention_factor,
        resolve_attention_factor,
        yarn_attention_factor,
    )

    fs = FactorSet.identity(16, 1e4, 256, 1024)
    for call in (lambda: longrope_attention_factor(-3, 256), lambda: yarn_attention_factor(0),
                 lambda: resolve_attention_factor("yarn", -1.0, 256),
                 lambda: theoretical_critical_dim(1e4, 16, 256, offset=2.5),
                 lambda: theoretical_critical_dim(1e4, 16, 256, offset=True),
                 lambda: theoretical_critical_dim(1e4, 16, 256, offset=None)):
        with pytest.raises(UserError):
            call()
    assert theoretical_critical_dim(1e4, 16, 256, offset=np.int64(-1)) == theoretical_critical_dim(1e4, 16, 256) - 1
    assert fs.same_factors(fs, rtol=10**40) and longrope_attention_factor(0.5, 256) == 1.0


def test_high_factors_that_are_not_numbers_are_one_line_and_tensors_are_read():
    """longrope2_factors read high_factors with np.asarray: text, a dict, 10**400 or a tensor requiring grad were
    numpy's ValueError/TypeError, an OverflowError and torch's RuntimeError from inside (battery 29a). They go
    through the one factor-list reader now; a 0-d tensor is the scalar it holds, as the docstring says."""
    import torch

    from longrope.rope import longrope2_factors

    args = (1e4, 64, 256, 2048, 20)
    for bad, said in ((["a"] * 12, r"\[0\] is not a number"), ("abc", "list of numbers, got str"),
                      ({"a": 1}, "list of numbers, got dict"), (10**400, "an integer of 401 digits"),
                      ([10**400] * 12, "finite numbers")):
        with pytest.raises(UserError, match=f"^high_factors.*{said}"):
            longrope2_factors(*args, high_factors=bad)
    want = longrope2_factors(*args, high_factors=[9.0] * 12)
    assert longrope2_factors(*args, high_factors=torch.full((12,), 9.0, requires_grad=True)).same_factors(want)
    assert longrope2_factors(*args, high_factors=torch.tensor(9.0)).same_factors(want)
    assert longrope2_factors(1e4, 64, 256, 2048, 32, high_factors=[]).same_factors(
        longrope2_factors(1e4, 64, 256, 2048, 32))


def test_resolve_attention_factor_takes_a_tensor_as_the_other_attention_functions_do():
    """The README: the attention-factor functions take torch tensors. longrope_attention_factor and
    yarn_attention_factor did, resolve_attention_factor(torch.tensor(1.2), ...) said "must be a policy name or a
    number, got tensor(1.2000)" (battery 29a)."""
    import torch

    from longrope.rope import resolve_attention_factor

    assert resolve_attention_factor(torch.tensor(1.25, dtype=torch.float64), 8.0, 256) == 1.25
    assert resolve_attention_factor(torch.tensor(1.25), torch.tensor(8.0), torch.tensor(256)) == 1.25
