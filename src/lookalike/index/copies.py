"""Near-duplicates of an :class:`~lookalike.Index`: the index's side of
:mod:`lookalike.duplicates`, imported only when a duplicate method runs (a search must not
pay for it).

:class:`Copies` needs the store, the vector side and decode limits, and the embedder
getter: what :class:`~lookalike.duplicates.api.IndexParts` carries. The rules (which file
stays, how the threshold is calibrated, how moves are undone) are in
:mod:`lookalike.duplicates` and the README, "Near-duplicates".
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from ..decode import DecodeLimits
from ..store import Store
from .search import Vectors

if TYPE_CHECKING:
    from ..duplicates.api import IndexParts, ThresholdChoice
    from ..duplicates.types import Calibration, DuplicateGroup, DuplicateReport, MoveReport

Folders = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


class Copies:
    """The duplicate operations over one index (see :meth:`lookalike.Index.duplicates`)."""

    def __init__(
        self,
        store: Store,
        vectors: Vectors,
        limits: DecodeLimits,
        get_embedder: Callable[[], Any],
    ) -> None:
        self._store = store
        self._vectors = vectors
        self._limits = limits
        self._get_embedder = get_embedder

    def parts(self) -> IndexParts:
        """What :mod:`lookalike.duplicates` needs of the index, and nothing else."""
        from ..duplicates.api import IndexParts

        v = self._vectors
        return IndexParts(
            self._store, v.cache_dir, self._limits, self._get_embedder, v.vector_search, v.commit
        )

    def report(
        self,
        threshold: float | None,
        folders: Folders,
        keep: str | Sequence[str],
        calibrate: bool | str,
        verify: bool = True,
    ) -> DuplicateReport:
        """See :meth:`lookalike.Index.duplicate_report`. Every member of a group is at least
        ``threshold`` similar to the kept file (groups never chain); a file is in at most one
        group; byte-identical files are always grouped. ``threshold`` defaults to the
        recorded calibration, else 0.90; ``calibrate="auto"`` calibrates once (loading the
        model) when there is neither; ``keep`` criteria: ``resolution``, ``size``,
        ``smallest``, ``oldest``, ``newest``, ``shortest-path``, ``longest-path``, ``path``.
        ``verify`` gives every candidate pair a second look at the pixels before it joins a
        group (:mod:`lookalike.duplicates.verify`): look-alikes (letters of one layout,
        tiles of one texture) are set apart, copies kept and marked ``verified``; ``False``
        groups on the cosine alone with the calibrated cosine-only threshold."""
        from ..duplicates.api import duplicate_report

        return duplicate_report(self.parts(), threshold, folders, keep, calibrate, verify=verify)

    def threshold(
        self, threshold: float | None, calibrate: bool | str, verify: bool = True
    ) -> ThresholdChoice:
        """See :meth:`lookalike.Index.duplicate_threshold`: ``threshold`` when given; else the
        calibration recorded for the index's model; else (``calibrate`` ``"auto"``/true, a
        SQLite index with images) one made now and recorded, so the CLI, the web review and
        the API all use the same one; else 0.90."""
        from ..duplicates.api import duplicate_threshold

        return duplicate_threshold(self.parts(), threshold, calibrate, verify)

    def calibrate(self, target_precision: float, sample: int, seed: int) -> Calibration:
        """See :meth:`lookalike.Index.calibrate_duplicates`. Loads the model; ``sample``
        indexed images each get edited copies made in memory (crop, resize, JPEG, colour,
        flip, rotation, text, two of these in a row); the threshold is the lowest reaching
        ``target_precision`` against the samples' nearest distinct images."""
        from ..duplicates.api import calibrate_index

        return calibrate_index(self.parts(), target_precision, sample, seed)

    def calibration(self) -> Calibration | None:
        """See :meth:`lookalike.Index.duplicate_calibration`."""
        from ..duplicates.api import recorded_calibration

        return recorded_calibration(self.parts())

    def move(
        self,
        groups: Sequence[DuplicateGroup],
        destination: str | os.PathLike[str],
        dry_run: bool,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:
        """See :meth:`lookalike.Index.move_duplicates`. Each file goes to
        ``destination/<run>/<its whole path>`` (targets never collide) and nothing is ever
        replaced; the run's journal records every planned move before the first one and
        each step as it completes; each member is checked just before it moves (a regular
        file, the one listed, not the kept file under another name); the index forgets
        each file as it moves. ``lock`` is held around each index access only."""
        from ..duplicates.api import move_duplicates

        return move_duplicates(self.parts(), groups, destination, dry_run, lock)

    def undo(
        self,
        manifest: str | os.PathLike[str],
        dry_run: bool,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:
        """See :meth:`lookalike.Index.undo_duplicate_moves`: each file back to its exact
        source after any crash, never over an existing file, its index row given back."""
        from ..duplicates.api import undo_move

        return undo_move(self.parts(), manifest, dry_run, lock)

    def record_moves(self, moved: Sequence[tuple[str, str]]) -> None:
        """See :meth:`lookalike.Index.apply_moves`."""
        from ..duplicates.api import record_moves

        record_moves(self.parts(), list(moved))
