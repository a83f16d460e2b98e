"""Read access to the vectors a duplicate search looks at, in order or by position.

The search sees ``n`` rows numbered ``0..n-1`` (its own positions, not image ids); a
reader maps them to an in-memory array or to the memory-mapped vector cache, so that a
million 2048-d vectors (8 GB) are streamed in chunks and never held at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import numpy as np

_CHUNK_BYTES = 64 << 20


class Rows(Protocol):
    """``n`` unit vectors of dimension ``dim``, addressed by position."""

    n: int
    dim: int

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        """Yield ``(start, block)``: float32 ``(m, dim)`` blocks covering positions in order."""
        ...

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """float32 ``(len(positions), dim)``, a private copy; ``positions`` sorted ascending."""
        ...


def chunk_rows(dim: int) -> int:
    return max(256, _CHUNK_BYTES // max(1, dim * 4))


class ArrayRows:
    """Rows of an array in memory (or any array-like ``matrix[start:stop]`` works on)."""

    def __init__(self, matrix: np.ndarray) -> None:
        if matrix.ndim != 2:
            raise ValueError(f"matrix must be (n, dim), got {matrix.shape}")
        self.matrix = matrix
        self.n, self.dim = int(matrix.shape[0]), int(matrix.shape[1])

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        step = chunk_rows(self.dim)
        for start in range(0, self.n, step):
            yield start, np.asarray(self.matrix[start : start + step], dtype=np.float32)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(self.matrix[np.asarray(positions, dtype=np.int64)], dtype=np.float32)


class CacheRows:
    """The chosen rows of a :class:`~lookalike.vectors.VectorCache`.

    Args:
        cache: an open, current vector cache.
        rows: sorted int64 cache row numbers (live rows only).
    """

    def __init__(self, cache: Any, rows: np.ndarray) -> None:
        self.cache = cache
        self.rows = np.ascontiguousarray(rows, dtype=np.int64)
        self.n = len(self.rows)
        self.dim = int(cache.dim or 0)
        # Every live row, in order: stream the map itself instead of gathering.
        self._dense = self.n > 0 and self.n * 2 >= int(cache.rows)

    def chunks(self) -> Iterator[tuple[int, np.ndarray]]:
        step = chunk_rows(self.dim)
        if not self._dense:
            for start in range(0, self.n, step):
                yield start, self.cache.gather(self.rows[start : start + step])
            return
        matrix, done = self.cache.matrix, 0
        total = int(self.cache.rows)
        for lo in range(0, total, step):
            hi = min(total, lo + step)
            a, b = np.searchsorted(self.rows, [lo, hi])
            if b > a:
                block = np.array(matrix[self.rows[a:b]] if b - a < hi - lo else matrix[lo:hi])
                yield done, block
                done += b - a
            self.cache.release(lo, hi)  # keep the resident set flat over an 8 GB map

    def gather(self, positions: np.ndarray) -> np.ndarray:
        return self.cache.gather(self.rows[np.asarray(positions, dtype=np.int64)])  # type: ignore[no-any-return]
