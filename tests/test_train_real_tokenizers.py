"""Real Llama-family tokenizers (offline, from mistral_common's 32k SentencePiece model):
Llama-2 chat label masking, a few training steps, generation that stops at EOS, and
Llama-3-style models whose generation config lists several stop ids."""

from __future__ import annotations

import json

import pytest
import torch

from radllama.models.loading import load_for_inference, load_tokenizer, stop_token_ids
from radllama.prompts import PromptStyle
from radllama.train.config import load_config
from radllama.train.examples import IGNORE_INDEX, encode_sft
from radllama.train.recipes import run

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FINDINGS = "Heart size normal. Lungs clear. No pleural effusion."
IMPRESSION = "No acute cardiopulmonary disease."


def test_llama2_labels_mask_the_prompt_and_end_with_eos(llama2_real_tokenizer) -> None:
    tok = load_tokenizer(llama2_real_tokenizer)
    style = PromptStyle()
    example, cut = encode_sft(tok, style, FINDINGS, IMPRESSION, None, 512)
    prompt = style.render(tok, FINDINGS)
    prompt_ids = tok(prompt, add_special_tokens=False).input_ids
    # Prompt and answer tokenised apart give exactly the joint tokenisation (+ eos).
    joint = tok(prompt + style.answer_text(IMPRESSION), add_special_tokens=False).input_ids
    assert not cut and example.input_ids == joint + [tok.eos_token_id]
    n = len(prompt_ids)
    assert example.input_ids[:n] == prompt_ids and example.labels[:n] == [IGNORE_INDEX] * n
    answer = tok.convert_ids_to_tokens(example.labels[n:])
    # No stray "▁" between "[/INST]" and the answer: the answer's first piece carries the space.
    assert answer[0] == "▁No" and "▁" not in answer and answer[-1] == "</s>"
    assert tok.convert_ids_to_tokens(example.input_ids[n - 2 : n]) == ["INST", "]"]
    assert tok.decode(example.labels[n:-1]) == IMPRESSION
    assert example.input_ids[0] == tok.bos_token_id and example.input_ids.count(tok.bos_token_id) == 1


