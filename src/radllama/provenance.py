"""Content fingerprints of the files an output depends on (data, weights, adapters).

Digests are sha256 of file contents, memoised per process by (path, size, mtime) so a folder of
weights is read once per run however often it is asked for.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

_memo: dict[tuple[str, int, int], str] = {}
IGNORED = {"radllama_export.json"}  # written by us after the fact; says nothing about the weights


def file_digest(path: str | Path) -> str:
    """sha256 of a file's contents (hex)."""
    path = Path(path).resolve()
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _memo:
        h = hashlib.sha256()
        with path.open("rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _memo[key] = h.hexdigest()
    return _memo[key]


def folder_digest(path: str | Path) -> str:
    """sha256 over the names and contents of the files directly in a folder (sub-folders such
    as checkpoints are not part of a model)."""
    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and f.name not in IGNORED and not f.name.startswith("."):
            h.update(f"{f.name}\0{file_digest(f)}\n".encode())
    return h.hexdigest()
