"""PostgreSQL + pgvector store: the same seam as SQLite, for collections shared by a team.

Differences from :class:`~lookalike.store.SQLiteStore`, and why:

* Vectors are searched inside Postgres (:meth:`PostgresStore.search`): HNSW on
  ``halfvec`` with an exact fp32 re-rank, or an exact scan; no vector cache on the client.
* Every :meth:`write` first locks the ``generation`` row (``SELECT ... FOR UPDATE``), so
  writers from several processes or machines commit one batch at a time, exactly as
  SQLite's ``BEGIN IMMEDIATE``: no lost or duplicated rows, and the generation counter
  stays a total order of commits.
* The connection runs in autocommit; each write is one explicit transaction. A dropped
  connection rolls its batch back on the server; the next call reconnects.
* The password (URL, ``PGPASSWORD`` or ``~/.pgpass``, all read by libpq) never appears in
  :attr:`location`, in an error message or in a log line.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from ..errors import (
    IndexNotFoundError,
    MissingDependencyError,
    SchemaTooNewError,
    StoreError,
    StoreWriteError,
)
from . import _pg_sql as q
from ._pg_schema import check_schema, create_schema
from ._pg_search import SearchMixin
from ._pg_url import HINT, mask_url, scrub, url_misread
from .base import FailureRow, FileRow, WriteBatch, WriteResult, folder_prefix

SCHEMA_VERSION = q.SCHEMA_VERSION
_CHUNK = 4096  # rows per fetch of 8 KiB vectors: bounded client memory


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as e:
        raise MissingDependencyError(
            f"a PostgreSQL index needs psycopg 3 ({e.name} is missing): "
            'pip install "lookalike[postgres]"'
        ) from None
    return psycopg


def _upper(prefix: bytes) -> bytes:
    return prefix[:-1] + bytes([prefix[-1] + 1])


class PostgresStore(SearchMixin):
    """The PostgreSQL implementation of :class:`lookalike.store.Store` (and of search).

    Args:
        url: ``postgresql://USER[:PASSWORD]@HOST[:PORT]/DBNAME[?options]``; any libpq
            connection URL (``?host=/run/postgresql`` for a Unix socket).
        connect_timeout: seconds to wait for the server.
        create: set the database up when it holds no index yet; ``False`` refuses.

    Raises:
        MissingDependencyError: psycopg is not installed.
        StoreError: the server cannot be reached, refuses the login, or lacks pgvector
            (the message says what to run).
        SchemaTooNewError: written by a newer lookalike.
        IndexNotFoundError: ``create`` is false and the database holds no index (nothing
            is created in it).
    """

    searches_vectors = True

    def __init__(self, url: str, *, connect_timeout: float = 10.0, create: bool = True) -> None:
        self._psycopg = _import_psycopg()
        self._url = url.strip()
        self.location = mask_url(self._url)
        self.warnings: list[str] = []
        self._timeout = connect_timeout
        self._dim: int | None = None
        self._has_hnsw = False
        self._db: Any = None
        self._connect()
        try:
            if not create:
                self._require_tables()
            self._init_schema(create)
        except BaseException:
            self.close()
            raise

    def _require_tables(self) -> None:
        """For read-only use: the database holds an index, else nothing is created."""
        sql = (
            "SELECT to_regclass('lookalike_images') IS NOT NULL"
            " AND to_regclass('lookalike_meta') IS NOT NULL"
        )
        try:
            found = self._db.execute(sql).fetchone()[0]
        except self._psycopg.Error as e:
            raise StoreError(self._error("cannot use", e)) from None
        if not found:
            raise IndexNotFoundError(
                f"no index at {self.location}; make one with: "
                "lookalike index FOLDER --db URL (or set LOOKALIKE_DB)"
            )

    # -- connection ----------------------------------------------------------------------

    def _error(self, what: str, err: BaseException) -> str:
        if url_misread(self._url):
            # libpq's own words would quote the pieces it cut the password into.
            return f"{what} {self.location}: {HINT}"
        return scrub(f"{what} {self.location}: {str(err).strip()}", self._url)

    def _connect(self) -> None:
        psycopg = self._psycopg
        try:
            self._db = psycopg.connect(
                self._url,
                autocommit=True,
                connect_timeout=max(1, int(self._timeout)),
                application_name="lookalike",
            )
        except psycopg.Error as e:
            raise StoreError(self._error("cannot connect to", e)) from None
        except Exception as e:  # a malformed URL is a ProgrammingError or a ValueError
            raise StoreError(self._error("cannot use", e)) from None
        oid = self._db.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
        if oid is not None:
            q.register_vector_codec(self._db, oid[0])

    def _conn(self) -> Any:
        if self._db is None or self._db.closed:  # dropped: its batch was rolled back
            self._connect()
        return self._db

    def _init_schema(self, create: bool = True) -> None:
        psycopg = self._psycopg
        db = self._conn()
        try:
            with db.transaction():
                # Read-only use writes nothing: a user with SELECT alone can search.
                setup = create_schema if create else check_schema
                setup(db, self.location, self.warnings)
        except psycopg.errors.InsufficientPrivilege as e:
            raise StoreError(
                self._error("not allowed to set up", e)
                + "; a superuser must run `CREATE EXTENSION vector;` in that database, and "
                "the user needs CREATE on its schema (README, PostgreSQL)"
            ) from None
        except psycopg.Error as e:
            raise StoreError(self._error("cannot use", e)) from None
        # The codec needs the type's oid, known only once the extension exists.
        oid = db.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
        q.register_vector_codec(db, oid[0])
        version_text = self.get_meta("schema_version") or "0"
        if int(version_text) > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"index {self.location} has schema {version_text}, newer than this lookalike "
                f"understands ({SCHEMA_VERSION}); upgrade: pip install -U lookalike"
            )
        self._has_hnsw = self._hnsw_exists()

    def _query(self, sql: str, params: Sequence[object] = (), *, binary: bool = False) -> list:
        psycopg = self._psycopg
        try:
            return self._conn().execute(sql, params, binary=binary).fetchall()  # type: ignore[no-any-return]
        except psycopg.Error as e:
            raise StoreError(self._error("reading index", e)) from None

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[Any]:
        psycopg = self._psycopg
        db = self._conn()
        try:
            with db.transaction():
                yield db
        except psycopg.Error as e:
            message = f"writing to index {self.location} failed and was rolled back: {e}"
            raise StoreWriteError(scrub(message.strip(), self._url)) from None

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM lookalike_meta WHERE key = %s", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, items: dict[str, str]) -> None:
        with self._transaction() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO lookalike_meta(key, value) VALUES (%s, %s) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                list(items.items()),
            )

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def head(self) -> tuple[int, str | None]:
        """``(generation, generation_id)`` read in one statement (one snapshot)."""
        meta = dict(
            self._query(
                "SELECT key, value FROM lookalike_meta WHERE key IN ('generation', 'generation_id')"
            )
        )
        return int(meta.get("generation") or 0), meta.get("generation_id")

    def dim(self) -> int | None:
        if self._dim is None:  # never changes once set: ask once
            value = self.get_meta("dim")
            self._dim = int(value) if value is not None else None
        return self._dim

    # -- reads ---------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM lookalike_images")[0][0])

    def is_empty(self) -> bool:
        return not self._query("SELECT 1 FROM lookalike_images LIMIT 1")

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids int64 (m,), vectors float32 (m, dim))`` ordered by id.

        Chunks hold at most ``min(chunk_rows, 4096)`` rows: 8 KiB each at 2048-d.
        """
        dim = self.dim()
        if dim is None:
            return
        step = max(1, min(chunk_rows, _CHUNK))
        last = -1
        while True:
            rows = self._query(
                "SELECT id, embedding FROM lookalike_images WHERE id > %s ORDER BY id LIMIT %s",
                (last, step),
                binary=True,
            )
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            yield ids, q.decode_vectors([r[1] for r in rows], dim)
            last = int(ids[-1])

    def _ranges(self, folders: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
        out = []
        for folder in folders:
            prefix = folder_prefix(bytes(folder))
            out.append((prefix, _upper(prefix)))
        return out

    def files_under(self, folder: bytes) -> dict[bytes, FileRow]:
        ranges = self._ranges([folder])
        rows = self._query(
            "SELECT id, path, size, mtime_ns, hash FROM lookalike_images WHERE "
            + q.range_clause(1),
            q.range_params(ranges),
            binary=True,
        )
        return {bytes(r[1]): FileRow(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows}

    def failures_under(self, folder: bytes) -> dict[bytes, FailureRow]:
        rows = self._query(
            "SELECT path, size, mtime_ns, reason, detail FROM lookalike_failures WHERE "
            + q.range_clause(1),
            q.range_params(self._ranges([folder])),
            binary=True,
        )
        return {bytes(r[0]): FailureRow(bytes(r[0]), *r[1:]) for r in rows}

    def all_failures(self) -> list[FailureRow]:
        rows = self._query(
            "SELECT path, size, mtime_ns, reason, detail FROM lookalike_failures ORDER BY path",
            binary=True,
        )
        return [FailureRow(bytes(r[0]), *r[1:]) for r in rows]

    def duplicate_hashes(self) -> list[tuple[int, str]]:
        """``(image id, content hash)`` of every image whose hash another image shares (#9)."""
        rows = self._query(
            "SELECT id, hash FROM lookalike_images WHERE hash IN (SELECT hash FROM "
            "lookalike_images WHERE hash IS NOT NULL GROUP BY hash HAVING count(*) > 1) "
            "ORDER BY hash, id"
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def hashes_for_sizes(self, sizes: Sequence[int]) -> dict[int, dict[str, int]]:
        """For each size, ``{content hash: image id}`` of stored images of that size."""
        out: dict[int, dict[str, int]] = {}
        rows = self._query(
            "SELECT size, hash, id FROM lookalike_images "
            "WHERE size = ANY(%s::bigint[]) AND hash IS NOT NULL ORDER BY id",
            (sorted({int(s) for s in sizes}),),
        )
        for size, h, image_id in rows:
            out.setdefault(size, {})[h] = image_id
        return out

    def lookup(self, path: bytes) -> tuple[FileRow, np.ndarray] | None:
        rows = self._query(
            "SELECT id, path, size, mtime_ns, hash, embedding FROM lookalike_images "
            "WHERE path_key = sha256(%s::bytea)",
            (bytes(path),),
            binary=True,
        )
        if not rows:
            return None
        r = rows[0]
        vec = q.decode_vectors([r[5]], (len(r[5]) - 4) // 4)[0]
        return FileRow(r[0], bytes(r[1]), r[2], r[3], r[4]), vec

    def vectors_for(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        dim = self.dim()
        ids = [int(i) for i in ids]
        if dim is None or not ids:
            return {}
        rows = self._query(
            "SELECT id, embedding FROM lookalike_images WHERE id = ANY(%s::bigint[])",
            (ids,),
            binary=True,
        )
        vecs = q.decode_vectors([r[1] for r in rows], dim)
        return {int(r[0]): vecs[i] for i, r in enumerate(rows)}

    def paths_for(self, ids: Sequence[int]) -> dict[int, bytes]:
        rows = self._query(
            "SELECT id, path FROM lookalike_images WHERE id = ANY(%s::bigint[])",
            ([int(i) for i in ids],),
            binary=True,
        )
        return {int(r[0]): bytes(r[1]) for r in rows}

    def ids_under(self, folders: Sequence[bytes]) -> np.ndarray:
        """Sorted int64 ids of every image below any of ``folders``."""
        if not folders:
            return np.empty(0, np.int64)
        ranges = self._ranges(folders)
        rows = self._query(
            "SELECT id FROM lookalike_images WHERE " + q.range_clause(len(ranges)) + " ORDER BY id",
            q.range_params(ranges),
        )
        return np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))

    def folders(self) -> list[bytes]:
        rows = self._query("SELECT path FROM lookalike_folders ORDER BY path", binary=True)
        return [bytes(r[0]) for r in rows]

    def page(self, offset: int, limit: int) -> list[tuple[int, bytes]]:
        """``(id, path)`` of up to ``limit`` images in path order, from position ``offset``."""
        rows = self._query(
            "SELECT id, path FROM lookalike_images ORDER BY path LIMIT %s OFFSET %s",
            (int(limit), int(offset)),
            binary=True,
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def add_folders(self, folders: Sequence[bytes]) -> None:
        now = time.time()
        with self._transaction() as db, db.cursor() as cur:
            cur.executemany(
                "INSERT INTO lookalike_folders(path, added_at) VALUES (%s, %s) "
                "ON CONFLICT (path_key) DO NOTHING",
                [(bytes(f), now) for f in folders],
            )

    def remove_folder(self, folder: bytes) -> None:
        with self._transaction() as db:
            db.execute(
                "DELETE FROM lookalike_folders WHERE path_key = sha256(%s::bytea)",
                (bytes(folder),),
            )

    # -- writes --------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        """Apply ``batch`` in one transaction; all of it lands or none of it does.

        Raises:
            StoreWriteError: the commit failed (connection lost, disk full); nothing was
                written, and the next call reconnects.
        """
        from ._pg_write import apply_batch

        with self._transaction() as db:
            result, dim = apply_batch(db, batch, time.time())
        if dim is not None:
            self._dim = dim
        return result

    def close(self) -> None:
        if self._db is not None:
            with contextlib.suppress(Exception):
                self._db.close()
            self._db = None
