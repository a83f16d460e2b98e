"""The cache's on-disk format: ``state.json`` and one consistent, mapped view of the files."""

from __future__ import annotations

import mmap
import os
import uuid
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lookalike.errors import StoreError
from lookalike.vectors._files import read_json, write_json_atomic

FORMAT = 1
VECTORS_NAME = "vectors.f32"
IDS_NAME = "ids.i64"
STATE_NAME = "state.json"


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
        else:
            self.matrix = np.empty((0, dim), dtype=np.float32)
            ids = np.empty(0, dtype=np.int64)
        self.ids = ids
        self.tombstones = int(np.count_nonzero(ids < 0))


def load_snapshot(directory: Path, generation: int) -> Snapshot | None:
    """Map the files if their state is at ``generation`` and stays put while we map them."""
    for _ in range(5):
        state = CacheState.read(directory)
        if state is None or state.generation != generation:
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
    directory: Path, generation: int, rows: int, dim: int | None, durable: bool
) -> Snapshot:
    """Rename the files :func:`write_files` wrote into place, then write the state (new epoch)."""
    os.replace(directory / f"{VECTORS_NAME}.tmp", directory / VECTORS_NAME)
    os.replace(directory / f"{IDS_NAME}.tmp", directory / IDS_NAME)
    state = CacheState(generation, rows, dim, uuid.uuid4().hex)
    state.write(directory, durable)
    return Snapshot(directory, state)
