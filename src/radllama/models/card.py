"""What a served model is: its base, the data and tasks it was trained on, and its measured figures.

Read from what training saves beside a model or adapter (``config.yaml``: recipe, data, tasks, LoRA;
``train_summary.json``: examples per task, parameters) and from an optional ``model_card.json`` that
benchmarks write their figures into (:func:`add_benchmarks`)::

    {"description": "one honest sentence",
     "benchmarks": [{"name": "critical-finding recall", "value": 0.97, "on": "faithfulness, held-out",
                     "command": "python bench/bench_faithfulness.py ..."}]}

Every part is optional: a model from elsewhere (no training record, no card file) gets a card that says
what is unknown. Only a model trained by radllama on instruction tasks beyond the impression may be offered
for chat; one trained only to write impressions (or only pretrained) is not.

A figure holds for one decoding, and the API serves one by default (:data:`SERVING`: greedy, the model alone,
with the consistency check reported but not choosing the answer). Each benchmark row therefore carries its
``decoding`` (given as a field, or read from the name's last parenthesis, as the demo writes it:
``"finding named (independent reader) (model alone, greedy)"``) and ``served_by_default``; rows of the default
decoding come first, and the card's ``serving`` says what a request without ``decode`` gets and how to ask for the
faithful decoding.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json

CARD_FILE = "model_card.json"
CONFIG_FILE, SUMMARY_FILE = "config.yaml", "train_summary.json"  # written by radllama.train.recipes
MANIFEST_FILE = "manifest.json"  # written beside the splits by radllama.data


def _read(path: Path, kind: str) -> Any:
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
        return yaml.safe_load(text) if kind == "yaml" else json.loads(text)
    except (OSError, ValueError, yaml.YAMLError) as exc:
        raise RadLlamaError(f"{path}: not readable {kind} ({type(exc).__name__})") from exc


def _training(folder: Path) -> tuple[dict, dict]:
    """A training output's resolved config and summary (empty dicts for a model trained elsewhere).

    A run's ``best/`` and ``step-*`` folders hold weights only: their record is the run's, one level up.
    """
    if not (folder / CONFIG_FILE).is_file() and _SAVED_IN_RUN.fullmatch(folder.name):
        folder = folder.parent
    return _read(folder / CONFIG_FILE, "yaml") or {}, _read(folder / SUMMARY_FILE, "json") or {}


_SAVED_IN_RUN = re.compile(r"best|step-\d+")  # radllama.train.evaluation.BEST_DIR and checkpoint folders
# Tasks that all teach reading radiology reports (radllama.train.examples.TASKS; a test keeps the two in step),
# none of them general conversation: a model trained on these alone is not offered for chat, whatever its base
# was. The list task counts too: a SmolLM2 adapter taught it answered "- France" to "What is the capital of
# France?" (bench/check_general_answers.py, BENCHMARKS.md).
REPORT_TASKS = frozenset({
    "impression", "impression_abnormal", "acute_transplant", "acute_transplant_pair", "acute_transplant_hedged",
    "acute_transplant_plain",
    "indication_impression", "abnormal_list", "presence", "pretraining on report text",
})  # fmt: skip


def _data(config: dict, summary: dict) -> dict | None:
    train = (config.get("data") or {}).get("train")
    if not train:
        return None
    manifest = _read(Path(train).parent / MANIFEST_FILE, "json") or {}
    return {
        "source": manifest.get("source"),
        "split": Path(train).name,
        # The SFT recipe counts its examples per task; pretraining counts blocks of report text.
        "reports": summary.get("examples") or (manifest.get("counts") or {}).get("train"),
    }


def _tasks(config: dict, summary: dict) -> list[str] | None:
    if config.get("recipe") == "pretrain_mini":
        return ["pretraining on report text"]
    per_task = summary.get("examples_per_task") or (config.get("data") or {}).get("tasks")
    return sorted(t for t, n in per_task.items() if n) if per_task else None


# What /v1/impressions (and the page) answers with when a request names no decoding: the defaults of
# radllama.serve.openai_schema.ImpressionRequest (decode "greedy", clinical 0, extractive false; a test keeps
# the two in step). The faithful decoding must be asked for; the demo's "-faithful" systems use FAITHFUL_REQUEST.
SERVED_DECODING = "greedy"
FAITHFUL_REQUEST = {"decode": "mbr", "samples": 0, "clinical": 1.0, "extractive": True}
SERVING: dict[str, Any] = {
    "default_decoding": "greedy (the model alone)",
    "description": "By default /v1/impressions and this page answer with greedy decoding: the model alone. The "
    "consistency check is reported beside each answer but does not choose it. Figures measured with another "
    "decoding (faithful MBR) hold only for requests that ask for it.",
    "faithful_request": FAITHFUL_REQUEST,
}
_DECODING_WORDS = re.compile(r"\b(greedy|mbr|model alone|beam|sampl\w*|decod\w*|extractive)\b", re.IGNORECASE)
_TRAILING_PAREN = re.compile(r"\s*\(([^()]*)\)\s*$")


def decoding_of(row: dict) -> tuple[str | None, str]:
    """A benchmark row's decoding and its figure's name without it: the row's ``decoding`` field, else the last
    parenthesis of its name when it names a decoding (``"ROUGE-1 (model alone, greedy)"``); ``None`` when the
    row does not say."""
    name = str(row["name"])
    if row.get("decoding"):
        return str(row["decoding"]), name
    found = _TRAILING_PAREN.search(name)
    if found and _DECODING_WORDS.search(found.group(1)):
        return found.group(1).strip(), name[: found.start()].rstrip()
    return None, name


def _served_by_default(decoding: str | None) -> bool | None:
    if decoding is None:
        return None
    words = decoding.lower()
    return SERVED_DECODING in words and "mbr" not in words


def _benchmarks(card: dict, path: Path) -> list[dict]:
    rows = card.get("benchmarks") or []
    if not isinstance(rows, list) or not all(isinstance(r, dict) and "name" in r and "value" in r for r in rows):
        raise RadLlamaError(f"{path}: 'benchmarks' must be a list of objects with 'name' and 'value'")
    return rows


def _labelled(rows: list[dict]) -> list[dict]:
    """Rows with their decoding, figure name and whether the API serves that decoding by default; the default
    decoding's rows first (the order is kept otherwise)."""
    out = []
    for row in rows:
        decoding, figure = decoding_of(row)
        out.append({**row, "figure": figure, "decoding": decoding, "served_by_default": _served_by_default(decoding)})
    return sorted(out, key=lambda r: {True: 0, False: 1, None: 2}[r["served_by_default"]])


