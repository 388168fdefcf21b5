"""Instruction examples: label masking, truncation of the findings (never the target),
packing without padding, and the diverse-instruction tasks."""

from __future__ import annotations

import pytest
from _helpers import sft_list, task_list

from radllama.errors import RadLlamaError
from radllama.models.mini import train_tokenizer
from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever, retrieved_impressions
from radllama.train.examples import (
    IGNORE_INDEX,
    encode_sft,
    encode_sft_many,
    iter_blocks,
    term_phrase,
)
from radllama.train.tiny import INVENTED_TEXT

STYLE = PromptStyle(instruction="Derive the impression", system="Be brief.")


@pytest.fixture(scope="module")
def tok():
    return train_tokenizer(INVENTED_TEXT * 10, vocab_size=300)


def records() -> list[dict]:
    return [
        {
            "id": "a",
            "findings": "Mild cardiomegaly. Small left pleural effusion.",
            "impression": "Cardiomegaly with effusion.",
            "indication": "Dyspnea.",
            "mesh": ["Cardiomegaly/mild", "Pleural Effusion/left/small"],
        },
        {
            "id": "b",
            "findings": "The lungs are clear.",
            "impression": "No acute abnormality.",
            "indication": "",
            "mesh": ["normal"],
        },
    ]


@pytest.mark.parametrize("rec", records(), ids=["abnormal", "normal"])
def test_labels_mask_prompt_keep_answer_and_eos(tok, rec) -> None:
    ex, cut = encode_sft(tok, STYLE, rec["findings"], rec["impression"], None, 512)
    prompt_ids = tok(STYLE.render(tok, rec["findings"]), add_special_tokens=False).input_ids
    answer_ids = tok(" " + rec["impression"], add_special_tokens=False).input_ids
    assert not cut
    # The prompt ids are exactly what generation renders and tokenises.
    assert ex.input_ids[: len(prompt_ids)] == prompt_ids
    assert ex.labels[: len(prompt_ids)] == [IGNORE_INDEX] * len(prompt_ids)
    assert ex.labels[len(prompt_ids) :] == answer_ids + [tok.eos_token_id]
    assert ex.input_ids[len(prompt_ids) :] == answer_ids + [tok.eos_token_id]
    assert tok.decode(answer_ids).strip() == rec["impression"]


def test_truncation_cuts_findings_never_target(tok) -> None:
    long_findings = " ".join(["The heart is normal in size."] * 60)
    full, _ = encode_sft(tok, STYLE, long_findings, "Normal chest.", None, 4096)
    ex, cut = encode_sft(tok, STYLE, long_findings, "Normal chest.", None, 120)
    answer = tok(" Normal chest.", add_special_tokens=False).input_ids + [tok.eos_token_id]
    assert cut and len(full.input_ids) > 120 >= len(ex.input_ids)
    assert ex.input_ids[-len(answer) :] == answer
    assert [t for t in ex.labels if t != IGNORE_INDEX] == answer
    assert tok.decode(ex.input_ids).rstrip().endswith("[/INST] Normal chest.</s>")


def test_cut_count_reported(tok) -> None:
    recs = records() + [{"id": "c", "findings": "The heart is normal. " * 80, "impression": "Normal."}]
    examples, n_cut = sft_list(recs, tok, STYLE, 150)
    assert len(examples) == 3 and n_cut == 1


def test_blocks_have_no_padding(tok) -> None:
    texts = INVENTED_TEXT * 3
    blocks = list(iter_blocks(tok, texts, 16))
    stream_len = sum(len(tok(t, add_special_tokens=False).input_ids) + 2 for t in texts)
    assert len(blocks) == stream_len // 16
    assert all(len(b.input_ids) == 16 and b.labels == b.input_ids for b in blocks)
    assert tok.pad_token_id not in {i for b in blocks for i in b.input_ids}
    assert blocks[0].input_ids[0] == tok.bos_token_id


