"""The independent reader's rule tables (:mod:`radllama.evaluate.judge`), kept apart from the code that runs them.

Written for issue #30 without :mod:`radllama.labeller` or :mod:`radllama.consistency`: different words, a
different pattern language (spaCy token patterns, not regular expressions over the text) and a different
algorithm (NegEx passes with their own cue lists, through negspacy). Every table here goes into
:func:`radllama.evaluate.judge.reader_digest`.

Target rules use a small token language, one string per pattern, tokens separated by spaces:

- ``word`` matches that word (lower-cased); ``a|b|c`` any of them;
- ``/regex/`` a token whose lower-cased text the regex matches in full;
- ``@NAME`` a word set from :data:`WORDS`;
- a suffix ``?`` (optional), ``*`` (any number), ``+`` (one or more) or ``{0,2}`` (spaCy's counted operator).

The tokenizer is spaCy's English one: ``left-sided`` is three tokens, ``cannot`` is ``can not``.
"""

from __future__ import annotations

# Sentence ends (spaCy's sentencizer; "1. No acute disease 2. Cardiomegaly" splits after "2.").
SENTENCE_ENDS: list[str] = [".", "..", "...", "....", "!", "?", ";", "\n", "\n\n"]
# A comparison word is looked for in the mention's clause: its sentence cut at these.
CLAUSE_STOPS: list[str] = [",", ";", "but", "however", "although", "though", "whereas", "while", "which"]

# ----------------------------------------------------------------------------- word sets

WORDS: dict[str, list[str]] = {
    "BE": ["is", "are", "was", "were", "appears", "appear", "remains", "remain", "seems", "seem", "has", "have",
           "been", "become", "becomes", "now", "again", "still", "also", "persistently"],
    # Degree words before an adjective ("mildly to moderately enlarged").
    "DEGREE": ["mild", "mildly", "moderate", "moderately", "marked", "markedly", "severe", "severely", "slight",
               "slightly", "minimal", "minimally", "massive", "massively", "significantly", "borderline", "to",
               "and", "very", "quite", "somewhat", "grossly", "substantially", "considerably"],
    "LOBE": ["upper", "middle", "lower"],
    "SIDE": ["left", "right"],
    "ENLARGED": ["enlarged", "large", "increased", "enlarging"],
    "TUBE": ["tube", "tubes", "catheter", "catheters", "line", "lines"],
    # A wrongly placed tip: where no tube of ours belongs.
    "AIRWAY_WRONG": ["bronchus", "bronchi", "mainstem", "main-stem", "intermedius"],
    "GUT_WRONG": ["esophagus", "oesophagus", "pharynx", "hypopharynx", "oropharynx", "mouth"],
    # A lobe-level qualifier that makes atelectasis a collapse rather than a band of subsegmental atelectasis.
    "MINOR": ["subsegmental", "platelike", "plate", "linear", "discoid", "streaky", "minimal", "mild", "patchy",
              "bandlike", "band", "strandy", "dependent", "bibasilar", "basilar", "bibasal", "scattered", "minor",
              "small", "trace", "slight", "focal"],
}  # fmt: skip

# ----------------------------------------------------------------------------- targets

