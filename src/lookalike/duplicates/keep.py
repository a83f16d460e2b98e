"""Which file of a group stays: an ordered rule users can read, and the facts it needs.

A rule is a comma-separated list of criteria, tried in order until one prefers a file;
the path (alphabetical) breaks any remaining tie, so the choice is deterministic.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ..errors import ConfigError

DEFAULT_KEEP = "resolution,size,oldest"

#: Criterion -> what it prefers (shown in ``--help``).
KEEP_OPTIONS: dict[str, str] = {
    "resolution": "most pixels",
    "size": "largest file",
    "smallest": "smallest file",
    "oldest": "oldest modification time",
    "newest": "newest modification time",
    "shortest-path": "shortest path",
    "longest-path": "longest path",
    "path": "first path in alphabetical order",
}


@dataclass(frozen=True)
class FileFacts:
    """What the keep rule and the reports know about one file.

    Attributes:
        path: absolute path (``os.fsdecode`` form).
        size: bytes, -1 if the file could not be read.
        mtime: seconds since the epoch, 0.0 if unknown.
        width: pixels, 0 if unknown.
        height: pixels, 0 if unknown.
        dev: device of the file (links followed), 0 if unknown.
        ino: inode of the file, 0 if unknown: two paths with equal ``(dev, ino)`` are one
            file (a followed link, a bind mount, two casings on a case-insensitive disk).
        mtime_ns: modification time in nanoseconds, -1 if unknown.
        link: the path itself is a symbolic link.
    """

    path: str
    size: int = -1
    mtime: float = 0.0
    width: int = 0
    height: int = 0
    dev: int = 0
    ino: int = 0
    mtime_ns: int = -1
    link: bool = False

    @property
    def pixels(self) -> int:
        return self.width * self.height


def file_facts(path: str) -> FileFacts:
    """Size, mtime, identity and resolution of ``path`` (resolution from the header only).

    Never raises: a missing or unreadable file gets the "unknown" values, which every
    criterion ranks last. Only a regular file is ever opened, with ``O_NONBLOCK`` and an
    ``fstat`` check, so a FIFO or device at an indexed path can never block the search.
    """
    try:
        lst = os.lstat(path)
        st = os.stat(path) if stat.S_ISLNK(lst.st_mode) else lst
    except OSError:
        return FileFacts(path)
    link = stat.S_ISLNK(lst.st_mode)
    if not stat.S_ISREG(st.st_mode):  # a FIFO, socket, device or folder: never opened
        return FileFacts(path, link=link)
    width = height = 0
    try:
        from PIL import Image

        from ..decode.formats import _open_order
        from ..decode.reasons import DEFAULT_FORMATS
        from .transfer import open_regular

        # Only the formats the decoder opens when indexing (EPS, PDF: never parsed).
        formats = _open_order(DEFAULT_FORMATS)
        fd = open_regular(path, follow=True)
        with os.fdopen(fd, "rb") as f, Image.open(f, formats=formats) as im:
            width, height = im.size  # the header, not the pixels
            orientation = im.getexif().get(0x0112, 1)
            if orientation in (5, 6, 7, 8):  # shown rotated by 90 degrees
                width, height = height, width
    except Exception:  # any decoder error: resolution unknown, the file still counts
        pass
    return FileFacts(
        path,
        st.st_size,
        st.st_mtime,
        width,
        height,
        dev=st.st_dev,
        ino=st.st_ino,
        mtime_ns=st.st_mtime_ns,
        link=link,
    )


_KEYS: dict[str, Callable[[FileFacts], float]] = {
    # Each key is minimised: "better" files get smaller keys; unknown values rank last.
    "resolution": lambda f: -f.pixels,
    "size": lambda f: -f.size,
    "smallest": lambda f: f.size if f.size >= 0 else float("inf"),
    "oldest": lambda f: f.mtime if f.mtime > 0 else float("inf"),
    "newest": lambda f: -f.mtime,
    "shortest-path": lambda f: len(f.path),
    "longest-path": lambda f: -len(f.path),
}


def parse_keep(rule: str | Sequence[str]) -> tuple[str, ...]:
    """A keep rule as a tuple of criteria, checked.

    Args:
        rule: ``"resolution,size,oldest"`` or a sequence of criterion names.

    Raises:
        ConfigError: an empty rule or an unknown criterion (the message lists them all).

    Example:
        >>> parse_keep("resolution, oldest")
        ('resolution', 'oldest')
    """
    parts = rule.split(",") if isinstance(rule, str) else list(rule)
    names = tuple(p.strip().lower() for p in parts if p.strip())
    if not names:
        raise ConfigError(f"empty keep rule; use criteria from: {', '.join(KEEP_OPTIONS)}")
    for name in names:
        if name not in KEEP_OPTIONS:
            raise ConfigError(
                f"unknown keep criterion {name!r}; choose from: {', '.join(KEEP_OPTIONS)}"
            )
    return names


def rank_key(rule: Sequence[str]) -> Callable[[FileFacts], tuple[float | str, ...]]:
    """A sort key: the file to keep sorts first."""
    keys = [_KEYS[name] for name in rule if name != "path"]

    def key(f: FileFacts) -> tuple[float | str, ...]:
        return (*(k(f) for k in keys), f.path)

    return key
