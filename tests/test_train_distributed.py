"""Several processes on CPU (gloo): DDP through accelerate's launcher and configs/accelerate/ddp.yaml,
DDP over two "nodes" (two torchrun launchers) that meet through the c10d rendezvous as in
docs/training.md's multi-node command, FSDP2 and DeepSpeed ZeRO-2, each with a checkpoint and a
resume. Each gives the same losses and weights as one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from radllama.train.checkpoint import list_checkpoints
from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
LOSS_TOLERANCE = 1e-5  # relative; only the order of float additions differs between the runs
WEIGHT_TOLERANCE = 1e-5
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
DDP_CONFIG = Path(__file__).parents[1] / "configs" / "accelerate" / "ddp.yaml"


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("distributed")
    base = build_tiny_model("llama", root / "base")
    rows = [{"id": str(i), "findings": f"Small effusion {i}.", "impression": f"Effusion {i % 3}."} for i in range(12)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (root / "lora.yaml").write_text("recipe: lora_sft\n")
    return {"root": root, "base": base}


def overrides(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    # LoRA dropout draws a different mask on each rank: off, so the runs are comparable.
    return [
        f"model.path={setup['base']}",
        f"data.train={setup['root'] / 'train.jsonl'}",
        f"output_dir={out}",
        "lora.dropout=0",
        "optim.max_steps=4",
        "optim.batch_size=4",
        "optim.micro_batch_size=1",  # two micro-batches per rank: gradient sync held back once a step
        "optim.lr=1e-2",
        "log_every=1",
        *extra,
    ]


def train_cli(setup: dict[str, Path], out: Path, *extra: str) -> list[str]:
    return ["-m", "radllama.cli", "train", "--config", str(setup["root"] / "lora.yaml"), *overrides(setup, out, *extra)]


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", *args]


def check(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout + done.stderr


def losses(out: Path) -> list[float]:
    return [json.loads(line)["loss"] for line in (out / "train_log.jsonl").read_text().splitlines()]


def max_difference(a: Path, b: Path, name: str) -> float:
    x, y = load_file(a / name), load_file(b / name)
    assert x.keys() == y.keys()
    return max((x[k] - y[k]).abs().max().item() for k in x)


def resumed_difference(cmd: list[str], out: Path, name: str) -> float:
    """Rerun a finished ``cmd`` with ``--resume`` (from its last checkpoint): the largest change in ``name``."""
    finished = load_file(out / name)
    check(subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, timeout=300))
    resumed = load_file(out / name)
    return max((resumed[k] - finished[k]).abs().max().item() for k in finished)


def single_process(setup: dict[str, Path], name: str, *extra: str) -> Path:
    out = setup["root"] / name  # one thread here too, like each rank (OMP_NUM_THREADS=1)
    if not (out / "train_summary.json").is_file():
        run(load_config(None, overrides(setup, out, *extra)))
    return out


def test_two_process_ddp_matches_single_process(setup) -> None:
    """Through accelerate's launcher with the shipped configs/accelerate/ddp.yaml."""
    ddp = setup["root"] / "ddp"
    launch = [sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(DDP_CONFIG)]
    cmd = [*launch, "--num_processes", "2", "--main_process_port", "29517", *train_cli(setup, ddp)]
    text = check(subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300))
    assert text.count("trainable parameters") == 2  # both ranks trained
    single = single_process(setup, "single")

    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in (ddp, single)]
    for cfg in configs:  # peft keeps target_modules as a set: its order varies between processes
        cfg["target_modules"] = sorted(cfg["target_modules"])
    assert configs[0] == configs[1]
    assert len(losses(ddp)) == 4 and losses(ddp) == pytest.approx(losses(single), rel=LOSS_TOLERANCE)
    worst = max_difference(ddp, single, "adapter_model.safetensors")
    print(f"DDP vs single: losses {losses(ddp)} vs {losses(single)}; max |adapter difference| {worst:.2e}")
    assert worst <= WEIGHT_TOLERANCE


