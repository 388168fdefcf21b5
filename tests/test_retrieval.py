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
    retriever = TfidfRetriever(records, approximate=False)
    findings = [r["findings"] for r in records]
    tracemalloc.start()
    try:
        top = retriever.nearest(findings, k=3, exclude_ids=[r["id"] for r in records])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert top.shape == (20_000, 3) and (top[:, 0] != np.arange(20_000)).all()
    assert peak < 200e6, f"peak {peak / 1e6:.0f} MB"


def scores_of(retriever, findings, top):
    """The exact TF-IDF cosine of each chosen neighbour (-1 where none was chosen)."""
    sims = retriever.similarities(findings)
    return np.where(top >= 0, np.take_along_axis(sims, np.maximum(top, 0), axis=1), -1.0)


def test_approximate_index_rescores_exactly_and_honours_exclusions():
    records = synthetic(3000, seed=0) + [
        {"id": f"x{i}", "findings": " ".join(SENTENCES[j] for j in np.random.default_rng(i).permutation(12)[:6])
         + f" Finding number {i} of a longer report."} for i in range(500)
    ]  # fmt: skip
    exact = TfidfRetriever(records, approximate=False)
    approx = TfidfRetriever(records, approximate=True)
    assert approx.describe()["method"] == "tfidf-approximate" and exact.describe()["method"] == "tfidf-exact"
    own = [r["findings"] for r in records]
    mine = [r["id"] for r in records]
    got = approx.nearest(own, 3, exclude_ids=mine, exclude_findings=own)
    want = exact.nearest(own, 3, exclude_ids=mine, exclude_findings=own)
    assert (got >= 0).all() and (want >= 0).all()
    for i, f, row in zip(mine, own, got, strict=True):
        assert all(records[j]["id"] != i and text_key(records[j]["findings"]) != text_key(f) for j in row)
    have, best = scores_of(exact, own, got), scores_of(exact, own, want)
    # Best first by the exact cosine, and nearly as similar as the exact neighbours.
    assert (np.diff(have, axis=1) <= 1e-12).all()
    assert have.mean() >= 0.98 * best.mean()
    assert np.mean(np.abs(have - best) < 1e-9) >= 0.9  # mostly the same scores (ties may differ in record)
    # Deterministic: a second index over the same records gives the same neighbours.
    again = TfidfRetriever(records, approximate=True).nearest(own[:500], 3, exclude_ids=mine[:500])
    assert (again == approx.nearest(own[:500], 3, exclude_ids=mine[:500])).all()


def test_approximate_falls_back_to_exact_when_exclusions_take_the_candidates():
    twin = "Small left pleural effusion. The heart is normal in size."
    records = [{"id": f"t{i}", "findings": twin} for i in range(300)] + synthetic(200, seed=4)
    approx = TfidfRetriever(records, approximate=True)
    approx.candidates = 16  # every candidate of the twin's query is a twin, all excluded
    exact = TfidfRetriever(records, approximate=False)
    got = approx.nearest([twin], 3, exclude_findings=[twin])
    assert (got == exact.nearest([twin], 3, exclude_findings=[twin])).all() and (got >= 300).all()


def test_index_size_chooses_the_method():
    class Small(TfidfRetriever):
        approximate_from = 100

    assert not TfidfRetriever(synthetic(150, seed=5)).approximate
    assert Small(synthetic(150, seed=5)).approximate and not Small(synthetic(99, seed=5)).approximate


def test_neighbour_order_walks_every_record_once():
    records = synthetic(400, seed=3)
    near = nearest_reports(records, k=5)
    assert near.shape == (400, 6) and (near != np.arange(400)[:, None]).all()
    order = neighbour_chain(near, seed=0)
    assert sorted(order) == list(range(400))
    # Most steps follow a listed neighbour (the walk jumps only when they are all used).
    follows = sum(b in near[a] for a, b in zip(order[:-1], order[1:], strict=True))
    assert follows > 300


def test_same_findings_groups_by_text_key_in_record_order():
    records = synthetic(2000, seed=5)
    retriever = TfidfRetriever(records)
    for query in ("  " + records[7]["findings"].upper(), records[7]["findings"], "zebra unicorn"):
        want = [i for i, r in enumerate(records) if text_key(r["findings"]) == text_key(query)]
        assert retriever.same_findings(query) == want
    assert len(retriever.same_findings(records[7]["findings"])) > 1  # the synthetic reports have twins
