"""Build a blinded study from prediction files: sample cases, shuffle candidates, hide system names."""

from __future__ import annotations

import json
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.io import iter_jsonl
from radllama.review import store


@dataclass
class SystemPredictions:
    """One prediction file: its system name and its usable (status ok) records by case id."""

    system: str
    path: Path
    records: dict[str, dict]


def load_predictions(path: Path) -> SystemPredictions:
    """Read one predictions JSONL file, keeping the records whose status is ok.

    Raises:
        RadLlamaError: missing fields, several systems in one file, or no usable record.
    """
    path = Path(path)
    systems: set[str] = set()
    records: dict[str, dict] = {}
    for lineno, rec in enumerate(iter_jsonl(path), 1):
        missing = [k for k in ("id", "system", "findings", "reference", "prediction") if k not in rec]
        if missing:
            raise RadLlamaError(f"{path}: record {lineno} lacks {', '.join(missing)}")
        systems.add(str(rec["system"]))
        if rec.get("status", "ok") != "ok" or not str(rec["prediction"]).strip():
            continue
        records[str(rec["id"])] = rec  # a rerun may repeat an id; the last line wins
    if len(systems) > 1:
        raise RadLlamaError(f"{path}: holds several systems ({', '.join(sorted(systems))}); use one per file")
    if not records:
        raise RadLlamaError(f"{path}: no prediction with status ok")
    return SystemPredictions(system=systems.pop(), path=path, records=records)


def common_case_ids(preds: list[SystemPredictions]) -> list[str]:
    """Ids present (status ok) in every prediction file, sorted for a seed-stable order."""
    common = set(preds[0].records)
    for p in preds[1:]:
        common &= set(p.records)
    if not common:
        names = ", ".join(str(p.path) for p in preds)
        raise RadLlamaError(f"the prediction files share no case id with status ok: {names}")
    return sorted(common)


def _seen_flag(preds: list[SystemPredictions], case_id: str) -> bool | None:
    for p in preds:
        value = p.records[case_id].get("seen_findings")
        if isinstance(value, bool):
            return value
    return None


def sample_cases(
    preds: list[SystemPredictions], n: int, rng: random.Random, stratify_unseen: bool = False
) -> tuple[list[str], list[str]]:
    """Choose ``n`` common case ids; returns (ids in rater order, warnings).

    With ``stratify_unseen``, half the cases (rounded up) have findings unseen in training and half
    seen, when the files carry ``seen_findings``; a short stratum is filled from the other one.
    """
    ids = common_case_ids(preds)
    if n < 1:
        raise RadLlamaError("--cases must be at least 1")
    if n > len(ids):
        raise RadLlamaError(f"--cases {n} but only {len(ids)} cases are present (status ok) in every file")
    warnings: list[str] = []
    if not stratify_unseen:
        chosen = rng.sample(ids, n)
    else:
        flags = {i: _seen_flag(preds, i) for i in ids}
        unseen = [i for i in ids if flags[i] is False]
        seen = [i for i in ids if flags[i] is True]
        if not unseen and not seen:
            warnings.append("no seen_findings in the prediction files; sampled without stratifying")
            chosen = rng.sample(ids, n)
        else:
            want_unseen = (n + 1) // 2
            take_unseen = min(want_unseen, len(unseen))
            take_seen = min(n - take_unseen, len(seen))
            take_unseen = min(n - take_seen, len(unseen))
            if take_unseen + take_seen < n:
                raise RadLlamaError(f"--cases {n} but only {len(unseen) + len(seen)} common cases carry seen_findings")
            if take_unseen != want_unseen:
                warnings.append(f"only {take_unseen} unseen cases used (wanted {want_unseen})")
            chosen = rng.sample(unseen, take_unseen) + rng.sample(seen, take_seen)
            rng.shuffle(chosen)
    return chosen, warnings