# Reader finding -> token patterns. The longest match wins where two overlap (spacy.util.filter_spans), so a
# specific phrase ("pericardial effusion", "compression fracture") beats its head word.
TARGETS: dict[str, list[str]] = {
    "pneumothorax": [
        "pneumothorax|pneumothoraces|pneumothoraxes|hydropneumothorax|ptx|pneumothoraces",
    ],
    "pleural effusion": [
        "effusion|effusions",
        "pleural fluid",
        "fluid in the @SIDE? pleural space|spaces",
        "fluid in the @SIDE? hemithorax",
        "hydrothorax|hemothorax|haemothorax",
        "fluid layering|tracking along the? @SIDE? lateral? chest wall|pleura",
    ],
    # Not a pleural effusion, and not one of ours: kept so the bare word "effusion" cannot claim it.
    "pericardial effusion": ["pericardial effusion|effusions"],
    "costophrenic blunting": [
        "blunting|blunted of? the? @SIDE? costophrenic|cp angle|angles|sulcus|sulci",
        "blunted|blunting @SIDE? costophrenic|cp angle|angles|sulcus|sulci",
        "costophrenic|cp angle|angles|sulcus|sulci @BE* @DEGREE* blunted|blunting",
    ],
    "consolidation": [
        "consolidation|consolidations|consolidative|consolidated",
        "air|airspace|alveolar -? space? consolidation|consolidations",
    ],
    "airspace disease": [
        "air|airspace -? space? disease|process|filling",
        "alveolar disease|process|filling",
    ],
    "pneumonia": [
        "pneumonia|pneumonias|bronchopneumonia|pneumonic|pneumonitis",
        "infection|infections|infectious|infective",
        "aspiration",
    ],
    "lung opacity": [
        "opacity|opacities|opacification|opacifications|opacified",
        "infiltrate|infiltrates|infiltration|infiltrative",
        "density|densities",
        "haziness|hazy",
        "ground -? glass",
        "interstitial|reticular|reticulonodular markings|marking|prominence|thickening|pattern|disease|process|"
        "changes|infiltrate|infiltrates|opacity|opacities",
        "interstitial lung|pulmonary disease|changes|markings|pattern|process|opacities|fibrosis",
    ],
    "pulmonary edema": [
        "edema|oedema",
        "pulmonary|vascular|venous congestion",
        "vascular|venous engorgement",
        "congestive heart|cardiac failure",
        "heart failure|chf",
        "pulmonary venous hypertension",
        "cephalization",
        "kerley b? lines",
        "fluid overload",
    ],
    # Kept so that the bare word "edema" cannot claim them.
    "soft tissue edema": [
        "soft -? tissue|tissues edema|swelling",
        "subcutaneous edema",
    ],
    "cardiomegaly": [
        "cardiomegaly",
        "borderline cardiomegaly",
        "enlarged heart|cardiac",
        "enlargement of the heart|cardiac",
        "cardiac enlargement",
        "heart|cardiac silhouette|shadow|contour|contours|size? @BE* not? @DEGREE{0,3} @ENLARGED",
        "heart|cardiac silhouette|shadow|contour|contours|size? @BE* enlarged|increased|large in size",
        "@DEGREE{0,3} enlarged|large cardiac silhouette|shadow|contour",
        "increase|increased in the? size of the heart|cardiac",
        "borderline heart|cardiac size|silhouette|enlargement",
        "heart|cardiac size|silhouette @BE* borderline",
    ],
    # The heart and mediastinum read as one: CheXpert's Enlarged Cardiomediastinum, not a cardiomegaly.
    "enlarged cardiomediastinum": [
        "cardiomediastinal silhouette|contour|contours|shadow? @BE* not? @DEGREE{0,3} enlarged|widened|large",
        "enlarged|widened cardiomediastinal silhouette|contour|contours|shadow?",
        "enlargement|widening of the cardiomediastinal silhouette|contour|contours|shadow?",
        "cardiomediastinal enlargement|widening",
    ],
    "mediastinal prominence": [
        "prominent superior|upper? mediastinum|mediastinal",
        "superior|upper? mediastinal prominence",
        "prominence of the superior|upper? mediastinum|mediastinal",
        "@SIDE? paratracheal prominence|fullness",
        "prominence of the @SIDE? paratracheal",
    ],
    "widened mediastinum": [
        "superior|upper? mediastinum|mediastinal silhouette|contour|contours|width? @BE* not? @DEGREE{0,3} "
        "widened|wide|enlarged|widening",
        "widened|wide|enlarged superior|upper? mediastinum|mediastinal",
        "mediastinal widening|enlargement",
        "widening|enlargement of the superior|upper? mediastinum|mediastinal",
    ],
    "lung mass": [
        "mass|masses",
        "tumor|tumors|tumour|tumours|neoplasm|neoplasms|neoplastic|malignancy|malignant|carcinoma|cancer",
        "metastasis|metastases|metastatic",
    ],
    "nodule": [
        "nodule|nodules|micronodule|micronodules|nodular|nodularity",
    ],
    "lung lesion": [
        "lung|pulmonary|parenchymal|cavitary|cavitating|spiculated lesion|lesions",
        "cavitation|cavitary",
        "lung|pulmonary|lobe|apical cavity|cavities",
    ],
    # A calcified granuloma is a healed, benign focus: kept so the word does not count as a lesion.
    "granuloma": [
        "granuloma|granulomas|granulomata|granulomatous",
        "granulomatous infection|disease|process",
    ],
    "fracture": [
        "fracture|fractures|fractured|fx",
    ],
    "vertebral compression fracture": [
        "compression|wedge|wedging fracture|fractures|deformity|deformities",
        "vertebral|vertebra body? fracture|fractures|collapse|wedging",
        "@DEGREE* loss of height|stature",
        "height loss",
        "vertebral body? height loss",
    ],
    "free air": [
        "free intraperitoneal|peritoneal|abdominal|subdiaphragmatic? air|gas",
        "pneumoperitoneum",
        "subdiaphragmatic air|gas|lucency|lucencies",
        "air|gas under|beneath|below the @SIDE? hemidiaphragm|hemidiaphragms|diaphragm|diaphragms",
    ],
    "atelectasis": [
        "atelectasis|atelectases|atelectatic|atelectactic|atelectasic",
        "volume loss",
        # A minor band of atelectasis in a lobe stays atelectasis, not a collapse (longest match wins).
        "@MINOR+ atelectasis|atelectatic in|of|at|involving the? @SIDE? @LOBE lobe|lobes",
        "@MINOR+ @SIDE? @LOBE lobe atelectasis",
    ],
    # A collapse: the word itself, or atelectasis of a whole lobe or lung.
    "collapse": [
        "collapse|collapsed",
        "atelectasis|atelectatic of|in|involving the? @SIDE? @LOBE lobe|lung",
        "@SIDE? @LOBE lobe atelectasis",
        "lobar atelectasis",
        "complete|total|whole atelectasis",
        "atelectasis of the @SIDE? lung",
    ],
    "support device": [
        "endotracheal|et|ett|tracheostomy|trach|nasogastric|ng|og|orogastric|feeding|enteric|gastric|dobhoff|"
        "dobbhoff|chest|thoracostomy|drainage tube|tubes",
        "tube|tubes",
        "central|venous|picc|subclavian|jugular|arterial|midline line|lines|catheter|catheters",
        "picc|port|mediport|portacath|port-a-cath|swan|ganz|swan-ganz",
        "catheter|catheters",
        "pacemaker|pacemakers|pacer|aicd|icd|defibrillator|defibrillators",
        "pacer|pacemaker|defibrillator|cardiac|pacing leads|lead|wires|wire|generator",
        "transvenous leads|lead",
        "leads|generator|device|devices|stimulator|shunt",
        "drain|drains|stent|stents",
        "pigtail catheter",
        "valve replacement|prosthesis",
        "prosthetic valve|valves",
    ],
    # The tip where it does not belong (a tube named in the same sentence is required, see judge.py).
    "malpositioned tube": [
        "malpositioned|malposition|misplaced|malpositioning",
        "@SIDE? mainstem bronchus|bronchi?",
        "@SIDE? main -? stem bronchus|bronchi?",
        "@SIDE? main bronchus|bronchi",
        "bronchus intermedius",
        "@SIDE? @LOBE lobe|segmental bronchus|bronchi",
        "coiled|curled|looped in|within the? @GUT_WRONG",
        "in|within the @GUT_WRONG",
        "too low|deep|high|distal",
        "should|recommend|recommended|suggest|consider be? withdrawn|withdrawal|withdrawing|retracted|retraction|"
        "retracting|pulled|repositioned|repositioning|advanced|advancement|advancing",
    ],
    "hiatal hernia": [
        "hiatal|hiatus|paraesophageal hernia|hernias",
    ],
    "pleural thickening": [
        "pleural thickening|plaque|plaques|calcification|calcifications|scarring|scar|fibrosis",
        "fibrothorax",
        "pleural -? parenchymal scarring|thickening|scar",
        "apical pleural? capping|thickening",
    ],
    "scarring": [
        "scar|scars|scarring|fibrosis|fibrotic|cicatricial",
    ],
    "emphysema": [
        "emphysema|emphysematous|copd",
        "hyperinflation|hyperinflated|hyperexpansion|hyperexpanded|overinflation|overinflated",
    ],
}  # fmt: skip

