"""SQLite store: WAL, one transaction per batch, a generation counter for derived caches.

Schema (version 1)::

    meta(key TEXT PRIMARY KEY, value TEXT)        schema_version, setup, dim, generation, ...
    images(id, path BLOB UNIQUE, size, mtime_ns, hash, vector BLOB float32, indexed_at)
    failures(path BLOB PRIMARY KEY, size, mtime_ns, reason, detail, at)
    folders(path BLOB PRIMARY KEY, added_at)

Every transaction that changes a vector bumps ``meta.generation`` and draws a new random
``meta.generation_id`` (first drawn when the DB is created): the memory-mapped vector cache
and the ANN index beside the DB compare both with their own and rebuild on mismatch, so a
new DB at the same path, or one whose last commit was lost, never trusts them (#8).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from ..errors import (
    IndexCorruptError,
    NotAnIndexError,
    SchemaTooNewError,
    StoreError,
    StoreWriteError,
)
from .base import FailureRow, FileRow, WriteBatch, WriteResult, folder_prefix

SCHEMA_VERSION = 1
_QUICK_CHECK_MAX_BYTES = 256 << 20  # above this a full check costs seconds: `info --check`

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS images (
    id INTEGER PRIMARY KEY,
    path BLOB NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash TEXT,
    vector BLOB NOT NULL,
    indexed_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS images_size ON images(size);
CREATE TABLE IF NOT EXISTS failures (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS folders (path BLOB PRIMARY KEY, added_at REAL NOT NULL);
"""


NETWORK_FILESYSTEMS = frozenset(
    {"nfs", "nfs4", "cifs", "smb3", "smbfs", "fuse.sshfs", "9p", "afs", "glusterfs", "ceph"}
)


def filesystem_type(path: Path, mounts: str = "/proc/mounts") -> str | None:
    """The type of the filesystem holding ``path`` (Linux), or ``None`` if unknown."""
    try:
        with open(mounts, encoding="utf-8", errors="replace") as f:
            table = [line.split()[1:3] for line in f if len(line.split()) >= 3]
    except OSError:
        return None
    target = os.path.realpath(path)
    best, kind = "", None
    for mount_point, fstype in table:
        mount_point = mount_point.replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) >= len(best):
            best, kind = mount_point, fstype
    return kind


def _upper(prefix: bytes) -> bytes:
    """Smallest byte string greater than every string starting with ``prefix``."""
    return prefix[:-1] + bytes([prefix[-1] + 1])


_SQLITE_MAGIC = b"SQLite format 3\0"
#: Every table a lookalike index may hold; a database with other tables is someone else's.
_OUR_TABLES = frozenset({"meta", "images", "failures", "folders"})


def _not_an_index(path: Path, what: str) -> NotAnIndexError:
    return NotAnIndexError(
        f"{path} is not a lookalike index ({what}); nothing was changed: give --db an "
        "index file, or a new file name to make one"
    )


def _check_is_sqlite(path: Path) -> None:
    """A non-empty file at ``path`` starts as a SQLite database does (read-only check)."""
    try:
        with open(path, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as e:
        raise StoreError(f"cannot open index {path}: {e.strerror or e}") from None
    if head != _SQLITE_MAGIC:
        raise _not_an_index(path, "it is not a SQLite database")


def _check_tables(db: sqlite3.Connection, path: Path) -> None:
    """An existing SQLite file holds a lookalike index (or nothing yet), never another
    program's tables: those would otherwise get our tables written beside them."""
    names = {
        row[0]
        for row in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        )
    }
    foreign = sorted(names - _OUR_TABLES)
    if foreign:
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise _not_an_index(path, f"a SQLite database with other tables: {shown}")


def _damaged(path: Path, err: Exception) -> IndexCorruptError:
    return IndexCorruptError(
        f"index {path} is damaged ({err}); move it aside and rebuild it with "
        f"`lookalike index FOLDER --db {path}`"
    )


