"""`radllama demo` as a user runs it (quick sizes, the real OpenI archive): every output written,
a rerun reuses every stage, and a rerun with other models never scores the old predictions."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from radllama.io import read_jsonl
from radllama.provenance import folder_digest, read_record

pytestmark = pytest.mark.slow


def demo(out: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([sys.executable, "-m", "radllama.cli", "demo", "--quick", "--out", str(out), *args],
                       capture_output=True, text=True, timeout=1200, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_quick_demo_then_other_models_scores_only_the_new_predictions(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    demo(out)
    for name in ("report.md", "metrics.json", "leaderboard.md", "cases.html", "predictions/radllama-mini-lora.jsonl"):
        assert (out / name).is_file(), name
    report = (out / "report.md").read_text(encoding="utf-8")
    assert "#### Copying" in report and "| radllama-mini-lora-mbr | " in report  # the "why" of issue #13
    assert "## Privacy" in report and "Extractable memorization" in report and (out / "audit.json").is_file()
    again = demo(out)
    assert again.stdout.count("reusing") + again.stderr.count("reusing") >= 2  # both training stages

    demo(out, "--seed", "1")  # other models in the same folder (as a quick run followed by the full one)
    preds = out / "predictions" / "radllama-mini-lora.jsonl"
    record = read_record(preds)
    assert record["base"] == folder_digest(out / "mini" / "base")
    assert record["adapter"] == folder_digest(out / "mini" / "lora")
    cases = out / "test_cases.jsonl"
    fresh = tmp_path / "fresh.jsonl"
    r = subprocess.run([sys.executable, "-m", "radllama.cli", "generate", "--model", str(out / "mini" / "base"),
                        "--adapter", str(out / "mini" / "lora"), "--input", str(cases), "--output", str(fresh),
                        "--max-new-tokens", "64", "--batch-size", "64", "--system", "radllama-mini-lora"],
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert [p["prediction"] for p in read_jsonl(preds)] == [p["prediction"] for p in read_jsonl(fresh)]
