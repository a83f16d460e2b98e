"""Image files for the browser: which may be served, their thumbnails, their media type.

Files are only ever addressed by id; the path comes from the store. Even so, a stored path
may be a symbolic link that now points elsewhere (``/etc/passwd`` renamed ``x.jpg``), so a
file is served only when its real path is a regular file inside an indexed folder.

Thumbnails are decoded with Pillow's draft mode (JPEGs at 1/2..1/8 scale) through the same
bounded decoder as indexing, and cached on disk beside the index
(``<db>.cache/thumbs/``), named by a version that changes with the file's path, size and
mtime: the browser may keep a versioned URL forever (``immutable``).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ..decode import DecodeLimits, load_for_display, open_rgb, sniff_format

THUMB_SIDE = 256
#: Formats every current browser shows as they are; others are converted to JPEG.
BROWSER_TYPES = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "GIF": "image/gif",
    "WEBP": "image/webp",
    "BMP": "image/bmp",
    "ICO": "image/x-icon",
    "AVIF": "image/avif",
}


def servable(path: str, folders: Sequence[str]) -> str | None:
    """The real path of ``path`` when it is a regular file inside one of ``folders``.

    Returns:
        The resolved path, or ``None`` (missing, not a regular file, or a link leading out
        of every indexed folder).
    """
    try:
        real = os.path.realpath(path)
        if not stat.S_ISREG(os.stat(real).st_mode):
            return None
    except (OSError, ValueError):
        return None
    for folder in folders:
        root = os.path.realpath(folder)
        if real.startswith(root.rstrip(os.sep) + os.sep):
            return real
    return None


def media_type(real: str) -> str | None:
    """The browser media type of the file's format (from its bytes), or ``None``."""
    try:
        with open(real, "rb") as f:
            head = f.read(1024)
    except OSError:
        return None
    return BROWSER_TYPES.get(sniff_format(head) or "")


def as_jpeg(real: str, max_side: int, limits: DecodeLimits) -> bytes:
    """The image as a JPEG whose longer side is at most ``max_side`` (TIFF, HEIC, PPM ...).

    Raises:
        DecodeFailure: the file cannot be decoded.
    """
    img = load_for_display(real, max_side=max_side, limits=limits)
    out = io.BytesIO()
    img.save(out, "JPEG", quality=85)
    return out.getvalue()


def upload_thumbnail(data: bytes, limits: DecodeLimits, side: int = THUMB_SIDE) -> bytes:
    """A JPEG thumbnail of uploaded bytes (the query panel shows it)."""
    img = open_rgb(data, limits=limits, draft_to=(side, side))
    img.thumbnail((side, side))
    out = io.BytesIO()
    img.save(out, "JPEG", quality=82)
    return out.getvalue()


class Thumbnails:
    """JPEG thumbnails cached on disk, keyed by the file's identity.

    Args:
        directory: the cache folder (created on first use). ``None`` or unwritable: no
            cache, each thumbnail is made on request.
        limits: decode limits (pixel bound against bombs).
        side: longer side of a thumbnail in pixels.
    """

    def __init__(
        self,
        directory: Path | None,
        limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
        side: int = THUMB_SIDE,
    ) -> None:
        self.directory = directory
        self.limits = limits
        self.side = side

    def version(self, path: str) -> str | None:
        """A short hash of the path, the size and mtime of the file it names (links
        followed) and the thumbnail size; ``None`` if the file is gone. One ``stat``: it
        runs for every tile of every answer."""
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            return None
        key = b"\0".join(
            [os.fsencode(path), b"%d" % st.st_size, b"%d" % st.st_mtime_ns, b"%d" % self.side]
        )
        return hashlib.sha256(key).hexdigest()[:20]

    def get(self, real: str, version: str) -> bytes:
        """The thumbnail's JPEG bytes, from the cache or made now (and cached).

        Raises:
            DecodeFailure: the file cannot be decoded.
        """
        cached = self._file(version)
        if cached is not None:
            with contextlib.suppress(OSError):
                return cached.read_bytes()
        data = as_jpeg(real, self.side, self.limits)
        if cached is not None:
            self._store(cached, data)
        return data

    def _file(self, version: str) -> Path | None:
        if self.directory is None:
            return None
        return self.directory / version[:2] / f"{version}.jpg"

    def _store(self, target: Path, data: bytes) -> None:
        """Write atomically (temp file + rename): a reader never sees half a thumbnail."""
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".part")
        except OSError:
            return  # a read-only cache folder only costs speed
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        except OSError:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
