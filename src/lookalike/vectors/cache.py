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
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import ConfigError, StoreError
from lookalike.vectors._files import directory_lock, read_json, write_json_atomic
from lookalike.vectors.source import VectorSource

FORMAT = 1
VECTORS_NAME = "vectors.f32"
IDS_NAME = "ids.i64"
STATE_NAME = "state.json"
COMPACT_FRACTION = 0.30
_RELEASE_BUDGET = 256 << 20  # bytes gathered from the map before its pages are dropped
_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


@dataclass(frozen=True)
class CacheState:
    """The content of ``state.json``."""

    generation: int
    rows: int
    dim: int | None
    epoch: str

    @classmethod
    def read(cls, directory: Path) -> CacheState | None:
        data = read_json(directory / STATE_NAME)
        try:
            if data is None or data["format"] != FORMAT:
                return None
            dim = data["dim"]
            state = cls(
                int(data["generation"]),
                int(data["rows"]),
                None if dim is None else int(dim),
                str(data["epoch"]),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if state.rows < 0 or (state.rows and not state.dim):
            return None
        return state

    def write(self, directory: Path, durable: bool) -> None:
        data = {
            "format": FORMAT,
            "generation": self.generation,
            "rows": self.rows,
            "dim": self.dim,
            "epoch": self.epoch,
        }
        write_json_atomic(directory / STATE_NAME, data, durable=durable)


class _Snapshot:
    """One consistent view of the files: state, mapped vectors, ids in memory."""

    def __init__(self, directory: Path, state: CacheState) -> None:
        self.state = state
        self.mm: mmap.mmap | None = None
        dim = state.dim or 0
        nbytes = state.rows * dim * 4
        if nbytes:
            with open(directory / VECTORS_NAME, "rb") as f:
                if os.fstat(f.fileno()).st_size < nbytes:
                    raise ValueError("vectors file shorter than its state")
                self.mm = mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_READ)
            self.matrix = np.frombuffer(self.mm, dtype=np.float32).reshape(state.rows, dim)
            ids = np.fromfile(directory / IDS_NAME, dtype=np.int64, count=state.rows)
            if len(ids) != state.rows:
                raise ValueError("ids file shorter than its state")
        else:
            self.matrix = np.empty((0, dim), dtype=np.float32)
            ids = np.empty(0, dtype=np.int64)
        self.ids = ids
        self.tombstones = int(np.count_nonzero(ids < 0))


