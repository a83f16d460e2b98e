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
  the ``z`` are routed into k-means cells (FAISS; :mod:`.cells`) and each row keeps its
  ``k`` best bounds that pass among the rows of its ``nprobe`` nearest cells: the work of
  an IVF search, done cell by cell as matrix products (BLAS) rather than query by query.
* **Re-check by rank** (cell join). A row with fewer than ``k`` passing bounds has all of
  them re-checked. A row with ``k`` was cut to its best bounds (a group larger than ``k``,
  or a bound that is loose for this data): its candidates are re-checked best bound
  first, the next ones only while every one so far was a pair; rows whose ``k`` all were
  pairs are searched again with a larger ``k``.
* **Re-check.** Candidate pairs are scored on the full vectors, a block of consecutive
  ``i`` rows at a time (read at once) against that block's ``j`` rows (``pread`` from the
  cache), so memory stays flat at any collection size.

Optionally every vector is mean-centred first (``center``): ``x -> (x - mu) / |x - mu|``
with ``mu`` the mean of the collection, which removes the direction all post-ReLU
features share and spreads distinct images apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .cells import Cells, best_per_row, one_blas_thread, passing, sample_positions
from .rows import Rows, chunk_rows

_SAMPLE = 20_000
_FLAT_BLOCK = 1024
_RECHECK_BYTES = 256 << 20  # rows of j read at once in the re-check
_DOT_PAIRS = 1024  # pairs scored at once (their rows stay in cache)
_FIRST_CHECK = 4  # a full row's candidates re-checked first (see _checked_by_rank)


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
    cells: int = 0  # k-means cells of the join (ivf)
    join_scores: int = 0  # bound scores the cell join computed (ivf)


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


def fit_transform(rows: Rows, center: bool, seed: int = 0) -> Transform:
    """The centring learned from a sample of ``rows`` (identity when ``center`` is off)."""
    if not center or rows.n == 0:
        return Transform()
    sample = rows.gather(sample_positions(rows.n, _SAMPLE, seed))
    return Transform(sample.mean(axis=0, dtype=np.float64).astype(np.float32))


def _orthonormal(a: np.ndarray) -> np.ndarray:
    """Orthonormal columns spanning ``a`` (float64 (d, m), m small) through the small
    (m, m) Gram matrix (cheaper than a QR of the tall matrix)."""
    values, vectors = np.linalg.eigh(a.T @ a)
    values = np.maximum(values, values.max() * 1e-12)
    return a @ (vectors / np.sqrt(values)) @ vectors.T  # type: ignore[no-any-return]


def fit_basis(rows: Rows, transform: Transform, p: int, seed: int = 0) -> np.ndarray:
    """float32 ``(dim, p)`` orthonormal: the top eigenvectors of a sample's ``X^T X``."""
    sample = transform(rows.gather(sample_positions(rows.n, _SAMPLE, seed)))
    gram = (sample.T @ sample).astype(np.float64)
    # Randomised subspace iteration: the top p directions in a fraction of the time of a
    # full eigendecomposition (2048-d: ~10x). Any orthonormal basis keeps the bound exact;
    # a better one only makes it tighter.
    rng = np.random.default_rng(seed)
    with one_blas_thread():
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
        rr, cc, _ = best_per_row(rr, cc, scores[rr, cc], max_per_row)
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
            rr, cc, _ = passing(scores, threshold, max_k)[:3]
            lo, hi = np.minimum(part[rr], cc), np.maximum(part[rr], cc)
            found_i.append(lo.astype(np.int64))
            found_j.append(hi.astype(np.int64))
    if not found_i:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    i, j = np.concatenate(found_i), np.concatenate(found_j)
    key = np.unique(i * n + j)
    return key // n, key % n


_FIELDS = ("i", "j", "score")


