"""Loading any Hugging Face-format causal LM from a local folder, with an optional LoRA
adapter, its saved prompt style and (for retrieval-augmented prompts) its training index."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json, read_jsonl, write_jsonl
from radllama.prompts import PROMPT_STYLE_FILE, PromptStyle
from radllama.retrieval import TfidfRetriever

RETRIEVAL_INDEX_FILE = "retrieval_index.jsonl"
BASE_RECORD_FILE = "base_model.json"  # in an adapter folder: the base it was trained on (weights_digest)
WEIGHT_PATTERNS = ("*.safetensors", "*.bin", "*.pt", "*.gguf")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "tokenizer_config.json")


@dataclass
class LoadedModel:
    """A model ready for generation, with everything needed to prompt it identically.

    ``model`` is the transformers model (None where another engine holds the weights);
    ``backend`` the inference backend that decodes (see :mod:`radllama.inference`).
    """

    model: Any
    tokenizer: Any
    style: PromptStyle
    retriever: TfidfRetriever | None
    name: str
    backend: Any = None
    # The folder's retrieval index when its prompt shows no neighbours: read only when MBR asks for retrieved
    # candidates (:meth:`index_retriever`), so a load pays for no index it does not use.
    retrieval_index: Path | None = None

    def index_retriever(self) -> TfidfRetriever | None:
        """The retriever MBR's retrieved candidates come from: the prompt's own, else one built from the
        folder's index on first use; None where the folder has no index."""
        if self.retriever is None and self.retrieval_index is not None:
            self.retriever = TfidfRetriever(read_jsonl(self.retrieval_index))
        return self.retriever


def pick_dtype(name: str, device: str) -> Any:
    """``auto``: bf16 on a GPU that supports it, fp32 otherwise (CPU bf16 is slow to train)."""
    import torch

    if name == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    try:
        return {
            "fp32": torch.float32,
            "float32": torch.float32,
            "bf16": torch.bfloat16,
            "bfloat16": torch.bfloat16,
            "fp16": torch.float16,
            "float16": torch.float16,
        }[name]
    except KeyError as exc:
        raise RadLlamaError(f"unknown dtype '{name}' (auto, fp32, bf16, fp16)") from exc


def default_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _looks_local(path: str | Path) -> bool:
    """A path, not a hub id ("org/name"): absolute, relative with ./ or ~, or deeper than org/name."""
    text = str(path)
    return text.startswith(("/", ".", "~")) or text.count("/") > 1


def check_model_folder(path: Path) -> None:
    """Fail with one clear line when a folder is not a loadable HF causal LM."""
    path = Path(path)
    if not path.is_dir():
        raise RadLlamaError(f"model folder {path} does not exist")
    if not (path / "config.json").is_file():
        raise RadLlamaError(f"{path}: no config.json — not a Hugging Face model folder")
    if not any(any(path.glob(p)) for p in WEIGHT_PATTERNS):
        raise RadLlamaError(f"{path}: no weights (*.safetensors or *.bin) found")
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise RadLlamaError(f"{path}: no tokenizer files (tokenizer.json / tokenizer.model) found")


def check_remote_code(path: Path, trust_remote_code: bool) -> None:
    """Refuse, in one line, a folder whose config asks for its own Python code (ChatGLM, Baichuan, MOSS)."""
    import json

    config = Path(path) / "config.json"
    if trust_remote_code or not config.is_file():
        return
    try:
        auto_map = json.loads(config.read_text(encoding="utf-8")).get("auto_map")
    except (OSError, json.JSONDecodeError) as exc:
        raise RadLlamaError(f"{config} is not valid JSON ({exc})") from exc
    if auto_map:
        raise RadLlamaError(
            f"{config} needs the model's own Python code (auto_map); set model.trust_remote_code=true "
            "only if you trust its source"
        )


