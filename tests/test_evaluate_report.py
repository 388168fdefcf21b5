import csv
import io
import json
import re
from pathlib import Path

from playwright.sync_api import expect

from radllama.evaluate.metrics import metrics_from_cases, score_systems
from radllama.evaluate.paper_reported import reported_rows
from radllama.evaluate.report import cases_html, leaderboard_csv, leaderboard_rows, paper_table_markdown

SPLIT = [
    {"id": "a", "findings": "Heart enlarged.", "impression": "Mild cardiomegaly.", "seen_findings": False},
    {"id": "b", "findings": "Lungs clear.", "impression": "Normal chest.", "seen_findings": True},
]


def _scored():
    preds = {
        "good": [{"id": r["id"], "prediction": r["impression"]} for r in SPLIT],
        "bad": [
            {"id": "a", "prediction": "Normal chest </script><b>x</b>"},
            {"id": "b", "prediction": "Normal."},
        ],
    }
    systems = score_systems(preds, SPLIT)
    metrics = metrics_from_cases(systems, resamples=50)
    metrics["systems"]["GPT-4"] = {"not_run": "no key"}
    return systems, metrics


def test_rows_sorted_and_not_run_last() -> None:
    _, metrics = _scored()
    rows = leaderboard_rows(metrics)
    assert [r["system"] for r in rows] == ["good", "bad", "GPT-4"]
    assert rows[-1]["status"] == "not run: no key" and rows[-1]["n"] is None


def test_csv_has_ci_columns() -> None:
    _, metrics = _scored()
    rows = list(csv.DictReader(io.StringIO(leaderboard_csv(metrics))))
    good = next(r for r in rows if r["system"] == "good" and r["subset"] == "all")
    assert float(good["rougeL"]) == 1.0 and good["rougeL_ci_low"] and good["n"] == "2"
    assert next(r for r in rows if r["system"] == "GPT-4")["rougeL"] == ""


def test_html_is_self_contained_and_escapes_script() -> None:
    systems, _ = _scored()
    page = cases_html(systems)
    assert not re.search(r"(src|href)=\"https?://", page)  # no CDN
    assert "</script><b>" not in page  # user text cannot close our script element
    data = page.split('<script id="data" type="application/json">', 1)[1].split("</script>", 1)[0]
    parsed = json.loads(data)
    assert parsed["systems"] == ["good", "bad"]
    case_a = next(c for c in parsed["cases"] if c["id"] == "a")
    assert case_a["disagree"] is True and case_a["outputs"]["good"]["clinical"] == 1.0
    # The consistency check per answer: "Normal chest" for an enlarged heart omits it.
    assert case_a["outputs"]["bad"]["check"] == "omitted: Cardiomegaly"
    assert case_a["outputs"]["good"]["check"] == ""
    # ... and the independent reader's reading beside it (issue #30).
    assert case_a["outputs"]["bad"]["judge"] == "misses: cardiomegaly"
    assert case_a["outputs"]["good"]["judge"] == ""
    assert 'id="search"' in page and 'id="disagree"' in page


def test_non_chexpert_reference_is_not_scored_per_case() -> None:
    """'Emphysema.' against 'No acute ... abnormality.' scored 1.000; now "not scored" (and in no mean)."""
    split = [
        {"id": "e", "findings": "Flat diaphragms.", "impression": "Emphysema.", "seen_findings": False},
        {"id": "n", "findings": "Lungs clear.", "impression": "Normal chest.", "seen_findings": False},
    ]
    normal = "No acute cardiopulmonary abnormality."
    systems = score_systems({"s": [{"id": "e", "prediction": normal}, {"id": "n", "prediction": normal}]}, split)
    agreement = {c["id"]: c["clinical_agreement"] for c in systems[0].cases}
    assert agreement == {"e": None, "n": 1.0}
    page = cases_html(systems)
    data = json.loads(page.split('<script id="data" type="application/json">', 1)[1].split("</script>", 1)[0])
    assert {c["id"]: c["outputs"]["s"]["clinical"] for c in data["cases"]} == {"e": None, "n": 1.0}
    assert "o.clinical===null?NOT_SCORED" in page and "'not scored'" in page


