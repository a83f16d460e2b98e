"""The protocol the vector cache syncs with, and an in-memory implementation of it.

The store (SQLite) is the source of truth; everything under ``vectors`` is derived from a
:class:`VectorSource` and can be thrown away and rebuilt from it.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from typing import Protocol, runtime_checkable

import numpy as np

from lookalike.errors import ConfigError


@runtime_checkable
class VectorSource(Protocol):
    """Read access to the stored vectors, as the cache needs it.

    ``generation()`` must be bumped in the same transaction as every change to the stored
    vectors: the cache trusts its copy only while its recorded generation equals this one.

    A source may also offer ``head() -> (generation, generation_id)``, both read in one
    snapshot, where ``generation_id`` is a random id renewed with every bump (see
    :class:`lookalike.store.Store`); the cache then also requires the id to match, which
    ties it to one database and one history. :func:`source_head` reads whichever exists.
    """

    def generation(self) -> int:
        """A counter bumped with every committed change to the stored vectors."""
        ...

    def dim(self) -> int | None:
        """The vector dimension, or None while nothing is stored."""
        ...

    def count(self) -> int:
        """How many live images have a vector."""
        ...

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Every stored vector, ordered by image id, in chunks.

        Yields:
            ``(ids, vectors)``: int64 of shape (m,) and float32 of shape (m, dim), m <= chunk_rows.
        """
        ...


def source_head(source: VectorSource) -> tuple[int, str | None]:
    """``source.head()`` when the source has one, else ``(source.generation(), None)``."""
    head = getattr(source, "head", None)
    if head is None:
        return source.generation(), None
    generation, generation_id = head()
    return int(generation), generation_id


class MemorySource:
    """A :class:`VectorSource` held in a dict, for tests and benchmarks.

    Example:
        >>> src = MemorySource(dim=4)
        >>> src.put([1, 2], np.eye(4, dtype=np.float32)[:2])
        (1, 0)
        >>> src.count(), src.generation()
        (2, 1)
    """

    def __init__(self, dim: int | None = None) -> None:
        self._dim = dim
        self._vectors: dict[int, np.ndarray] = {}
        self._generation = 0
        self._generation_id = uuid.uuid4().hex

    def generation(self) -> int:
        return self._generation

    def head(self) -> tuple[int, str | None]:
        return self._generation, self._generation_id

    def dim(self) -> int | None:
        return self._dim if self._vectors or self._dim is not None else None

    def count(self) -> int:
        return len(self._vectors)

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        ids = np.array(sorted(self._vectors), dtype=np.int64)
        for start in range(0, len(ids), chunk_rows):
            part = ids[start : start + chunk_rows]
            yield part, np.stack([self._vectors[int(i)] for i in part])

    def put(
        self, ids: Iterable[int], vectors: np.ndarray, remove: Iterable[int] = ()
    ) -> tuple[int, int]:
        """Add or replace ``vectors`` (float32, (m, dim)) under ``ids`` and delete ``remove``.

        One "transaction": the generation is bumped once.

        Returns:
            ``(generation, previous_generation)``, ready for ``VectorSearch.notify``.
        """
        ids = np.asarray(list(ids), dtype=np.int64)
        vectors = np.asarray(vectors, dtype=np.float32)
        if len(ids):
            vectors = vectors.reshape(len(ids), -1)
            if self._dim is None:
                self._dim = vectors.shape[1]
            if vectors.shape[1] != self._dim:
                raise ConfigError(f"vectors have dim {vectors.shape[1]}, the source {self._dim}")
        for i, v in zip(ids.tolist(), vectors, strict=True):
            self._vectors[i] = v.copy()
        for i in remove:
            self._vectors.pop(int(i), None)
        previous = self._generation
        self._generation += 1
        self._generation_id = uuid.uuid4().hex
        return self._generation, previous
