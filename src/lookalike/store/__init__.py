"""The store seam: where vectors and file records live (the source of truth).

:class:`SQLiteStore` (one file, the default) and :class:`~lookalike.store.postgres.PostgresStore`
(PostgreSQL + pgvector, for shared collections; imported only for a ``postgresql://`` URL)
implement the same methods; :func:`open_store` picks one from what the user gave.
"""

from __future__ import annotations

import os
from typing import Any

from ._pg_url import is_postgres_url, mask_url
from .base import FileRow, Store, WriteBatch, WriteResult, folder_prefix
from .sqlite import SCHEMA_VERSION, SQLiteStore


def open_store(location: str | os.PathLike[str], *, create: bool = True) -> Any:
    """The store at ``location``: a ``postgresql://`` URL, else a SQLite file path.

    Args:
        location: the URL or path.
        create: set a database up when it holds no index yet; ``False`` refuses instead
            (read-only use). SQLite files are checked before this (``preflight``).

    Raises:
        MissingDependencyError: a URL, but psycopg is not installed.
        IndexNotFoundError: ``create`` is false and the database holds no index.
        StoreError: the store cannot be opened.
    """
    if is_postgres_url(location):
        from .postgres import PostgresStore

        return PostgresStore(os.fspath(location), create=create)
    return SQLiteStore(os.path.expanduser(os.fspath(location)))


__all__ = [
    "SCHEMA_VERSION",
    "FileRow",
    "SQLiteStore",
    "Store",
    "WriteBatch",
    "WriteResult",
    "folder_prefix",
    "is_postgres_url",
    "mask_url",
    "open_store",
]