# Explicit normal statements: each reads as a *negated* mention of the findings listed (they are not passed
# through the NegEx passes: "no acute ... and the heart size is normal" must not negate a normal).
NORMALS: dict[str, tuple[list[str], list[str]]] = {
    "heart": (
        [
            "heart|cardiac size|silhouette|contour|contours? @BE* normal|unremarkable",
            "heart|cardiac size|silhouette|contour|contours? @BE* within normal limits",
            "heart|cardiac size|silhouette|contour|contours? @BE* normal in size|contour",
            "heart|cardiac size|silhouette|contour|contours? @BE* not enlarged",
            "heart|cardiac size|silhouette|contour|contours? @BE* at|within? the? upper limits|limit|range of normal",
            "normal|normal-sized|unremarkable heart|cardiac size|silhouette|contour|contours|shadow?",
            "normal heart size|silhouette",
        ],
        ["cardiomegaly"],
    ),
    "mediastinum": (
        [
            "mediastinal|mediastinum contour|contours|silhouette|width? @BE* normal|unremarkable",
            "mediastinal|mediastinum contour|contours|silhouette|width? @BE* within normal limits",
            "mediastinal|mediastinum contour|contours|silhouette|width? @BE* not widened",
            "normal|unremarkable mediastinal|mediastinum contour|contours|silhouette|width?",
        ],
        ["widened mediastinum"],
    ),
    "cardiomediastinal": (
        [
            "cardiomediastinal|cardiomediastinum silhouette|contour|contours|shadow|size? @BE* normal|unremarkable",
            "cardiomediastinal|cardiomediastinum silhouette|contour|contours|shadow|size? @BE* within normal limits",
            "cardiomediastinal|cardiomediastinum silhouette|contour|contours|shadow|size? @BE* normal in size|contour",
            "cardiomediastinal|cardiomediastinum silhouette|contour|contours|shadow|size? @BE* not enlarged",
            "normal|unremarkable cardiomediastinal|cardiomediastinum silhouette|contour|contours|shadow|size?",
            "heart and mediastinum @BE* normal|unremarkable",
            "heart and mediastinum @BE* within normal limits",
            "normal|unremarkable heart and mediastinum",
        ],
        ["cardiomegaly", "widened mediastinum", "enlarged cardiomediastinum"],
    ),
    "lungs": (
        [
            "lungs @BE* otherwise? clear",
            "lungs @BE* otherwise? well|fully? -? expanded and clear",
            "clear lungs",
            "lungs @BE* otherwise? free of focal? airspace? disease|opacity|consolidation",
        ],
        ["consolidation", "lung opacity", "pulmonary edema", "airspace disease", "pneumonia"],
    ),
    "vessels": (
        [
            "pulmonary? vascularity|vasculature|vessels|vascular|venous engorgement|congestion|markings? @BE* "
            "within normal limits",
            "pulmonary? vascularity|vasculature|vessels|vascular|venous engorgement|congestion|markings? @BE* "
            "within the? limits of normal",
            "pulmonary? vascularity|vasculature|vessels|vascular|venous engorgement|congestion|markings? @BE* "
            "normal|unremarkable",
            "normal pulmonary? vascularity|vasculature",
        ],
        ["pulmonary edema"],
    ),
    "bones": (
        [
            "bones|osseous|bony|skeletal structures|structure|thorax? @BE* intact|unremarkable|normal",
            "bones|osseous|bony|skeletal structures|structure|thorax? @BE* within normal limits",
            "no acute bony|osseous|skeletal abnormality|abnormalities|findings|injury|process",
            "intact bones|osseous|bony|skeletal structures?",
        ],
        ["fracture"],
    ),
}  # fmt: skip

