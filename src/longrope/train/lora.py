"""Optional LoRA through peft, LongLoRA style: adapters on the attention projections, plus embeddings
and norms trained fully (LongLoRA, arXiv 2309.12307: "trainable embedding and normalization layers"
are what make low-rank long-context adaptation work).

The adapters are merged into the weights before export (:func:`merge_lora`), so the exported folder is
a plain model that stock transformers loads without peft.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

from torch import nn

from longrope.errors import ConfigError

__all__ = ["apply_lora", "check_lora_fits", "merge_lora", "targets_for", "trainable_summary"]


def apply_lora(model: nn.Module, *, rank: int, alpha: float, dropout: float, targets: Sequence[str],
               trainable: Sequence[str] = ()) -> nn.Module:
    """Wrap ``model`` in a peft LoRA model; parameters whose name contains one of ``trainable`` train fully.

    Unknown ``targets`` (no module of that name) → :class:`ConfigError` on ``lora_targets``. Adapter
    weights are drawn from torch's generator, which the loop seeds first.
    """
    from peft import LoraConfig, get_peft_model

    targets = targets_for(model, targets)
    _check_fit(model, int(rank), targets, trainable)
    config = LoraConfig(r=int(rank), lora_alpha=float(alpha), lora_dropout=float(dropout),
                        target_modules=list(targets), bias="none", task_type="CAUSAL_LM")
    try:
        with warnings.catch_warnings():  # peft reads transformers' renamed property; nothing a user can change
            warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.* is deprecated",
                                    category=FutureWarning)
            # an adapter on tied embeddings (the head is refused above): merged exactly, nothing to set
            warnings.filterwarnings("ignore", message=".*`tie_word_embeddings=True`", category=UserWarning)
            peft_model = get_peft_model(model, config)
    except ValueError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else "no module matched"
        raise ConfigError("lora_targets", "{name} " + f"{list(targets)} do not fit this model: {first}") from None
    for name, p in peft_model.named_parameters():
        if "lora_" not in name and any(part in name for part in trainable):
            p.requires_grad_(True)
    return peft_model


def check_lora_fits(model_name: str, *, rank: int, targets: Sequence[str], trainable: Sequence[str] = ()) -> None:
    """What :func:`apply_lora` checks of its settings against a model, from the model's config alone (its layers
    built on the meta device: no weights read): a pipeline's fine-tuning stage with a rank beyond a layer's size or
    targets that name no module was refused only when the stage loaded its model, after every stage before it had
    run (battery 24b's open item)."""
    import torch
    from transformers import AutoModelForCausalLM

    from longrope.models.loading import load_config

    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(load_config(model_name))
    _check_fit(skeleton, int(rank), targets_for(skeleton, targets), trainable)


def targets_for(model: nn.Module, targets: Sequence[str]) -> tuple[str, ...]:
    """The modules that get adapters: ``targets``, or, when they are the default (the attention projections as the
    Llama layout names them) and ``model`` names its projections otherwise, its own (Phi-3: qkv_proj, o_proj). The
    default means "the attention projections" (docs/finetune.md); on Phi-3 it was refused (battery 26a)."""
    from longrope.train.config import LORA_ATTENTION

    targets = tuple(targets)
    if targets != LORA_ATTENTION:
        return targets
    names = [name for name, _ in model.named_modules()]
    if all(any(n == t or n.endswith("." + t) for n in names) for t in targets):
        return targets
    return tuple(_attention_projections(model)) or targets


def _check_fit(model: nn.Module, rank: int, targets: Sequence[str], trainable: Sequence[str]) -> None:
    """The LoRA settings against ``model``'s modules: the tied head, the rank, each target matching a module (as
    peft matches a list: the module's name or its last parts) and ``trainable`` matching a parameter."""
    _refuse_tied_head(model, targets)
    _refuse_rank_beyond_layers(model, rank, targets)
    # every target must name a module (peft needs only one): Phi-3's fused qkv_proj left the default's o_proj
    # alone matching, and adapters on o_proj only, without a word, are not the LongLoRA recipe the user asked for
    names = [name for name, _ in model.named_modules()]
    unmatched = [t for t in targets if not any(n == t or n.endswith("." + t) for n in names)]
    if unmatched:
        projections = _attention_projections(model)
        named = (f"its attention projections are {', '.join(projections)}; give "
                 + "{name} " + ",".join(projections)) if projections else "give module names it has"
        raise ConfigError("lora_targets", "{name} " + f"{unmatched} match no module of this model ({named})")
    targeted = {n for n in names if any(n == t or n.endswith("." + t) for t in targets)}
    if trainable and not any(part in name for name in _names_once_wrapped(model, targeted) for part in trainable):
        raise ConfigError("lora_trainable", "{name} " + f"{list(trainable)} match no parameter of this model")


def _names_once_wrapped(model: nn.Module, targeted: set[str]) -> list[str]:
    """The parameter names of ``model`` as peft renames them once the ``targeted`` modules hold adapters
    (``q_proj.weight`` becomes ``q_proj.base_layer.weight``), adapters aside: what ``trainable`` is matched
    against."""
    names = []
    for name, _ in model.named_parameters():
        module, _, leaf = name.rpartition(".")
        names.append(f"{module}.base_layer.{leaf}" if module in targeted else name)
    return names


def _attention_projections(model: nn.Module) -> list[str]:
    """The last names of the linear layers inside the model's attention blocks, in module order (Llama's q_proj,
    k_proj, v_proj, o_proj; Phi-3's fused qkv_proj and o_proj): what a refused ``lora_targets`` is told to name."""
    found: list[str] = []
    for name, module in model.named_modules():
        parts = name.split(".")
        if isinstance(module, nn.Linear) and len(parts) > 1 and "attn" in parts[-2] and parts[-1] not in found:
            found.append(parts[-1])
    return found


def _refuse_tied_head(model: nn.Module, targets: Sequence[str]) -> None:
    """An adapter on an LM head that shares its weight with the token embeddings is merged into that shared
    weight at export, which changes the embeddings too: the exported model would not be the one trained."""
    head, embed = model.get_output_embeddings(), model.get_input_embeddings()
    if head is None or embed is None or head.weight is not embed.weight:
        return
    names = [n for n, m in model.named_modules() if m is head]
    for t in targets:
        if any(n == t or n.endswith("." + t) for n in names):
            raise ConfigError(("lora_targets", "lora_trainable"),
                              "{name0} " + f"{t!r} is the LM head, whose weight this model shares with its token "
                              "embeddings: merging its adapter at export would change the embeddings too, so the "
                              "exported model would not be the one trained; leave it out of {name0} ({name1} "
                              f"{t} trains it fully)")


def _refuse_rank_beyond_layers(model: nn.Module, rank: int, targets: Sequence[str]) -> None:
    """An adapter's update B·A of an ``out x in`` layer has rank at most ``min(out, in)``: a larger ``rank`` only
    costs memory (rank x (in + out) per layer; an absurd one dies as out of memory blaming the sequences)."""
    sizes = [(min(m.weight.shape), name, tuple(m.weight.shape)) for name, m in model.named_modules()
             if any(name == t or name.endswith("." + t) for t in targets) and getattr(m, "weight", None) is not None
             and m.weight.ndim == 2]
    if sizes and rank > min(sizes)[0]:
        most, name, shape = min(sizes)
        raise ConfigError("lora_rank", "{name} " + f"{rank} exceeds the size of {name!r} ({shape[0]} x {shape[1]}), "
                          f"whose update has rank at most {most}; give " + "{name} " + f"{most} or less")


def merge_lora(model: nn.Module) -> nn.Module:
    """The base model with the adapters added into its weights (peft ``merge_and_unload``)."""
    with warnings.catch_warnings():  # an adapter on tied embeddings merges exactly (a tied head is refused)
        warnings.filterwarnings("ignore", message=".*`tie_word_embeddings=True`", category=UserWarning)
        return model.merge_and_unload()


def trainable_summary(model: nn.Module) -> tuple[int, int]:
    """``(trainable, total)`` parameter counts (tied weights counted once)."""
    seen: set[int] = set()
    trainable = total = 0
    for p in model.parameters():
        if id(p) in seen:
            continue
        seen.add(id(p))
        total += p.numel()
        if p.requires_grad:
            trainable += p.numel()
    return trainable, total
