"""Write the frozen held-out edition ``heldout-v2`` of the faithfulness benchmark (issue #30), once.

The cases were written by hand, in six new writers' styles (G-L), before and without looking at any rule that
reads them (``labeller.py``, ``consistency.py``, ``generate/mbr.py``, the independent judge). This script only
lays them out: it fills sides and sizes, sets each writer's normal and negation sentences around the stated
findings (seeded), and writes one JSON object a line to
``src/radllama/evaluate/benchmarks/heldout-v2.jsonl``.

The file is frozen: its sha256 is pinned in ``radllama.evaluate.editions`` and in
``tests/test_faithfulness_edition.py``. Do not rerun this script to change the edition: a change of any case
is a new edition (``heldout-v3``, a new script and file), and the figures measured on this one are kept.
``--check`` rebuilds the edition in memory and compares it with the file byte for byte (the provenance test).

Case: ``{"id", "edition", "kind", "writer", "findings", "expect", "origin", "note"?}``; ``expect`` lists
``{"finding", "status", "side"}``: ``present`` (a correct impression names it), ``uncertain`` (names it and
keeps the hedge), ``absent`` (it must not be asserted present: negated, resolved, or stated normal).
Findings not listed are not in the text at all: an impression asserting one invents it.

Conventions a judge needs (a radiologist reading the texts would agree):

- "probable", "possible", "may represent", "cannot exclude", "questionable", "suspicious for", "?" hedge:
  ``uncertain``; "consistent with", "in keeping with", "c/w" assert: ``present``;
- "atelectasis" and lobar collapse are ``collapse`` (as in the old editions);
- a hydropneumothorax is a pneumothorax and a pleural effusion; a haemothorax is a pleural effusion;
- comparisons ("unchanged", "stable", "increased", "decreased but persistent", "no interval change in")
  keep a finding ``present``; "resolved", "no longer visible", "cleared", "re-expanded" make it ``absent``;
- ``malpositioned tube`` covers any tube, drain or line whose tip or course lies where it must not: an
  endotracheal tube in a main bronchus, the bronchus intermedius, the oesophagus, at the carina or high at the
  thoracic inlet; an enteric (nasogastric, orogastric, feeding) tube coiled in or ending in the oesophagus or
  entering the airway; a central line or PICC turned up into the jugular vein; a chest drain whose side hole
  is outside the pleural space. Not malpositioned (``absent``): an endotracheal tube 3-5 cm above the carina,
  an enteric tube in the stomach or duodenum, a central line or PICC tip in the SVC or at the cavoatrial
  junction, pacemaker leads in the right atrium and ventricle, a chest drain in the pleural space. A PICC tip
  in the right atrium is left out (radiologists differ on it);
- ``side``: the side the text gives (the side of the bronchus for a tube), ``bilateral`` for both sides,
  ``null`` where the text does not lateralise; context sentences' ``absent`` entries have ``null``.

Usage: ``python bench/make_heldout_v2.py --check`` (or ``--out PATH`` to write a copy elsewhere).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import sys
from collections import Counter
from pathlib import Path

EDITION = "heldout-v2"
SEED = "heldout-v2/issue-30"
FILE = Path(__file__).resolve().parents[1] / "src" / "radllama" / "evaluate" / "benchmarks" / "heldout-v2.jsonl"
FINDINGS = (
    "pneumothorax", "pleural effusion", "consolidation", "pulmonary edema", "cardiomegaly", "lung mass",
    "fracture", "free air", "collapse", "malpositioned tube", "widened mediastinum", "hiatal hernia", "nodule",
)  # fmt: skip
KINDS = ("critical", "multi", "hedged", "resolved", "comparison", "device", "normal", "negation")
WRITERS = ("G", "H", "I", "J", "K", "L")
# G terse; H verbose academic; I structured headings; J British English; K abbreviations; L ICU portable,
# comparison-minded.
LUNG = frozenset({"consolidation", "pulmonary edema", "lung mass", "collapse", "nodule"})
PLEURA = frozenset({"pneumothorax", "pleural effusion"})
HEART_MED = frozenset({"cardiomegaly", "widened mediastinum", "hiatal hernia"})
SIZES = ("small", "moderate", "large")


def S(text: str, out: set[str] | frozenset[str] = frozenset(), near: set[str] | frozenset[str] = frozenset()):
    """A context sentence: ``out`` = findings it rules out (``absent``); ``near`` = findings it would sit badly
    beside although it does not rule them out (the trachea is central vs a tension pneumothorax)."""
    return (text, frozenset(out), frozenset(near))


# The cases' words, hand-written: compact tables, kept out of the formatter's reach.
# fmt: off
# Normal sentences: the context of every kind and the whole of a normal case. None negates beyond standard
# phrasing; none is shared with the old editions (a test checks).
NORMALS: dict[str, list] = {
    "G": [
        S("Normal heart size.", {"cardiomegaly"}),
        S("Normal mediastinum.", {"widened mediastinum", "hiatal hernia"}, {"collapse"}),
        S("Clear lungs.", LUNG),
        S("Sharp costophrenic angles.", {"pleural effusion"}, {"collapse"}),
        S("Intact ribs.", {"fracture"}),
        S("Single frontal view."),
        S("Degenerative thoracic spine."),
    ],
    "H": [
        S("A single portable frontal radiograph of the chest was obtained."),
        S("The cardiac silhouette is of normal size and configuration.", {"cardiomegaly"}),
        S("Mediastinal and hilar contours are preserved.", {"widened mediastinum", "hiatal hernia", "lung mass"},
          {"collapse"}),
        S("The lungs are well expanded and clear.", LUNG, {"collapse"}),
        S("The pulmonary vasculature is of normal caliber and distribution.", {"pulmonary edema"}),
        S("The costophrenic recesses are clearly delineated.", {"pleural effusion"}, {"collapse"}),
        S("The osseous structures demonstrate mild degenerative change of the thoracic spine."),
        S("The included portions of the upper abdomen are unremarkable.", {"free air", "hiatal hernia"}),
    ],
    "J": [
        S("The trachea is central.", near={"pneumothorax", "collapse", "widened mediastinum"}),
        S("Heart size is normal, with a cardiothoracic ratio under 0.5.", {"cardiomegaly"}),
        S("The mediastinum is central and of normal width.", {"widened mediastinum", "hiatal hernia"},
          {"pneumothorax", "collapse"}),
        S("Both lungs are clear.", LUNG, {"pneumothorax"}),
        S("Both costophrenic angles are clear.", {"pleural effusion"}, {"collapse"}),
        S("Normal hilar appearances.", {"lung mass"}, {"collapse"}),
        S("The bony thorax appears intact.", {"fracture"}),
    ],
    "K": [
        S("AP portable."),
        S("CTR <0.5.", {"cardiomegaly"}),
        S("Mediastinum nl.", {"widened mediastinum", "hiatal hernia"}, {"collapse"}),
        S("Lungs clear b/l.", LUNG),
        S("CPAs sharp.", {"pleural effusion"}, {"collapse"}),
        S("Bony thorax nl.", {"fracture"}),
        S("Old healed R clavicle deformity.", near={"fracture"}),
    ],
    "L": [
        S("Portable semi-upright AP radiograph, compared with the study of the previous day."),
        S("Cardiomediastinal contours are stable and within normal limits.",
          {"cardiomegaly", "widened mediastinum", "hiatal hernia"}),
        S("Lung volumes are low, with crowding of the bronchovascular markings.", near={"pulmonary edema"}),
        S("The lungs remain clear.", LUNG),
        S("Pulmonary vascularity within normal limits.", {"pulmonary edema"}),
        S("Pleural spaces remain clear.", PLEURA),
        S("Monitoring leads overlie the chest."),
    ],
}
# Writer I: structured headings, always in this order; a heading that states something replaces its normal.
HEADINGS = ("Technique", "Lines/Tubes", "Lungs", "Pleura", "Heart/Mediastinum", "Bones", "Upper abdomen")
I_NORMALS: dict[str, list] = {
    "Technique": [
        S("Technique: PA and lateral.", near={"malpositioned tube"}),
        S("Technique: Portable AP, semi-erect."),
    ],
    "Lines/Tubes": [S("Lines/Tubes: None.", {"malpositioned tube"})],
    "Lungs": [S("Lungs: Clear bilaterally.", LUNG), S("Lungs: Well inflated, no focal opacity.", LUNG)],
    "Pleura": [
        S("Pleura: Normal, without fluid or air.", PLEURA),
        S("Pleura: Unremarkable.", PLEURA),
        S("Pleura: Costophrenic angles sharp.", {"pleural effusion"}, {"collapse"}),
    ],
    "Heart/Mediastinum": [
        S("Heart/Mediastinum: Normal cardiac size and mediastinal contour.", HEART_MED),
        S("Heart/Mediastinum: Within normal limits.", HEART_MED),
    ],
    "Bones": [S("Bones: No acute osseous abnormality.", {"fracture"}), S("Bones: Mild spondylosis.")],
    "Upper abdomen": [S("Upper abdomen: Unremarkable.", {"free air"}), S("Upper abdomen: No free gas.", {"free air"})],
}
# Explicit negations: the negation cases' point, and now and then context in other kinds. Several come after
# long clauses, where a rule's negation window may not reach.
NEGATIONS: dict[str, list] = {
    "G": [
        S("No pneumothorax, effusion, or consolidation.", {"pneumothorax", "pleural effusion", "consolidation"}),
        S("No edema or focal opacity.", {"pulmonary edema", "consolidation"}),
        S("Negative for rib fracture.", {"fracture"}),
        S("No subdiaphragmatic free air.", {"free air"}),
        S("Allowing for rotation, no mediastinal widening.", {"widened mediastinum"}),
        S("Post line placement, no pneumothorax.", {"pneumothorax"}),
        S("Despite poor inspiration, no focal consolidation.", {"consolidation"}),
    ],
    "H": [
        S("Compared with the prior study from last week, and allowing for the low lung volumes and rotation of "
          "the patient, there is no evidence of pneumothorax, effusion, or focal consolidation.",
          {"pneumothorax", "pleural effusion", "consolidation"}),
        S("Although the examination is limited by patient positioning and overlying monitoring leads, no "
          "displaced rib fracture or pneumothorax is demonstrated.", {"fracture", "pneumothorax"}),
        S("Given the clinical concern for heart failure, particular attention was paid to the pulmonary "
          "vasculature, which shows no evidence of interstitial or alveolar edema.", {"pulmonary edema"}),
        S("The cardiac silhouette, which is partly obscured by overlying breast tissue and the AP technique, is "
          "not enlarged.", {"cardiomegaly"}),
        S("Behind the heart, where the left lower lobe is partly obscured by the cardiac silhouette, there is no "
          "consolidation or collapse.", {"consolidation", "collapse"}),
        S("There is no radiographic evidence of a pulmonary mass or suspicious nodule.", {"lung mass", "nodule"}),
    ],
    "J": [
        S("No pneumothorax or haemothorax is seen following the stab injury.", PLEURA),
        S("There is no pulmonary oedema.", {"pulmonary edema"}),
        S("Taking into account the rotated and slightly underpenetrated film, no consolidation or collapse can be "
          "identified in either lung.", {"consolidation", "collapse"}),
        S("No free gas is seen beneath either hemidiaphragm.", {"free air"}),
        S("No rib fractures are demonstrated.", {"fracture"}),
        S("Despite the history of a fall from height and the limited supine projection, there is no sign of "
          "mediastinal widening.", {"widened mediastinum"}),
        S("In view of the clinical query of pneumonia, the lungs were carefully reviewed, and there is no focal "
          "consolidation.", {"consolidation"}),
    ],
    "K": [
        S("No PTX/effusion.", PLEURA),
        S("No focal ASD.", {"consolidation"}),
        S("No pulm edema.", {"pulmonary edema"}),
        S("No acute fx.", {"fracture"}),
        S("s/p line placement, no PTX.", {"pneumothorax"}),
        S("CTR nl, mediastinum not widened.", {"cardiomegaly", "widened mediastinum"}),
        S("Given hx of fall, no rib fx or PTX.", {"fracture", "pneumothorax"}),
    ],
    "L": [
        S("Following removal of the right chest tube earlier today, and despite the patient's limited inspiratory "
          "effort, there is no recurrent pneumothorax.", {"pneumothorax"}),
        S("Despite the lower lung volumes on today's examination, there is no new airspace consolidation and no "
          "pulmonary edema.", {"consolidation", "pulmonary edema"}),
        S("No pleural effusion has developed since the prior study.", {"pleural effusion"}),
        S("In the setting of recent CPR, no rib fractures are appreciated.", {"fracture"}),
        S("The mediastinum, evaluated with caution on this portable AP film, does not appear widened.",
          {"widened mediastinum"}),
        S("Support devices are appropriately positioned, with no evidence of malposition.", {"malpositioned tube"}),
        S("Following the uncomplicated placement of the right internal jugular line, which terminates in the SVC, "
          "there is no pneumothorax.", {"pneumothorax", "malpositioned tube"}),
    ],
    "I": [
        S("Pleura: No pleural effusion; no pneumothorax, including at the apices.", PLEURA),
        S("Lungs: No consolidation, collapse, or pulmonary edema.", {"consolidation", "collapse", "pulmonary edema"}),
        S("Bones: No rib, clavicle, or vertebral fracture identified.", {"fracture"}),
        S("Upper abdomen: No pneumoperitoneum.", {"free air"}),
        S("Heart/Mediastinum: Heart not enlarged; mediastinum not widened.", {"cardiomegaly", "widened mediastinum"}),
        S("Pleura: After removal of the left chest drain, no residual or recurrent pneumothorax.", {"pneumothorax"}),
        S("Lungs: Although inspiration is shallow and the bases are crowded, no consolidation or edema.",
          {"consolidation", "pulmonary edema"}),
    ],
}


def P(writer: str, text: str, side: str | None = "lr", solo: bool = False, note: str | None = None) -> dict:
    """A phrasing of one finding: ``side`` "lr" (filled left or right), a fixed side, or None; ``solo`` keeps
    it out of multi-finding texts (a tension pneumothorax would contradict a second finding's context)."""
    return {"writer": writer, "text": text, "side": side, "solo": solo, "note": note}


# Critical phrasings: every finding type in ~8 phrasings over the writers.
PHRASINGS: dict[str, list[dict]] = {
    "pneumothorax": [
        P("G", "{Side} pneumothorax, {size}."),
        P("H", "There is a {size} {side}-sided pneumothorax, with a visible visceral pleural line and absent lung "
               "markings peripheral to it."),
        P("I", "Pleura: {Side} apical pneumothorax measuring approximately 2.5 cm."),
        P("J", "A {size} {side} pneumothorax is present, the lung edge lying 3 cm from the chest wall."),
        P("K", "{S} PTX, {size}, no mediastinal shift."),
        P("L", "Interval development of a {size} {side} pneumothorax."),
        P("H", "A deep sulcus sign on the {side} is consistent with a pneumothorax on this supine study.", solo=True),
        P("J", "Tension pneumothorax on the {side}: the mediastinum is displaced to the {opp} and the {side} "
               "hemidiaphragm is flattened.", solo=True),
    ],
    "pleural effusion": [
        P("G", "{Size} {side} effusion."),
        P("H", "A {size} {side} pleural effusion is present, obscuring the {side} hemidiaphragm and tracking along "
               "the lateral chest wall."),
        P("I", "Pleura: {Size} {side} pleural effusion with a meniscus."),
        P("J", "Blunting of the {side} costophrenic angle in keeping with a {size} pleural effusion."),
        P("K", "{S} pleural effusion, {size}."),
        P("L", "{Size} {side} pleural effusion, new compared with the prior examination."),
        P("G", "{Size} bilateral pleural effusions.", side="bilateral"),
        P("J", "A {size} right pleural effusion is seen, with fluid tracking into the horizontal fissure.",
          side="right"),
    ],
    "consolidation": [
        P("G", "{Side} lower lobe consolidation."),
        P("H", "There is dense airspace consolidation within the {side} lower lobe, with air bronchograms, "
               "compatible with pneumonia."),
        P("I", "Lungs: Lobar consolidation of the {side} upper lobe."),
        P("J", "Consolidation in the {side} mid zone, in keeping with infection."),
        P("K", "{S}LL consolidation c/w PNA."),
        P("L", "New {side} basilar airspace consolidation."),
        P("H", "There is consolidation in the right middle lobe, silhouetting the right heart border.",
          side="right"),
        P("J", "Patchy consolidation in the lingula, obscuring the left heart border.", side="left"),
    ],
    "pulmonary edema": [
        P("G", "Interstitial pulmonary edema.", side=None),
        P("H", "There is diffuse bilateral interstitial and airspace opacification in a perihilar distribution with "
               "peribronchial cuffing, consistent with pulmonary edema.", side=None),
        P("I", "Lungs: Moderate pulmonary edema with septal lines.", side=None),
        P("J", "Bilateral alveolar oedema with upper lobe blood diversion.", side=None),
        P("K", "Vascular congestion + mild interstitial edema.", side=None),
        P("L", "Worsening pulmonary edema compared with yesterday.", side=None),
        P("J", "Appearances are those of interstitial pulmonary oedema, with septal lines at both bases.",
          side=None),
        P("H", "Pulmonary vascular indistinctness and perihilar haziness reflect mild pulmonary edema.", side=None),
    ],
    "cardiomegaly": [
        P("G", "Heart enlarged.", side=None),
        P("H", "The cardiac silhouette is moderately enlarged, with a cardiothoracic ratio of approximately 0.6.",
          side=None),
        P("I", "Heart/Mediastinum: Marked cardiac enlargement.", side=None),
        P("J", "There is cardiomegaly, the cardiothoracic ratio measuring 0.62.", side=None),
        P("K", "Cardiomegaly, CTR ~0.6.", side=None),
        P("L", "Enlargement of the cardiac silhouette on this portable film, beyond what the AP projection would "
               "explain.", side=None),
        P("H", "The heart is enlarged, predominantly in a left ventricular configuration.", side=None),
        P("G", "Marked cardiomegaly.", side=None),
    ],
    "lung mass": [
        P("G", "{Side} upper lobe mass, 5 cm."),
        P("H", "A lobulated soft tissue mass measuring 4.2 x 3.8 cm is present in the {side} upper lobe, highly "
               "suspicious for primary bronchogenic carcinoma."),
        P("I", "Lungs: 3 cm spiculated mass in the {side} lower lobe."),
        P("J", "There is a large {side} hilar mass, suspicious for malignancy."),
        P("K", "{S}UL mass, 6 cm."),
        P("L", "A new 4 cm mass at the {side} lung base, not present on the study of two months ago."),
        P("J", "A cavitating mass is present in the {side} upper zone, measuring 5 cm, with a thick irregular wall."),
        P("G", "{Side} apical mass, 6 cm."),
    ],
    "fracture": [
        P("G", "Acute {side} 7th rib fracture."),
        P("H", "There are acute, minimally displaced fractures of the {side} fourth through sixth ribs laterally."),
        P("I", "Bones: Mid-shaft {side} clavicular fracture with overriding fragments."),
        P("J", "Fracture of the {side} scapular body is noted."),
        P("K", "Acute {S} posterior 8th rib fx."),
        P("L", "Acute compression fracture of a mid-thoracic vertebral body, new since the prior study.", side=None),
        P("H", "An acute transverse fracture of the proximal {side} humerus is partially imaged."),
        P("J", "Multiple {side}-sided rib fractures (ribs 3 to 6), some segmental, in keeping with a flail segment.",
          solo=True),
    ],
    "free air": [
        P("G", "Large pneumoperitoneum.", side=None),
        P("H", "A crescentic lucency is seen beneath the {side} hemidiaphragm, consistent with free intraperitoneal "
               "air; a perforated viscus should be considered."),
        P("I", "Upper abdomen: Free air beneath both hemidiaphragms.", side="bilateral"),
        P("J", "Free gas is present under the {side} hemidiaphragm, in keeping with pneumoperitoneum."),
        P("K", "Pneumoperitoneum, free air under {S} hemidiaphragm."),
        P("L", "Interval development of free air beneath the {side} hemidiaphragm."),
        P("H", "Rigler's sign (gas outlining both sides of the bowel wall) is present, indicating a large "
               "pneumoperitoneum.", side=None),
        P("I", "Upper abdomen: Crescent of free gas under the {side} hemidiaphragm."),
    ],
    "collapse": [
        P("G", "{Side} lower lobe collapse."),
        P("H", "There is complete collapse of the {side} upper lobe, with elevation of the ipsilateral hilum and "
               "tracheal deviation toward the {side}."),
        P("I", "Lungs: Left lower lobe collapse with a triangular retrocardiac opacity.", side="left"),
        P("J", "Complete collapse of the {side} lung, with the mediastinum shifted towards the {side}.", solo=True),
        P("K", "{S}UL collapse."),
        P("L", "New {side} lower lobe collapse, likely from mucus plugging."),
        P("H", "Volume loss with collapse of the right middle lobe and inferior displacement of the horizontal "
               "fissure.", side="right"),
        P("J", "Left upper lobe collapse, with the characteristic veil-like opacity over the left hemithorax.",
          side="left"),
    ],
    "malpositioned tube": [
        P("G", "Endotracheal tube in the right main bronchus.", side="right"),
        P("H", "The endotracheal tube has been advanced such that its tip now lies within the proximal left "
               "mainstem bronchus; withdrawal by approximately 3 cm is recommended.", side="left"),
        P("I", "Lines/Tubes: Enteric tube coiled in the proximal esophagus, tip not in the stomach.", side=None),
        P("J", "The nasogastric tube is in the right main bronchus, its tip projected over the right lower zone; it "
               "should be removed.", side="right"),
        P("K", "ETT tip in R mainstem, recommend pulling back 2 cm.", side="right"),
        P("L", "A feeding tube has been placed in the interval and courses into the {side} lower lobe bronchus."),
        P("K", "NGT tip in distal esophagus, advance ~10 cm.", side=None),
        P("H", "The left-sided peripherally inserted central catheter courses cephalad into the left internal "
               "jugular vein.", side="left", note="a line turned into the jugular vein counts as a malpositioned tube"),
    ],
    "widened mediastinum": [
        P("G", "Wide mediastinum.", side=None),
        P("H", "The superior mediastinum is widened, measuring approximately 10 cm at the level of the aortic knob, "
               "with loss of the aortopulmonary window; in this trauma setting, aortic injury must be excluded.",
          side=None),
        P("I", "Heart/Mediastinum: Widened mediastinum with an indistinct aortic knob.", side=None),
        P("J", "There is widening of the upper mediastinum, which measures 9.5 cm.", side=None),
        P("K", "Widened mediastinum, ~9 cm at the arch.", side=None),
        P("L", "Increased width of the mediastinum compared with the admission radiograph.", side=None),
        P("H", "The mediastinal silhouette is abnormally widened, with rightward deviation of the trachea.",
          side=None),
        P("G", "Widened superior mediastinum.", side=None),
    ],
    "hiatal hernia": [
        P("G", "Large hiatal hernia.", side=None),
        P("H", "A large retrocardiac soft tissue density containing an air-fluid level is consistent with a hiatal "
               "hernia.", side=None),
        P("I", "Heart/Mediastinum: Moderate hiatal hernia behind the heart.", side=None),
        P("J", "Large hiatus hernia with an air-fluid level projected behind the heart.", side=None),
        P("K", "Hiatal hernia, large.", side=None),
        P("L", "Moderate hiatal hernia projecting over the cardiac silhouette.", side=None),
    ],
    "nodule": [
        P("G", "{Side} upper lobe nodule, 1.2 cm."),
        P("H", "A 1.5 cm noncalcified pulmonary nodule is present in the {side} mid lung zone; CT correlation is "
               "recommended."),
        P("I", "Lungs: 8 mm nodule in the {side} lower lobe."),
        P("J", "A solitary 14 mm nodule is seen in the {side} upper zone."),
        P("K", "{S}LL nodule 1 cm, recommend CT."),
        P("L", "New 1.1 cm nodular opacity in the {side} lower lung, not seen previously."),
    ],
}

# Multi-finding texts: (writer, [(finding, side code)]) with each finding in the writer's own phrasing; side
# code "S" = the case's side, "O" = the other side, None = as the phrasing has it. Pairs a clinician meets.
MULTI_PHRASED: list[tuple[str, list[tuple[str, str | None]]]] = [
    ("G", [("pneumothorax", "S"), ("fracture", "S")]),
    ("H", [("pleural effusion", "S"), ("cardiomegaly", None)]),
    ("I", [("pulmonary edema", None), ("cardiomegaly", None)]),
    ("J", [("pleural effusion", "S"), ("consolidation", "O")]),
    ("K", [("lung mass", "S"), ("pleural effusion", "S")]),
    ("L", [("widened mediastinum", None), ("fracture", None)]),
    ("G", [("free air", None), ("pleural effusion", "S")]),
    ("H", [("malpositioned tube", None), ("pneumothorax", "S")]),
    ("I", [("malpositioned tube", None), ("consolidation", "S")]),
    ("J", [("collapse", None), ("pleural effusion", "S")]),
    ("K", [("cardiomegaly", None), ("hiatal hernia", None)]),
    ("L", [("nodule", "S"), ("fracture", None)]),
    ("G", [("pulmonary edema", None), ("pleural effusion", None)]),
    ("H", [("widened mediastinum", None), ("pleural effusion", "S")]),
    ("I", [("pneumothorax", "S"), ("consolidation", "O")]),
    ("J", [("consolidation", None), ("cardiomegaly", None)]),
    ("K", [("free air", "S"), ("cardiomegaly", None)]),
    ("L", [("malpositioned tube", None), ("pulmonary edema", None)]),
    ("G", [("hiatal hernia", None), ("consolidation", "S")]),
    ("H", [("nodule", "S"), ("cardiomegaly", None)]),
    ("L", [("fracture", None), ("pleural effusion", "S")]),
    # three
    ("G", [("cardiomegaly", None), ("pulmonary edema", None), ("pleural effusion", "bilateral")]),
    ("H", [("pneumothorax", "S"), ("fracture", "S"), ("widened mediastinum", None)]),
    ("I", [("pneumothorax", "S"), ("fracture", "S"), ("pleural effusion", "S")]),
    ("J", [("lung mass", "S"), ("pleural effusion", "S"), ("consolidation", "O")]),
    ("K", [("consolidation", "S"), ("pleural effusion", "S"), ("malpositioned tube", None)]),
    ("L", [("free air", "S"), ("pleural effusion", "O"), ("consolidation", "O")]),
    ("G", [("cardiomegaly", None), ("hiatal hernia", None), ("nodule", "S")]),
    ("H", [("widened mediastinum", None), ("fracture", "S"), ("free air", None)]),
    ("I", [("pulmonary edema", None), ("malpositioned tube", None), ("cardiomegaly", None)]),
    ("J", [("nodule", "S"), ("consolidation", "O"), ("pleural effusion", "O")]),
    ("K", [("lung mass", "S"), ("fracture", "S"), ("pleural effusion", "S")]),
    ("L", [("pneumothorax", "S"), ("consolidation", "O"), ("malpositioned tube", None)]),
]


def C(writer: str, says: list[str], expect: list[tuple[str, str, str | None]], note: str | None = None) -> dict:
    """A hand-written case: ``says`` its stated sentences (templates), ``expect`` (finding, status, side code)
    with "S"/"O" for the case's side / the other side."""
    return {"writer": writer, "says": says, "expect": expect, "note": note}


PRES, UNC, ABS = "present", "uncertain", "absent"
# Several findings in one sentence or one clause: a reader must take each apart.
MULTI_WRITTEN: list[dict] = [
    C("G", ["{Size} {side} effusion with underlying {side} lower lobe collapse."],
      [("pleural effusion", PRES, "S"), ("collapse", PRES, "S")]),
    C("H", ["There is a moderate {side} hydropneumothorax with an air-fluid level."],
      [("pneumothorax", PRES, "S"), ("pleural effusion", PRES, "S")],
      "a hydropneumothorax is a pneumothorax and a pleural effusion"),
    C("J", ["Cardiomegaly, interstitial oedema and small bilateral effusions, in keeping with cardiac failure."],
      [("cardiomegaly", PRES, None), ("pulmonary edema", PRES, None), ("pleural effusion", PRES, "bilateral")]),
    C("K", ["{S} PTX + {S} rib fx 4-6."], [("pneumothorax", PRES, "S"), ("fracture", PRES, "S")]),
    C("L", ["{Side} lower lobe consolidation and a small {side} effusion, both new."],
      [("consolidation", PRES, "S"), ("pleural effusion", PRES, "S")]),
    C("I", ["Pleura: Small {side} effusion and small {side} apical pneumothorax."],
      [("pleural effusion", PRES, "S"), ("pneumothorax", PRES, "S")]),
    C("H", ["A {side} hilar mass with post-obstructive collapse of the {side} upper lobe."],
      [("lung mass", PRES, "S"), ("collapse", PRES, "S")]),
    C("G", ["Wide mediastinum, {side} apical cap, {side} 1st rib fracture."],
      [("widened mediastinum", PRES, None), ("fracture", PRES, "S")]),
    C("J", ["Large {side} pleural effusion, likely a haemothorax given the displaced {side} rib fractures."],
      [("pleural effusion", PRES, "S"), ("fracture", PRES, "S")], "a haemothorax is a pleural effusion"),
    C("K", ["ETT in R mainstem w/ complete LUL and LLL collapse."],
      [("malpositioned tube", PRES, "right"), ("collapse", PRES, "left")]),
    C("L", ["Enlarged cardiac silhouette, new bilateral pleural effusions, and a new {side} lower lobe collapse."],
      [("cardiomegaly", PRES, None), ("pleural effusion", PRES, "bilateral"), ("collapse", PRES, "S")]),
    C("H", ["A large right upper lobe mass with an associated right pleural effusion and a widened right "
            "paratracheal stripe consistent with mediastinal widening."],
      [("lung mass", PRES, "right"), ("pleural effusion", PRES, "right"), ("widened mediastinum", PRES, None)]),
]

HEDGED: list[dict] = [
    C("G", ["Cannot exclude a small {side} effusion."], [("pleural effusion", UNC, "S")]),
    C("H", ["Patchy opacity at the {side} base may represent early pneumonia in the appropriate clinical setting."],
      [("consolidation", UNC, "S")]),
    C("I", ["Pleura: Questionable tiny {side} apical pneumothorax."], [("pneumothorax", UNC, "S")]),
    C("J", ["Hazy opacification at the {side} base may represent atelectasis or consolidation."],
      [("consolidation", UNC, "S"), ("collapse", UNC, "S")], "atelectasis is read as collapse"),
    C("K", ["Subtle {S}LL opacity, ?early PNA."], [("consolidation", UNC, "S")]),
    C("L", ["Possible small {side} pleural effusion versus pleural thickening."], [("pleural effusion", UNC, "S")]),
    C("G", ["Possible mild interstitial edema."], [("pulmonary edema", UNC, None)]),
    C("H", ["The cardiac silhouette may be mildly enlarged, although the AP projection limits assessment."],
      [("cardiomegaly", UNC, None)]),
    C("I", ["Bones: Possible nondisplaced fracture of the {side} 6th rib; dedicated rib views could help."],
      [("fracture", UNC, "S")]),
    C("J", ["A subtle lucency beneath the {side} hemidiaphragm raises the possibility of free gas; an erect film is "
            "suggested."], [("free air", UNC, "S")]),
    C("K", ["Mediastinum ?widened on this supine film; CT if clinical concern."], [("widened mediastinum", UNC, None)]),
    C("L", ["Ill-defined opacity in the {side} upper lobe, possibly a mass; CT is recommended."],
      [("lung mass", UNC, "S")]),
    C("G", ["Probable {side} lower lobe collapse."], [("collapse", UNC, "S")], "probable counts as uncertain"),
    C("H", ["A 9 mm nodular density projecting over the {side} lower lung zone may represent a nipple shadow; a true "
            "pulmonary nodule cannot be excluded, and repeat imaging with nipple markers is advised."],
      [("nodule", UNC, "S")]),
    C("I", ["Heart/Mediastinum: Retrocardiac density, possibly a small hiatal hernia."],
      [("hiatal hernia", UNC, None)]),
    C("J", ["The nasogastric tube tip is not clearly seen below the diaphragm and may lie in the distal oesophagus."],
      [("malpositioned tube", UNC, None)]),
    C("K", ["Possible small {S} PTX vs skin fold."], [("pneumothorax", UNC, "S")]),
    C("L", ["Slight increase in interstitial markings, suspicious for early interstitial edema."],
      [("pulmonary edema", UNC, None)]),
    C("G", ["Equivocal {side} basilar consolidation."], [("consolidation", UNC, "S")]),
    C("H", ["Blunting of the {side} costophrenic angle could reflect a small effusion or chronic pleural thickening."],
      [("pleural effusion", UNC, "S")]),
    C("J", ["Possible consolidation in the {side} lower zone, although overlying soft tissue limits assessment."],
      [("consolidation", UNC, "S")]),
    C("I", ["Lungs: Questionable 6 mm nodule in the {side} upper lobe."], [("nodule", UNC, "S")]),
    C("K", ["Questionable {S} clavicle fx, correlate clinically."], [("fracture", UNC, "S")]),
    C("L", ["There may be a small amount of free air under the {side} hemidiaphragm; a decubitus view is "
            "recommended."], [("free air", UNC, "S")]),
    # A stated finding beside a hedged one: name the first, keep the second hedged.
    C("G", ["{Size} {side} effusion. Underlying {side} lower lobe consolidation not excluded."],
      [("pleural effusion", PRES, "S"), ("consolidation", UNC, "S")]),
    C("H", ["Moderate enlargement of the cardiac silhouette is present.",
            "There is mild perihilar haziness which may reflect early pulmonary edema."],
      [("cardiomegaly", PRES, None), ("pulmonary edema", UNC, None)]),
    C("I", ["Bones: Acute fracture of the {side} 5th rib.", "Pleura: Possible tiny {side} apical pneumothorax."],
      [("fracture", PRES, "S"), ("pneumothorax", UNC, "S")]),
    C("J", ["There is a {side} hilar mass.", "The {side} upper lobe may be partially collapsed."],
      [("lung mass", PRES, "S"), ("collapse", UNC, "S")]),
    C("K", ["NGT coiled in esophagus.", "?{S}LL consolidation."],
      [("malpositioned tube", PRES, None), ("consolidation", UNC, "S")]),
    C("L", ["Endotracheal tube terminates 4 cm above the carina.", "Possible new small {side} pleural effusion."],
      [("malpositioned tube", ABS, None), ("pleural effusion", UNC, "S")]),
]

RESOLVED: list[dict] = [
    C("G", ["Previously seen {side} pneumothorax no longer visible."], [("pneumothorax", ABS, "S")]),
    C("H", ["The {side} pleural effusion described on the prior examination has resolved in the interval."],
      [("pleural effusion", ABS, "S")]),
    C("I", ["Pleura: Interval resolution of the {side} pneumothorax following chest tube removal."],
      [("pneumothorax", ABS, "S")]),
    C("J", ["The {side} lower zone consolidation seen on the previous film has cleared."],
      [("consolidation", ABS, "S")]),
    C("K", ["Prior {S} PTX resolved."], [("pneumothorax", ABS, "S")]),
    C("L", ["Pulmonary edema has resolved since yesterday."], [("pulmonary edema", ABS, None)]),
    C("G", ["{Side} lower lobe re-expanded."], [("collapse", ABS, "S")]),
    C("H", ["The previously noted free intraperitoneal air is no longer identified."], [("free air", ABS, None)]),
    C("I", ["Lines/Tubes: The endotracheal tube previously in the right mainstem bronchus has been withdrawn and now "
            "terminates 5 cm above the carina."], [("malpositioned tube", ABS, "right")]),
    C("J", ["Resolution of the previously demonstrated {side} pleural effusion."], [("pleural effusion", ABS, "S")]),
    C("K", ["{S}LL collapse resolved."], [("collapse", ABS, "S")]),
    C("L", ["Interval clearing of the {side} basilar airspace disease."], [("consolidation", ABS, "S")]),
    C("G", ["Interstitial edema cleared."], [("pulmonary edema", ABS, None)]),
    C("H", ["The previously seen {side} upper lobe consolidation has completely resolved, with no residual "
            "opacity."], [("consolidation", ABS, "S")]),
    C("J", ["The {side} pneumothorax has resolved, and the chest drain has been removed."],
      [("pneumothorax", ABS, "S")]),
    # One finding gone, another still there.
    C("G", ["{Side} effusion resolved.", "Persistent {opp} lower lobe consolidation."],
      [("pleural effusion", ABS, "S"), ("consolidation", PRES, "O")]),
    C("H", ["The {side} pneumothorax has resolved.", "A small {opp} pleural effusion persists."],
      [("pneumothorax", ABS, "S"), ("pleural effusion", PRES, "O")]),
    C("I", ["Lungs: {Side} lower lobe consolidation has resolved.", "Pleura: Small {side} pleural effusion, "
            "unchanged."], [("consolidation", ABS, "S"), ("pleural effusion", PRES, "S")]),
    C("J", ["The pulmonary oedema has cleared, but the heart remains enlarged."],
      [("pulmonary edema", ABS, None), ("cardiomegaly", PRES, None)]),
    C("K", ["Prior {S}UL collapse resolved.", "New {O} pleural effusion, small."],
      [("collapse", ABS, "S"), ("pleural effusion", PRES, "O")]),
    C("L", ["The {side} pleural effusion is no longer visible.", "There is a new {opp} lower lobe consolidation."],
      [("pleural effusion", ABS, "S"), ("consolidation", PRES, "O")]),
    C("G", ["Free air no longer seen.", "Small {side} effusion."],
      [("free air", ABS, None), ("pleural effusion", PRES, "S")]),
    C("H", ["The previously malpositioned nasogastric tube has been replaced and now terminates in the stomach.",
            "There is a new moderate {side} pleural effusion."],
      [("malpositioned tube", ABS, None), ("pleural effusion", PRES, "S")]),
    C("J", ["The {side} pneumothorax is no longer visible following drain insertion; the {side}-sided rib fractures "
            "are again seen."], [("pneumothorax", ABS, "S"), ("fracture", PRES, "S")]),
    C("L", ["Previously noted pulmonary edema has resolved.", "Mild cardiomegaly persists."],
      [("pulmonary edema", ABS, None), ("cardiomegaly", PRES, None)]),
]

COMPARISON: list[dict] = [
    C("G", ["Unchanged moderate cardiomegaly."], [("cardiomegaly", PRES, None)]),
    C("H", ["The small {side} pleural effusion is stable in size compared with the prior radiograph."],
      [("pleural effusion", PRES, "S")]),
    C("I", ["Pleura: Increased {side} pleural effusion, now moderate."], [("pleural effusion", PRES, "S")]),
    C("J", ["The {side} pneumothorax is smaller than on the previous film but persists, with a 1 cm apical rim."],
      [("pneumothorax", PRES, "S")]),
    C("K", ["Decreased but persistent {S} PTX."], [("pneumothorax", PRES, "S")]),
    C("L", ["Persistent {side} lower lobe consolidation, slightly improved."], [("consolidation", PRES, "S")]),
    C("G", ["{Side} upper lobe mass again seen, unchanged."], [("lung mass", PRES, "S")]),
    C("H", ["There is no significant change in the appearance of the widened superior mediastinum."],
      [("widened mediastinum", PRES, None)]),
    C("I", ["Lungs: Pulmonary edema has worsened since the prior study."], [("pulmonary edema", PRES, None)]),
    C("J", ["Stable appearance of the large hiatus hernia."], [("hiatal hernia", PRES, None)]),
    C("K", ["Stable {S}UL nodule, 9 mm."], [("nodule", PRES, "S")]),
    C("L", ["{Side} rib fractures again seen, without change in alignment."], [("fracture", PRES, "S")]),
    C("G", ["Stable {side} lower lobe collapse."], [("collapse", PRES, "S")]),
    C("H", ["Free intraperitoneal air persists beneath the {side} hemidiaphragm, decreased in volume since the prior "
            "study."], [("free air", PRES, "S")]),
    C("I", ["Lines/Tubes: Enteric tube remains coiled in the esophagus, unchanged."],
      [("malpositioned tube", PRES, None)]),
    C("J", ["Cardiac enlargement is unchanged from the earlier film."], [("cardiomegaly", PRES, None)]),
    C("K", ["{S} effusion increased, now large."], [("pleural effusion", PRES, "S")]),
    C("L", ["No interval change in the mild pulmonary edema."], [("pulmonary edema", PRES, None)]),
    C("G", ["{Side} pneumothorax slightly larger."], [("pneumothorax", PRES, "S")]),
    C("H", ["The consolidation in the {side} lower lobe has progressed and now occupies most of the lobe."],
      [("consolidation", PRES, "S")]),
    C("J", ["Persisting collapse of the {side} lower lobe, little changed."], [("collapse", PRES, "S")]),
    C("K", ["ETT unchanged, tip still in R mainstem."], [("malpositioned tube", PRES, "right")]),
    C("L", ["Mediastinal widening is stable compared with the CT of yesterday."],
      [("widened mediastinum", PRES, None)]),
    C("I", ["Heart/Mediastinum: Stable mild cardiomegaly."], [("cardiomegaly", PRES, None)]),
    C("H", ["The {side} pleural effusion has decreased in size, but a small effusion persists."],
      [("pleural effusion", PRES, "S")]),
]

DEVICE: list[dict] = [
    # Placed where they belong: nothing malpositioned.
    C("G", ["Endotracheal tube tip 5 cm above the carina."], [("malpositioned tube", ABS, None)]),
    C("H", ["The endotracheal tube terminates approximately 4 cm above the carina, in satisfactory position.",
            "The nasogastric tube courses below the diaphragm with its tip in the gastric fundus."],
      [("malpositioned tube", ABS, None)]),
    C("I", ["Lines/Tubes: Right internal jugular central venous catheter with tip at the cavoatrial junction; "
            "enteric tube tip in the stomach."], [("malpositioned tube", ABS, None)]),
    C("J", ["The nasogastric tube is satisfactorily positioned, its tip lying in the stomach.",
            "Right subclavian line tip in the SVC."], [("malpositioned tube", ABS, None)]),
    C("K", ["ETT 4.5 cm above carina. OGT in stomach. R IJ CVC tip in SVC."], [("malpositioned tube", ABS, None)]),
    C("L", ["Endotracheal and enteric tubes in unchanged, appropriate position."], [("malpositioned tube", ABS, None)]),
    C("G", ["Left PICC, tip in lower SVC."], [("malpositioned tube", ABS, None)]),
    C("H", ["A dual-chamber pacemaker is present with leads in the right atrium and right ventricle."],
      [("malpositioned tube", ABS, None)], "pacemaker leads in the right atrium and ventricle are where they belong"),
    C("J", ["Left-sided chest drain in situ, its tip at the apex. No residual pneumothorax."],
      [("malpositioned tube", ABS, None), ("pneumothorax", ABS, "left")]),
    C("K", ["R chest tube in place.", "Small residual R apical PTX."],
      [("malpositioned tube", ABS, None), ("pneumothorax", PRES, "right")]),
    C("L", ["Endotracheal tube tip 3 cm above the carina.", "Nasogastric tube in the stomach.",
            "New {side} lower lobe consolidation."],
      [("malpositioned tube", ABS, None), ("consolidation", PRES, "S")]),
    C("I", ["Lines/Tubes: Endotracheal tube 4 cm above the carina; feeding tube tip in the duodenum.",
            "Pleura: Moderate {side} pleural effusion, free-flowing."],
      [("malpositioned tube", ABS, None), ("pleural effusion", PRES, "S")]),
    # Malpositioned.
    C("G", ["Endotracheal tube tip at the carina; recommend withdrawing 2-3 cm."],
      [("malpositioned tube", PRES, None)]),
    C("H", ["The endotracheal tube tip is positioned within the right mainstem bronchus. Retraction by 3 cm is "
            "advised."], [("malpositioned tube", PRES, "right")]),
    C("I", ["Lines/Tubes: Enteric tube tip in the distal esophagus, side hole above the GE junction; recommend "
            "advancing 10 cm."], [("malpositioned tube", PRES, None)]),
    C("J", ["The nasogastric tube has passed into the left main bronchus, its tip lying in the left lower lobe. "
            "Immediate removal is advised."], [("malpositioned tube", PRES, "left")]),
    C("K", ["Feeding tube tip in RLL bronchus, remove."], [("malpositioned tube", PRES, "right")]),
    C("L", ["Interval placement of an endotracheal tube, tip in the proximal left mainstem bronchus."],
      [("malpositioned tube", PRES, "left")]),
    C("G", ["Endotracheal tube high, tip at the level of the clavicles, 8 cm above the carina; advance."],
      [("malpositioned tube", PRES, None)]),
    C("H", ["The right subclavian central venous catheter courses cephalad into the right internal jugular vein."],
      [("malpositioned tube", PRES, "right")], "a line turned into the jugular vein counts as a malpositioned tube"),
    C("J", ["The endotracheal tube lies in the oesophagus, its tip projected to the left of the trachea, with "
            "gaseous distension of the stomach."], [("malpositioned tube", PRES, None)]),
    C("K", ["OGT coiled in proximal esophagus, needs repositioning."], [("malpositioned tube", PRES, None)]),
    C("L", ["The feeding tube traverses the right main bronchus and terminates in the right lower lobe.",
            "A new small right pneumothorax is present."],
      [("malpositioned tube", PRES, "right"), ("pneumothorax", PRES, "right")]),
    C("I", ["Lines/Tubes: Endotracheal tube terminates in the bronchus intermedius."],
      [("malpositioned tube", PRES, None)], "the bronchus intermedius is right-sided, but the text names no side"),
    C("G", ["Left chest tube side hole outside the rib cage, in the soft tissues."],
      [("malpositioned tube", PRES, "left")], "a chest drain's side hole outside the pleural space is malpositioned"),
]
# fmt: on


def _fill(template: str, side: str, size: str) -> str:
    """Fill sides and sizes; a sentence starts with a capital."""
    opp = {"left": "right", "right": "left"}[side]
    text = template.format(
        side=side, Side=side.capitalize(), opp=opp, Opp=opp.capitalize(), S=side[0].upper(), O=opp[0].upper(),
        size=size, Size=size.capitalize(),
    )  # fmt: skip
    return text[0].upper() + text[1:]


def _order(items: list, first: int | None, rng: random.Random) -> list:
    """``items`` from ``first`` on, round the end; a drawn order when ``first`` is None."""
    if first is None:
        return rng.sample(items, len(items))
    return items[first:] + items[:first]


def _fits(p: dict, want: str | None) -> bool:
    """Whether a phrasing can state its finding on ``want`` (None: any side, as the phrasing has it)."""
    if want in ("left", "right"):
        return p["side"] in ("lr", want)
    return want is None or p["side"] == want


def _heading(sentence: str) -> str | None:
    m = re.match(r"(" + "|".join(re.escape(h) for h in HEADINGS) + r"): ", sentence)
    return m.group(1) if m else None


class Builder:
    """Lays out the cases, seeded: sides balanced per kind and finding, context drawn from the writer's style."""

    def __init__(self) -> None:
        self.rng = random.Random(SEED)
        self.cases: list[dict] = []
        self.sides: Counter = Counter()

    def side(self, kind: str, key: str) -> str:
        """The side with fewer cases so far for this kind and finding (ties by coin): left/right balanced."""
        left, right = self.sides[(kind, key, "left")], self.sides[(kind, key, "right")]
        side = "left" if left < right else "right" if right < left else self.rng.choice(("left", "right"))
        self.sides[(kind, key, side)] += 1
        return side

    def context(
        self, writer: str, avoid: set[str], keep: int, negations: int = 0, first: int | None = None
    ) -> list[tuple]:
        """``negations`` explicit negations and ``keep`` normal sentences of the writer that speak of nothing in
        ``avoid``; no two chosen sentences rule out the same finding (no "No pneumothorax." twice over). The
        negations are tried from ``first`` on (each once over a writer's negation cases), else in a drawn order."""

        def free(s: tuple, taken: set[str]) -> bool:
            return not (s[1] | s[2]) & avoid and not s[1] & taken

        chosen: list[tuple] = []
        taken: set[str] = set()
        negs = _order(NEGATIONS[writer], first, self.rng)
        for s in negs:
            if len(chosen) < negations and free(s, taken):
                chosen.append(s)
                taken |= s[1]
        pool = [s for s in NORMALS[writer] if free(s, taken)]
        return chosen + self.rng.sample(pool, min(keep, len(pool)))

    def text_i(
        self, stated: list[str], avoid: set[str], negations: int, first: int | None = None
    ) -> tuple[str, list[tuple]]:
        """Writer I: every heading once, in order; stated sentences under theirs, else a negation or a normal."""
        by_heading: dict[str, list[str]] = {}
        for sentence in stated:
            h = _heading(sentence)
            if h is None:
                raise ValueError(f"writer I sentence without a heading: {sentence!r}")
            rest = sentence[len(h) + 2 :]
            by_heading.setdefault(h, []).append(rest)
        neg_of: dict[str, tuple] = {}  # at most one negation a heading
        for s in _order(NEGATIONS["I"], first, self.rng):
            h = _heading(s[0])
            if len(neg_of) < negations and not (s[1] | s[2]) & avoid and h not in by_heading and h not in neg_of:
                neg_of[h] = s
        parts, context = [], []
        for h in HEADINGS:
            if h in by_heading:
                parts.append(f"{h}: " + " ".join(x[0].upper() + x[1:] for x in by_heading[h]))
                continue
            if h in ("Technique", "Upper abdomen") and h not in neg_of and self.rng.random() < 0.5:
                continue  # not every report names its technique, or images or mentions the upper abdomen
            pick = neg_of.get(h) or self.rng.choice([s for s in I_NORMALS[h] if not (s[1] | s[2]) & avoid] or [None])
            if pick is not None:
                parts.append(pick[0])
                context.append(pick)
        return " ".join(parts), context

    def add(
        self,
        kind: str,
        writer: str,
        stated: list[str],
        expect: list[dict],
        note: str | None = None,
        keep: tuple[int, int] = (1, 4),
        negations: int | None = None,
        first: int | None = None,
    ) -> None:
        """One case: the stated sentences among the writer's context, in an order drawn by the seed."""
        about = {e["finding"] for e in expect}
        if negations is None:  # a negation in some of the texts, as real reports have
            negations = 1 if self.rng.random() < 0.35 else 0
        if writer == "I":
            text, context = self.text_i(stated, about, negations, first)
        else:
            context = self.context(writer, about, self.rng.randint(*keep), negations, first)
            self.rng.shuffle(context)
            # The stated sentences keep their order, each at a drawn place among the context.
            slots = sorted(self.rng.randint(0, len(context)) for _ in stated)
            parts = [c[0] for c in context]
            for n, (slot, sentence) in enumerate(zip(slots, stated, strict=True)):
                parts.insert(slot + n, sentence)
            text = " ".join(parts)
        out = sorted(set().union(*(c[1] for c in context)) - about, key=FINDINGS.index) if context else []
        expect = expect + [{"finding": f, "status": ABS, "side": None} for f in out]
        case = {
            "id": f"{EDITION}-{kind}-{sum(c['kind'] == kind for c in self.cases) + 1:03d}",
            "edition": EDITION,
            "kind": kind,
            "writer": writer,
            "findings": text,
            "expect": expect,
            "origin": "written",
        }
        if note:
            case["note"] = note
        self.cases.append(case)

    def size(self) -> str:
        return self.rng.choice(SIZES)

    def written(self, kind: str, spec: dict) -> None:
        """A hand-written case (hedged, resolved, comparison, device, multi)."""
        lateral = [f for f, _, code in spec["expect"] if code in ("S", "O")]
        side = self.side(kind, lateral[0] if lateral else "-")
        size = self.size()
        stated = [_fill(t, side, size) for t in spec["says"]]
        codes = {"S": side, "O": {"left": "right", "right": "left"}[side]}
        expect = [{"finding": f, "status": st, "side": codes.get(code, code)} for f, st, code in spec["expect"]]
        self.add(kind, spec["writer"], stated, expect, spec["note"])

    def build(self) -> list[dict]:
        for finding, phrasings in PHRASINGS.items():
            for p in phrasings:  # the fixed sides count first, so that the left/right ones balance them
                if p["side"] in ("left", "right"):
                    self.sides[("critical", finding, p["side"])] += 1
            for p in phrasings:
                side = self.side("critical", finding) if p["side"] == "lr" else p["side"]
                stated = _fill(p["text"], side if side in ("left", "right") else "left", self.size())
                self.add("critical", p["writer"], [stated], [{"finding": finding, "status": PRES, "side": side}],
                         p["note"])  # fmt: skip
        for writer, wanted in MULTI_PHRASED:
            side = self.side("multi", "-")
            stated, expect = [], []
            for finding, code in wanted:
                want = {"S": side, "O": {"left": "right", "right": "left"}[side]}.get(code or "", code)
                fits = [p for p in PHRASINGS[finding] if p["writer"] == writer and not p["solo"] and _fits(p, want)]
                if not fits:
                    raise ValueError(f"writer {writer} has no phrasing of {finding} on {want}")
                p = self.rng.choice(fits)
                got = (want or side) if p["side"] == "lr" else p["side"]
                stated.append(_fill(p["text"], got if got in ("left", "right") else "left", self.size()))
                expect.append({"finding": finding, "status": PRES, "side": got})
            self.add("multi", writer, stated, expect)
        for spec in MULTI_WRITTEN:
            self.written("multi", spec)
        for kind, specs in (("hedged", HEDGED), ("resolved", RESOLVED), ("comparison", COMPARISON),
                            ("device", DEVICE)):  # fmt: skip
            for spec in specs:
                self.written(kind, spec)
        for writer in WRITERS:  # normal findings, of varied length; no explicit negation sentence
            for n in range(5):
                if writer == "I":
                    text, context = self.text_i([], set(), 0)
                    out = sorted(set().union(*(c[1] for c in context)), key=FINDINGS.index)
                    self.cases.append(self._bare("normal", writer, text, out))
                else:
                    self.add("normal", writer, [], [], keep=(3 + n % 3, 3 + n % 3), negations=0)
        for writer in WRITERS:  # normal findings negating acute findings explicitly, often after long clauses
            for n in range(5):
                first = n * len(NEGATIONS[writer]) // 5  # spread over the writer's negations
                if writer == "I":
                    text, context = self.text_i([], set(), 1 + n % 3, first)
                    out = sorted(set().union(*(c[1] for c in context)), key=FINDINGS.index)
                    self.cases.append(self._bare("negation", writer, text, out))
                else:
                    self.add("negation", writer, [], [], keep=(2, 4), negations=1 + n % 2, first=first)
        return self.cases

    def _bare(self, kind: str, writer: str, text: str, out: list[str]) -> dict:
        return {
            "id": f"{EDITION}-{kind}-{sum(c['kind'] == kind for c in self.cases) + 1:03d}",
            "edition": EDITION,
            "kind": kind,
            "writer": writer,
            "findings": text,
            "expect": [{"finding": f, "status": ABS, "side": None} for f in out],
            "origin": "written",
        }


def render(cases: list[dict]) -> bytes:
    """One JSON object a line, ASCII, keys in a fixed order: the bytes the digest pins."""
    return "".join(json.dumps(c, ensure_ascii=True) + "\n" for c in cases).encode("ascii")


def build() -> list[dict]:
    cases = Builder().build()
    texts = Counter(c["findings"] for c in cases)
    dupes = [t for t, n in texts.items() if n > 1]
    if dupes:
        raise ValueError(f"findings texts repeat: {dupes[:3]}")
    for c in cases:
        names = [e["finding"] for e in c["expect"]]
        if len(names) != len(set(names)) or not set(names) <= set(FINDINGS):
            raise ValueError(f"bad expect in {c['id']}: {names}")
    return cases


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="write a copy here (the frozen file is never overwritten)")
    ap.add_argument("--check", action="store_true", help="rebuild in memory and compare with the frozen file")
    args = ap.parse_args(argv)
    data = render(build())
    if args.check:
        same = FILE.exists() and FILE.read_bytes() == data
        print("the frozen file matches its script" if same else "MISMATCH: the frozen file differs from the script")
        return 0 if same else 1
    out = args.out or FILE
    if out.resolve() == FILE.resolve() and FILE.exists():
        print(f"{FILE} is frozen: a change is a new edition (see this script's docstring)", file=sys.stderr)
        return 1
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(data)
    print(f"wrote {len(data.splitlines())} cases to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
