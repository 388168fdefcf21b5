"""Soak: minutes of mixed good and bad requests from many clients against `radllama serve`, then the
server's memory, open files and threads compared with their level before the load.

    python bench/bench_soak.py --model runs/demo/mini/base --adapter runs/demo/mini/lora \
        [--backend transformers] [--seconds 600] [--clients 32]

The server runs as a user runs it (`radllama serve`, a subprocess on a loopback port). Each client
thread loops over request kinds: good ones (`/v1/impressions`, whose answer must equal the greedy
answer measured alone before the load; chat; a stream read to the end; a stream abandoned after its
first event) and bad ones (malformed JSON, invalid UTF-8, wrong types, an unknown model, a prompt over
the context window, an over-large body). Every answer must have the status its kind expects.
``tests/test_serve_soak.py`` runs a short version of the same function.
"""

from __future__ import annotations

import argparse
import collections
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

FINDINGS = [
    "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion with basilar atelectasis.",
    "Right upper lobe opacity concerning for pneumonia. No pneumothorax.",
    "Degenerative changes of the thoracic spine. Calcified granuloma in the left lung.",
]
CHAT = {"messages": [{"role": "user", "content": FINDINGS[0]}], "max_tokens": 8}


def start_server(model: Path, adapter: Path | None, backend: str, log: Path) -> tuple[subprocess.Popen, str]:
    """`radllama serve` on a free loopback port; returns the process and its base URL once healthy."""
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "radllama.cli", "serve", "--model", str(model), "--port", str(port), "--backend",
           backend, "--queue-size", "64"] + (["--adapter", str(adapter)] if adapter else [])  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not start")


