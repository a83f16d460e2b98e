"""The scan seam: which image files a folder holds now, without opening any of them.

Paths are bytes throughout (names need not be valid UTF-8). Nothing here reads file
contents: a FIFO or device named ``photo.jpg`` is reported, never opened.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

from .errors import SourceUnavailableError

#: File extensions considered images (lower case). SVG/EPS/PDF/PSD are included on purpose:
#: they are reported as ``unsupported-format`` rather than silently ignored.
IMAGE_EXTENSIONS = frozenset(
    {
        b".jpg",
        b".jpeg",
        b".jpe",
        b".jfif",
        b".png",
        b".apng",
        b".gif",
        b".webp",
        b".bmp",
        b".dib",
        b".tif",
        b".tiff",
        b".heic",
        b".heif",
        b".avif",
        b".ppm",
        b".pgm",
        b".pbm",
        b".pnm",
        b".ico",
        b".tga",
        b".jp2",
        b".svg",
        b".svgz",
        b".eps",
        b".ps",
        b".pdf",
        b".psd",
    }
)


@dataclass(frozen=True)
class FileEntry:
    """A regular file seen by the scan: absolute ``path`` bytes, ``size``, ``mtime_ns``."""

    path: bytes
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    """Something under the folder that could not be listed or is not a file to read."""

    path: bytes
    reason: str
    detail: str


@dataclass
class ScanResult:
    """What one folder holds.

    Attributes:
        root: absolute folder path (bytes), symbolic links resolved.
        files: image files found, sorted by path.
        problems: unreadable directories and non-regular files named like images.
        unseen: directories that could not be listed: records below them are kept as they are.
        alias: the folder as given (absolute, links kept) when that differs from ``root``:
            records stored under it before paths were resolved (#8) belong to this scan.
    """

    root: bytes
    files: list[FileEntry] = field(default_factory=list)
    problems: list[ScanProblem] = field(default_factory=list)
    unseen: list[bytes] = field(default_factory=list)
    alias: bytes | None = None


def is_image_name(name: bytes) -> bool:
    dot = name.rfind(b".")
    return dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS


def resolve_root(folder: str | os.PathLike[str] | bytes) -> bytes:
    """Absolute bytes path of ``folder`` (``~`` expanded, symbolic links resolved), checked
    to be a readable directory. Resolved, so that a file reached through a linked folder
    is stored, searched and filtered under one path (#8).

    Raises:
        SourceUnavailableError: missing, not a directory, or unreadable.
    """
    raw = os.fsencode(folder)
    given = os.path.abspath(os.path.expanduser(raw))
    path = os.path.realpath(given)
    shown = os.fsdecode(given)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise SourceUnavailableError(
            f"folder {shown} does not exist (is its disk mounted?); nothing was changed"
        ) from None
    except OSError as e:
        raise SourceUnavailableError(f"folder {shown} cannot be read: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise SourceUnavailableError(f"{shown} is not a folder")
    if not os.access(path, os.R_OK | os.X_OK):
        raise SourceUnavailableError(f"folder {shown} cannot be read: permission denied")
    return path


def scan(
    folder: str | os.PathLike[str] | bytes,
    *,
    follow_links: bool = False,
    include_hidden: bool = False,
) -> ScanResult:
    """List the image files below ``folder``, recursively, without reading them.

    Hidden files and folders (names starting with ``.``) are skipped unless
    ``include_hidden``; macOS ``._*`` AppleDouble files always are. Symbolic links are
    not followed unless ``follow_links``; then each directory is entered once (by device
    and inode), so link loops end.

    Raises:
        SourceUnavailableError: the folder itself is missing or unreadable.

    Example:
        >>> result = scan("~/Pictures")  # doctest: +SKIP
        >>> len(result.files), [p.reason for p in result.problems]  # doctest: +SKIP
    """
    root = resolve_root(folder)
    given = os.path.abspath(os.path.expanduser(os.fsencode(folder)))
    result = ScanResult(root=root, alias=given if given != root else None)
    seen_dirs: set[tuple[int, int]] = set()
    if follow_links:
        st = os.stat(root)
        seen_dirs.add((st.st_dev, st.st_ino))
    stack = [root]
    while stack:
        directory = stack.pop()
        try:
            with os.scandir(directory) as it:
                entries = list(it)
        except OSError as e:
            if directory == root:
                raise SourceUnavailableError(
                    f"folder {os.fsdecode(root)} cannot be read: {e.strerror}"
                ) from None
            reason = "path-too-long" if e.errno == 36 else "unreadable-directory"
            result.problems.append(ScanProblem(directory, reason, e.strerror or str(e)))
            result.unseen.append(directory)
            continue
        for entry in entries:
            name = entry.name
            if name.startswith(b"._") or (name.startswith(b".") and not include_hidden):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    if not follow_links:
                        continue
                    st = os.stat(entry.path)  # broken links and loops raise here
            except FileNotFoundError:
                continue  # vanished since the listing
            except OSError as e:
                if is_image_name(name):
                    result.problems.append(
                        ScanProblem(entry.path, "unreadable", e.strerror or str(e))
                    )
                continue
            if stat.S_ISDIR(st.st_mode):
                if follow_links:
                    key = (st.st_dev, st.st_ino)
                    if key in seen_dirs:
                        continue
                    seen_dirs.add(key)
                stack.append(entry.path)
            elif is_image_name(name):
                if stat.S_ISREG(st.st_mode):
                    result.files.append(FileEntry(entry.path, st.st_size, st.st_mtime_ns))
                else:
                    result.problems.append(
                        ScanProblem(
                            entry.path,
                            "not-a-regular-file",
                            "a FIFO, socket or device named like an image; never opened",
                        )
                    )
    result.files.sort(key=lambda f: f.path)
    return result
