"""The rater web app (FastAPI): one page per rater link, a small JSON API, static files from the package.

Blinding: every response is built from explicit column lists that never include
``candidates.system``; a rater only ever reads their own scores. Rater tokens are the only auth,
so access logs (which would record tokens in URLs) are off and nothing logs report text.
Once a rater finishes, their scores and comments are frozen (409) until the study owner runs
``radllama review reopen STUDY NAME``.
"""

from __future__ import annotations

import socket
import sqlite3
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field, StrictInt

from radllama.http_guard import DEFAULT_MAX_BODY_BYTES, SiteGuard, trusted_hosts
from radllama.review import store

STATIC_DIR = resources.files("radllama.review") / "static"
_SECURITY_HEADERS = {
    # Links carry the token: never leak it in a Referer, never cache rater pages.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
}


class RatingIn(BaseModel):
    """One score: candidate, criterion, integer 1-5 (StrictInt refuses 3.5, "3" and true)."""

    candidate_id: str = Field(max_length=64)
    criterion: str = Field(max_length=64)
    score: StrictInt = Field(ge=store.MIN_SCORE, le=store.MAX_SCORE)


def _db(request: Request) -> Iterator[sqlite3.Connection]:
    # One connection per request: sqlite3 connections are not shared between threads, and WAL plus
    # busy_timeout let concurrent requests (several raters) write without "database is locked".
    conn = store.open_study(request.app.state.study_path)
    try:
        yield conn
    finally:
        conn.close()


Db = Annotated[sqlite3.Connection, Depends(_db)]


def _rater(token: str, conn: Db) -> sqlite3.Row:
    row = store.rater_for_token(conn, token)
    if row is None:
        raise HTTPException(status_code=403, detail="unknown or revoked rater link")
    return row


Rater = Annotated[sqlite3.Row, Depends(_rater)]


class CommentIn(BaseModel):
    """An optional free-text comment on one candidate (empty text deletes it)."""

    candidate_id: str = Field(max_length=64)
    comment: str = Field(max_length=store.MAX_COMMENT_CHARS)


