"""TF-IDF nearest-neighbour retrieval over *training* reports.

Used by the retrieval baseline and by retrieval-augmented prompts (ImpressionGPT-style
dynamic examples). The index is built from the train split only. During training, callers
pass ``exclude_ids`` and ``exclude_findings`` so an example retrieves neither itself nor any
training report with the same normalised findings (OpenI is templated: a twin would put the
target impression in its own prompt).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from radllama.data.records import text_key
from radllama.errors import RadLlamaError

_EXCLUDED = -1.0  # below every cosine similarity


class TfidfRetriever:
    """Find the training reports whose findings are most similar to a query."""

    def __init__(self, records: Sequence[dict]) -> None:
        if not records:
            raise RadLlamaError("retrieval index needs at least one training record")
        self.records = list(records)
        self.ids = [str(r["id"]) for r in self.records]
        # Word uni+bigrams with sublinear tf: robust for short, templated report text.
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        self.matrix = self.vectorizer.fit_transform([r["findings"] for r in self.records])
        # Terms x documents, laid out for one-query products (``matrix.T`` per query costs more
        # than the product itself: the server retrieves for one findings text per request).
        self._by_term = self.matrix.T.tocsr()
        # Record indices per normalised findings (the rule the splits use for "seen" findings).
        self._by_key: dict[str, list[int]] = {}
        for i, r in enumerate(self.records):
            self._by_key.setdefault(text_key(r["findings"]), []).append(i)

    def similarities(self, findings: Sequence[str]) -> np.ndarray:
        """Cosine similarity (TF-IDF) of each query to every training record: queries x records."""
        # The vectorizer is ours and fitted: sklearn's input checks are skipped, which is most of
        # the cost of a one-query transform (the server retrieves per request).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return (self.vectorizer.transform(list(findings)) @ self._by_term).toarray()

    def query(
        self,
        findings: Sequence[str],
        k: int = 1,
        exclude_ids: Sequence[str | None] | None = None,
        exclude_findings: Sequence[str | None] | None = None,
    ) -> list[list[dict]]:
        """Return, for each query, its ``k`` nearest training records (best first).

        Excluded records are never returned, so a query may get fewer than ``k``.

        Args:
            findings: query texts.
            k: neighbours per query.
            exclude_ids: per query, a record id that must not be returned (leave-one-out).
            exclude_findings: per query, a findings text: no record whose findings have the same
                :func:`~radllama.data.records.text_key` is returned (leave-duplicates-out).
        """
        if not findings:
            return []
        sims = self.similarities(findings)
        if exclude_ids is not None:
            index = {rid: i for i, rid in enumerate(self.ids)}
            for row, rid in enumerate(exclude_ids):
                if rid is not None and rid in index:
                    sims[row, index[rid]] = _EXCLUDED
        if exclude_findings is not None:
            for row, text in enumerate(exclude_findings):
                if text is not None:
                    sims[row, self._by_key.get(text_key(text), [])] = _EXCLUDED
        k = min(k, len(self.records))
        # Stable sort keeps ties in index order, so results are deterministic.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        # Cosine similarities are >= 0, so only excluded records are below 0.
        return [[self.records[j] for j in row if sims[r, j] >= 0] for r, row in enumerate(order)]


def retrieved_impressions(
    retriever: TfidfRetriever | None,
    findings: Sequence[str],
    k: int,
    exclude_ids: Sequence[str] | None = None,
    leave_out_same_findings: bool = False,
) -> list[list[str] | None]:
    """The impressions of the ``k`` most similar training reports per query (None when k=0).

    ``leave_out_same_findings`` (training): no record whose normalised findings equal the query's.
    """
    if retriever is None or k <= 0:
        return [None] * len(findings)
    same = findings if leave_out_same_findings else None
    hits = retriever.query(findings, k=k, exclude_ids=exclude_ids, exclude_findings=same)
    return [[h["impression"] for h in row] for row in hits]
