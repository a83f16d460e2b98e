"""Moving one file without ever replacing another, and knowing a file again by its bytes.

:func:`transfer` moves a regular file to a path that must not exist. On one file system
the target becomes a second name of the file (a hard link) and then the source name goes;
across file systems the bytes are copied to a temporary name beside the target, synced,
checked against the expected content hash, given the target name (again without replacing
anything) and only then is the source removed. Each durable phase is reported to the
caller (the journal) before the next begins, so a crash at any point leaves a state that
:mod:`~lookalike.duplicates.undo` can read back from the file system alone.

Only regular files are ever opened, with ``O_NONBLOCK`` and an ``fstat`` check: a FIFO or
a device swapped in at a path can never block a read.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import stat
from collections.abc import Callable
from typing import NamedTuple

#: Called with a step's name after every durable step of a move or undo (tests kill the
#: process there to check that any crash can be undone). ``None`` in normal use.
STEP_HOOK: Callable[[str], None] | None = None

_CHUNK = 1 << 20
# link(2) cannot make this name: copy instead (another file system, or one without links).
_NO_LINK = {errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EACCES, errno.ENOSYS}
_READ_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)


def step(name: str) -> None:
    """Mark a durable step (see :data:`STEP_HOOK`)."""
    if STEP_HOOK is not None:
        STEP_HOOK(name)


class Identity(NamedTuple):
    """What tells one file from another: device, inode, size and modification time."""

    dev: int
    ino: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, st: os.stat_result) -> Identity:
        return cls(st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)

    def same_file(self, other: Identity) -> bool:
        return (self.dev, self.ino) == (other.dev, other.ino)


class NotRegularError(OSError):
    """The path is not a regular file (a FIFO, device, socket, directory or symlink)."""


def open_regular(path: str, *, follow: bool = False) -> int:
    """A read-only descriptor of ``path``, which must be a regular file.

    Symbolic links are refused unless ``follow``. ``O_NONBLOCK`` and the ``fstat`` after
    opening make sure a FIFO or device put at the path is never read (nor blocks).

    Raises:
        NotRegularError: not a regular file.
        OSError: missing or unreadable.
    """
    flags = _READ_FLAGS | (0 if follow else getattr(os, "O_NOFOLLOW", 0))
    try:
        fd = os.open(path, flags)
    except OSError as e:
        if e.errno == errno.ELOOP:  # O_NOFOLLOW met a link
            raise NotRegularError(errno.ELOOP, "a symbolic link", path) from None
        raise
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise NotRegularError(errno.EINVAL, "not a regular file", path)
    return fd


def _digest() -> hashlib.blake2b:
    # The index's own content hash (lookalike.decode.content_hash): BLAKE2b, 16 bytes.
    return hashlib.blake2b(digest_size=16)


def probe(path: str) -> tuple[Identity, str] | None:
    """``(identity, content hash)`` of the regular file at ``path``; ``None`` when nothing
    (or no regular file) is there. Never follows a symbolic link at ``path``.

    Raises:
        OSError: the file is there but cannot be read.
    """
    try:
        fd = open_regular(path)
    except NotRegularError:
        return None
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        before = os.fstat(fd)
        h = _digest()
        while chunk := os.read(fd, _CHUNK):
            h.update(chunk)
        return Identity.of(before), h.hexdigest()
    finally:
        os.close(fd)


def fsync_dir(path: str) -> None:
    """Make a directory's entries durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)


def make_dirs(path: str) -> None:
    """``os.makedirs`` that also syncs each new directory's parent."""
    missing = []
    while not os.path.isdir(path):
        missing.append(path)
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    for d in reversed(missing):
        with contextlib.suppress(FileExistsError):
            os.mkdir(d)
        fsync_dir(os.path.dirname(d))


class ChangedError(OSError):
    """The source is no longer the file that was listed (other bytes or another inode)."""


def _place(tmp: str, dst: str) -> None:
    """Give ``tmp`` the name ``dst`` without replacing an existing ``dst``."""
    try:
        os.link(tmp, dst, follow_symlinks=False)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
        # No hard links here (e.g. FAT): check, then rename within the folder. The window
        # between the two is the only one; nothing else writes into our own run folder.
        if os.path.lexists(dst):
            raise FileExistsError(errno.EEXIST, "exists", dst) from None
        os.rename(tmp, dst)
        return
    os.unlink(tmp)


