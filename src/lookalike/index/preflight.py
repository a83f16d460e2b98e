"""Checks of a command's arguments that run before any work (model load, indexing).

A query that does not exist must be reported before a folder of 10,000 photos is
indexed, and a read-only command on a mistyped ``--db`` must not create an empty index
there. Each check raises the library error an adapter shows as one line.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from ..errors import IndexNotFoundError, QueryError, SourceUnavailableError

# Enough to know the file decodes; the JPEG draft mode keeps a large photo cheap.
_PROBE_SIZE = (32, 32)


def check_query_file(path: str | os.PathLike[str]) -> None:
    """The query image exists, is a readable regular file, and decodes.

    Raises:
        QueryError: with the reason code indexing would give (``not-an-image``,
            ``truncated``, ``permission-denied``...), or ``missing``.
    """
    from ..decode import DecodeFailure, DecodeLimits, decode_bytes, read_file
    from ..setup import Preprocess

    text = os.fspath(path)
    if not text:
        raise QueryError("the query path is empty", "missing")
    p = Path(text).expanduser()
    if not p.exists():
        raise QueryError(f"query {text} does not exist", "missing")
    if p.is_dir():
        raise QueryError(f"query {text} is a folder, not an image", "not-a-regular-file")
    limits = DecodeLimits()
    try:
        data = read_file(os.fsencode(p))
        decode_bytes(data, Preprocess(size=_PROBE_SIZE), limits)
    except DecodeFailure as e:
        raise QueryError(f"cannot read query {text}: {e.detail or e.reason}", e.reason) from None


def check_folders(folders: Iterable[str | os.PathLike[str]]) -> None:
    """Each folder is named, exists, is a folder and can be listed.

    Raises:
        SourceUnavailableError: the first that is not, saying why.
    """
    for folder in folders:
        text = os.fspath(folder)
        if not text:
            raise SourceUnavailableError("a folder name is empty (the current folder is '.')")
        p = Path(text).expanduser()
        if not p.exists():
            raise SourceUnavailableError(f"folder {text} does not exist")
        if not p.is_dir():
            raise SourceUnavailableError(f"{text} is not a folder")
        if not os.access(p, os.R_OK | os.X_OK):
            raise SourceUnavailableError(f"folder {text} cannot be read (permission denied)")


def require_index(location: str | os.PathLike[str], *, named: bool = True) -> None:
    """An index exists at ``location`` (a SQLite file; database URLs are not checked).

    Args:
        location: the ``--db`` value or the default path.
        named: the user gave ``--db`` (the hint then repeats it).

    Raises:
        IndexNotFoundError: no file there; the message says how to make one.
    """
    from ..store import is_postgres_url

    if is_postgres_url(location):
        return
    p = Path(os.fspath(location)).expanduser()
    if p.is_file():
        return
    what = "a folder, not an index" if p.is_dir() else "no index"
    db = f" --db {p}" if named else ""
    raise IndexNotFoundError(
        f"{what} at {p}; make one with: lookalike index FOLDER{db} (or try: lookalike demo)"
    )
