"""Turning split records into token ids: instruction examples (loss on the answer only)
and packed blocks of report text (for pretraining radllama-mini)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from radllama.consistency import ACUTE, stated
from radllama.data.records import split_sentences
from radllama.errors import RadLlamaError
from radllama.labeller import ABSENT, PRESENT, UNCERTAIN, label_report
from radllama.progress import track
from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever, retrieved_impressions

IGNORE_INDEX = -100
_ANY_LABEL = (PRESENT, UNCERTAIN, ABSENT)


@dataclass
class Example:
    """One tokenised training example."""

    input_ids: list[int]
    labels: list[int]


def encode_sft(
    tokenizer: Any,
    style: PromptStyle,
    findings: str,
    impression: str,
    examples: list[str] | None,
    max_seq_len: int,
) -> tuple[Example, bool]:
    """Tokenise one instruction example; returns it and whether anything was cut.

    The prompt and the answer are tokenised separately, so the prompt ids are exactly the
    ones generation will see, and the labels mask every prompt token. When too long, the
    retrieved impressions go first (least similar first), then the findings word by word
    from the end; the template is never cut (see :func:`encode_prompt_answer`).
    """
    return encode_prompt_answer(
        tokenizer,
        lambda f, ex: style.render(tokenizer, f, ex),
        findings,
        style.answer_text(impression),
        max_seq_len,
        examples,
    )


def encode_prompt_answer(
    tokenizer: Any,
    render: Callable[[str, list[str] | None], str],
    findings: str,
    answer: str,
    max_seq_len: int,
    examples: list[str] | None = None,
) -> tuple[Example, bool]:
    """Tokenise ``render(findings, examples)`` + ``answer`` + eos within ``max_seq_len``; returns (example, cut).

    Every prompt is a whole rendering, so it ends with the template's closing (``[/INST]``)
    exactly as at generation. To fit: drop retrieved examples from the last (least similar),
    then findings words from the end; an answer that does not fit even beside the bare template
    (no examples, no findings) is capped, without its eos since it does not end there.
    """
    answer_ids = tokenizer(answer, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]

    def prompt_ids(words: list[str], shown: list[str] | None) -> list[int]:
        return tokenizer(render(" ".join(words), shown), add_special_tokens=False).input_ids

    bare = len(prompt_ids([], None))
    if bare >= max_seq_len:
        raise RadLlamaError(f"max_seq_len={max_seq_len} does not hold the prompt template alone ({bare} tokens)")
    cut = len(answer_ids) > max_seq_len - bare
    answer_ids = answer_ids[: max_seq_len - bare]
    budget = max_seq_len - len(answer_ids)
    words, shown = findings.split(), list(examples) if examples else None
    ids = prompt_ids(words, shown)
    while shown and len(ids) > budget:
        shown = shown[:-1] or None
        ids, cut = prompt_ids(words, shown), True
    while len(ids) > budget:  # words left: the bare template fits the budget by construction
        # Drop roughly as many words as there are excess tokens (at least one) and retry.
        words = words[: max(0, len(words) - max(1, (len(ids) - budget) // 2))]
        ids, cut = prompt_ids(words, shown), True
    return Example(ids + answer_ids, [IGNORE_INDEX] * len(ids) + answer_ids), cut


def encode_sft_many(
    tokenizer: Any,
    style: PromptStyle,
    findings: Sequence[str],
    impressions: Sequence[str],
    shown: Sequence[list[str] | None],
    max_seq_len: int,
) -> list[tuple[Example, bool]]:
    """:func:`encode_sft` for many examples, with the same results, faster.

    Prompts and answers are tokenised in one batch call (a fast tokenizer encodes a batch in
    Rust, without a Python round trip per text); only the examples that need cutting go through
    :func:`encode_sft` one by one.
    """
    prompts = [render_trained_prompt(tokenizer, style, f, ex) for f, ex in zip(findings, shown, strict=True)]
    if not prompts:
        return []
    bare = len(tokenizer(style.render(tokenizer, "", None), add_special_tokens=False).input_ids)
    prompt_ids = tokenizer(prompts, add_special_tokens=False).input_ids
    answers = tokenizer([style.answer_text(i) for i in impressions], add_special_tokens=False).input_ids
    out = []
    for i, (p, a) in enumerate(zip(prompt_ids, answers, strict=True)):
        a = a + [tokenizer.eos_token_id]
        if bare < max_seq_len and len(a) <= max_seq_len - bare and len(p) + len(a) <= max_seq_len:
            out.append((Example(p + a, [IGNORE_INDEX] * len(p) + a), False))
        else:
            out.append(encode_sft(tokenizer, style, findings[i], impressions[i], shown[i], max_seq_len))
    return out


def render_trained_prompt(tokenizer: Any, style: PromptStyle, findings: str, shown: Sequence[str] | None) -> str:
    """A prompt as training renders it (as encode_prompt_answer does): whitespace-normalised findings,
    no empty example list."""
    return style.render(tokenizer, " ".join(findings.split()), list(shown) if shown else None)


def shown_in_training(
    retriever: TfidfRetriever | None, records: Sequence[dict], k: int, training: bool = True
) -> list[list[str] | None]:
    """The retrieved impressions each record's prompt shows in training.

    For ``training`` records retrieval leaves out the report itself and every training report with
    the same normalised findings: OpenI is templated, and a twin's impression is usually the target
    itself. Other records (validation) retrieve as generation does, nothing left out.
    """
    ids = [str(r["id"]) for r in records] if training else None
    findings = [r["findings"] for r in records]
    return retrieved_impressions(retriever, findings, k, ids, leave_out_same_findings=training)


def trained_prompts(
    tokenizer: Any, style: PromptStyle, retriever: TfidfRetriever | None, records: Sequence[dict]
) -> list[str]:
    """The prompts training built for these training records, before any cut to ``max_seq_len``
    (what ``radllama audit`` attacks): :func:`shown_in_training` rendered by :func:`render_trained_prompt`."""
    shown = shown_in_training(retriever, records, style.retrieval_k)
    return [render_trained_prompt(tokenizer, style, r["findings"], ex) for r, ex in zip(records, shown, strict=True)]


# Records retrieved for and tokenised at once in iter_sft_examples: bounds the texts held.
_BUILD_CHUNK = 2048


def iter_sft_examples(
    records: Sequence[dict],
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    retriever: TfidfRetriever | None = None,
    training: bool = True,
) -> Iterator[tuple[Example, bool]]:
    """Instruction examples for the impression task, each with whether it was cut, in record order.

    Retrieval is :func:`shown_in_training`: for ``training`` records it leaves out the report itself
    and every training report with the same normalised findings; other records (validation) retrieve
    as generation does. Records go a chunk at a time (retrieval, then tokenisation), with a progress bar, so only a
    chunk's texts and ids are held at once.
    """
    chunks = range(0, len(records), _BUILD_CHUNK)
    what = "training" if training else "validation"
    for start in track(chunks, f"building {what} examples", total=len(chunks)):
        part = records[start : start + _BUILD_CHUNK]
        shown = shown_in_training(retriever, part, style.retrieval_k, training)
        findings = [r["findings"] for r in part]
        yield from encode_sft_many(tokenizer, style, findings, [r["impression"] for r in part], shown, max_seq_len)


def report_text(record: dict, sections: Sequence[str] = ("indication", "comparison", "findings", "impression")) -> str:
    """A report as plain text, the chosen sections in reading order (pretraining corpus)."""
    parts = []
    for key in sections:
        if record.get(key):
            parts.append(f"{key.upper()}: {record[key]}")
    return "\n".join(parts)


def nearest_reports(records: Sequence[dict], k: int = 20) -> np.ndarray:
    """For each record, the indices of its most similar other records, best first (-1 padded).

    Similarity is TF-IDF over the findings of these (training) records only.
    """
    ids = [str(r["id"]) for r in records]
    return TfidfRetriever(records).nearest([r["findings"] for r in records], k=k + 1, exclude_ids=ids)


def neighbour_chain(near: Sequence[Sequence[int]], seed: int) -> list[int]:
    """An order of the records in which each report tends to follow a similar one.

    In-context pretraining (Shi et al., 2023): packing related documents together teaches
    the model to use similar reports earlier in its context — which is what the
    retrieval-augmented prompt later shows it. ``near`` is :func:`nearest_reports`. Greedy
    walk: go to the most similar unvisited report, jump to a random unvisited one when the
    nearest are all used.
    """
    rng = np.random.default_rng(seed)
    todo = list(rng.permutation(len(near)))
    seen = np.zeros(len(near), dtype=bool)
    order: list[int] = []
    current: int | None = None
    while len(order) < len(near):
        if current is None:
            while seen[todo[-1]]:
                todo.pop()
            current = int(todo[-1])
        seen[current] = True
        order.append(current)
        current = next((int(j) for j in near[current] if j >= 0 and not seen[j]), None)
    return order


def iter_blocks(tokenizer: Any, texts: Iterable[str], block_size: int) -> Iterator[Example]:
    """Concatenate ``<s> text </s>`` documents and cut them into full blocks: no padding waste.

    Blocks are cut as the text arrives (only the unfinished block is held); the tail shorter
    than a block is dropped.
    """
    stream: list[int] = []
    for text in texts:
        stream += [tokenizer.bos_token_id] + tokenizer(text, add_special_tokens=False).input_ids
        stream.append(tokenizer.eos_token_id)
        while len(stream) >= block_size:
            ids = stream[:block_size]
            del stream[:block_size]
            yield Example(ids, list(ids))


# --- Diverse instructions (paper §5.2): extra tasks derived from the same records ----------
#
# The impression task above is the paper's and the only one evaluation scores. The others
# reuse each record's findings with another question, mixed in by weight (``data.tasks``):
#   indication_impression  indication + findings -> impression (records with an indication)
#   abnormal_list          findings -> "- " list of the abnormal OpenI MeSH terms; records whose
#                          terms are only "normal" (or unindexed) are skipped
#   presence               findings -> "present" / "absent" for one finding X. X is a MeSH term's
#                          heading with its first qualifier ("Cardiomegaly (mild)"). Present: a term
#                          of this record. Absent: a term of another record whose heading this record
#                          lacks (so "Cardiomegaly" is never asked as absent of a "Cardiomegaly/mild"
#                          record). MeSH carries no uncertainty, so "uncertain" is offered in the
#                          question but never the derived answer.
# "impression_abnormal": the impression task again for the reports whose impression states an acute finding
# (radllama.consistency): oversampling against the 6 in 10 normal impressions a small model learns to copy.
# "acute_transplant": a normal report whose findings get one acute sentence of another training report (and
# lose their own sentences about that finding); the answer is that report's impression when it speaks of
# nothing but what the sentence states, else the sentence. The same normal findings then call for different
# impressions, so the answer can only come from reading them (see :func:`transplant_records`). A weight above 1
# draws the donors again (another seed) instead of repeating the same example.
# "acute_transplant_pair": the same with two acute sentences about different findings, the answer naming both:
# findings that state two things call for an impression that names two (see :func:`_pair_part`).
# "acute_transplant_hedged": the same with one sentence that only hedges an acute finding ("cannot exclude early
# pulmonary edema"), the answer that sentence itself: the impression keeps the hedge, neither dropping the
# finding nor asserting it.
# "acute_transplant_plain": acute_transplant with the answer written as the two-finding task writes each part: a
# donor impression that also says the study is otherwise unremarkable ("1. No acute cardiopulmonary abnormality.
# 2. Mild cardiomegaly.") gives way to its findings sentence, and list numbers go. Beside another report's findings
# such an impression taught the model to open with "No acute …" whatever the findings state.
# task -> (donor sentences per host, hedged donors, answers written as the pair task's parts)
TRANSPLANTS = {
    "acute_transplant": (1, False, False), "acute_transplant_pair": (2, False, True),
    "acute_transplant_hedged": (1, True, False), "acute_transplant_plain": (1, False, True),
}  # fmt: skip
TASKS = ("impression", "impression_abnormal", *TRANSPLANTS, "indication_impression", "abnormal_list", "presence")
NOT_FINDINGS = {"normal", "no indexing", "technical quality of image unsatisfactory"}
TASK_INSTRUCTIONS = {
    "indication_impression": "Derive the impression from the indication and findings in the radiology report",
    "abnormal_list": "List the abnormal observations in the findings of the radiology report, one per line",
    "presence": "Based on the findings of the radiology report, is this present: {x}? "
    "Answer present, absent or uncertain",
}


def abnormal_terms(record: dict) -> list[str]:
    """The record's MeSH terms that name an observation (not "normal", not unindexed)."""
    return [t for t in record.get("mesh") or [] if t.strip().lower() not in NOT_FINDINGS]


