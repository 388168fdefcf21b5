"""Helpers shared by the review tests (no tests here): prediction files, studies, a live server."""

from __future__ import annotations

import json
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from live_server import live_uvicorn

from radllama.review import store
from radllama.review.create import create_study
from radllama.review.server import create_app

# System names chosen to be unmistakable, so a blinding leak is easy to spot in any response.
SYSTEMS = ("zz-system-alpha", "zz-system-beta")
FINDINGS = [
    "Heart size within normal limits. Lungs are clear. No pleural effusion.",
    "Small left pleural effusion with adjacent atelectasis. Mild cardiomegaly.",
    "No pneumothorax. Stable 6 mm nodule in the right apex.",
    "Low lung volumes with bibasilar opacities, likely atelectasis.",
    "Median sternotomy wires intact. No focal consolidation.",
    "Hyperinflated lungs. Flattened diaphragms. No acute infiltrate.",
]
REFERENCES = [
    "No acute cardiopulmonary abnormality.",
    "Small left pleural effusion and mild cardiomegaly.",
    "Stable right apical nodule.",
    "Bibasilar atelectasis.",
    "Postoperative changes without acute disease.",
    "Emphysema without acute process.",
]


# What each test system adds to the reference, so candidates differ without naming their system.
_STYLE = {SYSTEMS[0]: " Clinical correlation is recommended.", SYSTEMS[1]: " No interval change."}


def write_predictions(folder: Path, system: str, ids: list[int], prediction: str | None = None) -> Path:
    """A small predictions JSONL file (the project's format) for ``system`` over case indices ``ids``."""
    path = folder / f"{system}.jsonl"
    with path.open("w", encoding="utf-8") as fh:
        for i in ids:
            rec = {
                "id": f"case-{i}",
                "system": system,
                "findings": FINDINGS[i],
                "reference": REFERENCES[i],
                "prediction": prediction or REFERENCES[i] + _STYLE.get(system, " Otherwise unremarkable."),
                "seen_findings": i % 2 == 0,
                "status": "ok",
            }
            fh.write(json.dumps(rec) + "\n")
    return path


def make_study(folder: Path, n_cases: int = 2, seed: int = 3, include_reference: bool = True) -> Path:
    """A study over both test systems (+ reference), written with the library."""
    files = [write_predictions(folder, s, list(range(len(FINDINGS)))) for s in SYSTEMS]
    out = folder / "study.db"
    create_study(files, out, n_cases, seed, include_reference=include_reference)
    return out


def add_rater(study: Path, name: str) -> str:
    """Register a rater; returns the token."""
    conn = store.open_study(study)
    try:
        return store.add_rater(conn, name)
    finally:
        conn.close()


def candidates(study: Path) -> list[sqlite3.Row]:
    """All candidates, unblinded (position, slot, id, system, text), in display order."""
    conn = store.open_study(study)
    try:
        return conn.execute(
            "SELECT case_position, slot, candidate_id, system, text FROM candidates ORDER BY case_position, slot"
        ).fetchall()
    finally:
        conn.close()


def free_port() -> int:
    """A loopback port that was free a moment ago (for subprocess servers)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def live_server(study: Path) -> Iterator[str]:
    """The real app under a real uvicorn on a free loopback port; yields its base URL."""
    with live_uvicorn(create_app(study)) as url:
        yield url
