"""README promises of the engine that had no test (issue #8): ``Index.check()``, a query
changed on disk since it was indexed, transient failures retried, ``exact=True``, the
``ann``/``ann_threshold`` options and the approximate index that ``update`` builds and
keeps in step with SQLite. Fast: the pixel embedder, no model.

Each test names the behaviour it guards; tests/README.md records the bug planted to see
it fail.
"""

from __future__ import annotations

import os
import shutil
import sqlite3

import numpy as np
import pytest
from fakes import PixelEmbedder, make_photos, photo

from lookalike import Index
from lookalike.decode import TRANSIENT_REASONS
from lookalike.errors import ConfigError
from lookalike.store import WriteBatch

SIDE = 8  # pixel embedder: 8 x 8 x 3 = 192-d vectors
BULK = 1100  # the approximate index is never built below 1,000 rows


def open_index(db, **kw):
    kw.setdefault("embedder", PixelEmbedder(side=SIDE))
    kw.setdefault("workers", 0)
    return Index.open(db, **kw)


def brute_force(idx: Index, q: np.ndarray, k: int, exclude=()) -> list[tuple[str, float]]:
    """Top ``k`` (path, score) over every row SQLite holds, by numpy: the reference."""
    ids, vecs = [], []
    for part_ids, part_vecs in idx._store.iter_vectors():
        ids.append(part_ids)
        vecs.append(part_vecs)
    all_ids, all_vecs = np.concatenate(ids), np.concatenate(vecs)
    q = np.asarray(q, np.float32) / np.linalg.norm(q)
    scores = all_vecs @ q
    keep = ~np.isin(all_ids, np.asarray(list(exclude), np.int64))
    all_ids, scores = all_ids[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:k]
    paths = idx._store.paths_for(all_ids[order].tolist())
    return [(os.fsdecode(paths[int(all_ids[i])]), float(scores[i])) for i in order]


def assert_hits_are(hits, expected) -> None:
    """Same paths in the same order and the same scores (ties within 1e-5 may swap)."""
    assert len(hits) == len(expected), ([h.path for h in hits], expected)
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in expected], atol=1e-5)
    got, want = [h.path for h in hits], [p for p, _ in expected]
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        if g != w:  # allowed only inside a tie
            assert abs(expected[i][1] - dict(expected).get(g, -9)) < 1e-5, (got, want)


def bulk_vectors(n: int = BULK, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SIDE * SIDE * 3)).astype(np.float32)


def ann_present(db) -> bool:
    return (db.parent / (db.name + ".cache") / "ann.faiss").exists()


# --- Index.check ---------------------------------------------------------------------------


def test_check_is_ok_on_a_sound_index_and_reports_a_broken_one(tmp_path):
    db = tmp_path / "c.db"
    with open_index(db) as idx:
        idx.update(make_photos(tmp_path / "p", 4))
        assert idx.check() == "ok"
    # An index b-tree that no longer matches its table: the quick check at open cannot see
    # it (it skips index contents), the full integrity check must.
    with sqlite3.connect(db) as c:
        c.execute("PRAGMA writable_schema=ON")
        c.execute(
            "UPDATE sqlite_master SET sql='CREATE INDEX images_size ON images(mtime_ns)' "
            "WHERE name='images_size'"
        )
    with open_index(db) as idx:
        problems = idx.check()
        assert problems != "ok" and "images_size" in problems


# --- the query image changed on disk --------------------------------------------------------


def test_an_indexed_query_changed_on_disk_is_embedded_again_and_not_its_own_result(tmp_path):
    folder = make_photos(tmp_path / "p", 8)
    q = folder / "p0002.jpg"
    with open_index(tmp_path / "q.db") as idx:
        idx.update(folder)
        shutil.copyfile(folder / "p0006.jpg", q)  # now the same pixels as p0006
        os.utime(q, ns=(5 * 10**18, 5 * 10**18))
        hits = idx.search(q, k=10)
        # Re-embedded: its new content finds p0006 at 1.0 (the stored vector would not).
        assert hits[0].path == str(folder / "p0006.jpg") and hits[0].score > 0.9999
        # Still excluded by its record although that record is stale: k above the count
        # gives every other image (7), never its own old row.
        assert str(q) not in [h.path for h in hits] and len(hits) == 7


# --- transient failures are retried ---------------------------------------------------------


def _record_failure(idx: Index, path, reason: str) -> None:
    """Leave the store as a previous run that met ``reason`` on ``path`` leaves it."""
    st = os.stat(path)
    batch = WriteBatch(
        failures=[(os.fsencode(path), st.st_size, st.st_mtime_ns, reason, "planted")]
    )
    idx._store.write(batch)


