"""Issue #12: the clinical labeller against OpenI's manual MeSH coding, and the headline's separation.

    python bench/bench_clinical_agreement.py --data /work/data/openi \
        [--context-python /path/to/venv-with-medspacy/bin/python] [--no-write]

1. Agreement of the labeller with NLM's MeSH coding (findings + impression), per mapped observation:
   precision, recall, F1, Cohen's kappa, n; on train + validation (in sample: rules are refined there)
   and on test (held out from now on: never refine on it), side by side. The labeller's rules digest
   and the MeSH map digest are recorded with the figures (tests/test_clinical_instrument.py).
2. The same with medspaCy's ConText deciding negation and uncertainty (our mention phrases
   as its targets), when ``--context-python`` names an interpreter that has ``medspacy``:
   medspaCy 1.3 pins numpy<2 (spaCy 3.7), so it cannot share the project's environment.
3. The clinical headline on the real test split, no model needed: the references against
   themselves, a negated rewrite of them, the constant most-frequent impression and the
   TF-IDF retrieval baseline (fitted on train).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

TITLE = "Clinical correctness: labeller vs OpenI's MeSH coding (bench_clinical_agreement.py)"
TARGET_MICRO, TARGET_MIN = 0.90, 0.80


def read_split(data: Path, name: str) -> list[dict]:
    with open(data / f"{name}.jsonl", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


# ----------------------------------------------------------------------------- ConText


def context_labels(texts: list[str]) -> list[dict[str, str]]:
    """Label texts with our mention phrases as targets and medspaCy's ConText for their scope."""
    import medspacy
    from loguru import logger
    from spacy.util import filter_spans

    from radllama import labeller as c

    logger.remove()  # PyRuSH logs every sentence at DEBUG
    nlp = medspacy.load(enable=["medspacy_pyrush", "medspacy_context"])
    out = []
    for text in texts:
        labels = dict.fromkeys(c.OBSERVATIONS, c.NOT_MENTIONED)
        if not text.strip():
            out.append(labels)
            continue

        def put(obs: str, value: str, labels: dict = labels) -> None:
            if c._RANK[value] > c._RANK[labels[obs]]:
                labels[obs] = value

        low = text.lower()
        # Same explicit normals and pseudo-cues as the rules, so only the scope decision differs.
        for obs, pattern in c._NORMAL_RE.items():
            for m in list(pattern.finditer(low)):
                put(obs, c.ABSENT)
                low = c._blank(low, m)
        for m in list(c._PSEUDO_RE.finditer(low)):
            low = c._blank(low, m)
        doc = nlp.make_doc(text)
        spans, owner = [], {}
        for obs, pattern in c._MENTION_RE.items():
            for m in pattern.finditer(low):
                span = doc.char_span(m.start(), m.end(), label=obs, alignment_mode="expand")
                if span is not None:
                    spans.append(span)
                    owner.setdefault((span.start, span.end), set()).add(obs)
        doc.ents = filter_spans(spans)
        for _name, proc in nlp.pipeline:
            doc = proc(doc)
        for ent in doc.ents:
            value = c.ABSENT if ent._.is_negated else c.UNCERTAIN if ent._.is_uncertain else c.PRESENT
            for obs in owner.get((ent.start, ent.end), {ent.label_}):
                put(obs, value)
        abnormal = any(labels[o] in (c.PRESENT, c.UNCERTAIN) for o in c.OBSERVATIONS[1:-1])
        if abnormal:
            labels["No Finding"] = c.ABSENT
        elif any(v != c.NOT_MENTIONED for v in labels.values()) or c._NORMAL_HINT_RE.search(low):
            labels["No Finding"] = c.PRESENT
        out.append(labels)
    return out


def run_context(python: str, texts: list[str]) -> tuple[list[dict[str, str]], str, float]:
    """ConText labels from another interpreter (the one with medspaCy); returns labels, version, seconds."""
    with tempfile.TemporaryDirectory() as tmp:
        src, dst = Path(tmp) / "texts.json", Path(tmp) / "labels.json"
        src.write_text(json.dumps(texts), encoding="utf-8")
        t0 = time.perf_counter()
        # The worker imports this checkout's labeller, whatever that interpreter has installed.
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}
        subprocess.run([python, __file__, "--context-worker", str(src), str(dst)], check=True, env=env)
        seconds = time.perf_counter() - t0
        result = json.loads(dst.read_text(encoding="utf-8"))
    return result["labels"], result["version"], seconds


