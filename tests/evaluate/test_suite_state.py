"""The factor switch of the suites must not depend on what was installed before it ran."""

from __future__ import annotations

import numpy as np
import torch

from longrope.evaluate.suite import factor_switch, ppl_suite
from longrope.models import current_patch, install_factors
from longrope.rope import make_baseline


def _pi(model, target):
    cfg = model.config
    head = cfg.hidden_size // cfg.num_attention_heads
    return make_baseline("pi", rope_theta=cfg.rope_parameters["rope_theta"], rotary_dim=head,
                         original_length=cfg.max_position_embeddings, target_length=target)


def test_none_means_the_models_own_rope_even_with_an_outside_patch(llama):
    rng = np.random.default_rng(0)
    docs = [rng.integers(3, llama.config.vocab_size, size=600) for _ in range(2)]
    length = 2 * llama.config.max_position_embeddings
    ((_, clean),) = ppl_suite(llama, docs, [("none", None)], [length], bos_id=1)

    pi = _pi(llama, length)
    patch = install_factors(llama, pi)  # e.g. left behind by a search
    try:
        results = dict(ppl_suite(llama, docs, [("none", None), ("pi", pi)], [length], bos_id=1))
        torch.testing.assert_close(results["none"].nll_sum, clean.nll_sum, rtol=1e-6, atol=1e-6)
        assert abs(results["pi"].nll_sum - clean.nll_sum) > 1e-3  # PI really changes the model
        # On exit the model runs with what it ran with before: the outside patch's factors.
        assert current_patch(llama) is patch and patch.active and patch.factor_set is pi
    finally:
        patch.restore()


def test_switch_installed_inside_is_removed_at_exit(llama):
    pi = _pi(llama, 4 * llama.config.max_position_embeddings)
    with factor_switch(llama, [("pi", pi)]) as use:
        use(pi)
        assert current_patch(llama).active
    assert not current_patch(llama).active
