"""De-identification: planted PHI becomes typed placeholders, clinical text is kept, and every data command does it."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from radllama.data.mimic_cxr import build_mimic_cxr_splits
from radllama.data.tabular import build_table_splits
from radllama.deid import deidentify, find_phi

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Findings discussed with Dr. John Smith at 14:32 on 3/4/2021 by telephone.",
            "Findings discussed with Dr. [NAME] at [TIME] on [DATE] by telephone.",
        ),
        (
            "Electronically signed by: Mary O'Brien, MD on March 4, 2021 2:15 PM",
            "Electronically signed by: [NAME], MD on [DATE] [TIME]",
        ),
        ("Accession #: 12345678. MRN: ZZ 54 68 42 T.", "Accession #: [ID]. MRN: [ID]."),
        ("Please call Dr. Kelly at 9-0566 or (317) 555-1234.", "Please call Dr. [NAME] at [PHONE] or [PHONE]."),
        ("A 93-year-old woman. A 62-year-old man.", "A [AGE>89]-year-old woman. A 62-year-old man."),
        (
            "Critical result communicated to the referring physician, Dr. de la Torre, at 1430 hours.",
            "Critical result communicated to the referring physician, Dr. [NAME], at [TIME].",
        ),
        ("DISCUSSED WITH DR. SMITH AT 2:15 PM ON 03/04/2021.", "DISCUSSED WITH DR. [NAME] AT [TIME] ON [DATE]."),
        ("Patient name: Kaur, June. Comparison: 2019-01-02.", "Patient name: [NAME]. Comparison: [DATE]."),
        # The two names bench_phi_memorization.py found left (issue #23), and their kin.
        ("Patient name: de la O, Marc. MRN: AF8778408.", "Patient name: [NAME]. MRN: [ID]."),
        ("DISCUSSED WITH DR. O'DONNELL AT 0814 HOURS.", "DISCUSSED WITH DR. [NAME] AT [TIME]."),
        ("Dr. de la O was paged. DR. DE LA TORRE agrees.", "Dr. [NAME] was paged. DR. [NAME] agrees."),
        ("Signed by: Ana del Río, MD. Seen by Dr. Van der Berg.", "Signed by: [NAME], MD. Seen by Dr. [NAME]."),
    ],
)
def test_planted_phi_becomes_typed_placeholders(text: str, expected: str) -> None:
    assert deidentify(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "Mild compression deformity of T11 and T12. Degenerative changes of the C-spine at C5-6.",
        "There is a 5 mm nodule in the right upper lobe. Left lower lobe opacity 2.3 x 1.5 cm.",
        "Radiograph Chest PA and Lateral XXXX. Dr. XXXX was notified at XXXX p.m. on XXXX.",
        "Patient on heparin and Coumadin; ET tube 4 cm above the carina; Lung-RADS 4A. L4-L5.",
        "___ year old woman with cough // eval for pneumonia. Discussed with Dr. ___ at ___.",
        "Grade 2 spondylolisthesis of L5 on S1. A 45 year old with cough. Follow-up in 3 months.",
        # "DR" that names no one, O2, and anatomy in capitals (all-caps reports).
        "PORTABLE CHEST DR AP VIEW. CR/DR SYSTEM USED. ON 2L O2 VIA NASAL CANNULA, O2 SAT 94%.",
        "DR. XXXX WAS NOTIFIED AT XXXX. DR ON CALL NOTIFIED. MR CHEST WITHOUT CONTRAST. COMPARED TO MR BRAIN.",
        "MS PATIENT WITH COUGH. LEFT ATRIUM (LA) ENLARGED. DE NOVO LESION AT 2 O'CLOCK. LE FORT I FRACTURE.",
    ],
)
def test_clinical_text_and_existing_markers_are_kept(text: str) -> None:
    assert deidentify(text) == text
    assert find_phi(text) == []


def test_emails_and_ssns_go_through_presidios_own_recognisers() -> None:
    from presidio_analyzer.predefined_recognizers import EmailRecognizer, UsSsnRecognizer

    from radllama.deid import default_deidentifier

    kinds = {type(r) for r in default_deidentifier().engine.registry.recognizers}
    assert any(issubclass(k, EmailRecognizer) for k in kinds) and UsSsnRecognizer in kinds
    assert deidentify("Reply to jsmith@hospital.org or reading.room@pacs.local.") == "Reply to [EMAIL] or [EMAIL]."
    # presidio's SSN forms (dashes, spaces, dots); its published sample number is not one.
    assert deidentify("SS 219-09-9999, 219 09 9998, 219.09.9997.") == "SS [ID], [ID], [ID]."


def test_one_replacement_loop_refuses_overlapping_spans() -> None:
    from radllama.deid import PhiSpan, replace_spans

    spans = [PhiSpan(0, 2, "NAME", 0.9), PhiSpan(6, 9, "DATE", 0.9)]
    assert replace_spans("Li on 3/4 ok", spans) == "[NAME] on [DATE] ok"
    with pytest.raises(ValueError, match="overlapping"):
        replace_spans("Li on 3/4 ok", [PhiSpan(0, 5, "NAME", 0.9), PhiSpan(3, 8, "DATE", 0.9)])


def test_spans_side_by_side_stay_apart() -> None:
    """presidio-anonymizer replaces, without merging same-type spans that only spaces separate."""
    from radllama.deid import PhiSpan, replace_spans

    dates = [PhiSpan(0, 3, "DATE", 0.9), PhiSpan(4, 7, "DATE", 0.9), PhiSpan(7, 9, "NAME", 0.9)]
    assert replace_spans("3/4 5/6Li", dates) == "[DATE] [DATE][NAME]"
    assert replace_spans("no PHI", []) == "no PHI"


def test_deidentify_is_idempotent() -> None:
    once = deidentify("Signed by: Ana Lee, MD on 01/02/2020. Pager 4-1234. MRN: 1234567.")
    assert once == "Signed by: [NAME], MD on [DATE]. Pager [PHONE]. MRN: [ID]."
    assert deidentify(once) == once


def run_cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "1000"}
    return subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True, env=env)


def test_table_deidentify_removes_a_planted_name_and_counts_without_text(tmp_path: Path) -> None:
    src = tmp_path / "reports.csv"
    with src.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "findings", "impression"])
        for i in range(20):
            impression = "No acute disease."
            if i % 5 == 0:
                impression = f"Small effusion. Discussed with Dr. Zebulon Quist at 14:{10 + i} on 3/{i + 1}/2021."
            writer.writerow([f"r{i}", f"Lungs clear. Case {i}. 5 mm nodule at T11.", impression])
    plain, deid = tmp_path / "plain", tmp_path / "deid"
    args = ["data", "table", "--input", str(src), "--findings-col", "findings", "--impression-col", "impression"]
    build_table_splits(src, plain, "findings", "impression")
    proc = run_cli(*args, "--out", str(deid), "--deidentify")
    assert proc.returncode == 0, proc.stderr
    plain_text = "".join((plain / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    deid_text = "".join((deid / f"{s}.jsonl").read_text() for s in ("train", "validation", "test"))
    assert "Quist" in plain_text and "Quist" not in deid_text and "Zebulon" not in deid_text
    assert deid_text.count("Dr. [NAME] at [TIME] on [DATE]") == 4
    assert deid_text.count("5 mm nodule at T11") == 20  # clinical text kept
    manifest_text = (deid / "manifest.json").read_text()
    manifest = json.loads(manifest_text)
    assert manifest["deidentified"]["replaced"]["NAME"] == 4 and manifest["deidentified"]["replaced"]["DATE"] == 4
    assert "Quist" not in manifest_text and "14:1" not in manifest_text
    assert json.loads((plain / "manifest.json").read_text())["deidentified"] is None


def test_mimic_deidentify_keeps_its_markers(tmp_path: Path) -> None:
    manifest = build_mimic_cxr_splits(FIXTURES / "mimic", FIXTURES / "mimic/mimic-cxr-2.0.0-split.csv", tmp_path, True)
    train = [json.loads(line) for line in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert train[0]["indication"] == "___ year old woman with cough // eval for pneumonia"
    assert set(manifest["deidentified"]["replaced"]) >= {"NAME", "DATE", "TIME", "ID", "PHONE", "AGE"}