def context_worker(src: Path, dst: Path) -> None:
    import medspacy

    labels = context_labels(json.loads(src.read_text(encoding="utf-8")))
    dst.write_text(json.dumps({"labels": labels, "version": medspacy.__version__}), encoding="utf-8")


# ----------------------------------------------------------------------------- tables


def _f(x: float | None, digits: int = 3) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def agreement_table(results: dict[str, dict]) -> str:
    """One row per observation, one column group per labeller."""
    names = list(results)
    head = "| observation | MeSH n | " + " | ".join(f"{n} P / R / F1 / κ" for n in names) + " |"
    lines = [head, "|---|---:|" + "---|" * len(names)]
    first = results[names[0]]
    for obs, row in first["observations"].items():
        cells = []
        for n in names:
            r = results[n]["observations"][obs]
            cells.append(f"{_f(r['precision'])} / {_f(r['recall'])} / **{_f(r['f1'])}** / {_f(r['kappa'])}")
        lines.append(f"| {obs} | {row['mesh_positives']} | " + " | ".join(cells) + " |")
    micro = [
        f"{_f(results[n]['micro']['precision'])} / {_f(results[n]['micro']['recall'])} / "
        f"**{_f(results[n]['micro']['f1'])}** / –"
        for n in names
    ]
    total = sum(r["mesh_positives"] for r in first["observations"].values())
    lines.append(f"| **micro, mapped findings** | {total} | " + " | ".join(micro) + " |")
    nf = [
        f"{_f(results[n]['no_finding']['precision'])} / {_f(results[n]['no_finding']['recall'])} / "
        f"{_f(results[n]['no_finding']['f1'])} / {_f(results[n]['no_finding']['kappa'])}"
        for n in names
    ]
    lines.append("| No Finding vs MeSH `normal` (apart: not the same meaning) | – | " + " | ".join(nf) + " |")
    return "\n".join(lines)


def negate(text: str) -> str:
    """The issue's rewrite: every sentence that states a finding gets a leading "No"."""
    from radllama.labeller import FINDINGS, PRESENT, label_report

    out = []
    for sentence in re.split(r"(?<=[.;])\s+", text.strip()):
        if any(label_report(sentence)[o] == PRESENT for o in FINDINGS):
            sentence = re.sub(r"^(\d+\.\s*)?", lambda m: (m.group(1) or "") + "No ", sentence, count=1)
        out.append(sentence)
    return " ".join(out)


