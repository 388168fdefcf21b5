"""The consistency check: omitted and unsupported acute findings, wrong sides, extra observations."""

import pytest

from radllama.consistency import (
    ACUTE,
    FIELDS,
    FREE_AIR,
    MALPOSITIONED_DEVICE,
    check,
    check_digest,
    finding_sides,
    flagged,
    stated,
    warnings,
)
from radllama.labeller import FINDINGS, OBSERVATIONS, label_report

CLEAN = dict.fromkeys(FIELDS, [])
NO_ACUTE = "No acute cardiopulmonary abnormality."


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


def test_result_has_every_field() -> None:
    assert set(check("Left pneumothorax.", "No acute disease.")) == set(FIELDS)
    assert FIELDS[:3] == ("omitted", "unsupported", "side_mismatch")  # the old fields keep their meaning


@pytest.mark.parametrize(
    "findings",
    [
        "Previously seen left pneumothorax is no longer visible.",
        "The left pneumothorax is no longer seen. Lungs are clear.",
        "There has been interval resolution of the right effusion.",
        "The left effusion has cleared. Heart size normal.",
        "The left pneumothorax has resolved.",
        "Consolidation and atelectasis in the left lower lobe have cleared in the interval.",
    ],
)
def test_resolved_finding_is_not_present(findings: str) -> None:
    assert check(findings, NO_ACUTE) == CLEAN  # "no longer visible" is no omission
    assert not stated(findings) & {"Pneumothorax", "Pleural Effusion", "Consolidation", "Atelectasis"}
    assert check(findings, "Left pneumothorax.")["unsupported"] == ["Pneumothorax"]


def test_resolved_cue_stops_at_another_verb() -> None:
    findings = "Left effusion is large and the right effusion has resolved."
    assert check(findings, NO_ACUTE)["omitted"] == ["Pleural Effusion"]  # the left one is still there
    assert finding_sides(findings) == {"Pleural Effusion": "left"}


def test_negated_sign_to_suggest_is_no_hedge() -> None:
    for findings in (
        "There is no focal air space opacity to suggest a pneumonia. No pleural effusion.",
        "There is no pleural line to suggest pneumothorax or costophrenic blunting to suggest large pleural effusion.",
    ):
        assert check(findings, NO_ACUTE) == CLEAN
    assert stated("Patchy opacity to suggest pneumonia.", ("uncertain",)) == {"Pneumonia"}  # not negated: a hedge


@pytest.mark.parametrize(
    ("findings", "observation", "kept"),
    [
        ("Heart size normal. Cannot exclude small left effusion. No pneumothorax.", "Pleural Effusion",
         "Possible small left pleural effusion."),
        ("Possible early right lower lobe pneumonia. No effusion.", "Pneumonia",
         "Possible early right lower lobe pneumonia."),
        ("Questionable tiny apical pneumothorax on the right. Lungs otherwise clear.", "Pneumothorax",
         "Questionable small right apical pneumothorax."),
    ],
)  # fmt: skip
def test_hedged_finding_dropped_kept_or_asserted(findings: str, observation: str, kept: str) -> None:
    dropped = check(findings, NO_ACUTE)
    assert dropped == {**CLEAN, "hedge_dropped": [observation]} and flagged(dropped)
    assert dropped["omitted"] == []  # "omitted" stays for findings stated as present
    assert warnings(dropped) == [f"the findings raise the possibility of {observation}, the impression does not "
                                 "mention it"]  # fmt: skip
    assert check(findings, kept) == CLEAN  # the hedge kept: nothing to say
    asserted = check(findings, kept.replace("Possible ", "").replace("Questionable ", ""))
    assert asserted == {**CLEAN, "hedge_asserted": [observation]}


def test_possible_small_left_effusion_in_the_impression_is_not_flagged() -> None:
    assert check("Cannot exclude small left effusion.", "Possible small left effusion.") == CLEAN
    assert check("Cannot exclude small left effusion.", "Possible small right effusion.")["side_mismatch"] == [
        "Pleural Effusion"
    ]  # a hedged finding keeps its side


def test_hedges_that_are_not_findings_to_report() -> None:
    # Minor, advice, or also stated as present (then it is "omitted", not a dropped hedge).
    assert check("Possible streaky bibasilar atelectasis.", NO_ACUTE) == CLEAN
    assert check("No displaced rib fracture. If there is concern for fracture consider rib series.", NO_ACUTE) == CLEAN
    both = check("Large left effusion. Possible small right effusion.", NO_ACUTE)
    assert both == {**CLEAN, "omitted": ["Pleural Effusion"]}
    # Stated as certain under an equivalent name: the impression may conclude it.
    assert check("Left lower lobe consolidation concerning for pneumonia.", "Left lower lobe pneumonia.") == CLEAN
    # A differential in the impression ("atelectasis or pneumonia") is a hedge, not an assertion.
    assert check("Left basilar opacity, atelectasis versus pneumonia.", "Atelectasis or pneumonia.") == CLEAN


def test_check_digest_sees_the_new_rules(monkeypatch) -> None:  # noqa: ANN001
    import radllama.consistency as consistency

    before = check_digest()
    monkeypatch.setattr(consistency, "RESOLVED_AFTER", __import__("re").compile(r"gone"))
    assert check_digest() != before
