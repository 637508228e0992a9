"""Where causalguard keeps caches (XDG user cache dir unless CAUSALGUARD_CACHE_DIR is set)."""

from __future__ import annotations

import os
from pathlib import Path

from platformdirs import user_cache_dir


def cache_root() -> Path:
    """The cache root, created on first use. Override with the CAUSALGUARD_CACHE_DIR variable."""
    override = os.environ.get("CAUSALGUARD_CACHE_DIR")
    root = Path(override) if override else Path(user_cache_dir("causalguard"))
    root.mkdir(parents=True, exist_ok=True)
    return root
