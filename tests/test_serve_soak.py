"""A short soak (bench/bench_soak.py's own function): mixed good and bad requests from 8 clients, every
answer as expected, and the server's threads, open files and memory back to their level afterwards."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from test_serve_support import BACKENDS, tiny_model_dir

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import bench_soak  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("backend", BACKENDS)
def test_short_soak_every_answer_right_and_resources_settle(backend: str, tmp_path: Path) -> None:
    proc, base = bench_soak.start_server(tiny_model_dir(), None, backend, tmp_path / "serve.log")
    try:
        result = bench_soak.soak(base, proc.pid, seconds=15, clients=8)
    finally:
        bench_soak.stop_server(proc)
    assert result["wrong"] == []
    kinds = {key.rsplit(" ", 1)[0] for key in result["counts"]}
    assert kinds == set(bench_soak.kinds({})), kinds  # every kind was sent
    assert result["requests"] > 50
    assert bench_soak.settled(result) == [], (result["before"], result["after"])