def test_tasks_mix_and_answers(tok) -> None:
    tasks = {"impression": 1.0, "indication_impression": 1.0, "abnormal_list": 1.0, "presence": 1.0}
    examples, n_cut, counts = task_list(records(), tok, STYLE, 512, tasks, seed=0)
    # indication and abnormal list: only record "a" qualifies ("b" has no indication, only "normal").
    assert counts == {"impression": 2, "indication_impression": 1, "abnormal_list": 1, "presence": 2}
    assert len(examples) == 6 and n_cut == 0
    answers = [tok.decode([t for t in e.labels if t != IGNORE_INDEX], skip_special_tokens=True) for e in examples]
    assert answers[3].strip() == "- Cardiomegaly (mild)\n- Pleural Effusion (left)"
    # "b" is normal: its presence question must be about another record's finding, answered absent.
    prompt_b = tok.decode(examples[5].input_ids)
    assert "The lungs are clear." in prompt_b and answers[5].strip() == "absent"
    assert "Indication: Dyspnea." in tok.decode(examples[2].input_ids)


def test_impression_task_prompt_unchanged_by_mixing(tok) -> None:
    plain, _ = sft_list(records(), tok, STYLE, 512)
    mixed, _, _ = task_list(records(), tok, STYLE, 512, {"impression": 1.0, "presence": 1.0})
    assert [e.input_ids for e in mixed[:2]] == [e.input_ids for e in plain]


def test_task_weights_are_examples_per_record(tok) -> None:
    recs = records() * 50
    _, _, counts = task_list(recs, tok, STYLE, 512, {"impression": 0.5, "abnormal_list": 2.0}, seed=1)
    assert counts["abnormal_list"] == 100  # 50 eligible records x 2
    assert 30 <= counts["impression"] <= 70  # a seeded half of 100


def test_unknown_task_is_clear(tok) -> None:
    with pytest.raises(RadLlamaError, match="unknown task 'summary'"):
        task_list(records(), tok, STYLE, 512, {"summary": 1.0})


def test_term_phrase() -> None:
    assert term_phrase("Calcified Granuloma/lung/upper lobe/right") == "Calcified Granuloma (lung)"
    assert term_phrase("Cardiomegaly") == "Cardiomegaly"


# Templated reports: "a2" has a's findings up to case and whitespace (the same data.records.text_key).
TWINS = [
    {"id": "a", "findings": "Heart size normal. Lungs are clear.", "impression": "Impression alpha."},
    {"id": "a2", "findings": "  heart size NORMAL.  Lungs are clear. ", "impression": "Impression twin."},
    {"id": "b", "findings": "Heart size normal. Lungs are clear. No effusion.", "impression": "Impression beta."},
    {"id": "c", "findings": "Large right pleural effusion.", "impression": "Impression gamma."},
]


def prompt_text(tok, example) -> str:  # noqa: ANN001
    return tok.decode([t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE_INDEX])


def test_training_retrieval_leaves_out_records_with_the_same_findings(tok) -> None:
    retriever = TfidfRetriever(TWINS)
    # Leave-one-out by id alone would show the twin's impression first.
    assert retriever.query([TWINS[0]["findings"]], k=1, exclude_ids=["a"])[0][0]["id"] == "a2"
    style = PromptStyle(instruction="Derive the impression", system="Be brief.", retrieval_k=2)
    examples, _ = sft_list(TWINS, tok, style, 512, retriever)
    prompts = [prompt_text(tok, e) for e in examples]
    for own, twin in ((0, 1), (1, 0)):
        assert TWINS[twin]["impression"] not in prompts[own] and TWINS[own]["impression"] not in prompts[own]
        assert "Impression beta." in prompts[own] and "Impression gamma." in prompts[own]
    assert "Impression alpha." in prompts[2] and "Impression twin." in prompts[2]  # b has no twin: both shown
    # At inference nothing is left out: a query equal to a training report's findings finds it.
    assert retrieved_impressions(retriever, [TWINS[1]["findings"]], 1) == [["Impression alpha."]]


