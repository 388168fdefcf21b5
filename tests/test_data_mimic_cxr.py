"""MIMIC-CXR section parsing and splits, on invented reports in the official layout."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from radllama.data.mimic_cxr import build_mimic_cxr_splits, read_split_csv
from radllama.data.sections import findings_and_impression, normalize_section_name, split_sections
from radllama.errors import RadLlamaError

FIXTURES = Path(__file__).parent / "fixtures" / "mimic"
CSV = FIXTURES / "mimic-cxr-2.0.0-split.csv"
# A wide console: rich would otherwise wrap the one-line error at 80 columns in a pipe.
WIDE = {**os.environ, "COLUMNS": "1000"}


def report(rel: str) -> str:
    return (FIXTURES / "files" / rel).read_text()


@pytest.mark.parametrize(
    ("raw", "name"),
    [
        ("FINDINGS", "findings"),
        ("CONCLUSION", "impression"),
        ("SUMMARY", "impression"),
        ("IMPRESSON", "impression"),
        ("FINAL IMPRESSION", "impression"),
        ("FINDINGS AND IMPRESSION", "impression"),
        ("COMPARISONS", "comparison"),
        ("REASON FOR EXAM", "indication"),
        ("PA AND LATERAL VIEWS OF THE CHEST", "findings"),
        ("TECHNIQUE", "technique"),
    ],
)
def test_section_names_are_normalised(raw: str, name: str) -> None:
    assert normalize_section_name(raw) == name


def test_standard_report_sections() -> None:
    text = report("p10/p10000001/s50000001.txt")
    assert [n for n, _ in split_sections(text)] == [
        "preamble", "examination", "indication", "comparison", "findings", "impression",
    ]  # fmt: skip
    findings, impression = findings_and_impression(text)
    assert findings.startswith("The lungs are clear") and findings.endswith("Heart size is normal.")
    assert impression == "No acute cardiopulmonary process."


def test_conclusion_and_empty_duplicate_findings() -> None:
    findings, impression = findings_and_impression(report("p10/p10000001/s50000002.txt"))
    assert findings.startswith("Mild cardiomegaly.")
    assert impression == "Small left effusion."


def test_view_header_and_typo() -> None:
    findings, impression = findings_and_impression(report("p10/p10000002/s50000003.txt"))
    assert findings.startswith("Right lower lobe opacity")
    assert impression == "Right lower lobe pneumonia."


def test_unsectioned_report_gets_last_paragraph_only() -> None:
    sections = split_sections(report("p11/p11000004/s50000006.txt"))
    assert [n for n, _ in sections] == ["full report", "last_paragraph"]
    assert findings_and_impression(report("p11/p11000004/s50000006.txt")) == ("", "")


def test_trailing_section_does_not_leak_into_impression() -> None:
    _, impression = findings_and_impression(report("p12/p12000007/s50000009.txt"))
    assert impression == "No pneumothorax after chest tube removal."


def test_split_csv_dedupes_studies_and_renames_validate() -> None:
    studies = read_split_csv(CSV)
    assert studies["s50000001"] == "train" and studies["s50000003"] == "validation"
    assert len(studies) == 9


def test_split_csv_errors(tmp_path: Path) -> None:
    bad = tmp_path / "split.csv"
    bad.write_text("dicom_id,study_id,subject_id\nd1,1,2\n")
    with pytest.raises(RadLlamaError, match="no column 'split'"):
        read_split_csv(bad)
    bad.write_text("dicom_id,study_id,subject_id,split\nd1,1,2,train\nd2,1,2,test\n")
    with pytest.raises(RadLlamaError, match="both train and test"):
        read_split_csv(bad)
    bad.write_text("dicom_id,study_id,subject_id,split\nd1,1,2,dev\n")
    with pytest.raises(RadLlamaError, match="unknown split 'dev'"):
        read_split_csv(bad)


def check_outputs(out: Path, manifest: dict) -> None:
    assert manifest["counts"] == {"train": 3, "validation": 1, "test": 1}
    assert manifest["total"] == 9 and manifest["kept"] == 5
    assert {k: v["ids"] for k, v in manifest["dropped"].items()} == {
        "missing_findings": ["s50000004"],
        "missing_impression": ["s50000005"],
        "no_sections": ["s50000006"],
        "not_in_split_csv": ["s50000008"],
    }
    assert manifest["unsectioned_files"]["names"] == ["files/p11/p11000004/s50000006.txt"]
    assert manifest["studies_in_csv_without_report"] == 1
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    assert [r["id"] for r in train] == ["s50000001", "s50000002", "s50000009"]
    assert train[0]["indication"] == "___ year old woman with cough // eval for pneumonia"
    assert train[0]["source"] == "mimic-cxr" and train[0]["subject_id"] == "p10000001"
    test = json.loads((out / "test.jsonl").read_text())
    # s50000007 has the same findings text as the training report s50000001.
    assert test["id"] == "s50000007" and test["seen_findings"] is True and test["seen_impression"] is False


def test_build_from_folder(tmp_path: Path) -> None:
    out = tmp_path / "split"
    check_outputs(out, build_mimic_cxr_splits(FIXTURES, CSV, out))


def test_cli_from_zip_and_gzipped_csv(tmp_path: Path) -> None:
    archive = tmp_path / "mimic-cxr-reports.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for file in sorted((FIXTURES / "files").rglob("*.txt")):
            zf.write(file, file.relative_to(FIXTURES).as_posix())
    csv_gz = tmp_path / "mimic-cxr-2.0.0-split.csv.gz"
    csv_gz.write_bytes(gzip.compress(CSV.read_bytes()))
    out = tmp_path / "split"
    cmd = [sys.executable, "-m", "radllama.cli", "data", "mimic-cxr"]
    args = ["--reports", str(archive), "--split-csv", str(csv_gz), "--out", str(out)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False, env=WIDE)
    assert proc.returncode == 0, proc.stderr
    check_outputs(out, json.loads((out / "manifest.json").read_text()))


def test_cli_bad_zip_exits_1(tmp_path: Path) -> None:
    archive = tmp_path / "mimic-cxr-reports.zip"
    archive.write_bytes(b"PK\x03\x04 not really a zip")
    out = tmp_path / "split"
    cmd = [sys.executable, "-m", "radllama.cli", "data", "mimic-cxr"]
    args = ["--reports", str(archive), "--split-csv", str(CSV), "--out", str(out)]
    proc = subprocess.run([*cmd, *args], capture_output=True, text=True, check=False, env=WIDE)
    assert proc.returncode == 1 and "not a readable zip" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_undecodable_report_is_named(tmp_path: Path) -> None:
    reports = tmp_path / "reports"
    shutil.copytree(FIXTURES / "files", reports / "files")
    (reports / "files/p10/p10000001/s50000001.txt").write_bytes(b"\xff\xfe FINDINGS: broken\n")
    manifest = build_mimic_cxr_splits(reports, CSV, tmp_path / "out")
    assert manifest["malformed_files"]["names"] == ["files/p10/p10000001/s50000001.txt"]
    assert manifest["counts"]["train"] == 2
