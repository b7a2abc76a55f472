"""The per-user cache (trained teachers, datasets): ``$ADAPTC_CACHE`` or ``$XDG_CACHE_HOME/adaptc``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    env = os.environ.get("ADAPTC_CACHE")
    if env:
        p = Path(env)
    else:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        p = Path(base) / "adaptc"
    p.mkdir(parents=True, exist_ok=True)
    return p
