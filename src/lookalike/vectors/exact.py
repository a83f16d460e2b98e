"""Exact top-k by inner product: one matrix product per chunk, argpartition for the top.

Scores are inner products; on unit vectors that is the cosine similarity. Results follow the
faiss convention: ``(scores, ids)`` of shape (nq, k), best first, ``-1`` ids and ``-inf``
scores in slots nothing filled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from lookalike.errors import ConfigError

CHUNK_BYTES = 64 << 20  # per scanned block: big enough for BLAS, small enough to stay resident
_MERGE_EVERY = 32


def check_queries(queries: np.ndarray, dim: int | None) -> np.ndarray:
    """Queries as C-contiguous float32 (nq, dim); a single (dim,) vector becomes (1, dim).

    Raises:
        ConfigError: wrong rank or dimension, or non-finite values.
    """
    q = np.asarray(queries)
    if q.ndim == 1:
        q = q[None, :]
    if q.ndim != 2:
        raise ConfigError(f"queries must be (nq, dim) float32, got shape {q.shape}")
    if dim is not None and q.shape[1] != dim:
        raise ConfigError(f"queries have dim {q.shape[1]}, the index holds dim {dim}")
    q = np.ascontiguousarray(q, dtype=np.float32)
    if not np.isfinite(q).all():
        raise ConfigError("queries contain NaN or infinite values")
    return q


def check_k(k: int, limit: int | None = None) -> int:
    """``k`` as an int >= 1, capped at ``limit`` (the rows there are) when given: results
    are never padded beyond what the index holds, however large ``k`` is (#20)."""
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1, got {k!r}")
    return int(k) if limit is None else min(int(k), max(int(limit), 0))


def as_id_array(values: Iterable[int] | np.ndarray | None) -> np.ndarray | None:
    """Ids (array, list or set) as a sorted, unique int64 array; None stays None."""
    if values is None:
        return None
    if isinstance(values, set | frozenset):
        values = list(values)
    arr = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(arr) > 1 and not (arr[1:] > arr[:-1]).all():
        arr = np.unique(arr)
    return arr


def member_mask(ids: np.ndarray, sorted_ids: np.ndarray) -> np.ndarray:
    """bool (m,): which of ``ids`` occur in the sorted unique array ``sorted_ids``."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=bool)
    pos = np.searchsorted(sorted_ids, ids)
    np.minimum(pos, len(sorted_ids) - 1, out=pos)
    return sorted_ids[pos] == ids


class TopK:
    """Running top-k over blocks of scores; ties are broken arbitrarily."""

    def __init__(self, nq: int, k: int) -> None:
        self.nq, self.k = nq, k
        self._scores: list[np.ndarray] = []
        self._ids: list[np.ndarray] = []

    def push(self, scores: np.ndarray, ids: np.ndarray) -> None:
        """Offer candidates.

        Args:
            scores: float32 (nq, m); ``-inf`` marks a candidate that must not be returned.
            ids: int64 (m,) shared by all queries, or (nq, m).
        """
        m = scores.shape[1]
        if m == 0:
            return
        if ids.ndim == 1:
            ids = np.broadcast_to(ids, scores.shape)
        if m > self.k:
            part = np.argpartition(scores, m - self.k, axis=1)[:, m - self.k :]
            scores = np.take_along_axis(scores, part, axis=1)
            ids = np.take_along_axis(ids, part, axis=1)
        self._scores.append(np.ascontiguousarray(scores, dtype=np.float32))
        self._ids.append(np.ascontiguousarray(ids, dtype=np.int64))
        if len(self._scores) >= _MERGE_EVERY:
            s, i = self._merge()
            self._scores, self._ids = [s], [i]

    def _merge(self) -> tuple[np.ndarray, np.ndarray]:
        if not self._scores:
            return (
                np.full((self.nq, 0), -np.inf, dtype=np.float32),
                np.full((self.nq, 0), -1, dtype=np.int64),
            )
        s = np.concatenate(self._scores, axis=1)
        i = np.concatenate(self._ids, axis=1)
        m = s.shape[1]
        if m > self.k:
            part = np.argpartition(s, m - self.k, axis=1)[:, m - self.k :]
            s = np.take_along_axis(s, part, axis=1)
            i = np.take_along_axis(i, part, axis=1)
        return s, i

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """float32 (nq, k) scores descending and int64 (nq, k) ids; ``-inf`` / -1 pads."""
        s, i = self._merge()
        order = np.argsort(-s, axis=1, kind="stable")
        s = np.take_along_axis(s, order, axis=1)
        i = np.take_along_axis(i, order, axis=1)
        i = np.where(np.isneginf(s), -1, i)
        out_s = np.full((self.nq, self.k), -np.inf, dtype=np.float32)
        out_i = np.full((self.nq, self.k), -1, dtype=np.int64)
        out_s[:, : s.shape[1]] = s
        out_i[:, : i.shape[1]] = i
        return out_s, out_i


def score_block(block: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """float32 (nq, m) inner products of queries (nq, d) with block rows (m, d)."""
    if len(queries) == 1:  # a matrix-vector product streams the block once at full speed
        return (block @ queries[0])[None, :]
    # (m, d) @ (d, nq) is several times faster in OpenBLAS than (nq, d) @ (d, m) for few
    # queries; the transposed copy of the small result is cheap.
    return np.ascontiguousarray((block @ queries.T).T)


def block_mask(
    ids: np.ndarray, allow: np.ndarray | None, exclude: np.ndarray | None
) -> np.ndarray | None:
    """bool (m,) of rows that may be returned, or None when all may."""
    ok = ids >= 0
    if allow is not None:
        ok &= member_mask(ids, allow)
    if exclude is not None and len(exclude):
        ok &= ~member_mask(ids, exclude)
    return None if ok.all() else ok


def exact_search(
    matrix: np.ndarray,
    ids: np.ndarray,
    queries: np.ndarray,
    k: int,
    allow: np.ndarray | None = None,
    exclude: Iterable[int] | np.ndarray | None = None,
    *,
    chunk_rows: int | None = None,
    release: Callable[[int, int], None] | None = None,
    top: TopK | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The k rows with the largest inner product with each query, by brute force.

    Args:
        matrix: float32 (n, d); may be a file-backed map much larger than memory.
        ids: int64 (n,), the image id of each row; -1 rows (tombstones) are never returned.
        queries: float32 (nq, d) or (d,).
        k: results per query (>= 1).
        allow: sorted int64 image ids; when given only these may be returned.
        exclude: image ids that must not be returned (array or set).
        chunk_rows: rows per matrix product (default: about 64 MiB of rows).
        release: called as ``release(start, stop)`` after each chunk is scanned, e.g.
            :meth:`VectorCache.release` to drop the chunk's pages and keep RSS flat.
        top: an accumulator to add to (to merge several scans); a new one by default.

    Returns:
        ``(scores, ids)``: float32 (nq, k') descending and int64 (nq, k'), where
        ``k' = min(k, n)`` (a huge ``k`` never allocates more than the matrix holds);
        ``-inf`` and -1 pad the slots when fewer than ``k'`` rows qualify.

    Example:
        >>> m = np.eye(3, dtype=np.float32)
        >>> exact_search(m, np.array([7, 8, 9]), m[1], k=2)[1]
        array([[ 8, -1]])
    """
    k = check_k(k)
    if matrix.ndim != 2 or matrix.dtype != np.float32:
        raise ConfigError(f"matrix must be float32 (n, d), got {matrix.dtype} {matrix.shape}")
    n, d = matrix.shape
    ids = np.asarray(ids, dtype=np.int64)
    if ids.shape != (n,):
        raise ConfigError(f"ids must be int64 ({n},), got shape {ids.shape}")
    q = check_queries(queries, d)
    allow = as_id_array(allow)
    exclude = as_id_array(exclude)
    top = top or TopK(len(q), min(k, n))
    step = chunk_rows or max(256, CHUNK_BYTES // max(1, d * 4))
    for start in range(0, n, step):
        stop = min(n, start + step)
        scores = score_block(matrix[start:stop], q)
        if release is not None:
            release(start, stop)
        mask = block_mask(ids[start:stop], allow, exclude)
        if mask is not None:
            scores[:, ~mask] = -np.inf
        top.push(scores, ids[start:stop])
    return top.result()
