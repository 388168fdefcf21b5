"""The study database: one SQLite file holds cases, blinded candidates, raters and their scores.

The file is the whole study, so it can be copied, archived and re-reported. Which system wrote a
candidate lives only in ``candidates.system``; nothing that reaches a rater reads that column.
"""

from __future__ import annotations

import hashlib
import secrets
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from radllama.errors import RadLlamaError

SCHEMA_NAME = "radllama-review"
SCHEMA_VERSION = "1"

# The five criteria of Radiology-Llama2 (Liu et al. 2023, §4.2), in the paper's order.
CRITERIA: tuple[str, ...] = (
    "understandability",
    "coherence",
    "relevance",
    "conciseness",
    "clinical_utility",
)
CRITERION_LABELS: dict[str, str] = {
    "understandability": "Understandability",
    "coherence": "Coherence",
    "relevance": "Relevance",
    "conciseness": "Conciseness",
    "clinical_utility": "Clinical Utility",
}
# One-line guidance shown to raters under each criterion.
CRITERION_HELP: dict[str, str] = {
    "understandability": "Clear and easy for a clinician to read.",
    "coherence": "Logically organised and internally consistent.",
    "relevance": "Addresses these findings; nothing unrelated.",
    "conciseness": "Brief, without unnecessary detail.",
    "clinical_utility": "Useful for clinical decision-making.",
}
MIN_SCORE, MAX_SCORE = 1, 5
REFERENCE_SYSTEM = "reference"
MAX_COMMENT_CHARS = 4000

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE cases (
    position INTEGER PRIMARY KEY,            -- 1..N, the order raters see
    case_id TEXT NOT NULL UNIQUE,            -- the id in the prediction files
    findings TEXT NOT NULL,
    reference TEXT NOT NULL,
    seen_findings INTEGER                    -- 1/0/NULL (unknown)
);
CREATE TABLE candidates (
    candidate_id TEXT PRIMARY KEY,           -- opaque; the only handle raters get
    case_position INTEGER NOT NULL REFERENCES cases(position),
    slot INTEGER NOT NULL,                   -- per-case shuffled display order, 0-based
    system TEXT NOT NULL,                    -- hidden from raters
    text TEXT NOT NULL,
    UNIQUE (case_position, slot),
    UNIQUE (case_position, system)
);
CREATE TABLE raters (
    rater_id INTEGER PRIMARY KEY,
    name TEXT NOT NULL UNIQUE,
    token_hash TEXT NOT NULL UNIQUE,         -- sha256 of the link token; the token itself is never stored
    created TEXT NOT NULL,
    finished TEXT
);
CREATE TABLE ratings (
    rater_id INTEGER NOT NULL REFERENCES raters(rater_id),
    case_position INTEGER NOT NULL REFERENCES cases(position),
    candidate_id TEXT NOT NULL REFERENCES candidates(candidate_id),
    criterion TEXT NOT NULL,
    score INTEGER NOT NULL CHECK (score BETWEEN {MIN_SCORE} AND {MAX_SCORE}),
    updated TEXT NOT NULL,
    UNIQUE (rater_id, candidate_id, criterion)
);
-- One free-text comment per rater and candidate (not per criterion), so it has its own table.
CREATE TABLE comments (
    rater_id INTEGER NOT NULL REFERENCES raters(rater_id),
    candidate_id TEXT NOT NULL REFERENCES candidates(candidate_id),
    comment TEXT NOT NULL,
    updated TEXT NOT NULL,
    UNIQUE (rater_id, candidate_id)
);
"""


def now() -> str:
    """UTC timestamp, ISO 8601 with seconds."""
    return datetime.now(UTC).isoformat(timespec="seconds")


def hash_token(token: str) -> str:
    """SHA-256 of a rater token; tokens are 256-bit random, so no salt or stretching is needed."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _configure(conn: sqlite3.Connection) -> sqlite3.Connection:
    conn.row_factory = sqlite3.Row
    # busy_timeout lets concurrent writers (several raters, one thread each) wait instead of failing.
    conn.execute("PRAGMA busy_timeout = 10000")
    conn.execute("PRAGMA foreign_keys = ON")
    return conn


