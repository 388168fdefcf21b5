"""Rater API on a real uvicorn server (loopback): auth, validation, idempotency, concurrency, blinding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from live_server import live_uvicorn
from test_review_support import (
    FINDINGS,
    SYSTEMS,
    add_rater,
    candidates,
    free_port,
    live_server,
    make_study,
)

from radllama.review import store
from radllama.review.server import create_app


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return make_study(tmp_path, n_cases=2)


def count_ratings(study: Path) -> int:
    conn = store.open_study(study)
    try:
        return conn.execute("SELECT COUNT(*) FROM ratings").fetchone()[0]
    finally:
        conn.close()


def test_unknown_token_is_403_everywhere(study: Path) -> None:
    add_rater(study, "ann")
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        bad = "not-a-real-token"
        assert c.get(f"/r/{bad}").status_code == 403
        assert c.get(f"/api/r/{bad}/state").status_code == 403
        assert c.get(f"/api/r/{bad}/cases/1").status_code == 403
        body = {"candidate_id": candidates(study)[0]["candidate_id"], "criterion": "coherence", "score": 3}
        assert c.post(f"/api/r/{bad}/cases/1/ratings", json=body).status_code == 403
    assert count_ratings(study) == 0


@pytest.mark.parametrize(
    ("score", "criterion"),
    [(0, "coherence"), (6, "coherence"), (3.5, "coherence"), ("3", "coherence"), (True, "coherence"),
     (None, "coherence"), (3, "beauty")],
)  # fmt: skip
def test_bad_scores_are_rejected(study: Path, score: object, criterion: str) -> None:
    token = add_rater(study, "ann")
    cid = candidates(study)[0]["candidate_id"]
    with live_server(study) as base:
        r = httpx.post(
            f"{base}/api/r/{token}/cases/1/ratings",
            json={"candidate_id": cid, "criterion": criterion, "score": score},
        )
    assert r.status_code == 422
    assert count_ratings(study) == 0


def test_missing_case_or_candidate_is_404(study: Path) -> None:
    token = add_rater(study, "ann")
    rows = candidates(study)
    case2 = next(r["candidate_id"] for r in rows if r["case_position"] == 2)
    with live_server(study) as base, httpx.Client(base_url=f"{base}/api/r/{token}") as c:
        assert c.get("/cases/99").status_code == 404
        ok = {"criterion": "coherence", "score": 3}
        assert c.post("/cases/99/ratings", json={"candidate_id": rows[0]["candidate_id"], **ok}).status_code == 404
        assert c.post("/cases/1/ratings", json={"candidate_id": "c-nope", **ok}).status_code == 404
        assert c.post("/cases/1/ratings", json={"candidate_id": case2, **ok}).status_code == 404  # wrong case
        assert c.post("/cases/1/comments", json={"candidate_id": "c-nope", "comment": "x"}).status_code == 404
        assert c.post("/cases/1/ratings", content=b"{not json", headers={"content-type": "application/json"}
                      ).status_code == 422  # fmt: skip
    assert count_ratings(study) == 0


def test_double_submission_is_idempotent_and_last_score_wins(study: Path) -> None:
    token = add_rater(study, "ann")
    cid = candidates(study)[0]["candidate_id"]
    url_path = f"/api/r/{token}/cases/1/ratings"
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        for _ in range(3):
            assert c.post(url_path, json={"candidate_id": cid, "criterion": "relevance", "score": 2}).status_code == 200
        assert c.post(url_path, json={"candidate_id": cid, "criterion": "relevance", "score": 5}).status_code == 200
        mine = c.get(f"/api/r/{token}/cases/1").json()
    assert count_ratings(study) == 1
    assert next(x for x in mine["candidates"] if x["candidate_id"] == cid)["scores"] == {"relevance": 5}


def test_concurrent_raters_save_everything_once(study: Path) -> None:
    tokens = [add_rater(study, name) for name in ("ann", "bob", "cy")]
    rows = candidates(study)
    jobs = [
        (t, r["case_position"], {"candidate_id": r["candidate_id"], "criterion": crit, "score": 1 + k})
        for t in tokens
        for r in rows
        for k, crit in enumerate(store.CRITERIA)
    ]
    jobs += jobs[:20]  # some exact double submissions, racing their originals
    with live_server(study) as base, httpx.Client(base_url=base, timeout=30) as c:

        def post(job: tuple) -> int:
            token, pos, body = job
            return c.post(f"/api/r/{token}/cases/{pos}/ratings", json=body).status_code

        with ThreadPoolExecutor(max_workers=16) as pool:
            codes = list(pool.map(post, jobs))
        assert codes == [200] * len(jobs)
        states = [c.get(f"/api/r/{t}/state").json()["progress"] for t in tokens]
    assert count_ratings(study) == len(tokens) * len(rows) * len(store.CRITERIA)
    assert all(s["done"] == 2 and s["first_unfinished"] is None for s in states)


def test_raters_see_only_their_own_scores_and_resume_point(study: Path) -> None:
    ann, bob = add_rater(study, "ann"), add_rater(study, "bob")
    rows = [r for r in candidates(study) if r["case_position"] == 1]
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        for r in rows:
            for crit in store.CRITERIA:
                body = {"candidate_id": r["candidate_id"], "criterion": crit, "score": 4}
                assert c.post(f"/api/r/{ann}/cases/1/ratings", json=body).status_code == 200
        c.post(f"/api/r/{ann}/cases/1/comments", json={"candidate_id": rows[0]["candidate_id"], "comment": "ok"})
        ann_state = c.get(f"/api/r/{ann}/state").json()
        bob_state = c.get(f"/api/r/{bob}/state").json()
        bob_case = c.get(f"/api/r/{bob}/cases/1").json()
        assert c.post(f"/api/r/{bob}/finish", json={}).status_code == 409  # nothing scored yet
    assert ann_state["progress"]["first_unfinished"] == 2 and ann_state["progress"]["done"] == 1
    assert bob_state["progress"]["first_unfinished"] == 1 and bob_state["progress"]["done"] == 0
    assert all(cand["scores"] == {} and cand["comment"] == "" for cand in bob_case["candidates"])
    assert bob_case["findings"] in FINDINGS


def test_no_system_name_in_any_response(study: Path) -> None:
    token = add_rater(study, "ann")
    rows = candidates(study)
    bodies: list[str] = []
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        for path in ("/", f"/r/{token}", "/r/bad", "/static/review.js", "/static/review.css",
                     "/static/rater.html", f"/api/r/{token}/state", "/docs", "/openapi.json"):  # fmt: skip
            bodies.append(c.get(path).text)
        for pos in (1, 2):
            case = c.get(f"/api/r/{token}/cases/{pos}").json()
            assert [x["candidate_id"] for x in case["candidates"]] == [
                r["candidate_id"] for r in rows if r["case_position"] == pos
            ]
            assert set(case["candidates"][0]) == {"candidate_id", "label", "text", "scores", "comment"}
            bodies.append(c.get(f"/api/r/{token}/cases/{pos}").text)
            for r in rows:
                if r["case_position"] == pos:
                    body = {"candidate_id": r["candidate_id"], "criterion": "coherence", "score": 3}
                    bodies.append(c.post(f"/api/r/{token}/cases/{pos}/ratings", json=body).text)
        bodies.append(c.post(f"/api/r/{token}/finish", json={}).text)
    text = "\n".join(bodies)
    for system in (*SYSTEMS, "reference", '"system"'):  # names, and no "system" key
        assert system not in text, system


def test_dns_rebinding_and_cross_site_posts_are_refused(study: Path) -> None:
    """Another site's page (by a rebinding DNS name, or a simple cross-site POST) can neither read nor
    score; the rater's own page (same origin, JSON) still can."""
    token = add_rater(study, "ann")
    cid = candidates(study)[0]["candidate_id"]
    body = {"candidate_id": cid, "criterion": "coherence", "score": 3}
    with live_server(study) as base, httpx.Client(base_url=base) as c:
        port = base.rsplit(":", 1)[1]
        for host in ("evil.example", f"evil.example:{port}"):
            assert c.get(f"/r/{token}", headers={"Host": host}).status_code == 400
            assert c.get(f"/api/r/{token}/cases/1", headers={"Host": host}).status_code == 400
            assert c.post(f"/api/r/{token}/cases/1/ratings", json=body, headers={"Host": host}).status_code == 400
        plain = {"Content-Type": "text/plain"}
        r = c.post(f"/api/r/{token}/cases/1/ratings", content=json.dumps(body), headers=plain)
        assert r.status_code == 415
        assert c.post(f"/api/r/{token}/finish", data={"x": "1"}).status_code == 415
        evil = {"Origin": "http://evil.example"}
        assert c.post(f"/api/r/{token}/cases/1/ratings", json=body, headers=evil).status_code == 403
        assert count_ratings(study) == 0
        assert c.get(f"/r/{token}", headers={"Host": f"localhost:{port}"}).status_code == 200
        same = {"Origin": base, "Sec-Fetch-Site": "same-origin"}
        assert c.post(f"/api/r/{token}/cases/1/ratings", json=body, headers=same).status_code == 200
    assert count_ratings(study) == 1
    with live_uvicorn(create_app(study, allowed_hosts=["review.hospital.example"])) as base:
        assert httpx.get(f"{base}/r/{token}", headers={"Host": "review.hospital.example"}).status_code == 200
        assert httpx.get(f"{base}/r/{token}", headers={"Host": "other.example"}).status_code == 400


