"""Shared by the benchmarks: put a titled markdown section into BENCHMARKS.md (atomically), and
the small pieces their tables share (a timed call, ROUGE means as table cells, a matmul rate, a
``radllama generate`` job timed as a whole process).

A section runs from its ``## title`` line to the next ``## `` line; rerunning a benchmark
replaces its section instead of appending a duplicate.
"""

from __future__ import annotations

import datetime as dt
import platform
import re
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from radllama.io import atomic_write_text

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    """``fn()`` and its wall-clock seconds."""
    started = time.perf_counter()
    return fn(), time.perf_counter() - started


def rouge_means(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1, -2 and -L F1 (rouge-score), by ROUGE type ("rouge1", "rouge2", "rougeL")."""
    from radllama.rouge import rouge_many

    scores = rouge_many(list(predictions), list(references))
    return {t: sum(v) / len(v) for t, v in scores.items()}


def rouge_cells(predictions: Sequence[str], references: Sequence[str]) -> str:
    """Mean ROUGE-1, -2 and -L F1 (rouge-score) as three markdown table cells."""
    return " | ".join(f"{v:.4f}" for v in rouge_means(predictions, references).values())


def matmul_gflops(dtype: Any, rows: int, inner: int, cols: int, seconds: float = 0.5) -> float:
    """GFLOP/s of ``x[rows, inner] @ W[inner, cols]`` (``torch.nn.functional.linear``, as a model's layers)
    at a torch ``dtype``, repeated for about ``seconds`` after a warm-up, on torch's threads."""
    import torch

    x, w = torch.randn(rows, inner, dtype=dtype), torch.randn(cols, inner, dtype=dtype)
    with torch.inference_mode():
        torch.nn.functional.linear(x, w)
        reps, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < seconds or reps < 3:
            torch.nn.functional.linear(x, w)
            reps += 1
    return 2 * rows * inner * cols * reps / elapsed / 1e9


def generate_process(model: Path, adapter: Path | None, backend: str, split: Path, out: Path, *options: str) -> float:
    """Wall seconds of ``radllama generate --input split --output out`` in a fresh process, as a user
    runs it (start-up, model load, prompts, writing); ``options`` are more CLI options. Raises with the
    end of its stderr when it fails."""
    cmd = [sys.executable, "-m", "radllama.cli", "generate", "--model", str(model), "--input", str(split),
           "--output", str(out), "--backend", backend, *options]  # fmt: skip
    if adapter is not None:
        cmd += ["--adapter", str(adapter)]
    started = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{shlex.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - started


def machine() -> str:
    """CPU/GPU in one line, e.g. 'x86_64, 2 CPU threads, torch 2.13.0 (CPU)'."""
    import os

    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "CPU"
    return f"{platform.machine()}, {os.cpu_count()} CPU threads, torch {torch.__version__} ({gpu})"


def provenance() -> str:
    """The machine, date and command of this run, as a markdown line."""
    cmd = shlex.join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    return f"*{machine()} · {dt.datetime.now().strftime('%Y-%m-%d %H:%M')} · `python {cmd}`*"


def append_section(title: str, markdown: str, path: Path = BENCHMARKS) -> None:
    """Replace the section ``## title`` in ``path`` with ``markdown`` (or append it)."""
    text = path.read_text(encoding="utf-8") if path.is_file() else "# Benchmarks\n"
    section = f"## {title}\n\n{markdown.strip()}\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1).rstrip() + "\n"
    else:
        text = text.rstrip() + "\n\n" + section
    atomic_write_text(path, text)


def publish(title: str, note: str, table: str, write: bool = True) -> None:
    """Print a benchmark's note and table; unless told not to, put them (with provenance) into BENCHMARKS.md."""
    print(note)
    print(table)
    if write:
        append_section(title, f"{provenance()}\n\n{note}\n\n{table}")
        print("written to BENCHMARKS.md")
