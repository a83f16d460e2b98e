"""Images by id, for adapters that must never take a path from a user (the web UI).

Each function needs the store; :func:`similar_to_id` also the vector search.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..errors import ConfigError, QueryError
from ..paths import resolved
from ..store import Store
from ..types import Hit
from .search import Vectors


def images(store: Store, offset: int, limit: int) -> tuple[int, list[tuple[int, str]]]:
    """See :meth:`lookalike.Index.images`."""
    if offset < 0 or limit < 0:
        raise ConfigError("offset and limit must not be negative")
    rows = store.page(offset, limit)
    return store.count(), [(i, os.fsdecode(p)) for i, p in rows]


def image_path(store: Store, image_id: int) -> str | None:
    """See :meth:`lookalike.Index.image_path`."""
    if not 0 <= int(image_id) < 2**63:
        return None
    path = store.paths_for([int(image_id)]).get(int(image_id))
    return os.fsdecode(path) if path is not None else None


def image_ids(store: Store, paths: Sequence[str]) -> dict[str, int]:
    """See :meth:`lookalike.Index.image_ids`."""
    out: dict[str, int] = {}
    for p in paths:
        found = store.lookup(resolved(p))
        if found is not None:
            out[p] = found[0].id
    return out


def similar_to_id(
    store: Store,
    vectors: Vectors,
    image_id: int,
    k: int,
    folder: str | os.PathLike[str] | None,
    exact: bool,
) -> list[Hit]:
    """See :meth:`lookalike.Index.similar_to_id`; :class:`~lookalike.errors.QueryError`
    when no image has this id."""
    if not 0 <= int(image_id) < 2**63:  # no row has it; SQLite would raise OverflowError
        raise QueryError(f"no image with id {image_id} in the index", "unknown-id")
    vec = store.vectors_for([int(image_id)]).get(int(image_id))
    if vec is None:
        raise QueryError(f"no image with id {image_id} in the index", "unknown-id")
    return vectors.search(vec, k, folder=folder, exact=exact, exclude=[int(image_id)])
