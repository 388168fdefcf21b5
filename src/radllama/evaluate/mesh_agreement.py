"""Check the clinical labeller against OpenI's manual MeSH coding (NLM's indexers, not us).

Every OpenI report carries the MeSH headings that NLM's indexers assigned to it by hand
(``mesh`` in our records: ``normal``, ``Cardiomegaly/mild``, ``Pulmonary Atelectasis/base/left``
...). :data:`MESH_MAP` maps the headings that name a CheXpert observation; a report's mapped
observations are its *reference* positives. The labeller reads the whole report (findings,
then impression) and its *present* labels are compared per observation: precision, recall,
F1, Cohen's kappa and the number of MeSH positives. docs/evaluation.md lists the map with
its reasons. Until issue #22 the map and the labeller's phrases were refined while reading the
disagreements on all three splits, test included (0.864 micro-F1 before that work); from then
on they are refined on train + validation only, and test is measured, not read: the bench
reports both apart, and :func:`map_digest` with :func:`radllama.labeller.rules_digest` tie the
figures in BENCHMARKS.md to the rules that gave them.

Reports indexed ``No Indexing`` (or with no heading at all) have no manual coding and are
left out. ``No Finding`` has no MeSH counterpart of the same meaning (MeSH ``normal`` also
excludes calcified granulomas, spine changes and other non-CheXpert findings), so it is
reported on its own line, outside the micro average.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import astuple, dataclass

import numpy as np
from sklearn.metrics import precision_recall_fscore_support

from radllama.labeller import OBSERVATIONS, PRESENT, UNCERTAIN, label_report


@dataclass(frozen=True)
class MeshRule:
    """One MeSH heading (the part before the first ``/``) naming an observation.

    ``qualifiers``: if given, at least one of these sub-terms must follow the heading
    (``Costophrenic Angle/blunted``); ``unless``: sub-terms that veto the rule.
    """

    heading: str
    observation: str
    qualifiers: tuple[str, ...] = ()
    unless: tuple[str, ...] = ()
    why: str = ""

    def matches(self, term: str) -> bool:
        parts = [p.strip().lower() for p in term.split("/")]
        if parts[0] != self.heading.lower():
            return False
        rest = set(parts[1:])
        if self.qualifiers and not rest & set(self.qualifiers):
            return False
        return not rest & set(self.unless)


MESH_MAP: tuple[MeshRule, ...] = (
    MeshRule("Cardiomegaly", "Cardiomegaly", why="includes 'borderline' (the indexers coded it as cardiomegaly)"),
    MeshRule("Cardiac Shadow", "Cardiomegaly", qualifiers=("enlarged",), why="an enlarged cardiac silhouette"),
    MeshRule(
        "Mediastinum",
        "Enlarged Cardiomediastinum",
        qualifiers=("enlarged", "prominent", "widened"),
        unless=("lymph nodes",),
        why="a wide or prominent mediastinum; enlarged nodes are not the silhouette",
    ),
    MeshRule("Nodule", "Lung Lesion"),
    MeshRule("Opacity", "Lung Lesion", qualifiers=("round",), why="the indexers code a nodular opacity as round"),
    MeshRule("Density", "Lung Lesion", qualifiers=("round",), unless=("ribs", "breast", "nipple")),
    MeshRule("Mass", "Lung Lesion"),
    MeshRule("Opacity", "Lung Opacity", unless=("bone", "ribs", "thoracic vertebrae", "spine", "soft tissue")),
    MeshRule("Infiltrate", "Lung Opacity"),
    MeshRule("Airspace Disease", "Lung Opacity", why="CheXpert counts airspace disease as lung opacity"),
    MeshRule("Density", "Lung Opacity", qualifiers=("lung", "retrocardiac"), why="densities of the lung only"),
    MeshRule(
        "Markings", "Lung Opacity", qualifiers=("interstitial",), why="CheXpert counts interstitial markings as opacity"
    ),
    MeshRule("Pulmonary Edema", "Edema"),
    MeshRule("Pulmonary Congestion", "Edema", why="CheXpert counts vascular congestion as edema"),
    MeshRule("Heart Failure", "Edema", why="CheXpert counts heart failure as edema"),
    MeshRule("Consolidation", "Consolidation"),
    MeshRule("Pneumonia", "Pneumonia"),
    MeshRule("Pulmonary Atelectasis", "Atelectasis"),
    MeshRule("Pneumothorax", "Pneumothorax"),
    MeshRule("Hydropneumothorax", "Pneumothorax"),
    MeshRule("Hemopneumothorax", "Pneumothorax"),
    MeshRule("Pleural Effusion", "Pleural Effusion"),
    MeshRule("Thickening", "Pleural Other", qualifiers=("pleura",), why="pleural thickening"),
    MeshRule("Cicatrix", "Pleural Other", qualifiers=("pleura",), why="pleural scarring"),
    MeshRule("Calcinosis", "Pleural Other", qualifiers=("pleura",), why="calcified pleural plaques"),
    MeshRule("Fractures, Bone", "Fracture"),
    MeshRule("Catheters, Indwelling", "Support Devices"),
    MeshRule("Implanted Medical Device", "Support Devices"),
    MeshRule("Medical Device", "Support Devices"),
    MeshRule("Tube, Inserted", "Support Devices"),
    MeshRule("Stents", "Support Devices"),
    MeshRule("Surgical Instruments", "Support Devices", why="in OpenI: surgical clips and sternotomy wires"),
)
# Not mapped, on purpose: "Costophrenic Angle/blunted" (the indexers code blunting apart from
# effusion, also where the report says "blunting ... without definite pleural effusion").
UNINDEXED = "no indexing"


def map_digest() -> str:
    """A short hash of :data:`MESH_MAP` (recorded in BENCHMARKS.md beside the agreement it gave)."""
    return hashlib.sha256(json.dumps([astuple(r)[:4] for r in MESH_MAP]).encode()).hexdigest()[:16]


def mesh_observations(terms: Iterable[str]) -> set[str] | None:
    """The observations a report's MeSH terms name; ``None`` when the report was not indexed."""
    terms = [t for t in terms if t and t.strip()]
    if not terms or any(t.strip().lower() == UNINDEXED for t in terms):
        return None
    return {rule.observation for t in terms for rule in MESH_MAP if rule.matches(t)}