@pytest.mark.slow
def test_llama2_training_then_generation_stops_at_eos(llama2_real_tokenizer, tmp_path) -> None:
    rows = [{"id": str(i), "findings": f"{FINDINGS} Case {i}.", "impression": IMPRESSION} for i in range(8)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "full"
    overrides = [
        f"model.path={llama2_real_tokenizer}",
        f"data.train={tmp_path / 'train.jsonl'}",
        f"output_dir={out}",
        "lora.enabled=false",  # full fine-tuning: a few steps teach the random model one answer
        "optim.max_steps=40",
        "optim.batch_size=4",
        "optim.micro_batch_size=4",
        "optim.lr=1e-2",
        "optim.min_lr_ratio=1",
        "optim.warmup_ratio=0",
        "log_every=1",
    ]
    summary = run(load_config(None, overrides))
    losses = [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]
    assert losses[0] > 9 and summary["final_loss"] < losses[0] / 10  # ln(32000) = 10.4 at the start

    loaded = load_for_inference(out, device="cpu")
    assert len(loaded.tokenizer) == 32000
    prompt = loaded.style.render(loaded.tokenizer, f"{FINDINGS} Case 99.")
    ids = loaded.tokenizer(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    with torch.inference_mode():
        new = loaded.model.generate(ids, max_new_tokens=40, do_sample=False)[0, ids.shape[1] :].tolist()
    assert new[-1] == loaded.tokenizer.eos_token_id and len(new) < 40  # stopped at </s>, not at the limit
    assert loaded.tokenizer.decode(new, skip_special_tokens=True).strip() == IMPRESSION

    # The same through RadLlama's inference layer, on both backends (vLLM loads the SentencePiece model too).
    from radllama.generate.impressions import complete_impressions
    from radllama.inference import load_model

    for backend in ("transformers", "vllm"):
        served = load_model(out, backend=backend, device="cpu")
        try:
            (done,) = complete_impressions(served, [f"{FINDINGS} Case 99."], 40)
        finally:
            served.backend.close()
        assert (done.text, done.finish_reason) == (IMPRESSION, "stop"), backend
        assert done.completion_tokens == len(new), backend  # the answer's tokens and </s>


def greedy_tokens(model, ids: torch.Tensor, n: int) -> list[int]:
    """The greedy continuation, by plain forward passes (no stop ids involved)."""
    out = ids
    with torch.inference_mode():
        for _ in range(n):
            out = torch.cat([out, model(out).logits[:, -1:].argmax(-1)], dim=1)
    return out[0, ids.shape[1] :].tolist()


def force_token_at(model, free: list[int], step: int, token: int) -> None:
    """Make the greedy decoder emit ``token`` at ``step``: swap its output row with the row of
    the token it emits there (rows of the earlier tokens are untouched, so they stay argmax)."""
    other = free[step]
    assert token not in free[:step] and other not in free[:step]
    head = model.get_output_embeddings().weight
    with torch.no_grad():
        head[[token, other]] = head[[other, token]]


@pytest.mark.parametrize("stop", ["<|eot_id|>", "</s>"])
def test_llama3_style_each_stop_id_ends_decoding(llama3_style_model, stop) -> None:
    loaded = load_for_inference(llama3_style_model, device="cpu")
    tok, model = loaded.tokenizer, loaded.model
    eot, eos = tok.convert_tokens_to_ids("<|eot_id|>"), tok.eos_token_id
    assert model.generation_config.eos_token_id == [eot, eos]  # as saved: both end a turn
    assert stop_token_ids(model, tok) == [eot, eos]
    prompt = loaded.style.render(tok, FINDINGS)
    assert prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
    ids = tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
    free = greedy_tokens(model, ids, 8)
    assert not {eot, eos} & set(free)  # unforced, this random model never stops within 8 tokens
    # The latest step whose token is new (a random model may repeat itself): stop there.
    step = max(k for k in range(len(free)) if free[k] not in free[:k])
    force_token_at(model, free, step, tok.convert_tokens_to_ids(stop))
    with torch.inference_mode():
        new = model.generate(ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id)
    assert new[0, ids.shape[1] :].tolist() == [*free[:step], tok.convert_tokens_to_ids(stop)]


def test_stop_token_ids_without_generation_config(llama2_real_tokenizer, tmp_path) -> None:
    loaded = load_for_inference(llama2_real_tokenizer, device="cpu")
    assert stop_token_ids(loaded.model, loaded.tokenizer) == [2]
    loaded.model.generation_config.eos_token_id = None
    assert stop_token_ids(loaded.model, loaded.tokenizer) == [2]  # the tokenizer's eos still stops


@pytest.mark.slow
def test_training_a_model_whose_template_refuses_a_system_message_is_one_line(tmp_path) -> None:
    import subprocess
    import sys

    from conftest import MISTRAL_CHAT_TEMPLATE, build_real_tokenizer_llama

    base = build_real_tokenizer_llama(tmp_path / "mistral-like", chat_template=MISTRAL_CHAT_TEMPLATE)
    (tmp_path / "train.jsonl").write_text(json.dumps({"id": "1", "findings": FINDINGS, "impression": IMPRESSION}))
    (tmp_path / "lora.yaml").write_text("recipe: lora_sft\n")
    cmd = [sys.executable, "-m", "radllama.cli", "train", "--config", str(tmp_path / "lora.yaml")]
    cmd += [f"model.path={base}", f"data.train={tmp_path / 'train.jsonl'}", f"output_dir={tmp_path / 'out'}"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1 and "Traceback" not in done.stderr + done.stdout
    assert "chat template accepts no system message" in done.stderr + done.stdout
    assert "prompt.system=null" in done.stderr + done.stdout
    cmd.append("prompt.system=null")  # as the line says
    cmd.append("optim.max_steps=1")
    assert subprocess.run(cmd, capture_output=True, text=True, timeout=300).returncode == 0