def term_phrase(term: str) -> str:
    """ "Calcified Granuloma/lung/upper lobe" -> "Calcified Granuloma (lung)"."""
    head, *quals = [p.strip() for p in term.split("/")]
    return f"{head} ({quals[0]})" if quals else head


def _heading(term: str) -> str:
    return term.split("/")[0].strip().lower()


def _task_prompt(tokenizer: Any, style: PromptStyle, instruction: str, body: str) -> str:
    msgs = [{"role": "system", "content": style.system}] if style.system else []
    msgs.append({"role": "user", "content": f"{instruction}.\n\n{body}"})
    return style.render_messages(tokenizer, msgs)


def task_example(
    task: str,
    record: dict,
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    rng: np.random.Generator,
    absent_pool: Sequence[str] = (),
) -> tuple[Example, bool] | None:
    """One example of an extra task for ``record`` (None when the record cannot supply it)."""
    findings = record["findings"]
    if task == "indication_impression":
        indication = str(record.get("indication") or "").strip()
        if not indication:
            return None
        instr = TASK_INSTRUCTIONS[task]
        render = lambda f, _: _task_prompt(tokenizer, style, instr, f"Indication: {indication}\n\nFindings: {f}")  # noqa: E731
        return encode_prompt_answer(tokenizer, render, findings, style.answer_text(record["impression"]), max_seq_len)
    if task == "abnormal_list":
        terms = abnormal_terms(record)
        if not terms:
            return None
        answer = "\n".join(f"- {term_phrase(t)}" for t in dict.fromkeys(terms))
        render = lambda f, _: _task_prompt(tokenizer, style, TASK_INSTRUCTIONS[task], f"Findings: {f}")  # noqa: E731
        return encode_prompt_answer(tokenizer, render, findings, style.answer_text(answer), max_seq_len)
    if task == "presence":
        terms = abnormal_terms(record)
        own = {_heading(t) for t in terms}
        absent = [t for t in absent_pool if _heading(t) not in own]
        if terms and (not absent or rng.random() < 0.5):
            x, answer = terms[int(rng.integers(len(terms)))], "present"
        elif absent:
            x, answer = absent[int(rng.integers(len(absent)))], "absent"
        else:
            return None
        instr = TASK_INSTRUCTIONS[task].format(x=term_phrase(x))
        render = lambda f, _: _task_prompt(tokenizer, style, instr, f"Findings: {f}")  # noqa: E731
        return encode_prompt_answer(tokenizer, render, findings, style.answer_text(answer), max_seq_len)
    raise RadLlamaError(f"unknown task '{task}' in data.tasks (choose from {', '.join(TASKS)})")


