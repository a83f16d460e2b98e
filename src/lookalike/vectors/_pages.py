"""Reading rows of a mapped snapshot without pinning the process's memory."""

from __future__ import annotations

import contextlib
import mmap
import os
from pathlib import Path

import numpy as np

from lookalike.vectors._snapshot import Snapshot

_PREADV = hasattr(os, "preadv")
_PAGE = mmap.PAGESIZE
_DONTNEED = getattr(mmap, "MADV_DONTNEED", None)


def release_rows(snap: Snapshot, start: int, stop: int) -> None:
    """Drop the pages of rows [start, stop) of ``snap`` from this process."""
    if snap.mm is None or _DONTNEED is None or stop <= start:
        return
    row_bytes = (snap.state.dim or 0) * 4
    lo = (start * row_bytes) // _PAGE * _PAGE
    hi = min(len(snap.mm), stop * row_bytes)
    if hi > lo:
        with contextlib.suppress(OSError, ValueError):  # exotic platforms: keep pages
            snap.mm.madvise(_DONTNEED, lo, hi - lo)


def gather_rows(snap: Snapshot, rows: np.ndarray, path: Path) -> np.ndarray:
    """Copy rows of ``snap`` out of its vectors file (``path``, for error messages).

    Reads with ``preadv`` (one call per run of consecutive rows) rather than through the
    map: touching scattered rows of a map makes the kernel map whole large folios around
    each (up to 2 MiB), so a few hundred random rows could pin gigabytes.

    Args:
        snap: the snapshot to read.
        rows: int64 (m,), row numbers in [0, rows).
        path: the vectors file.

    Returns:
        float32 (m, dim), a private copy.
    """
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if snap.file is None or not _PREADV or len(rows) == 0:
        out = np.array(snap.matrix[rows])
        release_rows(snap, 0, snap.state.rows)
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
            raise OSError(f"short read from {path}")
    return out
