"""compare's privacy guard: report text goes to an ``openai`` system's URL only when it is on this
machine or the config says ``allow_remote: true``, and every recipient is named before the first request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_compare_remote import TEST, TRAIN, FakeOpenAI, _write
from typer.testing import CliRunner

from radllama.cli import app
from radllama.errors import RadLlamaError

KEY_ENV = "RADLLAMA_TEST_PRIVACY_KEY"
CASES = TEST[:2]  # two well-behaved cases: the guard, not the faults, is under test


def config(tmp: Path, *systems: dict) -> Path:
    cfg = {
        "split": {"test": str(_write(tmp / "test.jsonl", CASES)), "train": str(_write(tmp / "train.jsonl", TRAIN))},
        "out": str(tmp / "out"),
        "bootstrap": {"resamples": 20, "seed": 0},
        "systems": [{"name": "most-frequent", "kind": "baseline"}, *systems],
    }
    path = tmp / "compare.yaml"
    path.write_text(json.dumps(cfg))
    return path


def openai_system(name: str, base_url: str | None, **extra: object) -> dict:
    sys_cfg = {"name": name, "kind": "openai", "model": "fake", "api_key_env": KEY_ENV, "retries": 0, **extra}
    if base_url is not None:
        sys_cfg["base_url"] = base_url
    return sys_cfg


@pytest.fixture(autouse=True)
def key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-test")
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)


@pytest.mark.parametrize(
    ("base_url", "host"),
    [("https://api.example.com/v1", "api.example.com"), ("http://10.1.2.3:8000/v1", "10.1.2.3"),
     (None, "api.openai.com"), ("http://0.0.0.0:{port}/v1", "0.0.0.0")],
    ids=["host-name", "private-ip", "client-default", "any-address"],
)  # fmt: skip
def test_remote_url_is_refused_before_anything_runs(tmp_path: Path, base_url: str | None, host: str) -> None:
    with FakeOpenAI() as server:
        url = base_url.format(port=server.port) if base_url else None
        path = config(tmp_path, openai_system("local-ok", f"http://127.0.0.1:{server.port}/v1"),
                      openai_system("far", url))  # fmt: skip
        result = CliRunner().invoke(app, ["compare", "--config", str(path)])
    assert isinstance(result.exception, RadLlamaError), result.output
    message = str(result.exception)
    assert f"'far' would send report text to {host}" in message and "allow_remote: true" in message
    assert server.requests == []  # not even the loopback system ran
    assert not (tmp_path / "out").exists()


def test_openai_base_url_from_the_environment_is_checked_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "https://llm.example.org/v1")  # what the openai client would use
    result = CliRunner().invoke(app, ["compare", "--config", str(config(tmp_path, openai_system("env", None)))])
    assert isinstance(result.exception, RadLlamaError) and "to llm.example.org" in str(result.exception)


def test_recipients_are_named_before_the_first_request(tmp_path: Path) -> None:
    with FakeOpenAI() as server:
        local = f"http://127.0.0.1:{server.port}/v1"
        # 0.0.0.0 is not loopback, so it counts as remote, yet Linux delivers it to this host's server.
        remote = f"http://0.0.0.0:{server.port}/v1"
        keyless = openai_system("keyless", "https://api.example.com/v1", api_key_env="RADLLAMA_UNSET_ENV")
        there = openai_system("there", remote, allow_remote=True)
        path = config(tmp_path, openai_system("here", local), there, keyless)
        result = CliRunner().invoke(app, ["compare", "--config", str(path)])
        assert result.exit_code == 0, result.output
    notice = next(line for line in result.output.splitlines() if line.startswith("report text will be sent to:"))
    assert f"here → {local} (model fake; this machine)" in notice
    assert f"there → {remote} (model fake; REMOTE, allow_remote: true)" in notice
    assert "keyless" not in notice  # not run (no key): it receives nothing and is not refused
    out = result.output
    assert out.index("report text will be sent to:") < out.index("here: 2 case(s) to run")
    assert len(server.requests) == 4  # both systems ran both cases
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["systems"]["there"]["all"]["n"] == 2 and "not_run" in metrics["systems"]["keyless"]


def test_allow_remote_must_be_a_boolean(tmp_path: Path) -> None:
    path = config(tmp_path, openai_system("far", "https://api.example.com/v1", allow_remote="yes please"))
    result = CliRunner().invoke(app, ["compare", "--config", str(path)])
    assert isinstance(result.exception, RadLlamaError) and "allow_remote must be true or false" in str(result.exception)
