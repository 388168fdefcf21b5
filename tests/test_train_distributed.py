"""Two-process DDP on CPU (gloo) through torchrun: same adapter format as one process, and the
same losses for the same global batch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import load_file

from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
LOSS_TOLERANCE = 1e-5  # relative; only the order of float additions differs between the runs
WEIGHT_TOLERANCE = 1e-5


def test_two_process_ddp_matches_single_process(tmp_path) -> None:
    base = build_tiny_model("llama", tmp_path / "base")
    rows = [{"id": str(i), "findings": f"Small effusion {i}.", "impression": f"Effusion {i % 3}."} for i in range(12)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "lora.yaml").write_text("recipe: lora_sft\n")

    def overrides(out: Path) -> list[str]:
        # LoRA dropout draws a different mask on each rank: off, so the runs are comparable.
        return [
            f"model.path={base}",
            f"data.train={tmp_path / 'train.jsonl'}",
            f"output_dir={out}",
            "lora.dropout=0",
            "optim.max_steps=4",
            "optim.batch_size=4",
            "optim.micro_batch_size=2",
            "optim.lr=1e-2",
            "log_every=1",
        ]

    ddp = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", "29517"]
    cmd += ["-m", "radllama.cli", "train", "--config", str(tmp_path / "lora.yaml"), *overrides(ddp)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("trainable parameters") == 2  # both ranks trained

    single = tmp_path / "single"  # one thread here too, like each rank (OMP_NUM_THREADS=1)
    run(load_config(None, overrides(single)))

    assert sorted(p.name for p in ddp.iterdir()) == sorted(p.name for p in single.iterdir())
    configs = [json.loads((d / "adapter_config.json").read_text()) for d in (ddp, single)]
    for cfg in configs:  # peft keeps target_modules as a set: its order varies between processes
        cfg["target_modules"] = sorted(cfg["target_modules"])
    assert configs[0] == configs[1]
    losses = [
        [json.loads(line)["loss"] for line in (d / "train_log.jsonl").read_text().splitlines()] for d in (ddp, single)
    ]
    assert len(losses[0]) == 4 and losses[0] == pytest.approx(losses[1], rel=LOSS_TOLERANCE)
    a, b = load_file(ddp / "adapter_model.safetensors"), load_file(single / "adapter_model.safetensors")
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"DDP vs single: losses {losses[0]} vs {losses[1]}; max |adapter difference| {worst:.2e}")
    assert a.keys() == b.keys() and worst <= WEIGHT_TOLERANCE
