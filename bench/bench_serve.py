"""Serving throughput and latency with 1, 8 and 32 concurrent clients, beside offline batched decoding.

    python bench/bench_serve.py --model runs/demo/models/radllama-mini [--adapter DIR] [--requests 64]

Loads the model once, serves it with the real app under uvicorn on a loopback port, and sends
``/v1/impressions`` requests (one findings text each) from N client threads. In the same run,
``generate_many`` decodes the same prompts offline in batches of 32: the ceiling the server's
dynamic batching is measured against. Prints a markdown table and puts it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
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

from radllama.generate.engine import GenerationSettings, generate_many  # noqa: E402
from radllama.generate.impressions import impression_prompts  # noqa: E402
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
    """
    latencies: list[float] = []
    tokens = 0
    lock = threading.Lock()
    local = threading.local()

    def one(text: str) -> None:
        nonlocal tokens
        if not hasattr(local, "client"):  # one keep-alive connection per client thread
            local.client = httpx.Client(base_url=base, timeout=3600)
        started = time.perf_counter()
        r = local.client.post("/v1/impressions", json={"findings": [text], "max_tokens": max_tokens})
        r.raise_for_status()
        with lock:
            latencies.append(time.perf_counter() - started)
            tokens += r.json()["usage"]["completion_tokens"]

    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        list(pool.map(one, findings))
    return time.perf_counter() - started, latencies, tokens


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--adapter", type=Path)
    ap.add_argument("--findings", type=Path, help="split JSONL to take findings from (default: synthetic)")
    ap.add_argument("--requests", type=int, default=128, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument("--batch-window-ms", type=float, default=10.0, help="server batch window")
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()

    loaded = load_for_inference(args.model, args.adapter)
    findings = findings_texts(args.findings, args.requests)
    service = ModelService(
        loaded, ServeSettings(max_batch=32, batch_window_ms=args.batch_window_ms, queue_size=1024, timeout_s=3600)
    )
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(create_app(service), log_level="warning", access_log=False))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.05)

    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))  # the clients' process
    pool.submit(run_clients, base, findings[:4], 4, args.max_tokens).result()  # warm-up
    settings = GenerationSettings(max_new_tokens=args.max_tokens)
    prompts = impression_prompts(loaded, findings)
    started = time.perf_counter()
    offline = generate_many(loaded.model, loaded.tokenizer, prompts, settings, batch_size=32)
    offline_s = time.perf_counter() - started
    offline_tps = sum(c.completion_tokens for c in offline) / offline_s

    rows = [
        "| clients | requests | wall s | tokens/s | requests/s | p50 latency s | p95 latency s | rows/batch "
        "| vs offline |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| offline `generate_many` (batch 32) | {len(prompts)} | {offline_s:.2f} | {offline_tps:.1f} | "
        f"{len(prompts) / offline_s:.2f} | – | – | 32 | 100% |",
    ]
    for clients in (1, 8, 32):
        before = httpx.get(f"{base}/health").json()
        wall, lat, tokens = pool.submit(run_clients, base, findings, clients, args.max_tokens).result()
        after = httpx.get(f"{base}/health").json()
        batches = after["batches"] - before["batches"]
        mean_rows = (after["rows_decoded"] - before["rows_decoded"]) / max(1, batches)
        p95 = statistics.quantiles(lat, n=20)[-1] if len(lat) > 1 else lat[0]
        tps = tokens / wall
        rows.append(
            f"| {clients} | {len(lat)} | {wall:.2f} | {tps:.1f} | {len(lat) / wall:.2f} | "
            f"{statistics.median(lat):.2f} | {p95:.2f} | {mean_rows:.1f} | {100 * tps / offline_tps:.0f}% |"
        )
    pool.shutdown()
    server.should_exit = True
    table = "\n".join(rows)
    note = (
        f"Model `{loaded.name}`, {len(prompts)} findings, greedy, max {args.max_tokens} new tokens, "
        f"`/v1/impressions` one findings text per request; server: {args.batch_window_ms:g} ms batch window, "
        "batches of ≤ 32 rows. "
        "Target: 32 clients ≥ 70% of offline tokens/s."
    )
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