class _Checker:
    """Re-checks candidate pairs (positions) on the full vectors, each pair once, and
    keeps those >= threshold."""

    def __init__(self, rows: Rows, transform: Transform, threshold: float) -> None:
        self.rows, self.transform, self.threshold = rows, transform, threshold
        self.checked = np.empty(0, np.int64)  # sorted keys lo * n + hi
        self.found = np.empty(0, np.int64)  # sorted keys of the pairs
        self.parts: list[Pairs] = []

    def __call__(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Whether each pair ``(i[x], j[x])`` is a pair (cosine >= threshold)."""
        n = self.rows.n
        key = np.minimum(i, j) * n + np.maximum(i, j)
        new = np.unique(key)
        new = new[~_member(new, self.checked)]
        if len(new):
            got = recheck(self.rows, self.transform, new // n, new % n, self.threshold)
            self.parts.append(got)
            self.checked = np.union1d(self.checked, new)
            self.found = np.union1d(self.found, got.i * n + got.j)
        return _member(key, self.found)

    def pairs(self) -> Pairs:
        if not self.parts:
            return Pairs.empty()
        i, j, score = (np.concatenate([getattr(p, f) for p in self.parts]) for f in _FIELDS)
        order = np.lexsort((j, i))
        return Pairs(i[order], j[order], score[order])


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), dtype=bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys  # type: ignore[no-any-return]


def _checked_by_rank(
    rr: np.ndarray, cc: np.ndarray, bound: np.ndarray, cap: int, check: _Checker
) -> np.ndarray:
    """Re-check each row's candidates (``rr`` -> ``cc``, at most ``cap`` per row, by their
    ``bound``); return the rows whose ``cap`` candidates were all pairs.

    A row with fewer than ``cap`` candidates has every neighbour above the threshold among
    them: all are re-checked. A row with ``cap`` was cut to its best bounds already (a
    group larger than ``cap``, or a bound loose for this data: issue #19's isotropic
    clusters pass the bound with every row of their cell): its candidates are re-checked
    in order of bound, ``_FIRST_CHECK`` first, and the next ones (twice as many each round)
    only while every one checked so far was a pair. Bounds rank copies first (a copy's
    residual is aligned with its original's, so its bound is nearly its cosine), so a row
    whose best bound is not a pair has no pair further down, and a loose bound costs a
    few re-checks per row instead of ``cap``."""
    n = check.rows.n
    counts = np.bincount(rr, minlength=n)
    order = np.lexsort((-bound, rr))
    rr, cc = rr[order], cc[order]
    rank = np.arange(len(rr)) - np.searchsorted(rr, rr)
    alive = np.ones(n, dtype=bool)
    todo = (counts[rr] < cap) | (rank < _FIRST_CHECK)  # first round: every short row
    start, width = 0, _FIRST_CHECK
    while todo.any():
        ok = check(rr[todo], cc[todo])
        alive[rr[todo][~ok]] = False
        start, width = start + width, 2 * width
        todo = (counts[rr] >= cap) & (rank >= start) & (rank < start + width) & alive[rr]
    return alive & (counts >= cap)  # type: ignore[no-any-return]


def _ivf_search(cells: Cells, check: _Checker, threshold: float, k: int, max_k: int) -> np.ndarray:
    """Each row's ``k`` best neighbours >= threshold (bounds) among the rows of its
    ``nprobe`` nearest k-means cells (see :class:`~.cells.Cells`), re-checked by rank;
    rows whose ``k`` were all pairs are searched again with ``max_k``. Returns the rows
    still full after that (their pairs are cut)."""
    n = len(cells.zs)
    rr, cc, sc = cells.join(threshold, k)
    full = _checked_by_rank(cells.order[rr], cells.order[cc], sc, k, check)
    del rr, cc, sc
    # Rows with k pairs: a group larger than k, searched again with max_k (when few: many
    # such rows would mean huge groups, and asking for more would multiply the work).
    if max_k > k and 0 < full.sum() <= max(100, n // 100):
        rr, cc, sc = cells.join(threshold, max_k, only=full[cells.order])
        full = _checked_by_rank(cells.order[rr], cells.order[cc], sc, max_k, check)
    return full


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
            ``flat_limit`` rows; above it for rows whose ``k`` candidates all were pairs,
            when such rows are few (at most 1%), else a row's pairs are cut (a group
            larger than ``k``, or than ``max_k`` anywhere, is then found only partly).
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
        del z
        stats.candidates = len(ci)
        pairs = recheck(rows, transform, ci, cj, threshold)
    else:
        stats.method = "ivf"
        cells = Cells(z, nprobe, seed)  # holds its own (reordered) copy of z
        del z
        check = _Checker(rows, transform, threshold)
        _ivf_search(cells, check, bound, k, max_k)
        stats.cells, stats.join_scores = cells.nlist, cells.scores
        del cells
        stats.candidates = len(check.checked)
        pairs = check.pairs()
    stats.pairs = len(pairs)
    return pairs, stats


__all__ = ["Pairs", "SearchStats", "Transform", "chunk_rows", "similar_pairs"]
