"""The chunked LM-head loss: same value and same gradients as the full-logits loss; document masking."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from longrope.train.loss import CausalLMLoss, chunked_cross_entropy, default_loss_chunk
from tests.train.train_helpers import TINY_VOCAB


def _inputs(T=37, H=16, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(T, H, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(V, H, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randint(0, V, (T,), generator=g)
    return h, w, t


@pytest.mark.parametrize("chunk", [1, 5, 37, 100])
@pytest.mark.parametrize("softcap", [None, 3.0])
def test_chunked_loss_and_gradients_equal_the_full_logits_loss(chunk, softcap):
    transform = None if softcap is None else (lambda x: torch.tanh(x / softcap) * softcap)
    h, w, t = _inputs()
    full_logits = h @ w.t()  # [T, V]
    if transform is not None:
        full_logits = transform(full_logits)
    ref = F.cross_entropy(full_logits, t, reduction="sum")
    gh_ref, gw_ref = torch.autograd.grad(ref * 0.7, (h, w))
    ours = chunked_cross_entropy(h, w, t, chunk=chunk, transform=transform)
    gh, gw = torch.autograd.grad(ours * 0.7, (h, w))
    torch.testing.assert_close(ours.double(), ref.double(), rtol=1e-6, atol=1e-6)  # summed in float32
    torch.testing.assert_close(gh, gh_ref, rtol=1e-6, atol=1e-9)
    torch.testing.assert_close(gw, gw_ref, rtol=1e-6, atol=1e-9)


def test_gradcheck_through_the_chunked_loss():
    h, w, t = _inputs(T=6, H=4, V=7)
    assert torch.autograd.gradcheck(lambda h, w: chunked_cross_entropy(h, w, t, chunk=4).double(), (h, w),
                                    eps=1e-6, atol=1e-4)


def test_frozen_weight_gets_no_gradient():
    h, w, t = _inputs()
    w = w.detach()
    (g,) = torch.autograd.grad(chunked_cross_entropy(h, w, t, chunk=8), (h,))
    assert g.shape == h.shape and torch.isfinite(g).all()


def test_default_chunk():
    assert default_loss_chunk(4096) == 512
    assert default_loss_chunk(128_256) == 128
    assert default_loss_chunk(100) == 20_971


def test_matches_transformers_loss_and_gradients(build_tiny_model):
    """One unpacked window: our body + chunked head = ``model(input_ids, labels=...)``, gradients included."""
    model = build_tiny_model("llama").train()
    ids = torch.randint(3, TINY_VOCAB, (2, 40), generator=torch.Generator().manual_seed(1))
    ref = model(input_ids=ids, labels=ids).loss  # mean over the 2 x 39 shifted targets
    ref_grads = torch.autograd.grad(ref, list(model.parameters()))
    wrapper = CausalLMLoss(model, chunk=16)
    targets = torch.full_like(ids, -100)
    targets[:, :-1] = ids[:, 1:]
    pos = torch.arange(40).expand(2, 40)
    loss, nll = wrapper(ids, pos, targets, scale=1.0 / 78)
    grads = torch.autograd.grad(loss, list(model.parameters()))
    torch.testing.assert_close(loss, ref, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(nll / 78, ref.detach(), rtol=1e-5, atol=1e-6)
    for g, r in zip(grads, ref_grads):
        torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-6)


def _nll_of(wrapper, ids, pos, targets):
    with torch.no_grad():
        return float(wrapper(ids, pos, targets)[1])


def test_packed_documents_do_not_see_each_other(build_tiny_model):
    """A document's loss in a packed window does not depend on the other document, and equals its loss alone."""
    model = build_tiny_model("llama").eval()
    wrapper = CausalLMLoss(model, chunk=8)
    g = torch.Generator().manual_seed(2)
    doc_a = torch.randint(3, TINY_VOCAB, (20,), generator=g)
    doc_a2 = torch.randint(3, TINY_VOCAB, (20,), generator=g)
    doc_b = torch.randint(3, TINY_VOCAB, (12,), generator=g)
    pos = torch.cat([torch.arange(20), torch.arange(12)])[None]  # [1, 32]
    b_targets = torch.full((1, 32), -100)
    b_targets[0, 20:31] = doc_b[1:]  # score document b only
    packed = _nll_of(wrapper, torch.cat([doc_a, doc_b])[None], pos, b_targets)
    other = _nll_of(wrapper, torch.cat([doc_a2, doc_b])[None], pos, b_targets)
    alone_targets = torch.full((1, 12), -100)
    alone_targets[0, :11] = doc_b[1:]
    alone = _nll_of(wrapper, doc_b[None], torch.arange(12)[None], alone_targets)
    assert packed == pytest.approx(other, rel=1e-6) and packed == pytest.approx(alone, rel=1e-6)
    # Without restarting positions the documents would attend to each other: the check has teeth.
    joined = _nll_of(wrapper, torch.cat([doc_a, doc_b])[None], torch.arange(32)[None], b_targets)
    joined2 = _nll_of(wrapper, torch.cat([doc_a2, doc_b])[None], torch.arange(32)[None], b_targets)
    assert abs(joined - joined2) > 1e-4


def test_bf16_autocast_is_close_to_float32(build_tiny_model):
    model = build_tiny_model("llama").eval()
    wrapper = CausalLMLoss(model, chunk=16)
    ids = torch.randint(3, TINY_VOCAB, (1, 48), generator=torch.Generator().manual_seed(3))
    targets = torch.full_like(ids, -100)
    targets[:, :-1] = ids[:, 1:]
    pos = torch.arange(48)[None]
    loss32, _ = wrapper(ids, pos, targets, 1 / 47)
    (g32,) = torch.autograd.grad(loss32, [model.lm_head.weight])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss16, _ = wrapper(ids, pos, targets, 1 / 47)
    (g16,) = torch.autograd.grad(loss16, [model.lm_head.weight])
    assert loss16.dtype == torch.float32 and g16.dtype == torch.float32
    assert float(loss16.detach()) == pytest.approx(float(loss32.detach()), rel=2e-2)
    assert float(F.cosine_similarity(g16.flatten(), g32.flatten(), dim=0)) > 0.99
