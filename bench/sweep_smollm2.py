"""Issue #29: SmolLM2-135M-Instruct, untuned and LoRA-tuned, the MODEL ALONE (greedy), on VALIDATION and the
faithfulness benchmark's DEV edition (the old dev and held-out editions; the frozen heldout-v2 only reports).

    python bench/sweep_smollm2.py --model runs/smollm2 --data runs/data/openi \
        --system untuned= --system v1=runs/sweep/v1/best [--few-shot untuned] [--no-write] \
        [--system gemma3-270m= --base gemma3-270m=runs/gemma3]

Each ``--system NAME=ADAPTER`` (an empty adapter: the untuned base) is decoded greedily with transformers
once over the validation findings and the dev cases; ``--few-shot NAME`` prompts that system with the three
most similar training impressions (retrieval over the train split); ``--base NAME=FOLDER`` decodes that system
with another base model (a comparison row like the paper's Table 2, e.g. Gemma 3 270M from
``radllama models get gemma3-270m``). Answers are cached in
``runs/sweep/answers/NAME.json``, so a rerun only scores. Columns: validation ROUGE and clinical F1 of
positive findings; on the dev edition, critical findings named, invented positives on normal findings, sides
kept, invented positives on negation cases, each by our labeller (the rules the faithful decoder uses) and by
the independent reader (:mod:`radllama.evaluate.judge`), and the share of answers that copy a training
impression verbatim. Beside them, by the judge, the dev edition's hedged, resolved and multi-finding cases
(:func:`radllama.evaluate.faithfulness_cases.kind_cases`, cached apart in ``NAME.kinds.json``): hedges kept,
resolved findings asserted, multi-finding texts with every finding named.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish, rouge_cells  # noqa: E402

from radllama.evaluate.clinical import clinical_f1  # noqa: E402
from radllama.evaluate.faithfulness import build_benchmark, score  # noqa: E402
from radllama.evaluate.faithfulness_cases import kind_cases  # noqa: E402
from radllama.io import atomic_write_json, read_jsonl  # noqa: E402

TITLE = "Issue #29: SmolLM2-135M-Instruct, the model alone, on validation and the dev edition (sweep_smollm2.py)"


def dev_cases(train: list[dict], validation: list[dict]) -> list[dict]:
    """The dev edition as it now stands: the old dev edition and the old held-out edition."""
    return build_benchmark("dev", train) + build_benchmark("heldout", validation)


def answers(model: str, adapter: str | None, findings: list[str], train_file: Path, few_shot: bool) -> list[str]:
    """Greedy answers of the model (with its adapter) to every findings text, in order."""
    from radllama.generate.impressions import encode_prompts, prompts_and_examples
    from radllama.inference import Decoding, load_model

    loaded = load_model(model, adapter or None, backend="transformers", batch_size=32)
    # A model with no chat template gets the "### Input / ### Response" fallback and, being a plain language
    # model, goes on to write the next "###" block itself: its answer ends there.
    stop = () if getattr(loaded.tokenizer, "chat_template", None) else ("###",)
    if few_shot:  # the untuned chat model shown the three most similar training impressions
        from radllama.retrieval import TfidfRetriever

        loaded.style = dataclasses.replace(loaded.style, retrieval_k=3)
        loaded.retriever = TfidfRetriever(read_jsonl(train_file))
    prompts, _ = prompts_and_examples(loaded, findings)
    out = [c.text for c in loaded.backend.generate(encode_prompts(loaded, prompts, 64), Decoding(64, stop=stop))]
    loaded.backend.close()
    return out


def cached_answers(
    cache: Path, model: str, adapter: str | None, findings: list[str], train_file: Path, few_shot: bool
) -> tuple[list[str], float]:
    """:func:`answers` kept in ``cache`` (a rerun only scores): (texts, seconds per case of the decoding run)."""
    if cache.is_file():
        saved = json.loads(cache.read_text())
        return saved["texts"], saved["seconds_per_case"]
    t0 = time.perf_counter()
    texts = answers(model, adapter, findings, train_file, few_shot)
    seconds = (time.perf_counter() - t0) / len(findings)
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(cache, {"adapter": adapter, "texts": texts, "seconds_per_case": seconds})
    return texts, seconds


def judge_score(cases: list[dict], texts: list[str]) -> dict:
    """The independent reader's figures for the dev cases (radllama.evaluate.edition_score)."""
    from radllama.evaluate.edition_score import judge_reader, score_edition, with_expectations
    from radllama.evaluate.editions import FINDING_TYPES

    return score_edition([with_expectations(c) for c in cases], texts, judge_reader(), FINDING_TYPES)


