"""The clinical faithfulness benchmark (issue #20): its cases and its scoring."""

from radllama.evaluate.faithfulness import build_benchmark, describe, names, names_keyword, score
from radllama.evaluate.faithfulness_cases import FINDING_TYPES

TRAIN = [
    {"id": "t1", "findings": "There is a small right pleural effusion. Heart size is normal. No pneumothorax."},
    {"id": "t2", "findings": "Large left pneumothorax. The lungs are otherwise clear."},
    {"id": "t3", "findings": "Calcified granuloma in the right upper lobe. Possible small effusion."},
]


def test_editions_are_disjoint_and_large_enough() -> None:
    dev, held = build_benchmark("dev", TRAIN), build_benchmark("heldout", [])
    assert not {c["findings"] for c in dev} & {c["findings"] for c in held}
    assert {c["writer"] for c in dev}.isdisjoint({c["writer"] for c in held})
    kinds = describe(held)["kind"]
    assert kinds["critical"] >= 150 and kinds["normal"] >= 10 and kinds["negation"] >= 10
    assert {c["finding"] for c in held if c["kind"] == "critical"} == set(FINDING_TYPES)
    assert len(FINDING_TYPES) >= 10
    # Every critical case's findings state its finding (the instrument reads its own cases), and no normal
    # case states one.
    for c in held + dev:
        if c["kind"] == "critical":
            assert names(c["findings"], c["finding"]), c["findings"]


def test_sourced_sentences_state_one_plain_finding() -> None:
    sourced = [c for c in build_benchmark("dev", TRAIN) if c["origin"] == "train"]
    # The effusion and the pneumothorax sentences; the granuloma and the hedged effusion are not taken.
    assert sorted(c["finding"] for c in sourced) == ["pleural effusion", "pneumothorax"]
    assert {c["side"] for c in sourced} == {"left", "right"}


def test_score_separates_faithful_from_copying_normal() -> None:
    cases = build_benchmark("dev", [])
    normal = score(cases, ["No acute cardiopulmonary disease." for _ in cases])
    assert normal["recall"] == 0.0 and normal["invented"] == 0.0 and normal["negation"] == 1.0
    echo = score(cases, [c["findings"] for c in cases])  # the findings themselves name everything, sides kept
    assert echo["recall"] == 1.0 and echo["laterality"] == 1.0 and echo["invented"] == 0.0
    invent = score(cases, ["Stable cardiomegaly. Small left pneumothorax." for _ in cases])
    assert invent["invented"] == 1.0
    assert invent["negation"] < 1.0  # "no pneumothorax" became "pneumothorax"


def test_side_flip_is_counted() -> None:
    cases = [{"id": "x", "kind": "critical", "finding": "pneumothorax", "side": "left", "findings": ""}]
    assert score(cases, ["Right pneumothorax."])["laterality"] == 0.0
    assert score(cases, ["Right pneumothorax."])["side_flips"] == 1
    assert score(cases, ["Left pneumothorax."])["laterality"] == 1.0


def test_keyword_second_opinion_skips_negated_sentences() -> None:
    assert names_keyword("1. Large pneumothorax.", "pneumothorax")
    assert not names_keyword("No pneumothorax.", "pneumothorax")


def test_omissions_are_flagged_by_the_shipped_check() -> None:
    cases = [c for c in build_benchmark("dev", []) if c["kind"] == "critical"]
    copied = score(cases, ["No acute cardiopulmonary disease." for _ in cases])
    assert len(copied["missed"]) == len(cases)
    assert copied["omissions_flagged"] >= 0.95
    assert score(cases, [c["findings"] for c in cases])["omissions_flagged"] is None  # nothing omitted