def test_left_out_records_are_never_returned_even_when_k_is_larger() -> None:
    retriever = TfidfRetriever(TWINS[:2])
    assert retriever.query([TWINS[0]["findings"]], k=2, exclude_findings=[TWINS[0]["findings"]]) == [[]]
    assert [h["id"] for h in retriever.query([TWINS[0]["findings"]], k=2, exclude_ids=["a"])[0]] == ["a2"]
    got = retrieved_impressions(retriever, [TWINS[0]["findings"]], 3, ["a"], leave_out_same_findings=True)
    assert got == [[]]


def prompt_ids_of(example) -> list[int]:  # noqa: ANN001
    return [t for t, lab in zip(example.input_ids, example.labels, strict=True) if lab == IGNORE_INDEX]


def test_overflow_cuts_examples_then_findings_never_the_template(tok) -> None:
    """Whatever overflows, every example fits max_seq_len and its prompt ends as generation's does."""
    style = PromptStyle(instruction="Derive the impression", system="Be brief.", retrieval_k=3)
    shown = ["Cardiomegaly with small effusion. " * 6, "No acute abnormality. " * 6, "Clear lungs. " * 6]
    findings = "Mild cardiomegaly. Small left pleural effusion. " * 8
    closing = tok.decode(tok(style.render(tok, ""), add_special_tokens=False).input_ids).rstrip()[-7:]
    assert closing == "[/INST]"
    full, _ = encode_sft(tok, style, findings, "Cardiomegaly.", shown, 4096)
    for max_len in (len(full.input_ids) - 5, 90, 60, 50):
        ex, cut = encode_sft(tok, style, findings, "Cardiomegaly.", shown, max_len)
        prompt = tok.decode(prompt_ids_of(ex))
        assert cut and len(ex.input_ids) <= max_len, max_len
        # The prompt is one generation renders: closing and findings slot kept, whole.
        assert prompt.rstrip().endswith(closing) and "Findings:" in prompt, (max_len, prompt)
        assert prompt_ids_of(ex) == tok(prompt, add_special_tokens=False).input_ids
    # Retrieved examples go first: a small overflow keeps every findings word and drops the last example.
    ex, _ = encode_sft(tok, style, findings, "Cardiomegaly.", shown, len(full.input_ids) - 5)
    prompt = tok.decode(prompt_ids_of(ex))
    assert findings.strip() in prompt and "Clear lungs." not in prompt and "Cardiomegaly with" in prompt


def test_answer_longer_than_max_seq_len_is_capped(tok) -> None:
    long_answer = "Cardiomegaly with a small left pleural effusion. " * 40
    ex, cut = encode_sft(tok, STYLE, "Heart is enlarged.", long_answer, None, 80)
    assert cut and len(ex.input_ids) <= 80
    assert tok.decode(prompt_ids_of(ex)).rstrip().endswith("[/INST]")
    assert sum(lab != IGNORE_INDEX for lab in ex.labels) > 0


def test_template_longer_than_max_seq_len_is_one_clear_error(tok) -> None:
    with pytest.raises(RadLlamaError, match="max_seq_len"):
        encode_sft(tok, STYLE, "Heart is enlarged.", "Cardiomegaly.", None, 8)


def test_batched_encoding_equals_one_by_one(tok) -> None:
    """encode_sft_many (iter_sft_examples' fast path) gives encode_sft's examples and cut flags,
    cut examples included."""
    recs = records()
    findings = [r["findings"] + "  extra   words " * (i % 4) for i, r in enumerate(recs)]
    impressions = [r["impression"] for r in recs]
    shown = [None if i % 3 == 0 else [] if i % 3 == 1 else impressions[:3] for i in range(len(recs))]
    style = PromptStyle(retrieval_k=3)
    bare = len(tok(style.render(tok, "", None), add_special_tokens=False).input_ids)
    for max_len in (512, bare + 30):
        one = [encode_sft(tok, style, f, i, ex, max_len) for f, i, ex in zip(findings, impressions, shown, strict=True)]
        many = encode_sft_many(tok, style, findings, impressions, shown, max_len)
        assert many == one
        # The roomy length cuts nothing (the batched path); the tight one cuts (one by one).
        assert any(cut for _, cut in many) == (max_len < 512)


