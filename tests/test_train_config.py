"""Training configs: YAML + key=value overrides, clear errors, and the paper's config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from radllama.errors import RadLlamaError
from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "configs" / "radiology-llama2-7b.yaml"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_unknown_key_names_dotted_path(tmp_path) -> None:
    with pytest.raises(RadLlamaError, match=r"optim\.learning_rate"):
        load_config(write(tmp_path, "optim:\n  learning_rate: 1.0e-4\n"))
    with pytest.raises(RadLlamaError, match=r"lora\.rank"):
        load_config(None, ["lora.rank=4"])


def test_overrides_are_typed(tmp_path) -> None:
    cfg = load_config(
        write(tmp_path, "optim:\n  lr: 1.0e-3\n"),
        ["optim.lr=3e-4", "optim.max_steps=7", "lora.target_modules=[query_key_value]", "prompt.system=null"],
    )
    assert cfg.optim.lr == pytest.approx(3e-4) and isinstance(cfg.optim.lr, float)
    assert cfg.optim.max_steps == 7
    assert cfg.lora.target_modules == ["query_key_value"]
    assert cfg.prompt.system is None


def test_bad_yaml_and_missing_file(tmp_path) -> None:
    with pytest.raises(RadLlamaError, match="invalid YAML"):
        load_config(write(tmp_path, "optim: [unclosed\n"))
    with pytest.raises(RadLlamaError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(RadLlamaError, match="key=value"):
        load_config(None, ["optim.lr"])
    with pytest.raises(RadLlamaError, match="multiple of"):
        load_config(None, ["optim.batch_size=10", "optim.micro_batch_size=4"])


def test_paper_config_values() -> None:
    cfg = load_config(PAPER)
    assert PAPER.read_text().startswith("# radllama train --config configs/radiology-llama2-7b.yaml")
    assert (cfg.recipe, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == ("lora_sft", 8, 16, 0.05)
    assert cfg.lora.target_modules == ["q_proj", "v_proj"]
    assert (cfg.optim.lr, cfg.optim.weight_decay, cfg.optim.batch_size) == (3e-4, 0.01, 128)
    assert cfg.model.dtype == "auto" and cfg.prompt.retrieval_k == 0 and cfg.data.max_seq_len >= 1024


@pytest.mark.slow
def test_paper_config_trains_tiny_llama_stand_in(tmp_path) -> None:
    base = build_tiny_model("llama", tmp_path / "tiny-llama")
    train = tmp_path / "train.jsonl"
    rows = [{"id": str(i), "findings": f"Lungs clear {i}.", "impression": "Normal."} for i in range(8)]
    train.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "out"
    cfg = load_config(PAPER, [f"model.path={base}", f"data.train={train}", f"output_dir={out}", "optim.max_steps=1"])
    summary = run(cfg)
    assert summary["steps"] == 1 and summary["trainable_parameters"] == 2 * 2 * 8 * (64 + 64)
    assert (out / "adapter_model.safetensors").is_file()
    assert json.loads((out / "adapter_config.json").read_text())["r"] == 8
