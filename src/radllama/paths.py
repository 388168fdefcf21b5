"""Where RadLlama keeps downloads and trained artifacts between runs."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """The cache root: ``$RADLLAMA_CACHE`` or ``~/.cache/radllama``."""
    root = os.environ.get("RADLLAMA_CACHE") or Path.home() / ".cache" / "radllama"
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path
