"""The model card: read from what training saves beside a model, plus model_card.json's figures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllama.errors import RadLlamaError
from radllama.models.card import CARD_FILE, add_benchmarks, model_card
from radllama.train.config import load_config


def _trained(folder: Path, data: Path, overrides: list[str], summary: dict) -> Path:
    """A training output's record as radllama.train writes it (config.yaml from the real config code)."""
    from radllama.train.config import dump_config

    folder.mkdir(parents=True)
    cfg = load_config(None, [f"data.train={data / 'train.jsonl'}", f"output_dir={folder}", *overrides])
    (folder / "config.yaml").write_text(dump_config(cfg))
    (folder / "train_summary.json").write_text(json.dumps(summary))
    return folder


@pytest.fixture()
def demo_like(tmp_path: Path) -> tuple[Path, Path]:
    data = tmp_path / "data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"source": "openi", "counts": {"train": 2551}}))
    pretrained = {"recipe": "pretrain_mini", "parameters": 3049920}
    base = _trained(tmp_path / "base", data, ["recipe=pretrain_mini"], pretrained)
    lora = _trained(tmp_path / "lora", data, ["lora.r=16"], {"recipe": "lora_sft", "total_parameters": 3400128,
                    "examples": 2551, "examples_per_task": {"impression": 2551}})  # fmt: skip
    return base, lora


def test_impression_only_adapter_does_not_chat(demo_like: tuple[Path, Path]) -> None:
    base, lora = demo_like
    card = model_card(base, lora)
    assert card["base"] == "radllama-mini (base), pretrained here on 2,551 OpenI reports"
    assert card["method"] == "LoRA r=16" and card["parameters"] == 3400128
    assert card["data"] == {"source": "openi", "split": "train.jsonl", "reports": 2551}
    assert card["tasks"] == ["impression"] and card["chat"] is False
    assert card["benchmarks"] == [] and card["description"] is None  # no model_card.json: nothing claimed
    # The pretrained base alone writes report text; it is not a chat model either.
    assert model_card(base)["chat"] is False and model_card(base)["method"] == "pretrained from scratch"


def test_report_tasks_do_not_chat_and_best_reads_its_run(tmp_path: Path, demo_like) -> None:
    from radllama.models.card import REPORT_TASKS
    from radllama.train.examples import TASKS

    base, _ = demo_like
    tasks = {"impression": 9, "impression_abnormal": 2, "acute_transplant": 5, "acute_transplant_pair": 3}
    run = _trained(tmp_path / "v3", tmp_path / "data", [], {"examples_per_task": tasks})
    (run / "best").mkdir()  # weights only, as radllama.train saves the best evaluation
    for folder in (run, run / "best"):
        card = model_card(base, folder)
        assert card["tasks"] == sorted(tasks) and card["chat"] is False, folder
    # Every task the trainer knows reads reports: none teaches conversation.
    assert set(TASKS) <= REPORT_TASKS


def test_other_instructions_or_unknown_provenance_may_chat(tmp_path: Path, demo_like: tuple[Path, Path]) -> None:
    base, _ = demo_like
    record = {"examples_per_task": {"impression": 9, "abnormal_list": 9}}
    listing = _trained(tmp_path / "list", tmp_path / "data", [], record)
    assert model_card(base, listing)["tasks"] == ["abnormal_list", "impression"]
    assert model_card(base, listing)["chat"] is False
    # A run whose record names an instruction set beyond ours (trained elsewhere, recorded in our format).
    record = {"examples_per_task": {"impression": 9, "general_chat": 9}}
    general = _trained(tmp_path / "general", tmp_path / "data", [], record)
    assert model_card(base, general)["chat"] is True
    elsewhere = tmp_path / "hf-model"
    elsewhere.mkdir()
    card = model_card(elsewhere)
    assert card["chat"] is True and card["tasks"] is None and card["data"] is None


def test_benchmark_figures_from_model_card_json(demo_like: tuple[Path, Path]) -> None:
    base, lora = demo_like
    add_benchmarks(lora, [{"name": "critical-finding recall", "value": 0.12, "on": "dev"}], "A tiny demo model.")
    add_benchmarks(lora, [{"name": "critical-finding recall", "value": 0.5, "on": "dev"},
                          {"name": "ROUGE-1", "value": 0.67, "on": "OpenI test"}])  # fmt: skip
    card = model_card(base, lora)
    assert card["description"] == "A tiny demo model."
    figures = [(b["name"], b["value"]) for b in card["benchmarks"]]
    assert figures == [("critical-finding recall", 0.5), ("ROUGE-1", 0.67)]


def test_broken_card_file_is_a_clear_error(demo_like: tuple[Path, Path]) -> None:
    base, lora = demo_like
    (lora / CARD_FILE).write_text("{not json")
    with pytest.raises(RadLlamaError, match="model_card.json: not readable json"):
        model_card(base, lora)
    (lora / CARD_FILE).write_text(json.dumps({"benchmarks": [{"value": 1}]}))
    with pytest.raises(RadLlamaError, match="'name' and 'value'"):
        model_card(base, lora)


def test_each_figure_says_its_decoding_and_what_the_api_serves_by_default(demo_like: tuple[Path, Path]) -> None:
    """Issue #30: the card showed faithful-MBR figures while the API answers greedy by default."""
    from radllama.models.card import FAITHFUL_REQUEST, SERVED_DECODING
    from radllama.serve.openai_schema import ImpressionRequest

    base, lora = demo_like
    add_benchmarks(lora, [  # as the demo writes them: the decoding in the name's last parenthesis
        {"name": "finding named (independent reader) (faithful MBR)", "value": 0.97, "on": "heldout-v2"},
        {"name": "finding named (independent reader) (model alone, greedy)", "value": 0.61, "on": "heldout-v2"},
        {"name": "ROUGE-1 (OpenI test)", "value": 0.6, "on": "OpenI test"},  # a parenthesis, no decoding
        {"name": "hedge kept", "value": 0.5, "on": "heldout-v2", "decoding": "faithful MBR"},
    ])  # fmt: skip
    card = model_card(base, lora)
    rows = [(b["figure"], b["decoding"], b["served_by_default"], b["value"]) for b in card["benchmarks"]]
    assert rows == [
        ("finding named (independent reader)", "model alone, greedy", True, 0.61),  # the default decoding first
        ("finding named (independent reader)", "faithful MBR", False, 0.97),
        ("hedge kept", "faithful MBR", False, 0.5),
        ("ROUGE-1 (OpenI test)", None, None, 0.6),
    ]
    assert card["benchmarks"][0]["name"] == "finding named (independent reader) (model alone, greedy)"  # kept
    assert "greedy" in card["serving"]["default_decoding"] and "model alone" in card["serving"]["description"]
    # The card's claim is the API's default: a request that names no decoding is greedy, with no check choosing.
    plain = ImpressionRequest(findings=["Lungs clear."])
    assert (plain.decode, plain.clinical, plain.extractive) == (SERVED_DECODING, 0.0, False)
    faithful = ImpressionRequest(findings=["Lungs clear."], **FAITHFUL_REQUEST)
    assert faithful.decode == "mbr" and faithful.extractive is True
    # The stored file keeps the rows as written (no derived fields saved).
    stored = json.loads((lora / CARD_FILE).read_text())["benchmarks"]
    assert all("served_by_default" not in r for r in stored)
