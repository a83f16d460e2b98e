"""Every error lookalike raises on purpose, in one tree.

Adapters (the CLI, later the web server) catch :class:`LookalikeError` and show
its message as one line; anything else is a bug and may show a traceback.

    LookalikeError
    ├── ConfigError                 a bad option value (unknown pooling, k < 1, ...)
    │   └── DestinationError        a folder to move duplicates into overlaps an indexed one
    ├── SourceUnavailableError      a folder to index is missing, unmounted or unreadable
    ├── NothingIndexedError         every candidate file failed: not an empty success
    ├── QueryError                  the query image cannot be read or decoded
    ├── MissingDependencyError      an optional package is needed (says what to install)
    ├── EngineError                 the cluster engine (Ray) cannot run or lost its workers
    ├── ModelError                  the embedding model cannot be built
    │   ├── ModelNotFoundError      no such timm model
    │   ├── WeightsUnavailableError offline and nothing cached (names the file and --weights)
    │   └── WeightsMismatchError    a weights file that does not fit the model
    └── StoreError                  the index database
        ├── SetupMismatchError      built with another model, weights, pooling or preprocessing
        ├── SchemaTooNewError       written by a newer lookalike: upgrade
        ├── IndexCorruptError       not a database, or fails its check (says how to rebuild)
        │   └── NotAnIndexError     some other file (a photo, another program's database)
        ├── StoreWriteError         a commit failed (disk full, I/O error); rolled back
        ├── IndexNotFoundError      a read-only command on a missing index (says how to make one)
        ├── NotIndexedError         a folder to forget holds nothing indexed (names what is)
        └── IndexBusyError          another process is updating this index (and we may not wait)
"""

from __future__ import annotations


class LookalikeError(Exception):
    """Base of every expected lookalike error. ``str(err)`` is one user-facing line."""


class ConfigError(LookalikeError):
    """An option has a value lookalike cannot use."""


class DestinationError(ConfigError):
    """A folder to move duplicates into is inside an indexed folder (its files would be
    indexed and moved again) or holds one. Adapters answer it as a usage error."""


class SourceUnavailableError(LookalikeError):
    """A folder to index does not exist, is not a directory, is unreadable or looks unmounted.

    Raised instead of treating the folder as empty, so that no record is ever deleted
    because a disk was not mounted.
    """


class NothingIndexedError(LookalikeError):
    """Every candidate image failed to decode or embed.

    Attributes:
        report: the :class:`~lookalike.IndexReport` of the run, with each failure and its reason.
    """

    def __init__(self, message: str, report: object = None) -> None:
        super().__init__(message)
        self.report = report


class QueryError(LookalikeError):
    """The query image cannot be read or decoded.

    Attributes:
        reason: a reason code, as in ``IndexReport.failed`` (e.g. ``"not-an-image"``).
    """

    def __init__(self, message: str, reason: str = "unreadable") -> None:
        super().__init__(message)
        self.reason = reason


class MissingDependencyError(LookalikeError):
    """An optional package is needed; the message names the pip extra to install."""


class EngineError(LookalikeError):
    """The engine that embeds elsewhere (``--engine ray``) cannot start or failed for good.

    Batches committed before the failure are kept; the next run resumes.
    """


class ModelError(LookalikeError):
    """The embedding model cannot be built or loaded."""


class ModelNotFoundError(ModelError):
    """The model name is not a timm model."""


class WeightsUnavailableError(ModelError):
    """Pretrained weights are not cached and cannot be downloaded (offline)."""


class WeightsMismatchError(ModelError):
    """A weights file does not fit the model architecture."""


class StoreError(LookalikeError):
    """The index database cannot be used."""


class SetupMismatchError(StoreError):
    """The index holds vectors from another model, weights, pooling or preprocessing.

    Vectors from different setups are never mixed in one index.
    """


class SchemaTooNewError(StoreError):
    """The index was written by a newer lookalike."""


class IndexCorruptError(StoreError):
    """The index file is not a usable SQLite database."""


class NotAnIndexError(IndexCorruptError):
    """The file is not a lookalike index at all: not a SQLite database (a photo given as
    ``--db``), or another program's SQLite database. Nothing was written to it, and the
    message never suggests overwriting it."""


class StoreWriteError(StoreError):
    """A write to the index failed and was rolled back (disk full, I/O error)."""


class IndexNotFoundError(StoreError):
    """There is no index at the path a read-only command was given; nothing was created."""


class NotIndexedError(StoreError):
    """A folder to forget holds no indexed image and is no indexed folder; nothing changed.

    Attributes:
        folders: the indexed folders (top-level ones first), for the message's "did you mean".
    """

    def __init__(self, message: str, folders: list[str] | None = None) -> None:
        super().__init__(message)
        self.folders = folders or []


class IndexBusyError(StoreError):
    """Another process is updating this index and the caller asked not to wait for it."""
