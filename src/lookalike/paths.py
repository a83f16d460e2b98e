"""How paths given by users become the byte paths the store holds.

The index stores paths with the indexed folder's symbolic links resolved
(:func:`lookalike.scan.resolve_root`), so one file has one stored path whichever link it
was reached through (#8). Queries, folder filters and ``add_embeddings`` resolve the same
way; lookups also try the path as given (made absolute), which is how rows stored before
that change, and files below a followed link (``--follow-links``), are named.
"""

from __future__ import annotations

import os


def absolute(path: str | os.PathLike[str] | bytes) -> bytes:
    """``path`` as bytes, ``~`` expanded, made absolute; links kept."""
    return os.path.abspath(os.path.expanduser(os.fsencode(path)))


def resolved(path: str | os.PathLike[str] | bytes) -> bytes:
    """``path`` as bytes, absolute, every symbolic link resolved (missing parts kept)."""
    return os.path.realpath(absolute(path))


def path_forms(path: str | os.PathLike[str] | bytes) -> list[bytes]:
    """The resolved path, then the absolute one when it differs: every name a stored row
    for ``path`` may have."""
    given = absolute(path)
    real = os.path.realpath(given)
    return [real] if real == given else [real, given]


# C0 controls and DEL: a file name may hold a newline or a terminal escape sequence.
_CONTROLS = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F)}


def printable(path: str) -> str:
    """``path`` as one line of printable text: undecodable bytes (surrogate escapes) and
    control characters (newline, tab, ESC...) shown as ``\\xNN``, so a file name can
    neither break a line of output nor send escape sequences to a terminal (#20)."""
    text = path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return text.translate(_CONTROLS)
