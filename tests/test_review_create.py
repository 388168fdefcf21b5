"""`radllama review create / add-rater / export / report` through the real CLI, and study-file checks."""

from __future__ import annotations

import csv
import json
import sqlite3
from pathlib import Path

import pytest
from test_review_support import FINDINGS, SYSTEMS, candidates, write_predictions
from typer.testing import CliRunner

from radllama.cli import app
from radllama.errors import RadLlamaError
from radllama.review import store
from radllama.review.create import create_study

runner = CliRunner()


def run(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, list(map(str, args)))
    if res.exception and not isinstance(res.exception, (SystemExit, RadLlamaError)):
        raise res.exception
    err = str(res.exception) if isinstance(res.exception, RadLlamaError) else res.stderr
    return res.exit_code, res.stdout, err


@pytest.fixture
def preds(tmp_path: Path) -> list[Path]:
    ids = list(range(len(FINDINGS)))
    return [write_predictions(tmp_path, SYSTEMS[0], ids), write_predictions(tmp_path, SYSTEMS[1], ids[1:])]


def test_create_samples_common_ids_blinded_and_seeded(tmp_path: Path, preds: list[Path]) -> None:
    out = tmp_path / "s.db"
    code, _, _ = run("review", "create", "--predictions", *preds, "--cases", 4, "--seed", 7,
                     "--include-reference", "--out", out)  # fmt: skip
    assert code == 0
    conn = store.open_study(out)
    ids = [r[0] for r in conn.execute("SELECT case_id FROM cases ORDER BY position")]
    assert len(ids) == 4 and "case-0" not in ids  # case-0 is missing from the second file
    rows = candidates(out)
    assert len(rows) == 4 * 3
    assert {r["system"] for r in rows} == {*SYSTEMS, "reference"}
    assert all(r["candidate_id"].startswith("c") and len(r["candidate_id"]) == 17 for r in rows)
    orders = {tuple(r["system"] for r in rows if r["case_position"] == p) for p in range(1, 5)}
    assert len(orders) > 1  # per-case shuffle, not one fixed order
    # Same seed, same cases and order.
    out2 = tmp_path / "s2.db"
    assert run("review", "create", "--predictions", *preds, "--cases", 4, "--seed", 7, "--out", out2)[0] == 0
    ids2 = [r[0] for r in store.open_study(out2).execute("SELECT case_id FROM cases ORDER BY position")]
    assert ids2 == ids


def test_create_refuses_overwrite_without_force(tmp_path: Path, preds: list[Path]) -> None:
    out = tmp_path / "s.db"
    assert run("review", "create", "--predictions", *preds, "--cases", 2, "--out", out)[0] == 0
    token = store.add_rater(store.open_study(out), "keep me")
    code, _, err = run("review", "create", "--predictions", *preds, "--cases", 3, "--out", out)
    assert code == 1 and "--force" in err
    assert store.rater_for_token(store.open_study(out), token) is not None  # untouched
    assert run("review", "create", "--predictions", *preds, "--cases", 3, "--out", out, "--force")[0] == 0
    assert store.case_count(store.open_study(out)) == 3


def test_force_refuses_a_study_a_server_has_open(tmp_path: Path, preds: list[Path]) -> None:
    """Replacing the file (and its -wal) under a running `review serve` would lose what it writes next."""
    out = tmp_path / "s.db"
    assert run("review", "create", "--predictions", *preds, "--cases", 2, "--out", out)[0] == 0
    server = store.open_study(out)  # as `radllama review serve` holds it, between requests
    token = store.add_rater(server, "rating now")
    assert Path(f"{out}-wal").is_file()
    code, _, err = run("review", "create", "--predictions", *preds, "--cases", 3, "--out", out, "--force")
    assert code == 1 and "in use" in err and "\n" not in err
    assert Path(f"{out}-wal").is_file() and store.rater_for_token(server, token) is not None
    assert store.case_count(server) == 2
    server.close()
    assert run("review", "create", "--predictions", *preds, "--cases", 3, "--out", out, "--force")[0] == 0
    assert store.case_count(store.open_study(out)) == 3


def test_stratify_unseen_takes_half_each(tmp_path: Path) -> None:
    ids = list(range(6))
    files = [write_predictions(tmp_path, s, ids) for s in SYSTEMS]
    create_study(files, tmp_path / "s.db", 4, seed=1, stratify_unseen=True)
    flags = [r[0] for r in store.open_study(tmp_path / "s.db").execute("SELECT seen_findings FROM cases")]
    assert sorted(flags) == [0, 0, 1, 1]


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("disjoint", "share no case id"),
        ("too_many", "only 5 cases"),
        ("failed", "no prediction with status ok"),
        ("same_system", "appears in more than one"),
    ],
)
def test_create_bad_inputs_are_clear_errors(tmp_path: Path, setup: str, message: str) -> None:
    a = write_predictions(tmp_path, SYSTEMS[0], [0, 1, 2, 3, 4])
    if setup == "disjoint":
        b = write_predictions(tmp_path, SYSTEMS[1], [5])
    elif setup == "failed":
        b = tmp_path / "failed.jsonl"
        b.write_text(json.dumps({"id": "case-0", "system": "x", "findings": "f", "reference": "r",
                                 "prediction": "", "status": "failed", "error": "oom"}) + "\n")  # fmt: skip
    elif setup == "same_system":
        b = tmp_path / "copy.jsonl"
        b.write_text(a.read_text())
    else:
        b = write_predictions(tmp_path, SYSTEMS[1], [0, 1, 2, 3, 4])
    code, _, err = run("review", "create", "--predictions", a, b, "--cases", 6 if setup == "too_many" else 2,
                       "--out", tmp_path / "s.db")  # fmt: skip
    assert code == 1 and message in err
    assert not (tmp_path / "s.db").exists()  # nothing half-written


