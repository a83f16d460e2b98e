"""A derived, rebuildable on-disk copy of every stored vector, memory-mapped for search.

Layout of the cache directory (e.g. ``photos.db.cache/``)::

    vectors.f32   rows x dim float32, append-only
    ids.i64       row -> image id (int64); -1 marks a tombstone (a deleted or replaced row)
    state.json    {"format", "generation", "rows", "dim", "epoch"}
    lock          the writers' lock (flock); readers never take it

Rules that keep the cache provably in sync with the store:

* ``state.json`` is written (tmp file + ``os.replace``) only after the data files are
  flushed and fsynced, and it records the store ``generation`` the data matches.
* A reader trusts the files only while ``state.generation == source.generation()``;
  anything else (a crash between the store's commit and the cache update, another
  writer, a missing or torn state) makes it rebuild from the source.
* :meth:`VectorCache.apply` appends incrementally only when the cache is exactly at the
  generation before the writer's commit; otherwise it leaves the cache stale and the next
  reader rebuilds it.
* A full rebuild removes ``state.json`` first, writes new files aside, renames them in,
  then writes a state with a new random ``epoch``; row numbers are only comparable within
  one epoch (the ANN records the epoch it was built for).

Concurrent readers: a reader works on its own snapshot (its ``rows`` and its copy of
``ids``). While a writer appends, the reader neither sees the new rows nor the tombstones
written after it loaded, so it may return an image id that was deleted a moment ago:
callers must drop returned ids that no longer exist in the store.
"""

from __future__ import annotations

import contextlib
import mmap
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError, StoreError
from lookalike.vectors._files import directory_lock, file_stamp
from lookalike.vectors._snapshot import (
    IDS_NAME,
    STATE_NAME,
    VECTORS_NAME,
    CacheState,
    Snapshot,
    load_snapshot,
    publish,
    write_files,
)
from lookalike.vectors.source import VectorSource

COMPACT_FRACTION = 0.30
_PREADV = hasattr(os, "preadv")
_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


