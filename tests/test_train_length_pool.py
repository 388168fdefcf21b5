"""Length-pooled global batches: every example once an epoch, far less padding, resumable."""

from __future__ import annotations

import numpy as np

from radllama.train.loop import step_indices


def _padding(lengths: np.ndarray, idx: list[int]) -> float:
    return 1 - lengths[idx].sum() / (len(idx) * lengths[idx].max())


def test_pooled_batches_cover_the_epoch_with_little_padding() -> None:
    lengths = np.random.default_rng(1).integers(40, 380, size=1003)
    steps = 1003 // 8
    pooled = [step_indices(1003, 8, 0, s, lengths) for s in range(steps)]
    flat = [i for batch in pooled for i in batch]
    assert len(flat) == len(set(flat)) == steps * 8  # each example at most once, batches full
    plain = [step_indices(1003, 8, 0, s) for s in range(steps)]
    assert np.mean([_padding(lengths, b) for b in pooled]) < 0.1 < np.mean([_padding(lengths, b) for b in plain])
    assert step_indices(1003, 8, 0, 77, lengths) == pooled[77]  # a pure function of the step: exact resume
    assert step_indices(1003, 8, 0, steps + 3, lengths) != pooled[3]  # a new epoch, a new order


def test_equal_lengths_keep_the_plain_permutation() -> None:
    same = np.full(500, 256)
    assert all(step_indices(500, 8, 3, s, same) == step_indices(500, 8, 3, s) for s in range(70))
