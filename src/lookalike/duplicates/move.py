"""Moving copies out of the way: never deleting, never overwriting, always undoable.

``move_groups`` moves every non-kept member of each group into a new run folder below the
destination, under its whole absolute source path (``DEST/<run>/<source path>``), so two
targets never collide. Each move is a transaction recorded in the run's journal
(:mod:`~lookalike.duplicates.journal`): every planned move, with the file's exact path,
identity and content hash, is on disk before anything moves, and each phase of each move
is appended and synced before the next begins; the index forgets a file as soon as it has
moved. :func:`~lookalike.duplicates.undo.undo_moves` reads the journal back.

Just before moving, every member is checked again: still a regular file (not a link, a
FIFO or a device), still the file that was listed (device, inode, size, mtime), not the
kept file or another member under a second name, and not inside the destination. A group
whose kept file vanished or changed is left alone. A destination inside an indexed folder
(its files would be indexed and moved again) or holding one is refused.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from ..errors import DestinationError
from .journal import Journal, Planned, Run, readable, start_run, write_manifest
from .transfer import ChangedError, Identity, make_dirs, probe, step, temp_name, transfer
from .types import DuplicateGroup, DuplicateMember, MoveProblem, MoveReport

__all__ = ["IndexLink", "check_destination", "move_groups", "remove_empty_folders"]


class IndexLink(Protocol):
    """How the mover keeps an index in step, one file at a time."""

    def row(self, path: str) -> dict[str, Any] | None:
        """The index row of ``path`` as JSON (see :func:`~.journal.encode_row`), or None."""
        ...

    def forget(self, path: str) -> None:
        """The file at ``path`` moved out of every indexed folder."""
        ...

    def restore(self, path: str, row: dict[str, Any]) -> None:
        """The file is back at ``path``: give the index its row again (if it lacks it)."""
        ...


def _identity_chain(path: str) -> set[tuple[int, int]]:
    """``(dev, ino)`` of ``path`` and of every folder above it (those that exist)."""
    found = set()
    path = os.path.abspath(path)
    while True:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            found.add((st.st_dev, st.st_ino))
        parent = os.path.dirname(path)
        if parent == path:
            return found
        path = parent


def _inside(path: str, folder: str) -> bool:
    folder = folder.rstrip(os.sep) or os.sep
    return path == folder or path.startswith(folder if folder == os.sep else folder + os.sep)


def check_destination(destination: str | os.PathLike[str], roots: Sequence[str]) -> str:
    """The destination as an absolute path, checked against the indexed folders.

    Compared by real path and by ``(device, inode)`` of the folders, so a bind mount, a
    link or another casing of an indexed folder counts as that folder.

    Raises:
        DestinationError: the destination is inside an indexed folder, or holds one.
    """
    dest = os.path.abspath(os.path.expanduser(os.fspath(destination)))
    real = os.path.realpath(dest)
    above_dest = _identity_chain(real)
    try:
        st = os.stat(real)
        dest_id: tuple[int, int] | None = (st.st_dev, st.st_ino)
    except OSError:
        dest_id = None
    for root in roots:
        root_real = os.path.realpath(root)
        try:
            rst = os.stat(root_real)
            root_id: tuple[int, int] | None = (rst.st_dev, rst.st_ino)
        except OSError:
            root_id = None
        if _inside(real, root_real) or (root_id is not None and root_id in above_dest):
            raise DestinationError(
                f"{readable(dest)} is inside the indexed folder {readable(root)}: its files "
                "would be indexed and moved again; choose a folder outside every indexed one"
            )
        if _inside(root_real, real) or (dest_id is not None and dest_id in _identity_chain(root)):
            raise DestinationError(
                f"{readable(dest)} holds the indexed folder {readable(root)}; choose a folder "
                "outside every indexed one"
            )
    return dest


def _listed(m: DuplicateMember) -> Identity | None:
    return Identity(m.dev, m.ino, m.size, m.mtime_ns) if m.ino else None


def _check(m: DuplicateMember, *, follow: bool) -> tuple[str | None, Identity | None]:
    """``(problem, identity now)``: the file must still be the regular file listed."""
    try:
        st = os.stat(m.path) if follow else os.lstat(m.path)
    except FileNotFoundError:
        return "vanished", None
    except OSError:
        return "unreadable", None
    if not stat.S_ISREG(st.st_mode):
        return "not-a-regular-file", None
    now = Identity.of(st)
    listed = _listed(m)
    if listed is not None:
        if now != listed:
            return "changed", now
    elif m.size >= 0 and (st.st_size != m.size or abs(st.st_mtime - m.mtime) > 1e-3):
        return "changed", now
    return None, now


Kept = tuple[DuplicateMember, Identity]  # a group's kept file and its identity when checked


def _candidates(
    groups: Sequence[DuplicateGroup], real_dest: str, report: MoveReport
) -> list[tuple[DuplicateMember, Identity, Kept]]:
    """Members that may move, each with its identity and its group's kept file; the others
    go to ``report.skipped``."""
    kept: dict[tuple[int, int], str] = {}
    ready: list[tuple[DuplicateGroup, Identity]] = []
    for g in groups:
        problem, ident = _check(g.members[0], follow=True)
        if problem is not None or ident is None:
            for m in g.others:
                report.skipped.append(MoveProblem(m.path, f"kept-file-{problem}", g.keep))
            continue
        kept[(ident.dev, ident.ino)] = g.keep
        ready.append((g, ident))
    seen: dict[tuple[int, int], str] = {}
    out = []
    for g, kept_ident in ready:
        for m in g.others:
            problem, ident = _check(m, follow=False)
            if problem is None and ident is not None:
                key = (ident.dev, ident.ino)
                if key in kept:  # one file under two paths: never a copy to move
                    report.skipped.append(MoveProblem(m.path, "same-file", kept[key]))
                    continue
                if key in seen:
                    report.skipped.append(MoveProblem(m.path, "same-file", seen[key]))
                    continue
                if _inside(os.path.realpath(m.path), real_dest):
                    problem = "inside-destination"
                else:
                    seen[key] = m.path
                    out.append((m, ident, (g.members[0], kept_ident)))
                    continue
            report.skipped.append(MoveProblem(m.path, problem or "changed", ""))
    return out


class _JournalFailed(Exception):
    """Writing the journal failed (disk full, I/O error): stop before moving anything else."""

    def __init__(self, error: OSError) -> None:
        super().__init__(str(error))
        self.error = error


def remove_empty_folders(folder: str) -> None:
    """Remove ``folder`` and the folders below it that are empty (nothing else)."""
    if not os.path.isdir(folder) or os.path.islink(folder):
        return
    for here, _dirs, _files in os.walk(folder, topdown=False):
        with contextlib.suppress(OSError):
            os.rmdir(here)  # fails, as it should, on a folder that holds anything


def move_groups(
    groups: Sequence[DuplicateGroup],
    destination: str | os.PathLike[str],
    *,
    roots: Sequence[str] = (),
    dry_run: bool = False,
    on_moved: Callable[[list[tuple[str, str]]], None] | None = None,
    index: IndexLink | None = None,
) -> MoveReport:
    """Move every non-kept member of ``groups`` into a new run folder below ``destination``.

    Args:
        groups: groups as listed (members carry the identity seen then).
        destination: the folder to move into (created when missing).
        roots: the indexed folders; a destination inside one (or holding one) is refused.
        dry_run: only report what would move; nothing is written.
        on_moved: called with ``[(from, to)]`` after each move.
        index: the index to keep in step (each moved file is forgotten as it moves, and
            its row is kept in the journal for undo).

    Returns:
        The report: moved pairs, skipped files with reasons, the manifest's path.

    Raises:
        DestinationError: the destination is inside an indexed folder, or holds one.
    """
    dest = check_destination(destination, roots)
    report = MoveReport(dry_run=dry_run)
    ready = _candidates(groups, os.path.realpath(dest), report)
    if dry_run:
        preview = Run(dest, "<run>")
        report.moved.extend((m.path, preview.target(m.path)) for m, _, _ in ready)
        return report
    plans: list[Planned] = []
    keeps: list[Kept] = []
    for m, ident, keep in ready:  # content hashes only of the files about to move
        try:
            found = probe(m.path)
        except OSError as e:
            report.skipped.append(MoveProblem(m.path, "unreadable", e.strerror or str(e)))
            continue
        if found is None or found[0] != ident:
            report.skipped.append(MoveProblem(m.path, "vanished" if found is None else "changed"))
            continue
        row = index.row(m.path) if index is not None else None
        plans.append(Planned(len(plans), m.path, "", ident, found[1], row))
        keeps.append(keep)
    if not plans:
        return report
    make_dirs(dest)
    run, journal = start_run(dest)
    for p in plans:
        p.target = run.target(p.source)
    journal.append(*(p.record() for p in plans))
    write_manifest(run, [(p.source, p.target) for p in plans], complete=False)
    step("manifest")
    report.manifest = run.manifest
    try:
        for p, keep in zip(plans, keeps, strict=True):
            if _move_one(p, keep, journal, report, index) and on_moved is not None:
                on_moved([(p.source, p.target)])
    except _JournalFailed as e:
        raise e.error from None
    finally:
        journal.close()
        with contextlib.suppress(OSError):
            write_manifest(run, report.moved, complete=True)
        remove_empty_folders(run.folder)  # only when nothing moved after all
    return report


def _kept_problem(keep: Kept) -> str | None:
    """The group's kept file must still be there, the file it was: another run (a second
    ``--move-to``, the web review) may have moved it meanwhile, keeping this copy instead."""
    member, ident = keep
    try:
        now = Identity.of(os.stat(member.path))
    except FileNotFoundError:
        return "kept-file-vanished"
    except OSError:
        return "kept-file-unreadable"
    return None if now == ident else "kept-file-changed"


def _move_one(
    p: Planned, keep: Kept, journal: Journal, report: MoveReport, index: IndexLink | None
) -> bool:
    """One move as a transaction: each phase journaled; True when the file moved."""
    kept_problem = _kept_problem(keep)
    if kept_problem is not None:  # checked just before this member moves: never both go
        report.skipped.append(MoveProblem(p.source, kept_problem, keep[0].path))
        journal.phase(p.n, "failed", kept_problem)
        return False

    def on_phase(name: str) -> None:
        step(name)
        try:
            journal.phase(p.n, name)
        except OSError as e:  # not this file's problem: the run cannot go on
            raise _JournalFailed(e) from e

    try:
        transfer(p.source, p.target, p.digest, p.identity, on_phase)
    except FileNotFoundError:
        problem = MoveProblem(p.source, "vanished", p.target)
    except ChangedError:
        problem = MoveProblem(p.source, "changed", p.target)
    except FileExistsError:
        problem = MoveProblem(p.source, "exists", p.target)
    except OSError as e:
        problem = MoveProblem(p.source, "error", f"{p.target}: {e.strerror or e}")
    else:
        report.moved.append((p.source, p.target))
        if index is not None:
            index.forget(p.source)
            step("index")
            journal.phase(p.n, "indexed")
        return True
    with contextlib.suppress(OSError):
        os.unlink(temp_name(p.target))  # a copy of ours left half-way, in our run folder
    report.skipped.append(problem)
    journal.phase(p.n, "failed", problem.reason)
    return False
