"""Score prediction files: ROUGE, clinical F1, conciseness, bootstrap CIs, paired tests.

:func:`evaluate_predictions` is the library entry point shared by ``radllama eval``,
``radllama compare`` and the demo. It never loses a case silently: failed lines, empty
predictions, duplicates, ids missing from or unknown to the split are counted per system
under ``issues`` and every row states its ``n``. A case a system failed, or never answered,
is scored as an empty answer, so every system is ranked on the same cases (the split's, or
without a split the union of all systems' cases).

The clinical headline follows the F1-CheXbert convention: F1 of *positive* mentions per
observation, micro and macro over the 13 findings of CheXpert's 14 observations and over
the 5 of the CheXpert competition; "No Finding" is scored on its own line, never inside an
average. Uncertain mentions count as not positive, in predictions and references alike.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from radllama.errors import RadLlamaError
from radllama.evaluate.clinical import (
    FINDING_COLS,
    case_counts,
    case_scored,
    f1_from_counts,
    finding_counts,
    word_count,
)
from radllama.evaluate.stats import (
    DEFAULT_RESAMPLES,
    DEFAULT_SEED,
    HOLM_NOTE,
    TEST_NAME,
    bootstrap_ci,
    bootstrap_statistics,
    holm,
    paired_permutation,
    paired_permutation_f1,
    percentile_ci,
    resample_counts,
)
from radllama.io import read_jsonl
from radllama.labeller import COMPETITION5, OBSERVATIONS, present_matrix
from radllama.rouge import ROUGE_TYPES, SCORER_NAME, rouge_pair

SUBSETS: tuple[str, ...] = ("all", "unseen")
CLINICAL_LABELLER = (
    "radllama rule-based CheXpert-style labeller; F1 of positive mentions (uncertain = not positive, both sides), "
    "micro/macro over 13 findings (No Finding apart) and over the 5 competition observations"
)
# Column indices of the headline averages in the (cases x 14 observations) matrices.
_COMP5_COLS = np.array([OBSERVATIONS.index(o) for o in COMPETITION5])
_NO_FINDING_COL = OBSERVATIONS.index("No Finding")
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
        split_rec = split_by_id.get(rid) if split_by_id is not None else None
        if split_by_id is not None and split_rec is None:
            unknown.append(rid)
            continue
        status = "failed" if rec.get("status", "ok") == "failed" else "ok"
        if status == "failed":
            failed.append(rid)  # scored below as an empty answer: a failure costs its case
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
        prediction = "" if status == "failed" else str(rec.get("prediction") or "")
        if status == "ok" and not prediction.strip():
            empty += 1
        findings = rec.get("findings") or (split_rec or {}).get("findings", "")
        out.cases.append(_case(rid, findings, str(reference), prediction, seen_flag, status))
    missing = sorted(set(split_by_id) - seen) if split_by_id is not None else []
    for rid in missing:
        rec = split_by_id[rid]
        reference = str(rec.get("impression") or "")
        out.cases.append(_case(rid, rec.get("findings", ""), reference, "", rec.get("seen_findings"), "missing"))
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


def _case(rid: str, findings: str, reference: str, prediction: str, seen: bool | None, status: str) -> dict:
    """One scored case; a failed or missing case carries an empty prediction and its status."""
    return {
        "id": rid,
        "findings": findings,
        "reference": reference,
        "prediction": prediction,
        "seen_findings": seen,
        "status": status,
        **rouge_pair(prediction, reference),
        "words": word_count(prediction),
        "reference_words": word_count(reference),
    }


def _align(systems: list[SystemCases]) -> None:
    """Without a split, give every system the union of cases: one it lacks scores as empty."""
    union: dict[str, dict] = {}
    for system in systems:
        for case in system.cases:
            union.setdefault(case["id"], case)
    for system in systems:
        have = {c["id"] for c in system.cases}
        lacking = [rid for rid in union if rid not in have]
        for rid in lacking:
            c = union[rid]
            system.cases.append(_case(rid, c["findings"], c["reference"], "", c["seen_findings"], "missing"))
        if lacking:
            system.issues["missing_ids"] += len(lacking)
            system.issues["examples"]["missing"] = lacking[:MAX_LISTED_IDS]


def _add_clinical(cases: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Label every case once; store per-case agreement (F1 of present labels, or None: not scored) on each case."""
    pred = present_matrix([c["prediction"] for c in cases])
    ref = present_matrix([c["reference"] for c in cases])
    # Per case: F1 over the 13 findings (1.0 when both state none), as in the headline.
    tp, fp, fn = case_counts(pred[:, FINDING_COLS], ref[:, FINDING_COLS])
    denom = 2 * tp.sum(1) + fp.sum(1) + fn.sum(1)
    agree = np.where(denom > 0, 2 * tp.sum(1) / np.maximum(denom, 1), 1.0)
    scored: dict[str, bool] = {}  # per distinct reference (references repeat across systems)
    for i, case in enumerate(cases):
        text = case["reference"]
        if text not in scored:
            scored[text] = case_scored(text, ref[i, FINDING_COLS])
        case["clinical_agreement"] = float(agree[i]) if scored[text] else None  # None: "not scored"
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
    words = np.array([c["words"] for c in cases], dtype=float)
    ref_words = np.array([c["reference_words"] for c in cases], dtype=float)
    means = {name: np.array([c[name] for c in cases], dtype=float) for name in ROUGE_TYPES} | {"words": words}
    cis: dict[str, dict[str, Any]] = {name: {"mean": None, "ci95": [None, None]} for name in means}
    sums: list[np.ndarray] = []
    if n:
        # Every figure over these n cases is resampled on the same draw, in one chunked pass: the
        # means, and per-observation TP/FP/FN counts summed over each resample (corpus F1s recount).
        counts = np.concatenate(case_counts(pred, ref), axis=1).astype(float)

        def statistic(idx: np.ndarray) -> np.ndarray:
            return np.column_stack([*(v[idx].mean(axis=1) for v in means.values()), resample_counts(idx, n) @ counts])

        boot = bootstrap_statistics(n, statistic, resamples, seed)
        for j, (name, values) in enumerate(means.items()):
            cis[name] = {"mean": float(values.mean()), "ci95": list(percentile_ci(boot[:, j]))}
        sums = np.split(boot[:, len(means) :].astype(np.int64), 3, axis=1)  # exact: sums of integer counts
    keep = ref_words > 0  # a ratio to an empty reference is undefined
    return {
        "n": n,
        **{name: cis[name] for name in ROUGE_TYPES},
        **_clinical_metrics(pred, ref, sums),
        "words": cis["words"],
        "reference_words": float(ref_words.mean()) if n else None,
        "length_ratio": _mean_ci(words[keep] / ref_words[keep], resamples, seed),
        "empty_predictions": int(sum(1 for c in cases if not c["prediction"].strip())),
    }


