"""Pairs of rows at least ``threshold`` similar, without an N x N step.

How, and why it finds every pair an exact search would (up to the IVF's probing):

* **A bound, not an approximation.** Each unit vector ``x`` is split into its part in a
  ``p``-dimensional basis ``V`` (the top eigenvectors of a sample's second-moment matrix)
  and the residual: ``x = V a + r`` with ``r`` orthogonal to ``V``. Then
  ``x.y = a.b + r_x.r_y <= a.b + |r_x| |r_y|``, which is the inner product of the unit
  ``(p + 1)``-vectors ``z = [a, |r|]``. So ``z_x.z_y >= x.y``: searching the small ``z``
  for pairs ``>= threshold`` misses no true pair, and an exact re-check of the candidates
  on the full vectors removes the false ones.
* **Search.** Up to ``flat_limit`` rows the ``z`` are compared exactly in blocks; above it
  the ``z`` are routed into k-means cells (FAISS) and each row keeps its ``k`` best
  bounds that pass among the rows of its ``nprobe`` nearest cells: the work of an IVF
  search, done cell by cell as matrix products (BLAS) rather than query by query. Rows
  whose ``k``-th neighbour still passes are searched again with a larger ``k``.
* **Re-check.** Candidate pairs are scored on the full vectors, a block of consecutive
  ``i`` rows at a time (read at once) against that block's ``j`` rows (``pread`` from the
  cache), so memory stays flat at any collection size.

Optionally every vector is mean-centred first (``center``): ``x -> (x - mu) / |x - mu|``
with ``mu`` the mean of the collection, which removes the direction all post-ReLU
features share and spreads distinct images apart.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import numpy as np

from .rows import Rows, chunk_rows

_SAMPLE = 20_000
_FLAT_BLOCK = 1024
_KNN_CHUNK = 16_384
_RECHECK_BYTES = 256 << 20  # rows of j read at once in the re-check
_DOT_PAIRS = 1024  # pairs scored at once (their rows stay in cache)
_JOIN_ENTRIES = 1 << 22  # scores per matrix product in the cell join
_JOIN_HELD = 1 << 23  # candidates held before trimming each row to its best


@dataclass
class Pairs:
    """Similar pairs of positions: ``i < j`` int64 ``(m,)`` and their cosine float32 ``(m,)``."""

    i: np.ndarray
    j: np.ndarray
    score: np.ndarray

    @classmethod
    def empty(cls) -> Pairs:
        return cls(np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32))

    def __len__(self) -> int:
        return len(self.i)


@dataclass
class SearchStats:
    """How the candidate search went (for reports and benchmarks)."""

    method: str = "exact"
    candidates: int = 0
    pairs: int = 0
    basis_dim: int = 0


@dataclass
class Transform:
    """Optional centring before the cosine: ``x -> (x - mean) / |x - mean|``."""

    mean: np.ndarray | None = None

    def __call__(self, block: np.ndarray) -> np.ndarray:
        if self.mean is None:
            return block
        out = block - self.mean
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        np.maximum(norms, 1e-12, out=norms)
        return out / norms  # type: ignore[no-any-return]


def _sample_positions(n: int, size: int, seed: int) -> np.ndarray:
    if n <= size:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=size, replace=False)).astype(np.int64)


def fit_transform(rows: Rows, center: bool, seed: int = 0) -> Transform:
    """The centring learned from a sample of ``rows`` (identity when ``center`` is off)."""
    if not center or rows.n == 0:
        return Transform()
    sample = rows.gather(_sample_positions(rows.n, _SAMPLE, seed))
    return Transform(sample.mean(axis=0, dtype=np.float64).astype(np.float32))


def _one_blas_thread() -> contextlib.AbstractContextManager[object]:
    """Small LAPACK calls on one thread: threaded ones stall for seconds on a busy machine
    (threadpoolctl, when installed; otherwise as configured)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=1)  # type: ignore[no-any-return]


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``a`` (float64 (d, m), m small) through the small
    (m, m) Gram matrix (cheaper than a QR of the tall matrix)."""
    values, vectors = np.linalg.eigh(a.T @ a)
    values = np.maximum(values, values.max() * 1e-12)
    return a @ (vectors / np.sqrt(values)) @ vectors.T  # type: ignore[no-any-return]


def fit_basis(rows: Rows, transform: Transform, p: int, seed: int = 0) -> np.ndarray:
    """float32 ``(dim, p)`` orthonormal: the top eigenvectors of a sample's ``X^T X``."""
    sample = transform(rows.gather(_sample_positions(rows.n, _SAMPLE, seed)))
    gram = (sample.T @ sample).astype(np.float64)
    # Randomised subspace iteration: the top p directions in a fraction of the time of a
    # full eigendecomposition (2048-d: ~10x). Any orthonormal basis keeps the bound exact;
    # a better one only makes it tighter.
    rng = np.random.default_rng(seed)
    with _one_blas_thread():
        q = _orthonormal(rng.standard_normal((gram.shape[0], min(gram.shape[0], p + 32))))
        for _ in range(4):
            q = _orthonormal(gram @ q)
        values, small = np.linalg.eigh(q.T @ gram @ q)
    vectors = q @ small
    order = np.argsort(values)[::-1][:p]
    return np.ascontiguousarray(vectors[:, order], dtype=np.float32)


