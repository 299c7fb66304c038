"""The passkey protocol's choices, without torch: what the command line's configs offer.

The prompt itself and its scoring live in :mod:`longrope.evaluate.passkey`.
"""

from __future__ import annotations

__all__ = ["PASSKEY_MODES"]

#: How a pass key is scored: greedy decoding, teacher-forced answer tokens, or both on the same keys.
PASSKEY_MODES = ("generate", "needle", "both")
