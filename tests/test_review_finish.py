"""A finished review is frozen (409) until the owner reopens it; `review serve` stays on loopback unless told."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from test_review_support import add_rater, candidates, live_server, make_study
from typer.testing import CliRunner

from radllama.cli import app
from radllama.errors import RadLlamaError
from radllama.review import store


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path, n_cases=2)


def scores(study: Path, name: str) -> dict[tuple[str, str], int]:
    conn = store.open_study(study)
    try:
        rows = conn.execute(
            "SELECT candidate_id, criterion, score FROM ratings JOIN raters USING (rater_id) WHERE name = ?", (name,)
        ).fetchall()
    finally:
        conn.close()
    return {(r["candidate_id"], r["criterion"]): r["score"] for r in rows}


def score_everything(c: httpx.Client, token: str, study: Path, score: int) -> None:
    for r in candidates(study):
        for crit in store.CRITERIA:
            body = {"candidate_id": r["candidate_id"], "criterion": crit, "score": score}
            assert c.post(f"/api/r/{token}/cases/{r['case_position']}/ratings", json=body).status_code == 200


def test_finish_freezes_scores_until_the_owner_reopens(study: Path) -> None:
    ann, bob = add_rater(study, "ann"), add_rater(study, "bob")
    first = candidates(study)[0]
    change = {"candidate_id": first["candidate_id"], "criterion": "coherence", "score": 1}
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        score_everything(c, ann, study, 4)
        c.post(f"/api/r/{ann}/cases/1/comments", json={"candidate_id": first["candidate_id"], "comment": "fine"})
        assert c.post(f"/api/r/{ann}/finish", json={}).status_code == 200
        frozen = scores(study, "ann")

        r = c.post(f"/api/r/{ann}/cases/1/ratings", json=change)
        assert r.status_code == 409 and "finished" in r.json()["detail"]
        again = {"candidate_id": first["candidate_id"], "comment": "changed my mind"}
        assert c.post(f"/api/r/{ann}/cases/1/comments", json=again).status_code == 409
        assert c.post(f"/api/r/{ann}/finish", json={}).status_code == 200  # finishing twice is harmless
        assert c.get(f"/api/r/{ann}/state").json()["finished"] is True
        assert c.get(f"/api/r/{ann}/cases/1").json()["candidates"][0]["comment"] == "fine"
        assert scores(study, "ann") == frozen
        # Another rater is not affected by ann's finish.
        assert c.post(f"/api/r/{bob}/cases/1/ratings", json=change).status_code == 200

        # The owner reopens (the real CLI, on the file the server is using).
        res = CliRunner().invoke(app, ["review", "reopen", str(study), "ann"])
        assert res.exit_code == 0, res.output
        assert "reopened ann" in res.output
        assert c.get(f"/api/r/{ann}/state").json()["finished"] is False
        assert c.post(f"/api/r/{ann}/cases/1/ratings", json=change).status_code == 200
        assert scores(study, "ann")[(first["candidate_id"], "coherence")] == 1
        assert c.post(f"/api/r/{ann}/finish", json={}).status_code == 200
        assert c.post(f"/api/r/{ann}/cases/1/ratings", json={**change, "score": 5}).status_code == 409
    assert scores(study, "ann")[(first["candidate_id"], "coherence")] == 1


def test_reopen_names_unknown_raters_and_says_when_nothing_was_finished(study: Path) -> None:
    add_rater(study, "ann")
    res = CliRunner().invoke(app, ["review", "reopen", str(study), "zed"])
    assert isinstance(res.exception, RadLlamaError) and "no rater named 'zed'" in str(res.exception)
    assert "raters: ann" in str(res.exception)
    res = CliRunner().invoke(app, ["review", "reopen", str(study), "ann"])
    assert res.exit_code == 0 and "ann has not finished" in res.output


def run_serve(study: Path, *args: str) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("radllama")
    env = {**os.environ, "COLUMNS": "300"}  # one line per message, even in a pipe
    cmd = [str(exe), "review", "serve", str(study), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False, env=env)


def test_serve_refuses_a_non_loopback_host_unless_allowed(study: Path) -> None:
    proc = run_serve(study, "--host", "0.0.0.0", "--port", "9")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "refusing to serve the study on 0.0.0.0" in lines[0] and "--allow-remote" in lines[0]
    # --allow-remote gets past the refusal (with the warning): 192.0.2.1 (TEST-NET-1) is not an
    # address of this machine, so binding it then fails in one line and nothing is exposed.
    proc = run_serve(study, "--host", "192.0.2.1", "--port", "8765", "--allow-remote")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "warning: binding 192.0.2.1" in proc.stderr and "cannot listen on 192.0.2.1:8765" in proc.stderr


def test_serve_on_a_taken_port_is_one_line(study: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = run_serve(study, "--port", str(port))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1 and f"cannot listen on 127.0.0.1:{port}" in lines[0]
