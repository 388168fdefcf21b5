"""TF-IDF nearest-neighbour retrieval over *training* reports.

Used by the retrieval baseline and by retrieval-augmented prompts (ImpressionGPT-style
dynamic examples). The index is built from the train split only. During training, callers
pass ``exclude_ids`` and ``exclude_findings`` so an example retrieves neither itself nor any
training report with the same normalised findings (OpenI is templated: a twin would put the
target impression in its own prompt).

Ranking is exact (every record is scored) but runs over a few queries at a time, so memory
stays bounded by :attr:`TfidfRetriever.chunk_entries` whatever the number of queries and
records; time grows with queries x records.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sklearn
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer

from radllama.data.records import text_key
from radllama.errors import RadLlamaError
from radllama.progress import track

_EXCLUDED = -1.0  # below every cosine similarity
_VECTORIZE_BLOCK = 4096  # queries turned into TF-IDF rows per transform call (cheap, sparse)
_BAR_FROM = 10_000  # queries from which ranking shows a progress bar


class TfidfRetriever:
    """Find the training reports whose findings are most similar to a query."""

    #: Scores held at once while ranking (queries per chunk x records), about 8 bytes each and a
    #: few working copies: 2**21 keeps a chunk near 100 MB even against a million records.
    chunk_entries: int = 1 << 21

    def __init__(self, records: Sequence[dict]) -> None:
        if not records:
            raise RadLlamaError("retrieval index needs at least one training record")
        self.records = list(records)
        self.ids = [str(r["id"]) for r in self.records]
        # Word uni+bigrams with sublinear tf: robust for short, templated report text.
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True)
        matrix = self.vectorizer.fit_transform([r["findings"] for r in self.records])
        # Terms x documents, laid out for row-by-row products (``matrix.T`` per query costs more
        # than the product itself: the server retrieves for one findings text per request).
        self._by_term = matrix.T.tocsr()
        self._index = {rid: i for i, rid in enumerate(self.ids)}
        # Record indices per normalised findings (the rule the splits use for "seen" findings).
        self._by_key: dict[str, list[int]] = {}
        for i, r in enumerate(self.records):
            self._by_key.setdefault(text_key(r["findings"]), []).append(i)

    def vectorize(self, findings: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows of the query texts (L2-normalised, so products are cosines)."""
        # The vectorizer is ours and fitted: sklearn's input checks are skipped, which is most of
        # the cost of a one-query transform (the server retrieves per request).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.vectorizer.transform(list(findings))

    def similarities(self, findings: Sequence[str]) -> np.ndarray:
        """Cosine similarity (TF-IDF) of each query to every record, dense: queries x records.

        For analyses of a few queries; ranking uses :meth:`nearest`, which never holds this.
        """
        return (self.vectorize(findings) @ self._by_term).toarray()

    def excluded(
        self, row: int, exclude_ids: Sequence[str | None] | None, exclude_findings: Sequence[str | None] | None
    ) -> list[int]:
        """Record indices query ``row`` must not get (subclasses may add their own rules)."""
        out: list[int] = []
        if exclude_ids is not None and exclude_ids[row] is not None and exclude_ids[row] in self._index:
            out.append(self._index[exclude_ids[row]])
        if exclude_findings is not None and exclude_findings[row] is not None:
            out += self._by_key.get(text_key(exclude_findings[row]), [])
        return out

    def nearest(
        self,
        findings: Sequence[str],
        k: int = 1,
        exclude_ids: Sequence[str | None] | None = None,
        exclude_findings: Sequence[str | None] | None = None,
    ) -> np.ndarray:
        """Indices of each query's ``k`` nearest records, best first: queries x k, -1 padded.

        Ties keep record order (the order of a stable sort of every similarity), so results are
        deterministic and do not depend on how queries are chunked. Arguments as :meth:`query`.
        """
        for name, given in (("exclude_ids", exclude_ids), ("exclude_findings", exclude_findings)):
            if given is not None and len(given) != len(findings):
                raise RadLlamaError(f"{name} has {len(given)} entries for {len(findings)} queries")
        k = min(k, len(self.records))
        out = np.full((len(findings), max(k, 0)), -1, dtype=np.int64)
        if k <= 0:
            return out
        chunks = self._scored_chunks(findings)
        if len(findings) >= _BAR_FROM:  # seconds to minutes: show counts and rate
            chunks = track(chunks, "finding neighbours", total=self._n_chunks(len(findings)))
        for start, sims in chunks:
            for r in range(sims.shape[0]):
                sims[r, self.excluded(start + r, exclude_ids, exclude_findings)] = _EXCLUDED
            top = _top_k_stable(sims, k)
            # Cosine similarities are >= 0, so only excluded records are below 0.
            keep = np.take_along_axis(sims, top, axis=1) >= 0
            out[start : start + sims.shape[0]] = np.where(keep, top, -1)
        return out

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
        if not len(findings):
            return []
        top = self.nearest(findings, k, exclude_ids, exclude_findings)
        return [[self.records[j] for j in row if j >= 0] for row in top]

    def _rows_per_chunk(self) -> int:
        return max(1, self.chunk_entries // len(self.records))

    def _n_chunks(self, n_queries: int) -> int:
        rows = self._rows_per_chunk()
        full, rest = divmod(n_queries, _VECTORIZE_BLOCK)
        return full * -(-_VECTORIZE_BLOCK // rows) + -(-rest // rows)

    def _scored_chunks(self, findings: Sequence[str]) -> Iterator[tuple[int, np.ndarray]]:
        """(first query index, dense similarities of a chunk of queries), chunk by chunk."""
        rows = self._rows_per_chunk()
        for block in range(0, len(findings), _VECTORIZE_BLOCK):
            vectors = self.vectorize(findings[block : block + _VECTORIZE_BLOCK])
            for start in range(0, vectors.shape[0], rows):
                # Each row of a sparse product is computed from its own query row alone, so the
                # values are the same whichever queries share the chunk.
                yield block + start, (vectors[start : start + rows] @ self._by_term).toarray()


def _top_k_stable(scores: np.ndarray, k: int) -> np.ndarray:
    """Per row, the first ``k`` column indices of a stable descending sort, without sorting it all.

    A partial selection finds each row's k-th best score; the winners are every column strictly
    above it and the lowest-indexed columns equal to it, then only those k are sorted (stably).
    """
    n = scores.shape[1]
    if k >= n:
        return np.argsort(-scores, axis=1, kind="stable")[:, :k]
    neg = -scores
    kth = np.partition(neg, k - 1, axis=1)[:, k - 1 : k]
    better = neg < kth
    tie = neg == kth
    room = k - better.sum(axis=1, keepdims=True)
    chosen = better | (tie & (np.cumsum(tie, axis=1) <= room))
    # Exactly k chosen per row; nonzero walks rows in order and columns ascending.
    cols = np.nonzero(chosen)[1].reshape(scores.shape[0], k)
    order = np.argsort(np.take_along_axis(neg, cols, axis=1), axis=1, kind="stable")
    return np.take_along_axis(cols, order, axis=1)


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
