"""Which approximate index a process uses, and when it is loaded, extended or rebuilt."""

from __future__ import annotations

from pathlib import Path

from lookalike.vectors._files import directory_lock, file_stamp
from lookalike.vectors.ann import META_NAME, AnnConfig, AnnIndex
from lookalike.vectors.cache import VectorCache

DELTA_FRACTION = 0.10  # extend the ANN when rows appended since its build exceed this ...
DELTA_ROWS = 32768  # ... or this many rows (an exact delta scan of 32k x 2048 is ~10 ms)
REBUILD_GROWTH = 4.0  # retrain when the index has grown this much since it was trained
# The ANN is first memory-mapped (a cold process answers in milliseconds without reading
# the whole file), but scanning mapped lists costs ~2 ms more per query, so a process that
# keeps searching reads it into memory after this many queries.
PROMOTE_AFTER = 16


class AnnKeeper:
    """Holds this process's :class:`AnnIndex` and keeps it valid for the cache snapshot.

    The saved index is reused when ``ann.json`` matches the snapshot's epoch; rows appended
    since are left to an exact delta scan until they pass ``DELTA_FRACTION`` or
    ``DELTA_ROWS``, then the index is extended; it is rebuilt after a compaction (new
    epoch) or once the cache grew ``REBUILD_GROWTH`` times past the rows it was trained on.
    Writers take the cache directory's lock.
    """

    def __init__(self, directory: Path, config: AnnConfig, durable: bool) -> None:
        self.directory = directory
        self.config = config
        self.durable = durable
        self.ann: AnnIndex | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._queries = 0

    def forget_if_stale(self, cache: VectorCache) -> None:
        """Drop the index when it no longer fits the cache snapshot."""
        ann = self.ann
        if ann is not None and (ann.epoch != cache.epoch or ann.rows > cache.rows):
            self.ann = None

    def peek(self, cache: VectorCache) -> AnnIndex | None:
        """The index in memory, else the saved one if it fits (never builds)."""
        return self.ann or AnnIndex.load(
            self.directory, self.config, epoch=cache.epoch, max_rows=cache.rows
        )

    def counted(self, cache: VectorCache, ann: AnnIndex, queries: int) -> AnnIndex:
        """Count queries; past ``PROMOTE_AFTER`` read a memory-mapped index into memory."""
        self._queries += queries
        if ann.writable or self._queries <= PROMOTE_AFTER:
            return ann
        loaded = AnnIndex.load(
            self.directory, self.config, epoch=cache.epoch, max_rows=cache.rows, writable=True
        )
        if loaded is not None and loaded.build_id == ann.build_id:
            self.ann = ann = loaded
        return ann

    def get(
        self, cache: VectorCache, *, rebuild: bool = False, extend_any: bool = False
    ) -> AnnIndex | None:
        """The ANN for this snapshot: loaded, extended or built as needed.

        Args:
            cache: the current snapshot.
            rebuild: build a new index even if a valid one exists.
            extend_any: extend with every appended row, not only past the delta limits.
        """
        if cache.live == 0:
            return None

        def fresh(ann: AnnIndex | None) -> bool:
            limit = 1 if extend_any else min(DELTA_FRACTION * ann.rows, DELTA_ROWS) if ann else 0
            return ann is not None and cache.rows - ann.rows < limit

        ann = None if rebuild else self.current(cache)
        if fresh(ann):
            return ann
        with directory_lock(self.directory):
            if cache.ensure_current():  # another process compacted: never index a stale epoch
                self.forget_if_stale(cache)
            if not rebuild:  # another process may have done the work meanwhile
                self._stamp = None
                ann = self.current(cache, writable=True)
                if fresh(ann):
                    return ann
            if ann is None or rebuild or cache.rows > REBUILD_GROWTH * ann.meta["trained_rows"]:
                ann = AnnIndex.build(cache, self.config)
            else:
                ann.extend(cache)
            ann.save(self.directory, self.durable)
            self.ann = ann
            self._stamp = file_stamp(self.directory / META_NAME)
            return ann

    def current(self, cache: VectorCache, writable: bool = False) -> AnnIndex | None:
        """The in-memory ANN if still valid, else the saved one if it fits this snapshot."""
        stamp = file_stamp(self.directory / META_NAME)
        ann = self.ann
        if ann is not None and stamp == self._stamp and (ann.writable or not writable):
            return ann
        ann = AnnIndex.load(
            self.directory,
            self.config,
            epoch=cache.epoch,
            max_rows=cache.rows,
            writable=writable,
        )
        self.ann, self._stamp = ann, stamp
        return ann
