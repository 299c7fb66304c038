"""Pure rescale math for RoPE (numpy only; no torch, no transformers).

The public API other packages code against: :class:`FactorSet` (a factor set and its file
format), :func:`inv_freq`, :func:`make_baseline` / :data:`BASELINES` (PI, NTK, dynamic NTK,
YaRN, llama3), attention policies and the LongRoPE2 critical dimension. (A float64 oracle of the
rotary angles, for tests, is ``tests/rope/rope_angles.py``.)
"""

from longrope.rope.attention import (
    ATTENTION_POLICIES,
    longrope_attention_factor,
    resolve_attention_factor,
    yarn_attention_factor,
)
from longrope.rope.baselines import (
    BASELINES,
    baseline_options,
    make_baseline,
    yarn_correction_range,
    yarn_extrapolation_mask,
    yarn_linear_seed,
)
from longrope.rope.critical import longrope2_factors, theoretical_critical_dim
from longrope.rope.factors import FORMAT_VERSION, FactorSet
from longrope.rope.frequencies import inv_freq, rotary_dim

__all__ = [
    "ATTENTION_POLICIES",
    "BASELINES",
    "FORMAT_VERSION",
    "FactorSet",
    "baseline_options",
    "inv_freq",
    "longrope2_factors",
    "longrope_attention_factor",
    "make_baseline",
    "resolve_attention_factor",
    "rotary_dim",
    "theoretical_critical_dim",
    "yarn_attention_factor",
    "yarn_correction_range",
    "yarn_extrapolation_mask",
    "yarn_linear_seed",
]
