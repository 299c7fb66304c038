"""Is the Hugging Face hub reachable? Asked before any hub download, so that an offline run fails
in seconds with a clear message instead of after minutes of retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse

#: the values huggingface_hub (and datasets) read as "on" in its switches, in any case
_TRUE = ("1", "ON", "YES", "TRUE")


def hub_offline(*, datasets: bool = False) -> str | None:
    """The variable that switches the hub off, read as huggingface_hub reads it, or None when it is on:
    ``HF_HUB_OFFLINE`` (else ``TRANSFORMERS_OFFLINE``) set to 1/ON/YES/TRUE; for datasets (``datasets=True``)
    ``HF_DATASETS_OFFLINE`` decides when it is set. (Three places read HF_HUB_OFFLINE three ways: "false" was
    offline for tokenize and online for the model loader, "ON" the reverse.)"""
    if datasets and os.environ.get("HF_DATASETS_OFFLINE") is not None:
        name = "HF_DATASETS_OFFLINE"
    else:
        name = "HF_HUB_OFFLINE" if os.environ.get("HF_HUB_OFFLINE") else "TRANSFORMERS_OFFLINE"
    return name if os.environ.get(name, "").strip().upper() in _TRUE else None


def hub_reachable(timeout: float = 3.0) -> bool:
    """A DNS + TCP probe of ``HF_ENDPOINT`` (default huggingface.co); False when the hub is switched off
    (:func:`hub_offline`)."""
    if hub_offline():
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
