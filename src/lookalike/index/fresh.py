"""A failed first run leaves no index behind (#20): :class:`~lookalike.Index` notes which
files of a new SQLite index did not exist before it opened it (the database, its WAL
files, ``<db>.cache/`` and ``<db>.lock``), and when the run fails before anything was
recorded (no image, no model, no failed file) it removes exactly those, holding the
index's update lock: when another run holds it (it opened the index meanwhile and is
updating it), nothing is removed. A run that opened the index and waited for the lock
finds, once it holds the lock, whether its file is still there (:func:`check_still_there`).

A PostgreSQL index is left as it is: its tables are created when it is first opened and
stay (empty) after a failed first run; ``lookalike info`` shows it with 0 images.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..store import is_postgres_url


def new_paths(location: str | os.PathLike[str]) -> list[Path]:
    """The files a new SQLite index at ``location`` makes, when it does not exist yet;
    ``[]`` for an existing index or a database URL. A name that is a symlink, even one
    pointing nowhere, is the user's: it and what it points to are never ours to remove."""
    if is_postgres_url(location):
        return []
    db = Path(os.path.expanduser(os.fspath(location)))
    if os.path.lexists(db):
        return []
    names = [db.name + s for s in ("", "-wal", "-shm", "-journal", ".cache", ".lock")]
    return [db.with_name(n) for n in names if not os.path.lexists(db.with_name(n))]


def identity(path: Path | None) -> tuple[int, int] | None:
    """(device, inode) of the database file, to notice it was removed or replaced."""
    try:
        st = os.stat(path) if path is not None else None
    except OSError:
        return None
    return (st.st_dev, st.st_ino) if st is not None else None


def check_still_there(path: Path | None, opened: tuple[int, int] | None) -> None:
    """Under the update lock: the database file is still the one this run opened.

    Raises:
        StoreError: it was removed (another run's failed first run made it, this run
            opened it meanwhile) or replaced; writing on would go to a file nobody sees.
    """
    if path is None or opened is None or identity(path) == opened:
        return
    from ..errors import StoreError

    raise StoreError(
        f"the index {path} was removed or replaced while this run was starting (another "
        "run that made it failed); nothing was written: run the command again"
    )


@contextmanager
def claimed(db_path: Path | None) -> Iterator[bool]:
    """Hold the update lock of a new index when no other run holds it (``True``), so that
    removing it cannot pull it away from another run that is using it (``False``)."""
    from ..errors import StoreError
    from .lock import update_lock

    if db_path is None:
        yield False
        return
    try:
        lock = update_lock(db_path, wait=False)
        lock.__enter__()
    except StoreError:  # IndexBusyError: another run is updating it; or no lock at all
        yield False
        return
    try:
        yield True
    finally:
        lock.__exit__(None, None, None)


def nothing_recorded(store: Any) -> bool:
    """The store holds no image, no model and no failed file: nothing worth keeping (the
    folders a failed run was asked to index are no reason to keep it)."""
    try:
        return store.is_empty() and not store.get_meta("setup") and not list(store.all_failures())
    except Exception:  # cannot tell: keep it
        return False


def discard(paths: list[Path]) -> None:
    """Remove what a failed first run created (after the store is closed)."""
    for p in paths:
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink(missing_ok=True)
        except OSError:  # best effort: a leftover is harmless, the index was empty
            pass


def close_and_discard(
    store: Any, close: Callable[[], None], paths: list[Path], *, failed: bool
) -> None:
    """Close the index (``close``); when its run ``failed`` and ``paths`` (what this run
    created) hold nothing recorded, remove them: a failed first run (no model hub, a bad
    ``--model``) leaves no empty index behind (#20). Never while another run holds the
    update lock (it is using the new index)."""
    with claimed(getattr(store, "path", None) if failed and paths else None) as ours:
        doomed = ours and nothing_recorded(store)
        close()
        if doomed:
            discard(paths)


@contextmanager
def discarded_on_failure(store: Any, paths: list[Path]) -> Iterator[None]:
    """Close ``store`` and remove ``paths`` (what this first run created, when nothing was
    recorded) if the block fails: a bad ``--model`` or ``--weights`` leaves no index."""
    try:
        yield
    except BaseException:
        close_and_discard(store, store.close, paths, failed=True)
        raise