def _copy(src: str, tmp: str, digest: str, expect: Identity) -> None:
    """Copy ``src`` to the new file ``tmp`` (synced, times kept) and check its content.

    Raises:
        ChangedError: ``src`` is not the file (or the bytes) expected.
    """
    fd = open_regular(src)
    try:
        if Identity.of(os.fstat(fd)) != expect:
            raise ChangedError(src)
        h = _digest()
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0))
        try:
            while chunk := os.read(fd, _CHUNK):
                h.update(chunk)
                view = memoryview(chunk)
                while view:
                    view = view[os.write(out, view) :]
            step("copy")  # written, not yet synced
            os.fsync(out)
        except BaseException:
            os.close(out)
            with contextlib.suppress(OSError):
                os.unlink(tmp)  # ours (O_EXCL), and incomplete
            raise
        os.close(out)
        st = os.fstat(fd)
    finally:
        os.close(fd)
    if h.hexdigest() != digest or Identity.of(st) != expect:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise ChangedError(src)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    fd = os.open(tmp, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _still_the_file(src: str, dst: str, expect: Identity) -> None:
    """Just before ``src`` is removed: it must still be the file that was copied or linked.

    A file written to (or replaced) after its copy was checked would lose those changes
    with its name. Then nothing is removed from the source: the target goes when it only
    holds what the source still holds (a second name of the same file, or a copy of the
    bytes the file had before it was written to in place); a target holding the only
    copy of a file replaced at ``src`` stays (undo reports it).

    Raises:
        ChangedError: ``src`` is not the expected file any more.
    """
    st = os.lstat(src)  # gone meanwhile: FileNotFoundError, the target stays
    if stat.S_ISREG(st.st_mode) and Identity.of(st) == expect:
        return
    if stat.S_ISREG(st.st_mode) and Identity.of(st).same_file(expect):
        with contextlib.suppress(OSError):
            os.unlink(dst)
            fsync_dir(os.path.dirname(dst))
    raise ChangedError(errno.EAGAIN, "changed while it was being moved", src)


def temp_name(dst: str) -> str:
    """The temporary name a cross-device copy is written under, beside ``dst``."""
    head, tail = os.path.split(dst)
    return os.path.join(head, f".{tail}.lookalike-part")


def transfer(
    src: str,
    dst: str,
    digest: str,
    expect: Identity,
    on_phase: Callable[[str], None],
) -> None:
    """Move the regular file ``src`` to ``dst``, which must not exist.

    ``on_phase`` is called after each durable phase: ``"linked"`` (one file system:
    ``dst`` is a second name of the file), or ``"copied"`` (a synced, checked copy sits at
    :func:`temp_name`) then ``"placed"`` (the copy is at ``dst``, its hash checked); finally
    ``"unlinked"`` (``src`` is gone).

    Raises:
        FileExistsError: ``dst`` exists (nothing changed).
        ChangedError: ``src`` is not the expected file (nothing changed).
        OSError: anything else; the source is never removed before the target is complete.
    """
    parent = os.path.dirname(dst)
    make_dirs(parent)
    st = os.lstat(src)
    if not stat.S_ISREG(st.st_mode) or Identity.of(st) != expect:
        raise ChangedError(src)
    try:
        os.link(src, dst, follow_symlinks=False)
        linked = True
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in _NO_LINK:
            raise
        linked = False
    if linked:
        if not Identity.of(os.lstat(dst)).same_file(expect):  # replaced meanwhile: undo
            os.unlink(dst)
            raise ChangedError(src)
        fsync_dir(parent)
        on_phase("linked")
    else:
        tmp = temp_name(dst)
        _copy(src, tmp, digest, expect)
        fsync_dir(parent)
        on_phase("copied")
        _place(tmp, dst)
        fsync_dir(parent)
        found = probe(dst)
        if found is None or found[1] != digest:
            with contextlib.suppress(OSError):
                os.unlink(dst)  # the copy just placed, in our own run folder
            raise OSError(errno.EIO, "the copy does not read back as the original", dst)
        on_phase("placed")
    _still_the_file(src, dst, expect)
    os.unlink(src)
    fsync_dir(os.path.dirname(src))
    on_phase("unlinked")
