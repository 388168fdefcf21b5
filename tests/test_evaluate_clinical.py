import pytest

from radllama.evaluate.clinical import (
    ABSENT,
    NOT_MENTIONED,
    OBSERVATIONS,
    PRESENT,
    UNCERTAIN,
    case_agreement,
    clinical_f1,
    label_report,
    word_count,
)


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
    # present sets: ref {CM},{NF},{PE}; pred {CM},{CM},{NF} -> TP 1, FP 2, FN 2
    assert out["micro_f1"] == pytest.approx(2 * 1 / (2 * 1 + 2 + 2))
    # per observation F1: CM 2/3, NF 0, PE 0 -> macro 2/9
    assert out["macro_f1"] == pytest.approx(2 / 9)


def test_case_agreement_and_words() -> None:
    assert case_agreement("No pneumothorax.", "Normal chest.") == 1.0
    assert case_agreement("Cardiomegaly.", "Normal chest.") == 0.0
    assert word_count("No acute  cardiopulmonary process.") == 4
    assert word_count("") == 0


def test_empty_impression_states_nothing() -> None:
    """An empty prediction must not earn credit for "No Finding" (it says nothing)."""
    from radllama.evaluate.clinical import NOT_MENTIONED, label_report

    assert set(label_report("").values()) == {NOT_MENTIONED}
    assert set(label_report("   ").values()) == {NOT_MENTIONED}
