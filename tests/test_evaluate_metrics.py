import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from radllama.cli import app
from radllama.errors import RadLlamaError
from radllama.evaluate import stats
from radllama.evaluate.metrics import evaluate_predictions
from radllama.evaluate.report import leaderboard_markdown
from radllama.evaluate.stats import holm
from radllama.rouge import rouge_pair

SPLIT = [
    {"id": "a", "findings": "Heart is enlarged.", "impression": "Mild cardiomegaly.", "seen_findings": False},
    {
        "id": "b",
        "findings": "Lungs clear.",
        "impression": "No acute cardiopulmonary disease.",
        "seen_findings": True,
    },
    {
        "id": "c",
        "findings": "Right effusion.",
        "impression": "Right pleural effusion.",
        "seen_findings": False,
    },
    {"id": "d", "findings": "Clear.", "impression": "Normal chest.", "seen_findings": True},
]


def _pred(rid: str, system: str, prediction: str, **extra: object) -> dict:
    ref = {r["id"]: r for r in SPLIT}[rid]
    return {
        "id": rid,
        "system": system,
        "findings": ref["findings"],
        "reference": ref["impression"],
        "prediction": prediction,
        **extra,
    }


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_scores_match_rouge_and_subsets() -> None:
    preds = [_pred(r["id"], "copy", r["impression"]) for r in SPLIT]
    const = [_pred(r["id"], "const", "No acute cardiopulmonary disease.") for r in SPLIT]
    m = evaluate_predictions(preds + const, split_records=SPLIT, reference_system="const", resamples=200)
    assert m["scorer"] == "rouge-score 0.1.2, stemmer on"
    copy = m["systems"]["copy"]
    assert copy["all"]["n"] == 4 and copy["unseen"]["n"] == 2
    assert copy["all"]["rougeL"]["mean"] == 1.0
    assert copy["all"]["clinical_micro_f1"]["mean"] == 1.0
    assert copy["all"]["length_ratio"]["mean"] == 1.0
    expected = sum(rouge_pair("No acute cardiopulmonary disease.", r["impression"])["rouge1"] for r in SPLIT) / 4
    assert m["systems"]["const"]["all"]["rouge1"]["mean"] == pytest.approx(expected)
    low, high = m["systems"]["const"]["all"]["rouge1"]["ci95"]
    assert low <= expected <= high
    paired = m["paired_vs_reference"]["copy"]["all"]["rougeL"]
    assert paired["mean_diff"] > 0 and paired["n"] == 4


def test_paired_p_values_are_holm_adjusted_over_the_whole_family() -> None:
    """2 systems x 2 subsets x 4 metrics = 16 paired tests against the reference: one family."""
    preds = [_pred(r["id"], "copy", r["impression"]) for r in SPLIT]
    half = [_pred(r["id"], "half", r["impression"] if i % 2 else "Normal.") for i, r in enumerate(SPLIT)]
    const = [_pred(r["id"], "const", "No acute cardiopulmonary disease.") for r in SPLIT]
    m = evaluate_predictions(preds + half + const, split_records=SPLIT, reference_system="const", resamples=200)
    tests = [t for subsets in m["paired_vs_reference"].values() for s in subsets.values() for t in s.values()]
    assert len(tests) == 16 and "Holm" in m["multiplicity"] and "16" in m["multiplicity"]
    assert holm([t["p_value"] for t in tests]) == pytest.approx([t["p_holm"] for t in tests])
    assert all(t["p_holm"] >= t["p_value"] for t in tests)
    md = leaderboard_markdown(m)
    assert "Holm" in md and "p (Holm)" in md


