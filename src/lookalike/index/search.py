"""The vector side of an :class:`~lookalike.Index`: commits that keep the derived vector
cache in step with the store, and nearest-neighbour search over stored vectors.

:class:`Vectors` needs the store, the cache folder beside it (``None`` for a database
server, which searches its own vectors) and the approximate-index settings.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, QueryError
from ..paths import path_forms
from ..store import Store, WriteBatch, WriteResult
from ..types import Hit

_COUNT_FREE_K = 1000  # a k up to this is searched as asked (the search caps it itself)


class Vectors:
    """Commits and searches over one store's vectors.

    Args:
        store: the index's store.
        cache_dir: ``<db>.cache/`` for the local vector cache; ``None`` for a server store.
        ann: ``auto``, ``on`` or ``off`` (see :meth:`lookalike.Index.open`).
        ann_threshold: vector count from which ``auto`` builds the approximate index.
    """

    def __init__(
        self, store: Store, cache_dir: Path | None, *, ann: str, ann_threshold: int
    ) -> None:
        self._store = store
        self.cache_dir = cache_dir
        self.ann = ann
        self.ann_threshold = ann_threshold
        self._search: Any = None

    def vector_search(self) -> Any:
        """The :class:`~lookalike.vectors.VectorSearch` over the cache, opened on first use."""
        if self._search is None:
            from ..vectors import VectorSearch

            self._search = VectorSearch(
                self.cache_dir,  # type: ignore[arg-type]
                self._store,
                ann=self.ann,
                ann_threshold=self.ann_threshold,
            )
        return self._search

    def close(self) -> None:
        if self._search is not None:
            self._search.close()
            self._search = None

    def on_commit(self, result: WriteResult) -> None:
        """Keep the derived cache in step with a store commit."""
        if result.generation == result.previous_generation:
            return
        if self.cache_dir is not None:
            self.vector_search().notify(
                result.added_ids,
                result.added_vectors,
                result.removed_ids,
                result.generation,
                result.previous_generation,
                generation_id=getattr(result, "generation_id", None),
                previous_generation_id=getattr(result, "previous_generation_id", None),
            )

    def committing(self) -> contextlib.AbstractContextManager[object]:
        """Held around each store commit and its cache update: readers meeting the commit
        in flight keep their last consistent snapshot instead of rebuilding the cache."""
        if self.cache_dir is None:
            return contextlib.nullcontext()
        return self.vector_search().committing()  # type: ignore[no-any-return]

    def commit(self, batch: WriteBatch) -> None:
        """Write ``batch`` to the store and the cache, as one commit."""
        with self.committing():
            self.on_commit(self._store.write(batch))

    def build_ann_if_due(self) -> None:
        """After an update: build the approximate index once the store is large enough."""
        if self.ann != "off" and self._store.count() >= self.ann_threshold:
            if getattr(self._store, "searches_vectors", False):
                self._store.build_ann()  # type: ignore[attr-defined]
            else:
                self.vector_search().build_ann()

    def search(
        self,
        vector: np.ndarray,
        k: int,
        *,
        folder: str | os.PathLike[str] | None,
        exact: bool,
        exclude: Sequence[int],
    ) -> list[Hit]:
        """See :meth:`lookalike.Index.search_vector`."""
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise ConfigError(f"k must be an integer >= 1, got {k!r}")
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = self._store.dim()
        if dim is None or self._store.is_empty():
            return []
        # Never more results than images: a huge k (10**9, or beyond 64 bits) would
        # otherwise allocate and pad k rows, or overflow SQL's LIMIT (#20). ``count`` scans
        # the table, so only a k that could exceed it pays for it.
        k = int(k)
        if k > _COUNT_FREE_K:
            k = min(k, self._store.count())
        if q.shape[0] != dim:
            raise ConfigError(f"query vector has dimension {q.shape[0]}; the index holds {dim}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0:
            raise ConfigError("query vector is zero or not finite")
        q = q / norm
        if getattr(self._store, "searches_vectors", False):  # searched in the server
            found = self._store.search(  # type: ignore[attr-defined]
                q,
                k,
                exact=exact,
                folders=path_forms(folder) if folder is not None else [],
                exclude=[int(i) for i in exclude],
                ann=self.ann,
                ann_threshold=self.ann_threshold,
            )
            scores, ids = found[0][None], found[1][None]
        else:
            allow = None
            if folder is not None:
                allow = self._store.ids_under(path_forms(folder))
                if allow.size == 0:
                    return []
            excl = np.asarray(list(exclude), dtype=np.int64) if exclude else None
            scores, ids = self.vector_search().search(
                q[None], k, exact=exact, allow=allow, exclude=excl
            )
        paths = self._store.paths_for([int(i) for i in ids[0] if i >= 0])
        hits: list[Hit] = []
        for score, image_id in zip(scores[0], ids[0], strict=True):
            path = paths.get(int(image_id))
            if path is None:  # padding, or deleted since the cache was read
                continue
            hits.append(Hit(len(hits) + 1, float(score), os.fsdecode(path), int(image_id)))
        return hits


def query_vector(
    store: Store,
    query: str | os.PathLike[str],
    embed: Callable[[str], np.ndarray],
) -> tuple[np.ndarray, list[int]]:
    """The query file's vector (stored when up to date, else ``embed(path)``) and the ids
    to exclude: every stored row the query file is, through links or not (#8)."""
    forms = path_forms(query)
    try:
        st = os.stat(forms[0])
    except OSError as e:
        raise QueryError(f"cannot read query {os.fsdecode(forms[-1])}: {e.strerror}") from None
    vec, exclude = None, []
    for form in forms:
        found = store.lookup(form)
        if found is not None:
            row, stored = found
            exclude.append(row.id)
            if vec is None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns):
                vec = stored
    if vec is None:
        vec = embed(os.fsdecode(forms[0]))
    return vec, exclude
