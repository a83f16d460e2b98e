"""Moving copies out of the way: never deleting, never overwriting, always undoable.

``move_groups`` moves every non-kept member of each group below a destination folder,
keeping its path relative to the indexed folder it came from (``DEST/<folder name>/<rel>``).
Before the first move an undo manifest (JSON: every planned ``from`` -> ``to``) is
written in the destination; it is rewritten with what actually moved at the end.
A file that vanished or changed since the groups were listed is reported and skipped, a
group whose kept file is gone is left alone, and a target that exists is never replaced.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .types import DuplicateGroup, DuplicateMember, MoveProblem, MoveReport

MANIFEST_PREFIX = "lookalike-undo-"
_BATCH = 500


def target_for(path: str, destination: str, roots: Sequence[str]) -> str:
    """Where ``path`` goes below ``destination``: relative to its deepest root."""
    best = ""
    for root in roots:
        root = root.rstrip(os.sep) or os.sep
        if (path.startswith(root + os.sep) or root == os.sep) and len(root) > len(best):
            best = root
    if best:
        name = os.path.basename(best) or "root"
        return os.path.join(destination, name, os.path.relpath(path, best))
    _drive, rest = os.path.splitdrive(path)
    return os.path.join(destination, rest.lstrip(os.sep))


def _unchanged(m: DuplicateMember) -> str | None:
    """None when the file is as listed; else ``"vanished"`` or ``"changed"``."""
    try:
        st = os.stat(m.path)
    except FileNotFoundError:
        return "vanished"
    except OSError:
        return "unreadable"
    if m.size >= 0 and (st.st_size != m.size or abs(st.st_mtime - m.mtime) > 1e-3):
        return "changed"
    return None


def _move_file(src: str, dst: str) -> None:
    """Move without ever replacing ``dst``: a hard link (or an exclusive copy) first, then
    the source name is removed. Raises FileExistsError when ``dst`` exists."""
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError as e:
        if e.errno not in (errno.EXDEV, errno.EPERM, errno.ENOTSUP, errno.EMLINK, errno.EACCES):
            raise
        with open(src, "rb") as fin, open(dst, "xb") as fout:  # "x": never overwrite
            shutil.copyfileobj(fin, fout, 1 << 20)
            fout.flush()
            os.fsync(fout.fileno())
        shutil.copystat(src, dst)
    os.unlink(src)


def _write_json(path: Path, data: dict[str, Any], *, exclusive: bool) -> None:
    if exclusive:
        with open(path, "x", encoding="utf-8") as f:
            json.dump(data, f, indent=1, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        return
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=1, ensure_ascii=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _new_manifest(destination: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = Path(destination) / f"{MANIFEST_PREFIX}{stamp}{'-' + str(n) if n else ''}.json"
        if not path.exists():
            return path
    raise FileExistsError(f"no free manifest name in {destination}")


def move_groups(
    groups: Sequence[DuplicateGroup],
    destination: str | os.PathLike[str],
    *,
    roots: Sequence[str] = (),
    dry_run: bool = False,
    on_moved: Callable[[list[tuple[str, str]]], None] | None = None,
) -> MoveReport:
    """Move every non-kept member of ``groups`` below ``destination``.

    Args:
        groups: groups as listed (members carry the size and mtime seen then).
        destination: the folder to move into (created when missing).
        roots: the indexed folders (relative paths are taken from the deepest one).
        dry_run: only report what would move; nothing is written.
        on_moved: called with ``[(from, to)]`` after each batch of moves (index update).

    Returns:
        The report: moved pairs, skipped files with reasons, the manifest's path.
    """
    dest = os.path.abspath(os.path.expanduser(os.fspath(destination)))
    report = MoveReport(dry_run=dry_run)
    plan: list[tuple[str, str, DuplicateMember]] = []
    for g in groups:
        kept = g.members[0]
        problem = _unchanged(kept)
        if problem is not None:
            for m in g.others:
                report.skipped.append(MoveProblem(m.path, "kept-file-" + problem, kept.path))
            continue
        for m in g.others:
            plan.append((m.path, target_for(m.path, dest, roots), m))
    if dry_run:
        for src, dst, m in plan:
            problem = _unchanged(m) or ("exists" if os.path.lexists(dst) else None)
            if problem:
                report.skipped.append(MoveProblem(src, problem, dst))
            else:
                report.moved.append((src, dst))
        return report
    if not plan:
        return report
    os.makedirs(dest, exist_ok=True)
    manifest = _new_manifest(dest)
    header = {"version": 1, "created": time.time(), "destination": dest}
    _write_json(
        manifest,
        {**header, "complete": False, "moves": [{"from": s, "to": d} for s, d, _ in plan]},
        exclusive=True,
    )
    report.manifest = str(manifest)
    pending: list[tuple[str, str]] = []
    try:
        for src, dst, m in plan:
            problem = _unchanged(m)
            if problem:
                report.skipped.append(MoveProblem(src, problem, dst))
                continue
            try:
                _move_file(src, dst)
            except FileExistsError:
                report.skipped.append(MoveProblem(src, "exists", dst))
                continue
            except OSError as e:
                report.skipped.append(MoveProblem(src, "error", f"{dst}: {e.strerror or e}"))
                continue
            report.moved.append((src, dst))
            pending.append((src, dst))
            if on_moved is not None and len(pending) >= _BATCH:
                on_moved(pending)
                pending = []
    finally:
        if on_moved is not None and pending:
            on_moved(pending)
        moves = [{"from": s, "to": d} for s, d in report.moved]
        with contextlib.suppress(OSError):
            _write_json(manifest, {**header, "complete": True, "moves": moves}, exclusive=False)
    return report


def undo_moves(
    manifest: str | os.PathLike[str],
    *,
    dry_run: bool = False,
    on_moved: Callable[[list[tuple[str, str]]], None] | None = None,
) -> MoveReport:
    """Move the files a manifest lists back where they came from (never overwriting)."""
    with open(manifest, encoding="utf-8") as f:
        data = json.load(f)
    report = MoveReport(dry_run=dry_run)
    done: list[tuple[str, str]] = []
    for entry in data.get("moves", []):
        src, dst = entry["to"], entry["from"]
        if not os.path.lexists(src):
            report.skipped.append(MoveProblem(src, "vanished", dst))
            continue
        if os.path.lexists(dst):
            report.skipped.append(MoveProblem(src, "exists", dst))
            continue
        if not dry_run:
            try:
                _move_file(src, dst)
            except OSError as e:
                report.skipped.append(MoveProblem(src, "error", f"{dst}: {e.strerror or e}"))
                continue
            done.append((src, dst))
        report.moved.append((src, dst))
    if on_moved is not None and done:
        on_moved(done)
    return report
