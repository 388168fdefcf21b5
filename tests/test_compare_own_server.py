"""Issue #4's end-to-end comparison: baselines, a local model, and our own OpenAI-compatible
server (issue #5) as the remote system — all real, on loopback, on OpenI-format records."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
import yaml
from test_serve_support import BACKENDS, live_server, tiny_model_dir

from radllama.data.records import make_record
from radllama.evaluate.compare import run_comparison
from radllama.io import read_jsonl, write_jsonl

FINDINGS = [
    "The heart is normal in size. The lungs are clear.",
    "Mild cardiomegaly. Small left pleural effusion.",
    "No focal consolidation. No pneumothorax.",
    "Degenerative changes of the thoracic spine.",
]


def _records(prefix: str, n: int) -> list[dict]:
    return [
        {**make_record(f"{prefix}{i}", FINDINGS[i % 4] + f" Case {i}.", FINDINGS[(i + 1) % 4], "openi"),
         "seen_findings": i % 2 == 0}
        for i in range(n)
    ]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_compare_baselines_local_and_own_server(tmp_path: Path, monkeypatch, backend: str) -> None:
    model = tiny_model_dir()
    write_jsonl(tmp_path / "train.jsonl", _records("tr", 12))
    write_jsonl(tmp_path / "test.jsonl", _records("te", 6))
    monkeypatch.setenv("RADLLAMA_SERVER_KEY", "unused-on-loopback")
    with live_server(backend=backend) as url:
        served = httpx.get(f"{url}/v1/models").json()["data"][0]["id"]
        config = {
            "dataset": "OpenI",
            "split": {"test": str(tmp_path / "test.jsonl"), "train": str(tmp_path / "train.jsonl")},
            "reference_system": "tfidf-retrieval",
            "bootstrap": {"resamples": 50, "seed": 0},
            "systems": [
                {"name": "most-frequent", "kind": "baseline", "baseline": "most-frequent"},
                {"name": "tfidf-retrieval", "kind": "baseline", "baseline": "tfidf-retrieval"},
                {"name": "local-tiny", "kind": "local", "model": {"path": str(model)}, "max_new_tokens": 8,
                 "backend": backend},
                {"name": "own-server", "kind": "openai", "base_url": f"{url}/v1", "model": served,
                 "api_key_env": "RADLLAMA_SERVER_KEY", "prompt": "zero-shot", "max_tokens": 8, "timeout_s": 30},
            ],
        }  # fmt: skip
        cfg_path = tmp_path / "compare.yaml"
        cfg_path.write_text(yaml.safe_dump(config))
        result = run_comparison(cfg_path, out_dir=tmp_path / "out")

    systems = result["metrics"]["systems"]
    assert set(systems) == {"most-frequent", "tfidf-retrieval", "local-tiny", "own-server"}
    for name, entry in systems.items():
        assert "not_run" not in entry, name
        assert entry["all"]["n"] == 6 and entry["unseen"]["n"] == 3
    remote = read_jsonl(tmp_path / "out" / "predictions" / "own-server.jsonl")
    assert [r["status"] for r in remote] == ["ok"] * 6
    assert all(r["prediction"].strip() for r in remote)  # the tiny model's text came back over HTTP
    leaderboard = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    assert {row["system"] for row in leaderboard["all"]} == set(systems)
    assert (tmp_path / "out" / "cases.html").is_file()
