"""The rope package is pure numpy: importing it must not pull in torch or transformers."""

from __future__ import annotations

import subprocess
import sys


def test_rope_imports_neither_torch_nor_transformers():
    code = (
        "import sys, longrope.rope; "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'transformers')); "
        "print(','.join(bad))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "", f"longrope.rope imported: {out.stdout.strip()}"
