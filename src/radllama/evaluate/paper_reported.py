"""ROUGE numbers *reported by the Radiology-Llama2 paper* (Liu et al. 2023), not measured here.

Only numbers actually found in a source are recorded; every other model of the paper's
Tables 1-2 is listed with ``None`` ("not found") rather than an invented value.

Sources:
- ``abstract``: the paper's abstract (arXiv:2309.06419, also mirrored at
  https://emergentmind.com/papers/2309.06419): "Rouge-1 score of 0.4834 on MIMIC-CXR and
  0.4185 on OpenI".
- ``brief``: the project's issue #4 brief, quoting Table 2 (OpenI) for Radiology-Llama2:
  R-1 0.4185, R-2 0.2569, R-L 0.4087. The R-2/R-L values were not found in a searchable
  copy of the table; they are kept because the brief quotes the table directly.
The abstract-mirroring pages also say Anthropic Claude2 is second best on both datasets and
Baichuan-7B scores lowest, but give no numbers for them, so none are recorded.
"""

from __future__ import annotations

PAPER = "Liu et al. 2023, Radiology-Llama2: Best-in-Class Large Language Model for Radiology (arXiv:2309.06419)"

# Every model compared in the paper's Tables 1 (MIMIC-CXR) and 2 (OpenI).
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

_FOUND: dict[str, dict[str, dict]] = {
    "OpenI": {
        "Radiology-Llama2": {
            "rouge1": 0.4185,
            "rouge2": 0.2569,
            "rougeL": 0.4087,
            "source": "abstract (R-1); brief (R-2, R-L)",
        },
    },
    "MIMIC-CXR": {
        "Radiology-Llama2": {"rouge1": 0.4834, "rouge2": None, "rougeL": None, "source": "abstract"},
    },
}


def reported_rows(dataset: str) -> list[dict]:
    """The paper's rows for ``dataset`` ("OpenI" or "MIMIC-CXR"); unknown numbers are ``None``."""
    if dataset not in _FOUND:
        raise KeyError(f"unknown dataset {dataset!r}; expected one of {sorted(_FOUND)}")
    rows = []
    for model in PAPER_MODELS:
        found = _FOUND[dataset].get(model)
        if found:
            rows.append({"system": model, **found})
        else:
            empty = dict.fromkeys(("rouge1", "rouge2", "rougeL"))
            rows.append({"system": model, **empty, "source": "not found"})
    return rows
