"""Unblinding: ratings CSV export, and the study report (tables, agreement, Figure-4-style chart)."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.evaluate.paper_reported import expert_reported_markdown
from radllama.io import atomic_write_bytes, atomic_write_json, atomic_write_text, ensure_writable_dir
from radllama.review import stats, store
from radllama.review.create import load_predictions

ROUGE_SCORER_NAME = "rouge-score 0.1.2, stemmer on"
EXPORT_COLUMNS = [
    "rater", "case", "case_id", "candidate_id", "system", "criterion", "score", "comment", "updated",
]  # fmt: skip


def load_ratings(conn: sqlite3.Connection) -> list[stats.Rating]:
    """Every rating in the study, unblinded (with the system name)."""
    rows = conn.execute(
        """SELECT w.name AS rater, r.case_position AS case_pos, r.candidate_id, c.system, r.criterion, r.score
           FROM ratings r JOIN raters w USING (rater_id) JOIN candidates c USING (candidate_id)
           ORDER BY w.name, r.case_position, c.slot, r.criterion"""
    ).fetchall()
    return [
        stats.Rating(r["rater"], r["case_pos"], r["candidate_id"], r["system"], r["criterion"], r["score"])
        for r in rows
    ]


def export_csv(study: Path, out: Path) -> int:
    """Write every rating (one row per rater × candidate × criterion) as CSV; returns the row count."""
    conn = store.open_study(study)
    try:
        rows = conn.execute(
            """SELECT w.name, r.case_position, k.case_id, r.candidate_id, c.system, r.criterion, r.score,
                      COALESCE(m.comment, ''), r.updated
               FROM ratings r JOIN raters w USING (rater_id) JOIN candidates c USING (candidate_id)
               JOIN cases k ON k.position = r.case_position
               LEFT JOIN comments m ON m.rater_id = r.rater_id AND m.candidate_id = r.candidate_id
               ORDER BY w.name, r.case_position, c.slot, r.criterion"""
        ).fetchall()
    finally:
        conn.close()
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows(tuple(r) for r in rows)
    atomic_write_text(Path(out), buf.getvalue())
    return len(rows)


def rouge_by_candidate(conn: sqlite3.Connection, predictions: list[Path] | None = None) -> dict[str, float]:
    """ROUGE-L F1 of every non-reference candidate against its case's reference.

    Texts come from the study itself; with ``predictions`` they come from those files instead
    (matched by system and case id), e.g. to score against the files' own references.
    """
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    rows = conn.execute(
        """SELECT c.candidate_id, c.system, c.text, k.case_id, k.reference
           FROM candidates c JOIN cases k ON k.position = c.case_position WHERE c.system != ?""",
        (store.REFERENCE_SYSTEM,),
    ).fetchall()
    files = {p.system: p for p in map(load_predictions, predictions or [])}
    out: dict[str, float] = {}
    for r in rows:
        prediction, reference = r["text"], r["reference"]
        if files:
            rec = files.get(r["system"], None)
            rec = rec.records.get(r["case_id"]) if rec else None
            if rec is None:
                raise RadLlamaError(f"--predictions: no ok record for system {r['system']!r}, case {r['case_id']}")
            prediction, reference = str(rec["prediction"]), str(rec["reference"])
        out[r["candidate_id"]] = scorer.score(reference, prediction)["rougeL"].fmeasure
    return out


def _display(system: str) -> str:
    # The paper's Figure 4 shows the reference impressions as the radiologist's row.
    return "reference (radiologist)" if system == store.REFERENCE_SYSTEM else system


def _ordered(systems: list[str]) -> list[str]:
    """Systems in study order with the reference last, as in the paper's figure."""
    return sorted(systems, key=lambda s: s == store.REFERENCE_SYSTEM)


def _raters(names: list[str]) -> str:
    return f"{len(names)} rater{'' if len(names) == 1 else 's'}"


def _fmt(x: float | None, digits: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{digits}f}"


def _fmt_range(bounds: list[float | None]) -> str:
    return "n/a" if None in bounds else f"[{bounds[0]:.2f}, {bounds[1]:.2f}]"


