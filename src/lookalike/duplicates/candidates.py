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
  a FAISS IVF index over ``z`` (inner product) is searched for each row's ``k`` nearest;
  rows whose ``k``-th neighbour still passes are searched again with a larger ``k``.
* **Re-check.** Candidate pairs are scored on the full vectors, gathered in bounded
  chunks (``pread`` from the cache), so memory stays flat at any collection size.

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
_RECHECK_BYTES = 512 << 20


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


def _flat_pairs(z: np.ndarray, threshold: float, max_per_row: int) -> tuple[np.ndarray, ...]:
    """Exact block comparison of ``z`` with itself; pairs ``i < j`` scoring >= threshold."""
    n = len(z)
    found_i, found_j = [], []
    for start in range(0, n, _FLAT_BLOCK):
        block = z[start : start + _FLAT_BLOCK]
        # Only columns after the block's first row: each pair once (i < j).
        scores = block @ z[start:].T
        rr, cc = np.nonzero(scores >= threshold)
        cc = cc + start
        rr = rr + start
        keep = cc > rr
        rr, cc = rr[keep], cc[keep]
        if len(rr) and np.bincount(rr - start).max() > max_per_row:
            # Keep each row's best bounds only: a loose bound (or an untrained model)
            # must not turn into a quadratic number of re-checks.
            order = np.lexsort((-scores[rr - start, cc - start], rr))
            rr, cc = rr[order], cc[order]
            first = np.searchsorted(rr, rr, side="left")
            keep = (np.arange(len(rr)) - first) < max_per_row
            rr, cc = rr[keep], cc[keep]
        found_i.append(rr.astype(np.int64))
        found_j.append(cc.astype(np.int64))
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(found_i), np.concatenate(found_j)


def _ivf_pairs(
    z: np.ndarray, threshold: float, k: int, max_k: int, nprobe: int, seed: int
) -> tuple[np.ndarray, ...]:
    """Each row's neighbours >= threshold through a FAISS IVF over ``z``."""
    from ..vectors.ann import import_faiss

    faiss = import_faiss()
    n, d = z.shape
    nlist = max(16, min(int(4 * math.sqrt(n)), n // 40))
    train = z[_sample_positions(n, min(n, 32 * nlist), seed)]
    quantizer = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quantizer, d, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.cp.min_points_per_centroid = 1
    ivf.cp.seed = seed
    ivf.cp.niter = 10  # coarse cells only route the search; more k-means rounds buy little
    ivf.train(np.ascontiguousarray(train))
    for start in range(0, n, _KNN_CHUNK * 4):
        ivf.add(np.ascontiguousarray(z[start : start + _KNN_CHUNK * 4]))
    ivf.nprobe = min(nprobe, nlist)
    found_i, found_j = [], []
    saturated: list[np.ndarray] = []
    for start in range(0, n, _KNN_CHUNK):
        q = np.ascontiguousarray(z[start : start + _KNN_CHUNK])
        scores, nbrs = ivf.search(q, min(k, n))
        ok = (scores >= threshold) & (nbrs >= 0)
        rr, cc = np.nonzero(ok)
        found_i.append(rr.astype(np.int64) + start)
        found_j.append(nbrs[rr, cc].astype(np.int64))
        full = np.flatnonzero(ok[:, -1])
        if len(full):
            saturated.append(full.astype(np.int64) + start)
    rows = np.concatenate(saturated) if saturated else np.empty(0, np.int64)
    # Rows whose k neighbours all passed: a group larger than k, searched again with max_k.
    # When most rows are full the bound is loose for this data, not the groups large:
    # asking for more would only multiply false candidates.
    if len(rows) and max_k > k and len(rows) <= max(100, n // 100):
        for start in range(0, len(rows), _KNN_CHUNK // 8):
            part = rows[start : start + _KNN_CHUNK // 8]
            scores, nbrs = ivf.search(np.ascontiguousarray(z[part]), min(max_k, n))
            rr, cc = np.nonzero((scores >= threshold) & (nbrs >= 0))
            found_i.append(part[rr])
            found_j.append(nbrs[rr, cc].astype(np.int64))
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    lo, hi = np.minimum(i, j), np.maximum(i, j)
    keep = lo != hi
    key = np.unique(lo[keep] * n + hi[keep])
    return key // n, key % n


def recheck(
    rows: Rows, transform: Transform, i: np.ndarray, j: np.ndarray, threshold: float
) -> Pairs:
    """Exact cosines of candidate pairs; those >= threshold, in bounded memory."""
    if len(i) == 0:
        return Pairs.empty()
    order = np.lexsort((j, i))
    i, j = i[order], j[order]
    per_chunk = max(1024, _RECHECK_BYTES // max(1, rows.dim * 4 * 2))
    out_i, out_j, out_s = [], [], []
    for start in range(0, len(i), per_chunk):
        ci, cj = i[start : start + per_chunk], j[start : start + per_chunk]
        need = np.unique(np.concatenate([ci, cj]))
        block = transform(rows.gather(need))
        a = block[np.searchsorted(need, ci)]
        b = block[np.searchsorted(need, cj)]
        score = np.einsum("ij,ij->i", a, b)
        keep = score >= threshold
        out_i.append(ci[keep])
        out_j.append(cj[keep])
        out_s.append(np.minimum(score[keep], 1.0).astype(np.float32))
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
    nprobe: int = 16,
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
        max_k: neighbours asked again from the IVF for rows whose ``k`` all passed, when
            such rows are few (at most 1%); beyond, a row's pairs are cut (a group larger
            than ``k`` or ``max_k`` is then found only partly).
        nprobe: IVF lists visited per row.
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
        ci, cj = _flat_pairs(z, bound, k)
    else:
        stats.method = "ivf"
        ci, cj = _ivf_pairs(z, bound, k, max_k, nprobe, seed)
    del z
    stats.candidates = len(ci)
    pairs = recheck(rows, transform, ci, cj, threshold)
    stats.pairs = len(pairs)
    return pairs, stats


__all__ = ["Pairs", "SearchStats", "Transform", "chunk_rows", "similar_pairs"]
