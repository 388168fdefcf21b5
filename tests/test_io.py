"""write_jsonl: all or nothing, and streamed (memory does not grow with the number of records).
extract_member: plain files and folders only, never outside the destination, with tarfile's 'data'
filter where this Python has it and by our own checks where it does not (Debian 12's 3.11.2)."""

from __future__ import annotations

import io
import os
import tarfile
import tracemalloc
from pathlib import Path

import pytest

from radllama import io as rio
from radllama.errors import RadLlamaError
from radllama.io import extract_member, read_jsonl, write_jsonl


def test_an_interrupted_write_leaves_the_old_file_and_no_temp(tmp_path) -> None:
    path = tmp_path / "out.jsonl"
    write_jsonl(path, [{"id": "old"}])

    def failing():
        yield {"id": "new-1"}
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        write_jsonl(path, failing())
    assert read_jsonl(path) == [{"id": "old"}]
    assert [p.name for p in tmp_path.iterdir()] == ["out.jsonl"]


def test_writing_streams_records(tmp_path) -> None:
    """50,000 records of 400 characters (about 20 MB of JSON) are written without holding them."""
    text = "x" * 400
    tracemalloc.start()
    try:
        n = write_jsonl(tmp_path / "big.jsonl", ({"id": i, "findings": text} for i in range(50_000)))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert n == 50_000 and sum(1 for _ in open(tmp_path / "big.jsonl", encoding="utf-8")) == 50_000
    assert peak < 2e6, f"peak {peak / 1e6:.1f} MB"


def make_tar(path: Path, members: list[tuple[str, str, str | bytes]]) -> Path:
    """A .tar.gz of ``(kind, name, data or link target)`` members; kind: file, dir, symlink, hardlink, fifo."""
    types = {"file": tarfile.REGTYPE, "dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE,
             "hardlink": tarfile.LNKTYPE, "fifo": tarfile.FIFOTYPE}  # fmt: skip
    with tarfile.open(path, "w:gz") as tar:
        for kind, name, payload in members:
            info = tarfile.TarInfo(name)
            info.type = types[kind]
            info.mode = 0o755 if kind == "dir" else 0o644
            if kind in ("symlink", "hardlink"):
                info.linkname = str(payload)
            data = payload.encode() if kind == "file" and isinstance(payload, str) else b""
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
    return path


# Both code paths on every Python that has the filter; the fallback alone on 3.11.0-3.11.3.
PATHS = [
    pytest.param(True, id="data-filter", marks=pytest.mark.skipif(not hasattr(tarfile, "data_filter"),
                                                                  reason="this Python has no extraction filters")),
    pytest.param(False, id="own-checks"),
]  # fmt: skip


@pytest.fixture(params=PATHS)
def filter_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> bool:
    monkeypatch.setattr(rio, "TAR_DATA_FILTER", request.param)
    if not request.param and hasattr(tarfile, "data_filter"):  # run as 3.11.2's tarfile does: no filter at all
        monkeypatch.setattr(tarfile.TarFile, "extraction_filter", staticmethod(tarfile.fully_trusted_filter))
    return request.param


def extract_all(archive: Path, dest: Path) -> None:
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            extract_member(tar, member, dest)


def test_a_plain_archive_extracts(tmp_path: Path, filter_path: bool) -> None:
    archive = make_tar(tmp_path / "ok.tar.gz", [("dir", "pkg", ""), ("file", "pkg/a.py", "print(1)\n"),
                                                 ("file", "pkg/sub/b.txt", "b")])  # fmt: skip
    extract_all(archive, tmp_path / "out")
    assert (tmp_path / "out/pkg/a.py").read_text() == "print(1)\n"
    assert (tmp_path / "out/pkg/sub/b.txt").read_text() == "b"


def test_setuid_bits_write_bits_and_owner_are_not_taken_from_the_archive(tmp_path: Path, filter_path: bool) -> None:
    archive = tmp_path / "modes.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        info = tarfile.TarInfo("tool.sh")
        info.mode, info.size, info.uid, info.uname = 0o4777, 3, 4242, "someone"
        tar.addfile(info, io.BytesIO(b"x=1"))
    extract_all(archive, tmp_path / "out")
    stat = (tmp_path / "out/tool.sh").stat()
    assert stat.st_mode & 0o7777 == 0o755
    assert stat.st_uid == os.geteuid()  # run as root, tarfile alone would chown it to uid 4242


HOSTILE = {
    "absolute": ([("file", "/tmp/radllama-absolute-evil", "x")], "absolute path"),
    "dotdot-inside": ([("file", "pkg/../../evil", "x")], "'..'"),
    "dotdot": ([("file", "../evil", "x")], "'..'"),
    "symlink-absolute": ([("symlink", "pkg/link", "/etc/passwd")], "a link"),
    "symlink-outside": ([("symlink", "pkg/link", "../../outside")], "a link"),
    "symlink-inside": ([("symlink", "pkg/inside", "a.py")], "a link"),  # the 'data' filter alone would allow it
    "hardlink": ([("file", "pkg/a.py", "x"), ("hardlink", "pkg/h", "pkg/a.py")], "a link"),
    "fifo": ([("fifo", "pkg/pipe", "")], "special file"),
}


@pytest.mark.parametrize(("members", "why"), HOSTILE.values(), ids=HOSTILE.keys())
def test_a_hostile_member_is_refused_in_one_line(tmp_path: Path, filter_path: bool, members: list, why: str) -> None:
    archive = make_tar(tmp_path / "evil.tar.gz", members)
    with pytest.raises(RadLlamaError, match=f"refused to extract .*{why}"):
        extract_all(archive, tmp_path / "out")
    assert not Path("/tmp/radllama-absolute-evil").exists() and not (tmp_path / "evil").exists()


@pytest.mark.skipif(not hasattr(tarfile, "data_filter"), reason="this Python has no extraction filters")
@pytest.mark.parametrize(
    "member",
    [("file", "../evil", "x"), ("symlink", "link", "/etc/passwd"), ("symlink", "link", "../../evil")],
    ids=["dotdot", "symlink-absolute", "symlink-outside"],
)
def test_the_data_filter_alone_refuses_as_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, member) -> None:
    """Our own checks switched off: tarfile's filter still refuses, and its error is ours (it strips the
    leading '/' of an absolute name instead of refusing it, so that case is not here)."""
    monkeypatch.setattr(rio, "TAR_DATA_FILTER", True)
    monkeypatch.setattr(rio, "unsafe_member", lambda m: None)
    with pytest.raises(RadLlamaError, match="refused to extract"):
        extract_all(make_tar(tmp_path / "evil.tar.gz", [member]), tmp_path / "out")
    assert not Path("/tmp/radllama-absolute-evil").exists() and not (tmp_path / "evil").exists()
