"""Near-duplicate groups (#9): the :class:`~lookalike.Index` entry points. The work is
in :mod:`lookalike.duplicates`; these are thin."""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .duplicates.types import Calibration, DuplicateGroup, DuplicateReport, MoveReport


class DuplicatesMixin:
    """Part of :class:`~lookalike.Index`."""

    def duplicates(
        self,
        threshold: float | None = None,
        folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        keep: str | Sequence[str] = "resolution,size,oldest",
        *,
        calibrate: bool | str = "auto",
    ) -> list[DuplicateGroup]:
        """Every group of copies among the indexed images, largest groups first.

        Every member of a group is at least ``threshold`` similar to the kept file (groups
        never chain); a file is in at most one group; byte-identical files are always
        grouped. See :meth:`duplicate_report` for the arguments.

        Example:
            >>> for g in idx.duplicates(keep="resolution,oldest"):  # doctest: +SKIP
            ...     print(g.keep, [(m.path, round(m.score, 3)) for m in g.others])
        """
        return self.duplicate_report(threshold, folders, keep, calibrate=calibrate).groups

    def duplicate_report(
        self,
        threshold: float | None = None,
        folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
        keep: str | Sequence[str] = "resolution,size,oldest",
        *,
        calibrate: bool | str = "auto",
    ) -> DuplicateReport:
        """The duplicate groups with the threshold used, the image count and the time taken.

        Args:
            threshold: cosine from which two images are copies; default: the index's
                calibrated threshold (see :meth:`calibrate_duplicates`), else 0.90.
            folders: only images below these folders.
            keep: which file stays: criteria tried in order (``resolution``, ``size``,
                ``smallest``, ``oldest``, ``newest``, ``shortest-path``, ``longest-path``,
                ``path``), e.g. ``"resolution,size,oldest"``.
            calibrate: ``"auto"`` calibrates once (loading the model) when no threshold is
                given and the index has none for its model; ``False`` never does.

        Raises:
            ConfigError: a threshold outside (0, 1] or an unknown keep criterion.
        """
        from .duplicates.api import duplicate_report

        return duplicate_report(self, threshold, folders, keep, calibrate)

    def calibrate_duplicates(
        self, target_precision: float = 0.95, *, sample: int = 60, seed: int = 0
    ) -> Calibration:
        """Choose the duplicate threshold on edited copies of this index's images and
        record it in the index (for its model) as the default of :meth:`duplicates`.

        Loads the model. ``sample`` indexed images each get edited copies made in memory
        (crop, resize, JPEG, colour, flip, rotation, text, two of these in a row); the
        threshold is the lowest reaching ``target_precision`` against the samples' nearest
        distinct images (see :mod:`lookalike.duplicates.calibrate`).

        Example:
            >>> idx.calibrate_duplicates().sentence()  # doctest: +SKIP
            '0.62: 96% precision on edited copies of your images, recall 0.99, 0.96 two ...'
        """
        from .duplicates.api import calibrate_index

        return calibrate_index(self, target_precision, sample, seed)

    def duplicate_calibration(self) -> Calibration | None:
        """The calibration recorded for this index's model, or ``None``."""
        from .duplicates.api import recorded_calibration

        return recorded_calibration(self)

    def move_duplicates(
        self,
        groups: Sequence[DuplicateGroup],
        destination: str | os.PathLike[str],
        *,
        dry_run: bool = False,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:
        """Move every non-kept member of ``groups`` below ``destination``; delete nothing.

        Each file goes to ``destination/<run>/<its whole path>`` (targets never collide)
        and nothing is ever replaced. The run's journal (``lookalike-undo-*.journal``,
        read through the manifest ``lookalike-undo-*.json``) records every planned move
        before the first one and each step as it completes; every member is checked just
        before it moves (a regular file, the one listed, not the kept file under another
        name); the index forgets each file as it moves. ``dry_run`` changes nothing;
        ``lock`` is held around each index access (a server's lock).

        Raises:
            DestinationError: ``destination`` is inside an indexed folder or holds one.
        """
        from .duplicates.api import move_duplicates

        return move_duplicates(self, groups, destination, dry_run, lock)

    def undo_duplicate_moves(
        self,
        manifest: str | os.PathLike[str],
        *,
        dry_run: bool = False,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:
        """Move the files of a move run back to their exact sources, after any crash,
        never over an existing file; the index gets their rows back."""
        from .duplicates.api import undo_move

        return undo_move(self, manifest, dry_run, lock)

    def apply_moves(self, moved: Sequence[tuple[str, str]]) -> None:
        """Tell the index that files moved, as ``(from, to)`` paths: an image moved inside
        an indexed folder keeps its vector under the new path; one moved out of every
        indexed folder is forgotten. (:meth:`move_duplicates` does this itself.)"""
        from .duplicates.api import record_moves

        record_moves(self, list(moved))