def separation(data: Path) -> str:
    """The headline on the test split for systems whose answer needs no model."""
    from radllama.baselines import make_baseline
    from radllama.evaluate.metrics import evaluate_predictions

    test, train = read_split(data, "test"), read_split(data, "train")
    systems = {
        "references": [r["impression"] for r in test],
        "negated references": [negate(r["impression"]) for r in test],
    }
    for name in ("most-frequent", "tfidf-retrieval"):
        systems[name] = make_baseline(name).fit(train).predict([r["findings"] for r in test])
    records = {k: [{"id": r["id"], "prediction": p} for r, p in zip(test, v, strict=True)] for k, v in systems.items()}
    m = evaluate_predictions(records, split_records=test, reference_system="most-frequent", resamples=1000)
    keys = ("rougeL", "clinical_micro_f1", "clinical_macro_f1", "clinical_micro_f1_5", "clinical_no_finding_f1")
    lines = [
        "| system (OpenI test, n=576) | ROUGE-L | F1-13 micro [95% CI] | F1-13 macro | F1-5 micro | No Finding F1 "
        "| Δ F1-13 µ vs most-frequent, p (permutation) |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, entry in m["systems"].items():
        a = entry["all"]
        cells = []
        for k in keys:
            v = a[k]
            ci = f" [{_f(v['ci95'][0])}, {_f(v['ci95'][1])}]" if k == "clinical_micro_f1" else ""
            cells.append(_f(v["mean"], 4) + ci)
        test_ = m.get("paired_vs_reference", {}).get(name, {}).get("all", {}).get("clinical_micro_f1")
        paired = "–" if test_ is None else f"{test_['mean_diff']:+.4f}, p={test_['p_value']:.3f}"
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {paired} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/work/data/openi"))
    parser.add_argument("--context-python", help="interpreter with medspaCy (for the ConText column)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave BENCHMARKS.md alone")
    parser.add_argument("--context-worker", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.context_worker:
        context_worker(*args.context_worker)
        return

    from _report import publish

    from radllama.evaluate.clinical import OUTSIDE_CHEXPERT, case_scored
    from radllama.evaluate.mesh_agreement import map_digest, mesh_agreement, report_text
    from radllama.labeller import FINDINGS, OBSERVATIONS, present_matrix, rules_digest

    samples = {
        "in sample (train + validation)": [r for s in ("train", "validation") for r in read_split(args.data, s)],
        "held out (test)": read_split(args.data, "test"),
    }
    every = [r for rows in samples.values() for r in rows]
    t0 = time.perf_counter()
    results = {name: {"rules": mesh_agreement(rows)} for name, rows in samples.items()}
    rules_s = time.perf_counter() - t0
    for name, rows in samples.items():
        results[name]["rules, uncertain counted"] = mesh_agreement(rows, count_uncertain=True)
    timing = f"rules {rules_s:.1f} s"
    context_note = "ConText not measured (no --context-python given)."
    if args.context_python:
        texts = [report_text(r) for r in every]
        labels, version, seconds = run_context(args.context_python, texts)
        by_text = dict(zip(texts, labels, strict=True))
        for name, rows in samples.items():
            results[name][f"medspaCy {version} ConText"] = mesh_agreement(rows, labeller=by_text.__getitem__)
        timing += f", ConText {seconds:.1f} s (incl. loading)"
        context_note = (
            f"ConText: medspaCy {version}'s default rules (`medspacy.load()`: PyRuSH sentences + ConText; no model "
            "file, nothing downloaded), our mention phrases as its targets and our explicit normals/pseudo-cues "
            "unchanged, so only the negation/uncertainty scope differs."
        )
    inside, held = (results[name]["rules"] for name in samples)
    worst = min((r["f1"], o) for o, r in inside["observations"].items() if r["f1"] is not None)
    micro_met, min_met = inside["micro"]["f1"] >= TARGET_MICRO, worst[0] >= TARGET_MIN
    test = samples["held out (test)"]
    cols = [OBSERVATIONS.index(o) for o in FINDINGS]
    refs = [r["impression"] for r in test]
    unscored = sum(not case_scored(t, row) for t, row in zip(refs, present_matrix(refs)[:, cols], strict=True))
    note = (
        f"Instrument: labeller rules digest `{rules_digest()}`, MeSH map digest `{map_digest()}` "
        "(`radllama.labeller.rules_digest`, `radllama.evaluate.mesh_agreement.map_digest`; "
        "tests/test_clinical_instrument.py fails when the rules or the map change until this bench is rerun). "
        f"OpenI reports with manual MeSH coding: {inside['n_reports']} in train + validation "
        f"({inside['n_unindexed']} `No Indexing` left out), {held['n_reports']} in test ({held['n_unindexed']}). "
        "Whole report (findings + impression) labelled; positive = *present* (the headline's policy), "
        "'uncertain counted' also counts uncertain labels. MeSH map: `radllama.evaluate.mesh_agreement.MESH_MAP` "
        f"(docs/evaluation.md). Target, in sample: micro-F1 ≥ {TARGET_MICRO} over the mapped findings (rules: "
        f"{inside['micro']['f1']:.3f}, **{'met' if micro_met else 'not met'}**), no mapped observation below "
        f"{TARGET_MIN} (lowest: {worst[1]} {worst[0]:.3f}, **{'met' if min_met else 'not met'}**); held out (test): "
        f"micro-F1 {held['micro']['f1']:.3f}. **Not a clean held-out figure yet**: until issue #22 the rules and "
        "the map were refined while reading disagreements on all three splits, test included (micro-F1 0.864 "
        "before that work), so the test figure was seen while the instrument was tuned. From now on rules and map "
        "are refined on train + validation only, and the test figure is re-measured, never tuned on, after each "
        "change (the digests above force the rerun). The last change made on all splits: an enlarged "
        "*cardio*mediastinal silhouette counts as Cardiomegaly, not Enlarged Cardiomediastinum (the indexers "
        f"coded all 7 indexed reports that state one as Cardiomegaly). {context_note} Per case, {unscored} of "
        f"{len(test)} test references are *not scored* (they state only findings outside CheXpert: "
        f"{', '.join(OUTSIDE_CHEXPERT).lower()}). Time: {timing}."
    )
    tables = [f"**{name}**\n\n" + agreement_table(by_labeller) for name, by_labeller in results.items()]
    sep = separation(args.data)
    body = (
        "\n\n".join(tables) + "\n\nThe clinical headline on the real test split (no model needed; 1,000 bootstrap "
        "resamples, paired permutation test with 1,000 resamples). The negated rewrite prefixes every sentence that "
        "states a finding with 'No'.\n\n" + sep
    )
    publish(TITLE, note, body, write=not args.no_write)


if __name__ == "__main__":
    main()