def test_abnormal_impressions_can_be_oversampled(tok) -> None:
    tasks = {"impression": 1.0, "impression_abnormal": 2.0}
    examples, _, counts = task_list(records(), tok, STYLE, 512, tasks, seed=0)
    # Only "a" states an acute finding in its impression: it appears 1 + 2 times, "b" once.
    assert counts == {"impression": 2, "impression_abnormal": 2}
    assert [e.input_ids for e in examples[2:]] == [examples[0].input_ids] * 2


# A normal report that names both findings the transplant tests move in, so each must lose a sentence.
NORMAL_HOST = {"id": "h", "findings": "Lungs are clear. No pneumothorax. No pleural effusion. Heart normal.",
               "impression": "No acute cardiopulmonary abnormality."}  # fmt: skip


def test_transplant_puts_an_acute_sentence_into_normal_findings() -> None:
    from radllama.train.examples import transplant_records

    donors = [
        {"id": "p", "findings": "Heart size normal. Large right pneumothorax.", "impression": "Right pneumothorax."},
        {
            "id": "q",
            "findings": "Cardiomegaly. Small left pleural effusion.",
            "impression": "Cardiomegaly and left effusion. Recommend follow-up.",
        },  # fmt: skip
    ]
    host = NORMAL_HOST
    made = transplant_records([*donors, host], seed=0)
    assert len(made) == 1  # one per normal record; the donors' impressions state findings
    got = made[0]
    assert got["id"] == "h#transplant" and "Lungs are clear." in got["findings"]
    assert transplant_records([*donors, host], seed=0) == made  # deterministic for a seed
    answers = set()
    for seed in range(16):
        got = transplant_records([*donors, host], seed=seed)[0]
        answers.add(got["impression"])
        if got["impression"] == "Right pneumothorax.":
            # The donor's own impression speaks only of what the sentence states: it is the answer.
            assert "Large right pneumothorax." in got["findings"] and "No pneumothorax." not in got["findings"]
        if got["impression"] == "Small left pleural effusion.":
            # "q"'s impression names cardiomegaly too, which the moved sentence does not: the sentence is the answer.
            assert "No pleural effusion." not in got["findings"] and "No pneumothorax." in got["findings"]
    assert answers == {"Right pneumothorax.", "Small left pleural effusion.", "Cardiomegaly."}


def test_transplant_is_a_task_of_the_mix(tok) -> None:
    recs = [*records(), {"id": "c", "findings": "Large left pneumothorax.", "impression": "Left pneumothorax."}]
    _, _, counts = task_list(recs, tok, STYLE, 512, {"impression": 1.0, "acute_transplant": 1.0}, seed=0)
    assert counts == {"impression": 3, "acute_transplant": 1}  # "b" is the only normal record


def test_transplant_pair_names_two_findings_in_the_order_they_stand() -> None:
    from radllama.train.examples import transplant_records

    donors = [
        {"id": "p", "findings": "Large right pneumothorax.", "impression": "Right pneumothorax."},
        {"id": "q", "findings": "Small left pleural effusion.", "impression": "Left pleural effusion"},
        {"id": "r", "findings": "Tiny right apical pneumothorax.", "impression": "Right pneumothorax."},
    ]
    host = NORMAL_HOST
    seen = set()
    for seed in range(24):
        made = transplant_records([*donors, host], seed=seed, donors=2)
        assert [m["id"] for m in made] == ["h#transplant2"]
        got = made[0]
        # Never two pneumothorax sentences: the two findings differ, and each is named once, in findings order.
        assert "pleural effusion" in got["findings"] and "No pleural effusion." not in got["findings"]
        assert "No pneumothorax." not in got["findings"]
        first_ptx = got["findings"].index("pneumothorax")
        first_eff = got["findings"].index("effusion")
        want = ["Right pneumothorax.", "Left pleural effusion."]
        assert got["impression"] == " ".join(want if first_ptx < first_eff else want[::-1])
        seen.add(got["impression"])
    assert len(seen) == 2  # both orders occur


