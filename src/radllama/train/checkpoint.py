"""Durable, atomic ``step-NNNNNN/`` checkpoints: weights, optimiser, scheduler, each rank's RNG
and the data position, plus what the run was (config, data hash) so resume can refuse a mismatch.

A checkpoint folder is built under a temporary name, every file and the folder are fsynced, and
only then is it renamed: after a crash or a power cut the folder is either complete or absent.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml

from radllama.errors import RadLlamaError
from radllama.provenance import file_digest

STATE_FILE = "trainer_state.json"
WEIGHTS_FILE = "weights.pt"
# Every file a complete checkpoint holds besides one rng file per rank; the state file is written last.
CHECKPOINT_FILES = (WEIGHTS_FILE, "optimizer.pt", "scheduler.pt", "config.yaml", STATE_FILE)
# Config keys that do not change what a run computes (where it writes, how often it logs or saves,
# how a global batch is cut into micro-batches, recomputing activations): a resume may change them.
# data.train and model.path are compared by content (provenance), not by path.
RESULT_NEUTRAL_KEYS = (
    "output_dir",
    "log_every",
    "checkpoint.every_steps",
    "checkpoint.keep_last",
    "optim.micro_batch_size",
    "model.gradient_checkpointing",
    "data.train",
    "data.validation",
    "data.cache_dir",  # where the examples are kept, not what they are (the cache is keyed by content)
    "model.path",
)


def step_dir(output_dir: Path, step: int) -> Path:
    """``output_dir/step-NNNNNN``."""
    return Path(output_dir) / f"step-{step:06d}"


def rng_file(rank: int) -> str:
    """Each process draws its own dropout masks: one RNG file per rank."""
    return f"rng_rank{rank}.pt"


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


def base_model_identity(folder: Path) -> str:
    """Cheap identity of a base model folder for the resume check: its config and tokenizer files'
    hashes and the weight files' names and sizes. Not :func:`radllama.provenance.model_fingerprint`
    (which hashes every weight byte, for outputs): hashing 13 GB on every resume would take minutes."""
    folder = Path(folder)
    if not folder.is_dir():
        return str(folder)  # a hub id: its name is all we know
    parts = []
    for p in sorted(folder.iterdir()):
        if p.is_file() and p.suffix in (".json", ".model", ".jinja"):
            parts.append(f"{p.name}:{file_digest(p)}")
        elif p.is_file() and p.suffix in (".safetensors", ".bin", ".pt"):
            parts.append(f"{p.name}:{p.stat().st_size}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(folder: Path) -> None:
    """fsync every file under ``folder`` and the folders themselves (data before the rename)."""
    for root, _, files in os.walk(folder):
        for name in files:
            _fsync(Path(root) / name)
        _fsync(Path(root))


def tmp_dir(output_dir: Path, step: int) -> Path:
    """``step-NNNNNN.tmp/``: where every rank writes its part of a checkpoint before the rename."""
    final = step_dir(output_dir, step)
    return final.with_name(final.name + ".tmp")


def fresh_tmp_dir(output_dir: Path, step: int) -> Path:
    """The empty :func:`tmp_dir` a checkpoint is built in (main process)."""
    tmp = tmp_dir(output_dir, step)
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def save_rank_rng(tmp: Path, rank: int) -> None:
    """Every process writes its own RNG state into the folder being built."""
    torch.save(rng_state(), tmp / rng_file(rank))


def finish_checkpoint(
    output_dir: Path,
    step: int,
    tmp: Path,
    weights: dict[str, torch.Tensor],
    optimizer_state: dict[str, Any] | None,
    scheduler: Any,
    state: dict[str, Any],
    config_yaml: str,
    keep_last: int,
) -> Path:
    """Complete ``tmp`` (main process), fsync it, rename it to ``step-NNNNNN/`` and prune old ones."""
    final = step_dir(output_dir, step)
    torch.save(weights, tmp / WEIGHTS_FILE)
    if optimizer_state is not None:  # DeepSpeed writes its own partitioned optimizer files
        torch.save(optimizer_state, tmp / "optimizer.pt")
    torch.save(scheduler.state_dict(), tmp / "scheduler.pt")
    (tmp / "config.yaml").write_text(config_yaml, encoding="utf-8")
    # The state file is written last: its presence marks a complete checkpoint.
    (tmp / STATE_FILE).write_text(json.dumps({**state, "step": step}, indent=2), encoding="utf-8")
    fsync_tree(tmp)
    shutil.rmtree(final, ignore_errors=True)
    tmp.rename(final)
    _fsync(Path(output_dir))  # the rename itself
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


def load_state(ckpt: Path, optimizer_file: bool = True) -> dict[str, Any]:
    """The checkpoint's ``trainer_state.json``, after checking every file is there."""
    try:
        state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise RadLlamaError(f"checkpoint {ckpt / STATE_FILE} is damaged (unreadable JSON)") from exc
    names = [n for n in CHECKPOINT_FILES if optimizer_file or n != "optimizer.pt"]
    names += [rng_file(r) for r in range(int(state.get("world_size", 1)))]
    for name in names:
        if not (ckpt / name).is_file():
            raise RadLlamaError(f"checkpoint {ckpt / name} is missing: delete {ckpt} and resume again")
    return state


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict):
        return {prefix: tree}
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        flat.update(_flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _with_defaults(tree: dict[str, Any]) -> dict[str, Any]:
    """A saved config read with today's schema: keys added since it was written take their defaults."""
    from radllama.train.config import TrainConfig, _build, config_to_dict

    try:
        return config_to_dict(_build(TrainConfig, tree, ""))
    except RadLlamaError:  # a key that no longer exists: compare the texts as they are
        return tree


def resume_differences(ckpt: Path, config_yaml: str, provenance: dict[str, Any], world_size: int) -> list[str]:
    """What differs between the run that wrote ``ckpt`` and this one, in anything that changes the
    result: config keys (except :data:`RESULT_NEUTRAL_KEYS`), the data and base model contents,
    and the number of processes (each rank draws its own dropout masks)."""
    state = json.loads((ckpt / STATE_FILE).read_text(encoding="utf-8"))
    saved = _flatten(_with_defaults(yaml.safe_load((ckpt / "config.yaml").read_text(encoding="utf-8")) or {}))
    now = _flatten(_with_defaults(yaml.safe_load(config_yaml) or {}))
    diffs = []
    for key in sorted(set(saved) | set(now)):
        if any(key == k or key.startswith(k + ".") for k in RESULT_NEUTRAL_KEYS):
            continue
        if saved.get(key) != now.get(key):
            diffs.append(f"{key}: {saved.get(key)!r} in the checkpoint, {now.get(key)!r} now")
    old = state.get("provenance", {})
    for key in sorted(set(old) | set(provenance)):
        if old.get(key) != provenance.get(key):
            was, now_ = str(old.get(key))[:12], str(provenance.get(key))[:12]
            diffs.append(f"{key} differs ({was} in the checkpoint, {now_} now)")
    saved_world = int(state.get("world_size", 1))
    if saved_world != world_size:
        diffs.append(f"processes: {saved_world} in the checkpoint, {world_size} now")
    return diffs
