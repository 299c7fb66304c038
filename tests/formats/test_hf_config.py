"""``longrope.formats.hf_config``: the one reader of a Hugging Face config's RoPE part, shared by the model
facts (``RopeInfo``) and the factors a config carries (``FactorSet.from_hf_config``)."""

from __future__ import annotations

import types

import pytest

from longrope.errors import UserError
from longrope.formats import hf_config

PHI3 = {
    "model_type": "phi3", "hidden_size": 96, "num_attention_heads": 2, "partial_rotary_factor": 0.5,
    "max_position_embeddings": 1024, "original_max_position_embeddings": 256, "rope_theta": 10000.0,
    "rope_scaling": {"type": "longrope", "long_factor": [2.0] * 12, "short_factor": [1.0] * 12},
}


def test_a_dict_and_a_config_object_read_the_same():
    obj = types.SimpleNamespace(**PHI3)
    for config in (PHI3, obj):
        params = hf_config.rope_parameters(config)
        assert hf_config.rope_type(params) == "longrope"
        assert hf_config.head_dim(config) == 48
        assert hf_config.partial_rotary_factor(config, params) == 0.5
        assert hf_config.rope_theta(config, params) == 10000.0
        assert hf_config.original_length(config, params) == 256
        assert hf_config.rotary_dim_of(config, params, "c") == 24
    assert hf_config.rope_parameters({"model_type": "gpt2"}) is None


@pytest.mark.parametrize("kind, expected", [("longrope", 4096), ("su", 4096), ("yarn", 2048), ("llama3", 2048),
                                            ("linear", None)])
def test_original_length_one_rule_per_rope_type(kind, expected):
    """LongRoPE: the top-level L wins (transformers); llama3/yarn: the rope dict's; others: none."""
    config = {"original_max_position_embeddings": 4096, "rope_theta": 1e4}
    params = {"rope_type": kind, "original_max_position_embeddings": 2048}
    assert hf_config.original_length(config, params) == expected


def test_the_model_facts_and_the_factor_set_agree_on_a_config():
    from longrope.models.families import rope_info_from_config
    from longrope.rope import FactorSet

    config = {**PHI3, "original_max_position_embeddings": None,
              "rope_scaling": {**PHI3["rope_scaling"], "original_max_position_embeddings": 256}}
    info = rope_info_from_config(types.SimpleNamespace(**config))
    fs = FactorSet.from_hf_config(config)
    assert (info.rotary_dim, info.rope_theta, info.original_max_position_embeddings) == (
        fs.rotary_dim, fs.rope_theta, fs.original_max_position_embeddings) == (24, 10000.0, 256)


def test_longrope_fields_refuse_a_config_without_longrope():
    with pytest.raises(UserError, match="has no longrope rope scaling"):
        hf_config.longrope_fields({"rope_scaling": {"type": "linear", "factor": 2.0}})


def test_a_published_config_of_another_scaling_given_as_factors_is_told_the_fix():
    """eval --factors QWEN2_YARN/config.json (a published config whose scaling is yarn, not longrope) ended at
    "...; nothing to load", naming no way on (battery 26a): the refusal says what to give instead."""
    with pytest.raises(UserError, match=r"\(rope type: yarn\); nothing to load: give a factors\.json instead "
                                        r"\('longrope baseline --model MODEL --method") as e:
        hf_config.longrope_fields({"rope_scaling": {"rope_type": "yarn", "factor": 4.0}})
    assert "\n" not in str(e.value)
