"""Approximate nearest neighbours over the cache: PCA to 256-d, FAISS IVF, exact re-rank.

Design, and why:

* **PCA without centring the query.** Database rows are stored as ``(x - mu) P`` and a
  query is projected as ``q P``. Then ``qP . (x - mu)P ~= q.x - q.mu``: the error term is
  constant per query, so the ranking by ``q.x`` survives. (Centring the query as well
  would add ``-mu.x``, which varies per row and reorders results.) The projection is a
  FAISS ``LinearTransform`` without bias in front of the IVF, so queries are projected by
  FAISS and rows are centred in numpy before they are added.
* **IVF on the 256-d rows**, inner-product metric, ``nlist ~ 4 sqrt(n)``, trained on a
  sample of at most ``train_rows``. ``kind="pca-ivf"`` keeps the 256-d floats (1 KiB per
  row); ``kind="pca-ivfpq"`` keeps a 32-byte PQ code per row (``pq_m=32``).
  Measured at 1M synthetic 2048-d rows (``bench/bench_million.py``, 2 shared cores):
  pca-ivf takes 1.04 GB and reaches recall@10 0.975 at ~3 ms a query; pca-ivfpq (PQ32)
  takes 46 MB and reaches 0.94 at ~24 ms, because PQ codes rank coarsely and it must
  re-rank 1,600 candidates instead of 200 (PQ64: 78 MB, 0.89 vs PQ32's 0.87 at 800).
* **Re-rank.** The IVF proposes ``candidates`` rows (tuned, see below; at least 100) which
  are scored exactly against the float32 rows of the cache, read with ``pread``.
* **nprobe and the candidate count are tuned at build time**: ``tune_queries`` live rows
  are searched (their own row left out) and, among nprobe x candidates (10 to 80 per
  result, 40 to 160 for PQ), the cheapest pair whose recall@10 against exact search reaches
  ``target_recall`` is kept, with the recall it reached (``tuned_recall``). When no pair
  reaches it (the PCA limits recall), the cheapest pair within half a point of the best.
* **Row numbers, not image ids.** The IVF stores cache row numbers; tombstoned rows are
  filtered out during the IVF scan with an ``IDSelectorBitmap`` and rows appended after
  the build (the delta) are scanned exactly by the caller. ``ann.json`` records the cache
  ``epoch`` and the rows covered: after a compaction the epoch differs and the ANN is
  rebuilt.

FAISS is imported only when an ANN is built, loaded or searched.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError, MissingDependencyError
from lookalike.vectors._files import read_json, write_json_atomic
from lookalike.vectors._train import divisor, pca, tune
from lookalike.vectors.cache import VectorCache
from lookalike.vectors.exact import TopK

KINDS = ("pca-ivf", "pca-ivfpq")
FORMAT = 1
INDEX_NAME = "ann.faiss"
META_NAME = "ann.json"
MIN_ROWS = 1000  # below this an exact scan is faster than any index
_CHUNK = 16384
_PARALLEL_QUERIES = 16  # fewer queries than this are searched on one thread


def import_faiss() -> Any:
    """The ``faiss`` module, or a :class:`MissingDependencyError` that says how to get it."""
    try:
        import faiss
    except ImportError as exc:
        raise MissingDependencyError(
            "approximate search needs FAISS: pip install faiss-cpu"
        ) from exc
    return faiss


@dataclass(frozen=True)
class AnnConfig:
    """Knobs of the approximate index; None means "choose from the data".

    Attributes:
        kind: ``"pca-ivf"`` (default) or ``"pca-ivfpq"`` (compressed).
        pca_dim: dimensions kept by the PCA.
        nlist: IVF lists; default ``4 * sqrt(rows)``, at most ``train_rows / 20``.
        nprobe: lists visited per query; default tuned at build time.
        candidates: rows re-ranked exactly per query; default tuned at build time
            (10 to 80 per result, 40 to 160 for PQ; at least 100), or ``max(100, 10 k)``
            (``max(400, 40 k)`` for PQ) when nprobe is fixed.
        train_rows: sample size for the PCA and the IVF training.
        target_recall: recall@10 the tuning aims for (measured on indexed rows).
        tune_queries: queries used for the tuning.
        pq_m: PQ sub-quantizers (bytes per row) for ``pca-ivfpq``.
        seed: sampling seed.
    """

    kind: str = "pca-ivf"
    pca_dim: int = 256
    nlist: int | None = None
    nprobe: int | None = None
    candidates: int | None = None
    train_rows: int = 100_000
    target_recall: float = 0.98
    tune_queries: int = 100
    pq_m: int = 32
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown ANN kind {self.kind!r}; choose one of {', '.join(KINDS)}")
        if self.nprobe is not None and self.nprobe < 1:
            raise ConfigError(f"nprobe must be >= 1, got {self.nprobe}")
        if self.candidates is not None and self.candidates < 1:
            raise ConfigError(f"candidates must be >= 1, got {self.candidates}")

    def candidates_for(self, k: int) -> int:
        if self.candidates is not None:
            return max(self.candidates, k)
        return max(400, 40 * k) if self.kind == "pca-ivfpq" else max(100, 10 * k)


def live_bitmap(ids: np.ndarray) -> np.ndarray:
    """uint8 bitmap (little bit order, as FAISS reads it) of rows whose id is not -1."""
    return np.packbits(ids >= 0, bitorder="little")


class AnnIndex:
    """A built IVF index over cache rows [0, rows) of one cache epoch."""

    def __init__(
        self, index: Any, meta: dict[str, Any], config: AnnConfig, *, writable: bool = True
    ) -> None:
        self.index = index
        self.writable = writable  # False when loaded memory-mapped: reload before extending
        self.meta = meta
        self.config = config
        self.mean = np.asarray(meta["mean"], dtype=np.float32)

    @property
    def epoch(self) -> str:
        return str(self.meta["epoch"])

    @property
    def rows(self) -> int:
        """Cache rows covered: [0, rows)."""
        return int(self.meta["rows"])

    @property
    def nprobe(self) -> int:
        return int(self.config.nprobe or self.meta["nprobe"])

    @property
    def build_id(self) -> str:
        return str(self.meta["build_id"])

    # --- building -------------------------------------------------------------------
    @classmethod
    def build(cls, cache: VectorCache, config: AnnConfig) -> AnnIndex:
        """Train and fill an index over every live row of ``cache`` (bounded memory)."""
        faiss = import_faiss()
        t0 = time.perf_counter()
        live = np.flatnonzero(cache.ids >= 0)
        if len(live) < 1 or cache.dim is None:
            raise ConfigError("cannot build an approximate index over an empty index")
        d = cache.dim
        rng = np.random.default_rng(config.seed)
        sample = np.sort(rng.choice(live, size=min(len(live), config.train_rows), replace=False))
        mean, proj, explained = pca(cache, sample, min(config.pca_dim, d))
        t_pca = time.perf_counter()
        p = proj.shape[1]
        train = np.concatenate(
            [
                (cache.gather(part) - mean) @ proj
                for part in np.array_split(sample, max(1, len(sample) // 8192))
            ]
        )
        nlist = config.nlist or round(4 * np.sqrt(len(live)))
        nlist = max(1, min(nlist, len(sample) // 20 or 1))
        quantizer = faiss.IndexFlatIP(p)
        if config.kind == "pca-ivfpq":
            m = divisor(p, config.pq_m)
            ivf = faiss.IndexIVFPQ(quantizer, p, nlist, m, 8, faiss.METRIC_INNER_PRODUCT)
            ivf.pq.cp.min_points_per_centroid = 1  # no "too few points" warnings on stderr
        else:
            ivf = faiss.IndexIVFFlat(quantizer, p, nlist, faiss.METRIC_INNER_PRODUCT)
        ivf.cp.min_points_per_centroid = 1
        ivf.train(np.ascontiguousarray(train, dtype=np.float32))
        del train
        t_train = time.perf_counter()
        transform = faiss.LinearTransform(d, p, False)
        faiss.copy_array_to_vector(np.ascontiguousarray(proj.T).ravel(), transform.A)
        transform.is_trained = True
        index = faiss.IndexPreTransform(transform, ivf)  # the wrapper keeps Python refs
        meta: dict[str, Any] = {
            "format": FORMAT,
            "kind": config.kind,
            "epoch": cache.epoch,
            "rows": 0,
            "trained_rows": len(live),
            "dim": d,
            "pca_dim": p,
            "nlist": nlist,
            "nprobe": config.nprobe or 1,
            "mean": mean.tolist(),
            "explained_variance": round(explained, 4),
            "build_id": uuid.uuid4().hex,
        }
        if config.kind == "pca-ivfpq":
            meta["pq_m"] = int(ivf.pq.M)
        ann = cls(index, meta, config)
        ann.extend(cache)
        t_add = time.perf_counter()
        if config.nprobe is None:
            ann.tune(cache)
        t_end = time.perf_counter()
        meta["seconds"] = round(t_end - t0, 3)
        meta["phases"] = {
            name: round(b - a, 2)
            for name, a, b in (
                ("pca", t0, t_pca),
                ("train", t_pca, t_train),
                ("add", t_train, t_add),
                ("tune", t_add, t_end),
            )
        }
        return ann

    def extend(self, cache: VectorCache) -> int:
        """Add the live cache rows appended since the last build or extension.

        Returns:
            How many rows were added to the index.
        """
        if cache.epoch != self.epoch:
            raise ConfigError("the cache was compacted; the approximate index must be rebuilt")
        start, stop = self.rows, cache.rows
        added = 0
        ids = cache.ids
        for lo in range(start, stop, _CHUNK):
            hi = min(stop, lo + _CHUNK)
            rows = lo + np.flatnonzero(ids[lo:hi] >= 0)
            if len(rows):
                block = np.asarray(cache.matrix[lo:hi])[rows - lo] - self.mean
                self.index.add_with_ids(np.ascontiguousarray(block), rows.astype(np.int64))
                added += len(rows)
            cache.release(lo, hi)
        self.meta["rows"] = stop
        self.meta["ntotal"] = int(self.index.ntotal)
        self.meta["build_id"] = uuid.uuid4().hex
        return added

    def tune(self, cache: VectorCache, k: int = 10) -> None:
        """Choose nprobe and the candidate count (see :func:`lookalike.vectors._train.tune`)."""
        nprobe, mult, recall = tune(self, cache, k)
        self.meta["nprobe"], self.meta["tuned_recall"] = nprobe, round(recall, 4)
        self.meta["candidates_per_k"] = mult

    def candidates_for(self, k: int) -> int:
        """Rows re-ranked per query for k results: configured, else tuned, else the default."""
        if self.config.candidates is not None:
            return max(self.config.candidates, k)
        mult = self.meta.get("candidates_per_k")
        return max(int(mult * k), 100) if mult else self.config.candidates_for(k)

    # --- searching ------------------------------------------------------------------
    def candidates(
        self,
        queries: np.ndarray,
        count: int,
        nprobe: int | None = None,
        bitmap: np.ndarray | None = None,
    ) -> np.ndarray:
        """Rows proposed for each query.

        Args:
            queries: float32 (nq, dim), unprojected.
            count: candidates per query.
            nprobe: lists to visit (default: the tuned value).
            bitmap: uint8 little-endian bitmap of rows that may be proposed.

        Returns:
            int64 (nq, count) cache row numbers, -1 where fewer were found.
        """
        faiss = import_faiss()
        params = faiss.SearchParametersIVF()
        params.nprobe = int(min(nprobe or self.nprobe, self.meta["nlist"]))
        if bitmap is not None:
            params.sel = faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        outer = faiss.SearchParametersPreTransform()
        outer.index_params = params
        count = int(min(count, max(1, self.index.ntotal)))
        q = np.ascontiguousarray(queries, dtype=np.float32)
        if len(q) >= _PARALLEL_QUERIES:
            return self.index.search(q, count, params=outer)[1]
        # A few queries gain nothing from OpenMP and lose a lot when the cores are busy
        # (measured at 1M rows, 2 shared cores: median 6.6 ms -> 2.2 ms). The setting is
        # per calling thread in OpenMP, so other threads keep theirs.
        previous = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(1)
        try:
            return self.index.search(q, count, params=outer)[1]
        finally:
            faiss.omp_set_num_threads(previous)

    # --- persistence ----------------------------------------------------------------
    def save(self, directory: Path, durable: bool = True) -> None:
        """Write ``ann.faiss`` then ``ann.json``; the json is removed first so that no
        reader pairs an old json with a new index. Call with the cache lock held."""
        faiss = import_faiss()
        tmp = directory / f"{INDEX_NAME}.tmp-{os.getpid()}"
        faiss.write_index(self.index, str(tmp))
        if durable:
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
        (directory / META_NAME).unlink(missing_ok=True)
        os.replace(tmp, directory / INDEX_NAME)
        meta = dict(self.meta, config=asdict(self.config))
        write_json_atomic(directory / META_NAME, meta, durable=durable)

    @classmethod
    def load(
        cls,
        directory: Path,
        config: AnnConfig,
        *,
        epoch: str,
        max_rows: int,
        writable: bool = False,
    ) -> AnnIndex | None:
        """The saved index if it belongs to ``epoch``, covers at most ``max_rows`` rows
        and is of ``config.kind``; None otherwise.

        A read-only load memory-maps the inverted lists (fast cold start, small RSS).
        """
        for _ in range(3):
            meta = read_json(directory / META_NAME)
            if (
                meta is None
                or meta.get("format") != FORMAT
                or meta.get("epoch") != epoch
                or meta.get("kind") != config.kind
                or int(meta.get("rows", -1)) > max_rows
                or meta.get("pca_dim") not in (config.pca_dim, meta.get("dim"))
                or (
                    config.kind == "pca-ivfpq"
                    and meta.get("pq_m") != divisor(int(meta["pca_dim"]), config.pq_m)
                )
            ):
                return None
            faiss = import_faiss()
            flags = 0 if writable else faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
            try:
                index = faiss.read_index(str(directory / INDEX_NAME), flags)
            except RuntimeError:
                index = None
            if read_json(directory / META_NAME) == meta:
                if index is None or index.ntotal != meta.get("ntotal"):
                    return None
                meta.pop("config", None)
                return cls(index, meta, config, writable=writable)
        return None

    def memory_bytes(self, directory: Path) -> int:
        """Bytes of the saved index (the same order as its memory when fully loaded)."""
        try:
            return (directory / INDEX_NAME).stat().st_size
        except OSError:
            return 0

    def stats(self) -> dict[str, Any]:
        keep = (
            "kind",
            "rows",
            "trained_rows",
            "pca_dim",
            "nlist",
            "nprobe",
            "candidates_per_k",
            "tuned_recall",
            "explained_variance",
            "seconds",
            "phases",
            "epoch",
        )
        out = {key: self.meta[key] for key in keep if key in self.meta}
        out["nprobe"] = self.nprobe
        return out


def rerank(cache: VectorCache, queries: np.ndarray, rows: np.ndarray, top: TopK) -> None:
    """Score candidate rows exactly and offer them to ``top``.

    Args:
        cache: where the float32 rows are read from.
        queries: float32 (nq, dim).
        rows: int64 (nq, c) candidate rows, -1 for none.
        top: accumulator of (score, image id).
    """
    valid = rows >= 0
    if not valid.any():
        return
    uniq, inverse = np.unique(np.where(valid, rows, rows[valid][0]), return_inverse=True)
    inverse = inverse.reshape(rows.shape)
    vectors = cache.gather(uniq)
    if len(queries) == 1:
        scores = (vectors @ queries[0])[inverse]
    else:
        scores = np.take_along_axis(queries @ vectors.T, inverse, axis=1)
    ids = cache.ids[uniq][inverse]
    scores = np.where(valid & (ids >= 0), scores, -np.inf).astype(np.float32)
    top.push(scores, np.where(valid, ids, -1))
