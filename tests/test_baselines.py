"""The non-neural baselines."""

from __future__ import annotations

import pytest

from radllama.baselines import BASELINES, make_baseline
from radllama.errors import RadLlamaError

TRAIN = [
    {"id": "a", "findings": "Heart size normal. Lungs are clear.", "impression": "No acute disease."},
    {"id": "b", "findings": "Heart size normal. Lungs clear.", "impression": "No  acute disease."},
    {"id": "c", "findings": "Large right pleural effusion.", "impression": "Right effusion."},
    {"id": "d", "findings": "Cardiomegaly. Pulmonary edema.", "impression": "Heart failure."},
]


def test_registry_names_match_classes() -> None:
    assert set(BASELINES) == {
        "most-frequent", "last-sentence", "tfidf-retrieval", "retrieval-consensus", "findings-verbatim", "acute-rule",
    }  # fmt: skip
    for name in BASELINES:
        assert make_baseline(name).name == name


def test_unknown_baseline_is_a_clear_error() -> None:
    with pytest.raises(RadLlamaError, match="unknown baseline 'oracle'.*most-frequent"):
        make_baseline("oracle")


def test_most_frequent_counts_normalised_text() -> None:
    model = make_baseline("most-frequent").fit(TRAIN)
    assert model.predict(["anything", "else"]) == ["No acute disease.", "No acute disease."]


def test_most_frequent_breaks_ties_alphabetically() -> None:
    recs = [
        {"impression": "Zebra."},
        {"impression": "Apple."},
        {"impression": "Zebra."},
        {"impression": "Apple."},
    ]
    assert make_baseline("most-frequent").fit(recs).predict(["x"]) == ["Apple."]
    assert make_baseline("most-frequent").fit(list(reversed(recs))).predict(["x"]) == ["Apple."]


def test_predict_before_fit_is_an_error() -> None:
    with pytest.raises(RadLlamaError, match="fit"):
        make_baseline("most-frequent").predict(["x"])
    with pytest.raises(RadLlamaError, match="fit"):
        make_baseline("tfidf-retrieval").predict(["x"])


def test_last_sentence() -> None:
    model = make_baseline("last-sentence").fit(TRAIN)
    got = model.predict(["Heart size normal.  Nodule measures 2.5 cm. No effusion.", "One sentence", "", "A. B? C!"])
    assert got == ["No effusion.", "One sentence", "", "C!"]


def test_tfidf_retrieval_returns_nearest_training_impression() -> None:
    model = make_baseline("tfidf-retrieval").fit(TRAIN)
    assert model.predict(["Small right pleural effusion.", "Cardiomegaly with edema."]) == [
        "Right effusion.",
        "Heart failure.",
    ]
    assert model.predict([]) == []


def test_retrieval_consensus_answers_what_the_neighbours_agree_on() -> None:
    train = [
        {"id": "1", "findings": "Small right pleural effusion. Heart normal.", "impression": "Small right effusion."},
        {"id": "2", "findings": "Small right pleural effusion.", "impression": "Odd wording entirely."},
        {"id": "3", "findings": "Right pleural effusion, small.", "impression": "Small right effusion."},
        {"id": "4", "findings": "Pleural effusion on the right, small.", "impression": "Right effusion, small."},
        {"id": "5", "findings": "Right effusion, small. Heart normal.", "impression": "Small right effusion."},
    ]
    top1 = make_baseline("tfidf-retrieval").fit(train).predict(["Small right pleural effusion."])
    vote = make_baseline("retrieval-consensus").fit(train).predict(["Small right pleural effusion."])
    assert top1 == ["Odd wording entirely."]  # the single nearest report is the odd one
    assert vote == ["Small right effusion."]  # the neighbours agree on this one


def test_findings_verbatim_answers_the_findings() -> None:
    assert make_baseline("findings-verbatim").fit(TRAIN).predict(["Small  left effusion. "]) == ["Small left effusion."]


def test_acute_rule_takes_the_acute_sentences_else_the_retrieval_consensus() -> None:
    rule = make_baseline("acute-rule").fit(TRAIN)
    acute, normal = rule.predict(["Heart size normal. Large left pneumothorax. No effusion.", "Lungs are clear."])
    assert acute == "Large left pneumothorax."  # the rule: the acute sentence, nothing else
    assert normal == make_baseline("retrieval-consensus").fit(TRAIN).predict(["Lungs are clear."])[0]
