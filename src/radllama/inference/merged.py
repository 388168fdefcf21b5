"""Adapters merged into their base once, cached by content: what the vLLM backend serves on CPU.

vLLM applies LoRA per token (``LoRARequest``), which on CPU ran 9x slower than the same adapter
merged into the weights (issue #11). With one adapter there is nothing to switch between, so the
merged folder is built once per (base, adapter) content and reused.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from radllama.paths import cache_dir, cache_lock
from radllama.provenance import folder_digest


def merged_key(base: Path, adapter: Path) -> str:
    """A name for this exact base + adapter pair (contents, not paths)."""
    return hashlib.sha256(f"{folder_digest(base)}+{folder_digest(adapter)}".encode()).hexdigest()[:20]


def merged_weights(base: Path, adapter: Path, allow_other_base: bool = False) -> Path:
    """The merged model folder for ``base`` + ``adapter``, built on first use (atomically).

    A file lock per key: a second process asking meanwhile (two jobs, a server beside a job)
    waits for the first's build and reuses it instead of building the same folder beside it.
    """
    from radllama.models.export import MANIFEST_FILE, export_merged
    from radllama.progress import console

    key = merged_key(Path(base), Path(adapter))
    out = cache_dir() / "merged" / key
    if (out / MANIFEST_FILE).is_file():
        return out
    with cache_lock(f"merged-{key}"):
        if (out / MANIFEST_FILE).is_file():  # built while this process waited
            return out
        for stale in out.parent.glob(f".{key}.*.tmp"):  # a build that was killed (none runs: the lock)
            shutil.rmtree(stale, ignore_errors=True)
        with console.status(f"merging {adapter} into {base} (once; cached in {out})"):
            return export_merged(Path(base), Path(adapter), out, dtype="fp32", allow_other_base=allow_other_base)


def lora_rank(adapter: Path) -> int:
    """The adapter's rank, for vLLM's ``--max-lora-rank``."""
    import json

    return int(json.loads((Path(adapter) / "adapter_config.json").read_text())["r"])
