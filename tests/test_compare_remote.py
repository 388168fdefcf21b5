"""compare against a real OpenAI-compatible HTTP server on loopback (test-only, canned answers)."""

import asyncio
import json
import time
from collections import Counter
from contextlib import ExitStack
from pathlib import Path

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from live_server import live_uvicorn
from typer.testing import CliRunner

from radllama.cli import app
from radllama.consistency import check

TRAIN = [
    {"id": f"t{i}", "findings": f, "impression": imp}
    for i, (f, imp) in enumerate(
        [
            ("Heart size normal. Lungs clear.", "No acute cardiopulmonary abnormality."),
            ("Lungs are clear. No effusion.", "No acute cardiopulmonary abnormality."),
            ("Heart is enlarged. No edema.", "Cardiomegaly."),
            ("Right pleural fluid collection.", "Right pleural effusion."),
            ("Normal heart and lungs.", "Normal chest."),
            ("Left basilar opacity.", "Left lower lobe pneumonia."),
        ]
    )
]
TEST = [
    {
        "id": "ok1",
        "findings": "Heart size normal. Lungs are clear.",
        "impression": "No acute disease.",
        "seen_findings": False,
    },
    {"id": "ok2", "findings": "Heart is enlarged.", "impression": "Cardiomegaly.", "seen_findings": True},
    {
        "id": "flaky",
        "findings": "FLAKY right pleural fluid.",
        "impression": "Right effusion.",
        "seen_findings": False,
    },
    {"id": "e500", "findings": "FAIL500 lungs.", "impression": "Normal chest.", "seen_findings": False},
    {"id": "garbage", "findings": "GARBAGE lungs.", "impression": "Normal chest.", "seen_findings": False},
    {"id": "slow", "findings": "SLOW lungs.", "impression": "Normal chest.", "seen_findings": False},
]


