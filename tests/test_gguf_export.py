"""GGUF export and the llama.cpp backend, on a tiny random-weight model with a LoRA adapter:
llama.cpp's own converter and quantiser through ``radllama export --format gguf``, greedy answers
equal to the transformers backend's, llama.cpp's tokenizer giving our token ids (so the
pre-tokenizer we name for it is the right one), the Ollama Modelfile checked by its content
(Ollama itself is not installed here), provenance, the CLI and the OpenAI-compatible server; the
converter unpacked into an empty cache from a source archive made here (no network)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import httpx
import llama_cpp
import openai
import pytest
from live_server import live_uvicorn
from test_inference_backends import _random_adapter
from test_io import make_tar
from test_serve_support import FINDINGS, tiny_model_dir

from radllama import io as rio
from radllama.errors import RadLlamaError
from radllama.generate.impressions import complete_impressions, encode_prompts, impression_prompts
from radllama.generate.mbr import MbrSettings
from radllama.inference import Decoding, gguf_export, load_model
from radllama.inference.gguf_convert import matching_pre_tokenizer
from radllama.inference.gguf_export import MODELFILE, QUANTS, export_gguf, gguf_name
from radllama.models.export import MANIFEST_FILE
from radllama.models.loading import load_prompting
from radllama.provenance import file_digest, model_fingerprint
from radllama.serve.app import create_app
from radllama.serve.service import ServeSettings, load_service

MAX = 10


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _random_adapter(tiny_model_dir(), tmp_path_factory.mktemp("lora") / "lora", seed=3)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory, adapter: Path) -> dict[str, Path]:
    """The tiny model + adapter exported in each quantisation (f16 by the CLI)."""
    root = tmp_path_factory.mktemp("gguf")
    r = cli("export", "--model", str(tiny_model_dir()), "--adapter", str(adapter), "--out", str(root / "f16"),
            "--format", "gguf", "--quant", "f16")  # fmt: skip
    assert r.returncode == 0, r.stderr
    for quant in QUANTS[1:]:
        export_gguf(tiny_model_dir(), adapter, root / quant, quant)
    return {q: root / q for q in QUANTS}


@pytest.fixture(scope="module")
def reference(adapter: Path) -> list:
    """Greedy completions of the transformers backend (fp32, adapter merged)."""
    loaded = load_model(tiny_model_dir(), adapter, backend="transformers", device="cpu")
    return complete_impressions(loaded, FINDINGS[:12], MAX)


@pytest.mark.slow
def test_f16_gguf_answers_as_transformers(exported: dict[str, Path], reference: list) -> None:
    assert len({c.text for c in reference}) > 3  # prompt-dependent answers: a real comparison
    loaded = load_model(exported["f16"], backend="llamacpp")
    try:
        got = complete_impressions(loaded, FINDINGS[:12], MAX)
    finally:
        loaded.backend.close()
    assert got == reference  # text, prompt tokens, completion tokens, finish reason


@pytest.mark.slow
def test_quantised_files_are_llama_cpp_quantisations_that_answer(exported: dict[str, Path]) -> None:
    sizes = {}
    for quant, file_type in (("f16", 1), ("q8_0", 7), ("q4_k_m", 15)):  # llama_ftype numbers
        path = exported[quant] / gguf_name(quant)
        sizes[quant] = path.stat().st_size
        llm = llama_cpp.Llama(str(path), vocab_only=True, verbose=False)
        assert llm.metadata["general.file_type"] == str(file_type), quant
        llm.close()
    assert sizes["f16"] > sizes["q8_0"] > sizes["q4_k_m"]
    loaded = load_model(exported["q4_k_m"], backend="llamacpp")
    try:
        assert all(c.text for c in complete_impressions(loaded, FINDINGS[:3], MAX))
    finally:
        loaded.backend.close()


@pytest.mark.slow
def test_llama_cpp_tokenizer_gives_our_token_ids(exported: dict[str, Path]) -> None:
    """The pre-tokenizer named for the converter ('gpt-2') splits as ours: llama.cpp's tokenizer
    turns our rendered prompts (chat markers, digits, punctuation, newlines) into our ids."""
    loaded = load_model(exported["f16"], backend="llamacpp")
    try:
        prompts = impression_prompts(loaded, FINDINGS[:8]) + ["Ribs 3-4: 12 mm, 'R' / L?\n\n  x  y\t z\n"]
        ours = encode_prompts(loaded, prompts, MAX)
        llm = loaded.backend.engine.llm
        theirs = [llm.tokenize(p.encode(), add_bos=False, special=True) for p in prompts]
        assert theirs == ours
        assert llm.metadata["tokenizer.ggml.pre"] == "gpt-2"
    finally:
        loaded.backend.close()


def _modelfile(folder: Path) -> dict:
    text = (folder / MODELFILE).read_text()
    return {
        "from": re.search(r"^FROM (.+)$", text, re.M).group(1),
        "template": re.search(r'^TEMPLATE """(.*?)"""$', text, re.M | re.S).group(1),
        "system": re.search(r'^SYSTEM """(.*?)"""$', text, re.M | re.S).group(1),
        "stop": re.findall(r'^PARAMETER stop "(.+)"$', text, re.M),
        "params": dict(re.findall(r"^PARAMETER (\w+) (\S+)$", text, re.M)),
    }


@pytest.mark.slow
def test_modelfile_carries_our_chat_template_system_prompt_and_stops(exported: dict[str, Path]) -> None:
    """Checked by content (no Ollama here): each branch of the Go template, its actions replaced by
    the texts Ollama puts there, is what our chat template renders."""
    folder = exported["q4_k_m"]
    mf = _modelfile(folder)
    prompting = load_prompting(folder)
    tok, style = prompting.tokenizer, prompting.style
    assert (folder / mf["from"]).resolve() == (folder / gguf_name("q4_k_m")).resolve()
    assert mf["system"] == style.system
    assert mf["stop"] == ["</s>"]
    assert mf["params"]["temperature"] == "0" and mf["params"]["num_ctx"] == "512"
    first, later = re.search(r"\{\{ if and \$first \$\.System \}\}(.*?)\{\{ else \}\}(.*?)\{\{ end \}\}",
                             mf["template"], re.S).groups()  # fmt: skip
    answer = re.search(r'\{\{ else if eq \.Role "assistant" \}\}(.*?)\{\{ end \}\}', mf["template"], re.S).group(1)
    user = "Findings: the heart is normal."
    msgs = [{"role": "system", "content": style.system}, {"role": "user", "content": user}]
    assert first.replace("{{ $.System }}", style.system).replace("{{ .Content }}", user) == style.render_messages(
        tok, msgs
    )
    assert later.replace("{{ .Content }}", user) == style.render_messages(tok, msgs[1:])
    turn = [*msgs[1:], {"role": "assistant", "content": "No acute disease."}]
    assert later.replace("{{ .Content }}", user) + answer.replace(
        "{{ .Content }}", "No acute disease."
    ) == tok.apply_chat_template(turn, tokenize=False)


@pytest.mark.slow
def test_export_records_provenance_and_prompting(exported: dict[str, Path], adapter: Path) -> None:
    folder = exported["q8_0"]
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["kind"] == "gguf" and manifest["quant"] == "q8_0"
    assert manifest["source"] == model_fingerprint(tiny_model_dir(), adapter)
    assert manifest["gguf"]["sha256"] == file_digest(folder / gguf_name("q8_0"))
    assert manifest["versions"]["llama-cpp-python"] == llama_cpp.__version__
    for name in ("prompt_style.yaml", "retrieval_index.jsonl", "tokenizer.json", "generation_config.json"):
        assert (folder / name).is_file(), name
    assert sorted(p.name for p in folder.glob("*.gguf")) == [gguf_name("q8_0")]  # no intermediate left


@pytest.mark.slow
def test_generate_cli_and_mbr_on_llamacpp(exported: dict[str, Path], reference: list) -> None:
    r = cli("generate", "--model", str(exported["f16"]), "--findings", FINDINGS[0], "--backend", "llamacpp",
            "--max-new-tokens", str(MAX))  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == reference[0].text
    loaded = load_model(exported["f16"], backend="llamacpp")
    try:
        mbr = MbrSettings(samples=3, temperature=1.0, seed=5)
        a = complete_impressions(loaded, FINDINGS[:2], MAX, mbr=mbr)
        b = complete_impressions(loaded, FINDINGS[:2], MAX, mbr=mbr)
        (ids,) = encode_prompts(loaded, impression_prompts(loaded, FINDINGS[:1]), MAX)
        sampled = loaded.backend.generate([ids] * 3, Decoding(MAX, mbr.temperature, mbr.top_p, seed=mbr.seed))
    finally:
        loaded.backend.close()
    assert [c.text for c in a] == [c.text for c in b]  # seeded: reproducible
    assert len({c.text for c in sampled}) > 1  # one seed per row: repeated prompts give different samples


@pytest.mark.slow
def test_serve_llamacpp_answers_the_openai_client(exported: dict[str, Path], reference: list) -> None:
    service = load_service(exported["f16"], None, ServeSettings(), backend="llamacpp")
    with live_uvicorn(create_app(service)) as base:
        client = openai.OpenAI(base_url=f"{base}/v1", api_key="unused", max_retries=0, timeout=120)
        assert httpx.get(f"{base}/health").json()["backend"] == "llamacpp"
        r = httpx.post(f"{base}/v1/impressions", json={"findings": FINDINGS[:3], "max_tokens": MAX}, timeout=60)
        assert r.json()["impressions"] == [c.text for c in reference[:3]]
        chunks = client.chat.completions.create(
            model="radllama", messages=[{"role": "user", "content": FINDINGS[0]}], max_tokens=MAX, stream=True
        )
        streamed = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        whole = client.chat.completions.create(
            model="radllama", messages=[{"role": "user", "content": FINDINGS[0]}], max_tokens=MAX
        )
        assert streamed == whole.choices[0].message.content and streamed
    service.stop()


def test_pre_tokenizer_is_named_only_when_llama_cpp_has_the_same() -> None:
    gpt2 = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    assert matching_pre_tokenizer({"normalizer": None, "pre_tokenizer": gpt2}) == "gpt-2"
    assert matching_pre_tokenizer({"normalizer": None, "pre_tokenizer": {**gpt2, "use_regex": False}}) is None
    assert matching_pre_tokenizer({"normalizer": None, "pre_tokenizer": {**gpt2, "add_prefix_space": True}}) is None
    assert matching_pre_tokenizer({"normalizer": {"type": "NFC"}, "pre_tokenizer": gpt2}) is None
    assert matching_pre_tokenizer({"normalizer": None, "pre_tokenizer": {"type": "Metaspace"}}) is None


def test_bad_quant_and_gguf_folder_with_adapter_are_one_line_errors(tmp_path: Path) -> None:
    from radllama.inference.llamacpp_backend import gguf_model

    with pytest.raises(RadLlamaError, match="--quant must be one of"):
        export_gguf(tiny_model_dir(), None, tmp_path / "x", "q5_1")
    (tmp_path / "g").mkdir()
    (tmp_path / "g" / "model-f16.gguf").write_bytes(b"GGUF")
    with pytest.raises(RadLlamaError, match="drop --adapter"):
        gguf_model(tmp_path / "g", tmp_path)


SDIST_TOP = "llama_cpp_python-0.0.0"
CONVERTER = ["LICENSE", "conversion/__init__.py", "convert_hf_to_gguf.py", "gguf-py/gguf/__init__.py"]


def _sdist(tmp_path: Path, extra: tuple[tuple[str, str, str], ...] = ()) -> Path:
    """A llama-cpp-python source archive in miniature: the converter's files among others."""
    llama = f"{SDIST_TOP}/vendor/llama.cpp"
    members = [("file", f"{llama}/{name}", f"# {name}\n") for name in CONVERTER]
    members += [("file", f"{llama}/src/llama.cpp", "// not the converter\n"), ("file", f"{SDIST_TOP}/README.md", "")]
    return make_tar(tmp_path / f"{SDIST_TOP}.tar.gz", [*members, *extra])


