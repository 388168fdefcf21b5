"""Figures *reported by the Radiology-Llama2 paper* (Liu et al. 2023), not measured here.

Transcribed as printed (``paper_data/*.csv``, copied from the project's shared data folder):

- ``radiology-llama2-reported.csv``: ROUGE-1/2/L F1. ``table2``: the paper's Table 2, all 17
  systems on MIMIC-CXR and OpenI; ``table1``: ROUGE of 8 systems on the 10 examples the
  radiologists rated (``expert-sample-10``).
- ``radiology-llama2-expert-reported.csv``: the expert-study scores the paper's text gives
  (Figure 4: two radiologists, 10 MIMIC-CXR + 10 OpenI records, five criteria; only some
  systems per criterion; the scale is not stated, the highest score is 50).

They are shown only in tables labelled "reported by the paper, not measured here", never
beside a measured row as if comparable (:data:`ROUGE_CAVEAT`, :data:`EXPERT_CAVEAT`).
"""

from __future__ import annotations

import csv
from importlib import resources

PAPER = "Liu et al. 2023, Radiology-Llama2: Best-in-Class Large Language Model for Radiology (arXiv:2309.06419)"
ROUGE_CAVEAT = (
    "The paper names neither its ROUGE implementation nor its test splits, so these figures are not comparable "
    "number for number with any measured here. Kept as printed, including rows that are internally odd "
    "(Baichuan-7B on MIMIC-CXR: ROUGE-L 0.0029 below ROUGE-2 0.0057; XrayGLM on MIMIC-CXR: ROUGE-L 0.1211 above "
    "ROUGE-1 0.1104)."
)
EXPERT_CAVEAT = (
    "Two radiologists, 10 MIMIC-CXR + 10 OpenI records, five criteria (the paper's Figure 4). The text gives scores "
    "for only some systems per criterion; the figure itself is not transcribed. The scale is not stated (the "
    "highest score given is 50)."
)

# Every model compared in the paper's Tables 1-2 and Figure 4, by the names our configs use
# (configs/compare/paper-table2.yaml).
PAPER_MODELS: tuple[str, ...] = (
    "Radiology-Llama2",
    "Llama2",
    "Ziya-LLaMA-13B",
    "ChatGPT",
    "GPT-4",
    "ChatGLM2-6B",
    "MOSS",
    "PaLM2",
    "Sensenova",
    "Claude2",
    "BayLing-7B",
    "XrayGLM",
    "Bianque-2",
    "XrayPULSE",
    "DoctorGLM",
    "BenTsao",
    "Baichuan-7B",
    "Radiology-GPT",
    "StableLM",
    "Dolly",
    "Llama",
    "Alpaca",
)
# Config name -> the name as printed in the paper, where they differ.
PRINTED_NAMES: dict[str, str] = {
    "Ziya-LLaMA-13B": "Ziya-LLaMA-13B-v1",
    "MOSS": "MOSS-MOON-003-sft",
    "Claude2": "Anthropic Claude2",
    "Bianque-2": "Bianque v2",
}
DATASETS: tuple[str, ...] = ("MIMIC-CXR", "OpenI")


def _csv(name: str) -> list[dict[str, str]]:
    text = resources.files("radllama.evaluate").joinpath("paper_data", name).read_text(encoding="utf-8")
    return list(csv.DictReader(text.splitlines()))


def _rouge_row(row: dict[str, str], source: str) -> dict:
    return {"system": row["system"], **{k: float(row[k]) for k in ("rouge1", "rouge2", "rougeL")}, "source": source}


def reported_rows(dataset: str) -> list[dict]:
    """The paper's Table 2 rows for ``dataset`` ("OpenI" or "MIMIC-CXR"), in the printed order."""
    if dataset not in DATASETS:
        raise KeyError(f"unknown dataset {dataset!r}; expected one of {sorted(DATASETS)}")
    return [
        _rouge_row(r, "Table 2")
        for r in _csv("radiology-llama2-reported.csv")
        if r["table"] == "table2" and r["dataset"] == dataset
    ]


def expert_sample_rows() -> list[dict]:
    """Table 1: ROUGE of 8 systems on the 10 examples the radiologists rated."""
    return [_rouge_row(r, "Table 1") for r in _csv("radiology-llama2-reported.csv") if r["table"] == "table1"]


def expert_scores() -> dict[str, dict[str, float]]:
    """The expert-study scores the paper's text gives: ``{criterion: {system: score}}``."""
    out: dict[str, dict[str, float]] = {}
    for r in _csv("radiology-llama2-expert-reported.csv"):
        out.setdefault(r["criterion"], {})[r["system"]] = float(r["score"])
    return out


def expert_reported_markdown() -> str:
    """The expert scores as a markdown table (systems x criteria), labelled as the paper's."""
    scores = expert_scores()
    criteria = list(scores)
    systems = list(dict.fromkeys(s for per in scores.values() for s in per))
    lines = [
        f"## Reported by the paper, not measured here ({PAPER}, expert study)",
        "",
        EXPERT_CAVEAT + " A dash: the text gives no score.",
        "",
        "| system | " + " | ".join(criteria) + " |",
        "|---|" + "---:|" * len(criteria),
    ]
    for system in systems:
        cells = [f"{scores[c][system]:g}" if system in scores[c] else "–" for c in criteria]
        lines.append(f"| {system} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
