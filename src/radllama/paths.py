"""Where RadLlama keeps downloads and trained artifacts between runs."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """The cache root: ``$RADLLAMA_CACHE`` or ``~/.cache/radllama``."""
    root = os.environ.get("RADLLAMA_CACHE") or Path.home() / ".cache" / "radllama"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def cache_lock(name: str) -> Any:
    """A ``filelock.FileLock`` named ``name`` under the cache's ``locks/``: one process at a time builds or
    fetches a cache entry, and another waits, then reuses it."""
    from filelock import FileLock

    locks = cache_dir() / "locks"
    locks.mkdir(parents=True, exist_ok=True)
    return FileLock(locks / f"{name}.lock")