@pytest.fixture
def empty_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RADLLAMA_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("RADLLAMA_LLAMA_CPP", raising=False)
    return tmp_path / "cache"


NO_FILTER = pytest.mark.skipif(not rio.TAR_DATA_FILTER, reason="this Python has no extraction filters")


@pytest.mark.parametrize("data_filter", [pytest.param(True, marks=NO_FILTER), False], ids=["data-filter", "own-checks"])
def test_converter_is_unpacked_once_into_an_empty_cache(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch, data_filter: bool
) -> None:
    monkeypatch.setattr(rio, "TAR_DATA_FILTER", data_filter)  # False: as on Debian 12's Python 3.11.2
    fetched = []

    def download(version: str, into: Path) -> Path:
        fetched.append(version)
        return _sdist(tmp_path)

    monkeypatch.setattr(gguf_export, "_download_source", download)
    folder = gguf_export.converter_folder()
    assert folder == empty_cache / "llama.cpp" / llama_cpp.__version__ and fetched == [llama_cpp.__version__]
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == CONVERTER
    assert gguf_export.converter_folder() == folder and len(fetched) == 1  # cached: not fetched again
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging folder left


def test_a_hostile_source_archive_leaves_the_cache_empty(
    tmp_path: Path, empty_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(rio, "TAR_DATA_FILTER", False)  # as on Debian 12's Python 3.11.2
    evil = (("file", f"{SDIST_TOP}/vendor/llama.cpp/gguf-py/../../../../evil.py", "x"),)
    monkeypatch.setattr(gguf_export, "_download_source", lambda version, into: _sdist(tmp_path, evil))
    with pytest.raises(RadLlamaError, match="refused to extract .*'..' in its path"):
        gguf_export.converter_folder()
    assert list((empty_cache / "llama.cpp").iterdir()) == [] and not (tmp_path / "evil.py").exists()
