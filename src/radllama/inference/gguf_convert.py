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
package named ``conversion`` from its folder. The hook is ``conversion.base.TextModel.get_vocab_base_pre``,
an internal of recent llama.cpp (the one llama-cpp-python 0.3.36 vendors); a checkout without it is
refused in one line (``radllama: ...`` on stderr, exit status 1).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError

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


# How this process reports a refusal on stderr, for gguf_export.convert to pass on as one line.
ERROR_PREFIX = "radllama: "
# What we patch, and a release whose llama.cpp has it (the llama-cpp-python pinned in pyproject).
HOOK = "conversion.base.TextModel.get_vocab_base_pre"
WORKS_WITH = "the llama.cpp of llama-cpp-python 0.3.36"


def text_model_class(source: Path) -> Any:
    """``TextModel`` of the llama.cpp checkout ``source`` (on ``sys.path``), or one line naming the checkout,
    what it lacks and what works. Older llama.cpp keeps the class in convert_hf_to_gguf.py itself."""

    def missing(what: str) -> RadLlamaError:
        return RadLlamaError(f"llama.cpp checkout {source} has no {what} (radllama hooks {HOOK} to name the "
                             f"pre-tokenizer): use {WORKS_WITH}, or unset RADLLAMA_LLAMA_CPP to fetch it")  # fmt: skip

    try:
        from conversion import base
    except ModuleNotFoundError as exc:
        if exc.name not in ("conversion", "conversion.base"):
            raise  # the checkout is there, something it needs is not: the converter's own error
        raise missing("conversion/base.py") from exc
    model = getattr(base, "TextModel", None)
    if model is None or not callable(getattr(model, "get_vocab_base_pre", None)):
        raise missing(HOOK)
    return model


def main(argv: list[str]) -> None:
    if len(argv) < 2 or argv[1] != "--":
        raise SystemExit("usage: python -m radllama.inference.gguf_convert LLAMA_CPP_DIR -- CONVERTER ARGS")
    source = Path(argv[0])
    sys.path[:0] = [str(source), str(source / "gguf-py")]
    text_model = text_model_class(source)  # before the converter's own import of it, to refuse in one line
    import convert_hf_to_gguf

    recognised = text_model.get_vocab_base_pre

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

    text_model.get_vocab_base_pre = get_vocab_base_pre
    sys.argv = ["convert_hf_to_gguf.py", *argv[2:]]
    convert_hf_to_gguf.main()


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except RadLlamaError as exc:
        raise SystemExit(f"{ERROR_PREFIX}{exc}") from None
