"""``longrope.train.lora``: LoRA through peft."""

from __future__ import annotations

import warnings

import pytest

pytest.importorskip("peft")


def test_wrapping_a_model_warns_nothing(build_tiny_model):
    """finetune --lora is a default path: peft's own use of a name transformers deprecated must not reach the
    user as a FutureWarning they cannot act on."""
    from longrope.train.lora import apply_lora

    model = build_tiny_model("llama")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "v_proj"],
                             trainable=["norm"])
    assert any("lora_" in name for name, _ in wrapped.named_parameters())


def test_an_adapter_on_a_tied_lm_head_is_refused(build_tiny_model):
    """finetune --lora --lora-targets lm_head on a model with tied embeddings (the tiny one) printed 22 lines of
    peft warnings and exported a model whose logits differed from the trained one (the merge changed the shared
    embedding weight too; max logit difference 2.4 here). Refused, naming the flag (battery 7); an adapter on the
    tied embeddings merges exactly and warns nothing."""
    import torch

    from longrope.errors import ConfigError
    from longrope.train.lora import apply_lora, merge_lora

    model = build_tiny_model("llama", tie_word_embeddings=True)
    with pytest.raises(ConfigError, match="'lm_head' is the LM head, whose weight this model shares"):
        apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "lm_head"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        wrapped = apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["embed_tokens"])
    for name, p in wrapped.named_parameters():
        if "lora_embedding_B" in name:
            torch.nn.init.normal_(p, std=0.5)
    ids = torch.tensor([[5, 6, 7, 8]])
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("error")
        before = wrapped(ids).logits
        torch.testing.assert_close(merge_lora(wrapped)(ids).logits, before)


def test_a_rank_beyond_the_smallest_targeted_layer_is_refused_before_peft_allocates(build_tiny_model):
    """Battery 24b: --lora-rank 2147483647 died as 'out of memory ... use shorter sequences' (peft allocated
    rank x (in + out) per layer); any rank above min(out, in) of a layer only costs memory. Refused naming
    the flag and the smallest targeted layer; the largest rank that fits is accepted."""
    from longrope.errors import ConfigError
    from longrope.train.lora import apply_lora

    model = build_tiny_model("llama")
    k = model.model.layers[0].self_attn.k_proj.weight
    most = min(k.shape)
    with pytest.raises(ConfigError) as e:
        apply_lora(model, rank=most + 1, alpha=4.0, dropout=0.0, targets=["q_proj", "k_proj"], trainable=[])
    assert e.value.fields == ("lora_rank",) and f"rank at most {most}" in str(e.value) and "k_proj" in str(e.value)
    wrapped = apply_lora(build_tiny_model("llama"), rank=most, alpha=4.0, dropout=0.0, targets=["q_proj", "k_proj"],
                         trainable=[])
    assert any("lora_" in name for name, _ in wrapped.named_parameters())


def test_a_trainable_part_is_matched_against_the_names_peft_gives_targeted_weights(tmp_path):
    """The review of battery 25: a trainable part naming a targeted weight (o_proj.weight, which peft renames
    o_proj.base_layer.weight) passed the plan-time check and trained nothing more; the check reads a model's
    layers from its config alone (check_lora_fits)."""
    from longrope.errors import ConfigError
    from longrope.train.lora import check_lora_fits
    from tests.models.model_helpers import build_tiny, save_tiny

    phi3 = str(save_tiny(build_tiny("phi3"), tmp_path / "phi3"))
    check_lora_fits(phi3, rank=2, targets=("qkv_proj", "o_proj"), trainable=("norm",))
    with pytest.raises(ConfigError, match="its attention projections are "):
        check_lora_fits(phi3, rank=2, targets=("q_proj", "k_proj", "o_proj"))
    with pytest.raises(ConfigError, match="match no parameter"):
        check_lora_fits(phi3, rank=2, targets=("o_proj",), trainable=("o_proj.weight",))


def test_unmatched_targets_are_told_the_projections_this_family_has(build_tiny_model):
    """finetune --lora on a Phi-3 model (its default targets q_proj/k_proj/v_proj absent: Phi-3 fuses them into
    qkv_proj) was refused as "its attention projections are named e.g. q_proj, k_proj, v_proj, o_proj", the very
    names it lacks (battery 26a): the refusal names the projections the model has, and they are taken."""
    from longrope.errors import ConfigError
    from longrope.train.lora import apply_lora

    model = build_tiny_model("phi3")
    with pytest.raises(ConfigError, match="its attention projections are ") as e:
        apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["q_proj", "k_proj", "o_proj"])
    told = str(e.value).split("its attention projections are ")[1]
    assert sorted(told.split(";")[0].split(", ")) == ["o_proj", "qkv_proj"] and "q_proj, k_proj" not in str(e.value)
    wrapped = apply_lora(model, rank=2, alpha=4.0, dropout=0.0, targets=["qkv_proj", "o_proj"])
    assert any("qkv_proj.lora_A" in name for name, _ in wrapped.named_parameters())


def test_the_default_targets_are_the_attention_projections_of_the_model_s_own_layout(build_tiny_model):
    """The default (q_proj, k_proj, v_proj, o_proj: "the attention projections") was refused on Phi-3, whose first
    three are one fused qkv_proj; it now takes the model's own, as the docs say (battery 26a's open item C). Given
    targets are taken as given."""
    from longrope.train.config import LORA_ATTENTION
    from longrope.train.lora import apply_lora, targets_for

    phi3, llama = build_tiny_model("phi3"), build_tiny_model("llama")
    assert sorted(targets_for(phi3, LORA_ATTENTION)) == ["o_proj", "qkv_proj"]
    assert targets_for(llama, LORA_ATTENTION) == LORA_ATTENTION
    assert targets_for(phi3, ["o_proj"]) == ("o_proj",)
    wrapped = apply_lora(phi3, rank=2, alpha=4.0, dropout=0.0, targets=LORA_ATTENTION)
    adapted = {name.split(".lora_A")[0].rsplit(".", 1)[-1] for name, _ in wrapped.named_parameters() if ".lora_A" in name}
    assert adapted == {"qkv_proj", "o_proj"}