class FakeOpenAI:
    """A tiny OpenAI-compatible chat endpoint: canned impressions and scripted faults."""

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()
        self.times: dict[str, list[float]] = {}
        self.requests: list[dict] = []
        self.auth: set[str] = set()
        api = FastAPI()

        @api.post("/v1/chat/completions")
        async def chat(request: Request):  # noqa: ANN202
            body = await request.json()
            self.requests.append(body)
            self.auth.add(request.headers.get("authorization", ""))
            findings = body["messages"][-1]["content"]
            key = next((k for k in ("FLAKY", "FAIL500", "GARBAGE", "SLOW") if k in findings), findings)
            self.calls[key] += 1
            self.times.setdefault(key, []).append(time.monotonic())
            if key == "FAIL500":
                return JSONResponse({"error": {"message": "boom"}}, status_code=500)
            if key == "FLAKY" and self.calls[key] == 1:
                return JSONResponse({"error": {"message": "slow down"}}, status_code=429, headers={"Retry-After": "2"})
            if key == "GARBAGE":
                return PlainTextResponse("<<<not json>>>", media_type="application/json")
            if key == "SLOW":
                await asyncio.sleep(1.5)  # async: must not block the other requests
            text = "Cardiomegaly." if "enlarged" in findings else "No acute cardiopulmonary abnormality."
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "created": 0,
                "model": body["model"],
                "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }

        self.api = api
        self._stack = ExitStack()

    def __enter__(self) -> "FakeOpenAI":
        url = self._stack.enter_context(live_uvicorn(self.api))  # a bound socket: no port race
        self.port = int(url.rsplit(":", 1)[1])
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _config(tmp: Path, port: int) -> Path:
    train = _write(tmp / "train.jsonl", TRAIN)
    test = _write(tmp / "test.jsonl", TEST)
    cfg = {
        "dataset": "OpenI",
        "split": {"test": str(test), "train": str(train)},
        "out": str(tmp / "out"),
        "reference_system": "most-frequent",
        "bootstrap": {"resamples": 100, "seed": 0},
        "systems": [
            {"name": "most-frequent", "kind": "baseline", "baseline": "most-frequent"},
            {"name": "tfidf-retrieval", "kind": "baseline", "baseline": "tfidf-retrieval"},
            {
                "name": "remote",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": "fake",
                "api_key_env": "RADLLAMA_TEST_KEY",
                "prompt": "few-shot",
                "k": 2,
                "timeout_s": 0.5,
                "retries": 2,
                "concurrency": 2,
            },
            {
                "name": "no-key",
                "kind": "openai",
                "base_url": f"http://127.0.0.1:{port}/v1",
                "model": "fake",
                "api_key_env": "RADLLAMA_TEST_UNSET_KEY",
            },
            {"name": "no-weights", "kind": "local", "model": {"path": str(tmp / "missing-model")}},
            {"name": "XrayGLM", "kind": "not_run", "reason": "image-text model, needs radiographs"},
        ],
    }
    path = tmp / "compare.yaml"
    path.write_text(json.dumps(cfg))  # JSON is valid YAML
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.mark.slow
def test_compare_with_remote_server_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RADLLAMA_TEST_KEY", "sk-test-123")
    monkeypatch.delenv("RADLLAMA_TEST_UNSET_KEY", raising=False)
    runner = CliRunner()
    with FakeOpenAI() as server:
        config = _config(tmp_path, server.port)
        result = runner.invoke(app, ["compare", "--config", str(config)])
        assert result.exit_code == 0, result.output
        out = tmp_path / "out"
        metrics = json.loads((out / "metrics.json").read_text())

        # Leaderboard builds; failed cases are counted and scored as empty answers, so every
        # system is ranked on the same 6 cases.
        assert metrics["issues"]["remote"]["failed"] == 3
        assert metrics["systems"]["remote"]["all"]["n"] == 6
        assert metrics["systems"]["most-frequent"]["all"]["n"] == 6
        assert metrics["systems"]["no-key"]["not_run"].startswith("API key variable RADLLAMA_TEST_UNSET_KEY")
        assert metrics["systems"]["no-weights"]["not_run"].startswith("weights not found")
        assert "paired_vs_reference" in metrics and "remote" in metrics["paired_vs_reference"]
        board = (out / "leaderboard.md").read_text()
        assert "not run: image-text model, needs radiographs" in board
        assert (out / "cases.html").is_file() and (out / "charts" / "rougeL.png").is_file()

        preds = {r["id"]: r for r in _lines(out / "predictions" / "remote.jsonl")}
        assert preds["flaky"]["status"] == "ok"  # 429 then success: retried
        flaky = server.times["FLAKY"]  # after the server's Retry-After, not the client's own 0.5 s backoff
        assert flaky[1] - flaky[0] >= 1.9
        for rid in ("e500", "garbage", "slow"):
            assert preds[rid]["status"] == "failed" and preds[rid]["error"] and preds[rid]["prediction"] == ""
            assert preds[rid]["omitted"] is None and preds[rid]["unsupported"] is None  # no answer, no check
        # Every answer, remote or baseline, carries its consistency check against its findings.
        for line in [*preds.values(), *_lines(out / "predictions" / "most-frequent.jsonl")]:
            if line["status"] == "ok":
                checked = check(line["findings"], line["prediction"])
                assert {k: line[k] for k in checked} == checked
        assert server.calls["FAIL500"] == 3  # 1 try + 2 retries
        assert server.auth == {"Bearer sk-test-123"}
        # Few-shot: earlier user/assistant turns carry training impressions.
        first = server.requests[0]["messages"]
        assert [m["role"] for m in first] == ["system", "user", "assistant", "user", "assistant", "user"]
        assert "Derive the impression from findings in the radiology report" in first[-1]["content"]

        # Rerun: finished ids are skipped, failed ones retried.
        ok_calls = server.calls.copy()
        result = runner.invoke(app, ["compare", "--config", str(config)])
        assert result.exit_code == 0, result.output
        assert sum(v for k, v in server.calls.items() if k not in ("FAIL500", "GARBAGE", "SLOW")) == sum(
            v for k, v in ok_calls.items() if k not in ("FAIL500", "GARBAGE", "SLOW")
        )
        assert server.calls["FAIL500"] == 6
        lines = _lines(out / "predictions" / "remote.jsonl")
        assert len(lines) == 6 and len({r["id"] for r in lines}) == 6

        # A crash mid-write: the truncated last line is redone, nothing duplicated.
        path = out / "predictions" / "remote.jsonl"
        ok_lines = [r for r in lines if r["status"] == "ok"]
        text = "".join(json.dumps(r) + "\n" for r in ok_lines)
        path.write_text(text[: len(text) - 15])  # cut into the last line
        redo = ok_lines[-1]["id"]
        before = len(server.requests)
        result = runner.invoke(app, ["compare", "--config", str(config)])
        assert result.exit_code == 0, result.output
        new_findings = [r["messages"][-1]["content"] for r in server.requests[before:]]
        redone_findings = next(t["findings"] for t in TEST if t["id"] == redo)
        assert sum(redone_findings in f for f in new_findings) == 1, (redo, new_findings)
        lines = _lines(path)
        assert len({r["id"] for r in lines}) == len(lines) == 6
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["systems"]["remote"]["all"]["n"] == 6  # 3 answered, 3 failed (scored as empty)
        assert metrics["issues"]["remote"]["failed"] == 3


def test_config_errors_are_clear(tmp_path: Path) -> None:
    from radllama.errors import RadLlamaError

    bad = tmp_path / "bad.yaml"
    bad.write_text("systems: []\nsplit: {test: x}\n")
    result = CliRunner().invoke(app, ["compare", "--config", str(bad)])
    assert isinstance(result.exception, RadLlamaError) and "non-empty list" in str(result.exception)
    bad.write_text("split: {test: x}\nsystems:\n  - {name: gpt, kind: openai, model: m, api_key: sk-secret}\n")
    result = CliRunner().invoke(app, ["compare", "--config", str(bad)])
    assert isinstance(result.exception, RadLlamaError) and "api_key_env" in str(result.exception)
    bad.write_text("split: {test: x}\nsystems:\n  - {name: g, kind: openai, model: m, api_key_env: K, backoff_s: 1}\n")
    result = CliRunner().invoke(app, ["compare", "--config", str(bad)])
    assert isinstance(result.exception, RadLlamaError) and "Retry-After" in str(result.exception)
