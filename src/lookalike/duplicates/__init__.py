"""Near-duplicate groups: every set of copies in a collection, at a million images.

* :func:`find_duplicates` - similar pairs from the vector cache without an N x N step
  (:mod:`~lookalike.duplicates.candidates`), grouped so that groups never chain
  (:mod:`~lookalike.duplicates.grouping`), the kept file chosen by a readable rule
  (:mod:`~lookalike.duplicates.keep`).
* :mod:`~lookalike.duplicates.calibrate` - the threshold, chosen on edited copies of
  the index's own images.
* :func:`move_groups` / :func:`undo_moves` - move copies away as journaled transactions
  (:mod:`~lookalike.duplicates.journal`), and back after anything, a crash included.
* :mod:`~lookalike.duplicates.report` - CSV, HTML review page and text views.

Example:
    >>> from lookalike import Index
    >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
    ...     for group in idx.duplicates():
    ...         print(group.keep, [m.path for m in group.others])
"""

from .api import move_duplicates
from .calibrate import DEFAULT_THRESHOLD, choose_threshold
from .edits import EDITS
from .find import find_duplicates
from .keep import DEFAULT_KEEP, KEEP_OPTIONS, parse_keep
from .move import move_groups
from .types import (
    Calibration,
    DuplicateGroup,
    DuplicateMember,
    DuplicateReport,
    MoveProblem,
    MoveReport,
)
from .undo import undo_moves

__all__ = [
    "DEFAULT_KEEP",
    "DEFAULT_THRESHOLD",
    "EDITS",
    "KEEP_OPTIONS",
    "Calibration",
    "DuplicateGroup",
    "DuplicateMember",
    "DuplicateReport",
    "MoveProblem",
    "MoveReport",
    "choose_threshold",
    "find_duplicates",
    "move_duplicates",
    "move_groups",
    "parse_keep",
    "undo_moves",
]
