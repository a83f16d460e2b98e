"""The store seam: where vectors and file records live (the source of truth).

:class:`SQLiteStore` is the only implementation today; a server backend (PostgreSQL with
pgvector, Milvus) implements the same methods.
"""

from .base import FileRow, Store, WriteBatch, WriteResult, folder_prefix
from .sqlite import SCHEMA_VERSION, SQLiteStore

__all__ = [
    "SCHEMA_VERSION",
    "FileRow",
    "SQLiteStore",
    "Store",
    "WriteBatch",
    "WriteResult",
    "folder_prefix",
]
