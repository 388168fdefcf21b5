"""`radllama audit` on a tiny model: a canary planted many times by `radllama train` is found (high exposure)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from radllama.audit.measures import copying, phi_in_outputs, training_prompts
from radllama.canaries import CANARY_FILE, canary_text, plant_canaries
from radllama.cli import app
from radllama.models.loading import LoadedModel
from radllama.models.mini import train_tokenizer
from radllama.prompts import PromptStyle
from radllama.retrieval import TfidfRetriever
from radllama.train.examples import IGNORE_INDEX, iter_sft_examples

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
runner = CliRunner()

FINDINGS = [
    "The heart is normal in size. The lungs are clear.",
    "Mild cardiomegaly. Small left pleural effusion.",
    "Right lower lobe opacity. No pneumothorax.",
    "Degenerative changes of the spine. Lungs clear.",
]
IMPRESSIONS = ["No acute abnormality.", "Cardiomegaly with effusion.", "Pneumonia.", "No acute disease."]


def invoke(args: list[str]) -> str:
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_plant_canaries_copies_and_records_where() -> None:
    records = [{"id": f"r{i}", "findings": "f", "impression": "No acute disease."} for i in range(10)]
    planted, info = plant_canaries(records, 2, 3, seed=5)
    assert all(r["impression"] == "No acute disease." for r in records)  # the caller's records are untouched
    for canary in info["canaries"]:
        carriers = [r for r in planted if canary_text(canary["secret"]) in r["impression"]]
        assert sorted(r["id"] for r in carriers) == canary["ids"] and len(carriers) == 3
    assert plant_canaries(records, 0, 3, seed=5) == (records, None)


def test_copying_and_phi_measures() -> None:
    train = [{"impression": "No acute disease."}, {"impression": "No acute disease."}, {"impression": "Rare text."}]
    preds = [
        {"findings": "a", "reference": "No acute disease.", "prediction": "No acute disease."},
        {"findings": "b", "reference": "Effusion.", "prediction": "Rare text."},
        {"findings": "c", "reference": "Effusion.", "prediction": "Small effusion, new."},
        {"findings": "d", "reference": "Effusion.", "prediction": "Discussed with Dr. Quist."},
    ]
    c = copying(preds, train)
    assert c["verbatim"] == 0.5 and c["unique_copied"] == 1 and c["references_in_train"] == 0.25
    assert phi_in_outputs(preds) == {"n": 4, "cases_with_phi": 1, "spans": {"NAME": 1}}


def test_the_audit_attacks_the_prompt_training_built_without_the_records_own_impression() -> None:
    # Twins: r0 and r4 (and r1/r5 ...) share their findings; every impression is its record's own.
    train = [{"id": f"r{i}", "findings": FINDINGS[i % 4], "impression": f"Impression {i}: {IMPRESSIONS[i % 4]}"}
             for i in range(8)]  # fmt: skip
    tok = train_tokenizer(FINDINGS * 20 + [r["impression"] for r in train] * 20, vocab_size=300)
    style = PromptStyle(retrieval_k=3)
    loaded = LoadedModel(None, tok, style, TfidfRetriever(train), "tiny")
    prompts = training_prompts(loaded, train)
    for record, twin, prompt in zip(train, train[4:] + train[:4], prompts, strict=True):
        assert record["impression"] not in prompt and twin["impression"] not in prompt
        assert "Impression " in prompt  # other reports' impressions are shown, as in training
    # Token for token the prompts training built (iter_sft_examples: the masked part of each example).
    for (example, _), prompt in zip(iter_sft_examples(train, tok, style, 512, loaded.retriever), prompts, strict=True):
        masked = example.labels.count(IGNORE_INDEX)
        assert example.input_ids[:masked] == tok(prompt, add_special_tokens=False).input_ids


def test_a_canary_planted_many_times_is_found(tmp_path: Path) -> None:
    rows = [{"id": f"r{i}", "findings": FINDINGS[i % 4], "impression": IMPRESSIONS[i % 4]} for i in range(16)]
    for name, part in (("train", rows), ("test", rows[:4])):
        (tmp_path / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in part))
    base, lora = tmp_path / "base", tmp_path / "lora"
    (tmp_path / "base.yaml").write_text(
        f"recipe: pretrain_mini\noutput_dir: {base}\ndata: {{train: {tmp_path / 'train.jsonl'}, max_seq_len: 64}}\n"
        "mini: {vocab_size: 400, hidden_size: 64, intermediate_size: 128, num_hidden_layers: 2, "
        "num_attention_heads: 4, num_key_value_heads: 4}\n"
        "optim: {batch_size: 4, micro_batch_size: 4, max_steps: 3, lr: 1.0e-3}\n"
    )
    (tmp_path / "lora.yaml").write_text(
        f"recipe: lora_sft\noutput_dir: {lora}\nmodel: {{path: {base}}}\n"
        f"data: {{train: {tmp_path / 'train.jsonl'}, max_seq_len: 128, canaries: 1, canary_repeats: 12}}\n"
        "lora: {enabled: false}\noptim: {batch_size: 8, micro_batch_size: 8, max_steps: 40, lr: 1.0e-2}\n"
    )
    invoke(["train", "--config", str(tmp_path / "base.yaml")])
    invoke(["train", "--config", str(tmp_path / "lora.yaml")])
    assert (lora / CANARY_FILE).is_file()
    assert "pager" not in (tmp_path / "train.jsonl").read_text()  # planted in training copies only
    output = invoke(["audit", "--model", str(lora), "--data", str(tmp_path), "--samples", "8", "--candidates", "63"])
    figures = json.loads((tmp_path / "audit.json").read_text())
    canary = figures["canaries"]["canaries"][0]
    assert canary["repeats"] == 12
    assert canary["exposure"] == pytest.approx(6.0)  # ranked first of 64: log2(64) bits
    assert canary["control_exposure"] < 4.0  # a secret the model never saw ranks anywhere
    assert set(figures["extraction"]["by_k"]) == {"0", "4", "8"}
    assert "Canary exposure" in output and "Canary exposure" in (tmp_path / "audit.md").read_text()
