"""Score prediction files: ROUGE, clinical F1, conciseness, bootstrap CIs, paired tests.

:func:`evaluate_predictions` is the library entry point shared by ``radllama eval``,
``radllama compare`` and the demo. It never loses a case silently: failed lines, empty
predictions, duplicates, ids missing from or unknown to the split are counted per system
under ``issues`` and every row states its ``n``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from radllama.errors import RadLlamaError
from radllama.evaluate.clinical import OBSERVATIONS, case_counts, f1_from_counts, present_matrix, word_count
from radllama.evaluate.rouge import ROUGE_TYPES, SCORER_NAME, rouge_pair
from radllama.evaluate.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    bootstrap_ci,
    paired_bootstrap,
    resample_indices,
)
from radllama.io import read_jsonl

SUBSETS: tuple[str, ...] = ("all", "unseen")
CLINICAL_LABELLER = "radllama rule-based CheXpert-style labeller (14 observations), F1 of present labels"
MAX_LISTED_IDS = 20  # issue lists keep the first few ids; the counts are always complete


@dataclass
class SystemCases:
    """One system's scored cases plus the input problems found while reading them."""

    name: str
    cases: list[dict] = field(default_factory=list)
    issues: dict[str, Any] = field(default_factory=dict)
    # Present-label matrices (cases x observations) of predictions and references.
    pred_present: np.ndarray | None = None
    ref_present: np.ndarray | None = None


def _load_sources(sources: Sequence[str | Path | dict] | Mapping[str, Sequence[dict]]) -> dict[str, list]:
    """Group prediction lines by system; each line keeps where it came from for messages."""
    grouped: dict[str, list[tuple[str, dict]]] = {}
    if isinstance(sources, Mapping):
        for name, records in sources.items():
            for i, rec in enumerate(records, 1):
                grouped.setdefault(str(name), []).append((f"{name}:{i}", {**rec, "system": str(name)}))
        return grouped
    if isinstance(sources, str | Path):
        sources = [sources]
    for src in sources:
        if isinstance(src, dict):
            name = str(src.get("system") or "system")
            grouped.setdefault(name, []).append((f"record {src.get('id')!r}", src))
            continue
        path = Path(src)
        for i, rec in enumerate(read_jsonl(path), 1):
            name = str(rec.get("system") or path.stem)
            grouped.setdefault(name, []).append((f"{path}:{i}", rec))
    return grouped


def _collect(name: str, lines: list[tuple[str, dict]], split_by_id: dict[str, dict] | None) -> SystemCases:
    """Validate one system's lines and score each usable case."""
    out = SystemCases(name)
    seen: set[str] = set()
    duplicates: list[str] = []
    failed: list[str] = []
    unknown: list[str] = []
    empty = 0
    seen_unknown = 0
    for where, rec in lines:
        if "id" not in rec:
            raise RadLlamaError(f"{where}: prediction line has no 'id'")
        rid = str(rec["id"])
        if rid in seen:
            duplicates.append(rid)  # keep the first line, report the rest
            continue
        seen.add(rid)
        if rec.get("status", "ok") == "failed":
            failed.append(rid)
            continue
        split_rec = split_by_id.get(rid) if split_by_id is not None else None
        if split_by_id is not None and split_rec is None:
            unknown.append(rid)
            continue
        reference = rec.get("reference")
        if reference is None and split_rec is not None:
            reference = split_rec.get("impression")
        if reference is None:
            raise RadLlamaError(f"{where}: no 'reference' on the line and no --split to look it up")
        seen_flag = rec.get("seen_findings")
        if seen_flag is None and split_rec is not None:
            seen_flag = split_rec.get("seen_findings")
        if seen_flag is None:
            seen_unknown += 1
        prediction = rec.get("prediction") or ""
        if not str(prediction).strip():
            empty += 1
        findings = rec.get("findings") or (split_rec or {}).get("findings", "")
        scores = rouge_pair(str(prediction), str(reference))
        out.cases.append(
            {
                "id": rid,
                "findings": findings,
                "reference": str(reference),
                "prediction": str(prediction),
                "seen_findings": seen_flag,
                **scores,
                "words": word_count(str(prediction)),
                "reference_words": word_count(str(reference)),
            }
        )
    missing = sorted(set(split_by_id) - seen) if split_by_id is not None else []
    listed = {"failed": failed, "duplicate": duplicates, "missing": missing, "unknown": unknown}
    out.issues = {
        "lines": len(lines),
        "scored": len(out.cases),
        "failed": len(failed),
        "empty_predictions": empty,
        "duplicate_ids": len(duplicates),
        "missing_ids": len(missing),
        "unknown_ids": len(unknown),
        "seen_findings_unknown": seen_unknown,
        "examples": {k: v[:MAX_LISTED_IDS] for k, v in listed.items() if v},
    }
    return out


