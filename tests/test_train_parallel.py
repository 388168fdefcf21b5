"""Choosing the parallel mode: accelerate's FSDP/DeepSpeed launch configs and unknown modes are
refused in one line (the multi-process runs themselves are in test_train_distributed.py)."""

from __future__ import annotations

import pytest
from accelerate import Accelerator

from radllama.errors import RadLlamaError
from radllama.train.config import load_config
from radllama.train.parallel import Parallel


@pytest.mark.parametrize("variable", ["ACCELERATE_USE_DEEPSPEED", "ACCELERATE_USE_FSDP"])
def test_accelerate_fsdp_and_deepspeed_configs_are_refused(monkeypatch, variable) -> None:
    monkeypatch.setenv(variable, "true")
    with pytest.raises(RadLlamaError, match="set parallel=fsdp or parallel=zero2"):
        Parallel(Accelerator(cpu=True), "ddp")


def test_one_process_runs_every_mode_as_the_plain_loop() -> None:
    assert [Parallel(Accelerator(cpu=True), m).mode for m in ("ddp", "fsdp", "zero2")] == ["ddp"] * 3


def test_unknown_parallel_mode_is_refused() -> None:
    with pytest.raises(RadLlamaError, match="parallel must be ddp, fsdp or zero2, not 'zero3'"):
        load_config(None, ["parallel=zero3"])


@pytest.mark.parametrize("world", [1, 2, 3, 4])
@pytest.mark.parametrize("micro", [1, 2, 3])
def test_every_rank_runs_the_same_number_of_micro_batches(world, micro) -> None:
    """Under FSDP every forward is a collective: a rank with one micro-batch fewer hangs the rest."""
    from radllama.train.parallel import rank_micro_batches

    for batch_size in range(1, 10):
        idx = list(range(100, 100 + batch_size))
        per_rank = [rank_micro_batches(idx, rank, world, micro) for rank in range(world)]
        assert len({len(m) for m in per_rank}) == 1 and len(per_rank[0]) >= 1, (batch_size, per_rank)
        real = [i for m in per_rank for chunk in m for i in chunk]
        assert sorted(real) == idx  # each example once; padding micro-batches are empty
        assert all(len(chunk) <= micro for m in per_rank for chunk in m)