def create_study(
    prediction_paths: list[Path],
    out: Path,
    n_cases: int,
    seed: int,
    stratify_unseen: bool = False,
    include_reference: bool = False,
    force: bool = False,
) -> dict:
    """Write a new study file; returns a summary (cases, systems, warnings) for the CLI to print."""
    if not prediction_paths:
        raise RadLlamaError("give at least one --predictions file")
    preds = [load_predictions(p) for p in prediction_paths]
    names = [p.system for p in preds]
    dupes = sorted({s for s in names if names.count(s) > 1})
    if dupes:
        raise RadLlamaError(f"system {dupes[0]!r} appears in more than one predictions file")
    if include_reference and store.REFERENCE_SYSTEM in names:
        raise RadLlamaError(f"a system is named {store.REFERENCE_SYSTEM!r}: the name is kept for the reference")
    rng = random.Random(seed)
    chosen, warnings = sample_cases(preds, n_cases, rng, stratify_unseen)

    out = Path(out)
    if out.exists() and not force:
        raise RadLlamaError(f"{out} already exists; pass --force to replace it (its ratings are lost)")
    # Build in a temp file and rename, so a failure (or an existing study) is never half-replaced.
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.tmp")
    try:
        conn = store.create_database(tmp)
        with store.transaction(conn):
            _fill(conn, preds, chosen, rng, include_reference)
            meta = {
                "seed": str(seed),
                "n_cases": str(len(chosen)),
                "systems": json.dumps(names + ([store.REFERENCE_SYSTEM] if include_reference else [])),
                "stratify": "unseen" if stratify_unseen else "none",
                "sources": json.dumps([str(p) for p in prediction_paths]),
                "criteria": json.dumps(list(store.CRITERIA)),
            }
            conn.executemany("INSERT INTO meta(key, value) VALUES (?, ?)", list(meta.items()))
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.close()
        if out.exists():
            release_unused(out)
        tmp.replace(out)
    finally:
        for p in (tmp, Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            p.unlink(missing_ok=True)
    return {"cases": len(chosen), "systems": names, "warnings": warnings, "path": str(out)}


def release_unused(path: Path) -> None:
    """Make sure no other process has the study open, then let SQLite fold its -wal in and remove it.

    SQLite's own lock says whether a connection is open: with ``locking_mode=EXCLUSIVE``, ``BEGIN
    EXCLUSIVE`` fails while any other connection (a running ``review serve``, between requests
    too) holds the WAL file. Deleting a -wal that a server still writes would lose its ratings.
    """
    try:
        conn = store.sqlite3.connect(path, isolation_level=None, timeout=0)
    except store.sqlite3.DatabaseError:
        return
    try:
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("ROLLBACK")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the old study's last writes, then the WAL emptied
    except store.sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "busy" in str(exc):
            raise RadLlamaError(
                f"{path} is in use by another process (a running `radllama review serve`?): stop it before "
                "replacing the study"
            ) from exc
    except store.sqlite3.DatabaseError:
        pass  # not a SQLite file: nothing of SQLite's to protect
    finally:
        conn.close()  # the last connection: SQLite removes its own -wal
    for suffix in ("-wal", "-shm"):  # what is left is nobody's (checked above)
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def _fill(
    conn: store.sqlite3.Connection,
    preds: list[SystemPredictions],
    chosen: list[str],
    rng: random.Random,
    include_reference: bool,
) -> None:
    for position, case_id in enumerate(chosen, 1):
        first = preds[0].records[case_id]
        seen = _seen_flag(preds, case_id)
        conn.execute(
            "INSERT INTO cases(position, case_id, findings, reference, seen_findings) VALUES (?, ?, ?, ?, ?)",
            (position, case_id, str(first["findings"]), str(first["reference"]), seen),
        )
        entries = [(p.system, str(p.records[case_id]["prediction"]).strip()) for p in preds]
        if include_reference:
            entries.append((store.REFERENCE_SYSTEM, str(first["reference"]).strip()))
        rng.shuffle(entries)  # per-case order, so position says nothing about the system
        for slot, (system, text) in enumerate(entries):
            conn.execute(
                "INSERT INTO candidates(candidate_id, case_position, slot, system, text) VALUES (?,?,?,?,?)",
                ("c" + secrets.token_hex(8), position, slot, system, text),
            )
