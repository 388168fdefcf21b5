"""radllama-mini: the embedded default model, built from scratch on training report text.

A byte-level BPE tokenizer (``tokenizers``) and a small ``LlamaForCausalLM`` — the same
architecture as Llama-2, so every code path (chat template, LoRA on q_proj/v_proj,
generation, serving) is the one a 7B model takes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from radllama.prompts import LLAMA2_CHAT_TEMPLATE

SPECIAL_TOKENS = ["<unk>", "<s>", "</s>", "<pad>"]
# Chat-format markers as single tokens: they are plain text to the template, but keeping
# each one token shortens every prompt of the small model.
CHAT_MARKERS = ["[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"]


@dataclass
class MiniModelArgs:
    """Size of radllama-mini (defaults: about 4M parameters)."""

    vocab_size: int = 2048
    hidden_size: int = 256
    intermediate_size: int = 688
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 4
    max_position_embeddings: int = 512
    rope_theta: float = 10000.0
    tie_word_embeddings: bool = True


def train_tokenizer(texts: Iterable[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Train a byte-level BPE tokenizer with a Llama-2 chat template on ``texts``."""
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS + CHAT_MARKERS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=MiniModelArgs.max_position_embeddings,
    )
    fast.chat_template = LLAMA2_CHAT_TEMPLATE
    return fast


def build_model(args: MiniModelArgs, tokenizer: PreTrainedTokenizerFast, seed: int = 0) -> LlamaForCausalLM:
    """A randomly initialised Llama of the given size, wired to ``tokenizer``'s special ids."""
    import torch

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=args.hidden_size,
        intermediate_size=args.intermediate_size,
        num_hidden_layers=args.num_hidden_layers,
        num_attention_heads=args.num_attention_heads,
        num_key_value_heads=args.num_key_value_heads,
        max_position_embeddings=args.max_position_embeddings,
        rope_theta=args.rope_theta,
        tie_word_embeddings=args.tie_word_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def save_pretrained(
    model: LlamaForCausalLM, tokenizer: PreTrainedTokenizerFast, folder: Path, state_dict: dict | None = None
) -> None:
    """Save model and tokenizer in Hugging Face format (loadable by plain transformers).

    ``state_dict``: the gathered full weights when the model itself is sharded (FSDP)."""
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(folder, state_dict=state_dict)
    tokenizer.save_pretrained(folder)
