"""Provenance and the cache rule: every output records what it was made from, and is reused only
when that record equals what would be made now.

A fingerprint is a small JSON dict: content hashes of the inputs (split file, base weights, adapter,
training data), the prompt style, decoding settings, backend and versions. It is stored beside the
output (``<file>.provenance.json``, or ``provenance.json`` inside a stage folder). :func:`reuse` is
the one rule that ``generate``, ``compare``, the demo and its training stages apply: same
fingerprint, resume; different, stop with one line saying what differs (``--overwrite`` to redo),
or, where the caller says so (the demo), redo.

Digests are sha256 of file contents, memoised per process by (path, size, mtime), so a folder of
weights is read once per run however often it is asked for.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json

_memo: dict[tuple[str, int, int], str] = {}
RECORD_FILE = "provenance.json"  # inside a stage folder
RECORD_SUFFIX = ".provenance.json"  # beside a file
# Written by us after the fact, or caches: they say nothing about the weights.
# model_card.json: figures measured after training (radllama.models.card), notes about the model, not the model.
IGNORED = {"radllama_export.json", RECORD_FILE, "model_card.json"}
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".gguf")


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


def weights_digest(path: str | Path) -> str:
    """sha256 over a model folder's ``config.json`` and weight files: which weights these are,
    whatever tokenizer, prompt style or notes sit beside them (what an adapter records of its base)."""
    h = hashlib.sha256()
    for f in sorted(Path(path).iterdir()):
        if f.is_file() and (f.name == "config.json" or f.suffix in WEIGHT_SUFFIXES):
            h.update(f"{f.name}\0{file_digest(f)}\n".encode())
    return h.hexdigest()


def versions(*packages: str) -> dict[str, str | None]:
    """Installed versions of radllama and ``packages`` (None where absent)."""
    found: dict[str, str | None] = {}
    for name in ("radllama", *packages):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    return found


def record_path(output: Path, folder: bool = False) -> Path:
    """Where an output's fingerprint lives: inside a stage folder, beside a file."""
    output = Path(output)
    return output / RECORD_FILE if folder or output.is_dir() else output.with_name(output.name + RECORD_SUFFIX)


def read_record(output: Path, folder: bool = False) -> dict[str, Any] | None:
    path = record_path(output, folder)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None


def write_record(output: Path, fingerprint: dict[str, Any], folder: bool = False) -> None:
    atomic_write_json(record_path(output, folder), fingerprint)


def differences(saved: dict[str, Any] | None, wanted: dict[str, Any]) -> list[str]:
    """The fields in which a saved fingerprint differs from the wanted one."""
    if saved is None:
        return ["provenance (none recorded)"]
    return sorted(k for k in saved.keys() | wanted.keys() if saved.get(k) != wanted.get(k))


def _has_content(output: Path) -> bool:
    if output.is_dir():
        return any(p.name != RECORD_FILE for p in output.iterdir())
    return output.is_file() and output.stat().st_size > 0


def reuse(output: Path, wanted: dict[str, Any], *, on_change: str = "error", folder: bool = False) -> bool:
    """The cache rule. True: ``output`` exists and was made from exactly ``wanted`` (resume it).
    False: there is nothing to reuse; the fingerprint is recorded for what is about to be made.

    When ``output`` holds work made from something else: ``on_change="error"`` raises one clear
    line naming what differs; ``"redo"`` deletes that output first. ``folder``: the output is a
    stage folder (its fingerprint inside it).
    """
    output = Path(output)
    if _has_content(output):
        diff = differences(read_record(output, folder), wanted)
        if not diff:
            return True
        if on_change != "redo":
            raise RadLlamaError(
                f"{output} was made with a different {', '.join(diff)} than this run: pass --overwrite to redo it "
                "(or choose another output)"
            )
        if output.is_dir():
            shutil.rmtree(output)
        else:
            output.unlink()
        record_path(output, folder).unlink(missing_ok=True)
    if folder:
        output.mkdir(parents=True, exist_ok=True)
    write_record(output, wanted, folder)
    return False


def discard_if_empty(output: Path) -> None:
    """Remove a file output's fingerprint, and the file, when it holds nothing: a run that failed
    before its first line leaves nothing behind (a partial output keeps both, to resume)."""
    output = Path(output)
    if not _has_content(output) and not output.is_dir():
        output.unlink(missing_ok=True)
        record_path(output).unlink(missing_ok=True)


def model_fingerprint(model_dir: str | Path, adapter_dir: str | Path | None) -> dict[str, Any]:
    """Content hashes of a base model folder and its adapter (prompt style and retrieval index
    are files of those folders, so they are part of the hashes)."""
    return {"base": folder_digest(model_dir), "adapter": folder_digest(adapter_dir) if adapter_dir else None}