def load_tokenizer(path: str | Path, trust_remote_code: bool = False) -> Any:
    """The folder's tokenizer, with a pad token (eos when it has none) and left padding."""
    from transformers import AutoTokenizer

    if _looks_local(path) and not Path(path).is_dir():
        raise RadLlamaError(f"model folder {path} does not exist")
    if Path(path).is_dir() and not any((Path(path) / f).is_file() for f in TOKENIZER_FILES):
        raise RadLlamaError(f"{path}: no tokenizer files (tokenizer.json / tokenizer.model) found")
    tok = AutoTokenizer.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    if tok.pad_token is None:
        # Llama-2 ships no pad token; reuse eos (masked out of the loss anyway).
        tok.pad_token = tok.eos_token or tok.unk_token
    tok.padding_side = "left"  # batched generation appends on the right
    return tok


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """Every id that ends a reply: the model's ``generation_config.eos_token_id`` (Llama-3 lists
    end-of-turn and end-of-text) and the tokenizer's eos. Pass this, not ``tokenizer.eos_token_id``,
    as ``eos_token_id`` to ``model.generate``: a single id would let a Llama-3 reply run past its turn."""
    config = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = [config] if isinstance(config, int) else list(config or [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids


def folder_stop_ids(folder: str | Path, tokenizer: Any) -> list[int]:
    """:func:`stop_token_ids` from a model folder's ``generation_config.json`` (for engines that load
    no transformers model)."""
    from types import SimpleNamespace

    from transformers import GenerationConfig

    try:
        config = GenerationConfig.from_pretrained(str(folder))
    except OSError:  # no generation_config.json: the tokenizer's eos alone
        config = None
    return stop_token_ids(SimpleNamespace(generation_config=config), tokenizer)


def load_causal_lm(
    path: str | Path,
    *,
    dtype: str = "auto",
    device: str | None = None,
    trust_remote_code: bool = False,
    load_in_4bit: bool = False,
) -> Any:
    """Load the base model's weights (clear errors for missing files or unsupported options)."""
    import torch
    from transformers import AutoModelForCausalLM

    device = device or default_device()
    local = Path(path).exists() or _looks_local(path)
    if local:
        check_model_folder(Path(path))
        check_remote_code(Path(path), trust_remote_code)
    kwargs: dict[str, Any] = {"dtype": pick_dtype(dtype, device), "trust_remote_code": trust_remote_code}
    if load_in_4bit:
        kwargs["quantization_config"] = _bnb_4bit_config(device)
        kwargs["device_map"] = {"": torch.device(device).index or 0}  # this process's GPU
    try:
        model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
    except ValueError as exc:
        if "trust_remote_code" in str(exc):
            raise RadLlamaError(
                f"{path} needs its own modelling code; rerun with model.trust_remote_code=true "
                "only if you trust its source"
            ) from exc
        raise RadLlamaError(f"cannot load {path}: {exc}") from exc
    except OSError as exc:
        raise RadLlamaError(f"cannot load {path}: {exc}") from exc
    return model if load_in_4bit else model.to(device)


def _bnb_4bit_config(device: str) -> Any:
    if not device.startswith("cuda"):
        raise RadLlamaError("4-bit QLoRA needs a CUDA GPU; set model.load_in_4bit=false on this machine")
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:
        raise RadLlamaError("4-bit QLoRA needs bitsandbytes: pip install 'radllama[qlora]'") from exc
    import torch
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)


def record_base(adapter_dir: Path, base_dir: str | Path) -> None:
    """Write which base an adapter was trained on into the adapter folder (path and weights hash)."""
    from radllama.provenance import weights_digest

    base = Path(base_dir)
    sha = weights_digest(base) if base.is_dir() else None  # a hub id: its name is all we know
    atomic_write_json(Path(adapter_dir) / BASE_RECORD_FILE, {"path": str(base_dir), "weights_sha256": sha})


def check_adapter_base(model_dir: str | Path, adapter_dir: str | Path, allow_other_base: bool = False) -> None:
    """Refuse, in one line, an adapter on a base other than the one it was trained on.

    On a base of the same shape a foreign adapter loads and writes fluent nonsense; on another
    shape it fails deep inside peft. Adapters without a record (from elsewhere) are not checked.
    """
    import json

    from radllama.provenance import weights_digest

    record_file = Path(adapter_dir) / BASE_RECORD_FILE
    if allow_other_base or not record_file.is_file() or not Path(model_dir).is_dir():
        return
    try:
        record = json.loads(record_file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RadLlamaError(f"{record_file} is not valid JSON ({exc})") from exc
    wanted = record.get("weights_sha256")
    if wanted and wanted != weights_digest(model_dir):
        raise RadLlamaError(
            f"adapter {adapter_dir} was trained on {record.get('path')} (weights sha256 {wanted[:12]}), not on "
            f"{model_dir} (sha256 {weights_digest(model_dir)[:12]}): pass its own base as --model, or "
            "--allow-other-base for a deliberate transfer"
        )


def load_prompting(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    trust_remote_code: bool = False,
    allow_other_base: bool = False,
) -> LoadedModel:
    """Everything but the weights: tokenizer, prompt style and retrieval index, as saved with the
    adapter (or else the base). Any backend prompts the model identically from this. An adapter
    meets its own base only, unless ``allow_other_base`` (:func:`check_adapter_base`)."""
    source = Path(model_dir)
    if adapter_dir is not None:
        source = Path(adapter_dir)
        if not (source / "adapter_config.json").is_file():
            raise RadLlamaError(f"{source}: no adapter_config.json — not a LoRA adapter folder")
        check_adapter_base(model_dir, adapter_dir, allow_other_base)
    tokenizer = load_tokenizer(tokenizer_folder(model_dir, adapter_dir), trust_remote_code)
    style = PromptStyle.load(source) if (source / PROMPT_STYLE_FILE).is_file() else PromptStyle.load(model_dir)
    retriever, index = None, source / RETRIEVAL_INDEX_FILE
    if style.retrieval_k > 0:
        if not index.is_file():
            raise RadLlamaError(f"{source}: prompt style uses retrieval but {RETRIEVAL_INDEX_FILE} is missing")
        retriever = TfidfRetriever(read_jsonl(index))
    # Where the prompt shows none, MBR's retrieved candidates still come from the index (LoadedModel.index_retriever).
    kept = index if index.is_file() else None
    return LoadedModel(None, tokenizer, style, retriever, source.name, retrieval_index=kept)


def write_retrieval_index(folder: Path, records: Iterable[dict]) -> None:
    """``folder``'s retrieval index: the (training) records that generation and serving retrieve from."""
    rows = ({"id": r["id"], "findings": r["findings"], "impression": r["impression"]} for r in records)
    write_jsonl(Path(folder) / RETRIEVAL_INDEX_FILE, rows)


def tokenizer_folder(model_dir: str | Path, adapter_dir: str | Path | None = None) -> Path:
    """The adapter's tokenizer when it saved one (LoRA runs save theirs), else the base's."""
    if adapter_dir is not None and any((Path(adapter_dir) / f).is_file() for f in TOKENIZER_FILES):
        return Path(adapter_dir)
    return Path(model_dir)


def load_for_inference(
    model_dir: str | Path,
    adapter_dir: str | Path | None = None,
    *,
    device: str | None = None,
    dtype: str = "auto",
    merge: bool = True,
    trust_remote_code: bool = False,
    allow_other_base: bool = False,
) -> LoadedModel:
    """Base (+ adapter, merged for speed) as a transformers model, with the prompt style saved beside it."""
    loaded = load_prompting(model_dir, adapter_dir, trust_remote_code, allow_other_base)
    device = device or default_device()
    model = load_causal_lm(model_dir, dtype=dtype, device=device, trust_remote_code=trust_remote_code)
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, str(adapter_dir))
        except (RuntimeError, ValueError, KeyError) as exc:  # shapes or module names that do not match
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise RadLlamaError(f"adapter {adapter_dir} does not fit the base {model_dir}: {first}") from exc
        if merge:
            model = model.merge_and_unload()  # plain weights: no adapter cost per token
    loaded.model = model.eval()
    return loaded
