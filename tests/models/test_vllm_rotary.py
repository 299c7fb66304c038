"""vLLM's own LongRoPE rotary code computes our cos/sin from an exported config (slow, opt-in).

vLLM cannot be installed here (CUDA build, dozens of dependencies), but its rotary class is plain
torch. Point ``LONGROPE_VLLM_WHEEL`` at a vLLM wheel (``pip download vllm --no-deps -d DIR``; 0.33.0
was checked): the test reads ``phi3_long_rope_scaled_rope.py`` and ``rotate_neox`` from the wheel,
stands in for the two vLLM imports it needs (``get_current_vllm_config`` → an object holding
``max_model_len``, ``init_logger`` → ``logging.getLogger``), reads the exported config with stock
transformers, picks the keys the way vLLM's ``get_rope`` does for ``rope_type == "longrope"``
(short/long factors, original_max_position_embeddings, short_mscale/long_mscale) and compares
vLLM's cos/sin table with the patched model's, for ``max_model_len`` above L (long factors) and
at L (short factors).
"""

from __future__ import annotations

import ast
import logging
import os
import sys
import types
import zipfile

import numpy as np
import pytest
import torch

from longrope.models import export_hf, inspect_model, install_factors
from longrope.rope import FactorSet
from tests.models.model_helpers import TINY_L, build_tiny

WHEEL = os.environ.get("LONGROPE_VLLM_WHEEL")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not WHEEL or not os.path.isfile(WHEEL), reason="set LONGROPE_VLLM_WHEEL to a vLLM wheel"),
]
ROTARY = "vllm/model_executor/layers/rotary_embedding/"


def _vllm_rotary_class(monkeypatch, max_model_len: int):
    with zipfile.ZipFile(WHEEL) as wheel:
        source = wheel.read(ROTARY + "phi3_long_rope_scaled_rope.py").decode()
        common = wheel.read(ROTARY + "common.py").decode()
    rotate = next(n for n in ast.parse(common).body if isinstance(n, ast.FunctionDef) and n.name == "rotate_neox")
    package = types.ModuleType("vllm_rotary_under_test")
    package.__path__ = []
    common_mod = types.ModuleType("vllm_rotary_under_test.common")
    common_mod.torch = torch
    exec(compile(ast.Module([rotate], []), "common.py", "exec"), common_mod.__dict__)
    config = types.SimpleNamespace(model_config=types.SimpleNamespace(max_model_len=max_model_len))
    vllm_config = types.ModuleType("vllm.config")
    vllm_config.get_current_vllm_config = lambda: config
    vllm_logger = types.ModuleType("vllm.logger")
    vllm_logger.init_logger = logging.getLogger
    for name, module in (("vllm", types.ModuleType("vllm")), ("vllm.config", vllm_config),
                         ("vllm.logger", vllm_logger), (package.__name__, package), (common_mod.__name__, common_mod)):
        monkeypatch.setitem(sys.modules, name, module)
    module = types.ModuleType("vllm_rotary_under_test.phi3")
    module.__package__ = package.__name__
    exec(compile(source, "phi3_long_rope_scaled_rope.py", "exec"), module.__dict__)
    return module.Phi3LongRoPEScaledRotaryEmbedding


@pytest.mark.parametrize("family", ["llama", "phi3"])
def test_vllm_cos_sin_from_our_export_equal_ours(family, tmp_path, monkeypatch):
    from transformers import AutoConfig

    model = build_tiny(family)
    info = inspect_model(model)
    half = info.rotary_dim // 2
    fs = FactorSet(long_factor=np.linspace(1, 5, half), short_factor=np.linspace(1, 1.3, half), attention_factor=1.083,
                   original_max_position_embeddings=TINY_L, max_position_embeddings=4 * TINY_L,
                   rope_theta=info.rope_theta)
    out = export_hf(model, None, fs, tmp_path / "m").path
    config = AutoConfig.from_pretrained(out)
    params = config.rope_parameters  # what vLLM reads (rope_scaling takes precedence in the file)
    assert params["rope_type"] == "longrope"
    mscale = {k: v for k, v in params.items() if k in ("short_mscale", "long_mscale")}
    assert mscale == {"short_mscale": 1.083, "long_mscale": 1.083}  # else vLLM would use its default m
    patch = install_factors(model, fs)
    positions = torch.arange(4 * TINY_L)[None]
    for max_model_len, mode in ((4 * TINY_L, "long"), (TINY_L, "switch")):
        rope_cls = _vllm_rotary_class(monkeypatch, max_model_len)
        rope = rope_cls(info.head_dim, info.rotary_dim, config.max_position_embeddings,
                        params["original_max_position_embeddings"], params["rope_theta"], True, torch.float32,
                        params["short_factor"], params["long_factor"], **mscale)
        assert rope.use_long_rope is (mode == "long")
        table = rope.long_short_cos_sin_cache  # rows: L short ones, then L' long ones; cat(cos, sin) each
        n = 4 * TINY_L if mode == "long" else TINY_L
        rows = table[TINY_L: TINY_L + n] if mode == "long" else table[:n]
        patch.mode = mode
        cos, sin = patch.module(torch.zeros(1, n, 4), positions[:, :n])
        torch.testing.assert_close(rows[:, :half], cos[0, :, :half], atol=2e-5, rtol=1e-5)
        torch.testing.assert_close(rows[:, half:], sin[0, :, :half], atol=2e-5, rtol=1e-5)
