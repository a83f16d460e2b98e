"""The store protocol and the records that cross it.

Paths cross this seam as ``bytes`` (``os.fsencode`` of an absolute path): file names need
not be valid UTF-8, and byte ranges make folder filters exact (no SQL ``LIKE`` escaping).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class FileRow:
    """One stored image (without its vector)."""

    id: int
    path: bytes
    size: int
    mtime_ns: int
    hash: str | None


@dataclass(frozen=True)
class FailureRow:
    """A file that failed, with the size and mtime it had then (a change means: retry)."""

    path: bytes
    size: int
    mtime_ns: int
    reason: str
    detail: str


@dataclass
class WriteBatch:
    """Everything one transaction writes.

    Attributes:
        upserts: ``(path, size, mtime_ns, hash, vector)``; vector is float32 ``(dim,)``, unit
            norm. Replaces the vector of an existing path (its id is kept).
        moves: ``(id, new_path, size, mtime_ns)``: a renamed file keeps its id and vector.
        deletes: image ids to remove.
        failures: ``(path, size, mtime_ns, reason, detail)`` to record.
        clear_failures: paths whose failure record no longer applies.
    """

    upserts: list[tuple[bytes, int, int, str | None, np.ndarray]] = field(default_factory=list)
    moves: list[tuple[int, bytes, int, int]] = field(default_factory=list)
    deletes: list[int] = field(default_factory=list)
    failures: list[tuple[bytes, int, int, str, str]] = field(default_factory=list)
    clear_failures: list[bytes] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.upserts or self.moves or self.deletes or self.failures or self.clear_failures
        )


@dataclass(frozen=True)
class WriteResult:
    """What a committed :class:`WriteBatch` changed, for the derived vector caches.

    Attributes:
        previous_generation: the store's generation before the commit.
        generation: the generation after it (equal when no vector changed).
        added_ids: ids whose vector was inserted or replaced, int64 ``(m,)``, each once,
            none of them also in ``removed_ids`` (the net effect of the commit).
        added_vectors: their vectors, float32 ``(m, dim)``.
        removed_ids: ids deleted, int64 ``(r,)``.
        previous_generation_id: the store's generation id before the commit (see
            :meth:`Store.head`), None when the store keeps none.
        generation_id: the generation id after it.
    """

    previous_generation: int
    generation: int
    added_ids: np.ndarray
    added_vectors: np.ndarray
    removed_ids: np.ndarray
    previous_generation_id: str | None = None
    generation_id: str | None = None


def folder_prefix(folder: bytes) -> bytes:
    """The byte prefix every file path under ``folder`` starts with (trailing separator)."""
    sep = os.fsencode(os.sep)
    return folder if folder.endswith(sep) else folder + sep


class Store(Protocol):
    """What the engine needs from a store. Every method may raise :class:`StoreError`.

    ``head()`` returns ``(generation, generation_id)`` read in one snapshot. The generation
    id is a random string (uuid4 hex) created with the database and renewed by every commit
    that bumps the generation (a store without one returns None until its first such
    commit). The derived vector cache records both and trusts its copy only while both
    match, so a cache is never trusted by another database at the same path, nor after the
    generation went down and up again (a lost last commit, an older copy restored).
    """

    def get_meta(self, key: str) -> str | None: ...
    def set_meta(self, items: dict[str, str]) -> None: ...
    def generation(self) -> int: ...
    def head(self) -> tuple[int, str | None]: ...
    def dim(self) -> int | None: ...
    def count(self) -> int: ...
    def is_empty(self) -> bool: ...
    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]: ...
    def files_under(self, folder: bytes) -> dict[bytes, FileRow]: ...
    def failures_under(self, folder: bytes) -> dict[bytes, FailureRow]: ...
    def all_failures(self) -> list[FailureRow]: ...
    def hashes_for_sizes(self, sizes: Sequence[int]) -> dict[int, dict[str, int]]: ...
    def lookup(self, path: bytes) -> tuple[FileRow, np.ndarray] | None: ...
    def vectors_for(self, ids: Sequence[int]) -> dict[int, np.ndarray]: ...
    def paths_for(self, ids: Sequence[int]) -> dict[int, bytes]: ...
    def ids_under(self, folders: Sequence[bytes]) -> np.ndarray: ...
    def folders(self) -> list[bytes]: ...
    def page(self, offset: int, limit: int) -> list[tuple[int, bytes]]: ...
    def add_folders(self, folders: Sequence[bytes]) -> None: ...
    def write(self, batch: WriteBatch) -> WriteResult: ...
    def close(self) -> None: ...


class SearchingStore(Store, Protocol):
    """A store that searches its own vectors (a database server), declared by
    ``searches_vectors = True``. The engine then calls :meth:`search` instead of keeping a
    vector cache beside the index; SQLite does not declare it and keeps that cache.
    """

    searches_vectors: bool
    location: str  # where the index lives, fit to show (no password)

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        exact: bool = False,
        folders: Sequence[bytes] = (),
        exclude: Sequence[int] = (),
        ann: str = "auto",
        ann_threshold: int = 100_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` by cosine similarity to the unit vector ``query`` (float32 ``(dim,)``).

        Returns ``(scores float32 (m,), ids int64 (m,))``, best first, ``m <= k``: fewer
        only when fewer rows match ``folders`` and ``exclude``.
        """
        ...

    def has_ann(self) -> bool: ...
    def build_ann(self) -> bool: ...
