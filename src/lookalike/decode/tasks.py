"""The unit of work of :class:`~lookalike.decode.DecodePool`: a task in, one result out.

Tasks and results cross the worker socket as plain tuples (:func:`_as_tuple`, :func:`_result`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DecodeTask:
    """One file to decode.

    Attributes:
        key: the caller's token, echoed in the result.
        path: ``os.fsencode``-d path (file names need not be valid UTF-8).
        size: ``st_size`` from the scan; a different size at read time is ``"changed"``.
        mtime_ns: ``st_mtime_ns`` from the scan.
        known_hashes: content hashes that already have a vector: a file whose hash is one of
            them is not decoded and comes back with ``reused=True``.
    """

    key: int
    path: bytes
    size: int
    mtime_ns: int
    known_hashes: frozenset[str] = frozenset()


@dataclass
class DecodeResult:
    """The outcome of one :class:`DecodeTask`: pixels, a reused hash, or a failure.

    Attributes:
        key: the task's key.
        path: the task's path.
        pixels: ``(H, W, 3)`` uint8 model input on success, else ``None``.
        hash: the file's :func:`~lookalike.decode.content_hash` (``None`` on failure).
        reused: the hash was in ``known_hashes``; ``pixels`` is ``None``.
        reason: a code from :data:`~lookalike.decode.REASONS` on failure, else ``None``.
        detail: a human sentence about the failure.
    """

    key: int
    path: bytes
    pixels: np.ndarray | None
    hash: str | None
    reused: bool = False
    reason: str | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        """True when the file decoded or was reused."""
        return self.reason is None


def _as_tuple(t: DecodeTask) -> tuple[int, bytes, int, int, frozenset[str]]:
    return t.key, bytes(t.path), t.size, t.mtime_ns, frozenset(t.known_hashes)


def _result(task: DecodeTask, out: tuple) -> DecodeResult:
    _, pixels, digest, reused, reason, detail = out
    return DecodeResult(task.key, task.path, pixels, digest, reused, reason, detail)