def check_tasks(tasks: dict[str, float]) -> None:
    """Refuse an unknown task or a weight that is not a non-negative number (one clear line)."""
    for name, weight in tasks.items():
        if name not in TASKS:
            raise RadLlamaError(f"unknown task '{name}' in data.tasks (choose from {', '.join(TASKS)})")
        if not isinstance(weight, int | float) or weight < 0:
            raise RadLlamaError(f"data.tasks.{name} must be a non-negative number, not {weight!r}")


def iter_task_examples(
    records: Sequence[dict],
    tokenizer: Any,
    style: PromptStyle,
    max_seq_len: int,
    tasks: dict[str, float],
    seed: int = 0,
    retriever: TfidfRetriever | None = None,
) -> Iterator[tuple[str, Example, bool]]:
    """(task, example, cut) for every task in ``tasks``, task by task, made as they are consumed.

    A task's weight is examples per eligible record: 1.0 = one each, 0.3 = a seeded 30% of
    them, 2.0 = two each (a different draw for ``presence``). The impression task is
    :func:`iter_sft_examples`, unchanged; its copies share the cut flag of the one encoding.
    """
    check_tasks(tasks)
    rng = np.random.default_rng(seed)
    for name, weight in tasks.items():
        if name in TRANSPLANTS:
            # One draw per started unit of weight; the last draw keeps a seeded share of its examples.
            for draw in range(max(1, math.ceil(weight))):
                donors, hedged, plain = TRANSPLANTS[name]
                chosen = transplant_records(records, seed + draw, donors=donors, hedged=hedged, plain=plain)
                for example, cut in iter_sft_examples(chosen, tokenizer, style, max_seq_len, retriever):
                    for _ in range(_repeats(min(1.0, weight - draw), rng)):
                        yield name, example, cut
            continue
        if name in ("impression", "impression_abnormal"):
            chosen = records if name == "impression" else [r for r in records if states_acute(r["impression"])]
            for example, cut in iter_sft_examples(chosen, tokenizer, style, max_seq_len, retriever):
                for _ in range(_repeats(weight, rng)):
                    yield name, example, cut
            continue
        pool = sorted({t for r in records for t in abnormal_terms(r)})
        for rec in records:
            for _ in range(_repeats(weight, rng)):
                got = task_example(name, rec, tokenizer, style, max_seq_len, rng, pool)
                if got is not None:
                    yield name, *got