def test_stratify_accepts_only_unseen(tmp_path: Path, preds: list[Path]) -> None:
    args = ["--predictions", *preds, "--stratify", "mesh", "--out", tmp_path / "s"]
    code, _, err = run("review", "create", *args)
    assert code == 1 and "--stratify" in err


def test_not_a_study_is_a_clear_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_text("hello, not sqlite at all " * 50)
    other = tmp_path / "other.db"
    sqlite3.connect(other).execute("CREATE TABLE t (x)").connection.close()
    for path in (junk, other, tmp_path / "missing.db"):
        with pytest.raises(RadLlamaError, match="not a review study|no such study file"):
            store.open_study(path)
        code, _, err = run("review", "report", path, "--out", tmp_path / "rep")
        assert code == 1 and str(path) in err


def test_add_rater_prints_link_and_stores_only_a_hash(tmp_path: Path, preds: list[Path]) -> None:
    out = tmp_path / "s.db"
    run("review", "create", "--predictions", *preds, "--cases", 2, "--out", out)
    code, stdout, _ = run("review", "add-rater", out, "Dr Ada")
    assert code == 0
    link = stdout.strip()
    assert link.startswith("http://127.0.0.1:8765/r/")
    token = link.rsplit("/", 1)[1]
    assert len(token) >= 40
    for f in tmp_path.glob("s.db*"):  # the database and its WAL
        assert token.encode() not in f.read_bytes()
    row = store.open_study(out).execute("SELECT token_hash FROM raters").fetchone()
    assert row[0] == store.hash_token(token)
    assert run("review", "add-rater", out, "Dr Ada")[0] == 1  # duplicate name


def test_export_and_report_on_direct_ratings(tmp_path: Path, preds: list[Path]) -> None:
    out = tmp_path / "s.db"
    run("review", "create", "--predictions", *preds, "--cases", 2, "--out", out, "--include-reference")
    conn = store.open_study(out)
    for name in ("ann", "bob"):
        store.add_rater(conn, name)
    rows = candidates(out)
    with store.transaction(conn):
        for rater_id in (1, 2):
            for i, r in enumerate(rows):
                for k, crit in enumerate(store.CRITERIA):
                    conn.execute(
                        "INSERT INTO ratings VALUES (?, ?, ?, ?, ?, ?)",
                        (rater_id, r["case_position"], r["candidate_id"], crit, 1 + (i + k) % 5, "t"),
                    )
    code, _, _ = run("review", "export", out, "--out", tmp_path / "r.csv")
    assert code == 0
    exported = list(csv.DictReader((tmp_path / "r.csv").open()))
    assert len(exported) == 2 * len(rows) * 5
    code, _, _ = run("review", "report", out, "--out", tmp_path / "rep", "--predictions", *preds)
    assert code == 0
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["krippendorff_alpha_ordinal"]["overall"] == pytest.approx(1.0)  # identical raters
    assert summary["cohen_kappa_quadratic"]["ann vs bob"]["overall"] == pytest.approx(1.0)
    assert set(summary["scores"]) == {*SYSTEMS, "reference"}
    assert (tmp_path / "rep" / "scores.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "Krippendorff" in md and SYSTEMS[0] in md and "reference (radiologist)" in md
    assert "not comparable" not in md  # every rater scored every case
    assert "p (within cases)" in md and "bootstrap over cases" in md  # candidates of a case are one cluster
    assert summary["spearman_vs_rougeL"]["overall"]["n_cases"] == 2
    # The paper's own expert scores close the report, in their own labelled table.
    measured, reported = md.split("## Reported by the paper, not measured here", 1)
    assert "Radiology-Llama2" not in measured and "| Radiology-Llama2 | 48.5 |" in reported
    assert summary["rougeL_mean"]["reference"] is None and summary["rougeL_mean"][SYSTEMS[0]] > 0


def test_report_counts_only_raters_who_scored(tmp_path: Path, preds: list[Path]) -> None:
    """Two raters registered, one scored: the report, the CLI line and summary.json all say one."""
    out = tmp_path / "s.db"
    run("review", "create", "--predictions", *preds, "--cases", 2, "--out", out)
    conn = store.open_study(out)
    for name in ("Dr A", "Dr B"):
        store.add_rater(conn, name)
    with store.transaction(conn):
        for r in candidates(out):
            for crit in store.CRITERIA:
                row = (r["case_position"], r["candidate_id"], crit)
                conn.execute("INSERT INTO ratings VALUES (1, ?, ?, ?, 3, 't')", row)
    conn.close()
    res = runner.invoke(app, ["review", "report", str(out), "--out", str(tmp_path / "rep")], env={"COLUMNS": "200"})
    assert res.exit_code == 0, res.output
    summary = json.loads((tmp_path / "rep" / "summary.json").read_text())
    assert summary["raters"] == ["Dr A"] and summary["raters_without_scores"] == ["Dr B"]
    assert {e["raters"] for per in summary["scores"].values() for e in per.values()} == {1}
    assert "from 1 rater;" in res.output and "2 raters" not in res.output
    md = (tmp_path / "rep" / "report.md").read_text()
    assert "1 rater (Dr A)" in md and "2 raters" not in md
    assert "Dr B registered but scored nothing" in md
