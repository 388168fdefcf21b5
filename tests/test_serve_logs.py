"""Privacy: a full `radllama serve` session, as a hospital runs it, logs no report text on either
backend — the server's whole output (vLLM's engine logs into it too) grepped for the findings sent."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest
from test_serve_support import BACKENDS, tiny_model_dir

pytestmark = pytest.mark.slow
SECRET = "Zebraflavin opacity in the xylophonic lobe"  # a findings text no log may contain


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_full_serve_session_logs_no_report_text(backend: str, tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "COLUMNS": "200", "VLLM_LOGGING_LEVEL": "INFO"}  # vLLM at its most talkative default
    log = (tmp_path / "serve.log").open("w")
    proc = subprocess.Popen([sys.executable, "-m", "radllama.cli", "serve", "--model", str(tiny_model_dir()),
                             "--port", str(port), "--backend", backend], stdout=log, stderr=subprocess.STDOUT,
                            env=env)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.5)
        r = httpx.post(f"{base}/v1/impressions", json={"findings": [SECRET], "max_tokens": 8}, timeout=60)
        assert r.status_code == 200
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0)
        client.chat.completions.create(model="radllama", messages=[{"role": "user", "content": SECRET}], max_tokens=4)
        list(client.completions.create(model="radllama", prompt=SECRET, max_tokens=4, stream=True))
        bad = httpx.post(f"{base}/v1/chat/completions", json={"messages": [{"role": "user", "content": SECRET}],
                                                              "max_tokens": 100000})  # fmt: skip
        assert bad.status_code == 400  # an error answer does not log the request either
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(60)
        log.close()
    text = (tmp_path / "serve.log").read_text(errors="replace")
    if backend == "vllm":
        assert "EngineCore" in text  # the engine's own log lines are in it
    for word in ("Zebraflavin", "xylophonic"):
        assert word not in text, "report text in the server's log"
    assert "POST /v1/impressions" in text  # access lines: method and path only