def transplant_records(
    records: Sequence[dict], seed: int = 0, donors: int = 1, hedged: bool = False, plain: bool = False
) -> list[dict]:
    """One synthetic record per normal record (no finding stated in its impression): its findings with an
    acute sentence of another record set in at a random place, and that record's impression as the answer
    when the impression states nothing the sentence does not (else the sentence itself). With ``hedged`` the
    donors are sentences that only hedge an acute finding (uncertain, never present), and the answer is the
    sentence itself, whatever the donor's impression says.

    Sentences of the host that mention the moved finding in any way ("No pneumothorax.") are dropped, so
    the findings never contradict themselves. With ``donors=2`` two sentences about different findings go
    in, in a random order, and the answer is both answers in that order, each written by :func:`_pair_part`
    (``plain`` writes a one-donor answer so too). Deterministic for a seed; in record order.
    """
    rng = np.random.default_rng(seed)
    pool: list[tuple[str, str, set[str]]] = []  # (sentence, answer, observations the sentence mentions)
    for rec in records:
        if hedged:
            for sentence in split_sentences(rec["findings"]):
                if stated(sentence, (UNCERTAIN,)) & set(ACUTE) and not states_acute(sentence):
                    pool.append((sentence, sentence, stated(sentence, _ANY_LABEL)))
            continue
        if not states_acute(rec["impression"]):
            continue
        said = stated(rec["impression"])
        for sentence in split_sentences(rec["findings"]):
            acute = stated(sentence, (PRESENT,)) & set(ACUTE)
            if acute and acute <= said:
                answer = rec["impression"] if said <= stated(sentence) else sentence
                pool.append((sentence, answer, stated(sentence, _ANY_LABEL)))
    out: list[dict] = []
    if not pool:
        return out
    for rec in records:
        if stated(rec["impression"]):
            continue
        picked = _pick_donors(pool, donors, rng)
        if picked is None:
            continue
        mentioned = set().union(*(m for _, _, m in picked))
        kept = [s for s in split_sentences(rec["findings"]) if not stated(s, _ANY_LABEL) & mentioned]
        for sentence, _, _ in picked:
            kept.insert(int(rng.integers(len(kept) + 1)), sentence)
        # The answer names the findings in the order their sentences now stand in the findings.
        order = sorted(picked, key=lambda d: kept.index(d[0]))
        # One donor's answer stays exactly as its impression is written (the recipes trained so far saw it so).
        if donors == 1 and not plain:
            answer = order[0][1]
        else:
            answer = " ".join(dict.fromkeys(_pair_part(d, a) for d, a, _ in order))
        suffix = ("#transplant" if donors == 1 else f"#transplant{donors}") + ("-hedged" if hedged else "")
        suffix += "-plain" if plain and donors == 1 else ""
        out.append({**rec, "id": f"{rec['id']}{suffix}", "findings": " ".join(kept), "impression": answer})
    return out


