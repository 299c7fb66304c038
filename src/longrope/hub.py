"""Is the Hugging Face hub reachable? Asked before any hub download, so that an offline run fails
in seconds with a clear message instead of after minutes of retries."""

from __future__ import annotations

import os
import socket
from urllib.parse import urlparse


def hub_reachable(timeout: float = 3.0) -> bool:
    """A DNS + TCP probe of ``HF_ENDPOINT`` (default huggingface.co); False when ``HF_HUB_OFFLINE`` is set."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme == "https" else 80)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False
