"""lookalike: find the images most similar to a given one.

Example:
    >>> from lookalike import Index
    >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
    ...     idx.update("~/Pictures")
    ...     hits = idx.search("query.jpg", k=10)
"""

from .errors import (
    ConfigError,
    DestinationError,
    EngineError,
    IndexBusyError,
    IndexCorruptError,
    IndexNotFoundError,
    LookalikeError,
    MissingDependencyError,
    ModelError,
    ModelNotFoundError,
    NotAnIndexError,
    NothingIndexedError,
    NotIndexedError,
    QueryError,
    SchemaTooNewError,
    SetupMismatchError,
    SourceUnavailableError,
    StoreError,
    StoreWriteError,
    WeightsMismatchError,
    WeightsUnavailableError,
)
from .setup import DEFAULT_MODEL, EmbedderOptions, Preprocess, Setup
from .types import FailedFile, Hit, IndexReport

_LAZY = {
    "Index": "index",
    "default_db_path": "index",
    "Progress": "pipeline",
    "DuplicateGroup": "duplicates.types",
    "DuplicateMember": "duplicates.types",
}


def __getattr__(name: str) -> object:
    # The engine pulls in Pillow and the pipeline; keep `import lookalike.errors` light.
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "DEFAULT_MODEL",
    "ConfigError",
    "DestinationError",
    "DuplicateGroup",
    "DuplicateMember",
    "EmbedderOptions",
    "EngineError",
    "FailedFile",
    "Hit",
    "Index",
    "IndexBusyError",
    "IndexCorruptError",
    "IndexNotFoundError",
    "IndexReport",
    "LookalikeError",
    "MissingDependencyError",
    "ModelError",
    "ModelNotFoundError",
    "NotAnIndexError",
    "NotIndexedError",
    "NothingIndexedError",
    "Preprocess",
    "Progress",
    "QueryError",
    "SchemaTooNewError",
    "Setup",
    "SetupMismatchError",
    "SourceUnavailableError",
    "StoreError",
    "StoreWriteError",
    "WeightsMismatchError",
    "WeightsUnavailableError",
    "__version__",
    "default_db_path",
]