def _pick_donors(
    pool: Sequence[tuple[str, str, set[str]]], n: int, rng: np.random.Generator, tries: int = 16
) -> list[tuple[str, str, set[str]]] | None:
    """``n`` donor sentences that mention no finding in common (None if a few draws find none)."""
    picked = [pool[int(rng.integers(len(pool)))]]
    for _ in range(tries):
        if len(picked) == n:
            break
        cand = pool[int(rng.integers(len(pool)))]
        if not any(cand[2] & p[2] for p in picked):
            picked.append(cand)
    return picked if len(picked) == n else None


# A list number at the start of an impression or of one of its sentences ("1. ", "2. "), not "3.3 mm".
_ENUMERATOR_RE = re.compile(r"(?:^|(?<=[.!?;] ))\d{1,2}\.\s+(?=[A-Za-z])")
# "no acute disease", "without acute cardiopulmonary abnormality": true of one donor's report, false beside another's.
_NONE_ACUTE_RE = re.compile(r"\b(?:no|without)\s+(?:\w+\s+){0,2}(?:acute|active)\b", re.IGNORECASE)


def _pair_part(sentence: str, answer: str) -> str:
    """One donor's part of a two-finding answer: its answer without list numbers, or its findings sentence
    where the answer also says the study is otherwise normal. Joined as written, two answers contradicted each
    other ("1. No acute pulmonary abnormality. 2. Mild cardiomegaly. 1. Small right pneumothorax.")."""
    sentences = split_sentences(_ENUMERATOR_RE.sub("", answer.strip()))
    if _NONE_ACUTE_RE.search(answer) or any(label_report(s)["No Finding"] == PRESENT for s in sentences):
        return _sentence_end(sentence)
    return " ".join(_sentence_end(s) for s in sentences)


def _sentence_end(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else f"{text}."


def states_acute(impression: str) -> bool:
    """An impression that states an acute finding as present (the consistency check's acute set)."""
    return bool(stated(impression, (PRESENT,)) & set(ACUTE))


def _repeats(weight: float, rng: np.random.Generator) -> int:
    whole, frac = divmod(float(weight), 1.0)
    return int(whole) + int(rng.random() < frac)
