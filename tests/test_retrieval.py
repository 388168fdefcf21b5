"""TfidfRetriever ranks in bounded memory and returns exactly what a full stable sort returns."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from radllama.data.records import text_key
from radllama.retrieval import TfidfRetriever
from radllama.train.examples import nearest_reports, neighbour_chain

SENTENCES = [
    "The heart is normal in size.",
    "The lungs are clear.",
    "No pleural effusion or pneumothorax.",
    "Mild cardiomegaly.",
    "There is a small left pleural effusion.",
    "Degenerative changes of the thoracic spine.",
    "Calcified granuloma in the right upper lobe.",
    "No focal airspace consolidation.",
    "The mediastinum is unremarkable.",
    "Low lung volumes with bibasilar atelectasis.",
    "Stable postoperative changes.",
    "Pulmonary vascularity is within normal limits.",
]


def synthetic(n: int, seed: int) -> list[dict]:
    """Reports of 1-4 shared sentences: many exact twins (tied scores) and many shared words."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        picks = rng.choice(len(SENTENCES), size=int(rng.integers(1, 5)), replace=False)
        text = " ".join(SENTENCES[j] for j in picks)
        if rng.random() < 0.1:  # change case/spacing: same text_key, different text
            text = "  " + text.upper()
        out.append({"id": f"r{i}", "findings": text, "impression": f"impression {i}"})
    return out


def reference_query(retriever, findings, k, exclude_ids=None, exclude_findings=None):
    """The implementation this one replaced: every similarity, a stable full sort."""
    sims = retriever.similarities(findings)
    if exclude_ids is not None:
        index = {rid: i for i, rid in enumerate(retriever.ids)}
        for row, rid in enumerate(exclude_ids):
            if rid is not None and rid in index:
                sims[row, index[rid]] = -1.0
    if exclude_findings is not None:
        by_key: dict[str, list[int]] = {}
        for i, r in enumerate(retriever.records):
            by_key.setdefault(text_key(r["findings"]), []).append(i)
        for row, text in enumerate(exclude_findings):
            if text is not None:
                sims[row, by_key.get(text_key(text), [])] = -1.0
    k = min(k, len(retriever.records))
    order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    return [[retriever.records[j] for j in row if sims[r, j] >= 0] for r, row in enumerate(order)]


def ids(hits):
    return [[h["id"] for h in row] for row in hits]


@pytest.mark.parametrize("k", [1, 3, 21])
def test_neighbours_identical_to_full_stable_sort(k):
    records = synthetic(3000, seed=0)
    queries = synthetic(300, seed=1) + [
        {"id": "none", "findings": "zebra unicorn"},  # no shared word: every score ties at 0
        {"id": "one", "findings": "granuloma zebra"},  # few positive scores, the rest tie at 0
    ]
    retriever = TfidfRetriever(records)
    retriever.chunk_entries = 7 * len(records) + 5  # several chunks, the last one short
    findings = [q["findings"] for q in queries]
    assert ids(retriever.query(findings, k)) == ids(reference_query(retriever, findings, k))
    # Training's exclusions: the record itself and every record with the same findings.
    own = [r["findings"] for r in records]
    mine = [r["id"] for r in records]
    got = retriever.query(own, k, exclude_ids=mine, exclude_findings=own)
    assert ids(got) == ids(reference_query(retriever, own, k, mine, own))
    for i, f, row in zip(mine, own, got, strict=True):
        assert all(h["id"] != i and text_key(h["findings"]) != text_key(f) for h in row)
    # Leave-one-out only (pretraining's neighbour order).
    assert ids(retriever.query(own, k, exclude_ids=mine)) == ids(reference_query(retriever, own, k, mine))


def test_exclusion_can_leave_fewer_than_k():
    records = synthetic(5, seed=2)
    twins = [dict(records[0], id=f"t{i}") for i in range(3)]
    retriever = TfidfRetriever(twins)
    assert retriever.query([twins[0]["findings"]], k=3, exclude_findings=[twins[0]["findings"]]) == [[]]
    assert retriever.nearest([twins[0]["findings"]], k=3, exclude_ids=["t1"]).tolist() == [[0, 2, -1]]


def test_ranking_memory_is_bounded():
    """20,000 queries against 20,000 records: the dense matrix would be 3.2 GB."""
    rng = np.random.default_rng(0)
    words = np.array([f"w{i}" for i in range(3000)])
    records = [{"id": str(i), "findings": " ".join(rng.choice(words, 8))} for i in range(20_000)]
    retriever = TfidfRetriever(records)
    findings = [r["findings"] for r in records]
    tracemalloc.start()
    try:
        top = retriever.nearest(findings, k=3, exclude_ids=[r["id"] for r in records])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert top.shape == (20_000, 3) and (top[:, 0] != np.arange(20_000)).all()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"


def test_neighbour_order_walks_every_record_once():
    records = synthetic(400, seed=3)
    near = nearest_reports(records, k=5)
    assert near.shape == (400, 6) and (near != np.arange(400)[:, None]).all()
    order = neighbour_chain(near, seed=0)
    assert sorted(order) == list(range(400))
    # Most steps follow a listed neighbour (the walk jumps only when they are all used).
    follows = sum(b in near[a] for a, b in zip(order[:-1], order[1:], strict=True))
    assert follows > 300
