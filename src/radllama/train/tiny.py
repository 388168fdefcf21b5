"""Tiny random-weight models (2 layers, 64 wide) of the architectures the paper compares.

They exist to prove the model-agnostic path without downloads: each is saved as a plain
Hugging Face folder (config, safetensors, tokenizer) and trained, exported and loaded by
exactly the code a 7B model goes through. Used by the tests and by quick smoke runs.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from radllama.models.mini import train_tokenizer

# Architectures transformers implements natively, and the paper's models that use them.
FAMILIES = {
    "llama": "Llama, Llama-2(-chat), Alpaca, Ziya, BayLing",
    "gpt_neox": "Dolly, StableLM-alpha",
    "stablelm": "StableLM-2 (StableLmForCausalLM)",
}

INVENTED_TEXT = [
    "The heart is normal in size. The lungs are clear. No pleural effusion or pneumothorax.",
    "Mild cardiomegaly. Small left pleural effusion. No focal consolidation.",
    "Degenerative changes of the thoracic spine. No acute osseous abnormality.",
    "No acute cardiopulmonary abnormality.",
    "Right lower lobe opacity concerning for pneumonia.",
]


def _config(family: str, vocab: int, tok: Any) -> Any:
    from transformers import GPTNeoXConfig, LlamaConfig, StableLmConfig

    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    size = {"vocab_size": vocab, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2}
    size |= {"num_attention_heads": 4, "max_position_embeddings": 512}
    if family == "llama":
        return LlamaConfig(**size, num_key_value_heads=4, **ids)
    if family == "gpt_neox":
        return GPTNeoXConfig(**size, **ids)
    if family == "stablelm":
        return StableLmConfig(**size, num_key_value_heads=4, **ids)
    raise ValueError(f"unknown tiny family {family!r} (choose from {', '.join(FAMILIES)})")


def build_tiny_model(
    family: str,
    folder: Path,
    *,
    texts: Iterable[str] | None = None,
    chat_template: bool = True,
    seed: int = 0,
) -> Path:
    """Save a random tiny ``family`` model + BPE tokenizer to ``folder``; returns the folder.

    ``chat_template=False`` saves a tokenizer without a template (as Dolly's), so prompts
    take the Alpaca-style fallback.
    """
    import torch
    from transformers import AutoModelForCausalLM

    corpus = list(texts or INVENTED_TEXT) * 20
    tok = train_tokenizer(corpus, vocab_size=400)
    if not chat_template:
        tok.chat_template = None
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(_config(family, len(tok), tok))
    folder = Path(folder)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
