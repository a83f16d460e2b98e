"""The index: :class:`Index`, a facade over its capabilities (see :mod:`.facade`)."""

from .facade import Index
from .opening import default_db_path

__all__ = ["Index", "default_db_path"]
