"""The vector-index seam the engine calls: exact or approximate top-k over the cache.

Why the ANN threshold is 100,000 live rows: an exact query streams every row once, 8 KiB
per 2048-d row. Measured on the 2-core box of issue #3 (``bench/bench_exact.py``): 100k
rows (0.82 GB) take 37 ms when the box is quiet (22 GB/s, the numpy ceiling is ~24) and
~105 ms when the other core is busy; 1M rows (8.2 GB) take 0.5-1.2 s. Building the ANN
costs ~20-35 s at 100-200k rows and ~90 s at 1M, and then answers in ~3 ms at 1M. Below
~100k rows exact search is already instant and an index would not repay its build.
"""

from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError
from lookalike.vectors._keeper import AnnKeeper
from lookalike.vectors.ann import MIN_ROWS, AnnConfig, live_bitmap, rerank
from lookalike.vectors.cache import VectorCache
from lookalike.vectors.exact import (
    TopK,
    as_id_array,
    block_mask,
    check_k,
    check_queries,
    exact_search,
    score_block,
)
from lookalike.vectors.source import VectorSource

ANN_MODES = ("auto", "on", "off")
_GATHER_CHUNK = 8192


class VectorSearch:
    """Top-k by cosine similarity over the store's vectors, exact or approximate.

    Results follow the faiss convention: ``(scores, ids)`` of shape (nq, k), best first,
    ``-inf`` / ``-1`` in empty slots. Image ids a concurrent writer deleted after this
    object last synced may still be returned: callers drop ids the store no longer has.

    Args:
        cache_dir: directory of the derived cache (e.g. ``photos.db.cache``).
        source: the store, the source of truth.
        ann: ``"auto"`` builds an approximate index on the first search once live rows
            reach ``ann_threshold``; ``"on"`` whenever there are at least 1,000 rows;
            ``"off"`` always searches exactly.
        ann_threshold: live rows from which ``"auto"`` uses the ANN.
        ann_kind: ``"pca-ivf"`` (default) or ``"pca-ivfpq"`` (compressed, see ann.py).
        nprobe: IVF lists visited per query (default: tuned when the ANN is built).
        candidates: rows re-ranked exactly per query (default ``max(100, 10 k)``).
        gather_limit: an ``allow`` list of at most this many rows is searched exactly by
            gathering its rows, even when an ANN exists.
        durable: fsync cache files before publishing them.
        ann_config: every ANN knob at once (see :class:`AnnConfig`); replaces
            ``ann_kind``, ``nprobe`` and ``candidates`` when given.

    Example:
        >>> vs = VectorSearch(Path("photos.db.cache"), store)  # doctest: +SKIP
        >>> scores, ids = vs.search(query_vector, k=10)  # doctest: +SKIP
    """

    def __init__(
        self,
        cache_dir: Path | str,
        source: VectorSource,
        *,
        ann: str = "auto",
        ann_threshold: int = 100_000,
        ann_kind: str = "pca-ivf",
        nprobe: int | None = None,
        candidates: int | None = None,
        gather_limit: int = 200_000,
        durable: bool = True,
        ann_config: AnnConfig | None = None,
    ) -> None:
        if ann not in ANN_MODES:
            raise ConfigError(f"ann must be one of {', '.join(ANN_MODES)}, got {ann!r}")
        if ann_threshold < 0:
            raise ConfigError(f"ann_threshold must be >= 0, got {ann_threshold}")
        self.directory = Path(cache_dir)
        self.source = source
        self.ann_mode = ann
        self.ann_threshold = ann_threshold
        self._ann_config = ann_config or AnnConfig(
            kind=ann_kind, nprobe=nprobe, candidates=candidates
        )
        self.gather_limit = gather_limit
        self._cache = VectorCache(self.directory, source, durable=durable)
        self._keeper = AnnKeeper(self.directory, self._ann_config, durable)
        self._idmap: tuple[Any, np.ndarray, np.ndarray] | None = None
        self._bitmap: tuple[Any, np.ndarray] | None = None
        self._lock = threading.RLock()

    # --- public ---------------------------------------------------------------------
    @property
    def ann_config(self) -> AnnConfig:
        """The ANN knobs used for the next build (and to accept a saved index)."""
        return self._ann_config

    @ann_config.setter
    def ann_config(self, config: AnnConfig) -> None:
        with self._lock:
            self._ann_config = self._keeper.config = config
            self._keeper.ann = None

    def search(
        self,
        queries: np.ndarray,
        k: int,
        *,
        exact: bool = False,
        allow: np.ndarray | None = None,
        exclude: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The k most similar images for each query.

        Args:
            queries: float32 (nq, dim) or (dim,), unit vectors.
            k: results per query (>= 1); capped at the number of stored vectors.
            exact: force an exact scan even when an ANN exists.
            allow: int64 image ids; only these may be returned (e.g. one folder).
            exclude: int64 image ids that must not be returned (e.g. the query image).

        Returns:
            ``(scores, ids)``: float32 (nq, k') cosine similarities, descending, and int64
            (nq, k') image ids, ``k' = min(k, stored vectors)`` (0 columns on an empty
            index); ``-inf`` / -1 pad the slots when fewer images qualify.
        """
        check_k(k)
        with self._lock:
            cache = self._sync()
            q = check_queries(queries, cache.dim)
            allow_ids, exclude_ids = as_id_array(allow), as_id_array(exclude)
            k = check_k(k, cache.live)  # a huge k never pads past what is stored (#20)
            if cache.live == 0:
                return TopK(len(q), k).result()
            use_ann = not exact and self._ann_wanted(cache.live)
            if allow_ids is not None:
                rows = self._rows_of(allow_ids)
                if not use_ann or len(rows) <= self.gather_limit:
                    if len(rows) < cache.rows // 2:
                        return self._gather_exact(q, k, rows, exclude_ids)
                    return self._exact(q, k, allow_ids, exclude_ids)
                return self._ann_search(q, k, rows, allow_ids, exclude_ids)
            if use_ann:
                return self._ann_search(q, k, None, None, exclude_ids)
            return self._exact(q, k, None, exclude_ids)

    def notify(
        self,
        added_ids: np.ndarray,
        added_vectors: np.ndarray,
        removed_ids: np.ndarray,
        generation: int,
        previous_generation: int,
        *,
        generation_id: str | None = None,
        previous_generation_id: str | None = None,
    ) -> None:
        """Bring the cache up to the owner's commit (call after the commit, inside
        :meth:`committing`).

        Args:
            added_ids: int64 (m,), images added or whose vector changed.
            added_vectors: float32 (m, dim), their unit vectors.
            removed_ids: int64 (r,), images deleted.
            generation: the store's generation after the commit.
            previous_generation: the store's generation before it. The cache is updated
                incrementally only if it was exactly there; otherwise it is rebuilt on the
                next search.
            generation_id: the store's generation id after the commit
                (``WriteResult.generation_id``).
            previous_generation_id: the id before it; the cache must have been there.
        """
        with self._lock:
            status = self._cache.apply(
                added_ids,
                added_vectors,
                removed_ids,
                generation,
                previous_generation,
                generation_id=generation_id,
                previous_generation_id=previous_generation_id,
            )
            if status == "stale" and not self._cache.exists():
                # No cache at all yet (first commit, or the directory was deleted): create
                # it now, so that later commits append instead of leaving it stale.
                self._cache.ensure_current()
            self._keeper.forget_if_stale(self._cache)

    def committing(self) -> contextlib.AbstractContextManager[None]:
        """Hold around a store commit and its :meth:`notify`: readers in other processes
        (and threads) that meet the commit in flight keep their last consistent snapshot, or
        wait for it, instead of rebuilding the whole cache under the writer.

        Example:
            >>> with vs.committing():  # doctest: +SKIP
            ...     result = store.write(batch)
            ...     vs.notify(result.added_ids, ...)
        """
        return self._cache.committing()

    def build_ann(self, force: bool = False) -> dict[str, Any]:
        """Build (or extend) the approximate index now, e.g. at the end of an indexing run.

        Without ``force`` nothing is built below the threshold (``ann="auto"``) or with
        ``ann="off"``; a current index is only extended with rows added since.

        Returns:
            ``{"built", "rows", "seconds", "kind", "memory_bytes", ...}``; ``"reason"``
            says why nothing was built.
        """
        t0 = time.perf_counter()
        with self._lock:
            cache = self._sync()
            if not force and (self.ann_mode == "off" or not self._ann_wanted(cache.live)):
                reason = "ann is off" if self.ann_mode == "off" else "below the ANN threshold"
                return {
                    "built": False,
                    "reason": reason,
                    "rows": cache.live,
                    "kind": self.ann_config.kind,
                }
            if cache.live < MIN_ROWS and not force:
                return {
                    "built": False,
                    "reason": "too few rows",
                    "rows": cache.live,
                    "kind": self.ann_config.kind,
                }
            ann = self._keeper.get(cache, rebuild=force, extend_any=True)
            if ann is None:
                return {
                    "built": False,
                    "reason": "empty index",
                    "rows": 0,
                    "kind": self.ann_config.kind,
                }
            return dict(
                ann.stats(),
                built=True,
                seconds=round(time.perf_counter() - t0, 3),
                memory_bytes=ann.memory_bytes(self.directory),
            )

    def info(self) -> dict[str, Any]:
        """Rows, tombstones, cache bytes, and the ANN's presence, kind and coverage."""
        with self._lock:
            cache = self._sync()
            out = cache.info()
            ann = self._keeper.peek(cache) if self._faiss_ok() else None
            out["ann"] = (
                {"present": False, "mode": self.ann_mode, "threshold": self.ann_threshold}
                if ann is None
                else dict(
                    ann.stats(),
                    present=True,
                    mode=self.ann_mode,
                    threshold=self.ann_threshold,
                    memory_bytes=ann.memory_bytes(self.directory),
                )
            )
            return out

    def close(self) -> None:
        """Unmap the cache and drop the ANN."""
        with self._lock:
            self._keeper.ann = None
            self._idmap = self._bitmap = None
            self._cache.close()

    # --- internals ------------------------------------------------------------------
    def _sync(self) -> VectorCache:
        if self._cache.ensure_current():
            self._keeper.forget_if_stale(self._cache)
        return self._cache

    def _ann_wanted(self, live: int) -> bool:
        if self.ann_mode == "off":
            return False
        if self.ann_mode == "on":
            return live >= MIN_ROWS
        return live >= max(self.ann_threshold, MIN_ROWS)

    @staticmethod
    def _faiss_ok() -> bool:
        try:
            import faiss  # noqa: F401
        except ImportError:
            return False
        return True

    def _exact(
        self, q: np.ndarray, k: int, allow: np.ndarray | None, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        c = self._cache
        return exact_search(c.matrix, c.ids, q, k, allow, exclude, release=c.release)

    def _gather_exact(
        self, q: np.ndarray, k: int, rows: np.ndarray, exclude: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        top = TopK(len(q), k)
        ids = self._cache.ids
        for start in range(0, len(rows), _GATHER_CHUNK):
            part = rows[start : start + _GATHER_CHUNK]
            scores = score_block(self._cache.gather(part), q)
            mask = block_mask(ids[part], None, exclude)
            if mask is not None:
                scores[:, ~mask] = -np.inf
            top.push(scores, ids[part])
        return top.result()

    def _rows_of(self, image_ids: np.ndarray) -> np.ndarray:
        """Sorted int64 rows of the live images among ``image_ids`` (sorted unique)."""
        c = self._cache
        if self._idmap is None or self._idmap[0] != c.key:
            ids = c.ids
            rows = np.flatnonzero(ids >= 0)
            live = ids[rows]
            if len(live) > 1 and not (live[1:] > live[:-1]).all():
                order = np.argsort(live, kind="stable")
                rows, live = rows[order], live[order]
            self._idmap = (c.key, live, rows)
        _, live, rows = self._idmap
        if len(live) == 0 or len(image_ids) == 0:
            return np.empty(0, dtype=np.int64)
        pos = np.minimum(np.searchsorted(live, image_ids), len(live) - 1)
        return np.sort(rows[pos[live[pos] == image_ids]])

    def _live_bitmap(self) -> np.ndarray:
        """uint8 bitmap of live rows for this snapshot (cached)."""
        c = self._cache
        if self._bitmap is None or self._bitmap[0] != c.key:
            self._bitmap = (c.key, live_bitmap(c.ids))
        return self._bitmap[1]

    def _eligible(
        self, allow_rows: np.ndarray | None, exclude: np.ndarray | None
    ) -> tuple[np.ndarray | None, int]:
        """The FAISS selector bitmap over rows (None: every row) and how many rows qualify."""
        c = self._cache
        excluded = self._rows_of(exclude) if exclude is not None and len(exclude) else None
        if allow_rows is None:
            if excluded is None:
                return (self._live_bitmap() if c.tombstones else None), c.live
            bitmap = self._live_bitmap().copy()
            np.bitwise_and.at(
                bitmap, excluded >> 3, ~np.left_shift(1, excluded & 7).astype(np.uint8)
            )
            return bitmap, c.live - len(excluded)
        eligible = np.zeros(c.rows, dtype=bool)
        eligible[allow_rows] = True  # allow_rows are live rows
        if excluded is not None:
            eligible[excluded] = False
        return np.packbits(eligible, bitorder="little"), int(np.count_nonzero(eligible))

    def _ann_search(
        self,
        q: np.ndarray,
        k: int,
        allow_rows: np.ndarray | None,
        allow: np.ndarray | None,
        exclude: np.ndarray | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        c = self._cache
        key = c.key
        ann = self._keeper.get(c)
        if ann is None:
            return self._exact(q, k, allow, exclude)
        if c.key != key and allow is not None:  # another process compacted meanwhile
            allow_rows = self._rows_of(allow)
        ann = self._keeper.counted(c, ann, len(q))
        covered = ann.rows
        bitmap, n_eligible = self._eligible(allow_rows, exclude)
        top = TopK(len(q), k)
        rows = ann.candidates(q, ann.candidates_for(k), bitmap=bitmap)
        rerank(c, q, rows, top)
        if c.rows > covered:  # rows appended since the ANN was built: scan them exactly

            def release(a: int, b: int) -> None:
                c.release(covered + a, covered + b)

            exact_search(
                c.matrix[covered:], c.ids[covered:], q, k, allow, exclude, release=release, top=top
            )
        scores, ids = top.result()
        short = np.flatnonzero((ids >= 0).sum(axis=1) < min(k, n_eligible))
        if len(short):  # the lists probed held too few eligible rows: answer those exactly
            es, ei = self._exact(q[short], k, allow, exclude)
            scores[short], ids[short] = es, ei
        return scores, ids
