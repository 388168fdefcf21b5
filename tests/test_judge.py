"""Issue #30: the independent clinical reader (radllama.evaluate.judge): statuses, sides, names, CheXpert labels."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from radllama.evaluate import judge
from radllama.evaluate.judge import HISTORICAL, NEGATED, PRESENT, UNCERTAIN

SRC = Path(__file__).resolve().parents[1] / "src"


def only(text: str, finding: str) -> judge.Mention:
    ms = [m for m in judge.read(text) if m.finding == finding]
    assert len(ms) == 1, (text, judge.read(text))
    return ms[0]


def test_present_with_side():
    m = only("Small left pleural effusion.", "pleural effusion")
    assert (m.status, m.side) == (PRESENT, "left")
    assert judge.findings("Small left pleural effusion.") == {"pleural effusion"}
    assert judge.side_of("Small left pleural effusion.", "pleural effusion") == "left"


def test_negated():
    assert judge.status_of("No pneumothorax.", "pneumothorax") == NEGATED
    assert judge.findings("No pneumothorax.") == set()
    assert judge.findings("No pneumothorax.", statuses=(NEGATED,)) == {"pneumothorax"}


@pytest.mark.parametrize(
    "text",
    [
        "Cannot exclude small left effusion.",
        "Small left effusion cannot be excluded.",
        "Possible small left pleural effusion.",
        "Left basilar opacity may represent a small effusion.",
        "Questionable small left effusion.",
        "Findings suspicious for a left pleural effusion.",
        "Opacity concerning for left pleural effusion.",
        "Likely small left pleural effusion.",
    ],
)
def test_hedged_is_uncertain(text):
    assert judge.status_of(text, "pleural effusion") == UNCERTAIN
    assert "pleural effusion" not in judge.findings(text)
    assert "pleural effusion" in judge.findings(text, statuses=(PRESENT, UNCERTAIN))


@pytest.mark.parametrize(
    "text",
    [
        "Previously seen left pneumothorax is no longer visible.",
        "The left pneumothorax has resolved.",
        "Interval resolution of the left pneumothorax.",
        "Left pneumothorax, no longer seen.",
    ],
)
def test_resolved_is_historical_not_present(text):
    assert judge.status_of(text, "pneumothorax") == HISTORICAL
    assert "pneumothorax" not in judge.findings(text)
    assert judge.labels_chexpert(text)["Pneumothorax"] == judge.NEGATIVE


def test_resolving_is_still_there():
    assert judge.status_of("Resolving right lower lobe pneumonia.", "pneumonia") == PRESENT


def test_malpositioned_tube():
    text = "Endotracheal tube terminates in the right mainstem bronchus."
    assert {"malpositioned tube", "support device"} <= judge.findings(text)
    assert judge.side_of(text, "malpositioned tube") == "right"
    assert "malpositioned tube" in judge.findings("Nasogastric tube coiled in the esophagus.")
    assert "malpositioned tube" in judge.findings("Feeding tube tip in the right lower lobe bronchus.")
    # A position needs a tube in its sentence; a well-placed tube is no malposition.
    assert "malpositioned tube" not in judge.findings("Mass narrowing the right mainstem bronchus.")
    assert "malpositioned tube" not in judge.findings("Endotracheal tube tip 4 cm above the carina.")


def test_stable_cardiomegaly_is_present_and_stable():
    m = only("Stable cardiomegaly.", "cardiomegaly")
    assert (m.status, m.change) == (PRESENT, "stable")
    assert only("Increased size of the left pleural effusion.", "pleural effusion").change == "increased"


def test_two_findings_in_one_sentence():
    text = "Moderate cardiomegaly and small right pleural effusion."
    assert judge.findings(text) == {"cardiomegaly", "pleural effusion"}
    assert judge.side_of(text, "pleural effusion") == "right"
    assert judge.side_of(text, "cardiomegaly") is None
    three = "Right pneumothorax, left lower lobe consolidation and a displaced left rib fracture."
    assert judge.findings(three) == {"pneumothorax", "consolidation", "fracture"}
    assert [judge.side_of(three, f) for f in ("pneumothorax", "consolidation", "fracture")] == ["right", "left", "left"]


def test_negation_after_a_long_clause():
    text = (
        "There is no focal consolidation, pleural effusion, or pneumothorax, and the cardiomediastinal "
        "silhouette is within normal limits."
    )
    assert judge.findings(text) == set()
    for f in ("consolidation", "pleural effusion", "pneumothorax", "cardiomegaly", "widened mediastinum"):
        assert judge.status_of(text, f) == NEGATED, f
    assert judge.findings("No focal consolidation, large pleural effusion, or pneumothorax is identified.") == set()


def test_a_negation_ends_where_a_new_statement_starts():
    assert judge.status_of("No pneumothorax and small left effusion.", "pleural effusion") == PRESENT
    assert judge.status_of("No pneumothorax, possible effusion.", "pleural effusion") == UNCERTAIN
    assert judge.status_of("Possible effusion, no pneumothorax.", "pneumothorax") == NEGATED
    assert judge.status_of("No pneumothorax, cannot exclude small effusion.", "pleural effusion") == UNCERTAIN
    assert judge.status_of("No effusion, but there is a small left pneumothorax.", "pneumothorax") == PRESENT
    assert judge.status_of("Cardiomegaly without pulmonary edema.", "cardiomegaly") == PRESENT
    assert judge.status_of("Cardiomegaly without pulmonary edema.", "pulmonary edema") == NEGATED


def test_normal_statements_negate_what_they_rule_out():
    assert judge.status_of("Heart size is normal.", "cardiomegaly") == NEGATED
    assert judge.status_of("The heart is not enlarged.", "cardiomegaly") == NEGATED
    assert judge.status_of("Mediastinal contours are within normal limits.", "widened mediastinum") == NEGATED
    assert judge.findings("Lungs are clear. Bones are intact. Normal heart size.") == set()


def test_broader_names():
    # The benchmark's types: pneumonia names a consolidation (with its status), a collapse an atelectasis.
    text = "Right lower lobe airspace opacity concerning for pneumonia."
    assert judge.status_of(text, "pneumonia") == UNCERTAIN
    assert judge.status_of(text, "consolidation") == UNCERTAIN
    assert judge.status_of(text, "lung opacity") == PRESENT
    assert {"collapse", "atelectasis"} <= judge.findings("Complete collapse of the left lower lobe.")
    assert "collapse" not in judge.findings("Bibasilar subsegmental atelectasis.")
    assert {"vertebral compression fracture", "fracture"} <= judge.findings("T12 compression fracture.")


@pytest.mark.parametrize(
    ("text", "finding"),
    [
        ("The mediastinum is markedly widened.", "widened mediastinum"),
        ("Mild interstitial edema.", "pulmonary edema"),
        ("Pulmonary vascular congestion.", "pulmonary edema"),
        ("Large hiatal hernia.", "hiatal hernia"),
        ("Free air under the right hemidiaphragm.", "free air"),
        ("Pneumoperitoneum.", "free air"),
        ("Spiculated right upper lobe mass.", "lung mass"),
        ("8 mm nodule in the left upper lobe.", "nodule"),
    ],
)
def test_vocabulary(text, finding):
    assert finding in judge.findings(text)


def test_differential_is_uncertain():
    text = "Left lower lobe atelectasis versus pneumonia."
    assert judge.status_of(text, "pneumonia") == UNCERTAIN
    assert judge.status_of(text, "atelectasis") == UNCERTAIN


def test_labels_chexpert():
    labels = judge.labels_chexpert("Cardiomegaly. Possible small left effusion. No pneumothorax.")
    assert set(labels) == set(judge.CHEXPERT_OBSERVATIONS)
    assert labels["Cardiomegaly"] == judge.POSITIVE
    assert labels["Pleural Effusion"] == judge.UNCERTAIN_LABEL
    assert labels["Pneumothorax"] == judge.NEGATIVE
    assert labels["Edema"] == judge.NOT_MENTIONED
    assert labels["No Finding"] == judge.NEGATIVE
    assert judge.labels_chexpert("No acute cardiopulmonary abnormality.")["No Finding"] == judge.POSITIVE
    # CheXpert keeps pneumonia apart from consolidation.
    assert judge.labels_chexpert("Right lower lobe pneumonia.")["Consolidation"] == judge.NOT_MENTIONED


def test_empty_and_errors():
    assert judge.read("") == [] and judge.read("   ") == []
    assert judge.findings("") == set()
    assert judge.status_of("Small effusion.", "pneumothorax") is None
    assert judge.labels_chexpert("")["No Finding"] == judge.NOT_MENTIONED
    with pytest.raises(ValueError, match="unknown status"):
        judge.findings("x", statuses=("positive",))


def test_mention_offsets():
    text = "No pneumothorax. Small left pleural effusion."
    m = only(text, "pleural effusion")
    assert text[m.span[0] : m.span[1]] == "effusion"
    assert text[m.sentence[0] : m.sentence[1]].strip() == "Small left pleural effusion."


def test_digest_covers_the_rules(monkeypatch):
    digest = judge.reader_digest()
    assert len(digest) == 64 and digest == judge.reader_digest()
    monkeypatch.setitem(judge.rules.TARGETS, "pneumothorax", ["pneumothorax", "ptx"])
    assert judge.reader_digest() != digest
    monkeypatch.undo()
    monkeypatch.setattr(judge, "READER_VERSION", "test")
    assert judge.reader_digest() != digest


def test_loads_nothing_else():
    # A fresh process: reading imports neither presidio (a spaCy plugin) nor transformers, downloads nothing.
    code = (
        "import json, sys, time; t = time.perf_counter(); from radllama.evaluate import judge; "
        "judge.read('Small left effusion.'); print(json.dumps({'s': time.perf_counter() - t, "
        "'mods': [m for m in ('presidio_analyzer', 'transformers', 'radllama.labeller', 'radllama.consistency') "
        "if m in sys.modules]}))"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "HF_HUB_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mods"] == []


def test_benchmarks_record_this_reader():
    # The agreement figures in BENCHMARKS.md were measured with these rules: a rule change reruns the bench
    # (python bench/bench_judge_agreement.py --data <openi folder>), which records the new digest.
    text = (Path(__file__).resolve().parents[1] / "BENCHMARKS.md").read_text(encoding="utf-8")
    found = re.findall(r"Independent reader digest `([0-9a-f]{16})`", text)
    assert len(found) == 1, "BENCHMARKS.md should record the independent reader's digest once"
    assert judge.reader_digest()[:16] == found[0], "the reader's rules changed: rerun bench/bench_judge_agreement.py"
