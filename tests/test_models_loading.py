"""Any Hugging Face causal LM from a local folder: the architectures of the paper's tables as
tiny random-weight models, LoRA with per-family targets, and clear errors for bad folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from radllama.errors import RadLlamaError
from radllama.models.loading import load_causal_lm, load_for_inference, load_tokenizer, pick_dtype
from radllama.prompts import PromptStyle
from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def llama(tmp_path_factory) -> Path:
    return build_tiny_model("llama", tmp_path_factory.mktemp("m") / "llama")


def write_records(path: Path, n: int = 8) -> Path:
    rows = [{"id": str(i), "findings": f"Mild cardiomegaly {i}.", "impression": "Cardiomegaly."} for i in range(n)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_pick_dtype_cpu_is_fp32() -> None:
    assert pick_dtype("auto", "cpu") is torch.float32
    assert pick_dtype("bf16", "cpu") is torch.bfloat16
    with pytest.raises(RadLlamaError, match="unknown dtype 'fp8'"):
        pick_dtype("fp8", "cpu")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("family", "targets"),
    [("llama", ["q_proj", "v_proj"]), ("gpt_neox", ["query_key_value"]), ("stablelm", ["q_proj", "v_proj"])],
)
def test_lora_sft_each_family_with_auto_targets(tmp_path, family, targets) -> None:
    # GPT-NeoX saved without a chat template (as Dolly): its prompts take the Alpaca fallback.
    base = build_tiny_model(family, tmp_path / family, chat_template=family != "gpt_neox")
    out = tmp_path / "out"
    overrides = [
        f"model.path={base}",
        f"data.train={write_records(tmp_path / 'train.jsonl')}",
        f"output_dir={out}",
        "lora.target_modules=auto",
        "optim.max_steps=2",
        "optim.batch_size=4",
        "optim.micro_batch_size=2",
        "data.max_seq_len=256",
    ]
    summary = run(load_config(None, overrides))
    assert summary["steps"] == 2 and summary["trainable_parameters"] > 0
    assert sorted(json.loads((out / "adapter_config.json").read_text())["target_modules"]) == sorted(targets)
    loaded = load_for_inference(base, out, device="cpu")
    assert loaded.model.config.model_type == family
    prompt = loaded.style.render(loaded.tokenizer, "Lungs clear.")
    assert prompt.endswith("### Response:\n") if family == "gpt_neox" else prompt.endswith("[/INST]")


def test_gradient_checkpointing_option_trains(tmp_path, llama) -> None:
    overrides = [
        f"model.path={llama}",
        f"data.train={write_records(tmp_path / 'train.jsonl', 4)}",
        f"output_dir={tmp_path / 'out'}",
        "model.gradient_checkpointing=true",
        "optim.max_steps=1",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
    ]
    summary = run(load_config(None, overrides))
    assert summary["steps"] == 1 and summary["final_loss"] == summary["final_loss"]  # not NaN


def test_remote_code_folder_needs_opt_in(tmp_path, llama) -> None:
    folder = tmp_path / "chatglm"
    shutil.copytree(llama, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_chatglm.ChatGLMForConditionalGeneration"}
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(RadLlamaError, match=r"config\.json needs the model's own Python code.*trust_remote_code"):
        load_causal_lm(folder, device="cpu")


def test_folder_without_weights_or_tokenizer(tmp_path, llama) -> None:
    no_weights = tmp_path / "no-weights"
    shutil.copytree(llama, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(RadLlamaError, match=r"no-weights: no weights"):
        load_causal_lm(no_weights, device="cpu")
    no_tok = tmp_path / "no-tok"
    shutil.copytree(llama, no_tok)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        (no_tok / name).unlink()
    with pytest.raises(RadLlamaError, match=r"no-tok: no tokenizer files"):
        load_tokenizer(no_tok)
    with pytest.raises(RadLlamaError, match="does not exist"):
        load_causal_lm(tmp_path / "missing", device="cpu")


def test_4bit_on_cpu_is_a_clear_error(llama) -> None:
    with pytest.raises(RadLlamaError, match="4-bit QLoRA needs a CUDA GPU"):
        load_causal_lm(llama, device="cpu", load_in_4bit=True)


def test_unknown_auto_target_type_is_clear(tmp_path, llama) -> None:
    from radllama.train.recipes import lora_targets

    cfg = load_config(None, ["lora.target_modules=auto"])
    model = load_causal_lm(llama, device="cpu")
    assert lora_targets(cfg, model) == ["q_proj", "v_proj"]
    model.config.model_type = "invented"
    with pytest.raises(RadLlamaError, match="does not know model type 'invented'"):
        lora_targets(cfg, model)


def test_wrong_lora_targets_are_clear(tmp_path, llama) -> None:
    overrides = [
        f"model.path={llama}",
        f"data.train={write_records(tmp_path / 'train.jsonl', 4)}",
        f"output_dir={tmp_path / 'out'}",
        "lora.target_modules=[query_key_value]",
    ]
    with pytest.raises(RadLlamaError, match=r"LoRA targets \['query_key_value'\] not found"):
        run(load_config(None, overrides))


def test_prompt_style_saved_beside_model_is_used(tmp_path, llama) -> None:
    PromptStyle(instruction="Summarise", system=None).save(llama)
    try:
        loaded = load_for_inference(llama, device="cpu")
        assert loaded.style.instruction == "Summarise"
    finally:
        (llama / "prompt_style.yaml").unlink()


@pytest.fixture(scope="module")
def adapter_on_llama(tmp_path_factory, llama) -> Path:
    root = tmp_path_factory.mktemp("adapter")
    overrides = [
        f"model.path={llama}",
        f"data.train={write_records(root / 'train.jsonl', 4)}",
        f"output_dir={root / 'out'}",
        "optim.max_steps=1",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
    ]
    run(load_config(None, overrides))
    return root / "out"


@pytest.mark.parametrize("shape", ["same shape", "other shape"])
def test_adapter_on_another_base_is_refused_naming_both(tmp_path, llama, adapter_on_llama, shape) -> None:
    from typer.testing import CliRunner

    from radllama.cli import app

    # Same shape: another seed, so every weight differs; other shape: another vocabulary.
    texts = None if shape == "same shape" else ["Entirely different words for another vocabulary."] * 5
    other = build_tiny_model("llama", tmp_path / "other", seed=1, texts=texts)
    with pytest.raises(RadLlamaError, match=r"trained on .*llama.* not on .*other") as err:
        load_for_inference(other, adapter_on_llama, device="cpu")
    assert "\n" not in str(err.value) and "--allow-other-base" in str(err.value)
    assert load_for_inference(llama, adapter_on_llama, device="cpu").model is not None  # its own base loads
    # The CLI refuses too (main() prints the error as one line); --allow-other-base is the deliberate transfer.
    args = ["generate", "--model", str(other), "--adapter", str(adapter_on_llama), "--findings", "Lungs clear."]
    result = CliRunner().invoke(app, [*args, "--backend", "transformers", "--max-new-tokens", "2"])
    assert isinstance(result.exception, RadLlamaError) and "trained on" in str(result.exception), result.output
    if shape == "same shape":
        result = CliRunner().invoke(
            app, [*args, "--backend", "transformers", "--max-new-tokens", "2", "--allow-other-base"]
        )
        assert result.exit_code == 0, result.output
