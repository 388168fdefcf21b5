"""Copying analysis (report.md's "why" of issue #13): which answers are training impressions."""

from __future__ import annotations

import pytest

from radllama.evaluate.copying import candidate_sources, copy_analysis, from_findings
from radllama.retrieval import TfidfRetriever
from radllama.rouge import rouge_pair

TRAIN = [
    {"id": "t1", "findings": "Heart size normal. Lungs clear.", "impression": "No acute disease."},
    {"id": "t2", "findings": "Large right pleural effusion.", "impression": "Right pleural effusion."},
    {"id": "t3", "findings": "Cardiomegaly with pulmonary edema.", "impression": "Congestive heart failure."},
]


def case(rid: str, findings: str, reference: str, prediction: str, **extra: str) -> dict:
    return {"id": rid, "findings": findings, "reference": reference, "prediction": prediction, **extra}


def test_copies_of_the_nearest_of_any_and_written_answers_are_told_apart() -> None:
    preds = [
        # Nearest training report is t1: its impression, in other case and spacing, is a copy of the nearest.
        case("a", "Heart size normal. Lungs clear.", "No acute disease.", "no  acute DISEASE.", candidate="retrieved"),
        # Nearest (k=1) is t2, but the answer is t3's impression: a training impression, not the nearest.
        case("b", "Large right pleural effusion.", "Right effusion.", "Congestive heart failure.", candidate="greedy"),
        # Text no training report has.
        case("c", "Cardiomegaly with pulmonary edema.", "Cardiomegaly and edema.", "Edema.", candidate="greedy"),
    ]
    reference = [dict(p, prediction=p["reference"]) for p in preds]  # a perfect reference system
    a = copy_analysis(preds, reference, TfidfRetriever(TRAIN), k=1)
    assert a["n"] == 3
    assert a["copied_nearest"] == pytest.approx(1 / 3)
    assert a["copied_any_training"] == pytest.approx(2 / 3)
    assert a["copied"] == {"n": 1, "rouge1": 1.0, "reference_rouge1": 1.0}
    assert a["written"]["n"] == 1
    assert a["written"]["rouge1"] == pytest.approx(rouge_pair("Edema.", "Cardiomegaly and edema.")["rouge1"])
    assert a["written"]["reference_rouge1"] == 1.0
    assert candidate_sources(preds) == {"retrieved": 1, "greedy": 2}


def test_with_k_3_every_training_impression_is_among_the_nearest() -> None:
    preds = [case("b", "Large right pleural effusion.", "Right effusion.", "Congestive heart failure.")]
    a = copy_analysis(preds, preds, TfidfRetriever(TRAIN), k=3)
    assert a["copied_nearest"] == 1.0 and a["written"]["n"] == 0 and a["written"]["rouge1"] is None


def test_a_case_the_reference_system_lacks_is_a_clear_error() -> None:
    preds = [case("a", "Lungs clear.", "Normal.", "Normal.")]
    with pytest.raises(ValueError, match="no prediction of the reference system"):
        copy_analysis(preds, [], TfidfRetriever(TRAIN))
    assert candidate_sources(preds) == {}


def test_answers_copied_from_the_findings_are_not_written() -> None:
    """Issue #30: the findings' acute sentences (the extractive candidate) were counted as written by the model."""
    findings = "Large left pneumothorax. The heart size is normal. Possible small right effusion."
    preds = [
        # MBR took the extractive candidate.
        case("x", findings, "Left pneumothorax.", "Large left pneumothorax. Possible small right effusion.",
             candidate="extractive"),
        # No candidate field (greedy, a rule baseline), but the findings' sentences verbatim, in order.
        case("y", findings, "Left pneumothorax.", "large left  PNEUMOTHORAX"),
        # The model's own words.
        case("z", findings, "Left pneumothorax.", "Left pneumothorax, effusion possible.", candidate="greedy"),
    ]  # fmt: skip
    reference = [dict(p, prediction=p["reference"]) for p in preds]
    a = copy_analysis(preds, reference, TfidfRetriever(TRAIN), k=1)
    assert a["copied_findings"] == pytest.approx(2 / 3)
    assert a["from_findings"]["n"] == 2
    assert a["written"]["n"] == 1  # only z was written by the model
    assert a["written"]["rouge1"] == pytest.approx(rouge_pair(preds[2]["prediction"], "Left pneumothorax.")["rouge1"])
    assert candidate_sources(preds) == {"extractive": 1, "greedy": 1}


def test_from_findings_needs_whole_sentences_in_order() -> None:
    findings = "Large left pneumothorax. The heart size is normal. Possible small right effusion."
    assert from_findings({"findings": findings, "prediction": "The heart size is normal."})
    assert from_findings({"findings": findings, "prediction": findings})  # the findings verbatim
    assert not from_findings(
        {"findings": findings, "prediction": "Possible small right effusion. Large left pneumothorax."}
    )
    assert not from_findings({"findings": findings, "prediction": "Large left pneumothorax with shift."})
    assert not from_findings({"findings": findings, "prediction": "Left pneumothorax."})  # part of a sentence
    assert not from_findings({"findings": findings, "prediction": ""})
