"""Checkpoint and resume: a run killed with SIGKILL and resumed ends with the same adapter
as an uninterrupted run; half-written checkpoints are never resumed from."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from radllama.errors import RadLlamaError
from radllama.train.checkpoint import list_checkpoints
from radllama.train.config import load_config
from radllama.train.recipes import run
from radllama.train.tiny import build_tiny_model

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
STEPS = 20
TOLERANCE = 1e-6  # max |difference| of adapter weights; CPU runs are deterministic


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("resume")
    base = build_tiny_model("llama", root / "base")
    rows = [{"id": str(i), "findings": f"Mild cardiomegaly {i}.", "impression": f"Finding {i % 3}."} for i in range(12)]
    (root / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return {"root": root, "base": base}


def overrides(setup: dict[str, Path], out: Path, steps: int = STEPS) -> list[str]:
    # Dropout stays on (0.05): it draws from torch's RNG, so RNG restore is part of what is tested.
    return [
        f"model.path={setup['base']}",
        f"data.train={setup['root'] / 'train.jsonl'}",
        f"output_dir={out}",
        f"optim.max_steps={steps}",
        "optim.batch_size=4",
        "optim.micro_batch_size=2",
        "optim.lr=1e-2",
        "checkpoint.every_steps=4",
        "checkpoint.keep_last=2",
        "log_every=1",
    ]


def adapter(out: Path) -> dict[str, torch.Tensor]:
    return load_file(out / "adapter_model.safetensors")


def kill_at_first_checkpoint(config: Path, args: list[str], out: Path, timeout_s: float = 120) -> int:
    """Run ``radllama train`` in a process, SIGKILL it once ``out`` holds a checkpoint, and return
    the newest checkpoint's step (the run must not have finished)."""
    cmd = [sys.executable, "-m", "radllama.cli", "train", "--config", str(config), *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + timeout_s
    while not list_checkpoints(out) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "train_summary.json").exists()
    return int(list_checkpoints(out)[-1].name.split("-")[1])


def test_sigkill_then_resume_matches_uninterrupted(setup) -> None:
    killed = setup["root"] / "killed"
    config = setup["root"] / "lora.yaml"
    config.write_text("recipe: lora_sft\n")
    at_kill = kill_at_first_checkpoint(config, overrides(setup, killed), killed)
    assert 0 < at_kill < STEPS
    kept = json.loads((killed / f"step-{at_kill:06d}" / "trainer_state.json").read_text())["seconds"]

    summary = run(load_config(None, overrides(setup, killed)), resume=True)
    straight = setup["root"] / "straight"
    reference = run(load_config(None, overrides(setup, straight)))
    # The resumed run's time goes on from the checkpoint's, and the summary says it was resumed.
    assert summary["resumed_at_step"] == at_kill and "timed_from_step" not in summary
    assert summary["seconds"] >= round(kept, 2) > 0 and "resumed_at_step" not in reference

    a, b = adapter(killed), adapter(straight)
    assert a.keys() == b.keys()
    worst = max((a[k] - b[k]).abs().max().item() for k in a)
    print(f"killed at checkpoint step {at_kill}; max |adapter difference| {worst:.2e}")
    assert worst <= TOLERANCE
    assert summary["final_loss"] == pytest.approx(reference["final_loss"], abs=1e-6)
    log_steps = [json.loads(line)["step"] for line in (killed / "train_log.jsonl").read_text().splitlines()]
    assert log_steps == list(range(1, STEPS + 1))  # rows after the checkpoint were redone, not duplicated
    assert len(list_checkpoints(killed)) == 2  # keep_last


