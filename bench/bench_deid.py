"""De-identification (``radllama.deid``) on the synthetic PHI set and on OpenI's real text.

    python bench/make_phi_set.py --out /tmp/phi-test.jsonl --seed 2 --n 1000 --clinical DATA/train.jsonl
    python bench/bench_deid.py --phi-set /tmp/phi-test.jsonl --openi DATA [--no-write]

Per PHI type on the synthetic set: recall (a planted span counts when every character of it lies in
replaced text, whatever placeholder replaced it), typed recall (replaced by its own type's placeholder),
precision (replaced spans that touch planted PHI), and the share of the clinical words around the PHI
that were changed. On OpenI (already de-identified, "XXXX"), every change is a false positive: the share
of words changed in findings, impressions, indications and comparisons of all three splits. The patterns
were tuned on a set made with seed 1; report a set made with another seed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import publish  # noqa: E402

from radllama.deid import DEID_FIELDS, PLACEHOLDERS, find_phi, replace_spans  # noqa: E402

TITLE = "De-identification: synthetic PHI and OpenI (bench_deid.py)"
_TOKEN = re.compile(r"\S+")


def _covered(start: int, end: int, text: str, spans) -> bool:
    """Every non-space character of text[start:end] lies in one of ``spans``."""
    return all(text[i].isspace() or any(s.start <= i < s.end for s in spans) for i in range(start, end))


def score_phi_set(reports: list[dict]) -> tuple[dict[str, dict], dict]:
    """Per type: planted, recall, typed recall, predicted, precision, and planted texts still in the redacted
    text (the text presidio-anonymizer wrote, ``replace_spans``, as the guard and ``redact`` write it); and the
    clinical words changed."""
    planted, recalled, typed, left = Counter(), Counter(), Counter(), Counter()
    predicted, true_pred = Counter(), Counter()
    words = changed = 0
    for rep in reports:
        text, gold = rep["text"], rep["spans"]
        found = find_phi(text)
        redacted = replace_spans(text, found)
        for g in gold:
            planted[g["type"]] += 1
            whole_word = rf"(?<!\w){re.escape(text[g['start'] : g['end']])}(?!\w)"
            left[g["type"]] += re.search(whole_word, redacted) is not None
            recalled[g["type"]] += _covered(g["start"], g["end"], text, found)
            typed[g["type"]] += _covered(g["start"], g["end"], text, [s for s in found if s.kind == g["type"]])
        for s in found:
            predicted[s.kind] += 1
            true_pred[s.kind] += any(s.start < g["end"] and g["start"] < s.end for g in gold)
        for m in _TOKEN.finditer(text):
            if any(m.start() < g["end"] and g["start"] < m.end() for g in gold):
                continue
            words += 1
            changed += any(m.start() < s.end and s.start < m.end() for s in found)
    rows = {}
    for kind in PLACEHOLDERS:
        rows[kind] = {
            "planted": planted[kind],
            "recall": recalled[kind] / planted[kind] if planted[kind] else None,
            "typed_recall": typed[kind] / planted[kind] if planted[kind] else None,
            "predicted": predicted[kind],
            "precision": true_pred[kind] / predicted[kind] if predicted[kind] else None,
            "left_in_redacted_text": left[kind],
        }
    return rows, {"words": words, "changed": changed}


def openi_changed(data: Path) -> dict:
    """Words changed by de-identification across OpenI's splits (all are false positives), by type."""
    words = changed = texts = 0
    kinds: Counter = Counter()
    for split in ("train", "validation", "test"):
        for line in (data / f"{split}.jsonl").open(encoding="utf-8"):
            rec = json.loads(line)
            for field in DEID_FIELDS:
                text = rec.get(field) or ""
                texts += 1
                found = find_phi(text)
                kinds.update(s.kind for s in found)
                for m in _TOKEN.finditer(text):
                    words += 1
                    changed += any(m.start() < s.end and s.start < m.end() for s in found)
    return {"texts": texts, "words": words, "changed": changed, "spans": dict(kinds)}


def _f(x: float | None) -> str:
    return "–" if x is None else f"{x:.4f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--phi-set", type=Path, required=True, help="A file from bench/make_phi_set.py.")
    ap.add_argument("--openi", type=Path, help="A `radllama data openi` folder.")
    ap.add_argument("--no-write", action="store_true")
    ap.add_argument("--json", type=Path, help="Also write the figures here.")
    args = ap.parse_args()
    reports = [json.loads(line) for line in args.phi_set.open(encoding="utf-8")]
    t0 = time.perf_counter()
    rows, clinical = score_phi_set(reports)
    secs = time.perf_counter() - t0
    lines = [
        "| type | planted | recall | typed recall | replaced spans | precision | still in the redacted text |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for kind, r in rows.items():
        lines.append(
            f"| {kind} | {r['planted']} | {_f(r['recall'])} | {_f(r['typed_recall'])} | {r['predicted']} "
            f"| {_f(r['precision'])} | {r['left_in_redacted_text']} |"
        )
    table = "\n".join(lines)
    table += (
        f"\n\nClinical words around the PHI changed: {clinical['changed']}/{clinical['words']} "
        f"({clinical['changed'] / max(clinical['words'], 1):.2%}); {len(reports)} reports in {secs:.1f} s."
    )
    figures = {"phi_set": str(args.phi_set), "types": rows, "clinical_words": clinical}
    if args.openi:
        t0 = time.perf_counter()
        openi = openi_changed(args.openi)
        secs = time.perf_counter() - t0
        figures["openi"] = openi
        table += (
            f"\n\nOpenI (already de-identified; every change is a false positive): {openi['changed']}/"
            f"{openi['words']} words changed ({openi['changed'] / max(openi['words'], 1):.3%}) in "
            f"{openi['texts']} texts, {secs:.1f} s; spans by type: {openi['spans'] or 'none'}."
        )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    note = (
        "Synthetic reports with planted PHI (bench/make_phi_set.py, Faker; the test set's seed differs from the "
        "seed the patterns were tuned on). Recall counts a planted span as removed when all its characters were "
        "replaced, by any placeholder; typed recall asks for its own type's placeholder. 'Still in the redacted text': "
        "planted spans whose text stands as a whole word in what presidio-anonymizer wrote (the same text may also "
        "occur outside the span)."
    )
    publish(TITLE, note, table, write=not args.no_write)


if __name__ == "__main__":
    main()
