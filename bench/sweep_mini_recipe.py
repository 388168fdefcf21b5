"""One radllama-mini recipe trial through the real recipes, scored on the *validation* split.

    python bench/sweep_mini_recipe.py --data runs/demo/data --out /tmp/sweep --name d192x6 \
        --base "mini.hidden_size=192 mini.num_hidden_layers=6" --lora "lora.r=16"

`--base` / `--lora` are key=value overrides of src/radllama/configs/mini-{base,lora}.yaml.
Prints ROUGE on validation (all, and cases whose findings are not verbatim in train) for greedy
and for the demo's MBR decoding, the stages' last validation losses and their times. The test
split is never read: recipe choices are made on validation only.
"""

from __future__ import annotations

import argparse
import json
import shlex
import time
from pathlib import Path

import numpy as np

from radllama.data.records import text_key
from radllama.demo import CONFIG_DIR
from radllama.generate.impressions import complete_impressions
from radllama.generate.mbr import MbrSettings
from radllama.inference import load_model
from radllama.io import read_jsonl
from radllama.rouge import rouge_many
from radllama.train.config import load_config
from radllama.train.curves import read_log
from radllama.train.recipes import run


def last_val_loss(folder: Path) -> float | None:
    """The last validation loss a stage logged (the loss on the weights it saved)."""
    losses = [r["val_loss"] for r in read_log(folder / "train_log.jsonl") if "val_loss" in r]
    return round(losses[-1], 4) if losses else None


def trial(data: Path, out: Path, base_overrides: list[str], lora_overrides: list[str]) -> dict:
    """Train base + LoRA with the given overrides; validation ROUGE and stage times."""
    base, lora = out / "base", out / "lora"
    t0 = time.perf_counter()
    run(
        load_config(
            CONFIG_DIR / "mini-base.yaml",
            [
                f"data.train={data}/train.jsonl",
                f"data.validation={data}/validation.jsonl",
                f"output_dir={base}",
                *base_overrides,
            ],
        )
    )
    t1 = time.perf_counter()
    run(
        load_config(
            CONFIG_DIR / "mini-lora.yaml",
            [
                f"data.train={data}/train.jsonl",
                f"data.validation={data}/validation.jsonl",
                "eval.rouge_samples=0",
                f"output_dir={lora}",
                f"model.path={base}",
                *lora_overrides,
            ],
        )
    )
    t2 = time.perf_counter()
    train = read_jsonl(data / "train.jsonl")
    val = read_jsonl(data / "validation.jsonl")
    loaded = load_model(base, lora, backend="transformers", batch_size=64)
    findings, refs = [r["findings"] for r in val], [r["impression"] for r in val]
    seen = {text_key(r["findings"]) for r in train}  # as the splits mark seen findings
    unseen = np.array([text_key(r["findings"]) not in seen for r in val])
    result: dict = {}
    # Greedy, and the demo's MBR (greedy + the prompt's retrieved impressions, no samples).
    for prefix, mbr in (("", None), ("mbr_", MbrSettings(samples=0))):
        preds = [c.text for c in complete_impressions(loaded, findings, 64, mbr=mbr)]
        scores = {k: np.array(v) for k, v in rouge_many(preds, refs).items()}
        result |= {f"{prefix}{k}": round(float(v.mean()), 4) for k, v in scores.items()}
        result |= {f"{prefix}{k}_unseen": round(float(v[unseen].mean()), 4) for k, v in scores.items()}
    return result | {
        "n": len(val),
        "n_unseen": int(unseen.sum()),
        "base_val_loss": last_val_loss(base),
        "lora_val_loss": last_val_loss(lora),
        "base_s": round(t1 - t0),
        "lora_s": round(t2 - t1),
    }


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, default=Path("runs/demo/data"))
    p.add_argument("--out", type=Path, default=Path("/tmp/radllama-sweep"))
    p.add_argument("--name", default="trial")
    p.add_argument("--base", default="", help="overrides for mini-base.yaml")
    p.add_argument("--lora", default="", help="overrides for mini-lora.yaml")
    a = p.parse_args()
    res = trial(a.data, a.out / a.name, shlex.split(a.base), shlex.split(a.lora))
    print(json.dumps({"name": a.name, "base": a.base, "lora": a.lora, **res}))
