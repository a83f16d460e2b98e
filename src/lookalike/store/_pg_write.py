"""One :class:`~lookalike.store.WriteBatch` as one PostgreSQL transaction.

The first statement locks the ``generation`` row: concurrent writers (other processes,
other machines) commit one batch at a time, so ids, the dimension and the generation
counter read inside the batch cannot change under it, and a move can never race an upsert
to the same path.
"""

from __future__ import annotations

import uuid
from typing import Any

import numpy as np

from ..errors import StoreError
from . import _pg_sql as q
from .base import WriteBatch, WriteResult


def apply_batch(db: Any, batch: WriteBatch, now: float) -> tuple[WriteResult, int | None]:
    """Write ``batch`` inside the open transaction of ``db``.

    Returns:
        The :class:`WriteResult` and the stored dimension afterwards (``None`` if none yet).
    """
    previous = int(
        db.execute(
            "SELECT value FROM lookalike_meta WHERE key = 'generation' FOR UPDATE"
        ).fetchone()[0]
    )
    meta = dict(
        db.execute(
            "SELECT key, value FROM lookalike_meta WHERE key IN ('dim', 'generation_id')"
        ).fetchall()
    )
    dim = int(meta["dim"]) if "dim" in meta else None
    previous_id = meta.get("generation_id")
    added_ids: list[int] = []
    added_vecs: list[np.ndarray] = []
    removed: list[int] = []
    if batch.upserts:
        rows = []
        for path, size, mtime_ns, content_hash, vector in batch.upserts:
            vec = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
            if dim is None:  # the setup record may be writing it too: first one wins
                db.execute(
                    "INSERT INTO lookalike_meta(key, value) VALUES ('dim', %s) "
                    "ON CONFLICT (key) DO NOTHING",
                    (str(vec.shape[0]),),
                )
                row = db.execute("SELECT value FROM lookalike_meta WHERE key = 'dim'").fetchone()
                dim = int(row[0])
            if vec.shape[0] != dim:
                raise StoreError(f"vector of dimension {vec.shape[0]}; the index holds {dim}")
            rows.append((bytes(path), int(size), int(mtime_ns), content_hash, q.Vec(vec), now))
            added_vecs.append(vec)
        with db.cursor() as cur:
            # One round trip for the whole batch (psycopg pipelines executemany).
            cur.executemany(q.UPSERT_IMAGE, rows, returning=True)
            while True:
                added_ids.append(int(cur.fetchone()[0]))
                if not cur.nextset():
                    break
    for image_id, path, size, mtime_ns in batch.moves:
        # A stale row at the destination (a file replaced by a rename) gives way.
        for (old,) in db.execute(
            "DELETE FROM lookalike_images WHERE path_key = sha256(%s::bytea) AND id <> %s "
            "RETURNING id",
            (bytes(path), int(image_id)),
        ).fetchall():
            removed.append(int(old))
        db.execute(
            "UPDATE lookalike_images SET path = %s, size = %s, mtime_ns = %s, indexed_at = %s "
            "WHERE id = %s",
            (bytes(path), int(size), int(mtime_ns), now, int(image_id)),
        )
    if batch.deletes:
        wanted = list(dict.fromkeys(int(i) for i in batch.deletes))
        gone = {
            int(r[0])
            for r in db.execute(
                "DELETE FROM lookalike_images WHERE id = ANY(%s::bigint[]) RETURNING id", (wanted,)
            ).fetchall()
        }
        removed.extend(i for i in wanted if i in gone)
    if batch.failures:
        with db.cursor() as cur:
            cur.executemany(
                q.UPSERT_FAILURE,
                [(bytes(p), int(s), int(m), r, d, now) for p, s, m, r, d in batch.failures],
            )
    if batch.clear_failures:
        db.execute(q.CLEAR_FAILURES, ([bytes(p) for p in batch.clear_failures],))
    generation, generation_id = previous, previous_id
    if added_ids or removed:
        generation, generation_id = previous + 1, uuid.uuid4().hex
        db.execute(
            "INSERT INTO lookalike_meta(key, value) VALUES ('generation', %s), "
            "('generation_id', %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (str(generation), generation_id),
        )
    # The net effect: each id once with its last vector, none that this batch also removed.
    gone = set(removed)
    net = {i: v for i, v in zip(added_ids, added_vecs, strict=True) if i not in gone}
    vectors = np.stack(list(net.values())) if net else np.empty((0, dim or 0), dtype=np.float32)
    result = WriteResult(
        previous,
        generation,
        np.fromiter(net.keys(), dtype=np.int64, count=len(net)),
        vectors,
        np.asarray(removed, dtype=np.int64),
        previous_id,
        generation_id,
    )
    return result, dim
