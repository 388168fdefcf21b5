"""Runs llama.cpp's own ``convert_hf_to_gguf.py`` on a Hugging Face folder, naming a pre-tokenizer
that its table does not know (``python -m radllama.inference.gguf_convert LLAMA_CPP_DIR -- CONVERTER ARGS``).

llama.cpp identifies a BPE tokenizer's pre-tokenizer by hashing the token ids of a fixed text, so
the hash depends on the vocabulary: a tokenizer trained here (radllama-mini's byte-level BPE) is
never in its table, and the converter stops. For such a tokenizer we read the pre-tokenizer that
``tokenizer.json`` declares and, when llama.cpp implements the same one, name it (``tokenizer.ggml.pre``);
a tokenizer llama.cpp recognises keeps llama.cpp's own choice. Everything else (tensors, vocabulary,
merges, chat template, special tokens) is the converter's. Token-id parity with our tokenizer is
tested (tests/test_gguf_export.py) and measured on report text (bench/bench_gguf.py).

Run in its own process: the converter configures logging, exits on errors and imports a top-level
package named ``conversion`` from its folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

# Hugging Face pre-tokenizers that llama.cpp implements, by their tokenizer.json description.
# ByteLevel with its default regex is GPT-2's split (contractions, letters, digits, other, spaces):
# llama.cpp's "gpt-2".
GPT2_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}


def matching_pre_tokenizer(tokenizer_json: dict[str, Any]) -> str | None:
    """llama.cpp's name for the pre-tokenizer a ``tokenizer.json`` declares, or None if it has none."""
    if tokenizer_json.get("normalizer") is not None:
        return None  # llama.cpp's BPE applies no normalizer
    pre = tokenizer_json.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and {k: pre.get(k) for k in GPT2_BYTE_LEVEL} == GPT2_BYTE_LEVEL:
        return "gpt-2"
    return None


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m radllama.inference.gguf_convert LLAMA_CPP_DIR -- CONVERTER ARGS")
    source = Path(argv[0])
    sys.path[:0] = [str(source), str(source / "gguf-py")]
    import convert_hf_to_gguf
    from conversion.base import TextModel

    recognised = TextModel.get_vocab_base_pre

    def get_vocab_base_pre(self: Any, tokenizer: Any) -> str:
        try:
            return recognised(self, tokenizer)
        except NotImplementedError:
            path = Path(self.dir_model) / "tokenizer.json"
            name = matching_pre_tokenizer(json.loads(path.read_text(encoding="utf-8"))) if path.is_file() else None
            if name is None:
                raise
            print(f"radllama: {path} declares the pre-tokenizer llama.cpp calls {name!r}", file=sys.stderr)
            return name

    TextModel.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", *argv[2:]]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    main(sys.argv[1:])