def _add_clinical(cases: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Label every case once; store per-case agreement (F1 of present labels) on each case."""
    pred = present_matrix([c["prediction"] for c in cases])
    ref = present_matrix([c["reference"] for c in cases])
    tp, fp, fn = case_counts(pred, ref)
    denom = 2 * tp.sum(1) + fp.sum(1) + fn.sum(1)
    agree = np.where(denom > 0, 2 * tp.sum(1) / np.maximum(denom, 1), 1.0)
    for i, case in enumerate(cases):
        case["clinical_agreement"] = float(agree[i])
        case["labels_prediction"] = [o for o, on in zip(OBSERVATIONS, pred[i], strict=True) if on]
        case["labels_reference"] = [o for o, on in zip(OBSERVATIONS, ref[i], strict=True) if on]
    return pred, ref


def _mean_ci(values: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    if values.size == 0:
        return {"mean": None, "ci95": [None, None]}
    low, high = bootstrap_ci(values, resamples=resamples, seed=seed)
    return {"mean": float(values.mean()), "ci95": [low, high]}


def _subset_metrics(cases: list[dict], pred: np.ndarray, ref: np.ndarray, resamples: int, seed: int) -> dict[str, Any]:
    n = len(cases)
    out: dict[str, Any] = {"n": n}
    for name in ROUGE_TYPES:
        out[name] = _mean_ci(np.array([c[name] for c in cases], dtype=float), resamples, seed)
    if n:
        tp, fp, fn = case_counts(pred, ref)
        micro, macro = f1_from_counts(tp.sum(0), fp.sum(0), fn.sum(0))
        # Corpus-level F1 is not a mean of per-case values: resample cases, recount, re-score.
        idx = resample_indices(n, resamples, seed)
        b_micro, b_macro = f1_from_counts(tp[idx].sum(1), fp[idx].sum(1), fn[idx].sum(1))
        pairs = {"clinical_micro_f1": (micro, b_micro), "clinical_macro_f1": (macro, b_macro)}
        for key, (point, boot) in pairs.items():
            low, high = np.nanquantile(boot, [0.025, 0.975]) if np.isfinite(boot).any() else (np.nan, np.nan)
            out[key] = {"mean": _num(point), "ci95": [_num(low), _num(high)]}
    else:
        out["clinical_micro_f1"] = out["clinical_macro_f1"] = {"mean": None, "ci95": [None, None]}
    words = np.array([c["words"] for c in cases], dtype=float)
    ref_words = np.array([c["reference_words"] for c in cases], dtype=float)
    out["words"] = _mean_ci(words, resamples, seed)
    out["reference_words"] = float(ref_words.mean()) if n else None
    keep = ref_words > 0  # a ratio to an empty reference is undefined
    out["length_ratio"] = _mean_ci(words[keep] / ref_words[keep], resamples, seed)
    out["empty_predictions"] = int(sum(1 for c in cases if not c["prediction"].strip()))
    return out


def _num(x: float) -> float | None:
    return None if x is None or not np.isfinite(x) else float(x)


def _subset_mask(cases: list[dict], subset: str) -> np.ndarray:
    if subset == "all":
        return np.ones(len(cases), dtype=bool)
    return np.array([c["seen_findings"] is False for c in cases], dtype=bool)


def score_systems(
    pred_files_or_records: Sequence[str | Path | dict] | Mapping[str, Sequence[dict]],
    split_records: Sequence[dict] | None = None,
) -> list[SystemCases]:
    """Read and score every system's cases (per-case ROUGE, clinical labels, words)."""
    split_by_id = None
    if split_records is not None:
        split_by_id = {}
        for rec in split_records:
            split_by_id.setdefault(str(rec["id"]), rec)
    grouped = _load_sources(pred_files_or_records)
    if not grouped:
        raise RadLlamaError("no predictions to evaluate")
    systems = [_collect(name, lines, split_by_id) for name, lines in grouped.items()]
    for system in systems:
        system.pred_present, system.ref_present = _add_clinical(system.cases)
    return systems


def metrics_from_cases(
    systems: Sequence[SystemCases],
    reference_system: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """The metrics document (the ``metrics.json`` schema) from scored systems."""
    names = [s.name for s in systems]
    if reference_system is not None and reference_system not in names:
        raise RadLlamaError(f"reference system {reference_system!r} is not among the systems: {', '.join(names)}")
    doc: dict[str, Any] = {
        "scorer": SCORER_NAME,
        "clinical_labeller": CLINICAL_LABELLER,
        "bootstrap": {"resamples": resamples, "seed": seed, "level": 0.95, "method": "percentile"},
        "subsets": {"all": "every scored case", "unseen": "findings text does not occur in train"},
        "systems": {},
        "issues": {},
    }
    for system in systems:
        pred, ref = system.pred_present, system.ref_present
        if pred is None or ref is None:
            pred, ref = _add_clinical(system.cases)
        entry = {}
        for subset in SUBSETS:
            mask = _subset_mask(system.cases, subset)
            sub = [c for c, m in zip(system.cases, mask, strict=True) if m]
            entry[subset] = _subset_metrics(sub, pred[mask], ref[mask], resamples, seed)
        doc["systems"][system.name] = entry
        doc["issues"][system.name] = system.issues
    if reference_system is not None:
        doc["reference_system"] = reference_system
        doc["paired_vs_reference"] = _paired(systems, reference_system, resamples, seed)
    return doc


def _paired(systems: Sequence[SystemCases], reference: str, resamples: int, seed: int) -> dict[str, Any]:
    """Paired bootstrap of every system against the reference, on the cases both scored."""
    by_name = {s.name: {c["id"]: c for c in s.cases} for s in systems}
    ref_cases = by_name[reference]
    out: dict[str, Any] = {}
    for name, cases in by_name.items():
        if name == reference:
            continue
        common = [rid for rid in cases if rid in ref_cases]
        out[name] = {}
        for subset in SUBSETS:
            ids = [rid for rid in common if subset == "all" or cases[rid]["seen_findings"] is False]
            out[name][subset] = {
                metric: paired_bootstrap(
                    [cases[i][metric] for i in ids],
                    [ref_cases[i][metric] for i in ids],
                    resamples=resamples,
                    seed=seed,
                )
                for metric in (*ROUGE_TYPES, "clinical_agreement")
            }
    return out


def evaluate_predictions(
    pred_files_or_records: Sequence[str | Path | dict] | Mapping[str, Sequence[dict]],
    split_records: Sequence[dict] | None = None,
    reference_system: str | None = None,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Score prediction files or records on subsets ``all`` and ``unseen``.

    Args:
        pred_files_or_records: JSONL paths, prediction dicts (grouped by their ``system``),
            or a mapping ``{system: [records]}``.
        split_records: the test split; supplies missing references/``seen_findings`` and
            lets missing and unknown ids be reported.
        reference_system: if given, every other system gets a paired bootstrap test against it.
        resamples: bootstrap resamples for every CI and test.
        seed: bootstrap seed.

    Returns:
        The metrics document written to ``metrics.json``.
    """
    systems = score_systems(pred_files_or_records, split_records)
    return metrics_from_cases(systems, reference_system, resamples, seed)
