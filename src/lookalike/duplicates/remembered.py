"""Verdicts of the second look remembered between runs: ``<db>.cache/looks/looks.sqlite``.

A run over a collection of look-alikes looks at thousands of pairs (10,000 mosaics of the
sample photos: about 10,000 looks, minutes, #19), and the next run over the same files
asks the same questions: the review in the browser, ``--move-to`` after a dry run, the
same search again. Each decided verdict is kept, and a later run takes it instead of
looking again while both files are as they were.

"As they were" is the identity of each file as the look read it, links followed:
``(device, inode, size, mtime_ns, ctime_ns)``, taken before and after the file is read
and again when the verdict is kept: a verdict is kept only for the pixels of the files as
they are then (a file rewritten after its first read in a run is compared from its old
pixels for the rest of that run: review of #19). Writing a file, replacing it, or renaming
another over it changes one of them (the change time cannot be set back), so a changed
file is looked at again. A file whose times are within :data:`RACY_NS` of the moment it
is read is not remembered: on a file system whose times are coarse (a second: ext3, HFS+,
some network shares; two: FAT and exFAT memory cards), a rewrite within that tick keeps
every part of the identity (review of #19; git's "racy" rule). Not seen: a write through
a memory map that leaves the file's times as they were (tmpfs never updates them for such
writes; other file systems only when the pages are written back), as the index's own
check for changed files does not see it either. Only regular files are remembered.

Each verdict also belongs to the look that made it: it is stored with the
:func:`version` of the code that ran (a digest of the look's code objects as loaded, of
the OpenCV, NumPy and Pillow it ran on, and of the decode limits), and a run takes only
its own version's (two versions at work on one index at once never mix: review of #19).

It is a derived cache, in a folder of its own (``looks/``, made private: its verdicts
decide what ``--move-to`` moves, so a folder or file another user owns or may write is
never used): deleted, it is made again; corrupt, it is made again; when it cannot be used
(another process holds it too long, a full disk, a folder that cannot be written,
something not a regular file at its name), the run looks at every pair as if it were not
there. It never fails a run. It is bounded: past :data:`MAX_ROWS` verdicts, the least
recently used go.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import os
import sqlite3
import stat
import struct
import threading
import time
import types
from pathlib import Path
from typing import Any

from .verify import Verdict

#: The folder in the index's cache folder, and the file in it.
FOLDER = "looks"
NAME = "looks.sqlite"
#: A file whose modification or change time is this close to the moment it is read is
#: not remembered (nanoseconds: the coarsest file system times, FAT's two seconds, and a
#: second more).
RACY_NS = 3_000_000_000
#: Verdicts kept at most (about 340 bytes each on disk, with the index on last use).
MAX_ROWS = 1_000_000
#: Verdicts written at once.
BATCH = 512
_KEY = struct.Struct("<5q")
_COLUMNS = (
    "version", "a", "b", "copy", "agree", "cover", "inliers", "mirrored", "how", "blob", "glyphs",
    "text_differs", "used",
)  # fmt: skip
_SCHEMA = """
CREATE TABLE IF NOT EXISTS looks (
    version TEXT NOT NULL,
    a BLOB NOT NULL,
    b BLOB NOT NULL,
    copy INTEGER NOT NULL,
    agree REAL NOT NULL,
    cover REAL NOT NULL,
    inliers INTEGER NOT NULL,
    mirrored INTEGER NOT NULL,
    how TEXT NOT NULL,
    blob REAL NOT NULL,
    glyphs REAL,
    text_differs INTEGER NOT NULL,
    used REAL NOT NULL,
    PRIMARY KEY (version, a, b)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS looks_used ON looks (used);
"""

_VERSION: str | None = None


def version(limits: Any = None) -> str:
    """The look's version: a digest of the code that decides a verdict as this process
    loaded it (the second look, the page reading, the decoder, this module: their
    functions' code and their constants, not the files on disk, which an upgrade may have
    replaced under a running server: review of #19), of the libraries it runs on, and of
    the decode ``limits`` (a verdict made under looser ones is not one a run under
    stricter ones would make: it would find the file unreadable)."""
    global _VERSION
    if _VERSION is None:
        import sys

        import cv2
        import numpy
        import PIL

        from ..decode import files, formats, image, reasons
        from . import pages, verify

        h = hashlib.sha256()
        for module in (verify, pages, image, formats, files, reasons, sys.modules[__name__]):
            h.update(_module_digest(module))
        h.update(f"{cv2.__version__} {numpy.__version__} {PIL.__version__}".encode())
        h.update(sys.version.encode())
        for plugin in ("pillow-heif", "pillow-avif-plugin", "pillow-jxl-plugin"):
            with contextlib.suppress(Exception):
                h.update(f" {plugin} {importlib.metadata.version(plugin)}".encode())
        _VERSION = h.hexdigest()[:32]
    if limits is None:
        from ..decode import DecodeLimits

        limits = DecodeLimits()
    bounds = f"{limits.max_pixels} {limits.max_file_bytes} {sorted(limits.allowed_formats)}"
    return hashlib.sha256(f"{_VERSION} {bounds}".encode()).hexdigest()[:32]


def _module_digest(module: types.ModuleType) -> bytes:
    """The functions (their defaults, methods and properties of its classes, functions a
    decorator wraps, included) and constants (tables too) of ``module`` as loaded, in a
    form that depends on neither the process (no addresses, sets sorted) nor where the
    package lies (no ``__file__``; review of #19)."""
    h = hashlib.sha256()
    for name, obj in sorted(vars(module).items()):
        if name.startswith("__"):
            continue
        if isinstance(obj, type) and obj.__module__ == module.__name__:
            for attr, member in sorted(vars(obj).items()):
                if attr.startswith("__") and attr != "__init__":
                    continue
                h.update(f"{name}.{attr}=".encode() + _member(member))
        elif getattr(obj, "__module__", None) == module.__name__ or not callable(obj):
            h.update(f"{name}=".encode() + _member(obj))
    return h.digest()


def _member(obj: Any) -> bytes:
    """One function, property or constant of a module or class, as bytes."""
    if isinstance(obj, property):
        return b"|".join(_member(f) for f in (obj.fget, obj.fset, obj.fdel))
    fn = getattr(obj, "__wrapped__", getattr(obj, "__func__", obj))  # cache, staticmethod
    if isinstance(fn, types.FunctionType):
        defaults = (fn.__defaults__, fn.__kwdefaults__ or {})
        return _code(fn.__code__) + _constant(defaults).encode()
    if isinstance(obj, int | float | complex | str | bytes | tuple | list | dict | frozenset | set):
        return _constant(obj).encode()
    return b""  # a module, a thread-local, None: nothing that decides a verdict


def _code(code: types.CodeType) -> bytes:
    parts = [code.co_code, repr(code.co_names).encode(), repr(code.co_varnames).encode()]
    for const in code.co_consts:
        nested = isinstance(const, types.CodeType)
        parts.append(_code(const) if nested else _constant(const).encode())
    return b"\x00".join(parts)


def _constant(value: Any) -> str:
    """``value`` as text that is the same in every process (sets and tables sorted, no
    addresses, no integer too long for ``repr``)."""
    if isinstance(value, frozenset | set):
        return "{" + ",".join(sorted(_constant(v) for v in value)) + "}"
    if isinstance(value, tuple | list):
        return "(" + ",".join(_constant(v) for v in value) + ")"
    if isinstance(value, dict):
        items = sorted(f"{_constant(k)}:{_constant(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, int) and not isinstance(value, bool):
        return hex(value)
    if isinstance(value, float | complex | str | bytes | bool) or value is None:
        return repr(value)
    return f"<{type(value).__name__} {getattr(value, '__qualname__', '')}>"


def file_key(path: str | bytes, racy: bool = False) -> bytes | None:
    """The identity of the file at ``path`` (links followed), ``None`` when it is not a
    regular file one can stat, or (``racy``) when its times are within :data:`RACY_NS`
    of now."""
    try:
        st = os.stat(path)
    except (OSError, ValueError):
        return None
    if not stat.S_ISREG(st.st_mode) or st.st_ino == 0:
        return None
    now = time.time_ns()
    # Changed within the window: the change time, or a modification time near now (one
    # in the future is a kept timestamp, a camera's clock: not a write now; review).
    if racy and (st.st_ctime_ns > now - RACY_NS or abs(st.st_mtime_ns - now) < RACY_NS):
        return None
    return _KEY.pack(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


class Remembered:
    """The verdicts file of one index, open for one run. Safe to use from several threads.

    Use :meth:`open`; every method is a no-op once the file has failed (see the module
    docstring)."""

    def __init__(self, db: sqlite3.Connection, version: str) -> None:
        self._db: sqlite3.Connection | None = db
        self.version = version
        self._lock = threading.Lock()
        self._new: dict[tuple[bytes, bytes], tuple[Any, ...]] = {}
        self._used: list[tuple[float, str, bytes, bytes]] = []

    @classmethod
    def open(cls, directory: Path | str, limits: Any = None) -> Remembered | None:
        """The verdicts file under the index's cache folder ``directory`` (made when
        missing, made again when corrupt), for runs that read files within decode
        ``limits`` (their :func:`version`); ``None`` when it cannot be used."""
        folder = Path(directory) / FOLDER
        with contextlib.suppress(OSError):
            os.mkdir(folder, 0o700)  # private whatever the umask (it only takes bits away)
        if not _private(folder, folder=True):
            return None
        path = folder / NAME
        for attempt in (0, 1):
            try:
                os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600))
            except FileExistsError:
                pass
            except OSError:
                return None
            if not _private(path, folder=False):
                return None  # a FIFO, a device, a link, another's file: never opened
            db = None
            try:
                current = version(limits)
            except Exception:  # only a cache: never fail a run over it
                return None
            try:
                db = sqlite3.connect(path, timeout=2.0, check_same_thread=False)
                db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                columns = [c[1] for c in db.execute("PRAGMA table_info(looks)")]
                if columns != list(_COLUMNS):  # another layout: made again
                    db.executescript("DROP TABLE IF EXISTS looks;\n" + _SCHEMA)
                else:
                    db.executescript(_SCHEMA)
                return cls(db, current)
            except sqlite3.DatabaseError as e:
                if db is not None:
                    db.close()
                # Not a database, or not this one's tables (a torn or foreign file): it is
                # only a cache, made again once. Locked by another run for longer than the
                # timeout: not used.
                text = str(e).lower()
                corrupt = "locked" not in text and "busy" not in text
                if attempt or not corrupt:
                    return None
                for suffix in ("", "-wal", "-shm"):
                    with contextlib.suppress(OSError):
                        os.unlink(f"{path}{suffix}")
            except OSError:
                if db is not None:
                    db.close()
                return None
        return None

    @staticmethod
    def keys(a: str | bytes, b: str | bytes) -> tuple[bytes, bytes] | None:
        """:func:`pair_keys` (what :meth:`get` and :meth:`put` take)."""
        return pair_keys(a, b)

    @staticmethod
    def identity(path: str | bytes) -> bytes | None:
        """:func:`file_key`, or ``None`` for a file whose times are within
        :data:`RACY_NS` of now: a :class:`~lookalike.duplicates.verify.Verifier` takes it
        before and after it reads a file, and remembers a verdict only for the pixels of
        the files as they are now."""
        return file_key(path, racy=True)

    def get(self, keys: tuple[bytes, bytes]) -> Verdict | None:
        """The verdict remembered for the files of ``keys`` (:func:`pair_keys`), or ``None``."""
        with self._lock:
            if self._db is None:
                return None
            pending = self._new.get(keys)
            try:
                row = (
                    pending[3:12]
                    if pending is not None
                    else self._db.execute(
                        "SELECT copy, agree, cover, inliers, mirrored, how, blob, glyphs, "
                        "text_differs FROM looks WHERE version = ? AND a = ? AND b = ?",
                        (self.version, *keys),
                    ).fetchone()
                )
            except sqlite3.Error:
                self._fail()
                return None
            if row is None:
                return None
            self._used.append((time.time(), self.version, *keys))
            found = Verdict(
                bool(row[0]), row[1], row[2], row[3], bool(row[4]), row[5], row[6],
                glyphs=row[7], text_differs=bool(row[8]), remembered=True,
            )  # fmt: skip
            self._flush_if_due()
            return found

    def put(
        self, keys: tuple[bytes, bytes], verdict: Verdict, a: str | bytes, b: str | bytes
    ) -> None:
        """Remember ``verdict`` for the files ``a`` and ``b``, whose identities were ``keys``
        before the look: only when the look decided, and both files are still the same."""
        if verdict.copy is None or pair_keys(a, b) != keys:
            return
        row = (
            self.version,
            *keys,
            int(verdict.copy),
            float(verdict.agree),
            float(verdict.cover),
            int(verdict.inliers),
            int(verdict.mirrored),
            verdict.how,
            float(verdict.blob),
            None if verdict.glyphs is None else float(verdict.glyphs),
            int(verdict.text_differs),
            time.time(),
        )
        with self._lock:
            if self._db is None:
                return
            self._new[keys] = row
            self._flush_if_due()

    def close(self) -> None:
        """Write what is pending, drop the least recently used past :data:`MAX_ROWS`, close."""
        with self._lock:
            if self._db is None:
                return
            self._flush()
            db = self._db
            if db is not None:
                try:
                    (rows,) = db.execute("SELECT COUNT(*) FROM looks").fetchone()
                    if rows > MAX_ROWS:
                        with db:
                            db.execute(
                                "DELETE FROM looks WHERE (version, a, b) IN "
                                "(SELECT version, a, b FROM looks ORDER BY used LIMIT ?)",
                                (rows - MAX_ROWS,),
                            )
                except sqlite3.Error:
                    pass
                db.close()
            self._db = None

    def _flush_if_due(self) -> None:
        if len(self._new) + len(self._used) >= BATCH:
            self._flush()

    def _flush(self) -> None:
        db = self._db
        if db is None or not (self._new or self._used):
            return
        try:
            with db:
                db.executemany(
                    "INSERT OR REPLACE INTO looks VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    list(self._new.values()),
                )
                db.executemany(
                    "UPDATE looks SET used = ? WHERE version = ? AND a = ? AND b = ?", self._used
                )
        except sqlite3.Error:
            self._fail()
            return
        self._new, self._used = {}, []

    def _fail(self) -> None:
        """Stop using the file for this run (it is only a cache)."""
        db, self._db = self._db, None
        self._new, self._used = {}, []
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()


def _private(path: Path, folder: bool) -> bool:
    """Whether ``path`` is ours alone: a folder or a regular file (not a link) owned by
    this user that no one else may write. Anyone who could write the verdicts, or put a
    journal beside them, could have two distinct files moved as copies."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    kind = stat.S_ISDIR(st.st_mode) if folder else stat.S_ISREG(st.st_mode)
    return kind and st.st_uid == os.geteuid() and not st.st_mode & 0o022


def pair_keys(a: str | bytes, b: str | bytes) -> tuple[bytes, bytes] | None:
    """The identities of files ``a`` and ``b`` in a fixed order (a verdict does not
    depend on the order it was asked in: :meth:`~lookalike.duplicates.verify.Verifier.verdict`);
    ``None`` when either is not a regular file, or both are one file."""
    ka, kb = file_key(a), file_key(b)
    if ka is None or kb is None or ka == kb:
        return None
    return (ka, kb) if ka < kb else (kb, ka)
