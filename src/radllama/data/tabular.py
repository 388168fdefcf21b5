"""Any CSV or JSONL table of reports → splits, keeping each group (patient) in one split."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from radllama.data import splits as sp
from radllama.data.records import make_record, missing_reason
from radllama.errors import RadLlamaError
from radllama.io import read_jsonl
from radllama.provenance import file_digest

SOURCE_NAME = "table"
# Column names that usually hold a patient id (MIMIC's subject_id, a hospital's MRN, ...).
_PATIENT_LIKE = re.compile(r"patient|subject|mrn|person|pat_?id", re.IGNORECASE)


def read_table(path: Path) -> tuple[Iterable[dict], list[str]]:
    """Rows (as dicts) and column names of a ``.csv``, ``.jsonl`` or ``.parquet`` file.

    Parquet rows are streamed a row group at a time (an archive export can be large).
    """
    path = Path(path)
    if not path.is_file():
        raise RadLlamaError(f"--input {path}: no such file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        return _parquet_rows(path)
    if suffix == ".jsonl":
        rows = read_jsonl(path)  # raises clear errors for bad UTF-8 / JSON, naming the line
        columns = sorted({key for row in rows for key in row})
        return rows, columns
    if suffix != ".csv":
        raise RadLlamaError(f"--input {path}: expected a .csv, .jsonl or .parquet file")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")  # tolerate the BOM Excel writes
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise RadLlamaError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from exc
    try:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        rows = list(reader)
    except csv.Error as exc:
        raise RadLlamaError(f"{path}: malformed CSV ({exc})") from exc
    return rows, list(reader.fieldnames or [])


def _parquet_rows(path: Path) -> tuple[Iterator[dict], list[str]]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise RadLlamaError("reading Parquet needs pyarrow: pip install 'radllama[parquet]'") from exc
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises its own ArrowInvalid/OSError kinds for a bad file
        raise RadLlamaError(f"{path}: not a readable Parquet file ({exc})") from exc

    def rows() -> Iterator[dict]:
        for batch in table.iter_batches(batch_size=10_000):
            yield from batch.to_pylist()

    return rows(), list(table.schema_arrow.names)


def group_split(records: list[dict], seed: int, test_frac: float, validation_frac: float) -> dict[str, list[dict]]:
    """Split so that every group lies in one split, with about the requested fractions of records.

    Groups are sorted, shuffled with ``numpy.random.default_rng(seed)``, and handed out in that
    order to test until it holds ``test_frac`` of the records, then to validation, then train.
    """
    if test_frac < 0 or validation_frac < 0 or test_frac + validation_frac >= 1:
        raise RadLlamaError("--test-frac and --validation-frac must be >= 0 and sum to less than 1")
    by_group: dict[str, list[dict]] = {}
    for rec in records:
        by_group.setdefault(rec["group"], []).append(rec)
    groups = sorted(by_group)
    order = [groups[i] for i in np.random.default_rng(seed).permutation(len(groups))]
    targets = {"test": round(test_frac * len(records)), "validation": round(validation_frac * len(records))}
    splits: dict[str, list[dict]] = {name: [] for name in sp.SPLIT_NAMES}
    current = iter(("test", "validation", "train"))
    name = next(current)
    for group in order:
        while name != "train" and len(splits[name]) >= targets[name]:
            name = next(current)
        splits[name].extend(by_group[group])
    if not splits["train"]:
        raise RadLlamaError(f"{len(groups)} groups are too few to leave any for training")
    return {name: sorted(recs, key=lambda r: r["id"]) for name, recs in splits.items()}


def build_table_splits(
    input_path: Path,
    out_dir: Path,
    findings_col: str,
    impression_col: str,
    id_col: str | None = None,
    group_col: str | None = None,
    seed: int = 0,
    test_frac: float = 0.15,
    validation_frac: float = 0.1,
    deidentify: bool = False,
) -> dict:
    """Write group-disjoint splits from a CSV/JSONL table; returns the manifest.

    Args:
        input_path: ``.csv`` (header row) or ``.jsonl`` file.
        out_dir: output folder.
        findings_col: column with the findings text.
        impression_col: column with the impression text.
        id_col: column with a unique report id (default: ``row-<line>``).
        group_col: column with the patient/group (default: every report is its own group, and the
            manifest's ``warnings`` say that one patient's reports may span splits).
        seed: seed of the group shuffle.
        test_frac: fraction of reports for test.
        validation_frac: fraction of reports for validation.
        deidentify: replace PHI in the text fields with typed placeholders (``radllama.deid``); the id
            and group columns are kept as they are (the split needs them), so choose ones that are not PHI.
    """
    input_path = Path(input_path)
    rows, columns = read_table(input_path)
    for col in (findings_col, impression_col, id_col, group_col):
        if col is not None and col not in columns:
            raise RadLlamaError(f"{input_path}: no column {col!r} (columns: {', '.join(columns) or 'none'})")
    records: dict[str, dict] = {}
    dropped: dict[str, list[str]] = {}
    total = 0
    for n, row in enumerate(rows, 1):
        total = n
        rid = str(row.get(id_col) or "").strip() if id_col else f"row-{n}"
        rid = rid or f"row-{n}"
        rec = make_record(rid, str(row.get(findings_col) or ""), str(row.get(impression_col) or ""), SOURCE_NAME)
        rec["group"] = str(row.get(group_col) or "").strip() if group_col else rid
        reason = missing_reason(rec["findings"], rec["impression"])
        if reason is None and rid in records:
            reason = "duplicate_id"
        if reason:
            dropped.setdefault(reason, []).append(rid)
        else:
            records[rid] = rec
    if not records:
        raise RadLlamaError(f"{input_path}: no row has both {findings_col!r} and {impression_col!r}")
    splits = group_split(list(records.values()), seed, test_frac, validation_frac)
    warnings = _grouping_warnings(list(records.values()), columns, group_col)
    manifest = {
        "source": SOURCE_NAME,
        "source_location": str(input_path),
        "source_sha256": file_digest(input_path),
        "columns": {"findings": findings_col, "impression": impression_col, "id": id_col, "group": group_col},
        "seed": seed,
        "requested_fractions": {"test": test_frac, "validation": validation_frac},
        "total": total,
        "kept": len(records),
        "dropped": sp.dropped_summary(dropped),
        "groups": {name: len({r["group"] for r in recs}) for name, recs in splits.items()},
        "patient_level": group_col is not None,
        "warnings": warnings,
    }
    return sp.write_splits(out_dir, splits, manifest, deidentify=deidentify)


def _grouping_warnings(records: list[dict], columns: list[str], group_col: str | None) -> list[str]:
    """What the user must know about how patient-disjoint these splits are."""
    if group_col is None:
        hint = [c for c in columns if _PATIENT_LIKE.search(c)]
        return [
            "no --group-col: every report is its own group, so reports of one patient may land in different "
            "splits (test reports whose patient is also in train)"
            + (f"; column {', '.join(map(repr, hint))} looks like a patient id" if hint else "")
        ]
    empty = sum(1 for r in records if not r["group"])
    if empty:
        return [f"{empty} report(s) have no {group_col!r}: they are kept together as one group"]
    return []