class SQLiteStore:
    """The SQLite implementation of :class:`lookalike.store.Store`.

    Args:
        path: the database file; created (with its parent folder) when missing.
        timeout: seconds to wait for another writer's lock before failing.

    Raises:
        NotAnIndexError: the file is something else (not SQLite, or another program's
            database); it is left untouched.
        IndexCorruptError: the index fails its quick check.
        SchemaTooNewError: written by a newer lookalike.
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 60.0) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the folder for index {self.path}: {e}") from e
        self.warnings: list[str] = []
        fstype = filesystem_type(self.path.parent)
        if fstype in NETWORK_FILESYSTEMS:
            # SQLite's WAL needs shared memory between processes: unreliable over a network.
            self.warnings.append(
                f"index {self.path} is on a network filesystem ({fstype}); SQLite locking is "
                "unreliable there: keep the index on a local disk (--db)"
            )
        existed = self.path.exists() and self.path.stat().st_size > 0
        if existed:
            _check_is_sqlite(self.path)
        try:
            # isolation_level=None: we issue BEGIN/COMMIT ourselves, one per batch.
            self._db = sqlite3.connect(
                self.path, timeout=timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as e:
            raise StoreError(f"cannot open index {self.path}: {e}") from e
        try:
            self._db.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
            if existed:
                # Before WAL mode, which would rewrite another program's database header.
                _check_tables(self._db, self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            if existed and self.path.stat().st_size <= _QUICK_CHECK_MAX_BYTES:
                row = self._db.execute("PRAGMA quick_check(1)").fetchone()
                if row is None or row[0] != "ok":
                    raise _damaged(self.path, ValueError(row[0] if row else "no answer"))
            self._db.executescript(_SCHEMA)
            version = self.get_meta("schema_version")
            if version is None:
                self.set_meta(
                    {
                        "schema_version": str(SCHEMA_VERSION),
                        "generation": "0",
                        "generation_id": uuid.uuid4().hex,
                    }
                )
            elif int(version) > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"index {self.path} has schema {version}, newer than this lookalike "
                    f"understands ({SCHEMA_VERSION}); upgrade: pip install -U lookalike"
                )
        except sqlite3.DatabaseError as e:
            self._db.close()
            raise _damaged(self.path, e) from e
        except Exception:
            self._db.close()
            raise

    # -- helpers -------------------------------------------------------------------------

    def _query(self, sql: str, params: Sequence[object] = ()) -> list[tuple]:
        try:
            return self._db.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise StoreError(f"index {self.path} is busy: {e}") from e
            raise _damaged(self.path, e) from e

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as e:
            raise StoreError(f"index {self.path} is busy: {e}") from e
        try:
            yield self._db
            self._db.execute("COMMIT")
        except BaseException as e:
            with contextlib.suppress(sqlite3.Error):
                self._db.execute("ROLLBACK")
            if isinstance(e, sqlite3.OperationalError | sqlite3.IntegrityError):
                raise StoreWriteError(
                    f"writing to index {self.path} failed and was rolled back: {e}"
                ) from e
            if isinstance(e, sqlite3.DatabaseError):
                raise _damaged(self.path, e) from e
            raise

    # -- meta ----------------------------------------------------------------------------

    def get_meta(self, key: str) -> str | None:
        rows = self._query("SELECT value FROM meta WHERE key = ?", (key,))
        return rows[0][0] if rows else None

    def set_meta(self, items: dict[str, str]) -> None:
        with self._transaction() as db:
            db.executemany(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                list(items.items()),
            )

    def generation(self) -> int:
        return int(self.get_meta("generation") or 0)

    def head(self) -> tuple[int, str | None]:
        """``(generation, generation_id)``, read in one statement (one snapshot)."""
        meta = dict(
            self._query("SELECT key, value FROM meta WHERE key IN ('generation', 'generation_id')")
        )
        return int(meta.get("generation") or 0), meta.get("generation_id")

    def dim(self) -> int | None:
        value = self.get_meta("dim")
        return int(value) if value is not None else None

    # -- reads ---------------------------------------------------------------------------

    def count(self) -> int:
        return int(self._query("SELECT count(*) FROM images")[0][0])

    def is_empty(self) -> bool:
        """No image stored (constant time, unlike ``count``: this runs on every search)."""
        return not self._query("SELECT 1 FROM images LIMIT 1")

    def iter_vectors(self, chunk_rows: int = 65536) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(ids int64 (m,), vectors float32 (m, dim))`` ordered by id, in one snapshot."""
        dim = self.dim()
        if dim is None:
            return
        last = -1
        while True:
            rows = self._query(
                "SELECT id, vector FROM images WHERE id > ? ORDER BY id LIMIT ?",
                (last, chunk_rows),
            )
            if not rows:
                return
            ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
            vecs = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
            yield ids, vecs.reshape(len(rows), dim)
            last = int(ids[-1])

    def _range(self, folder: bytes) -> tuple[bytes, bytes]:
        prefix = folder_prefix(folder)
        return prefix, _upper(prefix)

    def files_under(self, folder: bytes) -> dict[bytes, FileRow]:
        lo, hi = self._range(folder)
        rows = self._query(
            "SELECT id, path, size, mtime_ns, hash FROM images WHERE path >= ? AND path < ?",
            (lo, hi),
        )
        return {bytes(r[1]): FileRow(r[0], bytes(r[1]), r[2], r[3], r[4]) for r in rows}

    def failures_under(self, folder: bytes) -> dict[bytes, FailureRow]:
        lo, hi = self._range(folder)
        rows = self._query(
            "SELECT path, size, mtime_ns, reason, detail FROM failures "
            "WHERE path >= ? AND path < ?",
            (lo, hi),
        )
        return {bytes(r[0]): FailureRow(bytes(r[0]), *r[1:]) for r in rows}

    def all_failures(self) -> list[FailureRow]:
        rows = self._query(
            "SELECT path, size, mtime_ns, reason, detail FROM failures ORDER BY path"
        )
        return [FailureRow(bytes(r[0]), *r[1:]) for r in rows]

    def duplicate_hashes(self) -> list[tuple[int, str]]:
        """``(image id, content hash)`` of every image whose hash another image shares (#9)."""
        rows = self._query(
            "SELECT id, hash FROM images WHERE hash IN (SELECT hash FROM images "
            "WHERE hash IS NOT NULL GROUP BY hash HAVING count(*) > 1) ORDER BY hash, id"
        )
        return [(int(r[0]), str(r[1])) for r in rows]

    def hashes_for_sizes(self, sizes: Sequence[int]) -> dict[int, dict[str, int]]:
        """For each size, ``{content hash: image id}`` of stored images of that size."""
        out: dict[int, dict[str, int]] = {}
        unique = sorted(set(sizes))
        for i in range(0, len(unique), 500):
            part = unique[i : i + 500]
            marks = ",".join("?" * len(part))
            for size, h, image_id in self._query(
                f"SELECT size, hash, id FROM images WHERE size IN ({marks}) AND hash IS NOT NULL",
                part,
            ):
                out.setdefault(size, {})[h] = image_id
        return out

    def lookup(self, path: bytes) -> tuple[FileRow, np.ndarray] | None:
        rows = self._query(
            "SELECT id, path, size, mtime_ns, hash, vector FROM images WHERE path = ?", (path,)
        )
        if not rows:
            return None
        r = rows[0]
        return FileRow(r[0], bytes(r[1]), r[2], r[3], r[4]), np.frombuffer(r[5], np.float32)

    def vectors_for(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        out: dict[int, np.ndarray] = {}
        ids = [int(i) for i in ids]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for image_id, blob in self._query(
                f"SELECT id, vector FROM images WHERE id IN ({marks})", part
            ):
                out[image_id] = np.frombuffer(blob, np.float32)
        return out

    def paths_for(self, ids: Sequence[int]) -> dict[int, bytes]:
        out: dict[int, bytes] = {}
        ids = [int(i) for i in ids]
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            marks = ",".join("?" * len(part))
            for image_id, path in self._query(
                f"SELECT id, path FROM images WHERE id IN ({marks})", part
            ):
                out[image_id] = bytes(path)
        return out

    def ids_under(self, folders: Sequence[bytes]) -> np.ndarray:
        """Sorted int64 ids of every image below any of ``folders``."""
        parts = []
        for folder in folders:
            lo, hi = self._range(folder)
            rows = self._query("SELECT id FROM images WHERE path >= ? AND path < ?", (lo, hi))
            parts.append(np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows)))
        if not parts:
            return np.empty(0, np.int64)
        return np.unique(np.concatenate(parts))

    def folders(self) -> list[bytes]:
        return [bytes(r[0]) for r in self._query("SELECT path FROM folders ORDER BY path")]

    def page(self, offset: int, limit: int) -> list[tuple[int, bytes]]:
        """``(id, path)`` of up to ``limit`` images in path order, from position ``offset``."""
        rows = self._query(
            "SELECT id, path FROM images ORDER BY path LIMIT ? OFFSET ?", (limit, offset)
        )
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def add_folders(self, folders: Sequence[bytes]) -> None:
        now = time.time()
        with self._transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO folders(path, added_at) VALUES (?, ?)",
                [(f, now) for f in folders],
            )

    def remove_folder(self, folder: bytes) -> None:
        with self._transaction() as db:
            db.execute("DELETE FROM folders WHERE path = ?", (folder,))

    # -- writes --------------------------------------------------------------------------

    def write(self, batch: WriteBatch) -> WriteResult:
        """Apply ``batch`` in one transaction; all of it lands or none of it does.

        Raises:
            StoreWriteError: the commit failed (disk full, I/O error); nothing was written.
        """
        now = time.time()
        added_ids: list[int] = []
        added_vecs: list[np.ndarray] = []
        removed: list[int] = []
        with self._transaction() as db:
            previous = int(
                db.execute("SELECT value FROM meta WHERE key='generation'").fetchone()[0]
            )
            id_row = db.execute("SELECT value FROM meta WHERE key='generation_id'").fetchone()
            previous_id = new_id = id_row[0] if id_row else None
            dim_row = db.execute("SELECT value FROM meta WHERE key='dim'").fetchone()
            dim = int(dim_row[0]) if dim_row else None
            for path, size, mtime_ns, content_hash, vector in batch.upserts:
                vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
                if dim is None:
                    dim = vec.shape[0]
                    db.execute("INSERT INTO meta(key, value) VALUES ('dim', ?)", (str(dim),))
                if vec.shape[0] != dim:
                    raise StoreError(f"vector of dimension {vec.shape[0]}; the index holds {dim}")
                (image_id,) = db.execute(
                    "INSERT INTO images(path, size, mtime_ns, hash, vector, indexed_at) "
                    "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET "
                    "size=excluded.size, mtime_ns=excluded.mtime_ns, hash=excluded.hash, "
                    "vector=excluded.vector, indexed_at=excluded.indexed_at RETURNING id",
                    (path, size, mtime_ns, content_hash, vec.tobytes(), now),
                ).fetchone()
                added_ids.append(image_id)
                added_vecs.append(vec)
            for image_id, path, size, mtime_ns in batch.moves:
                # A stale row at the destination (a file replaced by a rename) gives way.
                for (old,) in db.execute(
                    "DELETE FROM images WHERE path = ? AND id != ? RETURNING id", (path, image_id)
                ).fetchall():
                    removed.append(old)
                db.execute(
                    "UPDATE images SET path=?, size=?, mtime_ns=?, indexed_at=? WHERE id=?",
                    (path, size, mtime_ns, now, image_id),
                )
            for image_id in batch.deletes:
                if db.execute("DELETE FROM images WHERE id = ?", (int(image_id),)).rowcount:
                    removed.append(int(image_id))
            db.executemany(
                "INSERT INTO failures(path, size, mtime_ns, reason, detail, at) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(path) DO UPDATE SET size=excluded.size, "
                "mtime_ns=excluded.mtime_ns, reason=excluded.reason, detail=excluded.detail, "
                "at=excluded.at",
                [(*f, now) for f in batch.failures],
            )
            db.executemany(
                "DELETE FROM failures WHERE path = ?", [(p,) for p in batch.clear_failures]
            )
            generation = previous
            if added_ids or removed:
                generation, new_id = previous + 1, uuid.uuid4().hex
                db.execute(  # an index from before #8 has none yet: it gets one here
                    "INSERT INTO meta(key, value) VALUES ('generation_id', ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (new_id,),
                )
                db.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (str(generation),))
        # The net effect, for the caches: a path upserted twice is one id once (its last
        # vector); an id upserted and then removed (a move onto its path) is only removed.
        gone = set(removed)
        net = {i: v for i, v in zip(added_ids, added_vecs, strict=True) if i not in gone}
        vectors = np.stack(list(net.values())) if net else np.empty((0, dim or 0), dtype=np.float32)
        return WriteResult(
            previous,
            generation,
            np.fromiter(net, dtype=np.int64, count=len(net)),
            vectors,
            np.asarray(sorted(gone), dtype=np.int64),
            previous_id,
            new_id,
        )

    def integrity_check(self) -> str:
        """``PRAGMA integrity_check``: ``"ok"`` or the first problems found."""
        rows = self._query("PRAGMA integrity_check")
        return "\n".join(r[0] for r in rows)

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