# ----------------------------------------------------------------------------- modifiers (NegEx cue lists)

# Words that open a fresh positive statement after a list: "No pneumothorax and small left effusion." A
# negation (or hedge) ends before a joiner followed by one of them. Not "large" after a comma: "No focal
# consolidation, large pleural effusion, or pneumothorax" is one negated list (common in OpenI).
ASSERTION_OPENERS: list[str] = [
    "small", "moderate", "tiny", "trace", "mild", "minimal", "severe", "massive", "new", "persistent",
    "residual", "stable", "unchanged", "increased", "increasing", "decreased", "decreasing", "worsening",
    "worsened", "improving", "improved", "layering", "loculated", "a", "an", "left", "right", "bilateral",
    "there", "the", "moderately", "mildly", "markedly", "slightly", "chronic", "old", "healed", "healing",
    "subsegmental", "patchy", "dense", "enlarged", "cardiomegaly", "borderline", "low", "stable",
]  # fmt: skip
ASSERTION_JOINERS: list[str] = ["and", ",", ", and", "with", ", with"]
# After "and" (not after a comma) a size word also opens a statement.
AND_OPENERS: list[str] = ["large", "extensive", "marked"]

# Clause ends for every pass.
TERMINATORS: list[str] = [
    "but", "however", "although", "though", "yet", "which", "except", "except for", "aside from", "apart from",
    "other than", "with the exception of", "whereas", "while", "there is", "there are", "there has been",
    "there have been", "otherwise", "who", "now", "instead",
]  # fmt: skip

