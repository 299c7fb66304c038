"""``longrope.hub``: whether the Hugging Face hub is switched off, read as huggingface_hub reads it."""

from __future__ import annotations

import pytest

from longrope.hub import hub_offline, hub_reachable

_SWITCHES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE")


@pytest.mark.parametrize(("env", "offline", "datasets"), [
    ({"HF_HUB_OFFLINE": "1"}, "HF_HUB_OFFLINE", "HF_HUB_OFFLINE"),
    ({"HF_HUB_OFFLINE": "on"}, "HF_HUB_OFFLINE", "HF_HUB_OFFLINE"),  # huggingface_hub: offline; we probed the net
    ({"HF_HUB_OFFLINE": "false"}, None, None),  # battery 9a: tokenize said "the hub is offline (HF_HUB_OFFLINE)"
    ({"HF_HUB_OFFLINE": "0"}, None, None),
    ({"TRANSFORMERS_OFFLINE": "1"}, "TRANSFORMERS_OFFLINE", "TRANSFORMERS_OFFLINE"),
    ({"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "0"}, "HF_HUB_OFFLINE", None),
    ({"HF_DATASETS_OFFLINE": "yes"}, None, "HF_DATASETS_OFFLINE"),
])
def test_the_switches_read_as_huggingface_hub_reads_them(monkeypatch, env, offline, datasets):
    for name in _SWITCHES:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert hub_offline() == offline
    assert hub_offline(datasets=True) == datasets
    if offline:
        assert hub_reachable() is False  # no probe
