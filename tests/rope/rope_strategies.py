"""Shared by the rope tests: hypothesis strategies of small but realistic (d, b, L, s) values, and
the config keys the export writes for a factor set."""

from __future__ import annotations

from hypothesis import strategies as st

rotary_dims = st.sampled_from([4, 8, 16, 32, 64, 96, 128])
thetas = st.sampled_from([10000.0, 500000.0, 1e6, 5e6]) | st.floats(100.0, 1e7)
original_lengths = st.sampled_from([256, 2048, 4096, 8192]) | st.integers(64, 16384)
scales = st.sampled_from([1, 2, 4, 8, 16, 32, 64]) | st.integers(1, 128)


def hf_config_fields(fs) -> dict:
    """The config.json keys the export writes for ``fs`` (on a Llama-like model of its shape)."""
    from longrope.models.export import longrope_config_entries
    from longrope.models.families import RopeInfo

    info = RopeInfo(model_type="llama", family="Llama", head_dim=fs.rotary_dim, rotary_dim=fs.rotary_dim,
                    rope_theta=fs.rope_theta, original_max_position_embeddings=fs.original_max_position_embeddings,
                    max_position_embeddings=fs.original_max_position_embeddings, rope_scaling=None, supported=True,
                    reason=None)
    return longrope_config_entries(fs, info)[0]
