"""TF-IDF nearest-neighbour retrieval over *training* reports.

Used by the retrieval baseline and by retrieval-augmented prompts (ImpressionGPT-style
dynamic examples). The index is built from the train split only; callers pass
``exclude_ids`` so a training example never retrieves itself.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import sklearn
from sklearn.feature_extraction.text import TfidfVectorizer

from radllama.errors import RadLlamaError


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

    def query(
        self, findings: Sequence[str], k: int = 1, exclude_ids: Sequence[str | None] | None = None
    ) -> list[list[dict]]:
        """Return, for each query, its ``k`` nearest training records (best first).

        Args:
            findings: query texts.
            k: neighbours per query.
            exclude_ids: per query, a record id that must not be returned (leave-one-out).
        """
        if not findings:
            return []
        # The vectorizer is ours and fitted: sklearn's input checks are skipped, which is most of
        # the cost of a one-query transform (the server retrieves per request).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            sims = (self.vectorizer.transform(list(findings)) @ self._by_term).toarray()
        if exclude_ids is not None:
            index = {rid: i for i, rid in enumerate(self.ids)}
            for row, rid in enumerate(exclude_ids):
                if rid is not None and rid in index:
                    sims[row, index[rid]] = -1.0
        k = min(k, len(self.records))
        # Stable sort keeps ties in index order, so results are deterministic.
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return [[self.records[j] for j in row] for row in order]