def report_text(record: dict) -> str:
    """The whole report as the indexers read it: findings, then impression."""
    return "\n".join(str(record.get(k) or "") for k in ("findings", "impression")).strip()


def _kappa(tp: int, fp: int, fn: int, tn: int) -> float | None:
    n = tp + fp + fn + tn
    if n == 0:
        return None
    observed = (tp + tn) / n
    expected = ((tp + fp) * (tp + fn) + (fn + tn) * (fp + tn)) / (n * n)
    return None if expected == 1 else (observed - expected) / (1 - expected)


def _prf(gold: np.ndarray, pred: np.ndarray, average: str | None) -> list[dict[str, float | None]]:
    """scikit-learn's precision, recall and F1 (per column, ``"micro"``, or ``"binary"`` for one); 0/0 is None."""
    if gold.size == 0:
        return [dict.fromkeys(("precision", "recall", "f1"))] * (1 if average else gold.shape[-1])
    scores = np.atleast_1d(precision_recall_fscore_support(gold, pred, average=average, zero_division=np.nan)[:3])
    rows = np.array(scores, dtype=float).reshape(3, -1).T
    return [{k: None if np.isnan(v) else float(v) for k, v in zip(("precision", "recall", "f1"), r, strict=True)}
            for r in rows]  # fmt: skip


def mesh_agreement(
    records: Sequence[dict],
    labeller: Callable[[str], dict[str, str]] = label_report,
    count_uncertain: bool = False,
) -> dict:
    """Per-observation agreement of ``labeller`` with the MeSH coding of ``records``.

    Args:
        records: OpenI split records with ``findings``, ``impression`` and ``mesh``.
        labeller: text → {observation: label}; the project's rules by default.
        count_uncertain: also count *uncertain* labels as positive (the headline does not).

    Returns:
        ``{"n_reports", "n_unindexed", "observations": {obs: {tp, fp, fn, tn, precision,
        recall, f1, kappa, mesh_positives}}, "micro": {...}, "no_finding": {...}}``.
    """
    positive = {PRESENT, UNCERTAIN} if count_uncertain else {PRESENT}
    mapped = sorted({r.observation for r in MESH_MAP}, key=OBSERVATIONS.index)
    gold_rows, pred_rows, normal_gold, normal_pred = [], [], [], []
    unindexed = 0
    for rec in records:
        gold = mesh_observations(rec.get("mesh") or [])
        if gold is None:
            unindexed += 1
            continue
        labels = labeller(report_text(rec))
        gold_rows.append([o in gold for o in mapped])
        pred_rows.append([labels[o] in positive for o in mapped])
        normal_gold.append([t.strip().lower() for t in rec["mesh"]] == ["normal"])
        normal_pred.append(labels["No Finding"] == PRESENT)
    gold_m = np.asarray(gold_rows, dtype=bool).reshape(-1, len(mapped))
    pred_m = np.asarray(pred_rows, dtype=bool).reshape(-1, len(mapped))
    per_obs = {}
    for j, (obs, scores) in enumerate(zip(mapped, _prf(gold_m, pred_m, None), strict=True)):
        g, p = gold_m[:, j], pred_m[:, j]
        counts = {k: int(v.sum()) for k, v in (("tp", g & p), ("fp", ~g & p), ("fn", g & ~p), ("tn", ~g & ~p))}
        per_obs[obs] = {**counts, **scores, "mesh_positives": int(g.sum())}
        per_obs[obs]["kappa"] = _kappa(counts["tp"], counts["fp"], counts["fn"], counts["tn"])
    tp, fp, fn = (sum(v[k] for v in per_obs.values()) for k in ("tp", "fp", "fn"))
    ng, npred = np.asarray(normal_gold, dtype=bool), np.asarray(normal_pred, dtype=bool)
    nf = [int(x.sum()) for x in (ng & npred, ~ng & npred, ng & ~npred, ~ng & ~npred)]
    nf_scores = _prf(ng, npred, "binary")[0]
    return {
        "n_reports": int(gold_m.shape[0]),
        "n_unindexed": unindexed,
        "count_uncertain": count_uncertain,
        "observations": per_obs,
        "micro": {"tp": tp, "fp": fp, "fn": fn, **_prf(gold_m, pred_m, "micro")[0]},
        "no_finding": {"tp": nf[0], "fp": nf[1], "fn": nf[2], "tn": nf[3], **nf_scores, "kappa": _kappa(*nf)},
    }
