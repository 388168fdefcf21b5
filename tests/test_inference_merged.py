"""The merged-weights cache under concurrency: two processes asking for the same base + adapter
at once (two ``generate`` jobs, a server starting beside one) both get one whole merged folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import torch

from radllama.inference.merged import merged_key
from radllama.models.export import MANIFEST_FILE
from radllama.train.tiny import build_tiny_model

WORKER = """
import sys, time
from pathlib import Path
from radllama.inference.merged import merged_weights
root = Path(sys.argv[1])
(root / f"ready-{sys.argv[2]}").touch()
while not (root / "go").exists():
    time.sleep(0.005)
print(merged_weights(root / "base", root / "lora"))
"""


def test_two_processes_merging_the_same_adapter_both_get_it(tmp_path: Path) -> None:
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = build_tiny_model("llama", tmp_path / "base")
    torch.manual_seed(3)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora).save_pretrained(tmp_path / "lora")
    env = {**os.environ, "RADLLAMA_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(i)],
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )  # fmt: skip
        for i in range(2)
    ]
    deadline = time.monotonic() + 300
    while not all((tmp_path / f"ready-{i}").exists() for i in range(2)) and time.monotonic() < deadline:
        time.sleep(0.01)
    (tmp_path / "go").touch()  # both start merging at the same moment
    results = [p.communicate(timeout=300) for p in procs]
    for proc, (_, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr[-2000:]
    merged = tmp_path / "cache" / "merged" / merged_key(base, tmp_path / "lora")
    assert {stdout.strip().splitlines()[-1] for stdout, _ in results} == {str(merged)}
    assert (merged / MANIFEST_FILE).is_file() and (merged / "model.safetensors").is_file()
    assert sorted(p.name for p in merged.parent.iterdir()) == [merged.name]  # no temporary folder left
