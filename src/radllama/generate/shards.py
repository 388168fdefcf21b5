"""Splitting one generation job into N shards that run anywhere, and merging their outputs.

A record belongs to shard K of N by a hash of its id (not its position), so the shards are the
same whatever the file order, every machine computes them alone, and a rerun of one shard
resumes its own output. Each shard's predictions file carries its own provenance (with the
shard); :func:`merge_shards` checks the shards were made alike and together cover the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.io import atomic_writer, complete_lines, iter_jsonl
from radllama.provenance import differences, read_record, write_record


def parse_shard(text: str) -> tuple[int, int]:
    """ "3/8" -> (3, 8); shards count from 1."""
    try:
        k, n = (int(p) for p in text.split("/"))
    except ValueError:
        raise RadLlamaError(f"--shard must be K/N with whole numbers, e.g. 3/8, not {text!r}") from None
    if not 1 <= k <= n:
        raise RadLlamaError(f"--shard {text}: K must be between 1 and N")
    return k, n


def shard_of(record_id: str, n: int) -> int:
    """The shard (1..n) a record id belongs to: a stable hash, the same on every machine."""
    digest = hashlib.blake2b(str(record_id).encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n + 1


def in_shard(records: Iterable[dict], shard: tuple[int, int] | None) -> Iterator[dict]:
    """The records of one shard, lazily, in their order (all of them when ``shard`` is None)."""
    if shard is None:
        return iter(records)
    k, n = shard
    return (r for r in records if shard_of(str(r["id"]), n) == k)


def merge_shards(split: Path, parts: Sequence[Path], output: Path) -> int:
    """Write the shards' predictions as one file in the split's order; returns the line count.

    Refuses shards made from different models, settings or splits, a missing or repeated shard,
    and a split case with no prediction (a shard not finished: rerun it, it resumes).
    """
    records = [read_record(Path(p)) for p in parts]
    for part, rec in zip(parts, records, strict=True):
        if rec is None or "shard" not in rec:
            raise RadLlamaError(f"{part}: not a shard of `radllama generate --shard K/N` (no shard provenance)")
    common = {k: v for k, v in records[0].items() if k != "shard"}
    for part, rec in zip(parts[1:], records[1:], strict=True):
        diff = differences({k: v for k, v in rec.items() if k != "shard"}, common)
        if diff:
            raise RadLlamaError(f"{part} was made with a different {', '.join(diff)} than {parts[0]}")
    shards = sorted(rec["shard"] for rec in records)
    n = int(shards[0].split("/")[1])
    if shards != [f"{k}/{n}" for k in range(1, n + 1)]:
        raise RadLlamaError(f"shards {', '.join(shards)} are not each of 1/{n} .. {n}/{n} once")
    # Where each prediction's line is (part, byte offset), not the predictions: a million-case
    # merge holds ids and offsets, and copies the lines as they were written.
    where: dict[str, tuple[int, int]] = {}
    for p, part in enumerate(parts):
        for start, _, obj in complete_lines(Path(part)):  # a killed run's cut last line is not read
            if isinstance(obj, dict) and "id" in obj:
                where[str(obj["id"])] = (p, start)
    missing = [str(r["id"]) for r in iter_jsonl(Path(split)) if str(r["id"]) not in where]
    if missing:
        raise RadLlamaError(f"{len(missing)} case(s) have no prediction yet (first: {missing[0]}): finish their shard")
    n = 0
    with ExitStack() as files, atomic_writer(Path(output)) as out:
        handles = [files.enter_context(open(part, "rb")) for part in parts]
        for r in iter_jsonl(Path(split)):
            p, offset = where[str(r["id"])]
            handles[p].seek(offset)
            out.write(handles[p].readline())
            n += 1
    write_record(Path(output), common)
    return n
