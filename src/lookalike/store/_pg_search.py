"""Vector search inside PostgreSQL: HNSW with an exact re-rank, or an exact scan.

Why these choices (figures in BENCHMARKS.md, "PostgreSQL + pgvector"):

* HNSW over ``embedding::halfvec(dim)`` (cosine): 2048-d needs ``halfvec`` to be indexed.
  The index proposes ``max(100, 4 k)`` candidates; their fp32 vectors are re-ranked in SQL,
  so scores are exact and half precision only decides which candidates get re-ranked.
* ``hnsw.iterative_scan = relaxed_order`` (pgvector 0.8): HNSW filters *after* the graph
  walk, so a folder filter would otherwise see only ``ef_search`` rows and return fewer
  than ``k``. With iterative scans the walk continues until enough rows pass the filter
  (up to ``hnsw.max_scan_tuples``); if it still gives fewer than ``k``, the filtered rows
  are searched exactly (they are then few, found through the path-prefix index).
* Exact mode is a scan ordering by the fp32 inner product; it never touches the index,
  and reads every (filtered) row's 8 KiB vector from TOAST: ~50 us per row here, so it is
  the reference mode, not the everyday one, above a few thousand rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from ..errors import ConfigError, StoreError
from . import _pg_sql as q

_BUILD_MEM_CAP = 8 << 30  # never ask the server for more than this for one build
_MAX_EF = 1000  # pgvector's limit for hnsw.ef_search
MIN_CANDIDATES = 100  # HNSW candidates re-ranked in fp32 per query, at least (4 k above 25)


def build_hnsw(db: Any, dim: int) -> None:
    """Create the HNSW index inside the open transaction of ``db`` (if still missing).

    ``maintenance_work_mem`` is raised for this transaction to what the graph needs:
    a build that spills past it is several times slower.
    """
    db.execute("SELECT pg_advisory_xact_lock(%s)", (q.ADVISORY_LOCK,))
    rows = int(db.execute("SELECT count(*) FROM lookalike_images").fetchone()[0])
    need = int(rows * (2 * dim + 8 * 2 * q.HNSW_M + 64) * 1.3) + (64 << 20)
    current = int(
        db.execute(
            "SELECT setting::bigint * 1024 FROM pg_settings WHERE name = 'maintenance_work_mem'"
        ).fetchone()[0]
    )
    mem = max(current, min(need, _BUILD_MEM_CAP))
    db.execute("SELECT set_config('maintenance_work_mem', %s, true)", (f"{mem >> 10}kB",))
    db.execute(q.create_hnsw(dim))


def _at_least(store: Any, n: int) -> bool:
    """``count() >= n`` reading at most ``n`` rows of the primary key."""
    rows = store._query(
        "SELECT count(*) FROM (SELECT 1 FROM lookalike_images LIMIT %s) s", (int(n),)
    )
    return int(rows[0][0]) >= n


def _ann_rows(store: Any, sql: str, params: list, ef: int) -> list:
    """Run the HNSW query with its settings local to one transaction."""
    db = store._conn()
    with db.transaction():
        # enable_seqscan off: the planner prices a scan by heap pages and cannot see the
        # 8 KiB TOASTed vectors a scan would read, so below ~10,000 rows it would sort the
        # whole table instead of walking the graph (300 ms instead of a few at 5,000 rows).
        db.execute(
            "SELECT set_config('hnsw.ef_search', %s, true), "
            "set_config('hnsw.iterative_scan', 'relaxed_order', true), "
            "set_config('enable_seqscan', 'off', true)",
            (str(ef),),
        )
        return db.execute(sql, params, binary=True).fetchall()  # type: ignore[no-any-return]


def search(
    store: Any,
    query: np.ndarray,
    k: int,
    exact: bool,
    folders: Sequence[bytes],
    exclude: Sequence[int],
    *,
    ann: str,
    ann_threshold: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` by cosine similarity to ``query`` (float32 ``(dim,)``, unit norm).

    Args:
        store: the store to search.
        query: the query vector.
        k: how many results.
        exact: scan every (filtered) row instead of using the HNSW index.
        folders: only rows below one of these folders (empty: all rows).
        exclude: image ids never returned (the query's own).
        ann: ``auto`` builds the HNSW index on the first search once ``ann_threshold``
            rows are stored; ``on`` builds it at once; ``off`` always scans exactly.
        ann_threshold: see ``ann``.

    Returns:
        ``(scores float32 (m,), ids int64 (m,))``, best first, ``m <= k``.
    """
    dim = store.dim()
    empty = (np.empty(0, np.float32), np.empty(0, np.int64))
    if dim is None:
        return empty
    vec = q.Vec(query)
    if vec.array.shape[0] != dim:
        raise ConfigError(f"query vector has dimension {vec.array.shape[0]}; the index holds {dim}")
    ranges = store._ranges(folders)
    where = [vec, *q.range_params(ranges), [int(i) for i in exclude]]
    use_ann = not exact and ann != "off" and dim <= q.MAX_HNSW_DIM
    if use_ann and not store.has_ann() and (ann == "on" or _at_least(store, ann_threshold)):
        store.build_ann()
    rows: list = []
    if use_ann and store.has_ann():
        candidates = max(MIN_CANDIDATES, 4 * k)
        sql = q.search_sql(dim, len(ranges), exact=False)
        rows = _ann_rows(store, sql, [*where, candidates, k], min(_MAX_EF, candidates))
    if len(rows) < k:  # exact mode, no index yet, or a filter the graph walk could not fill
        sql = q.search_sql(dim, len(ranges), exact=True)
        db = store._conn()
        with db.transaction():
            # The planner counts only heap pages, not the TOASTed vectors, and would scan
            # 8 KiB per row on one core: let it use parallel workers.
            db.execute(
                "SELECT set_config('parallel_setup_cost', '0', true), "
                "set_config('min_parallel_table_scan_size', '0', true)"
            )
            rows = db.execute(sql, [*where, k], binary=True).fetchall()
    if not rows:
        return empty
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    scores = np.fromiter((r[1] for r in rows), dtype=np.float32, count=len(rows))
    return scores, ids