def test_paper_rows_as_printed_and_kept_apart() -> None:
    for dataset in ("MIMIC-CXR", "OpenI"):
        assert len(reported_rows(dataset)) == 17  # every system of Table 2
    rows = {r["system"]: r for r in reported_rows("MIMIC-CXR")}
    assert (rows["Radiology-Llama2"]["rouge1"], rows["Radiology-Llama2"]["rougeL"]) == (0.4834, 0.4427)
    assert rows["Baichuan-7B"]["rougeL"] == 0.0029  # odd as printed, kept as printed
    assert {r["system"]: r["rouge1"] for r in reported_rows("OpenI")}["Anthropic Claude2"] == 0.2372
    _, metrics = _scored()
    md = paper_table_markdown(metrics, "MIMIC-CXR")
    measured, reported = md.split("Reported by the paper, not measured here", 1)
    assert "| good | 2 |" in measured and "Radiology-Llama2" not in measured
    assert "| Radiology-Llama2 | 0.4834 | 0.3240 | 0.4427 |" in reported
    assert "not found" not in md and "names neither its ROUGE implementation" in reported
    assert "Table 1: the 10 examples" in reported and "| Alpaca | 0.3464 |" in reported
    assert "The paper reports no figures" in paper_table_markdown(metrics, "my-hospital")


def test_expert_scores_reported_apart() -> None:
    from radllama.evaluate.paper_reported import expert_reported_markdown, expert_scores

    scores = expert_scores()
    assert scores["Clinical Utility"] == {"Radiology-Llama2": 50.0, "Llama": 13.0}
    md = expert_reported_markdown()
    assert md.startswith("## Reported by the paper, not measured here")
    assert "| Radiology-Llama2 | 48.5 | 47.5 | 46.5 | 49 | 50 |" in md and "| Dolly | – | – | – | 27.5 | – |" in md


def test_cases_page_shows_every_row_whatever_the_text(tmp_path: Path, chromium) -> None:  # noqa: ANN001 (Browser)
    """``<!--<script>`` inside a script element switches the HTML parser into its "double escaped"
    state, so the element (and the data) ran on into the page: 0 rows. Every row must show, as text."""
    tricky = "<!--<script> No acute disease"
    preds = {"sys": [{"id": "a", "prediction": tricky}, {"id": "b", "prediction": "Normal & <b>clear</b>"}]}
    path = tmp_path / "cases.html"
    path.write_text(cases_html(score_systems(preds, SPLIT)), encoding="utf-8")
    page = chromium.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.goto(path.as_uri())
    rows = page.locator("#cases tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#count")).to_have_text("2 of 2 cases")
    expect(page.locator("#cases tbody tr[data-id='a']")).to_contain_text(tricky)
    expect(page.locator("#cases tbody tr[data-id='a']")).to_contain_text("omitted: Cardiomegaly")
    expect(page.locator("#cases thead")).to_contain_text("Own check sys")
    expect(page.locator("#cases thead")).to_contain_text("Judge sys")
    expect(page.locator("#cases tbody tr[data-id='a']")).to_contain_text("misses: cardiomegaly")
    expect(page.locator("#cases tbody tr[data-id='b']")).to_contain_text("Normal & <b>clear</b>")
    assert not errors
    page.close()


def test_judge_column_names_misses_and_inventions_apart_from_our_check() -> None:
    from radllama.consistency import FIELDS
    from radllama.evaluate.report import _CHECK_NAMES, _judge_cell

    assert tuple(_CHECK_NAMES) == FIELDS  # every field of the check has its words in the Own check column
    case = {
        "findings": "Large left pneumothorax. Heart enlarged.",
        "prediction": "Left pneumothorax. Small right effusion.",
    }
    assert _judge_cell(case) == "misses: cardiomegaly; invents: pleural effusion"
    assert _judge_cell({"findings": "Lungs clear.", "prediction": "Stable cardiomegaly."}) == "invents: cardiomegaly"
    assert _judge_cell({**case, "status": "failed"}) == ""
    # A hedged finding named with its hedge is neither missed nor invented.
    assert (
        _judge_cell({"findings": "Cannot exclude small left effusion.", "prediction": "Possible left effusion."}) == ""
    )
