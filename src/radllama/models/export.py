"""``radllama export``: a trained adapter as a self-contained folder to serve or share.

* adapter only (default): ``adapter_config.json`` + ``adapter_model.safetensors`` + tokenizer +
  ``prompt_style.yaml`` (+ ``retrieval_index.jsonl``) — what vLLM's LoRA serving loads beside
  the unchanged base model.
* ``--merge``: the adapter folded into the base weights (``merge_and_unload``), saved with the
  tokenizer and prompt style — a plain Hugging Face model any transformers version loads.

The folder is built under a temporary name and renamed when complete.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json
from radllama.models.loading import (
    BASE_RECORD_FILE,
    RETRIEVAL_INDEX_FILE,
    TOKENIZER_FILES,
    check_adapter_base,
    load_for_inference,
)
from radllama.prompts import PROMPT_STYLE_FILE

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")
EXTRA_TOKENIZER_FILES = ("special_tokens_map.json", "chat_template.jinja", "tokenizer.model", "merges.txt")
MANIFEST_FILE = "radllama_export.json"


def _check_adapter(adapter_dir: Path) -> None:
    for name in ADAPTER_FILES:
        if not (adapter_dir / name).is_file():
            raise RadLlamaError(f"{adapter_dir / name} not found: --adapter must be a LoRA output folder")


def _fresh_tmp(out_dir: Path) -> Path:
    """A build folder of this process's own beside ``out_dir`` (``.<name>.<random>.tmp``): two
    exports to one place never write into, or delete, each other's files."""
    if out_dir.exists() and any(out_dir.iterdir()):
        raise RadLlamaError(f"{out_dir} exists and is not empty: choose a new --out folder")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.", suffix=".tmp"))


def _finish(tmp: Path, out_dir: Path) -> Path:
    try:
        tmp.rename(out_dir)  # onto nothing or an empty folder (checked before): atomic
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RadLlamaError(f"{out_dir} was written by another process meanwhile: choose a new --out folder") from exc
    return out_dir


def export_adapter(model_dir: Path, adapter_dir: Path, out_dir: Path, allow_other_base: bool = False) -> Path:
    """Copy the adapter with its tokenizer, prompt style, retrieval index and base record to ``out_dir``."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    _check_adapter(adapter_dir)
    check_adapter_base(model_dir, adapter_dir, allow_other_base)
    tmp = _fresh_tmp(out_dir)
    names = ADAPTER_FILES + TOKENIZER_FILES + EXTRA_TOKENIZER_FILES
    names += (PROMPT_STYLE_FILE, RETRIEVAL_INDEX_FILE, BASE_RECORD_FILE)
    copied = []
    for name in dict.fromkeys(names):
        src = adapter_dir / name
        if not src.is_file() and name in TOKENIZER_FILES + EXTRA_TOKENIZER_FILES:
            src = Path(model_dir) / name  # tokenizer saved only with the base
        if src.is_file():
            shutil.copy2(src, tmp / name)
            copied.append(name)
    atomic_write_json(
        tmp / MANIFEST_FILE, {"kind": "adapter", "base": str(model_dir), "adapter": str(adapter_dir), "files": copied}
    )
    return _finish(tmp, out_dir)


def export_merged(
    model_dir: Path, adapter_dir: Path, out_dir: Path, dtype: str = "auto", allow_other_base: bool = False
) -> Path:
    """Merge the adapter into the base weights and save a plain Hugging Face folder."""
    adapter_dir, out_dir = Path(adapter_dir), Path(out_dir)
    _check_adapter(adapter_dir)
    loaded = load_for_inference(
        model_dir, adapter_dir, device="cpu", dtype=dtype, merge=True, allow_other_base=allow_other_base
    )
    tmp = _fresh_tmp(out_dir)
    loaded.model.save_pretrained(tmp)
    loaded.tokenizer.save_pretrained(tmp)
    loaded.style.save(tmp)
    if (adapter_dir / RETRIEVAL_INDEX_FILE).is_file():
        shutil.copy2(adapter_dir / RETRIEVAL_INDEX_FILE, tmp / RETRIEVAL_INDEX_FILE)
    atomic_write_json(tmp / MANIFEST_FILE, {"kind": "merged", "base": str(model_dir), "adapter": str(adapter_dir)})
    return _finish(tmp, out_dir)
