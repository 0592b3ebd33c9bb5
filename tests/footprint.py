"""Which modules a fresh interpreter holds after some imports: the footprint tests' one
probe (a subprocess, so nothing this test process loaded counts)."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Sequence


def loaded_after(statement: str, watched: Sequence[str]) -> list[str]:
    """The ``watched`` modules a fresh interpreter holds after running ``statement``."""
    code = (
        f"import json, sys\n{statement}\n"
        f"print(json.dumps([m for m in {tuple(watched)!r} if m in sys.modules]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    return list(json.loads(done.stdout))