def test_two_nodes_through_the_c10d_rendezvous(setup) -> None:
    """Two torchrun launchers (one per "node"), with docs/training.md's rendezvous options on loopback."""
    out = setup["root"] / "two-nodes"
    rdzv = ["--nnodes", "2", "--nproc_per_node", "1", "--rdzv-backend", "c10d", "--rdzv-endpoint", "127.0.0.1:29531"]
    rdzv += ["--rdzv-id", "radllama-test"]
    nodes = [
        subprocess.Popen(
            torchrun(*rdzv, *train_cli(setup, out)),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for _ in range(2)
    ]
    results = []
    for node in nodes:
        stdout, stderr = node.communicate(timeout=300)
        results.append(check(subprocess.CompletedProcess(node.args, node.returncode, stdout, stderr)))
    assert all(r.count("trainable parameters") == 1 for r in results)  # one rank on each node
    single = single_process(setup, "single")
    assert losses(out) == pytest.approx(losses(single), rel=LOSS_TOLERANCE)
    assert max_difference(out, single, "adapter_model.safetensors") <= WEIGHT_TOLERANCE


def test_two_process_fsdp_matches_single_process_and_resumes(setup) -> None:
    """FSDP2 full fine-tuning: full-state checkpoint and final weights, resumed run equal."""
    fsdp = setup["root"] / "fsdp"
    extra = ("lora.enabled=false", "parallel=fsdp", "checkpoint.every_steps=2")
    cmd = torchrun("--nproc_per_node", "2", "--master_port", "29541", *train_cli(setup, fsdp, *extra))
    text = check(subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300))
    assert "FSDP2: 2 decoder layers and the model sharded over 2 processes" in text
    single = single_process(setup, "single-full", *extra)  # one process: parallel=fsdp has nothing to shard

    assert len(losses(fsdp)) == 4 and losses(fsdp) == pytest.approx(losses(single), rel=LOSS_TOLERANCE)
    assert losses(fsdp)[-1] < losses(fsdp)[0]
    full = load_file(fsdp / "model.safetensors")
    assert full.keys() == load_file(setup["base"] / "model.safetensors").keys()  # every weight gathered
    worst = max_difference(fsdp, single, "model.safetensors")
    print(f"FSDP vs single: losses {losses(fsdp)} vs {losses(single)}; max |weight difference| {worst:.2e}")
    assert worst <= WEIGHT_TOLERANCE
    [ckpt] = list_checkpoints(fsdp)
    assert {"rng_rank0.pt", "rng_rank1.pt"} <= {p.name for p in ckpt.iterdir()}
    assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 2

    # Resume from step 2 (the run's only checkpoint): steps 3-4 are redone from the full-state files.
    worst = resumed_difference(cmd, fsdp, "model.safetensors")
    print(f"FSDP resumed from step 2 vs uninterrupted: max |weight difference| {worst:.2e}")
    assert worst <= 1e-6
    assert [json.loads(line)["step"] for line in (fsdp / "train_log.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


def test_two_process_deepspeed_zero2_matches_single_process_and_resumes(setup) -> None:
    """DeepSpeed ZeRO-2 on CPU: the engine accumulates two micro-batches per rank and steps once per
    global batch (losses equal to one process); its partitioned optimiser state resumes exactly."""
    zero2 = setup["root"] / "zero2"
    extra = ("parallel=zero2", "checkpoint.every_steps=2")
    cmd = torchrun("--nproc_per_node", "2", "--master_port", "29551", *train_cli(setup, zero2, *extra))
    check(subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300))
    single = single_process(setup, "single")  # the same run as one process (LoRA, plain loop)

    assert len(losses(zero2)) == 4 and losses(zero2) == pytest.approx(losses(single), rel=LOSS_TOLERANCE)
    assert max_difference(zero2, single, "adapter_model.safetensors") <= WEIGHT_TOLERANCE
    [ckpt] = list_checkpoints(zero2)
    shards = sorted(p.name for p in (ckpt / "deepspeed").iterdir() if "optim_states" in p.name)
    assert len(shards) == 2  # one optimiser partition per rank

    worst = resumed_difference(cmd, zero2, "adapter_model.safetensors")
    print(f"ZeRO-2 resumed from step 2 vs uninterrupted: max |adapter difference| {worst:.2e}")
    assert worst <= 1e-6


def test_each_rank_restores_its_own_rng_state(setup) -> None:
    """LoRA dropout on: each rank draws its own masks (a stream of (seed, rank)), so a resume that
    gave every rank rank 0's RNG state would change the adapter."""
    import torch

    out = setup["root"] / "ddp-dropout"
    extra = ("lora.dropout=0.3", "checkpoint.every_steps=2")
    cmd = torchrun("--nproc_per_node", "2", "--master_port", "29561", *train_cli(setup, out, *extra))
    check(subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=300))
    [ckpt] = list_checkpoints(out)
    states = [torch.load(ckpt / f"rng_rank{r}.pt", weights_only=False)["torch"] for r in (0, 1)]
    assert not torch.equal(states[0], states[1])  # the ranks' generators are in different places

    finished = load_file(out / "adapter_model.safetensors")
    check(subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=ENV, timeout=300))
    resumed = load_file(out / "adapter_model.safetensors")
    assert max((resumed[k] - finished[k]).abs().max().item() for k in finished) <= 1e-6


def test_two_process_fsdp_with_uneven_ranks_matches_single_process(setup) -> None:
    """batch_size=3 over 2 ranks (2 and 1 micro-batches of 1): the short rank pads with a masked
    micro-batch instead of leaving the other's collectives waiting."""
    out = setup["root"] / "fsdp-uneven"
    extra = ("lora.enabled=false", "parallel=fsdp", "optim.batch_size=3", "optim.max_steps=2")
    cmd = torchrun("--nproc_per_node", "2", "--master_port", "29551", *train_cli(setup, out, *extra))
    # Its own process group: a hang (the failure this guards against) must not leave ranks behind.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV,
                            start_new_session=True)  # fmt: skip
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    check(subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr))
    single = single_process(setup, "single-uneven", *extra)
    assert losses(out) == pytest.approx(losses(single), rel=LOSS_TOLERANCE)
    assert max_difference(out, single, "model.safetensors") <= WEIGHT_TOLERANCE
