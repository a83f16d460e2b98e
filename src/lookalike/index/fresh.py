"""A failed first run leaves no index behind (#20): :class:`~lookalike.Index` notes which
files of a new SQLite index did not exist before it opened it (the database, its WAL
files, ``<db>.cache/`` and ``<db>.lock``), and when the run fails before anything was
recorded (no image, no model, no failed file) it removes exactly those.

A PostgreSQL index is left as it is: its tables are created when it is first opened and
stay (empty) after a failed first run; ``lookalike info`` shows it with 0 images.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..store import is_postgres_url


def new_paths(location: str | os.PathLike[str]) -> list[Path]:
    """The files a new SQLite index at ``location`` makes, when it does not exist yet;
    ``[]`` for an existing index or a database URL."""
    if is_postgres_url(location):
        return []
    db = Path(os.path.expanduser(os.fspath(location)))
    if db.exists():
        return []
    names = [db.name + s for s in ("", "-wal", "-shm", "-journal", ".cache", ".lock")]
    return [db.with_name(n) for n in names if not db.with_name(n).exists()]


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