def project(rows: Rows, transform: Transform, basis: np.ndarray | None) -> np.ndarray:
    """float32 ``(n, p + 1)`` bound vectors ``[a, |r|]`` (``(n, dim)`` when no basis)."""
    width = rows.dim if basis is None else basis.shape[1] + 1
    out = np.empty((rows.n, width), dtype=np.float32)
    for start, block in rows.chunks():
        x = transform(block)
        if basis is None:
            out[start : start + len(x)] = x
            continue
        a = x @ basis
        rest = 1.0 - np.einsum("ij,ij->i", a, a)
        out[start : start + len(x), :-1] = a
        out[start : start + len(x), -1] = np.sqrt(np.maximum(rest, 0.0))
    return out


def _best_per_row(
    rows: np.ndarray, cols: np.ndarray, scores: np.ndarray, cap: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
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


def _passing(scores: np.ndarray, threshold: float, cap: int) -> tuple[np.ndarray, ...]:
    """``(row, col, score)`` of the entries >= threshold, at most ``cap`` best per row."""
    mask = scores >= threshold
    counts = np.count_nonzero(mask, axis=1)
    over = np.flatnonzero(counts > cap)
    if len(over) == 0:
        rr, cc = np.nonzero(mask)
        return rr, cc, scores[rr, cc]
    mask[over] = False
    rr, cc = np.nonzero(mask)
    top = np.argpartition(-scores[over], cap - 1, axis=1)[:, :cap]
    hr = np.repeat(over, cap)
    hc = top.ravel()
    rr, cc = np.concatenate([rr, hr]), np.concatenate([cc, hc])
    return rr, cc, scores[rr, cc]


def _flat_pairs(
    z: np.ndarray, threshold: float, max_per_row: int, max_k: int = 0
) -> tuple[np.ndarray, ...]:
    """Exact block comparison of ``z`` with itself; pairs ``i < j`` scoring >= threshold.

    Each row keeps its ``max_per_row`` best later rows; rows with more passing neighbours
    than that (a group larger than ``max_per_row``) are compared again with every row and
    keep up to ``max_k``."""
    n = len(z)
    found_i, found_j = [], []
    counts = np.zeros(n, dtype=np.int64)
    for start in range(0, n, _FLAT_BLOCK):
        block = z[start : start + _FLAT_BLOCK]
        # Only columns after the block's first row: each pair once (i < j).
        scores = block @ z[start:].T
        rr, cc = np.nonzero(scores >= threshold)
        keep = cc > rr
        rr, cc = rr[keep], cc[keep]
        counts[start : start + len(block)] += np.bincount(rr, minlength=len(block))
        counts[start:] += np.bincount(cc, minlength=n - start)
        rr, cc, _ = _best_per_row(rr, cc, scores[rr, cc], max_per_row)
        found_i.append(rr.astype(np.int64) + start)
        found_j.append(cc.astype(np.int64) + start)
    # Rows with more passing neighbours than the cap: compared again with every row (at
    # most flat_limit x n bounds), so a group larger than the cap is found whole here.
    full = np.flatnonzero(counts > max_per_row)
    if max_k > max_per_row and len(full):
        for start in range(0, len(full), _FLAT_BLOCK):
            part = full[start : start + _FLAT_BLOCK]
            scores = z[part] @ z.T
            scores[np.arange(len(part)), part] = -np.inf  # a row is not its own pair
            rr, cc, _ = _passing(scores, threshold, max_k)
            lo, hi = np.minimum(part[rr], cc), np.maximum(part[rr], cc)
            found_i.append(lo.astype(np.int64))
            found_j.append(hi.astype(np.int64))
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    key = np.unique(i * n + j)
    return key // n, key % n


class _Cells:
    """``z`` routed into k-means cells: each row lives in its nearest cell ("home") and is
    compared with the rows living in its ``nprobe`` nearest cells."""

    def __init__(self, z: np.ndarray, nprobe: int, seed: int) -> None:
        from ..vectors.ann import import_faiss

        faiss = import_faiss()
        n, d = z.shape
        # Cost per row: nlist centroids to route + nprobe * n / nlist rows to compare,
        # balanced at nlist = sqrt(nprobe * n).
        nlist = min(n, max(16, min(int(math.sqrt(max(1, nprobe) * n)), n // 40)))
        self.nprobe = nprobe = max(1, min(nprobe, nlist))
        train = np.ascontiguousarray(z[_sample_positions(n, min(n, 16 * nlist), seed)])
        # Coarse cells only route the search; a few k-means rounds are enough.
        kmeans = faiss.Kmeans(
            d, nlist, niter=8, seed=seed, spherical=True, min_points_per_centroid=1
        )
        kmeans.train(train)
        cells = faiss.IndexFlatIP(d)
        cells.add(kmeans.centroids)
        assign = np.empty((n, nprobe), dtype=np.int64)
        for start in range(0, n, _KNN_CHUNK * 4):
            q = np.ascontiguousarray(z[start : start + _KNN_CHUNK * 4])
            assign[start : start + len(q)] = cells.search(q, nprobe)[1]
        # Rows ordered by home cell: each cell's rows are one contiguous slice of zs.
        self.order = np.argsort(assign[:, 0], kind="stable")
        self.zs = z[self.order]
        self.member_bounds = np.searchsorted(assign[self.order, 0], np.arange(nlist + 1))
        rank = np.empty(n, dtype=np.int64)
        rank[self.order] = np.arange(n)
        flat = assign.ravel()
        del assign
        by_cell = np.argsort(flat, kind="stable")
        # The rows (positions in zs) that visit each cell.
        self.visitors = rank[by_cell // nprobe]
        self.visitor_bounds = np.searchsorted(flat[by_cell], np.arange(nlist + 1))
        self.nlist = nlist

    def join(
        self, threshold: float, cap: int, only: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(row, col, bound)`` in zs positions: each row's (or each ``only`` row's)
        ``cap`` best others >= threshold in the cells it visits."""
        zs, n = self.zs, len(self.zs)
        parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        held, trim_at = 0, max(_JOIN_HELD, cap * n // 2)
        for cell in range(self.nlist):
            m0, m1 = int(self.member_bounds[cell]), int(self.member_bounds[cell + 1])
            if m1 == m0:
                continue
            members = zs[m0:m1]
            visitors = self.visitors[self.visitor_bounds[cell] : self.visitor_bounds[cell + 1]]
            if only is not None:
                visitors = visitors[only[visitors]]
            step = max(1, _JOIN_ENTRIES // (m1 - m0))
            for s in range(0, len(visitors), step):
                q = visitors[s : s + step]
                scores = zs[q] @ members.T
                own = np.flatnonzero((q >= m0) & (q < m1))  # a row is not its own pair
                scores[own, q[own] - m0] = -np.inf
                rr, cc, sc = _passing(scores, threshold, cap)
                parts.append((q[rr], cc.astype(np.int64) + m0, sc))
                held += len(rr)
            if held > trim_at:  # keep memory flat
                parts = [_best_per_row(*_joined(parts), cap)]
                held = len(parts[0][0])
                trim_at = max(trim_at, 2 * held)
        if not parts:
            return np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float32)
        return _best_per_row(*_joined(parts), cap)


def _joined(
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows, cols, scores = (np.concatenate([p[x] for p in parts]) for x in range(3))
    return rows, cols, scores


def _ivf_pairs(
    z: np.ndarray, threshold: float, k: int, max_k: int, nprobe: int, seed: int
) -> tuple[np.ndarray, ...]:
    """Each row's ``k`` best neighbours >= threshold among the rows of its ``nprobe``
    nearest k-means cells over ``z``, compared cell by cell in matrix products (the work of
    an IVF search, at the speed of BLAS instead of one query at a time)."""
    n = len(z)
    cells = _Cells(z, nprobe, seed)
    rr, cc, _ = cells.join(threshold, k)
    counts = np.bincount(rr, minlength=n)
    full = counts >= k
    # Rows with k neighbours that pass: a group larger than k, searched again with max_k.
    # When many rows are full the bound is loose for this data, not the groups large:
    # asking for more would only multiply false candidates.
    if max_k > k and 0 < full.sum() <= max(100, n // 100):
        r2, c2, _ = cells.join(threshold, max_k, only=full)
        rr, cc = np.concatenate([rr, r2]), np.concatenate([cc, c2])
    i, j = cells.order[rr], cells.order[cc]
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    key = np.unique(lo * n + hi)
    return key // n, key % n


def recheck(
    rows: Rows, transform: Transform, i: np.ndarray, j: np.ndarray, threshold: float
) -> Pairs:
    """Exact cosines of candidate pairs; those >= threshold, in bounded memory.

    Pairs are taken in order of ``i``, a block of consecutive rows at a time (one read
    when most of the block is needed), and each block's ``j`` rows are read once."""
    if len(i) == 0:
        return Pairs.empty()
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    block_rows = chunk_rows(rows.dim)
    per_batch = max(1024, _RECHECK_BYTES // max(1, rows.dim * 4))
    out_i, out_j, out_s = [], [], []
    for lo in range(int(i[0]) // block_rows * block_rows, int(i[-1]) + 1, block_rows):
        p0, p1 = np.searchsorted(i, [lo, lo + block_rows])
        if p1 == p0:
            continue
        need = np.unique(i[p0:p1])
        if len(need) * 2 >= block_rows:  # most of the block: one contiguous read
            need = np.arange(lo, min(rows.n, lo + block_rows), dtype=np.int64)
        a_rows = transform(rows.gather(need))
        for b0 in range(p0, p1, per_batch):
            ci, cj = i[b0 : min(p1, b0 + per_batch)], j[b0 : min(p1, b0 + per_batch)]
            other = np.unique(cj)
            b_rows = transform(rows.gather(other))
            ai, bj = np.searchsorted(need, ci), np.searchsorted(other, cj)
            score = np.empty(len(ci), dtype=np.float32)
            for s in range(0, len(ci), _DOT_PAIRS):
                sl = slice(s, s + _DOT_PAIRS)
                score[sl] = np.einsum("ij,ij->i", a_rows[ai[sl]], b_rows[bj[sl]])
            keep = score >= threshold - 1e-6  # float32: identical vectors at t = 1.0
            out_i.append(ci[keep])
            out_j.append(cj[keep])
            out_s.append(np.minimum(score[keep], 1.0))
    return Pairs(np.concatenate(out_i), np.concatenate(out_j), np.concatenate(out_s))


def similar_pairs(
    rows: Rows,
    threshold: float,
    *,
    center: bool = False,
    basis_dim: int = 128,
    flat_limit: int = 20_000,
    full_below: int = 2_000,
    k: int = 16,
    max_k: int = 256,
    nprobe: int = 8,
    seed: int = 0,
    transform: Transform | None = None,
) -> tuple[Pairs, SearchStats]:
    """Every pair of rows with cosine >= ``threshold`` (see the module docstring).

    Args:
        rows: the vectors (unit length), streamed.
        threshold: the cosine a pair must reach.
        center: mean-centre the vectors first (see :class:`Transform`).
        basis_dim: dimensions of the bound vectors (``p``); no projection when the vectors
            are not longer than ``basis_dim + 1``.
        flat_limit: up to this many rows the bound vectors are compared exactly.
        full_below: up to this many rows the full vectors are compared (no projection).
        k: candidates per row: the ``k`` best bounds that pass (exact and IVF search).
        max_k: neighbours searched again for rows whose ``k`` all passed: always up to
            ``flat_limit`` rows; above it only when such rows are few (at most 1%), else a
            row's pairs are cut (a group larger than ``k``, or than ``max_k`` anywhere, is
            then found only partly).
        nprobe: k-means cells visited per row (above ``flat_limit``).
        seed: sampling seed.
        transform: a centring learned beforehand (overrides ``center``).

    Returns:
        ``(pairs, stats)``; pairs ``i < j`` with their exact cosines.
    """
    stats = SearchStats()
    if rows.n < 2:
        return Pairs.empty(), stats
    transform = transform or fit_transform(rows, center, seed)
    # Few rows: compare the full vectors (no basis to fit; the "bound" is then exact).
    project_to = basis_dim if rows.dim > basis_dim + 1 and rows.n > full_below else None
    basis = fit_basis(rows, transform, project_to, seed) if project_to else None
    stats.basis_dim = rows.dim if basis is None else basis_dim + 1
    z = project(rows, transform, basis)
    # A hair below the threshold: float32 rounding must not drop a pair at exactly t.
    bound = threshold - 1e-5
    if rows.n <= flat_limit:
        ci, cj = _flat_pairs(z, bound, k, max_k)
    else:
        stats.method = "ivf"
        ci, cj = _ivf_pairs(z, bound, k, max_k, nprobe, seed)
    del z
    stats.candidates = len(ci)
    pairs = recheck(rows, transform, ci, cj, threshold)
    stats.pairs = len(pairs)
    return pairs, stats


__all__ = ["Pairs", "SearchStats", "Transform", "chunk_rows", "similar_pairs"]
