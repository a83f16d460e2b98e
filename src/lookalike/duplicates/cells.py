"""The k-means cell join over bound vectors: each row's best bounds that pass a threshold.

Rows are routed into k-means cells; each row lives in its nearest cell ("home") and is
compared with the rows living in its ``nprobe`` nearest cells, a cell at a time in one
matrix product (BLAS). Each row keeps its ``cap`` best bounds.

Keeping a row's best ``cap`` must not cost a selection over every score: when the bound
is loose (isotropic data, where any few hundred directions hold a small part of each
vector) nearly every score passes the threshold, and selecting among all of them was most
of the search (issue #19). So each row first meets its home cell (``floor`` := its
``cap``-th best bound there), then the other cells it visits, where only scores above
its floor can still enter its best ``cap``: the same result, with the selection done
once per row instead of once per visit.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np

_KNN_CHUNK = 16_384
_JOIN_ENTRIES = 1 << 22  # scores per matrix product in the cell join
_JOIN_HELD = 1 << 23  # candidates held before trimming each row to its best

Triple = tuple[np.ndarray, np.ndarray, np.ndarray]


def one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """BLAS on one thread (threadpoolctl, when installed; otherwise as configured): for
    LAPACK calls and the cell join's many small products, a second thread costs more than
    it gives, up to 10x on a busy machine (threads stalling for a core)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)  # type: ignore[no-any-return]


def sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def best_per_row(rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, cap: int) -> Triple:
    """Each row's ``cap`` highest-scoring entries (all of them when it has no more)."""
    if len(rows) == 0:
        return rows, cols, scores
    counts = np.bincount(rows)
    if counts.max() <= cap:
        return rows, cols, scores
    # A loose bound (or an untrained model) must not turn into a quadratic number of
    # re-checks: keep each row's best bounds only (sorting only the rows over the cap).
    over = counts[rows] > cap
    hr, hc, hs = rows[over], cols[over], scores[over]
    order = np.lexsort((-hs, hr))
    hr, hc, hs = hr[order], hc[order], hs[order]
    first = np.searchsorted(hr, hr, side="left")
    top = (np.arange(len(hr)) - first) < cap
    under = ~over
    return (
        np.concatenate([rows[under], hr[top]]),
        np.concatenate([cols[under], hc[top]]),
        np.concatenate([scores[under], hs[top]]),
    )


