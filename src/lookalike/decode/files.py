"""Read a file's bytes safely (:func:`read_file`) and fingerprint them (:func:`content_hash`).

Anything that is not a regular file is refused *before* it is opened (a FIFO named
``photo.jpg`` would block forever), and files deleted or rewritten since the scan are
noticed.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat

from .reasons import DecodeFailure


def content_hash(data: bytes | bytearray | memoryview) -> str:
    """The content fingerprint used to recognise renamed, moved and copied files.

    Args:
        data: the file's bytes.

    Returns:
        32 lowercase hex characters (BLAKE2b, 16-byte digest).

    Example:
        >>> content_hash(b"")
        'cae66941d9efbd404e4d88758ea67670'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_KIND_OF_MODE = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> DecodeFailure:
    kind = next((name for test, name in _KIND_OF_MODE if test(mode)), "not a regular file")
    return DecodeFailure("not-a-regular-file", f"{kind}; not opened")


def _os_failure(e: OSError) -> DecodeFailure:
    """Map an OS error from stat/open/read to a reason."""
    msg = e.strerror or str(e)
    if isinstance(e, FileNotFoundError | NotADirectoryError):
        return DecodeFailure("vanished", f"no longer there ({msg})")
    if isinstance(e, PermissionError):
        return DecodeFailure("permission-denied", msg)
    if isinstance(e, IsADirectoryError) or e.errno in (errno.ENXIO, errno.ENODEV):
        return DecodeFailure("not-a-regular-file", f"{msg}; not opened")
    return DecodeFailure("read-error", msg)


def read_file(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    expect_size: int | None = None,
    expect_mtime_ns: int | None = None,
    *,
    max_file_bytes: int | None = 1 << 30,
) -> bytes:
    """Read a whole image file, refusing anything that is not a plain, stable file.

    The file is ``stat``-ed first and opened only if it is a regular file (symlinks are
    followed: whether to follow them is the scanner's decision). It is opened with
    ``O_NONBLOCK`` and ``fstat``-ed again, so a FIFO swapped in after the first check
    cannot block the call. Size and mtime are compared with the scan's values and checked
    again after reading.

    Args:
        path: the file; bytes for names that are not valid UTF-8.
        expect_size: size in bytes from the scan; a different size is ``"changed"``.
        expect_mtime_ns: ``st_mtime_ns`` from the scan; a different one is ``"changed"``.
        max_file_bytes: larger files are ``"too-large"`` without being read; ``None``: no cap.

    Returns:
        The file's bytes.

    Raises:
        DecodeFailure: ``not-a-regular-file``, ``vanished``, ``changed``,
            ``permission-denied``, ``read-error``, ``empty`` or ``too-large``.

    Example:
        >>> read_file("photo.jpg")  # doctest: +SKIP
        b'\\xff\\xd8\\xff...'
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise _os_failure(e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(st.st_mode)
    if (expect_size is not None and st.st_size != expect_size) or (
        expect_mtime_ns is not None and st.st_mtime_ns != expect_mtime_ns
    ):
        raise DecodeFailure("changed", "size or modification time differs from the scan")
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise DecodeFailure(
            "too-large", f"{st.st_size} bytes is over the {max_file_bytes}-byte file limit"
        )
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _os_failure(e) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _not_regular(before.st_mode)
        if (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) != (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        ):
            raise DecodeFailure("changed", "the file was replaced while being opened")
        size = before.st_size
        if size == 0:
            raise DecodeFailure("empty", "zero bytes")
        # Asking for one byte more than expected shows a file that is still growing.
        parts = []
        got = 0
        while got <= size:
            chunk = os.read(fd, size + 1 - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        after = os.fstat(fd)
        if len(data) != size or (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
            raise DecodeFailure("changed", "the file changed while being read")
        return data
    except OSError as e:
        raise _os_failure(e) from None
    finally:
        os.close(fd)
