"""A synthetic archive of N distinct reports built from OpenI text, for scale benchmarks only.

Never use it for quality figures: its reports are OpenI sentences shuffled and mixed, so
nothing a model scores on them means anything clinically. It exists so that every stage
(``radllama data table|mimic-cxr``, retrieval, training input, generation, evaluation) can be
timed at 10k / 100k / 1M reports (``bench/bench_scale.py``).

    python bench/make_archive.py --openi /tmp/openi-data --n 100000 --out /tmp/archive-100k

writes ``reports.csv``, ``reports.jsonl``, ``reports.parquet`` (columns report_id, patient_id,
findings, impression; 3 reports per patient) and a MIMIC-CXR layout: ``mimic/files/pXX/
pXXXXXXXX/sXXXXXXXX.txt``, ``mimic/mimic-cxr-2.0.0-split.csv`` and ``mimic-cxr-reports.zip``.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import re
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPORTS_PER_PATIENT = 3
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


def openi_text(folder: Path) -> tuple[list[list[str]], list[str]]:
    """Sentences of each OpenI findings text, and the impressions (all splits: text, not labels)."""
    findings, impressions = [], []
    for name in ("train", "validation", "test"):
        path = folder / f"{name}.jsonl"
        if not path.exists():
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            rec = json.loads(line)
            findings.append([s for s in _SENTENCE.split(rec["findings"].strip()) if s])
            impressions.append(rec["impression"].strip())
    if not findings:
        raise SystemExit(f"{folder}: no OpenI splits (run: radllama data openi --out {folder})")
    return findings, impressions


def synthetic_reports(folder: Path, n: int, seed: int) -> Iterator[dict]:
    """N distinct reports: one OpenI report's sentences, shuffled, with 1-2 borrowed sentences."""
    findings, impressions = openi_text(folder)
    pool = [s for sents in findings for s in sents]
    rng = np.random.default_rng(seed)
    seen: set[bytes] = set()  # 8-byte digests, not texts: a million keys stay small
    made = 0
    while made < n:
        base = int(rng.integers(len(findings)))
        sents = list(findings[base])
        for _ in range(int(rng.integers(1, 3))):
            sents.insert(int(rng.integers(len(sents) + 1)), pool[int(rng.integers(len(pool)))])
        rng.shuffle(sents)
        text = " ".join(sents)
        key = hashlib.blake2b(text.lower().encode(), digest_size=8).digest()
        if key in seen:
            continue
        seen.add(key)
        study = 50_000_000 + made
        patient = 10_000_000 + made // REPORTS_PER_PATIENT
        yield {"report_id": f"s{study}", "patient_id": f"p{patient}", "findings": text,
               "impression": impressions[base]}  # fmt: skip
        made += 1


def write_archive(reports: Iterator[dict], out: Path, batch: int = 50_000) -> int:
    """Write the tables and the MIMIC-CXR folder in one pass, ``batch`` reports at a time."""
    out.mkdir(parents=True, exist_ok=True)
    mimic = out / "mimic"
    columns = ["report_id", "patient_id", "findings", "impression"]
    schema = pa.schema([(c, pa.string()) for c in columns])
    n = 0
    with (
        open(out / "reports.csv", "w", newline="", encoding="utf-8") as csv_file,
        open(out / "reports.jsonl", "w", encoding="utf-8") as jsonl,
        pq.ParquetWriter(out / "reports.parquet", schema) as parquet,
        open(mimic.with_name("mimic-split.tmp"), "w", newline="", encoding="utf-8") as split_file,
        zipfile.ZipFile(out / "mimic-cxr-reports.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf,
    ):
        table_writer = csv.DictWriter(csv_file, fieldnames=columns)
        table_writer.writeheader()
        splits = csv.writer(split_file)
        splits.writerow(["dicom_id", "study_id", "subject_id", "split"])
        rows: list[dict] = []
        for rec in reports:
            rows.append(rec)
            table_writer.writerow(rec)
            jsonl.write(json.dumps(rec) + "\n")
            study, subject = rec["report_id"][1:], rec["patient_id"][1:]
            name = f"files/p{subject[:2]}/p{subject}/s{study}.txt"
            text = (
                "                                 FINAL REPORT\n EXAMINATION:  CHEST (PA AND LAT)\n \n"
                f" FINDINGS: {rec['findings']}\n \n IMPRESSION: {rec['impression']}\n"
            )
            path = mimic / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            zf.writestr(name, text)
            # The official split is by patient: about 98% train, 1% validate, 1% test.
            bucket = int(subject) % 100
            split = "test" if bucket == 0 else "validate" if bucket == 1 else "train"
            splits.writerow([f"{study}-dicom", study, subject, split])
            n += 1
            if len(rows) == batch:
                parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
                rows = []
        if rows:
            parquet.write_table(pa.Table.from_pylist(rows, schema=schema))
    mimic.with_name("mimic-split.tmp").replace(mimic / "mimic-cxr-2.0.0-split.csv")
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--openi", type=Path, default=Path("/tmp/openi-data"), help="a `radllama data openi` folder")
    ap.add_argument("--n", type=int, required=True, help="number of distinct reports")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    n = write_archive(synthetic_reports(args.openi, args.n, args.seed), args.out)
    print(f"{n} reports -> {args.out}")


if __name__ == "__main__":
    main()
