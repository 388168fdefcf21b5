"""The real CLI end to end on tiny data: pretrain radllama-mini (2 layers, 64 wide), LoRA on
its output, generate, eval, and export (adapter only and merged)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from radllama.cli import app
from radllama.models.loading import load_for_inference

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


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    rows = [
        {"id": f"r{i}", "findings": FINDINGS[i % 4], "impression": IMPRESSIONS[i % 4], "mesh": ["normal"]}
        for i in range(16)
    ]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows[:4]))
    base, lora = root / "base", root / "lora"
    common = [f"data.train={root / 'train.jsonl'}", "optim.batch_size=4", "optim.micro_batch_size=2", "seed=0"]
    invoke(["train", "--config", str(_cfg(root, "base"))])
    invoke(["train", "--config", str(_cfg(root, "lora")), *common])
    return {"root": root, "base": base, "lora": lora}


def _cfg(root: Path, which: str) -> Path:
    text = {
        "base": (
            f"recipe: pretrain_mini\noutput_dir: {root / 'base'}\ndata: {{train: {root / 'train.jsonl'}, "
            "max_seq_len: 64}\nmini: {vocab_size: 400, hidden_size: 64, intermediate_size: 128, "
            "num_hidden_layers: 2, num_attention_heads: 4, num_key_value_heads: 4}\n"
            "optim: {batch_size: 4, micro_batch_size: 2, max_steps: 3, lr: 1.0e-3}\n"
        ),
        "lora": (
            f"recipe: lora_sft\noutput_dir: {root / 'lora'}\nmodel: {{path: {root / 'base'}}}\n"
            "data: {max_seq_len: 256}\noptim: {max_steps: 3, lr: 1.0e-2}\nprompt: {retrieval_k: 1}\n"
        ),
    }[which]
    path = root / f"{which}.yaml"
    path.write_text(text)
    return path


def test_both_recipes_write_their_outputs(trained) -> None:
    base, lora = trained["base"], trained["lora"]
    assert json.loads((base / "train_summary.json").read_text())["steps"] == 3
    assert (base / "model.safetensors").is_file() and (base / "tokenizer.json").is_file()
    summary = json.loads((lora / "train_summary.json").read_text())
    assert summary["steps"] == 3 and summary["examples"] == 16 and summary["trainable_parameters"] == 4096
    for name in ("adapter_config.json", "adapter_model.safetensors", "prompt_style.yaml", "retrieval_index.jsonl"):
        assert (lora / name).is_file(), name
    assert "lora_sft" in (lora / "config.yaml").read_text()


def test_generate_and_eval(trained) -> None:
    root = trained["root"]
    preds = root / "preds.jsonl"
    args = ["generate", "--model", str(trained["base"]), "--adapter", str(trained["lora"])]
    invoke([*args, "--input", str(root / "test.jsonl"), "--output", str(preds), "--max-new-tokens", "8"])
    rows = [json.loads(line) for line in preds.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["r0", "r1", "r2", "r3"] and all(r["status"] == "ok" for r in rows)
    invoke(["eval", "--predictions", str(preds), "--out", str(root / "eval"), "--resamples", "10"])
    metrics = json.loads((root / "eval" / "metrics.json").read_text())
    assert "rougeL" in json.dumps(metrics)


def test_export_adapter_only(trained) -> None:
    out = trained["root"] / "export-adapter"
    invoke(["export", "--model", str(trained["base"]), "--adapter", str(trained["lora"]), "--out", str(out)])
    for name in (
        "adapter_config.json",
        "adapter_model.safetensors",
        "tokenizer.json",
        "prompt_style.yaml",
        "retrieval_index.jsonl",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "radllama_export.json").read_text())["kind"] == "adapter"
    result = runner.invoke(
        app, ["export", "--model", str(trained["base"]), "--adapter", str(trained["lora"]), "--out", str(out)]
    )
    assert result.exit_code != 0  # never overwrites


def test_export_merged_matches_base_plus_adapter(trained) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    out = trained["root"] / "export-merged"
    invoke(["export", "--model", str(trained["base"]), "--adapter", str(trained["lora"]), "--out", str(out), "--merge"])
    merged = AutoModelForCausalLM.from_pretrained(out).eval()  # plain transformers, no peft
    tok = AutoTokenizer.from_pretrained(out)
    unmerged = load_for_inference(trained["base"], trained["lora"], device="cpu", merge=False).model.eval()
    ids = tok("The heart is normal in size.", return_tensors="pt").input_ids
    plain = load_for_inference(trained["base"], device="cpu").model.eval()
    with torch.no_grad():
        diff = (merged(ids).logits - unmerged(ids).logits).abs().max().item()
        effect = (plain(ids).logits - unmerged(ids).logits).abs().max().item()
    print(f"merged vs base+adapter max |dlogit| {diff:.2e}; adapter effect {effect:.2e}")
    assert diff < 1e-4 < effect / 10, (diff, effect)
    assert (out / "prompt_style.yaml").is_file() and (out / "retrieval_index.jsonl").is_file()


def test_an_adapter_whose_prompt_shows_no_neighbours_still_gives_mbr_its_retrieved_candidates(trained) -> None:
    from radllama.models.loading import RETRIEVAL_INDEX_FILE, load_prompting

    root = trained["root"]
    lora0 = root / "lora-k0"
    common = [f"data.train={root / 'train.jsonl'}", "optim.batch_size=4", "optim.micro_batch_size=2", "seed=0"]
    invoke(["train", "--config", str(_cfg(root, "lora")), *common, f"output_dir={lora0}", "prompt.retrieval_k=0"])
    assert (lora0 / RETRIEVAL_INDEX_FILE).is_file()  # the train split, though the prompt shows none
    loaded = load_prompting(trained["base"], lora0)
    assert loaded.retriever is None and loaded.index_retriever() is loaded.retriever is not None  # read when asked
    mbr = ["generate", "--model", str(trained["base"]), "--adapter", str(lora0), "--findings", FINDINGS[1],
           "--decode", "mbr", "--samples", "0", "--backend", "transformers"]  # fmt: skip
    # With the training impression of these very findings as a candidate, the consensus of 4 is one of the three
    # copies of it (the greedy answer of 3 steps' training is not).
    assert "Cardiomegaly with effusion." in invoke([*mbr, "--retrieved", "4"])
    (lora0 / RETRIEVAL_INDEX_FILE).unlink()  # an adapter trained before the index was always written
    result = runner.invoke(app, [*mbr, "--retrieved", "4"])
    assert result.exit_code == 1 and "has no retrieval index" in str(result.exception)
    assert "--retrieved 0" in str(result.exception)
