"""Shared by the benchmarks: put a titled markdown section into BENCHMARKS.md (atomically), and
the small pieces their tables share (a timed call, ROUGE means as table cells).

A section runs from its ``## title`` line to the next ``## `` line; rerunning a benchmark
replaces its section instead of appending a duplicate.
"""

from __future__ import annotations

import datetime as dt
import platform
import re
import shlex
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


def rouge_cells(predictions: Sequence[str], references: Sequence[str]) -> str:
    """Mean ROUGE-1, -2 and -L F1 (rouge-score) as three markdown table cells."""
    from radllama.rouge import ROUGE_TYPES, rouge_many

    scores = rouge_many(list(predictions), list(references))
    return " | ".join(f"{sum(scores[t]) / len(scores[t]):.4f}" for t in ROUGE_TYPES)


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
