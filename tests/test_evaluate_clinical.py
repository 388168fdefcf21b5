from pathlib import Path

import pytest

from radllama.evaluate.clinical import case_agreement, clinical_f1, outside_chexpert, word_count
from radllama.labeller import ABSENT, NOT_MENTIONED, OBSERVATIONS, PRESENT, UNCERTAIN, label_report


def test_fourteen_observations() -> None:
    assert len(OBSERVATIONS) == 14
    assert set(label_report("")) == set(OBSERVATIONS)


def test_negation() -> None:
    labels = label_report("No pneumothorax.")
    assert labels["Pneumothorax"] == ABSENT
    assert labels["No Finding"] == PRESENT


def test_uncertainty() -> None:
    labels = label_report("Possible effusion.")
    assert labels["Pleural Effusion"] == UNCERTAIN
    assert labels["No Finding"] == ABSENT  # uncertain pathology rules out No Finding
    assert label_report("Pneumothorax cannot be excluded.")["Pneumothorax"] == UNCERTAIN
    both = label_report("Atelectasis versus pneumonia.")
    assert both["Atelectasis"] == UNCERTAIN and both["Pneumonia"] == UNCERTAIN


def test_coordination_negates_every_item() -> None:
    labels = label_report("No effusion or pneumothorax.")
    assert labels["Pleural Effusion"] == ABSENT
    assert labels["Pneumothorax"] == ABSENT
    listed = label_report("No focal consolidation, pleural effusion, or pneumothorax.")
    assert {listed[o] for o in ("Consolidation", "Pleural Effusion", "Pneumothorax")} == {ABSENT}


def test_scope_ends_at_but_and_sentence_end() -> None:
    labels = label_report("No effusion but mild pulmonary edema.")
    assert labels["Pleural Effusion"] == ABSENT and labels["Edema"] == PRESENT
    labels = label_report("No pneumothorax. Right lower lobe consolidation.")
    assert labels["Consolidation"] == PRESENT
    # A nearer uncertainty cue takes over from an earlier negation.
    assert label_report("No pneumothorax, possible small effusion.")["Pleural Effusion"] == UNCERTAIN


def test_heart_size() -> None:
    assert label_report("Heart size is normal.")["Cardiomegaly"] == ABSENT
    assert label_report("The heart is not enlarged.")["Cardiomegaly"] == ABSENT
    assert label_report("Mild cardiomegaly.")["Cardiomegaly"] == PRESENT
    assert label_report("Heart size is enlarged.")["Cardiomegaly"] == PRESENT
    assert label_report("Enlarged heart.")["Cardiomegaly"] == PRESENT


def test_normal_chest_is_no_finding() -> None:
    labels = label_report("Normal chest x-XXXX.")
    assert labels["No Finding"] == PRESENT
    assert all(labels[o] == NOT_MENTIONED for o in OBSERVATIONS if o != "No Finding")


def test_multi_sentence() -> None:
    text = (
        "No acute cardiopulmonary abnormality. Mild cardiomegaly. "
        "Left basilar opacity which may represent atelectasis or pneumonia. Stable right PICC line."
    )
    labels = label_report(text)
    assert labels["Cardiomegaly"] == PRESENT
    assert labels["Lung Opacity"] == PRESENT
    assert labels["Atelectasis"] == UNCERTAIN
    assert labels["Pneumonia"] == UNCERTAIN
    assert labels["Support Devices"] == PRESENT
    assert labels["No Finding"] == ABSENT


def test_synonyms_and_pseudo_negation() -> None:
    assert label_report("Bilateral infiltrates.")["Lung Opacity"] == PRESENT
    assert label_report("Right upper lobe nodule.")["Lung Lesion"] == PRESENT
    assert label_report("Small pericardial effusion.")["Pleural Effusion"] == NOT_MENTIONED
    assert label_report("No change in right pleural effusion.")["Pleural Effusion"] == PRESENT
    assert label_report("Right pneumothorax has resolved.")["Pneumothorax"] == ABSENT
    # Support devices alone keep No Finding present.
    assert label_report("Endotracheal tube in good position.")["No Finding"] == PRESENT