def test_bad_input_is_counted_not_lost() -> None:
    rows = [
        _pred("a", "s", "Mild cardiomegaly."),
        _pred("a", "s", "duplicate line, ignored"),
        _pred("b", "s", ""),  # empty: scores 0, counted
        {"id": "c", "system": "s", "status": "failed", "error": "timeout"},
        {"id": "zzz", "system": "s", "reference": "x", "prediction": "y"},  # not in the split
        # "d" is missing
    ]
    m = evaluate_predictions(rows, split_records=SPLIT, resamples=100)
    issues = m["issues"]["s"]
    assert issues["duplicate_ids"] == 1
    assert issues["empty_predictions"] == 1
    assert issues["failed"] == 1
    assert issues["unknown_ids"] == 1
    assert issues["missing_ids"] == 1 and issues["examples"]["missing"] == ["d"]
    # The failed case (c) and the missing one (d) score as empty answers: every system is
    # ranked on the split's 4 cases.
    assert m["systems"]["s"]["all"]["n"] == 4
    assert m["systems"]["s"]["all"]["rougeL"]["mean"] == pytest.approx(0.25)  # 1.0, 0.0, 0.0, 0.0


def test_seen_findings_from_split_when_absent() -> None:
    rows = [{k: v for k, v in _pred(r["id"], "s", r["impression"]).items()} for r in SPLIT]
    m = evaluate_predictions(rows, split_records=SPLIT, resamples=50)
    assert m["systems"]["s"]["unseen"]["n"] == 2
    m = evaluate_predictions(rows, resamples=50)  # no split: seen unknown -> unseen empty, counted
    assert m["systems"]["s"]["unseen"]["n"] == 0
    assert m["issues"]["s"]["seen_findings_unknown"] == 4


def test_missing_reference_without_split_is_a_clear_error() -> None:
    with pytest.raises(RadLlamaError, match="no 'reference'"):
        evaluate_predictions([{"id": "a", "system": "s", "prediction": "x"}])
    with pytest.raises(RadLlamaError, match="not among the systems"):
        evaluate_predictions([_pred("a", "s", "x")], reference_system="other")


def test_eval_cli_writes_metrics_and_reports(tmp_path: Path) -> None:
    split = _write(tmp_path / "test.jsonl", SPLIT)
    a = _write(
        tmp_path / "copy.jsonl",
        [{k: v for k, v in _pred(r["id"], "copy", r["impression"]).items() if k != "reference"} for r in SPLIT],
    )
    b = _write(tmp_path / "const.jsonl", [_pred(r["id"], "const", "Normal chest.") for r in SPLIT[:3]])
    out = tmp_path / "eval"
    result = CliRunner().invoke(
        app,
        [
            "eval",
            "--predictions",
            str(a),
            str(b),
            "--split",
            str(split),
            "--reference-system",
            "const",
            "--out",
            str(out),
            "--resamples",
            "100",
        ],
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["systems"]) == {"copy", "const"}
    assert metrics["issues"]["const"]["missing_ids"] == 1
    assert metrics["systems"]["copy"]["all"]["rouge1"]["mean"] == 1.0
    for name in (
        "leaderboard.md",
        "leaderboard.csv",
        "leaderboard.json",
        "paper_table.md",
        "cases.html",
        "charts/rougeL.png",
    ):
        assert (out / name).is_file(), name
    assert "missing ids: 1" in result.output


def test_eval_cli_malformed_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a"\n')
    result = CliRunner().invoke(app, ["eval", "--predictions", str(bad)])
    assert isinstance(result.exception, RadLlamaError)
    assert "malformed JSON" in str(result.exception)


CLINICAL_SPLIT = [
    {"id": "p1", "findings": "f", "impression": "Mild cardiomegaly.", "seen_findings": False},
    {"id": "p2", "findings": "f", "impression": "Small left pleural effusion.", "seen_findings": False},
    {"id": "p3", "findings": "f", "impression": "Right lower lobe pneumonia.", "seen_findings": True},
    {"id": "p4", "findings": "f", "impression": "Left basilar atelectasis.", "seen_findings": False},
    {"id": "n1", "findings": "f", "impression": "No acute cardiopulmonary abnormality.", "seen_findings": True},
    {"id": "n2", "findings": "f", "impression": "Normal chest.", "seen_findings": True},
]