NEGATION: dict[str, list[str]] = {
    "preceding": [
        "no", "without", "negative for", "free of", "absence of", "absent", "never", "nor", "neither",
        "clear of", "rules out", "ruled out", "excludes", "no evidence of", "no sign of", "no signs of",
        "not seen", "not identified", "no radiographic evidence of", "does not appear to be", "not appear to be",
        "do not appear to be", "does not represent", "is not a", "does not show", "doesn't appear",
    ],
    "following": [
        "is absent", "are absent", "not seen", "not identified", "not visualized", "not visualised",
        "not present", "not demonstrated", "not appreciated", "not evident", "not noted", "not detected",
        "not apparent", "not visible", "has been excluded", "is excluded", "are excluded", "ruled out",
        "not suggested",
    ],
    # "no" in these is no negation ("no change" is a comparison; "no longer" a resolution). A bare "not" is no
    # cue at all (only the phrases above: "not seen" ...), so "cannot exclude" needs no pseudo entry; and a
    # pseudo entry would also hide the hedge cue that ends a negation ("No pneumothorax, cannot exclude ...").
    "pseudo": [
        "no change", "no interval change", "no significant change", "no significant interval change",
        "not changed", "not significantly changed", "no appreciable change", "without change",
        "without interval change", "without significant change", "no increase", "no decrease", "no longer",
        # "No opacity to suggest pneumonia": still a negation, not a hedge that ends it.
        "to suggest", "to indicate", "to represent",
    ],
}  # fmt: skip

HEDGE: dict[str, list[str]] = {
    "preceding": [
        "possible", "possibly", "probable", "probably", "likely", "most likely", "may represent", "may be",
        "may reflect", "may indicate", "may have", "might", "could represent", "could be", "could reflect",
        "question of", "questionable", "suspicious for", "suspicious of", "suspect", "suspected",
        "concerning for", "concern for", "worrisome for", "suggestive of", "suggesting", "suggests", "suggest",
        "can not exclude", "can not rule out", "can not entirely exclude", "can not completely exclude",
        "differential diagnosis includes", "differential includes", "differential diagnosis", "differential",
        "equivocal", "indeterminate", "possibility of", "rule out", "r/o", "question",
        "could include", "may include", "can include", "unclear whether", "unclear if", "correlate for",
        "correlate clinically for", "clinical correlation for", "correlation for", "correlate clinically",
        "clinical correlation", "symptoms of", "exclude", "to rule out", "rule-out", "completely exclude",
        "entirely exclude", "could indicate", "might indicate", "could suggest", "may", "might", "could",
        "consider",
        "to exclude", "evaluate for", "difficult to exclude", "presumably", "presumed", "favored", "favor",
        "questioned", "uncertain", "either", "potentially", "raises the possibility of", "?",
    ],
    "following": [
        "can not be excluded", "not excluded", "is not excluded", "not ruled out", "can not be ruled out",
        "is possible", "is likely", "are possible", "are likely", "is suspected", "are suspected",
        "is questioned", "may be present", "could be present", "not entirely excluded",
        "is not entirely excluded", "could not be excluded", "not be excluded", "?", "is in the differential",
        "in the differential", "is another consideration", "another consideration", "are considerations",
        "would be difficult to exclude", "is a consideration", "is considered", "not definitely excluded",
        "can not be entirely excluded", "can not be completely excluded", "not be entirely excluded",
        "not be completely excluded", "can not be entirely ruled out", "can not be completely ruled out",
        "not be ruled out", "can not be totally excluded",
    ],
    "pseudo": [
        "no suspicious", "not suspicious", "without suspicious", "likely benign", "probably benign", "to suggest",
    ],
}  # fmt: skip

# Resolved or past: historical. "Previously seen" alone is not one ("previously seen effusion is larger").
RESOLVED: dict[str, list[str]] = {
    "preceding": [
        "resolution of", "interval resolution of", "resolved", "no longer", "removal of", "interval removal of",
        "history of", "hx of", "h/o", "clearing of", "interval clearing of", "cleared", "prior history of",
        "status post removal of", "no residual", "since removed",
    ],
    "following": [
        "has resolved", "have resolved", "resolved", "is resolved", "are resolved", "has cleared",
        "have cleared", "is no longer seen", "is no longer visible", "is no longer visualized",
        "is no longer present", "is no longer evident", "is no longer identified", "is no longer apparent",
        "are no longer seen", "are no longer visible", "are no longer present", "no longer seen",
        "no longer visible", "no longer visualized", "no longer present", "no longer evident",
        "no longer identified", "no longer apparent", "has been removed", "have been removed", "is gone",
        "has disappeared", "have disappeared", "has been resolved",
    ],
    "pseudo": ["resolving", "partially resolved", "nearly resolved", "near resolution", "partial resolution of",
               "partially cleared", "not resolved", "not completely resolved", "incompletely resolved"],
}  # fmt: skip
# "resolving pneumonia" stays present (it is still there, less of it): negspacy drops a cue that starts inside
# a pseudo phrase, so "partially resolved" is no resolution.

