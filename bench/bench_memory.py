"""Peak resident memory (RSS) of the demo, the server and a comparison, each in its own process.

    python bench/bench_memory.py [--run runs/demo] [--requests 64]

* ``radllama demo --quick`` into a temporary folder (peak RSS from ``wait4``), and the full
  demo's figure when ``/usr/bin/time -v`` output of it is in ``--full-demo-time``;
* ``radllama serve`` on radllama-mini (base + LoRA from ``--run``) after ``--requests``
  ``/v1/impressions`` requests from 8 client threads, per backend (``VmHWM`` from
  ``/proc/PID/status``, summed over the server and its child processes for vLLM);
* ``radllama compare --config`` (three baselines + radllama-mini LoRA, ``--limit 50``);
* the floor they all stand on: a Python process that only imports torch, transformers and
  ``radllama.cli``.

Prints a markdown table and puts it into BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.demo import BASELINES, compare_config  # noqa: E402
from radllama.errors import RadLlamaError  # noqa: E402
from radllama.io import read_jsonl  # noqa: E402

TITLE = "Memory: peak RSS of demo, serve and compare (bench_memory.py)"
RADLLAMA = [sys.executable, "-c", "from radllama.cli import app; app()"]


def run_peak(args: list[str], log: Path) -> tuple[int, float, int]:
    """Run a command to the end; (exit code, seconds, peak RSS in MiB) from ``wait4``."""
    started = time.perf_counter()
    with log.open("wb") as fh:
        proc = subprocess.Popen(args, stdout=fh, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - started, usage.ru_maxrss // 1024  # Linux: kB


def full_demo_peak(path: Path) -> int | None:
    """Peak RSS (MiB) from ``/usr/bin/time -v`` output, if the file has it."""
    if not path.is_file():
        return None
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", path.read_text(errors="replace"))
    return int(m.group(1)) // 1024 if m else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(proc: subprocess.Popen, base: str, log: Path, poll: float = 0.2, limit: float = 300) -> None:
    """Wait until the server at ``base`` answers ``/health``; a clear error if it exits or takes over ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        if proc.poll() is not None:
            raise RadLlamaError(f"radllama serve exited ({proc.returncode}); see {log}")
        try:
            if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RadLlamaError(f"radllama serve did not come up in {limit:.0f} s; see {log}")
        time.sleep(poll)


def vm_hwm(pid: int) -> int:
    """Peak RSS (MiB) of a live process and its live children (each one's own peak, summed)."""
    import psutil

    total = 0
    for proc in [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]:
        status = Path(f"/proc/{proc.pid}/status").read_text()
        total += int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) // 1024
    return total


def serve_peak(run: Path, findings: list[str], log: Path, backend: str) -> tuple[int, float]:
    """Start ``radllama serve`` on the mini model, send the findings; (peak RSS MiB, seconds of requests)."""
    port = free_port()
    cmd = [*RADLLAMA, "serve", "--model", str(run / "mini" / "base"), "--adapter", str(run / "mini" / "lora"),
           "--backend", backend]  # fmt: skip
    with log.open("wb") as fh:
        proc = subprocess.Popen([*cmd, "--port", str(port)], stdout=fh, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(proc, base, log)

        def one(text: str) -> None:
            r = httpx.post(f"{base}/v1/impressions", json={"findings": [text], "max_tokens": 64}, timeout=600)
            r.raise_for_status()

        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(one, findings))
        seconds = time.perf_counter() - started
        return vm_hwm(proc.pid), seconds
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, default=Path("runs/demo"), help="a finished demo folder")
    ap.add_argument("--full-demo-time", type=Path, default=Path("/tmp/demo_full.time"))
    ap.add_argument("--requests", type=int, default=64)
    ap.add_argument("--limit", type=int, default=50, help="compare: first N test cases")
    ap.add_argument("--backends", nargs="+", default=["transformers", "vllm"])
    ap.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    args = ap.parse_args()
    run = args.run.resolve()
    if not (run / "mini" / "lora" / "adapter_config.json").is_file():
        raise SystemExit(f"{run}: no trained radllama-mini (mini/base, mini/lora); run `radllama demo` first")

    rows = ["| process | peak RSS MiB | seconds | what it did |", "|---|---:|---:|---|"]
    with tempfile.TemporaryDirectory(prefix="radllama-bench-mem-") as tmp:
        tmp = Path(tmp)
        floor_cmd = "import torch, transformers, radllama.cli"
        code, secs, floor = run_peak([sys.executable, "-c", floor_cmd], tmp / "import.log")
        rows.append(f"| floor: `{floor_cmd}` | {floor:,} | {secs:.1f} | imports only |")

        code, secs, peak = run_peak([*RADLLAMA, "demo", "--quick", "--out", str(tmp / "quick")], tmp / "quick.log")
        if code != 0:
            raise SystemExit(f"demo --quick failed ({code}):\n{(tmp / 'quick.log').read_text()[-2000:]}")
        rows.append(f"| `radllama demo --quick` | {peak:,} | {secs:.0f} | whole pipeline at tiny sizes |")
        full = full_demo_peak(args.full_demo_time)
        if full is not None:
            rows.append(
                f"| `radllama demo` (full, from `{args.full_demo_time}`) | {full:,} | – | "
                "the full demo run, measured by `/usr/bin/time -v` |"
            )

        findings = [r["findings"] for r in read_jsonl(run / "data" / "test.jsonl")][: args.requests]
        for backend in args.backends:
            peak, secs = serve_peak(run, findings, tmp / f"serve-{backend}.log", backend)
            rows.append(
                f"| `radllama serve --backend {backend}` (mini base + LoRA) | {peak:,} | {secs:.1f} | "
                f"{len(findings)} `/v1/impressions` requests, 8 clients, max 64 tokens"
                + (" (server + engine processes)" if backend == "vllm" else "")
                + " |"
            )

        # The demo's own comparison, less the untuned model: baselines + the tuned one.
        config = compare_config(run)
        config["systems"] = [
            s for s in config["systems"] if s["kind"] == "baseline" or s["name"] == "radllama-mini-lora"
        ]
        (tmp / "compare.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        cmd = [*RADLLAMA, "compare", "--config", str(tmp / "compare.yaml"), "--out", str(tmp / "compare")]
        code, secs, peak = run_peak([*cmd, "--limit", str(args.limit)], tmp / "compare.log")
        if code != 0:
            raise SystemExit(f"compare failed ({code}):\n{(tmp / 'compare.log').read_text()[-2000:]}")
        rows.append(
            f"| `radllama compare --config … --limit {args.limit}` | {peak:,} | {secs:.0f} | "
            f"{len(BASELINES)} baselines + radllama-mini LoRA, {args.limit} cases |"
        )

    table = "\n".join(rows)
    note = (
        "Peak resident set size of each process (`wait4` rusage for processes run to the end, `VmHWM` for the "
        "live server). No target was set; the floor row is the naive counterpart: what any process importing the "
        "toolkit costs before it does anything."
    )
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
