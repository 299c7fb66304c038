"""Pure rescale math for RoPE (numpy only; no torch, no transformers).

The public API other packages code against: :class:`FactorSet` (a factor set and its file
format), :func:`inv_freq`, :func:`make_baseline` / :data:`BASELINES` (PI, NTK, dynamic NTK,
YaRN, llama3), :func:`rope_angles` / :func:`cos_sin` (float64 angles, exact at millions of
positions, n̂ and the attention temperature applied), attention policies and the LongRoPE2
critical dimension.
"""

from longrope.rope.angles import apply_rotary, cos_sin, reduce_angles, rope_angles
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
    "apply_rotary",
    "baseline_options",
    "cos_sin",
    "inv_freq",
    "longrope2_factors",
    "longrope_attention_factor",
    "make_baseline",
    "reduce_angles",
    "resolve_attention_factor",
    "rope_angles",
    "rotary_dim",
    "theoretical_critical_dim",
    "yarn_attention_factor",
    "yarn_correction_range",
    "yarn_extrapolation_mask",
    "yarn_linear_seed",
]
