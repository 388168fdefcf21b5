"""Scoring impressions against a frozen edition's expectations, by the independent reader and by ours."""

from __future__ import annotations

import pytest

from radllama.evaluate.edition_score import judge_reader, ours_reader, score_both, score_edition
from radllama.evaluate.editions import FINDING_TYPES

CASES = [
    {"id": "c1", "kind": "critical", "findings": "Large left pneumothorax. Heart normal.",
     "expect": [{"finding": "pneumothorax", "status": "present", "side": "left"}]},
    {"id": "m1", "kind": "multi", "findings": "Right pleural effusion. Moderate cardiomegaly.",
     "expect": [{"finding": "pleural effusion", "status": "present", "side": "right"},
                {"finding": "cardiomegaly", "status": "present", "side": None}]},
    {"id": "h1", "kind": "hedged", "findings": "Cannot exclude a small left pleural effusion.",
     "expect": [{"finding": "pleural effusion", "status": "uncertain", "side": "left"}]},
    {"id": "r1", "kind": "resolved", "findings": "The right pneumothorax has resolved.",
     "expect": [{"finding": "pneumothorax", "status": "absent", "side": None}]},
    {"id": "n1", "kind": "normal", "findings": "Lungs clear. Heart normal.",
     "expect": [{"finding": "cardiomegaly", "status": "absent", "side": None}]},
]  # fmt: skip


@pytest.mark.parametrize("reader", [judge_reader, ours_reader], ids=["judge", "ours"])
def test_a_faithful_answer_scores_fully(reader) -> None:  # noqa: ANN001
    answers = [
        "Large left pneumothorax.",
        "Right pleural effusion. Cardiomegaly.",
        "Possible small left pleural effusion.",
        "No pneumothorax.",
        "No acute cardiopulmonary abnormality.",
    ]
    s = score_edition(CASES, answers, reader(), FINDING_TYPES)
    assert s["named"] == 1.0 and s["multi_all_named"] == 1.0 and s["side_kept"] == 1.0
    assert s["hedge_kept"] == 1.0 and s["hedge_asserted"] == 0.0 and s["hedge_dropped"] == 0.0
    assert s["resolved_asserted"] == 0.0 and s["invented_normal"] == 0.0 and s["missed"] == []


def test_the_usual_failures_are_each_counted_by_the_judge() -> None:
    answers = [
        "Large right pneumothorax.",  # named, wrong side
        "Right pleural effusion.",  # one of two findings
        "Small left pleural effusion.",  # the hedge asserted
        "Right pneumothorax.",  # a resolved finding asserted
        "Cardiomegaly.",  # invented on normal findings
    ]
    s = score_edition(CASES, answers, judge_reader(), FINDING_TYPES)
    assert s["named"] == 1.0 and s["side_kept"] == pytest.approx(1 / 2)  # the critical case's side is wrong
    assert s["multi_all_named"] == 0.0
    assert s["hedge_kept"] == 0.0 and s["hedge_asserted"] == 1.0
    assert s["resolved_asserted"] == 1.0 and s["invented_normal"] == 1.0
    assert s["missed"] == ["m1"]
    dropped = score_edition(CASES, ["No acute disease."] * 5, judge_reader(), FINDING_TYPES)
    assert dropped["named"] == 0.0 and dropped["hedge_dropped"] == 1.0 and dropped["side_kept"] is None


def test_both_readers_are_reported() -> None:
    both = score_both(CASES[:1], ["Left pneumothorax."], FINDING_TYPES)
    assert set(both) == {"judge", "ours"} and both["judge"]["reader"] == "judge"
