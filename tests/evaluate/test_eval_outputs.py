"""Result files and plots: JSON/CSV rows, PNGs that open, bf16 models."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from longrope.evaluate import evaluate_perplexity
from longrope.evaluate.passkey import PasskeyResult, PasskeyTrial
from longrope.evaluate.plots import plot_passkey_heatmap, plot_ppl_vs_length
from longrope.evaluate.suite import write_passkey_outputs, write_ppl_outputs
from tests.evaluate.eval_helpers import tiny_llama


def _png_ok(path):
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000


def test_ppl_outputs(tmp_path, llama, rng):
    docs = [rng.integers(3, 97, size=80) for _ in range(2)]
    results = [(name, evaluate_perplexity(llama, docs, n, bos_id=1)) for name in ("none", "yarn") for n in (32, 64)]
    paths = write_ppl_outputs(tmp_path, results, {"model": "x"}, original_length=48)
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 4 and rows[0]["factors"] == "none" and rows[0]["mode"] == "truncate"
    assert float(rows[1]["ppl"]) == pytest.approx(math.exp(float(rows[1]["nll_sum"]) / int(rows[1]["n_tokens"])))
    data = json.loads(paths["json"].read_text())
    assert data["config"] == {"model": "x"} and len(data["results"][0]["per_doc"]) == 2
    _png_ok(paths["png"])


def test_passkey_outputs_and_heatmap_with_gaps(tmp_path):
    trials = [PasskeyTrial(n, d, k, 12345, (n + k) % 2 == 0) for n in (128, 256) for d in (0.0, 1.0) for k in range(2)]
    paths = write_passkey_outputs(tmp_path, [("none", PasskeyResult("generate", trials[:-2])),
                                             ("long rope/x", PasskeyResult("generate", trials))], {})
    rows = list(csv.DictReader(open(paths["csv"])))
    assert len(rows) == 3 + 4 and {r["factors"] for r in rows} == {"none", "long rope/x"}
    _png_ok(paths["png:none"])  # a missing cell (256, 1.0) is drawn blank
    assert paths["png:long rope/x"].name == "passkey_long_rope_x.png"


def test_plots_direct(tmp_path):
    plot_ppl_vs_length({"a": [(1024, 5.0), (4096, 500.0)], "b": [(1024, 6.0), (4096, float("nan"))]},
                       tmp_path / "p.png")
    _png_ok(tmp_path / "p.png")
    plot_passkey_heatmap([{"length": 64, "depth": 0.5, "accuracy": 1.0}], tmp_path / "h.png")
    _png_ok(tmp_path / "h.png")


def test_bfloat16_model_close_to_float32(rng):
    import torch

    m32 = tiny_llama(seed=4)
    m16 = tiny_llama(seed=4).to(torch.bfloat16)
    docs = [rng.integers(3, 97, size=100)]
    a = evaluate_perplexity(m32, docs, 96, bos_id=1)
    b = evaluate_perplexity(m16, docs, 96, bos_id=1)
    assert np.isfinite(b.nll_sum) and b.mean_nll == pytest.approx(a.mean_nll, rel=3e-2)
