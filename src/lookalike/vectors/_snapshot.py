"""The cache's on-disk format: ``state.json`` and one consistent, mapped view of the files.

Format 2 (#8): tombstones are no longer written over ``ids.i64`` in place. A commit appends
the row numbers it kills to ``tombs.i64`` and the new rows to ``ids.i64`` / ``vectors.f32``,
all past the counts the current ``state.json`` names, and only then replaces the state: a
reader at the old state never sees a tombstone without the row that replaced it. The state
also records the source's generation id, which ties the files to one database's history.
"""

from __future__ import annotations

import mmap
import os
import uuid
import weakref
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import StoreError
from lookalike.vectors._files import read_json, write_json_atomic

FORMAT = 2
VECTORS_NAME = "vectors.f32"
IDS_NAME = "ids.i64"
TOMBS_NAME = "tombs.i64"
STATE_NAME = "state.json"


@dataclass(frozen=True)
class CacheState:
    """The content of ``state.json``."""

    generation: int
    rows: int
    dim: int | None
    epoch: str
    tombs: int = 0  # entries of tombs.i64 that apply
    source_id: str | None = None  # the source's generation id at ``generation``

    @property
    def head(self) -> tuple[int, str | None]:
        """``(generation, source_id)``, comparable with ``source_head(source)``."""
        return self.generation, self.source_id

    @classmethod
    def read(cls, directory: Path) -> CacheState | None:
        data = read_json(directory / STATE_NAME)
        try:
            if data is None or data["format"] != FORMAT:
                return None
            dim, source_id = data["dim"], data["source_id"]
            state = cls(
                int(data["generation"]),
                int(data["rows"]),
                None if dim is None else int(dim),
                str(data["epoch"]),
                int(data["tombs"]),
                None if source_id is None else str(source_id),
            )
        except (KeyError, TypeError, ValueError):
            return None
        if state.rows < 0 or state.tombs < 0 or (state.rows and not state.dim):
            return None
        return state

    def write(self, directory: Path, durable: bool) -> None:
        data = {
            "format": FORMAT,
            "generation": self.generation,
            "rows": self.rows,
            "dim": self.dim,
            "epoch": self.epoch,
            "tombs": self.tombs,
            "source_id": self.source_id,
        }
        write_json_atomic(directory / STATE_NAME, data, durable=durable)


class Snapshot:
    """One consistent view of the files: state, mapped vectors, ids in memory."""

    def __init__(self, directory: Path, state: CacheState) -> None:
        self.state = state
        self.mm: mmap.mmap | None = None
        self.file: Any = None  # kept open for gather(): the same inode as the map
        dim = state.dim or 0
        nbytes = state.rows * dim * 4
        if nbytes:
            f = open(directory / VECTORS_NAME, "rb")  # noqa: SIM115 - lives with the snapshot
            try:
                if os.fstat(f.fileno()).st_size < nbytes:
                    raise ValueError("vectors file shorter than its state")
                self.mm = mmap.mmap(f.fileno(), nbytes, access=mmap.ACCESS_READ)
            except BaseException:
                f.close()
                raise
            self.file = f
            weakref.finalize(self, f.close)  # closed with the last reference to the snapshot
            self.matrix = np.frombuffer(self.mm, dtype=np.float32).reshape(state.rows, dim)
            ids = np.fromfile(directory / IDS_NAME, dtype=np.int64, count=state.rows)
            if len(ids) != state.rows:
                raise ValueError("ids file shorter than its state")
            if state.tombs:
                dead = np.fromfile(directory / TOMBS_NAME, dtype=np.int64, count=state.tombs)
                if len(dead) != state.tombs or dead.min() < 0 or dead.max() >= state.rows:
                    raise ValueError("tombstones file does not match its state")
                ids[dead] = -1
        else:
            self.matrix = np.empty((0, dim), dtype=np.float32)
            ids = np.empty(0, dtype=np.int64)
        self.ids = ids
        self.tombstones = int(np.count_nonzero(ids < 0))


def load_snapshot(directory: Path, head: tuple[int, str | None]) -> Snapshot | None:
    """Map the files if their state is at ``head`` (``(generation, source_id)``) and stays
    put while we map them."""
    for _ in range(5):
        state = CacheState.read(directory)
        if state is None or state.head != head:
            return None
        try:
            snap = Snapshot(directory, state)
        except (OSError, ValueError):
            snap = None
        if CacheState.read(directory) == state:  # no rebuild slipped in between
            return snap
    return None


