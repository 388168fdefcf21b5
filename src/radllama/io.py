"""Plain-file I/O shared by every stage: atomic writes, resumable JSONL and safe extraction from tar archives.

Every output is written to a temporary file in the same folder and renamed into place,
so a crash or a full disk never leaves a half-written file behind.
"""

from __future__ import annotations

import copy
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any, BinaryIO

from radllama.errors import RadLlamaError


def ensure_writable_dir(path: Path) -> Path:
    """Create ``path`` (and parents) and check that files can be written there."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RadLlamaError(f"cannot create output folder {path}: {exc.strerror}") from exc
    if not os.access(path, os.W_OK):
        raise RadLlamaError(f"output folder {path} is not writable")
    return path


@contextmanager
def atomic_writer(path: Path) -> Iterator[BinaryIO]:
    """A binary file that becomes ``path`` only if the block completes (temp file + fsync + rename)."""
    path = Path(path)
    if not path.parent.exists():
        raise RadLlamaError(f"output folder {path.parent} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise RadLlamaError(f"cannot write {path}: {exc.strerror}") from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via temp file + rename (all or nothing)."""
    with atomic_writer(path) as fh:
        fh.write(data)


def atomic_write_text(path: Path, text: str) -> None:
    """Write UTF-8 text atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    """Write indented JSON atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, records: Iterable[dict]) -> int:
    """Write records as JSONL atomically, streamed (a million records are never one string); returns the count."""
    n = 0
    with atomic_writer(path) as fh:
        for record in records:
            fh.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
            n += 1
    return n


def iter_jsonl(path: Path) -> Iterator[dict]:
    """Yield JSON objects from a JSONL file; a bad line raises a clear error naming it."""
    path = Path(path)
    if not path.is_file():
        raise RadLlamaError(f"{path}: no such file")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                raise RadLlamaError(f"{path}:{lineno}: not valid UTF-8") from exc
            except json.JSONDecodeError as exc:
                raise RadLlamaError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from exc
            if not isinstance(obj, dict):
                raise RadLlamaError(f"{path}:{lineno}: expected a JSON object per line")
            yield obj


def read_jsonl(path: Path) -> list[dict]:
    """Read a whole JSONL file (see :func:`iter_jsonl`)."""
    return list(iter_jsonl(path))


def complete_lines(path: Path) -> Iterator[tuple[int, int, Any]]:
    """(start, end, object) of each line of a JSONL file written by :class:`JsonlAppender`, read a line
    at a time, up to the first line that a crash cut off (no newline, or not JSON)."""
    start = 0
    with Path(path).open("rb") as fh:
        for line in fh:
            if not line.endswith(b"\n"):
                return  # truncated tail from a crash
            try:
                obj = json.loads(line)
            except (json.JSONDecodeError, UnicodeDecodeError):
                return
            yield start, start + len(line), obj
            start += len(line)


class JsonlAppender:
    """Append-and-flush JSONL writer that resumes an interrupted run.

    On open, complete lines already in the file are kept and their ``key`` values are
    reported by :attr:`done`; a truncated last line (a crash mid-write) is cut off so the
    case is simply redone. The file is read a line at a time and only the keys are held, so
    resuming a million predictions costs their ids; ``keep=True`` also holds the records
    (:attr:`kept`, the last line per key) for callers that need them.
    """

    def __init__(self, path: Path, key: str = "id", keep: bool = False) -> None:
        self.path = Path(path)
        self.key = key
        self.done: set[str] = set()
        self.kept: dict[str, dict] | None = {} if keep else None
        if not self.path.parent.exists():
            raise RadLlamaError(f"output folder {self.path.parent} does not exist")
        if self.path.exists():
            self._recover()
        try:
            self._fh = self.path.open("a", encoding="utf-8")
        except OSError as exc:
            raise RadLlamaError(f"cannot write {self.path}: {exc.strerror}") from exc

    def _recover(self) -> None:
        good_end = 0  # where the last complete line ends
        for _, end, obj in complete_lines(self.path):
            if isinstance(obj, dict) and self.key in obj:
                self._note(obj)
            good_end = end
        if good_end < self.path.stat().st_size:
            with self.path.open("r+b") as fh:
                fh.truncate(good_end)

    def _note(self, record: dict) -> None:
        key = str(record[self.key])
        self.done.add(key)
        if self.kept is not None:
            self.kept[key] = record

    def write(self, record: dict) -> None:
        """Append one record and flush it to disk."""
        self._fh.write(json.dumps(record, ensure_ascii=False) + "\n")
        self._fh.flush()
        self._note(record)

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> JsonlAppender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# tarfile's extraction filters (PEP 706) are in 3.12 and in 3.11.4 and later only: Debian 12's own
# Python (3.11.2) has none. Module-level so that tests can take the fallback path on any Python.
TAR_DATA_FILTER = hasattr(tarfile, "data_filter")


def unsafe_member(member: tarfile.TarInfo) -> str | None:
    """Why extracting ``member`` could write outside its folder or make more than a plain file or
    folder (a link, a device), or None when it is neither."""
    name = member.name.replace("\\", "/")
    if PurePosixPath(name).is_absolute() or PureWindowsPath(name).anchor:
        return "an absolute path"
    if ".." in PurePosixPath(name).parts:
        return "'..' in its path"
    if member.issym() or member.islnk():
        return f"a link (to {member.linkname!r})"
    if not (member.isfile() or member.isdir()):
        return "a device, pipe or other special file"
    return None


def _as_data(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """``member`` as the 'data' filter would extract it: no setuid/setgid/sticky bits, not writable by
    group or others, and owned by whoever extracts it (run as root, tarfile would give the archive's
    owner the files, e.g. a converter that root runs later)."""
    plain = copy.copy(member)
    plain.mode = (member.mode & 0o755) | (0o700 if member.isdir() else 0o600)
    if hasattr(os, "geteuid"):
        plain.uid, plain.gid = os.geteuid(), os.getegid()
    plain.uname = plain.gname = ""
    return plain


def extract_member(tar: tarfile.TarFile, member: tarfile.TarInfo, dest: Path) -> None:
    """Extract one member of ``tar`` under ``dest``: only plain files and folders, never outside ``dest``.

    The same rules on every Python (so an archive extracts, or is refused, alike on 3.11.2 and 3.13),
    with tarfile's own 'data' filter on top where this Python has it; a refused member is one line.
    """
    why = unsafe_member(member)
    if why:
        raise RadLlamaError(f"{tar.name or 'archive'}: refused to extract {member.name!r}: {why}")
    if not TAR_DATA_FILTER:
        tar.extract(_as_data(member), dest)
        return
    try:
        tar.extract(member, dest, filter="data")
    except tarfile.FilterError as exc:
        raise RadLlamaError(f"{tar.name or 'archive'}: refused to extract {member.name!r}: {exc}") from exc