def cell(d: dict | None, key: str) -> str:
    """A share from a scores dict as a table cell ("–" where there is none)."""
    return "–" if d is None or d.get(key) is None else f"{d[key]:.1%}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="runs/smollm2")
    ap.add_argument("--data", default="runs/data/openi")
    ap.add_argument("--system", action="append", default=[], help="NAME=ADAPTER (empty: untuned)")
    ap.add_argument("--few-shot", action="append", default=[])
    ap.add_argument("--base", action="append", default=[], help="NAME=FOLDER: that system's base model")
    ap.add_argument("--cache", default="runs/sweep/answers")
    ap.add_argument("--no-write", action="store_true")
    args = ap.parse_args()
    data = Path(args.data)
    train, validation = read_jsonl(data / "train.jsonl"), read_jsonl(data / "validation.jsonl")
    bench, kinds = dev_cases(train, validation), kind_cases("dev")
    kind_findings = [c["findings"] for c in kinds]
    findings = [r["findings"] for r in validation] + [c["findings"] for c in bench]
    refs = [r["impression"] for r in validation]
    train_impressions = {r["impression"].strip() for r in train}
    n_val = len(validation)
    lines = [
        f"| system (validation n={n_val}, dev n={len(bench)}) | R-1 | R-2 | R-L | clinical F1 | named (ours) | "
        "named (judge) | invented on normal (judge) | invented on negation (judge) | side kept (judge) | "
        "training impression verbatim | s per case | "
        f"hedge kept (judge, n={sum(c['kind'] == 'hedged' for c in kinds)}) | "
        f"resolved asserted (judge, n={sum(c['kind'] == 'resolved' for c in kinds)}) | "
        f"multi all named (judge, n={sum(c['kind'] == 'multi' for c in kinds)}) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    results = {}
    bases = dict(spec.partition("=")[::2] for spec in args.base)
    for spec in args.system:
        name, _, adapter = spec.partition("=")
        cache, few_shot = Path(args.cache) / f"{name}.json", name in args.few_shot
        model = bases.get(name, args.model)
        texts, seconds = cached_answers(cache, model, adapter, findings, data / "train.jsonl", few_shot)
        val, dev = texts[:n_val], texts[n_val:]
        ours, judged = score(bench, dev), judge_score(bench, dev)
        # Cached in a file of their own, so answers cached before these cases existed stay valid.
        kinds_cache = Path(args.cache) / f"{name}.kinds.json"
        kinds_texts, _ = cached_answers(kinds_cache, model, adapter, kind_findings, data / "train.jsonl", few_shot)
        by_kind = judge_score(kinds, kinds_texts)
        copied = sum(t.strip() in train_impressions for t in val) / n_val
        f1 = clinical_f1(val, refs)["micro_f1"]

        lines.append(
            f"| {name} | {rouge_cells(val, refs)} | {f1:.4f} | {cell(ours, 'recall')} | {cell(judged, 'named')} | "
            f"{cell(judged, 'invented_normal')} | {cell(judged, 'invented_negation')} | {cell(judged, 'side_kept')} | "
            f"{copied:.1%} | {seconds:.3f} | {cell(by_kind, 'hedge_kept')} | {cell(by_kind, 'resolved_asserted')} | "
            f"{cell(by_kind, 'multi_all_named')} |"
        )
        results[name] = {"ours": ours, "judge": judged, "kinds": by_kind, "copied": copied, "clinical_f1": f1}
    atomic_write_json(Path(args.cache) / "scores.json", results)
    note = (
        f"Base `{args.model}` (dequantised SmolLM2-135M-Instruct)"
        + "".join(f"; {n} on `{m}`" for n, m in bases.items())
        + ", greedy, transformers, 64 new tokens at most (a model with no chat template stops at its next `###`). "
        "Dev edition = the old dev edition (train sentences) + the old held-out edition (validation sentences); "
        "the last three columns: the dev edition's hedged, resolved and multi-finding cases (`kind_cases`, "
        "writers A-C, the dev phrasings). Chosen here, never on test or on heldout-v2."
    )
    print("\n".join(lines))
    publish(TITLE, note, "\n".join(lines), write=not args.no_write)


if __name__ == "__main__":
    main()
