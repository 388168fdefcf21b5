"""Seeded splits, seen-in-train flags, files, manifest and the `radllama data openi` CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from radllama.data.openi import build_openi_splits
from radllama.data.splits import SPLIT_NAMES, mark_seen, random_split
from radllama.errors import RadLlamaError

FIXTURES = Path(__file__).parent / "fixtures" / "openi"
OFFLINE_URL = "http://127.0.0.1:9/NLMCXR_reports.tgz"
TEMPLATES = ["Heart size normal. Lungs are clear.", "No pleural effusion. XXXX opacity left base."]


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADLLAMA_CACHE", str(tmp_path / "cache"))


def records(n: int) -> list[dict]:
    # Every third report reuses a template, as OpenI's templated reports do.
    return [
        {
            "id": f"CXR{i}",
            "findings": TEMPLATES[i % 2] if i % 3 == 0 else f"Finding number {i}.",
            "impression": f"Impression {i % 5}.",
        }
        for i in range(n)
    ]


def report_collection(tmp_path: Path, n: int = 40) -> Path:
    """A .tgz of ``n`` valid reports (from fixture 1.xml) plus the fixture oddities."""
    base = (FIXTURES / "1.xml").read_text()
    folder = tmp_path / "xml"
    folder.mkdir()
    for rec in records(n):
        text = base.replace('"CXR1"', f'"{rec["id"]}"')
        text = text.replace(
            text[text.index("The cardiac") : text.index("</AbstractText>", text.index("The cardiac"))],
            rec["findings"],
        )
        (folder / f"{rec['id']}.xml").write_text(text.replace("Normal chest x-XXXX.", rec["impression"]))
    for name in ("3.xml", "4.xml", "7.xml"):
        (folder / name).write_bytes((FIXTURES / name).read_bytes())
    tgz = tmp_path / "NLMCXR_reports.tgz"
    with tarfile.open(tgz, "w:gz") as tar:
        for file in sorted(folder.iterdir()):
            tar.add(file, arcname=f"ecgen-radiology/{file.name}")
    return tgz


def run_cli(*args: str) -> subprocess.CompletedProcess:
    # A wide console: rich would otherwise wrap the one-line error at 80 columns in a pipe.
    env = {**os.environ, "COLUMNS": "1000"}
    cmd = [sys.executable, "-m", "radllama.cli", *args]
    return subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)


def test_split_sizes_disjoint_and_complete() -> None:
    splits = random_split(records(50), seed=0, test_size=8, validation_size=5)
    assert {k: len(v) for k, v in splits.items()} == {"train": 37, "validation": 5, "test": 8}
    ids = [{r["id"] for r in splits[name]} for name in SPLIT_NAMES]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2]) and not (ids[1] & ids[2])
    assert set().union(*ids) == {f"CXR{i}" for i in range(50)}


def test_split_is_deterministic_and_seed_dependent() -> None:
    a = random_split(records(50), seed=0, test_size=8, validation_size=5)
    b = random_split(list(reversed(records(50))), seed=0, test_size=8, validation_size=5)
    c = random_split(records(50), seed=1, test_size=8, validation_size=5)
    assert a == b  # input order does not matter
    assert a["test"] != c["test"]


def test_split_too_small_is_a_clear_error() -> None:
    with pytest.raises(RadLlamaError, match="too few"):
        random_split(records(10), test_size=8, validation_size=2)


def test_mark_seen_compares_normalised_findings() -> None:
    splits = {
        "train": [{"findings": "Heart size normal.  Lungs clear.", "impression": "Normal."}],
        "validation": [],
        "test": [
            {"findings": "heart size normal. lungs clear.", "impression": "normal."},
            {"findings": "Heart size enlarged.", "impression": "Cardiomegaly."},
        ],
    }
    fractions = mark_seen(splits)
    assert [r["seen_findings"] for r in splits["test"]] == [True, False]
    assert [r["seen_impression"] for r in splits["test"]] == [True, False]
    assert fractions == {"test_findings": 0.5, "test_impression": 0.5}
    assert "seen_findings" not in splits["train"][0]


def test_build_writes_files_and_manifest(tmp_path: Path) -> None:
    tgz = report_collection(tmp_path)
    out = tmp_path / "missing" / "parent" / "split"  # missing parents are created
    manifest = build_openi_splits(out, source=str(tgz), seed=3, test_size=8, validation_size=4)
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk == manifest
    assert manifest["counts"] == {"train": 28, "validation": 4, "test": 8}
    assert manifest["total"] == 43 and manifest["kept"] == 40
    assert manifest["dropped"] == {
        "missing_findings": {"count": 1, "ids": ["CXR3"]},
        "missing_impression": {"count": 1, "ids": ["CXR4"]},
    }
    assert manifest["malformed_files"] == {"count": 1, "names": ["ecgen-radiology/7.xml"]}
    assert manifest["seed"] == 3 and manifest["source_location"] == str(tgz)
    test = [json.loads(line) for line in (out / "test.jsonl").read_text().splitlines()]
    train = [json.loads(line) for line in (out / "train.jsonl").read_text().splitlines()]
    train_findings = {r["findings"].lower() for r in train}
    for rec in test:
        assert rec["seen_findings"] == (rec["findings"].lower() in train_findings)
        assert set(rec) >= {"id", "findings", "impression", "indication", "comparison", "mesh", "source"}
    seen = sum(r["seen_findings"] for r in test) / len(test)
    assert manifest["seen_in_train"]["test_findings"] == round(seen, 4)
    assert not list(out.glob(".*.tmp"))


def test_second_build_reuses_complete_split(tmp_path: Path) -> None:
    tgz = report_collection(tmp_path)
    out = tmp_path / "split"
    first = build_openi_splits(out, source=str(tgz), test_size=8, validation_size=4)
    stamp = (out / "train.jsonl").stat().st_mtime_ns
    assert build_openi_splits(out, source=str(tgz), test_size=8, validation_size=4) == first
    assert (out / "train.jsonl").stat().st_mtime_ns == stamp
    other = build_openi_splits(out, source=str(tgz), seed=1, test_size=8, validation_size=4)
    assert other["seed"] == 1 and (out / "train.jsonl").stat().st_mtime_ns != stamp


def test_cli_same_seed_gives_identical_files(tmp_path: Path) -> None:
    tgz = str(report_collection(tmp_path))
    sizes = ["--test-size", "8", "--validation-size", "4"]
    for name, seed in (("a", "0"), ("b", "0"), ("c", "5")):
        proc = run_cli("data", "openi", "--out", str(tmp_path / name), "--source", tgz, "--seed", seed, *sizes)
        assert proc.returncode == 0, proc.stderr
    assert "test findings seen in train" in proc.stderr
    for split in SPLIT_NAMES:
        assert (tmp_path / "a" / f"{split}.jsonl").read_bytes() == (tmp_path / "b" / f"{split}.jsonl").read_bytes()
    assert (tmp_path / "a" / "test.jsonl").read_bytes() != (tmp_path / "c" / "test.jsonl").read_bytes()


def test_cli_corrupt_archive_exits_1_and_writes_nothing(tmp_path: Path) -> None:
    full = report_collection(tmp_path).read_bytes()
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(full[: len(full) // 2])
    out = tmp_path / "out"
    proc = run_cli(
        "data", "openi", "--out", str(out), "--source", str(cut), "--test-size", "2", "--validation-size", "1"
    )
    assert proc.returncode == 1
    assert "corrupt or truncated" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()


def test_cli_output_under_a_file_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    tgz = str(report_collection(tmp_path))
    proc = run_cli(
        "data",
        "openi",
        "--out",
        str(blocker / "out"),
        "--source",
        tgz,
        "--test-size",
        "2",
        "--validation-size",
        "1",
    )
    assert proc.returncode == 1 and "cannot create output folder" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write into read-only folders")
def test_cli_read_only_output_is_a_clear_error(tmp_path: Path) -> None:
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o500)
    try:
        tgz = str(report_collection(tmp_path))
        proc = run_cli(
            "data", "openi", "--out", str(out), "--source", tgz, "--test-size", "2", "--validation-size", "1"
        )
    finally:
        out.chmod(0o700)
    assert proc.returncode == 1 and "not writable" in proc.stderr
    assert list(out.iterdir()) == []