def _stamp(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _load(directory: Path, generation: int) -> _Snapshot | None:
    """Map the files if their state is at ``generation`` and stays put while we map them."""
    for _ in range(5):
        state = CacheState.read(directory)
        if state is None or state.generation != generation:
            return None
        try:
            snap = _Snapshot(directory, state)
        except (OSError, ValueError):
            snap = None
        if CacheState.read(directory) == state:  # no rebuild slipped in between
            return snap
    return None


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
        self._snap: _Snapshot | None = None
        self._stamp: tuple[int, int, int] | None = None
        self._gathered = 0

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
    def _s(self) -> _Snapshot:
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
        stamp = _stamp(self.directory / STATE_NAME)
        snap = self._snap
        if snap is not None and snap.state.generation == generation:
            if stamp == self._stamp:
                return False
            fresh = _load(self.directory, generation)
            self._stamp = stamp
            if fresh is None or fresh.state == snap.state:
                return False  # ours is still valid (old files stay mapped)
            self._install(fresh)
            return True
        fresh = _load(self.directory, generation)
        if fresh is None:
            with directory_lock(self.directory):
                generation = self.source.generation()
                fresh = _load(self.directory, generation) or self._rebuild_locked()
        self._install(fresh)
        return True

    def _install(self, snap: _Snapshot) -> None:
        self._snap = snap
        self._stamp = _stamp(self.directory / STATE_NAME)
        self._gathered = 0

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
        """Copy the given rows out of the map.

        Args:
            rows: int64 (m,), row numbers in [0, rows).

        Returns:
            float32 (m, dim), a private copy.
        """
        snap = self._s
        rows = np.asarray(rows, dtype=np.int64)
        out = snap.matrix[rows]
        self._gathered += out.nbytes * 2  # a row usually straddles two pages
        if self._gathered > _RELEASE_BUDGET:
            self.release(0, snap.state.rows)
            self._gathered = 0
        return out

    # --- writing --------------------------------------------------------------------
    def rebuild(self) -> None:
        """Rebuild every file from the source under a new epoch."""
        with directory_lock(self.directory):
            self._install(self._rebuild_locked())

    def _rebuild_locked(self) -> _Snapshot:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        (d / STATE_NAME).unlink(missing_ok=True)  # nobody trusts the files while they change
        tmp_v, tmp_i = d / f"{VECTORS_NAME}.tmp", d / f"{IDS_NAME}.tmp"
        try:
            for _ in range(5):
                generation = self.source.generation()
                rows, dim = self._copy_source(tmp_v, tmp_i)
                if self.source.generation() == generation:
                    break
            else:
                raise StoreError(
                    "the index kept changing while its vector cache was rebuilt; retry"
                )
            os.replace(tmp_v, d / VECTORS_NAME)
            os.replace(tmp_i, d / IDS_NAME)
            state = CacheState(generation, rows, dim, uuid.uuid4().hex)
            state.write(d, self.durable)
        except OSError as exc:
            raise StoreError(f"cannot write the vector cache in {d}: {exc}") from exc
        return _Snapshot(d, state)

    def _copy_source(self, tmp_v: Path, tmp_i: Path) -> tuple[int, int | None]:
        dim = self.source.dim()
        rows = 0
        with open(tmp_v, "wb") as fv, open(tmp_i, "wb") as fi:
            for ids, vectors in self.source.iter_vectors():
                ids = np.ascontiguousarray(ids, dtype=np.int64)
                vectors = np.ascontiguousarray(vectors, dtype=np.float32)
                if vectors.ndim != 2 or len(ids) != len(vectors):
                    raise StoreError("the store yielded ids and vectors of different lengths")
                if dim is None:
                    dim = vectors.shape[1]
                if vectors.shape[1] != dim:
                    raise StoreError(f"the store holds vectors of dim {vectors.shape[1]} and {dim}")
                fv.write(memoryview(vectors).cast("B"))
                fi.write(memoryview(ids).cast("B"))
                rows += len(ids)
            self._flush(fv, fi)
        return rows, (dim if rows else self.source.dim())

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
                snap = _load(self.directory, generation)
                if snap is not None:
                    self._install(snap)
                    return "current"
            if disk is None or disk.generation != previous_generation:
                return "stale"
            if self._snap is None or self._snap.state != disk:
                snap = _load(self.directory, previous_generation)
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
            fi.write(memoryview(added_ids).cast("B"))
            fi.truncate()
            if len(added_ids):
                with open(d / VECTORS_NAME, "r+b" if (d / VECTORS_NAME).exists() else "w+b") as fv:
                    fv.seek(rows0 * (dim or 0) * 4)
                    fv.write(memoryview(added).cast("B"))
                    fv.truncate()
                    self._flush(fv)
            self._flush(fi)
        state = CacheState(generation, rows0 + len(added_ids), dim, snap.state.epoch)
        state.write(d, self.durable)
        new = _Snapshot(d, state)
        self._install(new)

    def compact(self) -> None:
        """Rewrite the files without tombstones under a new epoch (same generation).

        Copies live rows from the cache itself (it is in sync), not from the store.
        """
        with directory_lock(self.directory):
            snap = self._s
            d = self.directory
            live = np.flatnonzero(snap.ids >= 0)
            (d / STATE_NAME).unlink(missing_ok=True)
            tmp_v, tmp_i = d / f"{VECTORS_NAME}.tmp", d / f"{IDS_NAME}.tmp"
            step = 16384
            try:
                with open(tmp_v, "wb") as fv, open(tmp_i, "wb") as fi:
                    for start in range(0, len(live), step):
                        part = live[start : start + step]
                        block = np.ascontiguousarray(snap.matrix[part])
                        self.release(int(part[0]), int(part[-1]) + 1)
                        fv.write(memoryview(block).cast("B"))
                        fi.write(memoryview(np.ascontiguousarray(snap.ids[part])).cast("B"))
                    self._flush(fv, fi)
                os.replace(tmp_v, d / VECTORS_NAME)
                os.replace(tmp_i, d / IDS_NAME)
                state = CacheState(
                    snap.state.generation, len(live), snap.state.dim, uuid.uuid4().hex
                )
                state.write(d, self.durable)
            except OSError as exc:
                raise StoreError(f"cannot write the vector cache in {d}: {exc}") from exc
            self._install(_Snapshot(d, state))

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
        if snap is not None and snap.mm is not None:
            snap.matrix = np.empty((0, 0), dtype=np.float32)
            with contextlib.suppress(BufferError):  # a view is still held: the GC unmaps later
                snap.mm.close()
