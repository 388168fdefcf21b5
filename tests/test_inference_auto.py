"""``--backend auto``: each measured ranking is tied to its BENCHMARKS.md section, a job takes the ranking
measured nearest below its size, runs on the fastest backend that loads its folder here, and one line says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from test_serve_support import tiny_model_dir

from radllama.errors import RadLlamaError
from radllama.inference import resolve_backend
from radllama.inference.auto import CPU_RANKINGS, Job, choose, installed_backends, is_gguf_export, ranking_for

BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
EVERY = frozenset({"transformers", "vllm", "llamacpp"})


def test_every_ranking_orders_all_three_backends_as_a_section_of_benchmarks_measured() -> None:
    sections = {line[3:] for line in BENCHMARKS.read_text(encoding="utf-8").splitlines() if line.startswith("## ")}
    for ranking in CPU_RANKINGS:
        assert ranking.section in sections, ranking
        assert sorted(ranking.fastest_first) == sorted(EVERY), ranking
    measured = [("offline", 1), ("offline", 576), ("offline", 13_676), ("server", 1), ("server", 8), ("server", 32)]
    assert sorted((r.job, r.size) for r in CPU_RANKINGS) == measured


def test_a_job_takes_the_ranking_measured_at_the_largest_size_not_above_its_own() -> None:
    assert [ranking_for(Job(None, clients=c)).size for c in (1, 7, 8, 31, 32, 500)] == [1, 1, 8, 8, 32, 32]
    assert [ranking_for(Job(n)).size for n in (1, 575, 576, 13_676)] == [1, 1, 576, 13_676]
    assert ranking_for(Job(0)).size == 1 and ranking_for(Job(None, clients=0)).size == 1  # below all: the smallest
    assert all(ranking_for(Job(n)).job == "offline" for n in (1, 576)) and ranking_for(Job(None)).job == "server"


@pytest.mark.parametrize("ranking", CPU_RANKINGS, ids=lambda r: f"{r.job}-{r.size}")
def test_auto_runs_the_fastest_measured_backend_that_loads_the_folder_and_says_why(ranking) -> None:
    job = (
        Job(None, clients=ranking.size, installed=EVERY)
        if ranking.job == "server"
        else Job(ranking.size, installed=EVERY)
    )
    hf_folder = choose(job)
    assert hf_folder.backend == next(b for b in ranking.fastest_first if b != "llamacpp")  # no GGUF: not llama.cpp
    assert ranking.section in hf_folder.reason and " > ".join(ranking.fastest_first) in hf_folder.reason
    assert ("llamacpp was faster but runs a GGUF export only" in hf_folder.reason) == (
        ranking.fastest_first[0] == "llamacpp"
    )
    assert choose(replace(job, installed=frozenset({"transformers"}))).backend == "transformers"
    gguf = choose(replace(job, gguf=True))
    assert gguf.backend == "llamacpp" and "GGUF export" in gguf.reason


def test_what_was_measured_decides_on_cpu_and_gpu_keeps_vllm_for_servers_and_large_jobs() -> None:
    assert choose(Job(None, clients=32, installed=EVERY)).backend == "vllm"
    assert choose(Job(576, installed=EVERY)).backend == "transformers"  # vLLM's start-up was not repaid at 576
    assert choose(Job(13_676, installed=EVERY)).backend == "vllm"  # and was at 13,676
    gpu = Job(None, on_gpu=True, installed=EVERY)
    assert choose(gpu).backend == "vllm" and "not measured here" in choose(gpu).reason
    assert choose(replace(gpu, cases=10)).backend == "transformers"
    assert choose(replace(gpu, installed=frozenset({"transformers"}))).backend == "transformers"


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
    here = Job(576, installed=installed_backends())
    assert resolve_backend("auto", 576, model_dir=tiny_model_dir()) == choose(here).backend
    assert capsys.readouterr().err.count("--backend auto: ") == 1
    assert resolve_backend("llamacpp", 576, model_dir=tiny_model_dir()) == "llamacpp"  # named: as asked, silently
    assert capsys.readouterr().err == ""
    with pytest.raises(RadLlamaError, match="--backend must be one of"):
        resolve_backend("ollama")
