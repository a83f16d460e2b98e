"""Undoing a move run from its journal, after a clean end or after any crash.

Each planned move is settled by what the file system holds, checked by content hash, not
by what the journal hoped for: the file found at its target and absent from its source
has moved (it goes back, never over an existing file); the file found at its source has
not, or is already back (a copy or second name left at the target by a crash is removed);
anything else is reported and left alone. The index follows: a file back at its source
gets its row again (the vector kept in the journal), whether the crash came before or
after the index forgot it. Undo can run any number of times; empty folders of the run
are removed at the end.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import Any

from .journal import Journal, Planned, Run, journal_for, read_journal
from .move import IndexLink, remove_empty_folders
from .transfer import ChangedError, fsync_dir, probe, step, temp_name, transfer
from .types import MoveProblem, MoveReport

_MOVED = ("unlinked", "undone")


def _probe(path: str) -> tuple[Any, str] | str | None:
    """The regular file at ``path`` (identity, hash), ``None`` if nothing is there, or
    ``"other"`` (a link, FIFO, folder, or an unreadable file)."""
    try:
        found = probe(path)
    except OSError:
        return "other"
    if found is None and os.path.lexists(path):
        return "other"
    return found


def _remove_part(path: str) -> None:
    """A temporary copy of ours (``temp_name``) left by a crash, once it is not needed."""
    part = temp_name(path)
    if os.path.lexists(part):
        with contextlib.suppress(OSError):
            os.unlink(part)
            fsync_dir(os.path.dirname(part))


def _run_folder(run: Run) -> str | None:
    """The real path of the run's folder, or ``None`` when the journal names no folder of
    its own beside it (a name with a separator or ``..``, edited by hand) or the folder is
    a symbolic link (it could lead anywhere, the sources' own folders included)."""
    name = run.name
    if not name or name in (os.curdir, os.pardir) or os.sep in name:
        return None
    if os.altsep and os.altsep in name:
        return None
    if os.path.islink(run.folder):
        return None
    return os.path.realpath(run.folder)


def _outside_run(p: Planned, run: Run, real_run: str | None) -> bool:
    """The target is not where this run put the file: only ``DEST/<run>/<source path>``,
    reached without a link out of the run folder, is ever moved back (a journal edited by
    hand could name any file of the user's, or the source itself)."""
    if real_run is None or p.target != run.target(p.source):
        return True
    parent = os.path.realpath(os.path.dirname(p.target))
    return not parent.startswith(real_run.rstrip(os.sep) + os.sep)


def _same_entry(a: str, b: str) -> bool:
    """``a`` and ``b`` are one directory entry, not two names of one file (removing the
    target would remove the source)."""
    try:
        sa, sb = os.lstat(a), os.lstat(b)
        pa, pb = os.stat(os.path.dirname(a)), os.stat(os.path.dirname(b))
    except OSError:
        return True  # cannot tell: never remove
    if (sa.st_dev, sa.st_ino) != (sb.st_dev, sb.st_ino):
        return False
    same_parent = (pa.st_dev, pa.st_ino) == (pb.st_dev, pb.st_ino)
    return sa.st_nlink < 2 or (same_parent and os.path.basename(a) == os.path.basename(b))


def _settle(
    p: Planned, journal: Journal | None, index: IndexLink | None, report: MoveReport
) -> None:
    src, dst = _probe(p.source), _probe(p.target)
    at_src = isinstance(src, tuple) and src[1] == p.digest
    at_dst = isinstance(dst, tuple) and dst[1] == p.digest
    ident = dst[0] if isinstance(dst, tuple) else p.identity
    dry = journal is None
    back = False
    if at_dst and at_src and _same_entry(p.source, p.target):
        report.skipped.append(MoveProblem(p.target, "outside-run", p.source))
        return
    if at_dst and at_src:
        # A crash between making the target and removing the source: the target is a
        # second name or a verified copy of a file that never left. Drop it.
        if not dry:
            os.unlink(p.target)
            fsync_dir(os.path.dirname(p.target))
            step("undo-drop")
        report.skipped.append(MoveProblem(p.source, "never-moved", p.target))
        back = True
    elif at_dst and src is None:
        if not dry:
            _remove_part(p.source)  # a copy back cut short by a crash: start it again
            try:
                transfer(p.target, p.source, p.digest, ident, lambda name: step("undo-" + name))
            except FileExistsError:
                report.skipped.append(MoveProblem(p.target, "exists", p.source))
                return
            except (ChangedError, FileNotFoundError):
                report.skipped.append(MoveProblem(p.target, "changed", p.source))
                return
            except OSError as e:
                detail = f"{p.source}: {e.strerror or e}"
                report.skipped.append(MoveProblem(p.target, "error", detail))
                return
            if journal is not None:
                journal.phase(p.n, "undone")
        report.moved.append((p.target, p.source))
        back = True
    elif at_src:
        moved = any(ph in _MOVED for ph in p.phases)
        report.skipped.append(
            MoveProblem(p.source, "already-back" if moved else "never-moved", p.target)
        )
        back = True
    elif at_dst:  # something else now at the source: never overwritten
        report.skipped.append(MoveProblem(p.target, "exists", p.source))
    elif src is None and dst is None:
        report.skipped.append(MoveProblem(p.target, "vanished", p.source))
    else:
        report.skipped.append(MoveProblem(p.target, "changed", p.source))
    if back and not dry:
        _remove_part(p.target)
        _remove_part(p.source)
        if index is not None and p.row is not None:
            index.restore(p.source, p.row)
            step("undo-index")


def undo_moves(
    manifest: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    on_moved: Callable[[list[tuple[str, str]]], None] | None = None,
    index: IndexLink | None = None,
) -> MoveReport:
    """Move the files of a move run back where they came from (never overwriting).

    Args:
        manifest: the run's manifest (``lookalike-undo-*.json``) or its journal.
        dry_run: only report what would move back.
        on_moved: called with ``[(from, to)]`` after each file moved back.
        index: the index to keep in step: files back in place get their rows again.

    Returns:
        ``moved``: files moved back; ``skipped``: the others, with a reason:
        ``already-back`` (an earlier undo), ``never-moved`` (the run stopped before this
        file), ``exists`` (another file is at the source now), ``changed`` (the file at
        the target is not the one moved), ``vanished`` (in neither place), ``error``,
        ``outside-run`` (the journal names a target outside the run's own folder, e.g.
        edited by hand: never touched).
    """
    path = os.fspath(manifest)
    journal_path = journal_for(path)
    if journal_path is None:
        return _undo_version1(path, dry_run, on_moved)
    run, plans = read_journal(journal_path)
    report = MoveReport(dry_run=dry_run)
    real_run = _run_folder(run)
    journal = None if dry_run else Journal(journal_path)
    try:
        for p in plans:
            before = len(report.moved)
            if _outside_run(p, run, real_run):
                report.skipped.append(MoveProblem(p.target, "outside-run", p.source))
                continue
            try:
                _settle(p, journal, index, report)
            except OSError as e:  # this file's problem (permissions, I/O): say so, go on
                report.skipped.append(MoveProblem(p.target, "error", str(e.strerror or e)))
            if on_moved is not None and len(report.moved) > before:
                on_moved(report.moved[before:])
    finally:
        if journal is not None:
            journal.close()
            if real_run is not None:
                remove_empty_folders(run.folder)
    return report


def _undo_version1(
    manifest: str, dry_run: bool, on_moved: Callable[[list[tuple[str, str]]], None] | None
) -> MoveReport:
    """A manifest written before journals (``{"moves": [{"from", "to"}]}``): moves back what
    is at a target while its source is free; never overwrites."""
    with open(manifest, encoding="utf-8") as f:
        data = json.load(f)
    report = MoveReport(dry_run=dry_run)
    # Those runs moved files into DEST/<root name>/..., beside the manifest: nothing
    # outside that folder is ever moved (a manifest edited by hand could name any file).
    home = os.path.realpath(os.path.dirname(os.path.abspath(manifest))).rstrip(os.sep) + os.sep
    for entry in data.get("moves", []):
        src, dst = entry["to"], entry["from"]
        if not os.path.realpath(os.path.dirname(os.path.abspath(src))).startswith(home) or (
            os.path.islink(src)
        ):
            report.skipped.append(MoveProblem(src, "outside-run", dst))
            continue
        found = _probe(src)
        if os.path.lexists(dst):
            reason = "already-back" if found is None else "exists"
            report.skipped.append(MoveProblem(src, reason, dst))
            continue
        if not isinstance(found, tuple):
            report.skipped.append(MoveProblem(src, "vanished", dst))
            continue
        if not dry_run:
            try:
                transfer(src, dst, found[1], found[0], lambda name: None)
            except OSError as e:
                report.skipped.append(MoveProblem(src, "error", f"{dst}: {e.strerror or e}"))
                continue
            if on_moved is not None:
                on_moved([(src, dst)])
        report.moved.append((src, dst))
    return report
