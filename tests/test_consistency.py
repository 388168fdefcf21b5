"""The consistency check: omitted and unsupported acute findings, wrong sides, extra observations."""

import pytest

from radllama.consistency import ACUTE, FREE_AIR, MALPOSITIONED_DEVICE, check, finding_sides, flagged
from radllama.labeller import FINDINGS, OBSERVATIONS, label_report

CLEAN = {"omitted": [], "unsupported": [], "side_mismatch": []}


def test_negated_finding_is_not_omitted() -> None:
    assert check("No pneumothorax.", "No acute disease") == CLEAN
    assert check("No pneumothorax or pleural effusion. Heart size normal.", "Normal chest.") == CLEAN


def test_stated_acute_finding_missing_from_impression_is_omitted() -> None:
    out = check("Large left pneumothorax. The right lung is clear.", "No acute cardiopulmonary disease.")
    assert out["omitted"] == ["Pneumothorax"]
    assert flagged(out)
    # Named in the impression, or named as uncertain: not omitted.
    assert check("Large left pneumothorax.", "Left pneumothorax.") == CLEAN
    assert check("Large left pneumothorax.", "Possible left pneumothorax.")["omitted"] == []


def test_invented_finding_is_unsupported() -> None:
    out = check("Heart size normal. Lungs are clear.", "Stable cardiomegaly.")
    assert out["unsupported"] == ["Cardiomegaly"]
    assert out["omitted"] == []
    # Findings that never mention the heart do not support it either.
    assert check("Lungs are clear.", "Cardiomegaly.")["unsupported"] == ["Cardiomegaly"]
    assert check("The heart is enlarged.", "Cardiomegaly.") == CLEAN


def test_equivalent_names_cover_and_support() -> None:
    # A consolidation called pneumonia, an opacity called consolidation: said, in other words.
    assert check("Right lower lobe consolidation.", "Right lower lobe pneumonia.") == CLEAN
    assert check("Patchy opacity in the left base.", "Left basilar consolidation.")["omitted"] == []
    assert check("Enlarged cardiomediastinal silhouette.", "Cardiomegaly.") == CLEAN
    # A different finding does not cover: an effusion is not a pneumothorax.
    assert check("Right pneumothorax.", "Right pleural effusion.")["omitted"] == ["Pneumothorax"]


def test_side_mismatch() -> None:
    out = check("Left pneumothorax.", "Right pneumothorax.")
    assert out["side_mismatch"] == ["Pneumothorax"]
    assert out["omitted"] == [] and flagged(out)
    assert check("Left pneumothorax.", "Left pneumothorax.")["side_mismatch"] == []
    assert check("Bilateral pleural effusions.", "Left pleural effusion.")["side_mismatch"] == []
    assert check("Left pleural effusion.", "Bilateral pleural effusions.")["side_mismatch"] == ["Pleural Effusion"]
    # A side word of another phrase ("shift to the right") is not the pneumothorax's side.
    sides = finding_sides("Large left pneumothorax with mediastinal shift to the right. Heart size normal.")
    assert sides == {"Pneumothorax": "left"}
    assert finding_sides("Opacity in the right lower lobe. Bibasilar atelectasis.") == {
        "Lung Opacity": "right",
        "Atelectasis": "bilateral",
    }


def test_free_air() -> None:
    assert check("Free air under the right hemidiaphragm.", "No acute disease.")["omitted"] == [FREE_AIR]
    assert check("Pneumoperitoneum.", "Pneumoperitoneum.") == CLEAN
    assert check("No free air under the diaphragm.", "No acute disease.") == CLEAN
    assert check("Lungs are clear.", "Free intraperitoneal air.")["unsupported"] == [FREE_AIR]


@pytest.mark.parametrize(
    "findings",
    [
        "Endotracheal tube in the right mainstem bronchus.",
        "NG tube coiled in the esophagus.",
        "The feeding tube is malpositioned.",
        "The nasogastric tube tip terminates in the distal esophagus.",
        "Feeding tube tip in the right lower lobe bronchus.",
    ],
)
def test_malpositioned_tube(findings: str) -> None:
    assert check(findings, "No acute disease.")["omitted"] == [MALPOSITIONED_DEVICE]
    assert check(findings, "Malpositioned tube, recommend repositioning.")["omitted"] == []


def test_well_placed_tube_is_not_malpositioned() -> None:
    findings = "ET tube terminates 4 cm above the carina. NG tube courses through the esophagus into the stomach."
    assert check(findings, "Support devices in good position.") == CLEAN


def test_old_and_minor_findings_may_be_left_out() -> None:
    findings = "Calcified granuloma in the right upper lobe. Old healed left rib fractures. Lungs are clear."
    assert check(findings, "No acute cardiopulmonary disease.") == CLEAN


def test_extra_observations_stay_out_of_the_clinical_f1() -> None:
    assert {FREE_AIR, MALPOSITIONED_DEVICE}.isdisjoint(OBSERVATIONS)
    assert len(FINDINGS) == 13
    assert set(label_report("Pneumoperitoneum.")) == set(OBSERVATIONS)
    assert {"Pneumothorax", "Pleural Effusion", "Cardiomegaly", FREE_AIR, MALPOSITIONED_DEVICE} <= set(ACUTE)


def test_result_is_sorted_and_stable() -> None:
    findings = "Right pneumothorax. Left pleural effusion. Free air under the diaphragm."
    out = check(findings, "No acute disease.")
    assert out["omitted"] == sorted(out["omitted"]) == [FREE_AIR, "Pleural Effusion", "Pneumothorax"]
    assert check(findings, "No acute disease.") == out
    assert check("", "") == CLEAN


def test_widened_mediastinum_with_an_adverb() -> None:
    assert check("The mediastinum is markedly widened.", "No acute disease.")["omitted"] == [
        "Enlarged Cardiomediastinum"
    ]
    assert check("The mediastinum is not widened.", "No acute disease.") == CLEAN


def test_minor_qualifiers_are_per_observation() -> None:
    # A mild or stable heart, plate-like atelectasis: reported, rarely repeated in an impression.
    assert check("Mild cardiomegaly. Lungs are clear.", "No acute disease.") == CLEAN
    assert check("Plate-like atelectasis at the left base.", "No acute disease.") == CLEAN
    # Unqualified, the same findings must be in the impression.
    assert check("The heart is enlarged.", "No acute disease.")["omitted"] == ["Cardiomegaly"]
    assert check("Collapse of the left lower lobe.", "No acute disease.")["omitted"] == ["Atelectasis"]
    assert check("Lobulated mass projecting over the left mid lung.", "No acute disease.")["omitted"] == ["Lung Lesion"]
    assert check("Fracture deformity of the right humerus.", "No acute disease.")["omitted"] == ["Fracture"]
    # A qualifier in another phrase of the clause does not make a finding minor.
    assert check("Stable mediastinum, large right pleural effusion.", "No acute disease.")["omitted"] == [
        "Pleural Effusion"
    ]


def test_signs_support_without_naming() -> None:
    assert check("Blunting of the left costophrenic angle.", "Small left pleural effusion.")["unsupported"] == []
    assert check("Heart size upper limits of normal.", "Borderline cardiomegaly.")["unsupported"] == []
    assert check("Lungs are clear.", "Small left pleural effusion.")["unsupported"] == ["Pleural Effusion"]
