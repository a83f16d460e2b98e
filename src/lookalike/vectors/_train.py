"""Fitting the approximate index to the data: the PCA and the nprobe/candidates tuning."""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from lookalike.vectors.cache import VectorCache
from lookalike.vectors.exact import exact_search


class TunedIndex(Protocol):
    """What :func:`tune` reads of an :class:`~lookalike.vectors.ann.AnnIndex` (named
    here, not imported: ``ann`` imports this module)."""

    index: Any
    meta: dict[str, Any]
    config: Any

    @property
    def rows(self) -> int: ...

    def candidates(
        self,
        queries: np.ndarray,
        count: int,
        nprobe: int | None = None,
        bitmap: np.ndarray | None = None,
    ) -> np.ndarray: ...


NPROBES = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# Candidates per result tried by the tuning. PQ codes rank coarsely: at 1M synthetic rows
# PQ32 needs ~1,600 candidates for recall@10 ~0.96 (3,200 for 0.98) where floats need 200;
# PQ stops at 160 per result because re-ranking costs ~3-4 us per candidate (a pread).
MULTS = {"pca-ivf": (10, 20, 40, 80), "pca-ivfpq": (40, 80, 160)}


def tune(ann: TunedIndex, cache: VectorCache, k: int = 10) -> tuple[int, float, float]:
    """Choose nprobe and the candidate count: the cheapest pair that reaches the target.

    ``tune_queries`` live rows are the queries, each with its own row left out. Since the
    re-rank is exact, a pair's recall@k is just how many of the exact top-k are among
    its candidates, so no re-rank is run here. The cost model is per query: scanning the
    probed lists (``nprobe * rows/nlist`` codes) plus ~3 us per re-ranked row (a
    ``pread`` of the float32 row and a dot product).
    """
    live = np.flatnonzero(cache.ids[: ann.rows] >= 0)
    rng = np.random.default_rng(ann.config.seed + 1)
    qrows = np.sort(rng.choice(live, size=min(len(live), ann.config.tune_queries), replace=False))
    queries = cache.gather(qrows)
    self_ids = cache.ids[qrows]
    _, ref = exact_search(
        cache.matrix[: ann.rows], cache.ids[: ann.rows], queries, k + 1, release=cache.release
    )
    ref_sets = [set(r[r != s].tolist()[:k]) for r, s in zip(ref, self_ids, strict=True)]
    total = max(1, sum(len(r) for r in ref_sets))
    bitmap = np.packbits(cache.ids[: ann.rows] >= 0, bitorder="little")
    nlist = int(ann.meta["nlist"])
    mults = [ann.config.candidates / k] if ann.config.candidates else MULTS[ann.config.kind]
    per_list = ann.index.ntotal / nlist
    scan_ns = ann.meta.get("pq_m") or ann.meta["pca_dim"] * 0.15  # ns per code scanned
    tried: list[tuple[float, float, int, float]] = []  # (cost, recall, nprobe, mult)
    for nprobe in [n for n in NPROBES if n < nlist] + [nlist]:
        if nprobe > NPROBES[-1]:
            break
        scan = nprobe * per_list * scan_ns
        met = [t for t in tried if t[1] >= ann.config.target_recall]
        if met and scan > min(met)[0]:
            break  # probing more costs more than the best pair found already
        rows = ann.candidates(queries, int(max(mults) * k) + 1, nprobe, bitmap)
        got = np.where(rows >= 0, cache.ids[np.maximum(rows, 0)], -1)
        for mult in mults:
            count = int(mult * k) + 1  # + 1: the query's own row is among them
            hits = sum(len(ref_sets[i] & set(got[i, :count].tolist())) for i in range(len(got)))
            tried.append((scan + count * 3000.0, hits / total, nprobe, mult))
    met = [t for t in tried if t[1] >= ann.config.target_recall]
    if met:
        _, recall, nprobe, mult = min(met)
    else:  # recall plateaued below the target: the cheapest pair within 0.5 point of the best
        best = max(t[1] for t in tried)
        _, recall, nprobe, mult = min(t for t in tried if t[1] >= best - 0.005)
    return nprobe, mult, recall


def pca(cache: VectorCache, sample: np.ndarray, p: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Mean float32 (d,), projection float32 (d, p), and the variance fraction it keeps."""
    d = cache.dim or 0
    total = np.zeros(d, dtype=np.float64)
    gram = np.zeros((d, d), dtype=np.float64)
    for part in np.array_split(sample, max(1, len(sample) // 8192)):
        block = cache.gather(part)
        total += block.sum(axis=0, dtype=np.float64)
        gram += block.T @ block  # float32 GEMM, accumulated in float64
    n = max(1, len(sample))
    mean = total / n
    cov = gram / n - np.outer(mean, mean)
    values, vectors = np.linalg.eigh(cov)
    order = np.argsort(values)[::-1][:p]
    explained = float(values[order].sum() / max(values.sum(), 1e-30))
    return (
        mean.astype(np.float32),
        np.ascontiguousarray(vectors[:, order], dtype=np.float32),
        explained,
    )


def divisor(p: int, want: int) -> int:
    """The largest divisor of p not above want (PQ needs p % m == 0)."""
    return max(m for m in range(1, want + 1) if p % m == 0)