class VectorCache:
    """The memory-mapped copy of the store's vectors; see the module docstring for the rules.

    Use :meth:`open`; the constructor is private.

    Example:
        >>> cache = VectorCache.open(Path("photos.db.cache"), store)  # doctest: +SKIP
        >>> cache.matrix.shape, cache.ids.shape  # doctest: +SKIP
        ((120000, 2048), (120000,))
    """

    def __init__(self, directory: Path, source: VectorSource, *, durable: bool = True) -> None:
        self.directory = Path(directory)
        self.source = source
        self.durable = durable
        self._snap: Snapshot | None = None
        self._stamp: tuple[int, int, int] | None = None

    @classmethod
    def open(
        cls, directory: Path | str, source: VectorSource, *, durable: bool = True
    ) -> VectorCache:
        """Map the cache in ``directory`` if it matches ``source``, else rebuild it first.

        Args:
            directory: the cache directory; created when missing.
            source: the store the cache is a copy of.
            durable: fsync data and state before renaming (off only for throwaway benches).
        """
        cache = cls(Path(directory), source, durable=durable)
        cache.ensure_current()
        return cache

    # --- the snapshot ---------------------------------------------------------------
    @property
    def _s(self) -> Snapshot:
        if self._snap is None:
            self.ensure_current()
        assert self._snap is not None
        return self._snap

    @property
    def state(self) -> CacheState:
        return self._s.state

    @property
    def generation(self) -> int:
        return self._s.state.generation

    @property
    def epoch(self) -> str:
        return self._s.state.epoch

    @property
    def rows(self) -> int:
        """Rows in this snapshot, tombstones included."""
        return self._s.state.rows

    @property
    def dim(self) -> int | None:
        return self._s.state.dim

    @property
    def tombstones(self) -> int:
        return self._s.tombstones

    @property
    def live(self) -> int:
        """Rows that hold a live image."""
        return self._s.state.rows - self._s.tombstones

    @property
    def matrix(self) -> np.ndarray:
        """float32 (rows, dim), read-only, file-backed: touch it in chunks and :meth:`release`."""
        return self._s.matrix

    @property
    def ids(self) -> np.ndarray:
        """int64 (rows,): the image id of each row, -1 for tombstones (read-only view)."""
        view = self._s.ids.view()
        view.flags.writeable = False
        return view

    @property
    def key(self) -> tuple[str, int, int, int]:
        """(epoch, generation, rows, tombstones): changes whenever any of them does."""
        s = self._s
        return (s.state.epoch, s.state.generation, s.state.rows, s.tombstones)

    def exists(self) -> bool:
        """Whether the directory holds a cache state at all (current or not)."""
        return CacheState.read(self.directory) is not None

    def is_current(self) -> bool:
        """Whether this snapshot matches the source's generation right now."""
        return self._snap is not None and self._snap.state.generation == self.source.generation()

    def ensure_current(self) -> bool:
        """Re-map or rebuild when the source's generation moved on, and pick up a
        compaction or rebuild another process made at the same generation.

        Returns:
            True when the snapshot changed.
        """
        generation = self.source.generation()
        stamp = file_stamp(self.directory / STATE_NAME)
        snap = self._snap
        if snap is not None and snap.state.generation == generation:
            if stamp == self._stamp:
                return False
            fresh = load_snapshot(self.directory, generation)
            self._stamp = stamp
            if fresh is None or fresh.state == snap.state:
                return False  # ours is still valid (old files stay mapped)
            self._install(fresh)
            return True
        fresh = load_snapshot(self.directory, generation)
        if fresh is None:
            with directory_lock(self.directory):
                generation = self.source.generation()
                fresh = load_snapshot(self.directory, generation) or self._rebuild_locked()
        self._install(fresh)
        return True

    def _install(self, snap: Snapshot) -> None:
        self._snap = snap
        self._stamp = file_stamp(self.directory / STATE_NAME)

    # --- page management ------------------------------------------------------------
    def release(self, start: int, stop: int) -> None:
        """Drop the pages of rows [start, stop) from this process (the page cache keeps them).

        Keeps the resident set flat while a scan walks a map larger than memory.
        """
        snap = self._snap
        if snap is None or snap.mm is None or _DONTNEED is None or stop <= start:
            return
        row_bytes = (snap.state.dim or 0) * 4
        lo = (start * row_bytes) // _PAGE * _PAGE
        hi = min(len(snap.mm), stop * row_bytes)
        if hi > lo:
            with contextlib.suppress(OSError, ValueError):  # exotic platforms: keep pages
                snap.mm.madvise(_DONTNEED, lo, hi - lo)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Copy the given rows out of the file.

        Reads with ``preadv`` (one call per run of consecutive rows) rather than through
        the map: touching scattered rows of a map makes the kernel map whole large folios
        around each (up to 2 MiB), so a few hundred random rows could pin gigabytes.

        Args:
            rows: int64 (m,), row numbers in [0, rows).

        Returns:
            float32 (m, dim), a private copy.
        """
        snap = self._s
        rows = np.asarray(rows, dtype=np.int64).reshape(-1)
        if snap.file is None or not _PREADV or len(rows) == 0:
            out = np.array(snap.matrix[rows])
            self.release(0, snap.state.rows)
            return out
        if rows.min() < 0 or rows.max() >= snap.state.rows:
            raise IndexError("row out of range")
        row_bytes = (snap.state.dim or 0) * 4
        out = np.empty((len(rows), snap.state.dim or 0), dtype=np.float32)
        buf = out.data.cast("B")
        fd = snap.file.fileno()
        breaks = np.flatnonzero(np.diff(rows) != 1) + 1
        starts = np.r_[0, breaks].tolist()
        stops = np.r_[breaks, len(rows)].tolist()
        for a, b, first in zip(starts, stops, rows[starts].tolist(), strict=True):
            want = (b - a) * row_bytes
            got = os.preadv(fd, [buf[a * row_bytes : b * row_bytes]], first * row_bytes)
            if got != want:
                raise OSError(f"short read from {self.directory / VECTORS_NAME}")
        return out

    # --- writing --------------------------------------------------------------------
    def rebuild(self) -> None:
        """Rebuild every file from the source under a new epoch."""
        with directory_lock(self.directory):
            self._install(self._rebuild_locked())

    def _rebuild_locked(self) -> Snapshot:
        d = self.directory
        try:
            for _ in range(5):
                generation = self.source.generation()
                rows, dim = write_files(
                    d, self.source.iter_vectors(), self.source.dim(), self.durable
                )
                if self.source.generation() == generation:
                    return publish(d, generation, rows, dim, self.durable)
        except OSError as exc:
            raise StoreError(f"cannot write the vector cache in {d}: {exc}") from exc
        raise StoreError("the index kept changing while its vector cache was rebuilt; retry")

    def _flush(self, *files: Any) -> None:
        for f in files:
            f.flush()
            if self.durable:
                os.fsync(f.fileno())

    def apply(
        self,
        added_ids: np.ndarray,
        added_vectors: np.ndarray,
        removed_ids: np.ndarray,
        generation: int,
        previous_generation: int,
    ) -> str:
        """Bring the cache from ``previous_generation`` to ``generation`` incrementally.

        Called by the owner after its own commit. Rows of ``removed_ids`` and of
        ``added_ids`` that already had a row (an update) become tombstones; the added
        vectors are appended; then the state is written with the new generation.

        Args:
            added_ids: int64 (m,), image ids added or replaced by the commit.
            added_vectors: float32 (m, dim), their vectors (unit length).
            removed_ids: int64 (r,), image ids deleted by the commit.
            generation: the store's generation after the commit.
            previous_generation: the store's generation just before the commit.

        Returns:
            ``"applied"``, ``"compacted"`` (applied, then rewritten without tombstones
            under a new epoch), ``"current"`` (already at ``generation``) or ``"stale"``
            (the cache was not at ``previous_generation``: left for the next reader to
            rebuild).
        """
        added_ids = np.ascontiguousarray(added_ids, dtype=np.int64).reshape(-1)
        removed_ids = np.ascontiguousarray(removed_ids, dtype=np.int64).reshape(-1)
        added_vectors = np.ascontiguousarray(added_vectors, dtype=np.float32)
        if len(added_ids) == 0:
            added_vectors = added_vectors.reshape(
                0, added_vectors.shape[-1] if added_vectors.size else 0
            )
        if added_vectors.ndim != 2 or len(added_vectors) != len(added_ids):
            raise ConfigError(
                f"added_vectors must be float32 (m, dim) with m = {len(added_ids)}, "
                f"got shape {added_vectors.shape}"
            )
        with directory_lock(self.directory):
            disk = CacheState.read(self.directory)
            if disk is not None and disk.generation == generation:
                snap = load_snapshot(self.directory, generation)
                if snap is not None:
                    self._install(snap)
                    return "current"
            if disk is None or disk.generation != previous_generation:
                return "stale"
            if self._snap is None or self._snap.state != disk:
                snap = load_snapshot(self.directory, previous_generation)
                if snap is None:
                    return "stale"
                self._install(snap)
            dim = disk.dim
            if len(added_ids) and dim is not None and added_vectors.shape[1] != dim:
                raise ConfigError(
                    f"added vectors have dim {added_vectors.shape[1]}, the cache {dim}"
                )
            if len(added_ids):
                dim = added_vectors.shape[1]
            try:
                self._append_locked(added_ids, added_vectors, removed_ids, generation, dim)
            except OSError as exc:
                raise StoreError(
                    f"cannot write the vector cache in {self.directory}: {exc}"
                ) from exc
            if self.tombstones > COMPACT_FRACTION * self.rows:
                self.compact()
                return "compacted"
            return "applied"

    def _append_locked(
        self,
        added_ids: np.ndarray,
        added: np.ndarray,
        removed: np.ndarray,
        generation: int,
        dim: int | None,
    ) -> None:
        snap = self._s
        d, rows0 = self.directory, snap.state.rows
        ids = snap.ids
        gone = np.concatenate([removed, added_ids])
        if len(gone) and rows0 and not (removed.size == 0 and added_ids.min() > ids.max()):
            kill = np.flatnonzero(np.isin(ids, gone) & (ids >= 0))
        else:
            kill = np.empty(0, dtype=np.int64)
        with open(d / IDS_NAME, "r+b" if (d / IDS_NAME).exists() else "w+b") as fi:
            if len(kill):
                tomb = np.full(1, -1, dtype=np.int64).tobytes()
                for row in kill.tolist():  # why not a writable memmap: no extra mapping to unmap
                    fi.seek(row * 8)
                    fi.write(tomb)
            fi.seek(rows0 * 8)
            fi.write(added_ids.data.cast("B"))
            fi.truncate()
            if len(added_ids):
                with open(d / VECTORS_NAME, "r+b" if (d / VECTORS_NAME).exists() else "w+b") as fv:
                    fv.seek(rows0 * (dim or 0) * 4)
                    fv.write(added.data.cast("B"))
                    fv.truncate()
                    self._flush(fv)
            self._flush(fi)
        state = CacheState(generation, rows0 + len(added_ids), dim, snap.state.epoch)
        state.write(d, self.durable)
        new = Snapshot(d, state)
        self._install(new)

    def compact(self) -> None:
        """Rewrite the files without tombstones under a new epoch (same generation).

        Copies live rows from the cache itself (it is in sync), not from the store.
        """
        with directory_lock(self.directory):
            snap = self._s
            live = np.flatnonzero(snap.ids >= 0)

            def chunks() -> Iterator[tuple[np.ndarray, np.ndarray]]:
                for start in range(0, len(live), 16384):
                    part = live[start : start + 16384]
                    yield snap.ids[part], self.gather(part)

            try:
                rows, dim = write_files(self.directory, chunks(), snap.state.dim, self.durable)
                new = publish(self.directory, snap.state.generation, rows, dim, self.durable)
            except OSError as exc:
                raise StoreError(
                    f"cannot write the vector cache in {self.directory}: {exc}"
                ) from exc
            self._install(new)

    def nbytes(self) -> int:
        """Bytes the cache files take on disk."""
        total = 0
        for name in (VECTORS_NAME, IDS_NAME, STATE_NAME):
            with contextlib.suppress(OSError):
                total += (self.directory / name).stat().st_size
        return total

    def info(self) -> dict[str, Any]:
        """Rows, live rows, tombstones, dim, generation, epoch and bytes on disk."""
        s = self._s
        return {
            "rows": s.state.rows,
            "live": s.state.rows - s.tombstones,
            "tombstones": s.tombstones,
            "dim": s.state.dim,
            "generation": s.state.generation,
            "epoch": s.state.epoch,
            "bytes": self.nbytes(),
        }

    def close(self) -> None:
        """Unmap the files (views handed out earlier keep their pages alive)."""
        snap, self._snap = self._snap, None
        if snap is not None and snap.file is not None:
            snap.file.close()
        if snap is not None and snap.mm is not None:
            snap.matrix = np.empty((0, 0), dtype=np.float32)
            with contextlib.suppress(BufferError):  # a view is still held: the GC unmaps later
                snap.mm.close()
