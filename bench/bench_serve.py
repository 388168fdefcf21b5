"""Serving throughput and latency with 1, 8 and 32 concurrent clients, beside offline batched decoding.

    python bench/bench_serve.py --model runs/demo/mini/base --adapter runs/demo/mini/lora \
        --findings runs/demo/data/test.jsonl [--requests 256] [--clients 1 8 32] [--engines continuous request]

Loads the model once, serves it with the real app under uvicorn on a loopback port (once per
server engine), and sends ``/v1/impressions`` requests (one findings text each) from N client
threads. In the same run, ``complete_impressions`` (what ``radllama generate`` runs) turns the same
findings into impressions offline in batches of 32: the throughput the server is measured against.
Prints a markdown table and puts it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
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
from radllama.io import read_jsonl  # noqa: E402
from radllama.models.loading import load_for_inference  # noqa: E402
from radllama.serve.app import create_app  # noqa: E402
from radllama.serve.service import ModelService, ServeSettings  # noqa: E402

TITLE = "Serving: dynamic batching vs offline batches (bench_serve.py)"
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


def run_clients(base: str, findings: list[str], clients: int, max_tokens: int) -> tuple[float, list[float], int]:
    """Wall seconds, per-request latencies and completion tokens for all findings over ``clients`` threads.

    Runs in a separate process (see main), so client work does not compete with the server for the GIL.
    Each thread keeps one connection open and speaks HTTP with the standard library's ``http.client``:
    on this 2-core machine the load generator shares the CPU with the server, and httpx cost the
    client process about four times the CPU for the same requests.
    """
    host, port = base.removeprefix("http://").split(":")
    latencies: list[float] = []
    tokens = 0
    lock = threading.Lock()
    local = threading.local()

    def one(text: str) -> None:
        nonlocal tokens
        if not hasattr(local, "conn"):  # one keep-alive connection per client thread
            local.conn = http.client.HTTPConnection(host, int(port), timeout=3600)
        body = json.dumps({"findings": [text], "max_tokens": max_tokens})
        started = time.perf_counter()
        local.conn.request("POST", "/v1/impressions", body, {"Content-Type": "application/json"})
        response = local.conn.getresponse()
        answer = json.loads(response.read())
        if response.status != 200:
            raise RuntimeError(f"HTTP {response.status}: {answer}")
        with lock:
            latencies.append(time.perf_counter() - started)
            tokens += answer["usage"]["completion_tokens"]

    started, cpu = time.perf_counter(), time.process_time()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, findings))
    print(f"clients={clients}: client process CPU {time.process_time() - cpu:.2f} s", file=sys.stderr)
    return time.perf_counter() - started, latencies, tokens


def rows_per_forward(before: dict, after: dict) -> str:
    """Mean rows per decoding step (continuous engine) or per batch (request-level), from /health."""
    if "steps" in after:
        return f"{(after['row_steps'] - before['row_steps']) / max(1, after['steps'] - before['steps']):.1f}"
    return f"{(after['rows_decoded'] - before['rows_decoded']) / max(1, after['batches'] - before['batches']):.1f}"


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
    ap.add_argument("--engines", nargs="+", default=["continuous", "request"], choices=["continuous", "request"])
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    loaded = load_for_inference(args.model, args.adapter)
    findings = findings_texts(args.findings, args.requests)
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))  # the clients' process
    pool.submit(time.sleep, 0).result()  # the process is up before anything is timed

    # Offline: what `radllama generate` runs for a findings file (prompts with retrieval, then
    # length-sorted batches of 32 through the engine), as the server does per request.
    offline_runs = []
    for _ in range(args.repeats):
        started = time.perf_counter()
        offline = complete_impressions(loaded, findings, batch_size=32, max_new_tokens=args.max_tokens)
        offline_runs.append((sum(c.completion_tokens for c in offline), time.perf_counter() - started))
    offline_tokens, offline_s = sorted(offline_runs, key=lambda r: r[0] / r[1])[len(offline_runs) // 2]
    offline_tps = offline_tokens / offline_s

    rows = [
        "| server engine | clients | requests | wall s | tokens/s | requests/s | p50 latency s | p95 latency s "
        "| rows per forward | vs offline | all runs vs offline |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| offline `radllama generate` (batches of 32) | – | {len(findings)} | {offline_s:.2f} | {offline_tps:.1f} | "
        f"{len(findings) / offline_s:.2f} | – | – | ≤ 32 | 100% | "
        f"{', '.join(f'{t / w:.0f} tok/s' for t, w in offline_runs)} |",
    ]
    for engine in args.engines:
        settings = ServeSettings(max_batch=32, batch_window_ms=args.batch_window_ms, queue_size=1024, timeout_s=3600)
        service = ModelService(loaded, settings, continuous=engine == "continuous")
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        pool.submit(run_clients, base, findings[:4], 4, args.max_tokens).result()  # warm-up
        for clients in args.clients:
            runs = []  # the same load, repeated: this machine's noise is a few percent run to run
            for _ in range(args.repeats):
                before = httpx.get(f"{base}/health").json()
                wall, lat, tokens = pool.submit(run_clients, base, findings, clients, args.max_tokens).result()
                after = httpx.get(f"{base}/health").json()
                runs.append((tokens / wall, wall, lat, rows_per_forward(before, after)))
            tps, wall, lat, per_forward = sorted(runs, key=lambda r: r[0])[len(runs) // 2]  # the median run
            p95 = statistics.quantiles(lat, n=20)[-1] if len(lat) > 1 else lat[0]
            rows.append(
                f"| {engine} | {clients} | {len(lat)} | {wall:.2f} | {tps:.1f} | {len(lat) / wall:.2f} | "
                f"{statistics.median(lat):.2f} | {p95:.2f} | {per_forward} | {100 * tps / offline_tps:.0f}% | "
                f"{', '.join(f'{100 * r[0] / offline_tps:.0f}%' for r in runs)} |"
            )
        server.should_exit = True
        thread.join()
    pool.shutdown()
    table = "\n".join(rows)
    note = (
        f"Model `{loaded.name}`, {len(findings)} findings, greedy, max {args.max_tokens} new tokens, "
        f"`/v1/impressions` one findings text per request, each client thread one keep-alive connection "
        f"(stdlib `http.client`, in its own process); server: batches of ≤ 32 rows, "
        f"{args.batch_window_ms:g} ms window for an idle engine to gather a burst. `continuous` is the "
        "step-level engine (rows join and leave between decoding steps; rows per forward = rows per "
        "decoding step); `request` is request-level batching through `model.generate` (rows per "
        f"forward = rows per batch). Each load and the offline run ran {args.repeats} times; the row shows the "
        "median run, the last column every run. Target: 32 clients ≥ 70% of offline tokens/s."
    )
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
