"""Small file helpers shared by the cache and the ANN: atomic JSON, fsync, a directory lock,
and the marker a writer holds while a commit is in flight."""

from __future__ import annotations

import contextlib
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

try:  # POSIX; elsewhere writers are only serialised within one process
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = "lock"
COMMIT_NAME = "commit.lock"

_registry_guard = threading.Lock()
_locks: dict[str, threading.RLock] = {}
_held = threading.local()
_commits: dict[str, int] = {}  # commit markers held by this process, per directory


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (best effort: not every OS allows it)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # pragma: no cover - Windows
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover
        pass
    finally:
        os.close(fd)


def write_json_atomic(path: Path, data: dict[str, Any], *, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that readers see the old or the new file, never a mix."""
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, sort_keys=True)
        f.flush()
        if durable:
            os.fsync(f.fileno())
    os.replace(tmp, path)
    if durable:
        fsync_dir(path.parent)


def file_stamp(path: Path) -> tuple[int, int, int] | None:
    """(mtime_ns, size, inode) of ``path``, None when missing: changes whenever it is replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``, or None when it is missing or unreadable."""
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


@contextlib.contextmanager
def _flock(directory: Path, name: str, slot: str) -> Iterator[bool]:
    """An exclusive ``flock`` on ``directory/name``, re-entrant within one thread (depth
    kept per directory in ``_held.<slot>``): yields True to the outermost hold, which took
    the lock, and False to the holds nested in it."""
    key = str(Path(directory).resolve())
    depth: dict[str, int] = getattr(_held, slot, None) or {}
    setattr(_held, slot, depth)
    if depth.get(key, 0):
        depth[key] += 1
        try:
            yield False
        finally:
            depth[key] -= 1
        return
    Path(directory).mkdir(parents=True, exist_ok=True)
    fd = os.open(Path(directory) / name, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield True
        finally:
            depth[key] = 0
    finally:
        os.close(fd)  # closing the descriptor releases the flock


@contextlib.contextmanager
def directory_lock(directory: Path) -> Iterator[None]:
    """Hold the writer lock of a cache directory (re-entrant within one thread).

    Every process that changes files in the directory takes it; readers never do.
    """
    key = str(Path(directory).resolve())
    with _registry_guard:
        rlock = _locks.setdefault(key, threading.RLock())
    with rlock, _flock(directory, LOCK_NAME, "depth"):
        yield


@contextlib.contextmanager
def commit_marker(directory: Path) -> Iterator[None]:
    """Say "a commit is in flight" from before a writer's store commit until the cache holds
    it (re-entrant within one thread).

    An exclusive ``flock`` on ``commit.lock``: readers that find the store ahead of the
    cache test it (:func:`commit_in_flight`) and, rather than rebuilding the whole cache under
    the writer, answer from their last snapshot or wait for the writer. Concurrent writers
    take turns here, which also keeps each one's incremental append applicable.
    """
    key = str(Path(directory).resolve())
    with _flock(directory, COMMIT_NAME, "commits") as outermost:
        if not outermost:
            yield
            return
        with _registry_guard:
            _commits[key] = _commits.get(key, 0) + 1
        try:
            yield
        finally:
            with _registry_guard:
                _commits[key] -= 1


def commit_in_flight(directory: Path) -> bool:
    """Whether a writer holds :func:`commit_marker` for ``directory`` now (never blocks)."""
    if fcntl is None:  # pragma: no cover - Windows: no marker, readers rebuild as before
        return False
    try:
        fd = os.open(Path(directory) / COMMIT_NAME, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)  # also drops the shared lock when we got it
    return False


def commit_held_here(directory: Path) -> bool:
    """Whether this process holds the commit marker of ``directory`` (in any thread)."""
    key = str(Path(directory).resolve())
    with _registry_guard:
        return _commits.get(key, 0) > 0