CLINICAL_KEYS: tuple[str, ...] = (
    "clinical_micro_f1",
    "clinical_macro_f1",
    "clinical_micro_f1_5",
    "clinical_macro_f1_5",
    "clinical_no_finding_f1",
)


def _clinical_metrics(pred: np.ndarray, ref: np.ndarray, boot_sums: Sequence[np.ndarray]) -> dict[str, Any]:
    """Headline clinical F1s with bootstrap CIs, and the per-observation table.

    ``boot_sums``: TP, FP and FN per observation summed over each resample of the cases
    (resamples x observations each): corpus-level F1 is not a mean of per-case values, so each
    resample is recounted and re-scored.
    """
    n = pred.shape[0]
    if n == 0:
        return {**{k: {"mean": None, "ci95": [None, None]} for k in CLINICAL_KEYS}, "clinical_per_observation": {}}
    sums = [x.sum(0) for x in case_counts(pred, ref)]
    out: dict[str, Any] = {}
    groups = {"": FINDING_COLS, "_5": _COMP5_COLS}
    for suffix, cols in groups.items():
        point = f1_from_counts(*(s[cols] for s in sums))
        boot = f1_from_counts(*(b[:, cols] for b in boot_sums))
        for name, p, b in zip(("micro", "macro"), point, boot, strict=True):
            out[f"clinical_{name}_f1{suffix}"] = _point_ci(p, b)
    col = [_NO_FINDING_COL]  # a one-column group: its micro F1 is that observation's F1
    point, _ = f1_from_counts(*(s[col] for s in sums))
    boot, _ = f1_from_counts(*(b[:, col] for b in boot_sums))
    out["clinical_no_finding_f1"] = _point_ci(point, boot)
    # scikit-learn's per-class scores; undefined (0/0) ones are None, as everywhere in metrics.json.
    scores = precision_recall_fscore_support(ref, pred, average=None, zero_division=np.nan)[:3]
    per_obs = {}
    for j, obs in enumerate(OBSERVATIONS):
        per_obs[obs] = {
            **{k: _defined(v[j]) for k, v in zip(("precision", "recall", "f1"), scores, strict=True)},
            "reference_positives": int(ref[:, j].sum()),
            "predicted_positives": int(pred[:, j].sum()),
        }
    out["clinical_per_observation"] = per_obs
    return out