def bar_chart_png(scores: dict[str, dict[str, dict]], n_cases: int) -> bytes:
    """Grouped bars like the paper's Figure 4: criteria on x, one bar per system (paper's scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    systems = _ordered(list(scores))
    x = np.arange(len(store.CRITERIA))
    width = 0.8 / max(len(systems), 1)
    fig, ax = plt.subplots(figsize=(9, 4.8), dpi=120)
    for i, system in enumerate(systems):
        vals = [scores[system].get(c, {}).get("paper_scale", 0.0) for c in store.CRITERIA]
        bars = ax.bar(x + (i - (len(systems) - 1) / 2) * width, vals, width, label=_display(system))
        ax.bar_label(bars, fmt="%.1f", fontsize=7, padding=2)
    ax.set_xticks(x, [store.CRITERION_LABELS[c] for c in store.CRITERIA])
    ax.set_ylim(0, store.MAX_SCORE * n_cases * 1.08)
    ax.set_ylabel(f"score (sum over {n_cases} cases, mean over raters)")
    ax.set_title("Expert review")
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, ncols=min(len(systems), 4), loc="upper center", bbox_to_anchor=(0.5, -0.1))
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def build_report(study: Path, out_dir: Path, predictions: list[Path] | None = None) -> dict:
    """Write ``summary.json``, ``report.md``, ``ratings.csv`` and ``scores.png`` to ``out_dir``."""
    conn = store.open_study(study)
    try:
        n_cases = store.case_count(conn)
        registered = [r["name"] for r in conn.execute("SELECT name FROM raters ORDER BY name")]
        ratings = load_ratings(conn)
        rouge = rouge_by_candidate(conn, predictions)
        systems = json.loads(store.get_meta(conn).get("systems", "[]"))
        cand_system = dict(conn.execute("SELECT candidate_id, system FROM candidates").fetchall())
    finally:
        conn.close()
    if not ratings:
        raise RadLlamaError(f"{study}: no ratings yet (raters open their links from `radllama review serve`)")
    out_dir = ensure_writable_dir(Path(out_dir))
    # Only raters with scores are in the tables; a registered rater who scored nothing is listed apart.
    scored = {r.rater for r in ratings}
    raters = [r for r in registered if r in scored]
    raw = stats.system_scores(ratings, n_cases)
    scores = {s: raw[s] for s in _ordered([*systems, *(s for s in raw if s not in systems)]) if s in raw}
    rouge_mean = {}
    for s in systems:
        vals = [v for c, v in rouge.items() if cand_system[c] == s]
        rouge_mean[s] = sum(vals) / len(vals) if vals else None
    summary = {
        "study": str(study),
        "cases": n_cases,
        "raters": raters,
        "raters_without_scores": [r for r in registered if r not in scored],
        "n_ratings": len(ratings),
        "criteria": list(store.CRITERIA),
        "scores": scores,
        "krippendorff_alpha_ordinal": stats.alpha_by_criterion(ratings),
        "cohen_kappa_quadratic": stats.kappa_by_pair(ratings),
        "rougeL_mean": rouge_mean,
        "spearman_vs_rougeL": stats.rouge_correlation(ratings, rouge),
        "rouge_scorer": ROUGE_SCORER_NAME,
    }
    atomic_write_json(out_dir / "summary.json", summary)
    atomic_write_text(out_dir / "report.md", render_markdown(summary))
    atomic_write_bytes(out_dir / "scores.png", bar_chart_png(scores, n_cases))
    export_csv(study, out_dir / "ratings.csv")
    return summary


def render_markdown(s: dict) -> str:
    """The human-readable summary of a report (tables in GitHub markdown)."""
    crit = list(store.CRITERIA)
    labels = [store.CRITERION_LABELS[c] for c in crit]
    n = s["cases"]
    idle = s["raters_without_scores"]
    lines = [
        "# Expert review",
        "",
        f"{n} cases, {_raters(s['raters'])} ({', '.join(s['raters'])}), {s['n_ratings']} scores (1–5)."
        + (f" {', '.join(idle)} registered but scored nothing." if idle else ""),
        "",
        f"## Scores on the paper's scale (sum over {n} cases, mean over raters; max {store.MAX_SCORE * n})",
        "",
        "| system | " + " | ".join(labels) + " | ROUGE-L |",
        "|---|" + "---:|" * (len(crit) + 1),
    ]
    for system, per in s["scores"].items():
        cells = []
        for c in crit:
            e = per.get(c)
            cells.append("–" if e is None else f"{e['paper_scale']:.1f}" + ("" if e["complete"] else "*"))
        rl = s["rougeL_mean"].get(system)
        lines.append(f"| {_display(system)} | " + " | ".join(cells) + f" | {_fmt(rl)} |")
    if any(not e["complete"] for per in s["scores"].values() for e in per.values()):
        lines += ["", "\\* not every rater scored every case: these sums are not comparable."]
    lines.append("")
    lines += ["## Mean score (1–5)", "", "| system | " + " | ".join(labels) + " |"]
    lines.append("|---|" + "---:|" * len(crit))
    for system, per in s["scores"].items():
        means = " | ".join(_fmt(per[c]["mean"], 2) if c in per else "–" for c in crit)
        lines.append(f"| {_display(system)} | {means} |")
    alpha = s["krippendorff_alpha_ordinal"]
    lines += [
        "",
        "## Inter-rater agreement",
        "",
        "| statistic | " + " | ".join(labels) + " | overall |",
        "|---|" + "---:|" * (len(crit) + 1),
        "| Krippendorff's α (ordinal) | " + " | ".join(_fmt(alpha[c]) for c in [*crit, "overall"]) + " |",
    ]
    for pair, k in s["cohen_kappa_quadratic"].items():
        kappas = " | ".join(_fmt(k[c]) for c in [*crit, "overall"])
        lines.append(f"| Cohen's κ (quadratic), {pair} | {kappas} |")
    corr = s["spearman_vs_rougeL"]
    lines += [
        "",
        f"## Scores vs ROUGE-L ({s['rouge_scorer']})",
        "",
        "Spearman's ρ between each candidate's mean score (over raters) and its ROUGE-L F1 "
        f"against the reference (reference candidates excluded). {corr['overall']['test']}.",
        "",
        "| | " + " | ".join(labels) + " | overall |",
        "|---|" + "---:|" * (len(crit) + 1),
        "| ρ | " + " | ".join(_fmt(corr[c]["rho"]) for c in [*crit, "overall"]) + " |",
        "| 95% CI (cases) | " + " | ".join(_fmt_range(corr[c]["ci95"]) for c in [*crit, "overall"]) + " |",
        "| p (within cases) | " + " | ".join(_fmt(corr[c]["p"]) for c in [*crit, "overall"]) + " |",
        "| n candidates | " + " | ".join(str(corr[c]["n"]) for c in [*crit, "overall"]) + " |",
        "| n cases | " + " | ".join(str(corr[c]["n_cases"]) for c in [*crit, "overall"]) + " |",
        "",
        "![scores](scores.png)",
        "",
        expert_reported_markdown(),  # the paper's own study, kept apart from the scores above
    ]
    return "\n".join(lines)
