"""write_jsonl: all or nothing, and streamed (memory does not grow with the number of records)."""

from __future__ import annotations

import tracemalloc

import pytest

from radllama.io import read_jsonl, write_jsonl


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