@pytest.mark.parametrize("reason", sorted(TRANSIENT_REASONS))
def test_a_transient_failure_is_retried_even_with_the_same_size_and_mtime(tmp_path, reason):
    folder = make_photos(tmp_path / "p", 3)
    with open_index(tmp_path / "t.db") as idx:
        idx.update(folder)
        late = photo(folder / "late.jpg", 50)
        _record_failure(idx, late, reason)
        report = idx.update(folder)
        assert (report.added, report.failed) == (1, []), reason
        assert idx._store.lookup(os.fsencode(late)) is not None
        assert idx.info()["failed"] == []


def test_a_lasting_failure_with_the_same_size_and_mtime_is_not_retried(tmp_path):
    """The control of the test above: the planted record is what the planner reads."""
    folder = make_photos(tmp_path / "p", 3)
    emb = PixelEmbedder(side=SIDE)
    with open_index(tmp_path / "t.db", embedder=emb) as idx:
        idx.update(folder)
        late = photo(folder / "late.jpg", 50)
        _record_failure(idx, late, "not-an-image")
        emb.embedded = 0
        report = idx.update(folder)
        assert [(os.path.basename(f.path), f.reason) for f in report.failed] == [
            ("late.jpg", "not-an-image")
        ]
        assert report.added == 0 and emb.embedded == 0


# --- exact and approximate search -----------------------------------------------------------


def test_exact_true_bypasses_the_approximate_index(tmp_path, monkeypatch):
    from lookalike.vectors import ann

    db = tmp_path / "a.db"
    vecs = bulk_vectors()
    with open_index(db, ann="on") as idx:
        idx.add_embeddings([f"/bulk/{i}.jpg" for i in range(BULK)], vecs)
        q = vecs[BULK - 7]
        want = brute_force(idx, q, 5)
        assert want[0] == (f"/bulk/{BULK - 7}.jpg", pytest.approx(1.0, abs=1e-5))
        assert_hits_are(idx.search_vector(q, k=5), want)  # the healthy ANN finds it
        assert ann_present(db)

        # Sabotage the ANN: it proposes the first rows only, wherever the query points.
        def first_rows(self, queries, count, nprobe=None, bitmap=None):
            return np.tile(np.arange(count, dtype=np.int64), (len(queries), 1))

        monkeypatch.setattr(ann.AnnIndex, "candidates", first_rows)
        assert idx.search_vector(q, k=5)[0].path != want[0][0]  # the ANN answered
        assert_hits_are(idx.search_vector(q, k=5, exact=True), want)
        q_file = tmp_path / "q.png"
        photo(q_file, 1)
        assert_hits_are(
            idx.search_vector(idx.embed(q_file), k=3, exact=True),
            brute_force(idx, idx.embed(q_file), 3),
        )


@pytest.mark.parametrize(
    ("ann", "threshold", "built"),
    # ann="on" (built below the threshold) is covered by the exact=True test above.
    [("auto", 500, True), ("auto", 5000, False), ("off", 10, False)],
)
def test_ann_options_decide_whether_an_approximate_index_is_built(tmp_path, ann, threshold, built):
    db = tmp_path / "o.db"
    vecs = bulk_vectors()
    with open_index(db, ann=ann, ann_threshold=threshold) as idx:
        idx.add_embeddings([f"/bulk/{i}.jpg" for i in range(BULK)], vecs)
        assert_hits_are(idx.search_vector(vecs[3], k=4), brute_force(idx, vecs[3], 4))
        assert ann_present(db) is built


def test_unknown_ann_mode_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="ann"):
        open_index(tmp_path / "x.db", ann="sometimes")


def test_the_ann_built_by_update_stays_in_step_with_sqlite_after_deletes(tmp_path):
    db = tmp_path / "e.db"
    folder = make_photos(tmp_path / "p", 24, size=(16, 12))
    with open_index(db, ann_threshold=50) as idx:
        idx.add_embeddings([f"/bulk/{i}.jpg" for i in range(BULK)], bulk_vectors() * 0.05)
        assert not ann_present(db)  # nothing built by add_embeddings itself
        idx.update(folder)
        assert ann_present(db)  # built at the end of the indexing run
        gone = sorted(folder.iterdir())[:8]
        gone_vecs = {str(p): idx.embed(p) for p in gone}
        for p in gone:
            p.unlink()
        report = idx.update(folder)
        assert report.removed == 8 and idx._store.count() == BULK + 16
        _searches_match_sqlite(idx, folder, gone_vecs)  # this process's ANN
    with open_index(db, ann_threshold=50) as idx:
        assert ann_present(db)
        _searches_match_sqlite(idx, folder, gone_vecs)  # the ANN saved beside the DB


def _searches_match_sqlite(idx: Index, folder, gone_vecs: dict) -> None:
    for path, v in gone_vecs.items():
        hits = idx.search_vector(v, k=5)
        assert path not in [h.path for h in hits]
        assert_hits_are(hits, brute_force(idx, v, 5))
    for p in sorted(folder.iterdir())[:4]:
        row = idx._store.lookup(os.fsencode(p))[0]
        want = brute_force(idx, idx.embed(p), 5, exclude=[row.id])
        assert_hits_are(idx.search(p, k=5), want)
