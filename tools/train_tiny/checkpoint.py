"""Checkpoints of a training run: one ``.safetensors`` file, never a pickle.

The model's and the optimizer's tensors, plus a JSON document in the safetensors header metadata
(format tag, config and fingerprint, step, elapsed time, training log, the numpy generator's state
and the optimizer's hyper-parameters). A checkpoint from before this format (a ``torch.save``
pickle, ``.pt``) is refused with a one-line message, never unpickled.
"""

from __future__ import annotations

import json
from pathlib import Path

from longrope.errors import ConfigError, UserError
from longrope.io import atomic_write

CHECKPOINT_FORMAT = "longrope-train-tiny-checkpoint"
CHECKPOINT_VERSION = 1
_MODEL_PREFIX = "model."
_OPT_PREFIX = "optimizer."


def save_checkpoint(path: Path, model, opt, state: dict) -> Path:
    """Write model + optimizer tensors and the JSON-able ``state`` atomically to ``path``.

    ``state`` holds plain JSON values (config, fingerprint, step, log, rng state, elapsed time).
    Tensors are cloned: a tied embedding shares storage with the LM head, which safetensors
    (rightly) refuses to write twice; loading copies the same values into both.
    """
    import torch
    from safetensors.torch import save

    tensors = {_MODEL_PREFIX + k: v.detach().to("cpu").clone().contiguous() for k, v in model.state_dict().items()}
    opt_state = opt.state_dict()
    scalars: dict[str, dict] = {}
    for idx, entry in opt_state["state"].items():
        for key, value in entry.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{_OPT_PREFIX}{idx}.{key}"] = value.detach().to("cpu").clone().contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    doc = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **state,
           "optimizer": {"param_groups": opt_state["param_groups"], "scalars": scalars}}
    blob = save(tensors, metadata={"longrope": json.dumps(doc)})
    return atomic_write(path, lambda f: f.write(blob), mode="wb")


def _is_pickle(head: bytes) -> bool:
    """``torch.save`` output: a zip archive (PyTorch ≥ 1.6) or a bare pickle (protocol 2+)."""
    return head.startswith(b"PK\x03\x04") or head[:1] == b"\x80"


def load_checkpoint(path: Path, *, what: str) -> tuple[dict, dict]:
    """``(tensors, state)`` of a checkpoint written by :func:`save_checkpoint`; never unpickles.

    ``what`` names the file in messages ("--init-from" or "checkpoint"). Old pickle checkpoints,
    other files and damaged ones are a one-line :class:`UserError` saying what to do.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    try:
        with open(path, "rb") as f:
            head = f.read(16)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot read it ({e.strerror or e})") from None
    if _is_pickle(head):
        raise UserError(f"{what} {path} is an old pickle-format checkpoint (.pt), which longrope no longer loads "
                        "because unpickling a file can run code; re-create it with this version of train-tiny "
                        "(it writes .safetensors checkpoints), or delete it / pass --no-resume to start over")
    try:
        tensors = {}
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
            for k in f.keys():
                tensors[k] = f.get_tensor(k)
        state = json.loads(meta["longrope"])
    except (SafetensorError, OSError, KeyError, ValueError) as e:
        first = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} {path} is not a train-tiny checkpoint ({first}); give a .safetensors checkpoint "
                        "written by train-tiny") from None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT \
            or state.get("version") != CHECKPOINT_VERSION:
        raise UserError(f"{what} {path} is not a version-{CHECKPOINT_VERSION} train-tiny checkpoint; give one "
                        "written by this version of train-tiny")
    missing = [k for k in ("fingerprint", "step", "log") if k not in state]
    if missing:
        raise UserError(f"{what} {path} lacks {', '.join(missing)}; it is damaged, re-create it")
    return tensors, state


def load_model_tensors(model, tensors: dict, path: Path, what: str) -> None:
    weights = {k[len(_MODEL_PREFIX):]: v for k, v in tensors.items() if k.startswith(_MODEL_PREFIX)}
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:160]
        raise UserError(f"{what} {path} does not fit this model's shape ({first}); use the same --hidden-size, "
                        "--num-layers, --num-heads, --intermediate-size and --vocab-size as the run that wrote it") \
            from None


def load_optimizer(opt, tensors: dict, state: dict, path: Path) -> None:
    saved = state.get("optimizer") or {}
    groups = saved.get("param_groups")
    if not isinstance(groups, list):
        raise ConfigError("resume", f"checkpoint {path} has no optimizer state; it is damaged, delete it or pass {{name}}")
    for g in groups:
        if isinstance(g.get("betas"), list):
            g["betas"] = tuple(g["betas"])  # JSON has no tuples; AdamW writes them as one
    per: dict[int, dict] = {}
    for k, v in tensors.items():
        if k.startswith(_OPT_PREFIX):
            idx, key = k[len(_OPT_PREFIX):].split(".", 1)
            per.setdefault(int(idx), {})[key] = v
    for idx, entry in (saved.get("scalars") or {}).items():
        per.setdefault(int(idx), {}).update(entry)
    try:
        opt.load_state_dict({"state": per, "param_groups": groups})
    except (ValueError, KeyError, RuntimeError) as e:
        raise UserError(f"checkpoint {path}: optimizer state does not fit this model ({e}); delete it or pass "
                        "--no-resume") from None
