"""A derived, rebuildable on-disk copy of every stored vector, memory-mapped for search.

Layout of the cache directory (e.g. ``photos.db.cache/``)::

    vectors.f32   rows x dim float32, append-only
    ids.i64       row -> image id (int64), append-only
    tombs.i64     rows whose image was deleted or replaced (int64), append-only
    state.json    {"format", "generation", "source_id", "rows", "tombs", "dim", "epoch"}
    lock          the writers' lock (flock); readers never take it
    commit.lock   held by a writer while a commit is in flight (see ``_files.commit_marker``)

Rules that keep the cache provably in sync with the store:

* ``state.json`` is written (tmp file + ``os.replace``) only after the data files are
  flushed and fsynced, and it records the store ``generation`` and generation id the data
  matches; rows and tombstones past its counts are invisible to its readers.
* A reader trusts the files only while the state's ``(generation, source_id)`` equals the
  source's head (another database at the same path, or a generation that went down and
  up again, never matches); anything else (a crash between the store's commit and the
  cache update, another writer, a missing or torn state) makes it rebuild from the source,
  except while a writer holds the commit marker: then a reader keeps its last consistent
  snapshot (or, without one, waits for the writer) instead of rebuilding under it.
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
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError, StoreError
from lookalike.vectors._files import (
    commit_held_here,
    commit_in_flight,
    commit_marker,
    directory_lock,
    file_stamp,
)
from lookalike.vectors._pages import gather_rows, release_rows
from lookalike.vectors._snapshot import (
    IDS_NAME,
    STATE_NAME,
    TOMBS_NAME,
    VECTORS_NAME,
    CacheState,
    Snapshot,
    append,
    load_snapshot,
    net_changes,
    publish,
    write_files,
)
from lookalike.vectors.source import VectorSource, source_head

COMPACT_FRACTION = 0.30
WAIT_FOR_COMMIT_S = 5.0  # a reader with no snapshot waits this long for a writer's commit


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
        self.rebuilds = 0  # full rebuilds this object made (benchmarks count them)
        self.kept_during_commit = 0  # syncs answered from the last snapshot instead

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
        """Whether this snapshot matches the source's head right now."""
        return self._snap is not None and self._snap.state.head == source_head(self.source)

    def committing(self) -> contextlib.AbstractContextManager[None]:
        """Hold around a store commit and the :meth:`apply` that follows it, so that readers
        meeting the commit in flight do not rebuild the cache under it."""
        return commit_marker(self.directory)

    def ensure_current(self) -> bool:
        """Re-map or rebuild when the source's head moved on, and pick up a compaction or
        rebuild another process made at the same generation.

        While another writer's commit is in flight (the store is ahead of the cache and the
        writer holds the commit marker) a snapshot already held is kept: it is the last
        consistent state, and the writer is about to append the rest. With no snapshot yet,
        the reader waits for the writer (at most ``WAIT_FOR_COMMIT_S``). Either way it does
        not rebuild the whole cache under the writer.

        Returns:
            True when the snapshot changed.
        """
        head = source_head(self.source)
        stamp = file_stamp(self.directory / STATE_NAME)
        snap = self._snap
        if snap is not None and snap.state.head == head:
            if stamp == self._stamp:
                return False
            fresh = load_snapshot(self.directory, head)
            self._stamp = stamp
            if fresh is None or fresh.state == snap.state:
                return False  # ours is still valid (old files stay mapped)
            self._install(fresh)
            return True
        fresh = load_snapshot(self.directory, head)
        if fresh is None and commit_in_flight(self.directory):
            if snap is not None and snap.state.generation < head[0]:
                self.kept_during_commit += 1
                return False
            if not commit_held_here(self.directory):  # our own writer would wait for us
                fresh = self._wait_for_commit()
        if fresh is None:
            with directory_lock(self.directory):
                fresh = load_snapshot(self.directory, source_head(self.source))
                if fresh is None:
                    fresh = self._rebuild_locked()
        self._install(fresh)
        return True

    def _wait_for_commit(self) -> Snapshot | None:
        """Poll until no commit is in flight, then map the state if it matches the source."""
        deadline = time.monotonic() + WAIT_FOR_COMMIT_S
        while commit_in_flight(self.directory) and time.monotonic() < deadline:
            time.sleep(0.002)
        return load_snapshot(self.directory, source_head(self.source))

    def _install(self, snap: Snapshot) -> None:
        self._snap = snap
        self._stamp = file_stamp(self.directory / STATE_NAME)

    # --- page management ------------------------------------------------------------
    def release(self, start: int, stop: int) -> None:
        """Drop the pages of rows [start, stop) from this process (the page cache keeps them).

        Keeps the resident set flat while a scan walks a map larger than memory.
        """
        if self._snap is not None:
            release_rows(self._snap, start, stop)

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """Copy the given rows out of the file (see :func:`gather_rows`).

        Args:
            rows: int64 (m,), row numbers in [0, rows).

        Returns:
            float32 (m, dim), a private copy.
        """
        return gather_rows(self._s, rows, self.directory / VECTORS_NAME)

    # --- writing --------------------------------------------------------------------
    def rebuild(self) -> None:
        """Rebuild every file from the source under a new epoch."""
        with directory_lock(self.directory):
            self._install(self._rebuild_locked())

    def _rebuild_locked(self) -> Snapshot:
        d = self.directory
        self.rebuilds += 1
        try:
            for _ in range(5):
                head = source_head(self.source)
                rows, dim = write_files(
                    d, self.source.iter_vectors(), self.source.dim(), self.durable
                )
                if source_head(self.source) == head:
                    return publish(d, head, rows, dim, self.durable)
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
        *,
        generation_id: str | None = None,
        previous_generation_id: str | None = None,
    ) -> str:
        """Bring the cache from ``previous_generation`` to ``generation`` incrementally.

        Called by the owner after its own commit. Rows of ``removed_ids`` and of
        ``added_ids`` that already had a row (an update) become tombstones; the added
        vectors are appended; then the state is written with the new generation. Idempotent
        per id: an id added twice keeps its last vector, one row; an id both added and
        removed ends with no live row.

        Args:
            added_ids: int64 (m,), image ids added or replaced by the commit.
            added_vectors: float32 (m, dim), their vectors (unit length).
            removed_ids: int64 (r,), image ids deleted by the commit.
            generation: the store's generation after the commit.
            previous_generation: the store's generation just before the commit.
            generation_id: the store's generation id after the commit; when None, the
                source's current one if it is still at ``generation``.
            previous_generation_id: the id before the commit; when given, the cache must
                have been copied from exactly that state.

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
        if generation_id is None:
            now = source_head(self.source)
            generation_id = now[1] if now[0] == generation else None
        head = (generation, generation_id)
        with directory_lock(self.directory):
            disk = CacheState.read(self.directory)
            if disk is not None and disk.head == head:
                snap = load_snapshot(self.directory, head)
                if snap is not None:
                    self._install(snap)
                    return "current"
            if (
                disk is None
                or disk.generation != previous_generation
                or (previous_generation_id is not None and disk.source_id != previous_generation_id)
            ):
                return "stale"
            if self._snap is None or self._snap.state != disk:
                snap = load_snapshot(self.directory, disk.head)
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
                changes = net_changes(added_ids, added_vectors, removed_ids)
                state = append(self.directory, self._s, changes, head, dim, self._flush)
                state.write(self.directory, self.durable)
                self._install(Snapshot(self.directory, state))
            except OSError as exc:
                raise StoreError(
                    f"cannot write the vector cache in {self.directory}: {exc}"
                ) from exc
            if self.tombstones > COMPACT_FRACTION * self.rows:
                self.compact()
                return "compacted"
            return "applied"

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
                new = publish(self.directory, snap.state.head, rows, dim, self.durable)
            except OSError as exc:
                raise StoreError(
                    f"cannot write the vector cache in {self.directory}: {exc}"
                ) from exc
            self._install(new)

    def nbytes(self) -> int:
        """Bytes the cache files take on disk."""
        total = 0
        for name in (VECTORS_NAME, IDS_NAME, TOMBS_NAME, STATE_NAME):
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
