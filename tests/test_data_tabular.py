"""CSV/JSONL tables → group-disjoint splits, and their input errors."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radllama.data.splits import SPLIT_NAMES
from radllama.data.tabular import build_table_splits
from radllama.errors import RadLlamaError


def write_csv(path: Path, n_patients: int = 30) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["report_id", "patient", "findings_text", "impression_text"])
        for p in range(n_patients):
            for k in range(1 + p % 4):  # 1 to 4 reports per patient
                writer.writerow([f"r{p}-{k}", f"P{p}", f"Findings {p} {k}. Lungs clear.", f"Impression {p}."])
        writer.writerow(["r-empty", "P0", "", "Impression without findings."])
    return path


def read(out: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (out / f"{name}.jsonl").read_text().splitlines()]


def test_groups_never_span_splits(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    out = tmp_path / "split"
    manifest = build_table_splits(
        src, out, "findings_text", "impression_text", id_col="report_id", group_col="patient", seed=1
    )
    groups = {name: {r["group"] for r in read(out, name)} for name in SPLIT_NAMES}
    assert not (groups["train"] & groups["test"]) and not (groups["train"] & groups["validation"])
    assert not (groups["validation"] & groups["test"])
    assert manifest["kept"] == 73 and manifest["total"] == 74
    assert manifest["dropped"] == {"missing_findings": {"count": 1, "ids": ["r-empty"]}}
    assert sum(manifest["counts"].values()) == 73
    # Roughly the requested fractions (whole groups of up to 4 reports make it approximate).
    assert 11 <= manifest["counts"]["test"] <= 11 + 3 and 7 <= manifest["counts"]["validation"] <= 7 + 3
    assert manifest["groups"]["train"] == len(groups["train"])


def test_same_seed_same_split_other_seed_differs(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    kwargs = {"id_col": "report_id", "group_col": "patient"}
    for name, seed in (("a", 0), ("b", 0), ("c", 7)):
        build_table_splits(src, tmp_path / name, "findings_text", "impression_text", seed=seed, **kwargs)
    assert (tmp_path / "a/test.jsonl").read_bytes() == (tmp_path / "b/test.jsonl").read_bytes()
    assert (tmp_path / "a/test.jsonl").read_bytes() != (tmp_path / "c/test.jsonl").read_bytes()


def test_jsonl_without_ids_uses_row_numbers(tmp_path: Path) -> None:
    src = tmp_path / "reports.jsonl"
    src.write_text("".join(json.dumps({"f": f"Finding {i}.", "i": f"Impression {i}."}) + "\n" for i in range(20)))
    manifest = build_table_splits(src, tmp_path / "out", "f", "i", test_frac=0.2, validation_frac=0.1)
    assert manifest["counts"] == {"train": 14, "validation": 2, "test": 4}
    assert read(tmp_path / "out", "test")[0]["id"].startswith("row-")


def test_fraction_errors(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    with pytest.raises(RadLlamaError, match="sum to less than 1"):
        build_table_splits(
            src, tmp_path / "out", "findings_text", "impression_text", test_frac=0.6, validation_frac=0.5
        )


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # A wide console: rich would otherwise wrap the one-line error at 80 columns in a pipe.
    env = {**os.environ, "COLUMNS": "1000"}
    cmd = [sys.executable, "-m", "radllama.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_cli_missing_column_names_file_and_column(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    out = tmp_path / "out"
    proc = run_cli(
        "data",
        "table",
        "--input",
        str(src),
        "--findings-col",
        "findings",
        "--impression-col",
        "impression_text",
        "--out",
        str(out),
    )
    assert proc.returncode == 1
    error_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error_lines) == 1 and str(src) in error_lines[0] and "'findings'" in error_lines[0]
    assert not out.exists()


def test_cli_invalid_utf8_is_a_clear_error(tmp_path: Path) -> None:
    src = tmp_path / "reports.csv"
    src.write_bytes(b"findings,impression\nHeart normal.,Normal.\nHeart \xff big.,Cardiomegaly.\n")
    proc = run_cli(
        "data",
        "table",
        "--input",
        str(src),
        "--findings-col",
        "findings",
        "--impression-col",
        "impression",
        "--out",
        str(tmp_path / "out"),
    )
    assert proc.returncode == 1 and f"{src}:3: not valid UTF-8" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_happy_path(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    out = tmp_path / "out"
    proc = run_cli(
        "data",
        "table",
        "--input",
        str(src),
        "--findings-col",
        "findings_text",
        "--impression-col",
        "impression_text",
        "--group-col",
        "patient",
        "--out",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "manifest.json").read_text())["source"] == "table"


def table_args(src: Path, out: Path, *extra: str) -> list[str]:
    return ["data", "table", "--input", str(src), "--findings-col", "findings_text",
            "--impression-col", "impression_text", "--out", str(out), *extra]  # fmt: skip


def test_cli_without_group_col_warns_that_patients_may_span_splits(tmp_path: Path) -> None:
    src = write_csv(tmp_path / "reports.csv")
    proc = run_cli(*table_args(src, tmp_path / "out"))
    assert proc.returncode == 0, proc.stderr
    warning = next(line for line in proc.stderr.splitlines() if line.startswith("warning:"))
    assert "no --group-col" in warning and "one patient may land in different splits" in warning
    assert "column 'patient' looks like a patient id" in warning
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["patient_level"] is False and manifest["warnings"] == [warning.removeprefix("warning: ")]
    # And it is true: without the patient column, this table's patients do span splits.
    patients = {name: {r["id"].split("-")[0] for r in read(tmp_path / "out", name)} for name in SPLIT_NAMES}
    assert patients["train"] & patients["test"]

    proc = run_cli(*table_args(src, tmp_path / "grouped", "--group-col", "patient"))
    assert proc.returncode == 0 and "warning" not in proc.stderr, proc.stderr
    manifest = json.loads((tmp_path / "grouped" / "manifest.json").read_text())
    assert manifest["patient_level"] is True and manifest["warnings"] == []


def test_reports_without_a_patient_are_one_group_and_said_so(tmp_path: Path) -> None:
    src = tmp_path / "reports.jsonl"
    rows = [{"f": f"Finding {i}.", "i": f"Impression {i}.", "p": "" if i < 3 else f"P{i}"} for i in range(20)]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    manifest = build_table_splits(src, tmp_path / "out", "f", "i", group_col="p")
    assert manifest["warnings"] == ["3 report(s) have no 'p': they are kept together as one group"]
    assert sum(manifest["groups"].values()) == 18  # 17 patients + the patient-less group


def test_parquet_gives_the_csv_splits(tmp_path: Path) -> None:
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa

    src = write_csv(tmp_path / "reports.csv")
    with src.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "reports.parquet", row_group_size=7)
    kwargs = {"id_col": "report_id", "group_col": "patient"}
    a = build_table_splits(src, tmp_path / "a", "findings_text", "impression_text", **kwargs)
    b = build_table_splits(tmp_path / "reports.parquet", tmp_path / "b", "findings_text", "impression_text", **kwargs)
    assert (a["total"], a["kept"], a["dropped"]) == (b["total"], b["kept"], b["dropped"]) == (74, 73, a["dropped"])
    for name in SPLIT_NAMES:
        assert (tmp_path / "a" / f"{name}.jsonl").read_bytes() == (tmp_path / "b" / f"{name}.jsonl").read_bytes()
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(RadLlamaError, match="not a readable Parquet file"):
        build_table_splits(tmp_path / "bad.parquet", tmp_path / "c", "findings_text", "impression_text")