def _defined(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _point_ci(point: np.ndarray | float, boot: np.ndarray) -> dict[str, Any]:
    """A corpus-level figure with the percentile CI of its bootstrap (None, never NaN, in JSON)."""
    boot = np.asarray(boot, dtype=float)
    low, high = np.nanquantile(boot, [0.025, 0.975]) if np.isfinite(boot).any() else (np.nan, np.nan)
    return {"mean": _num(float(point)), "ci95": [_num(low), _num(high)]}


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
    if split_by_id is None:
        _align(systems)
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
        "paired_test": TEST_NAME,
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
        k = sum(len(tests) for subsets in doc["paired_vs_reference"].values() for tests in subsets.values())
        doc["multiplicity"] = HOLM_NOTE.format(k=k)
    return doc


def _finding_counts(system: SystemCases) -> dict[str, np.ndarray]:
    """Per case: TP, FP, FN of positive labels summed over the 13 findings (cases x 3)."""
    counts = finding_counts(system.pred_present, system.ref_present)
    return {c["id"]: counts[i] for i, c in enumerate(system.cases)}


def _paired(systems: Sequence[SystemCases], reference: str, resamples: int, seed: int) -> dict[str, Any]:
    """Paired permutation test of every system against the reference, on the same cases.

    ROUGE: per-case scores (sign-flip permutation of the differences). Clinical: the corpus
    micro F1 over the 13 findings (swap the systems' labels on random cases, re-score).
    """
    for s in systems:
        if s.pred_present is None or s.ref_present is None:
            s.pred_present, s.ref_present = _add_clinical(s.cases)
    by_name = {s.name: {c["id"]: c for c in s.cases} for s in systems}
    counts = {s.name: _finding_counts(s) for s in systems}
    ref_cases = by_name[reference]
    out: dict[str, Any] = {}
    for name, cases in by_name.items():
        if name == reference:
            continue
        common = [rid for rid in cases if rid in ref_cases]
        out[name] = {}
        for subset in SUBSETS:
            ids = [rid for rid in common if subset == "all" or cases[rid]["seen_findings"] is False]
            tests = {
                metric: paired_permutation(
                    [cases[i][metric] for i in ids], [ref_cases[i][metric] for i in ids], resamples, seed
                )
                for metric in ROUGE_TYPES
            }
            a = np.array([counts[name][i] for i in ids]).reshape(-1, 3)
            b = np.array([counts[reference][i] for i in ids]).reshape(-1, 3)
            tests["clinical_micro_f1"] = paired_permutation_f1(a, b, resamples, seed)
            out[name][subset] = tests
    family = [t for subsets in out.values() for tests in subsets.values() for t in tests.values()]
    for test, adjusted in zip(family, holm([t["p_value"] for t in family]), strict=True):
        test["p_holm"] = float(adjusted)
    return out


def add_model_metrics(
    doc: dict[str, Any],
    systems: Sequence[SystemCases],
    names: Sequence[str],
    weights_dir: Path,
    allow_download: bool = False,
    resamples: int = DEFAULT_RESAMPLES,
    seed: int = DEFAULT_SEED,
) -> None:
    """Score BERTScore / RadGraph / CheXbert into ``doc`` (per subset; CIs where per-case)."""
    from radllama.evaluate.model_metrics import METRICS, check_available, score_cases

    check_available(names, weights_dir, allow_download)
    doc["model_metrics"] = {n: f"{METRICS[n].pip}, weights from {Path(weights_dir) / n}" for n in names}
    for system in systems:
        entry = doc["systems"][system.name]
        for subset in SUBSETS:
            mask = _subset_mask(system.cases, subset)
            cases = [c for c, m in zip(system.cases, mask, strict=True) if m]
            for name in names:
                if not cases:
                    entry[subset][name] = {"mean": None, "ci95": [None, None]}
                    continue
                preds, refs = [c["prediction"] for c in cases], [c["reference"] for c in cases]
                values = score_cases(name, preds, refs, weights_dir, allow_download)
                if isinstance(values, list):
                    entry[subset][name] = _mean_ci(np.asarray(values, dtype=float), resamples, seed)
                else:  # a corpus-level figure from the package: no per-case values to resample
                    entry[subset][name] = {"mean": float(values), "ci95": [None, None]}


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
        reference_system: if given, every other system gets a paired permutation test against it.
        resamples: bootstrap resamples for every CI and test.
        seed: bootstrap seed.

    Returns:
        The metrics document written to ``metrics.json``.
    """
    systems = score_systems(pred_files_or_records, split_records)
    return metrics_from_cases(systems, reference_system, resamples, seed)
