"""Helpers of the input sensors' tests: a cursor a grace period later, a file made older."""

import json
import os
from pathlib import Path

from astro_assets.io.discovery import VANISH_GRACE_SECONDS


def later(cursor: str) -> str:
    """``cursor`` as a tick a grace period later finds it: what was missing, missing so long."""
    state = json.loads(cursor)
    shift = int(VANISH_GRACE_SECONDS * 1e9)
    state["missing_since"] = {k: v - shift for k, v in state["missing_since"].items()}
    return json.dumps(state)


def age(path: Path, age_s: float = 3600) -> None:
    """Move ``path``'s modification time ``age_s`` seconds back."""
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns - int(age_s * 1e9)))