def integrity_problems(store: Any) -> list[str]:
    """What ``lookalike info --check`` reports for a PostgreSQL index (empty: all well)."""
    problems: list[str] = []
    dim = store.dim()
    if store.get_meta("generation") is None:
        problems.append("the generation counter is missing from lookalike_meta")
    if dim is not None:
        (bad,) = store._query(
            "SELECT count(*) FROM lookalike_images WHERE vector_dims(embedding) <> %s", (dim,)
        )[0]
        if bad:
            problems.append(f"{bad} vectors do not have the index's dimension {dim}")
        (off,) = store._query(
            "SELECT count(*) FROM lookalike_images WHERE abs(vector_norm(embedding) - 1) > 1e-3"
        )[0]
        if off:
            problems.append(f"{off} vectors are not unit length")
    invalid = store._query(
        "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "WHERE i.indrelid = ANY(ARRAY[%s, %s, %s, %s]::regclass[]) AND NOT i.indisvalid",
        q.TABLES,
    )
    problems += [f"index {r[0]} is invalid: REINDEX INDEX {r[0]};" for r in invalid]
    return problems


class SearchMixin:
    """The search half of :class:`~lookalike.store.postgres.PostgresStore`."""

    _psycopg: Any
    _has_hnsw: bool
    _query: Any
    _transaction: Any
    _error: Any
    dim: Any

    # -- vector search (the store searches its own vectors) -------------------------------

    def _hnsw_exists(self) -> bool:
        rows = self._query("SELECT to_regclass('lookalike_images_hnsw') IS NOT NULL")
        return bool(rows[0][0])

    def has_ann(self) -> bool:
        """Whether the HNSW index exists (built once; Postgres keeps it up to date)."""
        if not self._has_hnsw:
            self._has_hnsw = self._hnsw_exists()
        return self._has_hnsw

    def build_ann(self) -> bool:
        """Build the HNSW index if it is missing. Returns whether one exists afterwards.

        Writers wait while it builds (minutes for 100,000 rows on 2 cores: BENCHMARKS.md);
        other processes that ask at the same time wait for this build instead of repeating it.
        """
        dim = self.dim()
        if self.has_ann() or dim is None or dim > q.MAX_HNSW_DIM:
            return self._has_hnsw
        with self._transaction() as db:
            build_hnsw(db, dim)
        self._has_hnsw = True
        return True

    def search(
        self,
        query: np.ndarray,
        k: int,
        *,
        exact: bool = False,
        folders: Sequence[bytes] = (),
        exclude: Sequence[int] = (),
        ann: str = "auto",
        ann_threshold: int = 100_000,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-``k`` stored vectors by cosine similarity to the unit vector ``query``.

        See :func:`search` for the arguments.

        Returns:
            ``(scores float32 (m,), ids int64 (m,))``, best first, ``m <= k``.
        """
        psycopg = self._psycopg
        try:
            return search(
                self,
                query,
                k,
                exact,
                folders,
                exclude,
                ann=ann,
                ann_threshold=ann_threshold,
            )
        except psycopg.Error as e:
            raise StoreError(self._error("searching index", e)) from None

    # -- checks --------------------------------------------------------------------------

    def integrity_check(self) -> str:
        """``"ok"``, or what is wrong: vectors of another dimension, an invalid index."""
        problems = integrity_problems(self)
        return "\n".join(problems) if problems else "ok"
