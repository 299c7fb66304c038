"""Memory: refuse lengths no machine of this size can evaluate, and turn an allocation failure into one line.

Two guards, one before and one during an evaluation:

- :func:`check_lengths_fit` (before the weights are read): a *lower bound* of the memory one
  sequence of ``n`` tokens needs — what is certainly alive at once in a forward pass: the residual
  stream and one layer's output (``2 · hidden`` values per token), the cos/sin tables
  (``2 · rotary_dim``), and with the KV cache (greedy decoding) the keys and values of every layer
  (``2 · layers · kv_heads · head_dim``) — against the device's *total* memory. Weights, attention
  scratch, MLP activations and logits come on top, so a length this refuses can never run there; a
  length it lets through may still not fit, which the second guard reports.
- :func:`out_of_memory` (during): an allocation failure (torch's out-of-memory error, the CPU
  allocator's "can't allocate memory", numpy's ``MemoryError``) becomes a one-line
  :class:`~longrope.errors.UserError` naming the length, instead of a long traceback.

Config facts only (``hidden_size``, ``num_hidden_layers``, ...): nothing here needs the weights.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from longrope.errors import ConfigError, UserError

__all__ = ["bytes_per_token", "device_memory", "check_lengths_fit", "out_of_memory", "is_out_of_memory",
           "address_space_limit", "limit_advice", "out_of_memory_line"]

_GIB = float(1 << 30)


def _int_attr(config: Any, name: str, default: int = 0) -> int:
    value = getattr(config, name, None)
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def bytes_per_token(config: Any, *, rotary_dim: int, dtype_bytes: int, kv_cache: bool) -> int:
    """Lower bound of the bytes one token of one sequence holds during a forward pass (module doc)."""
    hidden = _int_attr(config, "hidden_size")
    heads = _int_attr(config, "num_attention_heads", 1)
    head_dim = _int_attr(config, "head_dim", hidden // heads if hidden else 0)
    per = dtype_bytes * (2 * hidden + 2 * int(rotary_dim))  # residual + layer output; cos and sin
    if kv_cache:
        layers = _int_attr(config, "num_hidden_layers", 1)
        kv_heads = _int_attr(config, "num_key_value_heads", heads)
        per += dtype_bytes * 2 * layers * kv_heads * head_dim  # [layers, 2, kv_heads, head_dim] per token
    return max(per, 1)


def device_memory(device: Any) -> int | None:
    """Total memory of ``device`` in bytes (GPU memory for CUDA, physical RAM otherwise); None if unknown."""
    import torch

    dev = torch.device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            return None
        index = dev.index if dev.index is not None else torch.cuda.current_device()
        return int(torch.cuda.get_device_properties(index).total_memory)
    try:  # CPU, and MPS (unified memory)
        return int(os.sysconf("SC_PHYS_PAGES")) * int(os.sysconf("SC_PAGE_SIZE"))
    except (AttributeError, ValueError, OSError):
        return None


def check_lengths_fit(lengths: Sequence[int], config: Any, *, rotary_dim: int, dtype: Any, device: Any,
                      kv_cache: bool, batch: int = 1, field: str = "lengths") -> None:
    """Refuse (``ConfigError`` on ``field``) a length whose lower-bound memory exceeds the device's total."""
    from longrope.models.loading import resolve_device, resolve_dtype

    total = device_memory(resolve_device(device))
    if not total or not lengths:
        return
    per = bytes_per_token(config, rotary_dim=rotary_dim, dtype_bytes=resolve_dtype(dtype).itemsize,
                          kv_cache=kv_cache) * max(1, int(batch))
    n = max(int(x) for x in lengths)
    if n * per <= total:
        return
    rows = f"{batch} sequences" if batch > 1 else "one sequence"
    need, have = _distinct_sizes(n * per, total)
    raise ConfigError(field, "{name} " + f"{n}: {rows} of {n:,} tokens needs at least {need} "
                      f"with this model ({per:,} bytes per token{' for its KV cache,' if kv_cache else ''} hidden "
                      f"states and RoPE tables alone), more than the {have} of {device}; use "
                      f"lengths of at most {total // per:,} tokens")


def _distinct_sizes(need: int, total: int) -> tuple[str, str]:
    """Two byte counts in GiB with as few decimals (up to 3) as show them apart (else in bytes): a length just past the memory said
    "needs at least 24 GiB ..., more than the 24 GiB of cpu" (battery 25c)."""
    for places in range(4):
        a, b = f"{need / _GIB:,.{places}f} GiB", f"{total / _GIB:,.{places}f} GiB"
        if a != b:
            return a, b
    return f"{need:,} bytes", f"{total:,} bytes"


_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory", "not enough memory",
             "unable to allocate")


def is_out_of_memory(exc: BaseException) -> bool:
    """Whether ``exc`` is an allocation failure (torch OOM, CPU allocator, numpy MemoryError)."""
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and any(t in str(exc).lower() for t in _OOM_TEXT)


def address_space_limit() -> int | None:
    """This process's address-space limit (``ulimit -v``) in bytes, or None when it has none."""
    try:
        import resource

        limit = resource.getrlimit(resource.RLIMIT_AS)[0]
    except (ImportError, AttributeError, OSError, ValueError):  # no such limit here (Windows)
        return None
    return None if limit == resource.RLIM_INFINITY else int(limit)


def limit_advice() -> str:
    """The clause every out-of-memory line ends with when this process runs under an address-space limit (the
    limit, not the machine, may be what ran out): ", or raise this process's address-space limit (ulimit -v N
    KiB)"; "" without one. An evaluation's out-of-memory line, and a search worker's, named no limit (battery
    25b; the command line's own catch-all did since battery 21a)."""
    limit = address_space_limit()
    return "" if limit is None else f", or raise this process's address-space limit (ulimit -v {limit // 1024} KiB)"


def out_of_memory_line(exc: BaseException, *, loading: bool = False) -> str | None:
    """One line for an allocation failure met while scoring a search candidate (in a worker process, a Ray actor
    or the search's own), or while loading the model to score with (``loading``), or None for another error: a
    worker's was the allocator's raw words ("[enforce fail at alloc_cpu.cpp:127] ...") and no fix (battery 25b), and
    one met loading the model was told as scoring, with fixes that do not shrink a load (its review)."""
    if not is_out_of_memory(exc):
        return None
    first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
    if loading:
        return (f"out of memory loading the model ({first}); use fewer workers per device (each loads its own copy), "
                f"a smaller dtype, or a device with more memory{limit_advice()}")
    return (f"out of memory scoring a candidate ({first}); use a shorter --target-length or fewer --samples, a "
            f"smaller dtype, or a device with more memory{limit_advice()}")


@contextmanager
def out_of_memory(what: str, length: int, device: Any) -> Iterator[None]:
    """Turn an allocation failure inside the block into one line naming ``what`` and ``length``."""
    try:
        yield
    except (MemoryError, RuntimeError) as exc:
        if not is_out_of_memory(exc):
            raise
        raise UserError(f"out of memory on {device} evaluating {what} at length {length}; evaluate shorter "
                        f"lengths (or fewer windows per batch), or use a device with more memory{limit_advice()}") \
            from None