def test_clinical_f1() -> None:
    refs = ["Mild cardiomegaly.", "No acute disease.", "Right pleural effusion."]
    assert clinical_f1(refs, refs) == {"micro_f1": 1.0, "macro_f1": 1.0}
    preds = ["Mild cardiomegaly.", "Cardiomegaly.", "No effusion."]
    out = clinical_f1(preds, refs)
    # positive findings (No Finding apart): ref {CM},{},{PE}; pred {CM},{CM},{} -> TP 1, FP 1, FN 1
    assert out["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 1 + 1))
    # per observation F1: CM 2/3, PE 0 -> macro 1/3
    assert out["macro_f1"] == pytest.approx(1 / 3)


def test_case_agreement_and_words() -> None:
    assert case_agreement("No pneumothorax.", "Normal chest.") == 1.0
    assert case_agreement("Cardiomegaly.", "Normal chest.") == 0.0


def test_reference_with_only_non_chexpert_findings_is_not_scored() -> None:
    normal = "No acute cardiopulmonary abnormality."
    for reference in ("Diffuse fibrosis. No visible focal acute disease.", "Emphysema.",
                      "Small hiatal hernia. Otherwise no acute disease.", "Possible COPD."):  # fmt: skip
        assert outside_chexpert(reference), reference
        assert case_agreement(normal, reference) is None, reference  # 1.000 before
    # Negated, or beside a CheXpert finding the score can judge: scored as before.
    assert outside_chexpert("No emphysema. No hiatal hernia.") == []
    assert case_agreement(normal, "No emphysema or fibrosis. Normal chest.") == 1.0
    assert case_agreement("Cardiomegaly.", "Emphysema. Cardiomegaly.") == 1.0
    assert case_agreement(normal, "Emphysema. Cardiomegaly.") == 0.0
    assert word_count("No acute  cardiopulmonary process.") == 4
    assert word_count("") == 0


def test_empty_impression_states_nothing() -> None:
    """An empty prediction must not earn credit for "No Finding" (it says nothing)."""
    assert set(label_report("").values()) == {NOT_MENTIONED}
    assert set(label_report("   ").values()) == {NOT_MENTIONED}


def test_known_misses_of_negation_scope() -> None:
    # An "and" that opens a new, described finding ends the negation.
    labels = label_report("No pneumothorax and small left effusion.")
    assert labels["Pneumothorax"] == ABSENT and labels["Pleural Effusion"] == PRESENT
    assert label_report("No pneumothorax and effusion.")["Pleural Effusion"] == ABSENT
    # A stable heart size is not a normal heart.
    assert label_report("Heart size is stable.")["Cardiomegaly"] == NOT_MENTIONED
    # A list after one cue: every item negated.
    listed = label_report("no effusion, consolidation or pneumothorax")
    assert {listed[o] for o in ("Pleural Effusion", "Consolidation", "Pneumothorax")} == {ABSENT}
    assert label_report("cannot exclude pneumonia")["Pneumonia"] == UNCERTAIN
    assert label_report("Pneumonia is in the differential.")["Pneumonia"] == UNCERTAIN


def test_phrases_found_against_mesh() -> None:
    assert label_report("The heart is large.")["Cardiomegaly"] == PRESENT
    assert label_report("Heart size borderline enlarged.")["Cardiomegaly"] == PRESENT
    assert label_report("Pulmonary XXXX are engorged.")["Edema"] == PRESENT
    assert (
        label_report("Heart size and pulmonary vascular engorgement appear within limits of normal.")["Edema"] == ABSENT
    )
    assert label_report("Left chest XXXX with tip in the mid SVC.")["Support Devices"] == PRESENT
    assert label_report("Interval removal of the right PICC line.")["Support Devices"] == ABSENT
    assert label_report("Prior granulomatous infection.")["Pneumonia"] == NOT_MENTIONED
    assert label_report("Soft tissue edema.")["Edema"] == NOT_MENTIONED
    # The indexers read an enlarged *cardio*mediastinal silhouette as an enlarged heart.
    for text in ("Enlarged cardiomediastinal silhouette.", "The cardiomediastinal silhouette is mildly enlarged."):
        labels = label_report(text)
        assert (labels["Cardiomegaly"], labels["Enlarged Cardiomediastinum"]) == (PRESENT, NOT_MENTIONED), text
    for text in (
        "Widened mediastinum.",
        "The cardiomediastinal silhouette is widened.",
        "Prominent mediastinal contours.",
    ):
        assert label_report(text)["Enlarged Cardiomediastinum"] == PRESENT, text
    assert label_report("The cardiomediastinal silhouette is not enlarged.")["Enlarged Cardiomediastinum"] == ABSENT
    # The slot before "enlarged" takes an adverb only, never "not".
    assert label_report("The cardiomediastinal silhouette appears not enlarged.")["Cardiomegaly"] != PRESENT


def test_garbage_and_other_languages_mention_nothing() -> None:
    for text in ("asdf qwer zxcv", "Das Herz ist vergrößert.", "肺野に異常なし", "%%%%", "\x00\x01"):
        assert set(label_report(text).values()) == {NOT_MENTIONED}, text
    assert label_report("Normal chest.")["No Finding"] == PRESENT


def test_agreement_with_mesh_on_the_fixed_openi_sample() -> None:
    """201 OpenI reports of train + validation (a seeded sample, its test reports dropped in issue #22:
    rules are refined on train + validation only) with NLM's manual coding.

    Pinned at the agreement measured on them (micro-F1 0.931): a labeller change that loses agreement
    fails here; BENCHMARKS.md has the full tables, in sample and held out.
    """
    from radllama.evaluate.mesh_agreement import mesh_agreement
    from radllama.io import read_jsonl

    records = read_jsonl(Path(__file__).parent / "fixtures" / "openi" / "mesh_sample.jsonl")
    result = mesh_agreement(records)
    assert result["n_reports"] == 201
    assert result["micro"]["f1"] >= 0.931
    assert result["micro"]["tp"] >= 264
    for obs, row in result["observations"].items():
        if row["mesh_positives"] >= 10:
            assert row["f1"] >= 0.80, (obs, row)


def test_mesh_map() -> None:
    from radllama.evaluate.mesh_agreement import mesh_observations

    assert mesh_observations(["normal"]) == set()
    assert mesh_observations(["No Indexing"]) is None and mesh_observations([]) is None
    assert mesh_observations(["Cardiomegaly/borderline", "Pulmonary Atelectasis/base/left"]) == {
        "Cardiomegaly",
        "Atelectasis",
    }
    assert mesh_observations(["Opacity/lung/upper lobe/right/round"]) == {"Lung Opacity", "Lung Lesion"}
    assert mesh_observations(["Mediastinum/lymph nodes/enlarged", "Costophrenic Angle/left/blunted"]) == set()
    assert mesh_observations(["Thickening/pleura/apex", "Density/breast"]) == {"Pleural Other"}
