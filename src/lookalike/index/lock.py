"""One updater per index at a time: an OS file lock on ``<db>.lock``.

Two ``lookalike index`` runs on one database would both embed every new image (the
database stays consistent, the work is done twice). :func:`update_lock` makes the second
one wait for the first (then it finds the images indexed and skips them) or refuse.

The lock is ``fcntl.flock`` on a file beside the database: the kernel drops it when the
holding process exits, however it exits (``kill -9``, a crash, a power cut), so it can never
be left stuck; the file itself may stay and means nothing. The holder writes its pid and
start time into the file, only to tell a waiting user who they are waiting for. Searches
never take the lock (SQLite's WAL lets them read while a run writes). On platforms without
``fcntl`` (Windows) there is no lock.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from ..errors import IndexBusyError, StoreError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]


def lock_path(db_path: str | os.PathLike[str]) -> Path:
    """``<db>.lock``: the lock file of the index at ``db_path``."""
    p = Path(db_path)
    return p.with_name(p.name + ".lock")


def holder(db_path: str | os.PathLike[str]) -> str:
    """Who holds the lock, as the holder wrote it (``"pid 123 since 21:04:05"``), or ``""``."""
    try:
        return lock_path(db_path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return ""


@contextmanager
def update_lock(
    db_path: str | os.PathLike[str] | None,
    *,
    wait: bool = True,
    on_wait: Callable[[str], None] | None = None,
) -> Iterator[None]:
    """Hold the update lock of the index at ``db_path`` for the ``with`` block.

    Args:
        db_path: the SQLite file (need not exist yet; its folder must); ``None`` for a
            database server, which has no file beside it to lock: nothing is held.
        wait: when another process holds the lock, wait for it (``True``) or raise.
        on_wait: called once, with a sentence naming the holder, before waiting.

    Raises:
        IndexBusyError: the lock is held elsewhere and ``wait`` is false.
        StoreError: the lock file cannot be created (read-only folder...).

    Example:
        >>> with update_lock("photos.db"):  # doctest: +SKIP
        ...     ...  # scan, embed, commit
    """
    if db_path is None or fcntl is None:
        yield
        return
    path = lock_path(db_path)
    told = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            raise StoreError(f"cannot create the lock file {path}: {e.strerror}") from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                who = holder(db_path) or "another process"
                message = f"another lookalike ({who}) is updating the index {db_path}"
                if not wait:
                    raise IndexBusyError(
                        f"{message}; wait for it to finish, or run again without --no-wait"
                    ) from None
                if on_wait is not None and not told:
                    on_wait(f"{message}; waiting for it to finish (Ctrl-C to stop)")
                    told = True
                fcntl.flock(fd, fcntl.LOCK_EX)
        except BaseException:
            os.close(fd)
            raise
        if _is_current(fd, path):
            break
        # The holder removed the lock file (a failed first run removes the index it made,
        # see .fresh): this lock guards nothing; take the one at the path now.
        os.close(fd)
    try:
        _write_holder(fd)
        yield
    finally:
        # Closing the descriptor releases the lock; the file stays (only a failed first run
        # removes it, holding it; a waiter then finds its lock stale and takes the new one).
        os.close(fd)


def _is_current(fd: int, path: Path) -> bool:
    """The locked descriptor is still the file at ``path`` (not one removed meanwhile)."""
    try:
        here, there = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


def _write_holder(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        stamp = time.strftime("%H:%M:%S")
        os.pwrite(fd, f"pid {os.getpid()} since {stamp}\n".encode(), 0)
    except OSError:  # only informative
        pass
