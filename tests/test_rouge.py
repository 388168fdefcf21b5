from rouge_score import rouge_scorer

from radllama.rouge import ROUGE_TYPES, rouge_many, rouge_pair

PAIRS = [
    ("No acute cardiopulmonary abnormality.", "No acute cardiopulmonary process."),
    ("Mild cardiomegaly. No edema.", "Cardiomegaly without pulmonary edema."),
    ("Right lower lobe pneumonia.", "Right lower lobe consolidations concerning for pneumonia."),
    ("Normal chest.", "Normal chest x-XXXX."),
    ("Stable appearance of the chest", "Completely unrelated words here"),
]


def test_wrapper_equals_rouge_score_directly() -> None:
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    for pred, ref in PAIRS:
        expected = scorer.score(ref, pred)
        got = rouge_pair(pred, ref)
        for name in ROUGE_TYPES:
            assert got[name] == expected[name].fmeasure


def test_stemmer_is_on() -> None:
    # "consolidations" only matches "consolidation" with the Porter stemmer.
    assert rouge_pair("consolidations", "consolidation")["rouge1"] == 1.0


def test_empty_prediction_scores_zero() -> None:
    assert rouge_pair("", "No acute disease.") == {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    assert rouge_pair("   ", "No acute disease.")["rougeL"] == 0.0


def test_many_keeps_order() -> None:
    preds = [p for p, _ in PAIRS]
    refs = [r for _, r in PAIRS]
    out = rouge_many(preds, refs)
    assert [round(x, 6) for x in out["rougeL"]] == [round(rouge_pair(p, r)["rougeL"], 6) for p, r in PAIRS]
    assert out["rouge1"][-1] == 0.0
