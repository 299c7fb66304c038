"""``FinetuneConfig``: documented fields, value checks that name the field, the JSON round trip."""

from __future__ import annotations

import dataclasses
import json

import pytest

from longrope.errors import ConfigError
from longrope.train import ACCELERATE_CONFIGS, FinetuneConfig, accelerate_config
from longrope.train.config import TRAJECTORY_FIELDS

REQUIRED = dict(model="tiny", factors="f.json", data="shards", output="out")


def test_every_field_is_documented():
    for f in dataclasses.fields(FinetuneConfig):
        assert len(f.metadata.get("help", "")) > 10, f.name


@pytest.mark.parametrize("field,value,match", [
    ("steps", 0, r"steps must be an integer in \[1, "),
    ("steps", 10**400, "steps must be an integer in .*, got an integer of 401 digits"),
    ("seq_len", 1 << 40, "seq_len must be an integer in"),
    ("seed", -1, "seed must be an integer in"),
    ("seq_len", 1, "seq_len must be >= 2"),
    ("short_share", 1.5, r"short_share must be in \[0, 1\]"),
    ("learning_rate", 0.0, "learning_rate must be a finite number > 0"),
    ("lr_schedule", "step", "lr_schedule must be one of linear, cosine, constant"),
    ("dtype", "int8", "dtype must be one of"),
    ("tokens_per_step", 0, "tokens_per_step must be an integer in"),
    ("max_grad_norm", -1.0, "max_grad_norm must be a finite number >= 0"),
    ("max_grad_norm", float("inf"), "max_grad_norm must be a finite number >= 0, got inf"),  # said "must be >= 0"
    ("model", "", "model is required"),
])
def test_bad_values_name_the_field(field, value, match):
    with pytest.raises(ConfigError, match=match) as e:
        FinetuneConfig(**{**REQUIRED, field: value})
    assert field in e.value.fields


def test_warmup_beyond_the_run_is_refused():
    with pytest.raises(ConfigError, match=r"warmup_steps must be in \[0, steps\]"):
        FinetuneConfig(**REQUIRED, steps=10, warmup_steps=11)


@pytest.mark.parametrize("field,value", [("lora_rank", 4), ("lora_alpha", 32.0), ("lora_targets", ["q_proj"])])
def test_a_lora_setting_without_lora_is_refused_not_ignored(field, value):
    with pytest.raises(ConfigError, match=f"{field} applies to LoRA training; add lora") as e:
        FinetuneConfig(**REQUIRED, **{field: value})
    assert e.value.fields == (field, "lora")
    FinetuneConfig(**REQUIRED, lora=True, **{field: value})  # with LoRA on it is taken
    FinetuneConfig(**REQUIRED, lora_targets=["q_proj", "k_proj", "v_proj", "o_proj"])  # the default, from JSON


@pytest.mark.parametrize("given,fields", [(dict(short_length=128), ("short_length", "short_share")),
                                          (dict(short_share=1.0, passkey_share=0.5), ("passkey_share", "short_share"))])
def test_a_setting_of_steps_that_never_happen_is_refused_not_ignored(given, fields):
    """finetune --short-length S without --short-share (no short step), or --passkey-share with --short-share 1 (no long
    step to hold passkey rows), trained as if the flag were not there (battery 20c)."""
    with pytest.raises(ConfigError) as e:
        FinetuneConfig(**REQUIRED, **given)
    assert e.value.fields == fields
    FinetuneConfig(**REQUIRED, **{**given, "short_share": 0.5})  # with steps of that kind it is taken


def test_json_round_trip_and_trajectory_fields():
    cfg = FinetuneConfig(**REQUIRED, lora=True, lora_targets=("q_proj",), exclude=("a", "b"))
    again = FinetuneConfig(**json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    assert {"learning_rate", "seq_len", "short_share", "seed", "tokens_per_step"} <= set(TRAJECTORY_FIELDS)
    assert not {"resume", "quiet", "output", "checkpoint_every"} & set(TRAJECTORY_FIELDS)


def test_command_line_derives_from_the_fields():
    """The CLI layer's generator (longrope.options) builds flags from this dataclass and back."""
    import argparse

    from longrope.options import add_options, config_from_args

    parser = argparse.ArgumentParser()
    add_options(parser, FinetuneConfig)
    args = parser.parse_args(["--model", "tiny", "--factors", "f.json", "--data", "d", "-o", "out", "--seq-len",
                              "2048", "--short-share", "0.2", "--lora", "--lora-targets", "q_proj,v_proj"])
    cfg = config_from_args(FinetuneConfig, args)
    assert (cfg.seq_len, cfg.short_share, cfg.lora, cfg.lora_targets) == (2048, 0.2, True, ("q_proj", "v_proj"))


def test_shipped_accelerate_configs_exist():
    import yaml

    for name in ACCELERATE_CONFIGS:
        data = yaml.safe_load(accelerate_config(name).read_text())
        assert data["compute_environment"] == "LOCAL_MACHINE" and data["num_processes"] >= 2
    assert yaml.safe_load(accelerate_config("fsdp").read_text())["fsdp_config"]["fsdp_version"] == 2


def test_a_precision_takes_the_names_every_command_takes():
    """finetune refused ``--dtype fp32`` and ``--export-dtype bf16`` while search, eval and export take them
    (battery 11b's note): one reading of a precision's name (settings.dtype_name), recorded as its canonical name."""
    cfg = FinetuneConfig(**REQUIRED, dtype="fp32", export_dtype="BF16")
    assert (cfg.dtype, cfg.export_dtype) == ("float32", "bfloat16")
    assert FinetuneConfig(**REQUIRED).dtype == "auto" and FinetuneConfig(**REQUIRED).export_dtype is None
    with pytest.raises(ConfigError, match="export_dtype must be one of float32, bfloat16, float16 "):
        FinetuneConfig(**REQUIRED, export_dtype="auto")