def test_half_written_checkpoints_are_ignored_or_named(setup, capsys) -> None:
    out = setup["root"] / "half"
    run(load_config(None, overrides(setup, out, steps=10)))  # checkpoints at steps 4 and 8 (10 is the end)
    good = list_checkpoints(out)
    assert [p.name for p in good] == ["step-000004", "step-000008"]
    # A save cut off mid-way: a .tmp folder, and a folder without trainer_state.json.
    (out / "step-000009.tmp").mkdir()
    (out / "step-000009").mkdir()
    (out / "step-000009" / "weights.pt").write_bytes(b"partial")
    assert list_checkpoints(out) == good
    # A checkpoint written before checkpoints kept their time: the summary says what its seconds cover.
    state_file = good[-1] / "trainer_state.json"
    state = json.loads(state_file.read_text())
    state.pop("seconds"), state.pop("eval_seconds")
    state_file.write_text(json.dumps(state))
    summary = run(load_config(None, overrides(setup, out, steps=10)), resume=True)
    text = capsys.readouterr().out
    assert "ignoring incomplete checkpoint" in text and "step-000009" in text and "step-000008" in text
    assert summary["steps"] == 10 and summary["resumed_at_step"] == summary["timed_from_step"] == 8
    # A complete-looking checkpoint that lost a file: one clear line naming it.
    (good[-1] / "optimizer.pt").unlink()
    with pytest.raises(RadLlamaError, match=r"step-000008/optimizer\.pt is missing"):
        run(load_config(None, overrides(setup, out, steps=10)), resume=True)


def test_resume_refuses_a_checkpoint_of_another_run_and_says_what_differs(setup) -> None:
    out = setup["root"] / "changed"
    run(load_config(None, overrides(setup, out, steps=6)))  # checkpoint at step 4
    ckpt = list_checkpoints(out)[-1]
    assert sorted(p.name for p in ckpt.iterdir()) == [
        "config.yaml",
        "optimizer.pt",
        "rng_rank0.pt",
        "scheduler.pt",
        "trainer_state.json",
        "weights.pt",
    ]
    assert json.loads((ckpt / "trainer_state.json").read_text())["world_size"] == 1
    changes = {
        "optim.lr=1e-3": r"optim\.lr: 0\.01 in the checkpoint, 0\.001 now",
        "lora.r=4": r"lora\.r: 8 in the checkpoint, 4 now",
        "optim.batch_size=2": r"optim\.batch_size: 4 in the checkpoint, 2 now",
        "seed=1": r"seed: 0 in the checkpoint, 1 now",
    }
    for change, message in changes.items():
        with pytest.raises(RadLlamaError, match=f"written by a different run.*{message}"):
            run(load_config(None, [*overrides(setup, out, steps=6), change]), resume=True)
    # The same data under another name resumes; the same name with other content does not.
    copy = setup["root"] / "train-copy.jsonl"
    copy.write_text((setup["root"] / "train.jsonl").read_text())
    edited = setup["root"] / "train-edited.jsonl"
    edited.write_text((setup["root"] / "train.jsonl").read_text().replace("Finding 1.", "Finding 4."))
    with pytest.raises(RadLlamaError, match=r"data\.train sha256 differs"):
        run(load_config(None, [*overrides(setup, out, steps=6), f"data.train={edited}"]), resume=True)
    # Keys that do not change the result may change: micro-batches, logging, checkpoint cadence.
    neutral = [f"data.train={copy}", "optim.micro_batch_size=1", "log_every=2", "checkpoint.every_steps=5"]
    summary = run(load_config(None, [*overrides(setup, out, steps=6), *neutral]), resume=True)
    assert summary["steps"] == 6


def test_checkpoint_files_are_fsynced_before_the_rename(setup, monkeypatch) -> None:
    import radllama.train.checkpoint as checkpoint

    events: list[tuple[str, str]] = []
    real_fsync, real_rename = os.fsync, Path.rename
    monkeypatch.setattr(
        checkpoint.os,
        "fsync",
        lambda fd: events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"))) or real_fsync(fd),
    )
    monkeypatch.setattr(
        Path, "rename", lambda self, target: events.append(("rename", str(self))) or real_rename(self, target)
    )
    out = setup["root"] / "durable"
    run(load_config(None, overrides(setup, out, steps=5)))  # one checkpoint, at step 4
    tmp = str(out / "step-000004.tmp")
    renamed = events.index(("rename", tmp))
    synced = {Path(path).name for kind, path in events[:renamed] if kind == "fsync"}
    assert {"weights.pt", "optimizer.pt", "scheduler.pt", "rng_rank0.pt", "config.yaml", "trainer_state.json"} <= synced
    assert "step-000004.tmp" in synced  # the folder entry itself
    assert ("fsync", str(out)) in events[renamed:]  # and the parent, so the rename is durable