def create_database(path: Path, force: bool = False) -> sqlite3.Connection:
    """Create an empty study file at ``path`` (refuses to replace one unless ``force``)."""
    path = Path(path)
    if path.exists() and not force:
        raise RadLlamaError(f"{path} already exists; pass --force to replace it (its ratings are lost)")
    if not path.parent.exists():
        raise RadLlamaError(f"output folder {path.parent} does not exist")
    conn = _configure(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
    conn.execute("PRAGMA journal_mode = WAL")
    conn.executescript(_SCHEMA)
    conn.executemany(
        "INSERT INTO meta(key, value) VALUES (?, ?)",
        [("schema", SCHEMA_NAME), ("version", SCHEMA_VERSION), ("created", now())],
    )
    return conn


def open_study(path: Path) -> sqlite3.Connection:
    """Open an existing study file, checking that it is one (and of a version we read)."""
    path = Path(path)
    if not path.is_file():
        raise RadLlamaError(f"{path}: no such study file (create one with `radllama review create`)")
    try:
        conn = _configure(sqlite3.connect(path, isolation_level=None, check_same_thread=False))
        conn.execute("PRAGMA journal_mode = WAL")
        row = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        version = conn.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()
    except sqlite3.DatabaseError as exc:
        raise RadLlamaError(f"{path} is not a review study (not a readable SQLite study file)") from exc
    if row is None or row["value"] != SCHEMA_NAME:
        conn.close()
        raise RadLlamaError(f"{path} is not a review study (no '{SCHEMA_NAME}' marker)")
    if version is None or version["value"] != SCHEMA_VERSION:
        conn.close()
        found = version["value"] if version else "none"
        raise RadLlamaError(f"{path}: study version {found}; this radllama reads version {SCHEMA_VERSION}")
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """BEGIN IMMEDIATE ... COMMIT (rolled back on error); IMMEDIATE takes the write lock up front."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def get_meta(conn: sqlite3.Connection) -> dict[str, str]:
    """All study metadata as a dict."""
    return {r["key"]: r["value"] for r in conn.execute("SELECT key, value FROM meta")}


def add_rater(conn: sqlite3.Connection, name: str) -> str:
    """Register a rater and return their secret link token (shown once; only its hash is kept)."""
    name = name.strip()
    if not name:
        raise RadLlamaError("rater name must not be empty")
    token = secrets.token_urlsafe(32)
    try:
        with transaction(conn):
            conn.execute(
                "INSERT INTO raters(name, token_hash, created) VALUES (?, ?, ?)",
                (name, hash_token(token), now()),
            )
    except sqlite3.IntegrityError as exc:
        raise RadLlamaError(f"a rater named {name!r} already exists in this study") from exc
    return token


def rater_for_token(conn: sqlite3.Connection, token: str) -> sqlite3.Row | None:
    """The rater row whose token hashes to ``token``'s hash, or None."""
    return conn.execute(
        "SELECT rater_id, name, finished FROM raters WHERE token_hash = ?", (hash_token(token),)
    ).fetchone()


def reopen_rater(conn: sqlite3.Connection, name: str) -> bool:
    """Let a rater who finished change their scores again; returns False if they had not finished."""
    with transaction(conn):
        row = conn.execute("SELECT rater_id, finished FROM raters WHERE name = ?", (name.strip(),)).fetchone()
        if row is None:
            names = [r["name"] for r in conn.execute("SELECT name FROM raters ORDER BY rater_id")]
            raise RadLlamaError(f"no rater named {name!r} in this study (raters: {', '.join(names) or 'none'})")
        conn.execute("UPDATE raters SET finished = NULL WHERE rater_id = ?", (row["rater_id"],))
    return row["finished"] is not None


def is_finished(conn: sqlite3.Connection, rater_id: int) -> bool:
    """Whether the rater has finished (their scores and comments are then frozen)."""
    row = conn.execute("SELECT finished FROM raters WHERE rater_id = ?", (rater_id,)).fetchone()
    return row is not None and row["finished"] is not None


def case_count(conn: sqlite3.Connection) -> int:
    """Number of cases in the study."""
    return conn.execute("SELECT COUNT(*) FROM cases").fetchone()[0]


def completed_cases(conn: sqlite3.Connection, rater_id: int) -> set[int]:
    """Positions of the cases where this rater has scored every criterion of every candidate."""
    rows = conn.execute(
        """
        SELECT c.case_position AS pos, COUNT(c.candidate_id) * ? AS needed,
               (SELECT COUNT(*) FROM ratings r WHERE r.rater_id = ? AND r.case_position = c.case_position)
                   AS have
        FROM candidates c GROUP BY c.case_position
        """,
        (len(CRITERIA), rater_id),
    ).fetchall()
    return {r["pos"] for r in rows if r["have"] >= r["needed"]}