# A finding offered in a differential: uncertain ("atelectasis versus pneumonia": both; "crowding versus
# atelectasis"), unless negated. The word must be this close to the mention, in its clause. Not "or",
# "and/or" or "/": "atelectasis or scarring", "opacities/atelectasis" are how a band of atelectasis is
# described, and read as stated (OpenI's indexers and our labeller read them so too); "versus" is a
# differential.
ALTERNATIVES: list[str] = ["versus", "vs", "vs."]
ALTERNATIVE_GAP = 3

# Comparison words (optional attribute), looked for in the mention's clause.
CHANGE: dict[str, list[str]] = {
    "stable": ["stable", "unchanged", "no change", "no interval change", "not changed", "again seen",
               "again noted", "again demonstrated", "persistent", "persists", "similar", "redemonstrated",
               "re-demonstrated", "without change", "stably"],
    "increased": ["increased", "increasing", "worsening", "worsened", "worse", "larger", "enlarging",
                  "progression", "progressed", "progressive", "more prominent", "new", "newly",
                  "interval development", "developing", "increase"],
    "decreased": ["decreased", "decreasing", "improving", "improved", "smaller", "less", "resolving",
                  "diminished", "decrease", "partially resolved", "improvement", "regression"],
}  # fmt: skip

# Side words: what each names.
SIDE_WORDS: dict[str, str] = {
    "left": "left", "right": "right", "bilateral": "bilateral", "bilaterally": "bilateral", "both": "bilateral",
    "bibasilar": "bilateral", "bibasal": "bilateral", "biapical": "bilateral", "bibasally": "bilateral",
    "bihilar": "bilateral",
}  # fmt: skip
# A side is looked for this many tokens before and after a mention, inside its clause.
SIDE_WINDOW_BEFORE, SIDE_WINDOW_AFTER = 6, 8
# Tokens that close the window: a side past them belongs to something else.
SIDE_STOPS: list[str] = [
    ",",
    ";",
    ".",
    "and",
    "or",
    "with",
    "but",
    "which",
    "while",
    "whereas",
    "to",
    "compared",
    "versus",
    "vs",
    "vs.",
    "from",
    "since",
    "than",
    "toward",
    "towards",
    "shift",
    "shifted",
]

# ----------------------------------------------------------------------------- what each finding names

# A reader finding also names these broader ones (with its status and side).
IMPLIES: dict[str, list[str]] = {
    "pneumonia": ["consolidation"],
    "airspace disease": ["consolidation"],
    "collapse": ["atelectasis"],
    "vertebral compression fracture": ["fracture"],
    "lung mass": ["lung lesion"],
    "nodule": ["lung lesion"],
    "malpositioned tube": ["support device"],
}

# CheXpert observation (the names :mod:`radllama.labeller` uses) -> the reader findings that state it. These
# follow CheXpert's own definitions, not the benchmark's types: "airspace disease" is a Lung Opacity there,
# and a cardiomediastinal silhouette is Enlarged Cardiomediastinum.
CHEXPERT: dict[str, list[str]] = {
    "Enlarged Cardiomediastinum": ["widened mediastinum", "enlarged cardiomediastinum", "mediastinal prominence"],
    "Cardiomegaly": ["cardiomegaly"],
    "Lung Lesion": ["lung mass", "nodule", "lung lesion"],
    "Lung Opacity": ["lung opacity", "airspace disease"],
    "Edema": ["pulmonary edema"],
    "Consolidation": ["consolidation"],
    "Pneumonia": ["pneumonia"],
    "Atelectasis": ["atelectasis", "collapse"],
    "Pneumothorax": ["pneumothorax"],
    "Pleural Effusion": ["pleural effusion"],
    "Pleural Other": ["pleural thickening"],
    "Fracture": ["fracture", "vertebral compression fracture"],
    "Support Devices": ["support device", "malpositioned tube"],
}
