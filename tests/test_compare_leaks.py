"""Train/test overlap in `radllama compare`: a shared id (the same case on both sides, or in a local
model's retrieval index) is a leak and is refused; shared findings texts are expected in templated
reports (OpenI) and are counted and reported, not refused."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from radllama.data.records import make_record
from radllama.errors import RadLlamaError
from radllama.evaluate.compare import run_comparison
from radllama.io import write_jsonl

FINDINGS = ["The heart is normal in size.", "Mild cardiomegaly.", "No pneumothorax.", "Spine degenerative changes."]


def _records(prefix: str, n: int, shared_findings: int = 0) -> list[dict]:
    return [
        make_record(f"{prefix}{i}", FINDINGS[i % 4] + ("" if i < shared_findings else f" Case {prefix}{i}."),
                    FINDINGS[(i + 1) % 4], "openi")
        for i in range(n)
    ]  # fmt: skip


def _config(tmp_path: Path, train: Path, test: Path, systems: list[dict] | None = None) -> Path:
    config = {
        "split": {"test": str(test), "train": str(train)},
        "bootstrap": {"resamples": 20, "seed": 0},
        "systems": systems or [{"name": "tfidf-retrieval", "kind": "baseline", "baseline": "tfidf-retrieval"}],
    }
    path = tmp_path / "compare.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_same_file_as_train_and_test_is_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "test.jsonl", _records("te", 6))
    cfg = _config(tmp_path, tmp_path / "test.jsonl", tmp_path / "test.jsonl")
    with pytest.raises(RadLlamaError, match=r"split.train and the test split share 6 ids \(te0, te1, te2, …\)"):
        run_comparison(cfg, out_dir=tmp_path / "out")
    assert not list((tmp_path / "out").rglob("*.jsonl"))  # refused before any system ran


def test_one_shared_case_is_refused(tmp_path: Path) -> None:
    test = _records("te", 6)
    write_jsonl(tmp_path / "train.jsonl", [*_records("tr", 10), test[3]])
    write_jsonl(tmp_path / "test.jsonl", test)
    with pytest.raises(RadLlamaError, match=r"share 1 id \(te3\)"):
        run_comparison(_config(tmp_path, tmp_path / "train.jsonl", tmp_path / "test.jsonl"), out_dir=tmp_path / "o")


def test_shared_findings_texts_are_counted_not_refused(tmp_path: Path) -> None:
    write_jsonl(tmp_path / "train.jsonl", _records("tr", 10, shared_findings=4))
    write_jsonl(tmp_path / "test.jsonl", _records("te", 6, shared_findings=3))
    result = run_comparison(
        _config(tmp_path, tmp_path / "train.jsonl", tmp_path / "test.jsonl"), out_dir=tmp_path / "o"
    )
    overlap = result["metrics"]["train_test_overlap"]
    assert overlap == {"shared_ids": 0, "shared_findings": 3, "test_cases": 6}


def test_a_local_model_whose_retrieval_index_holds_test_cases_is_refused(tmp_path: Path) -> None:
    test = _records("te", 6)
    write_jsonl(tmp_path / "train.jsonl", _records("tr", 10))
    write_jsonl(tmp_path / "test.jsonl", test)
    adapter = tmp_path / "adapter"
    adapter.mkdir()
    (tmp_path / "base").mkdir()  # the check comes before any weights are read
    write_jsonl(adapter / "retrieval_index.jsonl", [*_records("tr", 10), test[0], test[5]])
    local = {"name": "leaky", "kind": "local", "model": {"path": str(tmp_path / "base"), "adapter": str(adapter)}}
    cfg = _config(tmp_path, tmp_path / "train.jsonl", tmp_path / "test.jsonl", [local])
    with pytest.raises(
        RadLlamaError, match=r"leaky: .*retrieval_index.jsonl and the test split share 2 ids \(te0, te5\)"
    ):
        run_comparison(cfg, out_dir=tmp_path / "o")
    assert not (tmp_path / "o" / "predictions" / "leaky.jsonl").exists()
