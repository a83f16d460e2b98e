"""Moving reviewed duplicates into the trash folder beside the index (``--allow-moves``).

The browser names the files to move by id; the server recomputes the duplicate groups at
the same threshold and moves only files that are non-kept members of a group, into
``<db>.trash/`` and nowhere else, through the duplicate search's own mover and its checks:
never deleting, never overwriting, each move journaled before it happens, each member
checked again just before it moves (a regular file, the one listed, not the kept file
under another name). The library lock is held for the recompute and around each index
access, never while files are read or copied: the other routes keep answering.

A trash inside an indexed folder (the index kept among the photos) is refused (400), as
``--move-to`` refuses such a folder: files moved there would be indexed and moved again.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .service import Library, shown


class Mover:
    """Moves non-kept duplicates of ``lib``'s index into ``trash``.

    Args:
        lib: the library (its lock is held around each index access).
        trash: the only folder files are ever moved into.
    """

    def __init__(self, lib: Library, trash: Path) -> None:
        self.lib = lib
        self.trash = trash
        self._one_at_a_time = threading.Lock()  # two reviews never move at once

    def move(self, body: Any) -> dict[str, Any]:
        """``{"ids": [...], "threshold": t, "confirm": true, "dry_run": false}`` -> the report.

        Raises:
            ConfigError: no confirmation, bad ids, or no duplicate search available.
        """
        if not isinstance(body, dict) or body.get("confirm") is not True:
            raise ConfigError('moving files needs "confirm": true')
        raw_ids = body.get("ids")
        if not isinstance(raw_ids, list) or not all(
            isinstance(i, int) and not isinstance(i, bool) for i in raw_ids
        ):
            raise ConfigError('"ids" must be a list of image ids')
        threshold = body.get("threshold")
        if threshold is not None and not isinstance(threshold, int | float):
            raise ConfigError('"threshold" must be a number')
        dry_run = body.get("dry_run") is True
        if not hasattr(self.lib.index, "move_duplicates"):
            raise ConfigError("this lookalike cannot move duplicates")
        with self._one_at_a_time:
            return self._move(set(raw_ids), threshold, dry_run)

    def _move(self, wanted: set[int], threshold: float | None, dry_run: bool) -> dict[str, Any]:
        index = self.lib.index
        found = self.lib.locked(self.lib.find_duplicates, threshold)
        groups = list(getattr(found, "groups", found))
        paths = [m.path for g in groups for m in g.members]
        ids = self.lib.locked(index.image_ids, paths)
        chosen = []
        for g in groups:
            picked = [m for m in g.others if ids.get(m.path) in wanted]
            if picked:
                chosen.append(dataclasses.replace(g, members=[g.members[0], *picked]))
        if not chosen:
            raise ConfigError("none of these ids is a duplicate to move at this threshold")
        # The index's own mover: journal first, never overwriting, the index kept in step.
        report = index.move_duplicates(chosen, self.trash, dry_run=dry_run, lock=self.lib.lock)
        return {
            "trash": shown(str(self.trash)),
            "dry_run": dry_run,
            "moved": [{"from": shown(a), "to": shown(b)} for a, b in report.moved],
            "skipped": [
                {"path": shown(p.path), "reason": p.reason, "detail": shown(p.detail)}
                for p in report.skipped
            ],
            "manifest": shown(report.manifest) if report.manifest else None,
        }