def create_app(
    study_path: Path,
    host: str = "127.0.0.1",
    allowed_hosts: Iterable[str] = (),
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> FastAPI:
    """The FastAPI app serving one study file (opened per request, so many raters can write at once).

    ``host`` is the bound address and ``allowed_hosts`` further names (a proxy's) the app answers to.
    """
    study_path = Path(study_path)
    store.open_study(study_path).close()  # fail fast on a file that is not a study
    app = FastAPI(title="RadLlama expert review", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.study_path = study_path
    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")

    # A foreign Host, a cross-site write or an oversized body reaches no route; every answer gets the headers.
    app.add_middleware(
        SiteGuard,
        allowed_hosts=trusted_hosts(host, allowed_hosts),
        max_body_bytes=max_body_bytes,
        response_headers=_SECURITY_HEADERS,
    )

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # FastAPI's default answer echoes each bad value ("input"), a whole oversized comment included.
        detail = [{"loc": e["loc"], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
        return JSONResponse({"detail": detail}, status_code=422)

    def case_exists(conn: sqlite3.Connection, position: int) -> None:
        if conn.execute("SELECT 1 FROM cases WHERE position = ?", (position,)).fetchone() is None:
            raise HTTPException(status_code=404, detail="no such case")

    def candidate_in_case(conn: sqlite3.Connection, position: int, candidate_id: str) -> None:
        case_exists(conn, position)
        row = conn.execute(
            "SELECT 1 FROM candidates WHERE candidate_id = ? AND case_position = ?", (candidate_id, position)
        ).fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail="no such candidate in this case")

    def still_open(conn: sqlite3.Connection, who: sqlite3.Row) -> None:
        # Checked inside the write transaction, so a finish that lands first always wins.
        if store.is_finished(conn, who["rater_id"]):
            raise HTTPException(
                status_code=409,
                detail="this review is finished and its answers are final; ask the study coordinator to reopen it",
            )

    def progress(conn: sqlite3.Connection, rater_id: int) -> dict:
        total = store.case_count(conn)
        done = store.completed_cases(conn, rater_id)
        unfinished = [p for p in range(1, total + 1) if p not in done]
        return {
            "total": total,
            "done": len(done),
            "completed": sorted(done),
            "first_unfinished": unfinished[0] if unfinished else None,
        }

    @app.get("/", response_class=HTMLResponse)
    def home() -> str:
        return (STATIC_DIR / "home.html").read_text(encoding="utf-8")

    @app.get("/r/{token}", response_class=HTMLResponse)
    def rater_page(token: str, conn: Db) -> Response:
        if store.rater_for_token(conn, token) is None:
            page = (STATIC_DIR / "home.html").read_text(encoding="utf-8")
            page = page.replace("<!--message-->", "<p class='error'>This review link is not valid.</p>")
            return HTMLResponse(page, status_code=403)
        return HTMLResponse((STATIC_DIR / "rater.html").read_text(encoding="utf-8"))

    @app.get("/api/r/{token}/state")
    def state(who: Rater, conn: Db) -> dict:
        return {
            "rater": who["name"],
            "finished": who["finished"] is not None,
            "criteria": [
                {"key": k, "label": store.CRITERION_LABELS[k], "help": store.CRITERION_HELP[k]} for k in store.CRITERIA
            ],
            "progress": progress(conn, who["rater_id"]),
        }

    @app.get("/api/r/{token}/cases/{position}")
    def get_case(position: int, who: Rater, conn: Db) -> dict:
        row = conn.execute("SELECT position, findings FROM cases WHERE position = ?", (position,)).fetchone()
        if row is None:
            raise HTTPException(status_code=404, detail="no such case")
        cands = conn.execute(
            "SELECT candidate_id, slot, text FROM candidates WHERE case_position = ? ORDER BY slot",
            (position,),
        ).fetchall()
        scores: dict[str, dict[str, int]] = {c["candidate_id"]: {} for c in cands}
        for r in conn.execute(
            "SELECT candidate_id, criterion, score FROM ratings WHERE rater_id = ? AND case_position = ?",
            (who["rater_id"], position),
        ):
            scores[r["candidate_id"]][r["criterion"]] = r["score"]
        comments = {
            r["candidate_id"]: r["comment"]
            for r in conn.execute(
                """SELECT m.candidate_id, m.comment FROM comments m JOIN candidates c USING (candidate_id)
                   WHERE m.rater_id = ? AND c.case_position = ?""",
                (who["rater_id"], position),
            )
        }
        return {
            "position": row["position"],
            "findings": row["findings"],
            "candidates": [
                {
                    "candidate_id": c["candidate_id"],
                    "label": chr(ord("A") + c["slot"]),
                    "text": c["text"],
                    "scores": scores[c["candidate_id"]],
                    "comment": comments.get(c["candidate_id"], ""),
                }
                for c in cands
            ],
            "progress": progress(conn, who["rater_id"]),
        }

    @app.post("/api/r/{token}/cases/{position}/ratings")
    def put_rating(position: int, body: RatingIn, who: Rater, conn: Db) -> dict:
        if body.criterion not in store.CRITERIA:
            raise HTTPException(status_code=422, detail=f"unknown criterion {body.criterion!r}")
        candidate_in_case(conn, position, body.candidate_id)
        with store.transaction(conn):
            still_open(conn, who)
            # Upsert on UNIQUE(rater, candidate, criterion): resubmitting is idempotent.
            conn.execute(
                """INSERT INTO ratings(rater_id, case_position, candidate_id, criterion, score, updated)
                   VALUES (?, ?, ?, ?, ?, ?)
                   ON CONFLICT(rater_id, candidate_id, criterion)
                   DO UPDATE SET score = excluded.score, updated = excluded.updated""",
                (who["rater_id"], position, body.candidate_id, body.criterion, body.score, store.now()),
            )
        return {"saved": True, "progress": progress(conn, who["rater_id"])}

    @app.post("/api/r/{token}/cases/{position}/comments")
    def put_comment(position: int, body: CommentIn, who: Rater, conn: Db) -> dict:
        candidate_in_case(conn, position, body.candidate_id)
        text = body.comment.strip()
        with store.transaction(conn):
            still_open(conn, who)
            if text:
                conn.execute(
                    """INSERT INTO comments(rater_id, candidate_id, comment, updated) VALUES (?, ?, ?, ?)
                       ON CONFLICT(rater_id, candidate_id)
                       DO UPDATE SET comment = excluded.comment, updated = excluded.updated""",
                    (who["rater_id"], body.candidate_id, text, store.now()),
                )
            else:
                conn.execute(
                    "DELETE FROM comments WHERE rater_id = ? AND candidate_id = ?",
                    (who["rater_id"], body.candidate_id),
                )
        return {"saved": True}

    @app.post("/api/r/{token}/finish")
    def finish(who: Rater, conn: Db) -> JSONResponse:
        prog = progress(conn, who["rater_id"])
        if prog["first_unfinished"] is not None:
            return JSONResponse(
                status_code=409,
                content={"detail": f"case {prog['first_unfinished']} is not complete", "progress": prog},
            )
        with store.transaction(conn):
            conn.execute(
                "UPDATE raters SET finished = COALESCE(finished, ?) WHERE rater_id = ?",
                (store.now(), who["rater_id"]),
            )
        return JSONResponse({"finished": True, "progress": prog})

    return app


def serve(study_path: Path, sock: socket.socket, host: str, allowed_hosts: Iterable[str] = ()) -> None:
    """Run the rater app with uvicorn on a bound socket until interrupted (no access log: URLs carry tokens)."""
    import uvicorn

    app = create_app(study_path, host, allowed_hosts)
    config = uvicorn.Config(app, access_log=False, log_level="warning")
    uvicorn.Server(config).run(sockets=[sock])