def stop_server(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()


def resources(pid: int) -> dict[str, float]:
    """RSS (MiB, the server and its children), open files and threads of the server process tree."""
    import psutil

    procs = [psutil.Process(pid)]
    procs += procs[0].children(recursive=True)
    return {
        "rss_mib": sum(p.memory_info().rss for p in procs) / 2**20,
        "open_files": sum(p.num_fds() for p in procs),
        "threads": sum(p.num_threads() for p in procs),
        "rss_by_process": {f"{p.name()} {p.pid}": round(p.memory_info().rss / 2**20) for p in procs},
    }


def _request(conn: http.client.HTTPConnection, path: str, body: bytes, stream: str = "") -> tuple[int, Any]:
    """POST and read the answer (``stream="abandon"``: read one line and drop the connection)."""
    conn.request("POST", path, body, {"Content-Type": "application/json"})
    r = conn.getresponse()
    if stream == "abandon":
        r.readline()
        conn.close()  # hang up mid-stream
        return r.status, None
    data = r.read()
    return r.status, (data.decode() if stream else json.loads(data))


def kinds(expected: dict[str, str]) -> dict[str, tuple[int, Callable[[http.client.HTTPConnection], tuple[int, Any]]]]:
    """Request kind -> (expected status, send it)."""
    f = FINDINGS

    def impression(i: int) -> Callable:
        return lambda c: _request(c, "/v1/impressions", json.dumps({"findings": [f[i]], "max_tokens": 8}).encode())

    long_chat = {"messages": [{"role": "user", "content": "The heart is normal. " * 400}], "max_tokens": 4}
    return {
        **{f"impression-{i}": (200, impression(i)) for i in range(len(f))},
        "chat": (200, lambda c: _request(c, "/v1/chat/completions", json.dumps(CHAT).encode())),
        "stream": (200, lambda c: _request(c, "/v1/chat/completions", json.dumps({**CHAT, "stream": True}).encode(),
                                           "read")),  # fmt: skip
        "stream-abandoned": (200, lambda c: _request(c, "/v1/chat/completions",
                                                     json.dumps({**CHAT, "max_tokens": 64, "stream": True}).encode(),
                                                     "abandon")),  # fmt: skip
        "bad-json": (400, lambda c: _request(c, "/v1/chat/completions", b'{"messages": [')),
        "bad-utf8": (400, lambda c: _request(c, "/v1/chat/completions", b'{"messages": "caf\xe9"}')),
        "bad-type": (400, lambda c: _request(c, "/v1/chat/completions", _body(CHAT, max_tokens="5"))),
        "unknown-model": (404, lambda c: _request(c, "/v1/chat/completions", _body(CHAT, model="gpt-9"))),
        "over-context": (400, lambda c: _request(c, "/v1/chat/completions", json.dumps(long_chat).encode())),
        "too-large": (413, lambda c: _request(c, "/v1/chat/completions", b"{" + b" " * 2_000_000 + b"}")),
    }  # fmt: skip


def _body(base: dict, **changes: Any) -> bytes:
    return json.dumps({**base, **changes}).encode()


def expected_answers(base: str) -> dict[str, str]:
    """Each findings text's greedy impression, asked alone before the load."""
    import httpx

    out = {}
    for i, text in enumerate(FINDINGS):
        r = httpx.post(f"{base}/v1/impressions", json={"findings": [text], "max_tokens": 8}, timeout=120)
        out[f"impression-{i}"] = r.json()["impressions"][0]
    return out


def soak(base: str, pid: int, seconds: float, clients: int, warmup_s: float = 5.0) -> dict[str, Any]:
    """Run the mixed load; returns counts by kind and outcome, wrong answers, and resources before/after.

    "Before" is measured after ``warmup_s`` of the same load (worker pools and caches filled), so what
    is compared is the steady state, not the server's first requests.
    """
    expected = expected_answers(base)
    if warmup_s:
        _load(base, expected, warmup_s, clients)
        time.sleep(3)
    before = resources(pid)
    started = time.monotonic()
    counts, wrong = _load(base, expected, seconds, clients)
    wall = time.monotonic() - started
    time.sleep(3)  # abandoned streams and keep-alive connections wind down
    after = resources(pid)
    return {"wall_s": wall, "requests": sum(counts.values()), "counts": dict(counts), "wrong": wrong,
            "before": before, "after": after}  # fmt: skip


def _load(base: str, expected: dict[str, str], seconds: float, clients: int) -> tuple[collections.Counter, list[str]]:
    todo = kinds(expected)
    names = sorted(todo)
    host, port = base.removeprefix("http://").split(":")
    counts: collections.Counter = collections.Counter()
    wrong: list[str] = []
    lock = threading.Lock()
    stop_at = time.monotonic() + seconds

    def client(k: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=300)
        i = k
        while time.monotonic() < stop_at:
            name = names[i % len(names)]
            i += 1
            want, send = todo[name]
            try:
                status, answer = send(conn)
            except (OSError, http.client.HTTPException) as exc:
                status, answer = -1, repr(exc)
            if conn.sock is None:  # closed (abandoned stream, or the server closed it)
                conn = http.client.HTTPConnection(host, int(port), timeout=300)
            ok = status == want or (status == 503 and want == 200)  # 503: the bounded queue was full
            if ok and status == 200 and name in expected and answer["impressions"][0] != expected[name]:
                ok = False
            with lock:
                counts[f"{name} {status}"] += 1
                if not ok:
                    wrong.append(f"{name}: {status} {str(answer)[:200]}")
        conn.close()

    threads = [threading.Thread(target=client, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counts, wrong


def settled(result: dict[str, Any]) -> list[str]:
    """What did not come back to its level: threads and open files as before, memory within 15% + 50 MiB."""
    b, a = result["before"], result["after"]
    problems = []
    if a["threads"] > b["threads"] + 2:
        problems.append(f"threads {b['threads']} -> {a['threads']}")
    if a["open_files"] > b["open_files"] + 4:
        problems.append(f"open files {b['open_files']} -> {a['open_files']}")
    if a["rss_mib"] > 1.15 * b["rss_mib"] + 50:
        problems.append(f"RSS {b['rss_mib']:.0f} -> {a['rss_mib']:.0f} MiB")
    return problems


def main() -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _report import publish

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=Path("runs/demo/mini/base"))
    ap.add_argument("--adapter", type=Path, default=Path("runs/demo/mini/lora"))
    ap.add_argument("--backend", default="transformers", choices=["transformers", "vllm"])
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--clients", type=int, default=32)
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"radllama-soak-{args.backend}.log"
    proc, base = start_server(args.model, args.adapter, args.backend, log)
    try:
        result = soak(base, proc.pid, args.seconds, args.clients)
    finally:
        stop_server(proc)
    by_kind = collections.Counter()
    for key, n in result["counts"].items():
        by_kind[key] += n
    rows = ["| request kind, status | count |", "|---|---:|"] + [f"| {k} | {n} |" for k, n in sorted(by_kind.items())]
    b, a = result["before"], result["after"]
    problems = settled(result)
    note = (
        f"`radllama serve --backend {args.backend}` (radllama-mini LoRA), {args.clients} client threads for "
        f"{result['wall_s']:.0f} s on loopback: {result['requests']:,} requests, {len(result['wrong'])} answers wrong "
        f"or with an unexpected status. Server process tree before → after the load: RSS {b['rss_mib']:.0f} → "
        f"{a['rss_mib']:.0f} MiB, open files {b['open_files']} → {a['open_files']}, threads {b['threads']} → "
        f"{a['threads']}; RSS per process before → after: "
        + ", ".join(f"{k} {v} → {a['rss_by_process'].get(k, '–')} MiB" for k, v in b["rss_by_process"].items())
        + ". "
        + (
            "Within the tolerance (threads +2, files +4, RSS +15% + 50 MiB). "
            if not problems
            else "NOT settled: " + "; ".join(problems) + ". "
        )  # fmt: skip
        + "503 counts as expected for good requests (the bounded queue under 32 clients)."
    )
    publish(f"Soak: mixed good and bad requests, {args.backend} backend (bench_soak.py)", note, "\n".join(rows),
            write=not args.no_write)  # fmt: skip
    if result["wrong"]:
        print("\n".join(result["wrong"][:20]), file=sys.stderr)


if __name__ == "__main__":
    main()