def passing(
    scores: np.ndarray, threshold: float | np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(row, col, score)`` of the entries >= threshold (a number, or one per row), at
    most ``cap`` best per row; then the rows that had more than ``cap`` and the ``cap``-th
    best score of each of them."""
    limit = threshold if np.ndim(threshold) == 0 else np.asarray(threshold)[:, None]
    mask = scores >= limit
    counts = np.count_nonzero(mask, axis=1)
    over = np.flatnonzero(counts > cap)
    if len(over) == 0:
        rr, cc = np.nonzero(mask)
        return rr, cc, scores[rr, cc], over, np.empty(0, scores.dtype)
    mask[over] = False
    rr, cc = np.nonzero(mask)
    heavy = scores[over]
    top = np.argpartition(heavy, heavy.shape[1] - cap, axis=1)[:, heavy.shape[1] - cap :]
    kth = heavy[np.arange(len(over)), top[:, 0]]  # argpartition puts the cap-th best first
    hr = np.repeat(over, cap)
    hc = top.ravel()
    rr, cc = np.concatenate([rr, hr]), np.concatenate([cc, hc])
    return rr, cc, scores[rr, cc], over, kth


def joined(parts: list[Triple]) -> Triple:
    rows, cols, scores = (np.concatenate([p[x] for p in parts]) for x in range(3))
    return rows, cols, scores


class Cells:
    """``z`` routed into k-means cells (FAISS): each row lives in its nearest cell
    ("home") and is compared with the rows living in its ``nprobe`` nearest cells."""

    def __init__(self, z: np.ndarray, nprobe: int, seed: int) -> None:
        from ..vectors.ann import import_faiss

        faiss = import_faiss()
        n, d = z.shape
        # Cost per row: nlist centroids to route + nprobe * n / nlist rows to compare,
        # balanced at nlist = sqrt(nprobe * n).
        nlist = min(n, max(16, min(int(math.sqrt(max(1, nprobe) * n)), n // 40)))
        self.nprobe = nprobe = max(1, min(nprobe, nlist))
        train = z[sample_positions(n, min(n, 16 * nlist), seed)]
        # Cells route on the centred directions: bound vectors can share one dominant
        # direction (isotropic data leaves ~0.94 of every row in the residual coordinate),
        # and k-means on such a narrow cone makes hub cells that take a large part of
        # the rows and of every row's visits (issue #19: 2,000 clusters at 100k rows gave
        # cells of 1 to 2,000 rows and 9x the balanced join's work; centred, 8 to 250).
        self.centre = train.mean(axis=0)
        # Coarse cells only route the search; a few k-means rounds are enough.
        kmeans = faiss.Kmeans(
            d, nlist, niter=8, seed=seed, spherical=True, min_points_per_centroid=1
        )
        kmeans.train(self._routed(train))
        cells = faiss.IndexFlatIP(d)
        cells.add(kmeans.centroids)
        assign = np.empty((n, nprobe), dtype=np.int32)
        for start in range(0, n, _KNN_CHUNK * 4):
            q = self._routed(z[start : start + _KNN_CHUNK * 4])
            assign[start : start + len(q)] = cells.search(q, nprobe)[1]
        # Rows ordered by home cell: each cell's rows are one contiguous slice of zs.
        self.order = np.argsort(assign[:, 0], kind="stable")
        self.zs = z[self.order]
        self.member_bounds = np.searchsorted(assign[self.order, 0], np.arange(nlist + 1))
        rank = np.empty(n, dtype=np.int64)
        rank[self.order] = np.arange(n)
        # The rows (positions in zs) that visit each cell other than their home.
        away = assign[:, 1:].ravel()
        del assign
        by_cell = np.argsort(away, kind="stable")
        self.visitors = rank[by_cell // max(1, nprobe - 1)] if nprobe > 1 else by_cell
        self.visitor_bounds = np.searchsorted(away[by_cell], np.arange(nlist + 1))
        self.nlist = nlist
        self.scores = 0  # bound scores computed by the joins (their work)

    def _routed(self, block: np.ndarray) -> np.ndarray:
        out = block - self.centre
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        out /= norms
        return np.ascontiguousarray(out, dtype=np.float32)

    def join(self, threshold: float, cap: int, only: np.ndarray | None = None) -> Triple:
        """``(row, col, bound)`` in zs positions: each row's (or each ``only`` row's)
        ``cap`` best others >= threshold in the cells it visits."""
        floor = np.full(len(self.zs), threshold, dtype=np.float32)
        with one_blas_thread():
            parts = self._join(floor, cap, only)
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        rows, cols, scores = best_per_row(*joined(parts), cap)
        return rows.astype(np.int64), cols.astype(np.int64), scores

    def _join(self, floor: np.ndarray, cap: int, only: np.ndarray | None) -> list[Triple]:
        parts: list[Triple] = []
        held, trim_at = 0, max(_JOIN_HELD, cap * len(self.zs) // 2)
        for home in (True, False):  # home cells first: they set each row's floor
            for cell in range(self.nlist):
                m0, m1 = int(self.member_bounds[cell]), int(self.member_bounds[cell + 1])
                if m1 == m0:
                    continue
                if home:
                    visitors = np.arange(m0, m1, dtype=np.int64)
                else:
                    v0, v1 = self.visitor_bounds[cell], self.visitor_bounds[cell + 1]
                    visitors = self.visitors[v0:v1]
                if only is not None:
                    visitors = visitors[only[visitors]]
                for part in self._visit(visitors, m0, m1, floor, cap, home):
                    parts.append(part)
                    held += len(part[0])
                if held > trim_at:  # keep memory flat
                    parts = [best_per_row(*joined(parts), cap)]
                    held = len(parts[0][0])
                    trim_at = max(trim_at, 2 * held)
        return parts

    def _visit(
        self, visitors: np.ndarray, m0: int, m1: int, floor: np.ndarray, cap: int, home: bool
    ) -> list[Triple]:
        """The passing bounds of ``visitors`` against the rows of cell ``[m0, m1)``,
        raising each visitor's floor to its ``cap``-th best so far."""
        members = self.zs[m0:m1]
        step = max(1, _JOIN_ENTRIES // (m1 - m0))
        out = []
        for s in range(0, len(visitors), step):
            q = visitors[s : s + step]
            scores = self.zs[q] @ members.T
            self.scores += scores.size
            if home:  # a row is not its own pair
                scores[np.arange(len(q)), q - m0] = -np.inf
            rr, cc, sc, over, kth = passing(scores, floor[q], cap)
            if len(over):
                # Rows with more than cap passing here: only bounds above their cap-th
                # best here can still be among their cap best.
                floor[q[over]] = np.maximum(floor[q[over]], kth)
            out.append((q[rr].astype(np.int32), (cc + m0).astype(np.int32), sc))
        return out
