"""Hypothesis strategies shared by the rope tests: small but realistic (d, b, L, s) values."""

from __future__ import annotations

from hypothesis import strategies as st

rotary_dims = st.sampled_from([4, 8, 16, 32, 64, 96, 128])
thetas = st.sampled_from([10000.0, 500000.0, 1e6, 5e6]) | st.floats(100.0, 1e7)
original_lengths = st.sampled_from([256, 2048, 4096, 8192]) | st.integers(64, 16384)
scales = st.sampled_from([1, 2, 4, 8, 16, 32, 64]) | st.integers(1, 128)
