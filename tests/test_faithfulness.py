"""The clinical faithfulness benchmark (issue #20): its cases and its scoring."""

from collections import Counter

from radllama.evaluate.edition_score import judge_reader
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


def test_kind_cases_are_dev_writers_with_what_each_case_expects() -> None:
    from radllama.evaluate.edition_score import score_edition
    from radllama.evaluate.editions import FINDING_TYPES as EDITION_TYPES
    from radllama.evaluate.editions import load_edition
    from radllama.evaluate.faithfulness_cases import EDITIONS, kind_cases

    cases = kind_cases("dev")
    assert cases == kind_cases("dev")  # seeded
    assert Counter(c["kind"] for c in cases) == {"multi": 60, "hedged": 44, "resolved": 20}
    assert {c["writer"] for c in cases} == set(EDITIONS["dev"])
    for c in cases:
        statuses = {e["status"] for e in c["expect"]}
        if c["kind"] == "multi":
            assert statuses == {"present"} and len({e["finding"] for e in c["expect"]}) in (2, 3)
        else:
            assert statuses == {"uncertain" if c["kind"] == "hedged" else "absent"} and len(c["expect"]) == 1
    # Nothing of the frozen held-out edition: no sentence in common.
    held = {s for case in load_edition("heldout-v2") for s in case["findings"].split(". ")}
    assert not {s for c in cases for s in c["findings"].split(". ")} & held
    # The independent reader reads its own cases: the findings pasted back keep every hedge, name every finding
    # of a multi-finding text with its side, and assert no resolved finding; a normal answer does none of it.
    verbatim = score_edition(cases, [c["findings"] for c in cases], judge_reader(), EDITION_TYPES)
    assert verbatim["hedge_kept"] == verbatim["multi_all_named"] == verbatim["side_kept"] == 1.0
    assert verbatim["resolved_asserted"] == 0.0
    normal = score_edition(cases, ["No acute cardiopulmonary abnormality."] * len(cases), judge_reader(), EDITION_TYPES)
    assert normal["hedge_kept"] == normal["multi_all_named"] == 0.0
