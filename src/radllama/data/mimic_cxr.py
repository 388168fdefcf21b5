"""MIMIC-CXR free-text reports (``files/pXX/pXXXXXXXX/sXXXXXXXX.txt``) with the official split.

Reads a folder or a zip such as ``mimic-cxr-reports.zip`` and ``mimic-cxr-2.0.0-split.csv(.gz)``
(one row per DICOM, so several rows per study). MIMIC text is credentialed: nothing here logs it.
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

from radllama.data import splits as sp
from radllama.data.records import make_record, missing_reason
from radllama.data.sections import findings_and_impression, split_sections
from radllama.errors import RadLlamaError
from radllama.progress import track
from radllama.provenance import file_digest

SOURCE_NAME = "mimic-cxr"
# Official split names → ours.
SPLIT_VALUES = {"train": "train", "validate": "validation", "test": "test"}
_REPORT_PATH = re.compile(r"(?:^|/)p\d+/(p\d+)/(s\d+)\.txt$")
_CSV_COLUMNS = ("dicom_id", "study_id", "subject_id", "split")


def read_split_csv(path: Path) -> dict[str, str]:
    """``{"s<study_id>": "train" | "validation" | "test"}`` from the official split CSV.

    Raises:
        RadLlamaError: missing file or column, unknown split value, or a study in two splits.
    """
    path = Path(path)
    if not path.is_file():
        raise RadLlamaError(f"--split-csv {path}: no such file")
    opener = gzip.open if path.suffix == ".gz" else open
    studies: dict[str, str] = {}
    try:
        with opener(path, "rt", encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in ("study_id", "split") if c not in (reader.fieldnames or [])]
            if missing:
                raise RadLlamaError(f"{path}: no column {missing[0]!r} (expected {', '.join(_CSV_COLUMNS)})")
            for lineno, row in enumerate(reader, 2):
                split = SPLIT_VALUES.get((row["split"] or "").strip())
                if split is None:
                    raise RadLlamaError(f"{path}:{lineno}: unknown split {row['split']!r}")
                study = "s" + (row["study_id"] or "").strip().lstrip("s")
                if studies.setdefault(study, split) != split:
                    raise RadLlamaError(f"{path}:{lineno}: study {study} is in both {studies[study]} and {split}")
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as exc:
        raise RadLlamaError(f"{path}: cannot read split CSV ({exc})") from exc
    return studies


def _iter_reports(path: Path) -> Iterator[tuple[str, str, bytes]]:
    """Yield ``(relative name, study id, raw bytes)`` for every report in a folder or zip."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("s*.txt") if _REPORT_PATH.search(p.as_posix()))
        for file in track(files, "reading MIMIC-CXR reports"):
            name = file.relative_to(path).as_posix()
            yield name, file.stem, file.read_bytes()
        return
    try:
        with zipfile.ZipFile(path) as zf:
            names = sorted(n for n in zf.namelist() if _REPORT_PATH.search(n))
            for name in track(names, "reading MIMIC-CXR reports"):
                yield name, Path(name).stem, zf.read(name)
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise RadLlamaError(f"{path}: not a readable zip of reports ({exc})") from exc


def _sha256_reports(path: Path) -> str:
    if path.is_file():
        return file_digest(path)
    digest = hashlib.sha256()
    for file in sorted(path.rglob("s*.txt")):
        digest.update(file.relative_to(path).as_posix().encode() + b"\0" + file.read_bytes() + b"\0")
    return digest.hexdigest()


def build_mimic_cxr_splits(reports: Path, split_csv: Path, out_dir: Path, deidentify: bool = False) -> dict:
    """Write MIMIC-CXR findings→impression splits following the official split.

    Args:
        reports: folder holding ``files/pXX/...`` or a zip of it (``mimic-cxr-reports.zip``).
        split_csv: ``mimic-cxr-2.0.0-split.csv`` or its ``.gz``.
        out_dir: output folder.
        deidentify: replace PHI in the text fields with typed placeholders (``radllama.deid``);
            MIMIC's own ``___`` markers are kept.

    Returns:
        The manifest; studies lacking findings or impression are dropped and counted by reason,
        and reports with no findings/impression section at all are named.
    """
    reports, split_csv = Path(reports), Path(split_csv)
    if not reports.exists():
        raise RadLlamaError(f"--reports {reports}: no such file or folder")
    study_split = read_split_csv(split_csv)
    splits: dict[str, list[dict]] = {name: [] for name in sp.SPLIT_NAMES}
    dropped: dict[str, list[str]] = {}
    unsectioned: list[str] = []
    undecodable: list[str] = []
    total = 0
    seen: set[str] = set()
    for name, study, raw in _iter_reports(reports):
        total += 1
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable.append(name)
            continue
        findings, impression = findings_and_impression(text)
        reason = missing_reason(findings, impression)
        if not findings and not impression:
            reason = "no_sections"
            unsectioned.append(name)
        elif reason is None and study not in study_split:
            reason = "not_in_split_csv"
        elif reason is None and study in seen:
            reason = "duplicate_study"
        if reason:
            dropped.setdefault(reason, []).append(study)
            continue
        seen.add(study)
        subject = _REPORT_PATH.search(name).group(1)
        rec = make_record(study, findings, impression, SOURCE_NAME, **_context(text))
        rec["subject_id"] = subject
        splits[study_split[study]].append(rec)
    if total == 0:
        raise RadLlamaError(f"{reports}: no reports found (expected files/pXX/pXXXXXXXX/sXXXXXXXX.txt)")
    for records in splits.values():
        records.sort(key=lambda r: r["id"])
    manifest = {
        "source": SOURCE_NAME,
        "source_location": str(reports),
        "source_sha256": _sha256_reports(reports),
        "split_csv": str(split_csv),
        "split_csv_sha256": file_digest(split_csv),
        "seed": None,  # the official split: nothing random
        "total": total,
        "kept": sum(len(v) for v in splits.values()),
        "dropped": sp.dropped_summary(dropped),
        "unsectioned_files": {"count": len(unsectioned), "names": sorted(unsectioned)},
        "malformed_files": {"count": len(undecodable), "names": sorted(undecodable)},
        "studies_in_csv_without_report": len(set(study_split) - seen - _all(dropped)),
    }
    return sp.write_splits(out_dir, splits, manifest, deidentify=deidentify)


def _all(dropped: dict[str, list[str]]) -> set[str]:
    return {study for ids in dropped.values() for study in ids}


def _context(text: str) -> dict[str, str]:
    """Indication and comparison sections, for the record's context fields."""
    found = {"indication": "", "comparison": ""}
    for name, body in split_sections(text):
        if name in found:
            found[name] = body
    return found


__all__ = ["build_mimic_cxr_splits", "read_split_csv"]