def model_card(model_dir: Path, adapter_dir: Path | None = None, name: str | None = None) -> dict[str, Any]:
    """The card of a model (+ adapter) as a JSON-ready dict (``chat``: whether to offer it for chat)."""
    model_dir = Path(model_dir)
    top = Path(adapter_dir) if adapter_dir else model_dir  # the folder trained last says what the model does
    config, summary = _training(top)
    base_config, base_summary = _training(model_dir) if adapter_dir else ({}, {})
    base: str | None = model_dir.name if adapter_dir else None  # a model without adapter is its own base
    if adapter_dir and base_config.get("recipe") == "pretrain_mini":
        trained_on = _describe_data(_data(base_config, base_summary))
        base = f"radllama-mini ({model_dir.name}), pretrained here on {trained_on}"
    elif not adapter_dir and config.get("recipe") == "lora_sft":
        base = Path(str((config.get("model") or {}).get("path", ""))).name or None  # a merged model's base
    lora = config.get("lora") or {}
    method = None
    if config.get("recipe") == "lora_sft":
        method = f"LoRA r={lora.get('r')}" if lora.get("enabled", True) else "full fine-tuning"
    elif config.get("recipe") == "pretrain_mini":
        method = "pretrained from scratch"
    tasks = _tasks(config, summary)
    card_path = top / CARD_FILE
    extra = _read(card_path, "json") or {}
    if not isinstance(extra, dict):
        raise RadLlamaError(f"{card_path}: must be a JSON object")
    return {
        "name": name or top.name,
        "description": extra.get("description"),
        "base": base,
        "method": method,
        "parameters": summary.get("total_parameters") or summary.get("parameters"),
        "data": _data(config, summary),
        "tasks": tasks,
        # Unknown provenance (a model from elsewhere) may chat; ours only when taught more than report tasks.
        "chat": tasks is None or bool(set(tasks) - REPORT_TASKS),
        "benchmarks": _labelled(_benchmarks(extra, card_path)),
        "serving": SERVING,
    }


def unknown_card(name: str) -> dict[str, Any]:
    """The card of a model with no record of its training: nothing claimed, chat allowed."""
    return {"name": name, "description": None, "base": None, "method": None, "parameters": None, "data": None,
            "tasks": None, "chat": True, "benchmarks": [], "serving": SERVING}  # fmt: skip


def _describe_data(data: dict | None) -> str:
    if not data:
        return "unrecorded data"
    source = {"openi": "OpenI", "mimic-cxr": "MIMIC-CXR"}.get(data.get("source") or "", data.get("source"))
    reports = f"{data['reports']:,} " if data.get("reports") else ""
    return f"{reports}{source or data['split']} reports".strip()


def add_benchmarks(folder: Path, rows: list[dict], description: str | None = None) -> Path:
    """Put benchmark figures into ``folder/model_card.json`` (a row replaces one of the same name and ``on``)."""
    path = Path(folder) / CARD_FILE
    card = _read(path, "json") or {}
    new = {(r["name"], r.get("on")) for r in rows}
    card["benchmarks"] = [r for r in _benchmarks(card, path) if (r["name"], r.get("on")) not in new] + list(rows)
    if description is not None:
        card["description"] = description
    atomic_write_json(path, card)
    return path