def test_transplant_pair_answer_neither_contradicts_itself_nor_restarts_its_numbering() -> None:
    from radllama.train.examples import transplant_records

    donors = [
        # True of its own report, false beside another finding: the part becomes the findings sentence.
        {"id": "p", "findings": "The heart is mildly enlarged.",
         "impression": "1. No acute cardiopulmonary abnormality. 2. Mild cardiomegaly."},
        {"id": "q", "findings": "Small left pleural effusion.", "impression": "1. Left pleural effusion."},
    ]  # fmt: skip
    answers = {transplant_records([*donors, NORMAL_HOST], seed=seed, donors=2)[0]["impression"] for seed in range(16)}
    both = ["The heart is mildly enlarged.", "Left pleural effusion."]
    assert answers == {" ".join(both), " ".join(both[::-1])}


def test_plain_transplant_never_answers_no_acute_beside_the_finding_it_names(tok) -> None:
    from radllama.train.examples import transplant_records

    donors = [
        {"id": "p", "findings": "The heart is mildly enlarged.",
         "impression": "1. No acute cardiopulmonary abnormality. 2. Mild cardiomegaly."},
        {"id": "q", "findings": "Small left pleural effusion.", "impression": "1. Left pleural effusion."},
    ]  # fmt: skip
    recs = [*donors, NORMAL_HOST]
    plain = {transplant_records(recs, seed=seed, plain=True)[0]["impression"] for seed in range(16)}
    as_written = {transplant_records(recs, seed=seed)[0]["impression"] for seed in range(16)}
    # acute_transplant keeps the donor's impression as written; the plain task writes the finding alone.
    assert as_written == {"1. No acute cardiopulmonary abnormality. 2. Mild cardiomegaly.", "1. Left pleural effusion."}
    assert plain == {"The heart is mildly enlarged.", "Left pleural effusion."}
    assert [m["id"] for m in transplant_records(recs, seed=0, plain=True)] == ["h#transplant-plain"]
    _, _, counts = task_list(recs, tok, STYLE, 512, {"acute_transplant_plain": 1.0}, seed=0)
    assert counts == {"acute_transplant_plain": 1}


def test_transplant_weight_above_one_draws_again(tok) -> None:
    from radllama.train.examples import transplant_records

    recs = [*records(), {"id": "c", "findings": "Large left pneumothorax.", "impression": "Left pneumothorax."}]
    normals = len(transplant_records(recs, seed=0))
    examples, _, counts = task_list(recs, tok, STYLE, 512, {"acute_transplant": 2.0}, seed=0)
    assert counts == {"acute_transplant": 2 * normals}
    _, _, half = task_list(recs, tok, STYLE, 512, {"acute_transplant_pair": 1.0}, seed=0)
    assert set(half) <= {"acute_transplant_pair"}


def test_hedged_transplant_keeps_the_hedge_as_the_answer(tok) -> None:
    from radllama.train.examples import transplant_records

    donors = [
        {"id": "p", "findings": "Large right pneumothorax.", "impression": "Right pneumothorax."},
        {
            "id": "q",
            "findings": "Heart normal. Cannot exclude small left pleural effusion.",
            "impression": "No acute cardiopulmonary abnormality.",
        },  # fmt: skip
    ]
    host = NORMAL_HOST
    for seed in range(8):
        made = transplant_records([*donors, host], seed=seed, hedged=True)
        # Every record with a normal impression hosts ("q" too); only the hedged sentence is a donor (the
        # pneumothorax is stated, not hedged), and the answer is that sentence, not the donor's normal
        # impression; the host's "No pleural effusion." goes.
        assert [m["id"] for m in made] == ["q#transplant-hedged", "h#transplant-hedged"]
        got = made[1]
        assert got["impression"] == "Cannot exclude small left pleural effusion."
        assert "Cannot exclude small left pleural effusion." in got["findings"]
        assert "No pleural effusion." not in got["findings"] and "No pneumothorax." in got["findings"]
    _, _, counts = task_list([*donors, host], tok, STYLE, 512, {"acute_transplant_hedged": 1.0}, seed=0)
    assert counts == {"acute_transplant_hedged": 2}  # both normal-impression records host one
