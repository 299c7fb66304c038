"""The float64 angle oracle (tests/rope/rope_angles.py): identity, PI, n̂, rotation properties, 2M-position accuracy, mscale on every row."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from longrope.errors import UserError
from longrope.rope import FactorSet, inv_freq, make_baseline
from tests.rope.rope_angles import apply_rotary, cos_sin, reduce_angles, rope_angles
from tests.rope.rope_strategies import rotary_dims, thetas

factor_vectors = st.integers(1, 32).flatmap(
    lambda half: st.lists(st.floats(1.0, 256.0), min_size=half, max_size=half).map(np.array)
)


@settings(max_examples=40, deadline=None)
@given(d=rotary_dims, b=thetas, n=st.integers(1, 300), n_hat=st.integers(0, 64))
def test_unit_factors_are_the_identity(d, b, n, n_hat):
    theta = inv_freq(b, d)
    p = np.arange(n)
    plain = p[:, None] * theta
    np.testing.assert_array_equal(rope_angles(p, theta, np.ones(d // 2), n_hat), plain)
    np.testing.assert_array_equal(rope_angles(p, theta, None), plain)


@settings(max_examples=40, deadline=None)
@given(d=rotary_dims, b=thetas, s=st.integers(1, 64), n=st.integers(1, 200))
def test_uniform_factor_is_position_interpolation(d, b, s, n):
    theta = inv_freq(b, d)
    p = np.arange(n)
    fs = make_baseline("pi", rope_theta=b, rotary_dim=d, original_length=1024, target_length=1024 * s)
    got = rope_angles(p, theta, fs.long_factor)
    # PI: rotate position p as if it were p/s.
    np.testing.assert_allclose(got, (p / s)[:, None] * theta, rtol=1e-14, atol=0)


@settings(max_examples=40, deadline=None)
@given(lam=factor_vectors, n_hat=st.integers(0, 300), seed=st.integers(0, 2**31))
def test_start_tokens_keep_the_original_angles(lam, n_hat, seed):
    d = 2 * lam.size
    theta = inv_freq(10000.0, d)
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 600, size=(3, 50))  # arbitrary cache positions, batch-shaped
    got = rope_angles(p, theta, lam, n_hat)
    assert got.shape == (3, 50, d // 2)
    early = p < n_hat
    np.testing.assert_array_equal(got[early], p[early][:, None] * theta)
    np.testing.assert_array_equal(got[~early], p[~early][:, None] * (theta / lam))


@settings(max_examples=40, deadline=None)
@given(lam=factor_vectors, m=st.floats(0.5, 2.0), seed=st.integers(0, 2**31))
def test_rotation_preserves_norms(lam, m, seed):
    d = 2 * lam.size
    rng = np.random.default_rng(seed)
    p = rng.integers(0, 2_000_000, size=64)
    cos, sin = cos_sin(p, inv_freq(10000.0, d), lam, start_tokens=4, attention_factor=m, dtype=np.float64)
    x = rng.standard_normal((64, d))
    y = apply_rotary(x, cos, sin)
    # The temperature scales the whole table, so the norm scales by exactly m.
    np.testing.assert_allclose(np.linalg.norm(y, axis=-1), m * np.linalg.norm(x, axis=-1), rtol=1e-12)


@settings(max_examples=40, deadline=None)
@given(lam=factor_vectors, n_hat=st.integers(0, 64), shift=st.integers(0, 10**6), seed=st.integers(0, 2**31))
def test_scores_depend_only_on_relative_position(lam, n_hat, shift, seed):
    d = 2 * lam.size
    rng = np.random.default_rng(seed)
    q, k = rng.standard_normal(d), rng.standard_normal(d)
    theta = inv_freq(10000.0, d)
    m, n = n_hat + int(rng.integers(0, 500)), n_hat + int(rng.integers(0, 500))

    def score(pm: int, pn: int) -> float:
        cos, sin = cos_sin([pm, pn], theta, lam, n_hat, dtype=np.float64)
        return float(apply_rotary(q, cos[0], sin[0]) @ apply_rotary(k, cos[1], sin[1]))

    assert score(m, n) == pytest.approx(
        score(m + shift, n + shift), abs=1e-8 * (1 + np.abs(q).sum() * np.abs(k).sum())
    )


# 60 digits of π as an exact fraction: plenty to reduce angles of 1e7 rad to 1e-40.
_PI = Fraction("3.14159265358979323846264338327950288419716939937510582097494")


def _exact_angle(p: int, theta: float, lam: float) -> Fraction:
    """The angle our float64 inputs define, p·θ/λ, with no rounding at all."""
    return Fraction(p) * Fraction(theta) / Fraction(lam)


def _exact_reduced(angle: Fraction) -> float:
    two_pi = 2 * _PI
    k = math.floor(angle / two_pi)
    return float(angle - k * two_pi)


@pytest.mark.parametrize("p", [2_097_151, 2_000_003, 4_194_304, 1_999_999])
def test_angles_exact_at_two_million_positions(p):
    d = 128
    theta = inv_freq(10000.0, d)
    lam = make_baseline(
        "yarn", rope_theta=10000.0, rotary_dim=d, original_length=4096, target_length=4096 * 512
    ).long_factor
    got = rope_angles([p], theta, lam)[0]
    want = np.array([float(_exact_angle(p, t, lm)) for t, lm in zip(theta, lam)])
    # Two float64 roundings: relative error < 3 ulp. At 2e6 rad that is ~1e-9 rad.
    np.testing.assert_allclose(got, want, rtol=4e-16, atol=0)
    assert np.max(np.abs(got - want)) < 2e-9

    # fp32 tables from cos_sin match the exact cos/sin to fp32 rounding, because cos/sin are taken
    # in float64 and only the results are cast.
    cos, sin = cos_sin([p], theta, lam, dtype=np.float32)
    exact = np.array([_exact_reduced(_exact_angle(p, t, lm)) for t, lm in zip(theta, lam)])
    np.testing.assert_allclose(cos[0], np.cos(exact), atol=2e-7, rtol=0)
    np.testing.assert_allclose(sin[0], np.sin(exact), atol=2e-7, rtol=0)

    # Reduced angles cast to fp32 (what a torch model would receive) stay within ~4e-7 rad ...
    reduced32 = reduce_angles(got).astype(np.float32).astype(np.float64)
    err = np.abs(np.remainder(reduced32 - exact + math.pi, 2 * math.pi) - math.pi)
    assert err.max() < 5e-7
    # ... while the naive fp32 product is off by a large fraction of a radian: the check can fail.
    naive = (np.float32(p) * theta.astype(np.float32) / lam.astype(np.float32)).astype(np.float64)
    naive_err = np.abs(np.remainder(naive - exact + math.pi, 2 * math.pi) - math.pi)
    assert naive_err.max() > 1e-2


def test_reduce_angles_range_and_equivalence():
    a = np.array([-10.0, -math.pi, 0.0, math.pi, 3 * math.pi + 0.5, 2.0e6])
    r = reduce_angles(a)
    assert np.all(r >= -math.pi) and np.all(r < math.pi)
    np.testing.assert_allclose(np.cos(r), np.cos(a), atol=1e-9)
    np.testing.assert_allclose(np.sin(r), np.sin(a), atol=1e-9)


@settings(max_examples=30, deadline=None)
@given(lam=factor_vectors, n_hat=st.integers(1, 40), m=st.floats(1.01, 3.0))
def test_attention_factor_applies_to_every_row_including_start_tokens(lam, n_hat, m):
    d = 2 * lam.size
    theta = inv_freq(10000.0, d)
    p = np.arange(80)
    cos1, sin1 = cos_sin(p, theta, lam, n_hat, attention_factor=1.0, dtype=np.float64)
    cosm, sinm = cos_sin(p, theta, lam, n_hat, attention_factor=m, dtype=np.float64)
    np.testing.assert_allclose(cosm, m * cos1, rtol=1e-15)
    np.testing.assert_allclose(sinm, m * sin1, rtol=1e-15)
    # Start-token rows have the original angles but the same temperature as every other row.
    np.testing.assert_allclose(np.hypot(cosm[:n_hat], sinm[:n_hat]), m, rtol=1e-14)


def test_duplicate_layout_matches_transformers_cat_convention():
    theta = inv_freq(10000.0, 8)
    cos_h, sin_h = cos_sin(np.arange(5), theta, dtype=np.float64)
    cos_d, sin_d = cos_sin(np.arange(5), theta, dtype=np.float64, duplicate=True)
    np.testing.assert_array_equal(cos_d, np.concatenate([cos_h, cos_h], axis=-1))
    np.testing.assert_array_equal(sin_d, np.concatenate([sin_h, sin_h], axis=-1))


def test_bad_inputs_raise_user_errors():
    theta = inv_freq(10000.0, 8)
    with pytest.raises(UserError, match="factors have shape"):
        rope_angles([0, 1], theta, np.ones(3))
    with pytest.raises(UserError, match="start_tokens"):
        rope_angles([0, 1], theta, np.ones(4), start_tokens=-1)
    with pytest.raises(UserError, match="positions"):
        rope_angles([-1], theta, np.ones(4))
    with pytest.raises(UserError, match="attention_factor"):
        cos_sin([0], theta, attention_factor=0.0)


def test_factorset_inv_freq_is_theta_over_lambda():
    fs = FactorSet(
        long_factor=[1.0, 2.0, 4.0, 8.0],
        short_factor=[1.0, 1.0, 1.5, 2.0],
        original_max_position_embeddings=16,
        max_position_embeddings=128,
        rope_theta=100.0,
    )
    np.testing.assert_array_equal(fs.inv_freq("long"), inv_freq(100.0, 8) / fs.long_factor)
    np.testing.assert_array_equal(fs.inv_freq("short"), inv_freq(100.0, 8) / fs.short_factor)
    assert fs.factors_for_length(16) is fs.short_factor
    assert fs.factors_for_length(17) is fs.long_factor
