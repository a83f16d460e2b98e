"""Creating (or checking) lookalike's tables in a PostgreSQL database, once per open."""

from __future__ import annotations

import uuid
from typing import Any

from ..errors import StoreError
from . import _pg_sql as q

_MIN_PGVECTOR = (0, 7, 0)  # halfvec
_ITERATIVE_PGVECTOR = (0, 8, 0)  # hnsw.iterative_scan


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(".")[:3] if p.isdigit())


def create_schema(db: Any, location: str, warnings: list[str]) -> None:
    """Inside the open transaction of ``db``: pgvector, the tables, the first meta rows.

    An advisory lock makes processes that open a new database at the same moment create
    it once (``CREATE ... IF NOT EXISTS`` alone races on the catalog). Tables that exist
    are checked for the columns lookalike reads, so a foreign table of the same name is a
    clear error rather than a wrong answer later.

    Raises:
        StoreError: pgvector older than 0.7.
        psycopg.errors.InsufficientPrivilege: the extension is missing and this user may
            not create it (the caller says what to run).
    """
    db.execute("SELECT pg_advisory_xact_lock(%s)", (q.ADVISORY_LOCK,))
    if db.execute(_EXTENSION).fetchone() is None:
        db.execute("CREATE EXTENSION IF NOT EXISTS vector")
    _check_pgvector(db, location, warnings)
    if not db.execute("SELECT to_regclass('lookalike_images') IS NOT NULL").fetchone()[0]:
        db.execute(q.SCHEMA)
    db.execute(q.SHAPE_CHECK)
    db.execute(
        "INSERT INTO lookalike_meta(key, value) VALUES ('schema_version', %s), "
        "('generation', '0'), ('generation_id', %s) ON CONFLICT (key) DO NOTHING",
        (str(q.SCHEMA_VERSION), uuid.uuid4().hex),
    )


def check_schema(db: Any, location: str, warnings: list[str]) -> None:
    """For read-only use of an existing index: what :func:`create_schema` checks, with
    nothing created or written (a user with SELECT alone can search)."""
    _check_pgvector(db, location, warnings)
    db.execute(q.SHAPE_CHECK)


_EXTENSION = "SELECT extversion FROM pg_extension WHERE extname = 'vector'"


def _check_pgvector(db: Any, location: str, warnings: list[str]) -> None:
    found = db.execute(_EXTENSION).fetchone()
    if found is None:
        raise StoreError(f"{location} has no pgvector extension: run `CREATE EXTENSION vector;`")
    version = _version(found[0])
    if version < _MIN_PGVECTOR:
        raise StoreError(
            f"{location} has pgvector {found[0]}; lookalike needs 0.7 or newer: "
            "run `ALTER EXTENSION vector UPDATE;` there"
        )
    if version < _ITERATIVE_PGVECTOR:
        warnings.append(
            f"{location} has pgvector {found[0]}: folder-filtered searches may return "
            "fewer than k results (0.8 adds iterative scans)"
        )
