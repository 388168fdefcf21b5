"""Clinical correctness scores built on the rule-based labeller (:mod:`radllama.labeller`).

The clinical score (:mod:`radllama.evaluate.metrics`) is the F1 of the *present* labels of a
prediction against those of its reference (uncertain = not positive on both sides), micro and
macro over the 13 :data:`~radllama.labeller.FINDINGS` and over
:data:`~radllama.labeller.COMPETITION5`; No Finding on its own.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from radllama.labeller import (
    FINDINGS,
    OBSERVATIONS,
    PRESENT,
    UNCERTAIN,
    compile_mentions,
    find_mentions,
    present_matrix,
)

# Findings a reference may state that are not CheXpert observations, so the per-case score cannot
# judge them: a reference that states one of these (present or possible) and no CheXpert finding
# is "not scored" per case ("Diffuse fibrosis." would score 1.000 for "No acute abnormality.").
# A short explicit list, documented in docs/evaluation.md; the corpus F1s are unchanged by it.
OUTSIDE_CHEXPERT: dict[str, list[str]] = {
    "Fibrosis": [r"(pulmonary |interstitial |diffuse )?fibros[ie]s", r"fibrotic"],
    "Emphysema": [r"emphysema\w*", r"copd", r"chronic obstructive (pulmonary|lung) disease", r"hyperinflat\w*"],
    "Hiatal Hernia": [r"hiatal hernias?", r"hiatus hernias?"],
    "Granuloma": [r"granulomas?", r"granulomata"],
}
_OUTSIDE_RE = compile_mentions(OUTSIDE_CHEXPERT)


def _f1(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    denom = 2 * tp + fp + fn
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def f1_from_counts(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Micro and macro F1 from per-observation counts of shape (..., observations).

    Macro averages only observations with a defined F1 (present somewhere in reference or
    prediction); a set with none at all scores nan.
    """
    micro = _f1(tp.sum(-1), fp.sum(-1), fn.sum(-1))
    per_obs = _f1(tp, fp, fn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-nan rows: mean of nothing is nan
        macro = np.nanmean(per_obs, axis=-1)
    return micro, macro


def case_counts(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-case TP/FP/FN indicators (cases × observations) of present labels."""
    return pred & ref, pred & ~ref, ~pred & ref


FINDING_COLS = [OBSERVATIONS.index(o) for o in FINDINGS]  # the 13 findings' columns of a present matrix


def finding_counts(pred_present: np.ndarray, ref_present: np.ndarray) -> np.ndarray:
    """Per case: TP, FP, FN of positive labels summed over the 13 findings (cases x 3), from present
    matrices over every observation (:func:`radllama.labeller.present_matrix`); what paired F1 tests resample."""
    tp, fp, fn = case_counts(pred_present[:, FINDING_COLS], ref_present[:, FINDING_COLS])
    return np.stack([tp.sum(1), fp.sum(1), fn.sum(1)], axis=1)


def clinical_f1(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """The headline: micro and macro F1 of the positive labels over the 13 findings."""
    pred, ref = present_matrix(predictions), present_matrix(references)
    tp, fp, fn = case_counts(pred[:, FINDING_COLS], ref[:, FINDING_COLS])
    micro, macro = f1_from_counts(tp.sum(0), fp.sum(0), fn.sum(0))
    return {"micro_f1": float(micro), "macro_f1": float(macro)}


def outside_chexpert(text: str) -> list[str]:
    """The :data:`OUTSIDE_CHEXPERT` findings ``text`` states as present or possible (negations do not count)."""
    found = {m.observation for m in find_mentions(text, _OUTSIDE_RE) if m.observation in OUTSIDE_CHEXPERT
             and m.label in (PRESENT, UNCERTAIN)}  # fmt: skip
    return [o for o in OUTSIDE_CHEXPERT if o in found]


def case_scored(reference: str, reference_present: np.ndarray) -> bool:
    """Whether the per-case score means something: not when the reference's only findings lie outside
    CheXpert (``reference_present``: its present labels over the 13 findings)."""
    return bool(reference_present.any()) or not outside_chexpert(reference)


def case_agreement(prediction: str, reference: str) -> float | None:
    """Per-case F1 of the positive findings (1.0 when both state the same, or none); ``None`` (not
    scored) when the reference states only findings outside CheXpert (:func:`case_scored`)."""
    p = present_matrix([prediction])[0, FINDING_COLS]
    r = present_matrix([reference])[0, FINDING_COLS]
    if not case_scored(reference, r):
        return None
    tp, fp, fn = int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def word_count(text: str) -> int:
    """Words in an impression (whitespace tokens)."""
    return len((text or "").split())
