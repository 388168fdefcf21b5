"""TF-IDF nearest-neighbour retrieval over *training* reports.

Used by the retrieval baseline and by retrieval-augmented prompts (ImpressionGPT-style
dynamic examples). The index is built from the train split only. During training, callers
pass ``exclude_ids`` and ``exclude_findings`` so an example retrieves neither itself nor any
training report with the same normalised findings (OpenI is templated: a twin would put the
target impression in its own prompt).

Below :attr:`TfidfRetriever.approximate_from` records ranking is exact (every record is scored)
and runs over a few queries at a time, so memory stays bounded by
:attr:`TfidfRetriever.chunk_entries`; its time grows with queries x records. From there on (and
whenever ``approximate=True``) an approximate index proposes candidates and the same TF-IDF
cosine ranks them: the TF-IDF rows are reduced by truncated SVD (scikit-learn), a faiss IVF
index over the reduced vectors returns :attr:`TfidfRetriever.candidates` records per query, and
those are re-scored exactly, ties in record order as in the exact ranking. Exclusions are
applied to the candidates; a query left with fewer than ``k`` of them is ranked exactly.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import sklearn
from scipy import sparse
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from radllama.data.records import text_key
from radllama.errors import RadLlamaError
from radllama.progress import track

_EXCLUDED = -1.0  # below every cosine similarity
_VECTORIZE_BLOCK = 4096  # queries turned into TF-IDF rows per transform call (cheap, sparse)
_BAR_FROM = 10_000  # queries from which ranking shows a progress bar
_RESCORE_BLOCK = 1024  # queries re-scored at once (x candidates sparse rows gathered)


class TfidfRetriever:
    """Find the training reports whose findings are most similar to a query."""

    #: Scores held at once while ranking (queries per chunk x records), about 8 bytes each and a
    #: few working copies: 2**21 keeps a chunk near 100 MB even against a million records.
    chunk_entries: int = 1 << 21
    #: Index size from which ``approximate=None`` (the default) uses the approximate index: below
    #: it exact ranking is fast and the demo's (OpenI-size) neighbours stay exactly as they were.
    approximate_from: int = 20_000
    #: Candidates per query that the approximate index proposes for exact re-scoring.
    candidates: int = 128

    def __init__(self, records: Sequence[dict], approximate: bool | None = None) -> None:
        if not records:
            raise RadLlamaError("retrieval index needs at least one training record")
        self.records = list(records)
        self.ids = [str(r["id"]) for r in self.records]
        self.approximate = len(self.records) >= self.approximate_from if approximate is None else approximate
        # Word uni+bigrams with sublinear tf: robust for short, templated report text. float32 halves
        # a large index's matrix; exact ranking keeps float64 so its ties and order stay as they were.
        dtype = np.float32 if self.approximate else np.float64
        self.vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, lowercase=True, dtype=dtype)
        matrix = self.vectorizer.fit_transform([r["findings"] for r in self.records])
        if self.approximate:
            # Documents x terms: candidates are re-scored row by row; one copy of the matrix only.
            self._by_doc = matrix.tocsr()
            self._candidates = _CandidateIndex(self._by_doc)
        else:
            # Terms x documents, laid out for row-by-row products (``matrix.T`` per query costs
            # more than the product itself: the server retrieves for one findings text per request).
            self._by_term = matrix.T.tocsr()
        self._index = {rid: i for i, rid in enumerate(self.ids)}
        # Records grouped by normalised findings (the rule the splits use for "seen" findings), as
        # hashes sorted once: a dict of a million keys held every findings text a second time.
        # Python's str hash is 64-bit and fixed within a process, the index's lifetime; a collision
        # (odds near n**2 / 2**64) would only leave out one more record.
        keys = np.fromiter((hash(text_key(r["findings"])) for r in self.records), np.int64, len(self.records))
        self._key_order = np.argsort(keys, kind="stable")  # a group's records stay in record order
        self._sorted_keys = keys[self._key_order]

    def vectorize(self, findings: Sequence[str]) -> sparse.csr_matrix:
        """TF-IDF rows of the query texts (L2-normalised, so products are cosines)."""
        # The vectorizer is ours and fitted: sklearn's input checks are skipped, which is most of
        # the cost of a one-query transform (the server retrieves per request).
        with sklearn.config_context(assume_finite=True, skip_parameter_validation=True):
            return self.vectorizer.transform(list(findings))

    def describe(self) -> dict:
        """How neighbours are ranked (`radllama train` prints it for an approximate index; benches record it)."""
        if not self.approximate:
            return {"method": "tfidf-exact", "records": len(self.records)}
        return {"method": "tfidf-approximate", "records": len(self.records), **self._candidates.describe(),
                "candidates": self.candidates}  # fmt: skip

    def similarities(self, findings: Sequence[str]) -> np.ndarray:
        """Cosine similarity (TF-IDF) of each query to every record, dense: queries x records.

        For analyses of a few queries; ranking uses :meth:`nearest`, which never holds this.
        """
        return self._exact_scores(self.vectorize(findings))

    def _exact_scores(self, vectors: sparse.csr_matrix) -> np.ndarray:
        if self.approximate:
            return (self._by_doc @ vectors.T).T.toarray()
        return (vectors @ self._by_term).toarray()

    def excluded(
        self, row: int, exclude_ids: Sequence[str | None] | None, exclude_findings: Sequence[str | None] | None
    ) -> list[int]:
        """Record indices query ``row`` must not get (subclasses may add their own rules)."""
        out: list[int] = []
        if exclude_ids is not None and exclude_ids[row] is not None and exclude_ids[row] in self._index:
            out.append(self._index[exclude_ids[row]])
        if exclude_findings is not None and exclude_findings[row] is not None:
            out += self.same_findings(exclude_findings[row])
        return out

    def same_findings(self, findings: str) -> list[int]:
        """Indices, in record order, of the records whose findings have the same text_key as ``findings``."""
        key = hash(text_key(findings))
        lo = np.searchsorted(self._sorted_keys, key, side="left")
        hi = np.searchsorted(self._sorted_keys, key, side="right")
        return self._key_order[lo:hi].tolist()

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
        if self.approximate:
            return self._nearest_approximate(findings, k, exclude_ids, exclude_findings, out)
        chunks = self._scored_chunks(findings)
        if len(findings) >= _BAR_FROM:  # seconds to minutes: show counts and rate
            chunks = track(chunks, "finding neighbours", total=self._n_chunks(len(findings)))
        for start, sims in chunks:
            for r in range(sims.shape[0]):
                sims[r, self.excluded(start + r, exclude_ids, exclude_findings)] = _EXCLUDED
            out[start : start + sims.shape[0]] = _top_k_kept(sims, k)
        return out

    def _nearest_approximate(
        self,
        findings: Sequence[str],
        k: int,
        exclude_ids: Sequence[str | None] | None,
        exclude_findings: Sequence[str | None] | None,
        out: np.ndarray,
    ) -> np.ndarray:
        """Candidates from the approximate index, re-scored by exact TF-IDF cosine."""
        pool = min(self.candidates, len(self.records))
        starts = range(0, len(findings), _RESCORE_BLOCK)
        if len(findings) >= _BAR_FROM:
            starts = track(starts, "finding neighbours", total=len(starts))
        for start in starts:
            vectors = self.vectorize(findings[start : start + _RESCORE_BLOCK])
            cand = self._candidates.search(vectors, pool)
            n, m = cand.shape
            rows = np.repeat(np.arange(n), m)
            flat = cand.ravel()
            valid = flat >= 0
            scores = np.full(n * m, _EXCLUDED)
            # Row-wise dot products of each query with its candidates: the exact cosine.
            scores[valid] = np.asarray(vectors[rows[valid]].multiply(self._by_doc[flat[valid]]).sum(axis=1)).ravel()
            scores = scores.reshape(n, m)
            for r in range(n):
                gone = self.excluded(start + r, exclude_ids, exclude_findings)
                if gone:
                    scores[r, np.isin(cand[r], gone)] = _EXCLUDED
                kept = scores[r] >= 0
                wanted = min(k, len(self.records) - len(set(gone)))
                if kept.sum() < wanted:  # exclusions ate the candidates: rank this query exactly
                    sims = self._exact_scores(vectors[r])
                    sims[0, gone] = _EXCLUDED
                    out[start + r] = _top_k_kept(sims, k)[0]
                    continue
                # Best score first; equal scores in record order (as the exact stable ranking).
                order = np.lexsort((cand[r][kept], -scores[r][kept]))[:k]
                picked = cand[r][kept][order]
                out[start + r, : len(picked)] = picked
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


class _CandidateIndex:
    """TF-IDF rows reduced by truncated SVD in a faiss IVF index (inner product of unit vectors).

    The SVD is fitted on a seeded sample of at most ``svd_sample`` rows and the IVF clustering on
    about ``points_per_list`` rows a list, so building stays near-linear in the number of records.
    Each query scans ``nprobe`` of ``4 sqrt(N)`` lists: about ``4 sqrt(N)`` vectors. Deterministic
    for the same records.
    """

    dims: int = 256
    svd_sample: int = 50_000
    points_per_list: int = 40  # faiss warns below 39
    nprobe: int = 16

    def __init__(self, by_doc: sparse.csr_matrix) -> None:
        import faiss  # a core dependency, imported here because only large indices need it

        n = by_doc.shape[0]
        dims = max(1, min(self.dims, by_doc.shape[1] - 1, n - 1))
        rng = np.random.default_rng(0)
        order = rng.permutation(n)  # seeded samples: a prefix of one permutation
        svd_rows = np.sort(order[: self.svd_sample])
        self.svd = TruncatedSVD(dims, algorithm="randomized", n_iter=4, random_state=0).fit(by_doc[svd_rows])
        self.nlist = max(1, min(int(4 * np.sqrt(n)), n // self.points_per_list))
        # 8-bit scalar quantisation: a quarter of the memory of float vectors; the candidates are
        # re-scored exactly anyway, so only their recall could suffer (bench_neighbours.py).
        self.quantizer = faiss.IndexFlatIP(dims)  # kept referenced: the IVF index does not own it
        self.index = faiss.IndexIVFScalarQuantizer(
            self.quantizer, dims, self.nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT
        )
        self.index.cp.seed = 0
        self.index.cp.niter = 10  # k-means iterations: the lists need not be optimal, only balanced
        self.index.train(self._reduce(by_doc[np.sort(order[: self.nlist * self.points_per_list])]))
        for start in range(0, n, _VECTORIZE_BLOCK * 16):
            self.index.add(self._reduce(by_doc[start : start + _VECTORIZE_BLOCK * 16]))
        self.index.nprobe = min(self.nprobe, self.nlist)

    def _reduce(self, rows: sparse.csr_matrix) -> np.ndarray:
        dense = self.svd.transform(rows).astype(np.float32)
        norms = np.linalg.norm(dense, axis=1, keepdims=True)
        return np.ascontiguousarray(dense / np.maximum(norms, 1e-12))

    def search(self, vectors: sparse.csr_matrix, pool: int) -> np.ndarray:
        """Candidate record indices per query (-1 where the probed lists hold fewer)."""
        _, found = self.index.search(self._reduce(vectors), pool)
        return found

    def describe(self) -> dict:
        return {"svd_dims": int(self.svd.n_components), "ivf_lists": self.nlist, "nprobe": self.index.nprobe}


def _top_k_kept(sims: np.ndarray, k: int) -> np.ndarray:
    """:func:`_top_k_stable` of similarities with excluded records set below 0, -1 where one was picked."""
    top = _top_k_stable(sims, k)
    # Cosine similarities are >= 0, so only excluded records are below 0.
    return np.where(np.take_along_axis(sims, top, axis=1) >= 0, top, -1)


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
