"""``longrope.evaluate.memory``: a lower bound of an evaluation's memory, checked before the model
loads, and allocation failures during one reported as one line."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from longrope.errors import ConfigError, UserError
from longrope.evaluate import memory

# the embedded tiny model's shape: hidden 256, 4 layers, 4 heads (and KV heads) of 64
TINY = SimpleNamespace(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=4,
                       head_dim=64)


def test_bytes_per_token_counts_the_kv_cache_only_when_it_is_kept():
    no_cache = memory.bytes_per_token(TINY, rotary_dim=64, dtype_bytes=4, kv_cache=False)
    cache = memory.bytes_per_token(TINY, rotary_dim=64, dtype_bytes=4, kv_cache=True)
    assert no_cache == 4 * (2 * 256 + 2 * 64)
    assert cache - no_cache == 4 * 2 * 4 * 4 * 64  # keys and values of every layer
    assert memory.bytes_per_token(TINY, rotary_dim=64, dtype_bytes=2, kv_cache=True) * 2 == cache


def test_a_length_beyond_the_device_is_refused_with_the_largest_that_could_fit(monkeypatch):
    monkeypatch.setattr(memory, "device_memory", lambda device: 1 << 30)  # a 1 GiB machine
    per = memory.bytes_per_token(TINY, rotary_dim=64, dtype_bytes=4, kv_cache=True)
    memory.check_lengths_fit([256, (1 << 30) // per], TINY, rotary_dim=64, dtype="float32", device="cpu",
                             kv_cache=True)
    with pytest.raises(ConfigError) as e:
        memory.check_lengths_fit([256, 100_000_000], TINY, rotary_dim=64, dtype="float32", device="cpu",
                                 kv_cache=True)
    msg = str(e.value)
    assert msg.startswith("lengths 100000000:") and "1 GiB of cpu" in msg and f"at most {(1 << 30) // per:,}" in msg
    # an unknown device size refuses nothing
    monkeypatch.setattr(memory, "device_memory", lambda device: None)
    memory.check_lengths_fit([10**12], TINY, rotary_dim=64, dtype="float32", device="cpu", kv_cache=True)


def test_a_length_just_past_the_memory_says_two_different_sizes(monkeypatch):
    """Both sizes were rounded to whole GiB: "needs at least 24 GiB ..., more than the 24 GiB of cpu" (battery 25c).
    They are shown with as many decimals as tell them apart, and the largest length that fits is offered as such."""
    total = int(23.5 * (1 << 30))
    monkeypatch.setattr(memory, "device_memory", lambda device: total)
    per = memory.bytes_per_token(TINY, rotary_dim=64, dtype_bytes=4, kv_cache=False)
    fits = total // per
    memory.check_lengths_fit([fits], TINY, rotary_dim=64, dtype="float32", device="cpu", kv_cache=False)
    for n in (fits + 1, 10_000_000):
        with pytest.raises(ConfigError) as e:
            memory.check_lengths_fit([n], TINY, rotary_dim=64, dtype="float32", device="cpu", kv_cache=False)
        need, have = str(e.value).split("needs at least ")[1].split(" with ")[0], str(e.value).split("than the ")[1]
        assert have.split(" of cpu")[0] != need and f"at most {fits:,} tokens" in str(e.value)
    assert need == "23.8 GiB" and have.startswith("23.5 GiB of cpu")


def test_the_real_machine_refuses_a_ten_billion_token_passkey():
    with pytest.raises(ConfigError, match="GiB"):
        memory.check_lengths_fit([10**10], TINY, rotary_dim=64, dtype="float32", device="cpu", kv_cache=True)


@pytest.mark.parametrize("exc", [
    RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 409600000000 bytes."),
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB"),
    MemoryError("Unable to allocate 745. GiB for an array"),
])
def test_allocation_failures_become_one_line(exc):
    with pytest.raises(UserError) as e:
        with memory.out_of_memory("passkey (generate)", 100_000_000, "cpu"):
            raise exc
    msg = str(e.value)
    assert "out of memory on cpu" in msg and "length 100000000" in msg and "\n" not in msg
    assert e.value.__cause__ is None and e.value.__suppress_context__


def test_other_runtime_errors_pass_through():
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with memory.out_of_memory("x", 10, "cpu"):
            raise RuntimeError("shape mismatch")


def test_ppl_suite_names_the_set_and_length_that_ran_out(monkeypatch):
    import longrope.evaluate.suite as suite

    def oom(*a, **k):
        raise RuntimeError("DefaultCPUAllocator: can't allocate memory")

    monkeypatch.setattr(suite, "evaluate_perplexity", oom)
    model = torch.nn.Linear(2, 2)
    with pytest.raises(UserError, match="perplexity with factors 'none' at length 4096"):
        suite.ppl_suite(model, [], [("none", None)], [4096], bos_id=None)


def test_an_allocation_failure_under_an_address_space_limit_names_the_limit_in_a_guard_and_a_search_worker(
        monkeypatch):
    """Battery 25b: under ulimit -v an evaluation's out-of-memory line named no limit, and a search worker's was the
    allocator's raw words ("[enforce fail at alloc_cpu.cpp:127] ...") with no fix; both now end with the limit."""
    from longrope.search.evaluators import failure_line, fatal_report

    monkeypatch.setattr(memory, "address_space_limit", lambda: 1600 << 20)
    raw = RuntimeError("[enforce fail at alloc_cpu.cpp:127] err == 0. DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 50331648 bytes. Error code 12 (Cannot allocate memory)")
    with pytest.raises(UserError, match=r"ulimit -v 1638400 KiB"):
        with memory.out_of_memory("perplexity", 16384, "cpu"):
            raise raw
    line = failure_line(raw)
    assert line.startswith("out of memory scoring a candidate") and "--target-length" in line
    assert line.endswith("(ulimit -v 1638400 KiB)")
    assert failure_line(RuntimeError("shape mismatch")) == "RuntimeError: shape mismatch"
    line, _ = fatal_report(raw)  # met loading the model: the fixes of a load (the review of battery 25)
    assert line.startswith("out of memory loading the model") and "fewer workers per device" in line
    assert "--target-length" not in line