def test_body_limit_is_413_and_errors_do_not_echo_input(study: Path) -> None:
    token = add_rater(study, "ann")
    cid = candidates(study)[0]["candidate_id"]
    big = json.dumps({"candidate_id": cid, "criterion": "coherence", "score": 3, "pad": "x" * 2_000_000}).encode()
    path = f"/api/r/{token}/cases/1/ratings"
    with live_server(study) as base, httpx.Client(base_url=base, timeout=60) as c:
        r = c.post(path, content=big, headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and len(r.content) < 500

        def chunks() -> Iterator[bytes]:  # no Content-Length: the limit holds while reading
            for i in range(0, len(big), 100_000):
                yield big[i : i + 100_000]

        r = c.post(path, content=chunks(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413 and len(r.content) < 500
        long_comment = "secret remark " * 500  # over the comment limit, under the body limit
        r = c.post(f"/api/r/{token}/cases/1/comments", json={"candidate_id": cid, "comment": long_comment})
        assert r.status_code == 422 and "secret remark" not in r.text and len(r.content) < 1000
        r = c.post(path, json={**{"candidate_id": cid, "criterion": "coherence"}, "score": "secret remark"})
        assert r.status_code == 422 and "secret remark" not in r.text
        assert c.post(path, json={"candidate_id": cid, "criterion": "coherence", "score": 4}).status_code == 200
    assert count_ratings(study) == 1


def test_security_headers_and_bad_host_warning(study: Path) -> None:
    token = add_rater(study, "ann")
    with live_server(study) as base:
        r = httpx.get(f"{base}/r/{token}")
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["cache-control"] == "no-store"
    assert "default-src 'self'" in r.headers["content-security-policy"]


@pytest.mark.slow
def test_real_cli_server_logs_no_report_text_or_tokens(study: Path) -> None:
    token = add_rater(study, "ann")
    port = free_port()
    exe = Path(sys.executable).with_name("radllama")
    proc = subprocess.Popen(
        [str(exe), "review", "serve", str(study), "--port", str(port), "--allowed-host", "review.example"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, "COLUMNS": "200"},
    )
    try:
        base = f"http://127.0.0.1:{port}"
        for _ in range(200):
            try:
                httpx.get(f"{base}/", timeout=1)
                break
            except httpx.TransportError:
                time.sleep(0.05)
        rows = candidates(study)
        with httpx.Client(base_url=base) as c:
            c.get(f"/r/{token}")
            c.get(f"/api/r/{token}/cases/1")
            cid = rows[0]["candidate_id"]
            c.post(f"/api/r/{token}/cases/1/ratings", json={"candidate_id": cid, "criterion": "x", "score": 9})
            c.post(f"/api/r/{token}/cases/1/comments", json={"candidate_id": cid, "comment": "secret remark"})
            c.get("/api/r/wrong/state")
            assert c.get(f"/r/{token}", headers={"Host": "review.example"}).status_code == 200
            assert c.get(f"/r/{token}", headers={"Host": "evil.example"}).status_code == 400
    finally:
        proc.send_signal(signal.SIGINT)
        log = proc.communicate(timeout=20)[0].decode()
    assert "serving" in log and "127.0.0.1" in log
    assert token not in log
    for text in [*FINDINGS, *(r["text"] for r in rows), "secret remark"]:
        assert text not in log