def write_files(
    directory: Path,
    chunks: Iterable[tuple[np.ndarray, np.ndarray]],
    dim: int | None,
    durable: bool,
) -> tuple[int, int | None]:
    """Write a whole new cache aside (``*.tmp``), after removing ``state.json`` so that
    nobody trusts the directory while it changes. Publish it with :func:`publish`.

    Args:
        directory: the cache directory (created when missing).
        chunks: ``(ids int64 (m,), vectors float32 (m, dim))`` in row order.
        dim: the expected dimension, or None to take the first chunk's.
        durable: fsync the files.

    Returns:
        ``(rows, dim)`` written.

    Raises:
        StoreError: the chunks disagree on their shapes.
    """
    directory.mkdir(parents=True, exist_ok=True)
    (directory / STATE_NAME).unlink(missing_ok=True)
    # A new, empty tombstone file too (renamed in): appends of the next epoch never write
    # into a file a reader of the previous state may still be reading.
    open(directory / f"{TOMBS_NAME}.tmp", "wb").close()
    rows = 0
    with (
        open(directory / f"{VECTORS_NAME}.tmp", "wb") as fv,
        open(directory / f"{IDS_NAME}.tmp", "wb") as fi,
    ):
        for ids, vectors in chunks:
            ids = np.ascontiguousarray(ids, dtype=np.int64)
            vectors = np.ascontiguousarray(vectors, dtype=np.float32)
            if vectors.ndim != 2 or len(ids) != len(vectors):
                raise StoreError("the store yielded ids and vectors of different lengths")
            dim = vectors.shape[1] if dim is None else dim
            if vectors.shape[1] != dim:
                raise StoreError(f"the store holds vectors of dim {vectors.shape[1]} and {dim}")
            fv.write(vectors.data.cast("B"))
            fi.write(ids.data.cast("B"))
            rows += len(ids)
        for f in (fv, fi):
            f.flush()
            if durable:
                os.fsync(f.fileno())
    return rows, dim


def publish(
    directory: Path, head: tuple[int, str | None], rows: int, dim: int | None, durable: bool
) -> Snapshot:
    """Rename the files :func:`write_files` wrote into place, then write the state (new epoch).

    Args:
        head: ``(generation, source_id)`` of the source the files were copied from.
    """
    for name in (VECTORS_NAME, IDS_NAME, TOMBS_NAME):
        os.replace(directory / f"{name}.tmp", directory / name)
    state = CacheState(head[0], rows, dim, uuid.uuid4().hex, 0, head[1])
    state.write(directory, durable)
    return Snapshot(directory, state)


def net_changes(
    added_ids: np.ndarray, added_vectors: np.ndarray, removed_ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """What one commit leaves behind, whatever its lists repeat: each added id once (its
    last vector, kept in order of last appearance), none that is also removed.

    Returns:
        ``(added_ids int64 (m,), added_vectors float32 (m, dim), removed_ids int64 (r,))``.
    """
    removed = np.unique(removed_ids)
    if len(added_ids) == 0:
        return added_ids, added_vectors, removed
    reverse = added_ids[::-1]
    _, first = np.unique(reverse, return_index=True)
    keep = np.sort(len(added_ids) - 1 - first)
    keep = keep[~np.isin(added_ids[keep], removed)]
    return added_ids[keep], added_vectors[keep], removed


def append(
    directory: Path,
    snap: Snapshot,
    changes: tuple[np.ndarray, np.ndarray, np.ndarray],
    head: tuple[int, str | None],
    dim: int | None,
    flush: Callable[[Any], None],
) -> CacheState:
    """Append one commit's rows and tombstones past ``snap``'s counts (see the module
    docstring) and return the state to publish; nothing a reader of ``snap`` uses changes.

    Args:
        changes: the commit's :func:`net_changes`.
        head: the source's ``(generation, generation_id)`` after the commit.
        flush: flushes (and fsyncs when durable) an open file.
    """
    added_ids, added, removed = changes
    rows0, ids = snap.state.rows, snap.ids
    gone = np.concatenate([removed, added_ids])
    if len(gone) and rows0 and not (removed.size == 0 and added_ids.min() > ids.max()):
        kill = np.flatnonzero(np.isin(ids, gone) & (ids >= 0)).astype(np.int64)
    else:
        kill = np.empty(0, dtype=np.int64)
    tombs0 = snap.state.tombs
    with open(directory / TOMBS_NAME, "r+b" if (directory / TOMBS_NAME).exists() else "w+b") as ft:
        ft.seek(tombs0 * 8)
        ft.write(kill.data.cast("B"))
        ft.truncate()
        flush(ft)
    with open(directory / IDS_NAME, "r+b" if (directory / IDS_NAME).exists() else "w+b") as fi:
        fi.seek(rows0 * 8)
        fi.write(added_ids.data.cast("B"))
        fi.truncate()
        if len(added_ids):
            name = directory / VECTORS_NAME
            with open(name, "r+b" if name.exists() else "w+b") as fv:
                fv.seek(rows0 * (dim or 0) * 4)
                fv.write(added.data.cast("B"))
                fv.truncate()
                flush(fv)
        flush(fi)
    return CacheState(
        head[0], rows0 + len(added_ids), dim, snap.state.epoch, tombs0 + len(kill), head[1]
    )
