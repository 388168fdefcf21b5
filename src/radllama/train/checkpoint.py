"""Atomic ``step-NNNNNN/`` checkpoints: weights, optimiser, scheduler, RNG and position.

A checkpoint folder is built under a temporary name and renamed only when complete, so
a crash mid-save leaves no folder that resume could mistake for a good one.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch

from radllama.errors import RadLlamaError

STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "weights.pt"
# Every file a complete checkpoint holds; the state file is written last.
CHECKPOINT_FILES = (WEIGHTS_FILE, "optimizer.pt", "scheduler.pt", "rng.pt", "config.yaml", STATE_FILE)


def step_dir(output_dir: Path, step: int) -> Path:
    """``output_dir/step-NNNNNN``."""
    return Path(output_dir) / f"step-{step:06d}"


def rng_state() -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states: LoRA dropout draws from torch's."""
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    output_dir: Path,
    step: int,
    save_weights: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    state: dict[str, Any],
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Write ``step-NNNNNN/`` atomically and prune older checkpoints beyond ``keep_last``."""
    final = step_dir(output_dir, step)
    tmp = final.with_name(final.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_weights(tmp)  # writes WEIGHTS_FILE
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    torch.save(rng_state(), tmp / "rng.pt")
    (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
    # The state file is written last: its presence marks a complete checkpoint.
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2), encoding="utf-8")
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    for old in list_checkpoints(output_dir)[:-keep_last] if keep_last > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _is_complete(folder: Path) -> bool:
    return folder.is_dir() and not folder.name.endswith(".tmp") and (folder / STATE_FILE).is_file()


def list_checkpoints(output_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first (half-written ``.tmp`` folders are ignored)."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return sorted((p for p in root.glob("step-*") if _is_complete(p)), key=lambda p: p.name)


def incomplete_checkpoints(output_dir: Path) -> list[Path]:
    """Half-written checkpoint folders (``.tmp``, or no ``trainer_state.json``): never resumed from."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("step-*") if p.is_dir() and not _is_complete(p))


def latest_checkpoint(output_dir: Path) -> Path | None:
    """The newest complete checkpoint, or None."""
    ckpts = list_checkpoints(output_dir)
    return ckpts[-1] if ckpts else None


def load_state(ckpt: Path) -> dict[str, Any]:
    """The checkpoint's ``trainer_state.json``, after checking every file is there."""
    for name in CHECKPOINT_FILES:
        if not (ckpt / name).is_file():
            raise RadLlamaError(f"checkpoint {ckpt / name} is missing: delete {ckpt} and resume again")
    try:
        return json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RadLlamaError(f"checkpoint {ckpt / STATE_FILE} is damaged (unreadable JSON)") from exc