def test_clinical_headline_separates_constant_and_negated_from_references() -> None:
    systems = {
        "refs": [{"id": r["id"], "prediction": r["impression"]} for r in CLINICAL_SPLIT],
        "negated": [{"id": r["id"], "prediction": "No " + r["impression"].lower()} for r in CLINICAL_SPLIT],
        "constant": [{"id": r["id"], "prediction": "No acute cardiopulmonary abnormality."} for r in CLINICAL_SPLIT],
    }
    m = evaluate_predictions(systems, split_records=CLINICAL_SPLIT, reference_system="constant", resamples=200)
    refs, neg, const = (m["systems"][s]["all"] for s in ("refs", "negated", "constant"))
    assert refs["clinical_micro_f1"]["mean"] == 1.0 and refs["clinical_micro_f1_5"]["mean"] == 1.0
    # Denying every finding, or saying nothing, scores 0 on the headline ...
    for sub in (neg, const):
        assert sub["clinical_micro_f1"]["mean"] == 0.0 and sub["clinical_macro_f1_5"]["mean"] == 0.0
    # ... while No Finding, on its own line, rewards the normal cases (never in the headline).
    assert const["clinical_no_finding_f1"]["mean"] == pytest.approx(2 * 2 / (2 * 2 + 4))
    per = refs["clinical_per_observation"]
    assert per["Cardiomegaly"]["reference_positives"] == 1 and per["Fracture"]["f1"] is None
    paired = m["paired_vs_reference"]["refs"]["all"]["clinical_micro_f1"]
    assert paired["mean_diff"] == 1.0 and paired["n"] == 6 and "permutation" in paired["test"]


def test_macro_with_no_findings_anywhere_is_null_not_nan(tmp_path: Path) -> None:
    split = [r for r in CLINICAL_SPLIT if r["id"].startswith("n")]
    m = evaluate_predictions({"s": [{"id": r["id"], "prediction": "Normal."} for r in split]}, split, resamples=50)
    sub = m["systems"]["s"]["all"]
    assert sub["clinical_micro_f1"] == {"mean": None, "ci95": [None, None]}
    assert sub["clinical_macro_f1"]["mean"] is None and sub["clinical_no_finding_f1"]["mean"] == 1.0
    text = json.dumps(m, allow_nan=False)  # raises on NaN
    assert "NaN" not in text


def test_systems_ranked_on_the_same_cases_without_split() -> None:
    full = [_pred(r["id"], "full", r["impression"]) for r in SPLIT]
    partial = [_pred(r["id"], "partial", r["impression"]) for r in SPLIT[:2]]
    partial.append({**_pred("c", "partial", "x"), "status": "failed", "prediction": "stale text"})
    m = evaluate_predictions(full + partial, resamples=50)
    assert m["systems"]["partial"]["all"]["n"] == m["systems"]["full"]["all"]["n"] == 4
    assert m["issues"]["partial"]["missing_ids"] == 1 and m["issues"]["partial"]["failed"] == 1
    # a and b right, c failed (scored empty, its stale text ignored), d never answered.
    assert m["systems"]["partial"]["all"]["rougeL"]["mean"] == pytest.approx(0.5)


def test_headline_on_real_openi_impressions() -> None:
    """On 250 real OpenI reports: denying every stated finding, or answering the most frequent
    impression, scores far below the references, whose ROUGE the negation barely dents."""
    import re

    from radllama.io import read_jsonl
    from radllama.labeller import FINDINGS, PRESENT, label_report

    split = read_jsonl(Path(__file__).parent / "fixtures" / "openi" / "mesh_sample.jsonl")

    def negate(text: str) -> str:
        parts = re.split(r"(?<=[.;])\s+", text.strip())
        stated = [any(label_report(p)[o] == PRESENT for o in FINDINGS) for p in parts]
        pairs = zip(parts, stated, strict=True)
        return " ".join(re.sub(r"^(\d+\.\s*)?", r"\g<1>No ", p, count=1) if s else p for p, s in pairs)

    systems = {
        "references": [{"id": r["id"], "prediction": r["impression"]} for r in split],
        "negated": [{"id": r["id"], "prediction": negate(r["impression"])} for r in split],
        "constant": [{"id": r["id"], "prediction": "No acute cardiopulmonary abnormality."} for r in split],
    }
    m = evaluate_predictions(systems, split_records=split, reference_system="references", resamples=200)
    f1 = {name: e["all"]["clinical_micro_f1"]["mean"] for name, e in m["systems"].items()}
    assert f1["references"] == 1.0 and f1["constant"] == 0.0 and f1["negated"] < 0.3
    assert m["systems"]["negated"]["all"]["rougeL"]["mean"] > 0.95  # ROUGE hardly notices
    assert m["paired_vs_reference"]["negated"]["all"]["clinical_micro_f1"]["p_value"] < 0.01


_IMPRESSIONS = [
    "Mild cardiomegaly.",
    "Right pleural effusion.",
    "No acute cardiopulmonary disease.",
    "Left lower lobe pneumonia.",
    "Small left pneumothorax.",
    "Cardiomegaly with pulmonary edema.",
    "Possible right basilar atelectasis.",
    "No pneumothorax or effusion.",
]


def _two_close_systems(n: int) -> dict[str, list[dict]]:
    """Two systems right on about 55% and 50% of n cases: p-values well inside (0, 1)."""
    rng = np.random.default_rng(11)
    refs = rng.integers(0, len(_IMPRESSIONS), n)
    out = {}
    for name, keep in (("model", 0.55), ("baseline", 0.5)):
        right, guess = rng.random(n) < keep, rng.integers(0, len(_IMPRESSIONS), n)
        out[name] = [
            {"id": f"c{i}", "reference": _IMPRESSIONS[r], "seen_findings": i % 3 == 0,
             "prediction": _IMPRESSIONS[r if ok else g]}
            for i, (r, ok, g) in enumerate(zip(refs, right, guess, strict=True))
        ]  # fmt: skip
    return out


def test_figures_are_those_before_chunking_whatever_the_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pinned from main before issue #21's chunked resampling (9a2ea6c: one (resamples, n) index
    # matrix, scipy's permutation test); with 2-row chunks (100 of them) they must not move.
    systems = _two_close_systems(300)
    default = evaluate_predictions(systems, reference_system="baseline", resamples=200, seed=3)
    monkeypatch.setattr(stats, "CHUNK_ELEMENTS", 1)
    chunked = evaluate_predictions(systems, reference_system="baseline", resamples=200, seed=3)
    assert chunked == default
    model, baseline = default["systems"]["model"], default["systems"]["baseline"]
    assert model["all"]["rougeL"]["ci95"] == [0.5915525793650793, 0.6889871031746031]
    assert model["unseen"]["words"]["ci95"] == [3.39, 3.61]
    assert model["all"]["clinical_micro_f1"]["ci95"] == [0.5799212320921954, 0.6943917716094152]
    assert baseline["unseen"]["clinical_macro_f1_5"]["ci95"] == [0.6099519427955667, 0.7648093451908881]
    assert baseline["all"]["length_ratio"]["ci95"] == [1.0163819444444444, 1.077236111111111]
    paired = default["paired_vs_reference"]["model"]
    rouge, f1 = paired["all"]["rougeL"], paired["unseen"]["clinical_micro_f1"]
    assert rouge["ci95"] == [-0.05807837301587303, 0.08820039682539695] and rouge["p_value"] == 0.6169154228855721
    assert f1["ci95"] == [-0.09752590694229149, 0.10104167386897397] and f1["p_value"] == 0.9552238805970149
