"""Regression tests for the bugs an outside code review reproduced (issue #8).

Each test failed on the code before its fix (run, seen failing, then fixed):

* stale cache trusted by a different DB or a DB whose generation went down and up again:
  ``test_cache_of_a_replaced_db_is_not_trusted``,
  ``test_cache_ahead_of_a_restored_db_is_not_trusted``,
  ``test_a_db_from_before_the_fix_gets_a_generation_id_on_its_first_commit``;
* rename the original, save an edit under the old name:
  ``test_rename_then_edit_under_the_old_name_keeps_each_files_vector``;
* the same image twice in the cache: ``test_overlapping_roots_*``,
  ``test_the_same_root_twice_*``, ``test_duplicate_paths_in_add_embeddings_*``,
  ``test_a_move_and_an_upsert_to_one_path_in_one_batch_*``,
  ``test_cache_apply_is_idempotent_per_id`` (and, for the overlap planning,
  ``test_a_hidden_folder_given_as_its_own_root_is_kept``);
* symlinks: ``test_query_through_a_symlinked_folder_is_not_its_own_result``,
  ``test_folder_filter_through_a_symlink_returns_results``,
  ``test_index_through_a_symlink_then_query_the_real_path``, and for indexes written
  before the fix ``test_rows_stored_under_a_link_before_the_fix_are_moved_not_doubled``;
* tombstones visible before their appended rows:
  ``test_reader_at_the_old_generation_never_sees_new_tombstones``;
* readers rebuilding the whole cache while a commit is in flight:
  ``test_reader_meeting_a_commit_in_flight_does_not_rebuild``,
  ``test_a_new_reader_waits_for_a_commit_in_flight_instead_of_rebuilding``.

The planning tests use :class:`fakes.PixelEmbedder` (vectors are the image's pixels, so
different images give clearly different vectors and identical ones give 1.0).
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
from fakes import PixelEmbedder, make_photos, photo

from lookalike import Index
from lookalike.store import SQLiteStore, WriteBatch
from lookalike.vectors import MemorySource, VectorCache, VectorSearch


def unit_rows(n: int, dim: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def open_index(db, embedder=None):
    return Index.open(db, embedder=embedder or PixelEmbedder(), workers=0)


def move_db_aside(db, to):
    for suffix in ("", "-wal", "-shm"):
        src = f"{db}{suffix}"
        if os.path.exists(src):
            os.replace(src, f"{to}{suffix}")


def assert_clean_hits(hits, n_images, k):
    """No path twice, and min(k, n) hits."""
    paths = [h.path for h in hits]
    assert len(paths) == len(set(paths)), f"a path came back twice: {paths}"
    assert len(hits) == min(k, n_images)


# --- 1. the cache is tied to its DB -----------------------------------------------------
def test_cache_of_a_replaced_db_is_not_trusted(tmp_path):
    db = tmp_path / "v.db"
    old = unit_rows(20, 16, seed=1)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/old/{i}.jpg" for i in range(20)], old)
        assert idx.search_vector(old[3], k=1)[0].path == "/old/3.jpg"
    # The recovery the error message suggests: move the DB aside, index again at the same
    # path. The new DB restarts its generation at the same number as the cache's.
    move_db_aside(db, tmp_path / "aside.db")
    new = unit_rows(20, 16, seed=2)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/new/{i}.jpg" for i in range(20)], new)
        for i in (0, 7, 19):
            hit = idx.search_vector(new[i], k=1)[0]
            assert hit.path == f"/new/{i}.jpg"
            assert hit.score == pytest.approx(1.0, abs=1e-5)


def test_cache_ahead_of_a_restored_db_is_not_trusted(tmp_path):
    """A lost last commit, or an older copy restored: the DB's generation went down, then a
    different commit took it up to the cache's number again (sideways)."""
    db = tmp_path / "v.db"
    first = unit_rows(10, 16, seed=3)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/a/{i}.jpg" for i in range(10)], first)
    for suffix in ("", "-wal", "-shm"):
        if os.path.exists(f"{db}{suffix}"):
            shutil.copy(f"{db}{suffix}", f"{tmp_path / 'backup.db'}{suffix}")
    lost = unit_rows(5, 16, seed=4)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/lost/{i}.jpg" for i in range(5)], lost)
        assert idx.search_vector(lost[0], k=1)[0].path == "/lost/0.jpg"  # the cache has them
    move_db_aside(tmp_path / "backup.db", db)  # the commit of /lost is gone from the DB
    other = unit_rows(5, 16, seed=5)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/other/{i}.jpg" for i in range(5)], other)
        for i in range(5):
            hit = idx.search_vector(other[i], k=1)[0]
            assert (hit.path, round(hit.score, 4)) == (f"/other/{i}.jpg", 1.0)
        hits = idx.search_vector(first[2], k=30)
        assert sorted(h.path for h in hits) == sorted(
            [f"/a/{i}.jpg" for i in range(10)] + [f"/other/{i}.jpg" for i in range(5)]
        )


def test_a_db_from_before_the_fix_gets_a_generation_id_on_its_first_commit(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    try:
        created = store.head()
        assert created[0] == 0 and created[1]
        store._db.execute("DELETE FROM meta WHERE key = 'generation_id'")  # an older index
        assert store.head() == (0, None)
        r = store.write(WriteBatch(upserts=[(b"/p/a.jpg", 1, 1, "h", unit_rows(1, 8, 0)[0])]))
        assert (r.previous_generation_id, r.generation_id) == (None, store.head()[1])
        assert store.head()[1] not in (None, created[1])
        r2 = store.write(WriteBatch(deletes=[int(r.added_ids[0])]))
        assert r2.previous_generation_id == r.generation_id != r2.generation_id
    finally:
        store.close()


# --- 2. rename the original, save an edit under the old name ---------------------------
def test_rename_then_edit_under_the_old_name_keeps_each_files_vector(tmp_path):
    d = tmp_path / "photos"
    make_photos(d, 6)
    x, z = d / "p0002.jpg", d / "z.jpg"
    # batch_size=1: the edited x is embedded and committed before z (after it in path
    # order) reuses the vector its hash matched at planning time.
    emb = PixelEmbedder(batch_size=1)
    with open_index(tmp_path / "i.db", emb) as idx:
        idx.update(d)
        os.replace(x, z)
        photo(x, seed=77)  # an edit saved under the old name
        idx.update(d)
        for f in (x, z):
            fresh = idx.embed(f)
            hit = idx.search_vector(fresh, k=1)[0]
            assert hit.path == str(f) and hit.score == pytest.approx(1.0, abs=1e-5)
            _, stored = idx._store.lookup(os.fsencode(f))
            assert float(stored @ fresh) == pytest.approx(1.0, abs=1e-5)


# --- 3. the same image twice ------------------------------------------------------------
def _check_no_doubles(db, n, probe):
    for _ in range(2):  # this process, then a fresh Index reading the cache from disk
        with open_index(db) as idx:
            assert idx.info()["images"] == n
            for k in (1, n - 1, n, n + 5):
                assert_clean_hits(idx.search_vector(probe, k=k), n, k)


def test_overlapping_roots_index_each_image_once(tmp_path):
    a = tmp_path / "a"
    make_photos(a, 4)
    make_photos(a / "b", 3)
    db = tmp_path / "i.db"
    with open_index(db) as idx:
        r = idx.update(a, a / "b")
        assert r.added == 7
        probe = idx.embed(a / "b" / "p0001.jpg")
        assert_clean_hits(idx.search_vector(probe, k=7), 7, 7)
        r2 = idx.update(a / "b", a)
        assert (r2.added, r2.unchanged, r2.removed) == (0, 7, 0)
    _check_no_doubles(db, 7, probe)


def test_the_same_root_twice_indexes_each_image_once(tmp_path):
    d = tmp_path / "d"
    make_photos(d, 5)
    db = tmp_path / "i.db"
    with open_index(db) as idx:
        r = idx.update(str(d), str(d) + "/")
        assert r.added == 5
        probe = idx.embed(d / "p0003.jpg")
    _check_no_doubles(db, 5, probe)


def test_a_hidden_folder_given_as_its_own_root_is_kept(tmp_path):
    a = tmp_path / "a"
    make_photos(a, 3)
    make_photos(a / ".hidden", 2)
    db = tmp_path / "i.db"
    with open_index(db) as idx:
        assert idx.update(a, a / ".hidden").added == 5
        for roots in ((a, a / ".hidden"), (a / ".hidden", a)):
            r = idx.update(*roots)
            assert (r.added, r.removed, r.unchanged) == (0, 0, 5)
            assert idx.info()["images"] == 5


def test_duplicate_paths_in_add_embeddings_keep_the_last_vector(tmp_path):
    db = tmp_path / "v.db"
    v = unit_rows(6, 16, seed=6)
    with Index.open(db) as idx:
        idx.add_embeddings(["/p/z.jpg"], v[5:])
        idx.search_vector(v[5], k=1)  # the cache exists: the next commit is appended to it
        idx.add_embeddings(["/p/a.jpg", "/p/b.jpg", "/p/a.jpg", "/p/c.jpg"], v[:4])
        assert idx.info()["images"] == 4
        hit = idx.search_vector(v[2], k=1)[0]  # the last vector given for a.jpg
        assert (hit.path, round(hit.score, 4)) == ("/p/a.jpg", 1.0)
        assert_clean_hits(idx.search_vector(v[0], k=4), 4, 4)
    with Index.open(db) as idx:
        for k in (2, 4, 10):
            assert_clean_hits(idx.search_vector(v[0], k=k), 4, k)


def test_a_move_and_an_upsert_to_one_path_in_one_batch_leave_no_ghost(tmp_path):
    store = SQLiteStore(tmp_path / "s.db")
    vs = VectorSearch(tmp_path / "s.db.cache", store, ann="off")
    v = unit_rows(6, 8, seed=7)
    try:
        r = store.write(
            WriteBatch(upserts=[(f"/p/{i}.jpg".encode(), 1, 1, f"h{i}", v[i]) for i in range(4)])
        )
        vs.notify(r.added_ids, r.added_vectors, r.removed_ids, r.generation, r.previous_generation)
        ids = {store.lookup(f"/p/{i}.jpg".encode())[0].id: i for i in range(4)}
        id_of = {i: image_id for image_id, i in ids.items()}
        # /p/1.jpg is re-embedded AND /p/3.jpg is moved onto /p/1.jpg in the same batch:
        # the move makes the upserted row give way.
        batch = WriteBatch(
            upserts=[(b"/p/1.jpg", 2, 2, "h9", v[5])],
            moves=[(id_of[3], b"/p/1.jpg", 3, 3)],
        )
        r = store.write(batch)
        vs.notify(r.added_ids, r.added_vectors, r.removed_ids, r.generation, r.previous_generation)
        assert store.count() == 3
        for cache_reader in (vs, VectorSearch(tmp_path / "s.db.cache", store, ann="off")):
            for k in (2, 3, 5):
                _, got = cache_reader.search(v[0], k)
                live = [int(i) for i in got[0] if i >= 0]
                assert len(live) == len(set(live)) == min(k, 3)
                assert set(live) <= set(store.paths_for(live))
    finally:
        vs.close()
        store.close()


def test_cache_apply_is_idempotent_per_id(tmp_path):
    src = MemorySource(dim=8)
    v = unit_rows(10, 8, seed=8)
    src.put([1, 2, 3], v[:3])
    cache = VectorCache.open(tmp_path / "c", src)
    # id 4 twice (the last wins), id 5 added and removed (gone), id 2 replaced twice.
    added, vecs = np.array([4, 4, 5, 2, 2]), v[[4, 5, 6, 7, 8]]
    gen, prev = src.put([4, 2], v[[5, 8]], remove=[5])
    cache.apply(added, vecs, np.array([5]), gen, prev)
    for reader in (cache, VectorCache.open(tmp_path / "c", src)):
        live = reader.ids[reader.ids >= 0]
        assert sorted(live.tolist()) == [1, 2, 3, 4]
        rows = {int(i): r for r, i in enumerate(reader.ids) if i >= 0}
        np.testing.assert_array_equal(reader.matrix[rows[4]], v[5])
        np.testing.assert_array_equal(reader.matrix[rows[2]], v[8])


# --- 4. symlinks ------------------------------------------------------------------------
@pytest.fixture
def linked(tmp_path):
    real = tmp_path / "real" / "photos"
    make_photos(real, 6)
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "real")
    return real, link / "photos"


def test_query_through_a_symlinked_folder_is_not_its_own_result(tmp_path, linked):
    real, via_link = linked
    with open_index(tmp_path / "i.db") as idx:
        idx.update(real)
        hits = idx.search(via_link / "p0001.jpg", k=3)
        assert len(hits) == 3
        assert str(real / "p0001.jpg") not in [h.path for h in hits]


def test_folder_filter_through_a_symlink_returns_results(tmp_path, linked):
    real, via_link = linked
    with open_index(tmp_path / "i.db") as idx:
        idx.update(real)
        hits = idx.search(real / "p0001.jpg", k=3, folder=via_link)
        assert len(hits) == 3
        assert all(h.path.startswith(str(real)) for h in hits)


def test_index_through_a_symlink_then_query_the_real_path(tmp_path, linked):
    real, via_link = linked
    with open_index(tmp_path / "i.db") as idx:
        idx.update(via_link)
        for query in (real / "p0002.jpg", via_link / "p0002.jpg"):
            hits = idx.search(query, k=3)
            assert len(hits) == 3
            assert not {h.path for h in hits} & {str(real / "p0002.jpg"), str(query)}
        assert len(idx.search(real / "p0002.jpg", k=3, folder=real)) == 3


def test_rows_stored_under_a_link_before_the_fix_are_moved_not_doubled(tmp_path, linked):
    real, via_link = linked
    db = tmp_path / "i.db"
    emb = PixelEmbedder()
    with open_index(db, emb) as idx:
        idx.update(via_link)
        store = idx._store
        # How an index written before #8 named them: the folder as given, link unresolved.
        for image_id, path in store.paths_for(list(range(1, 7))).items():
            unresolved = path.replace(os.fsencode(real), os.fsencode(via_link))
            store._db.execute("UPDATE images SET path = ? WHERE id = ?", (unresolved, image_id))
        assert idx.search(via_link / "p0003.jpg", k=3)  # still found through either form
        before = emb.embedded
        r = idx.update(via_link)
        assert emb.embedded == before and r.removed == r.added == 6  # moved, not embedded
        assert idx.info()["images"] == 6
        assert_clean_hits(idx.search_vector(idx.embed(real / "p0003.jpg"), k=10), 6, 10)
        assert all(h.path.startswith(str(real)) for h in idx.search(real / "p0003.jpg", k=5))


# --- 5. tombstones before the appended rows ---------------------------------------------
class _Frozen:
    """A reader's view of a source that has not seen the latest commit yet."""

    def __init__(self, src: MemorySource) -> None:
        self._src = src
        self._gen = src.generation()
        head = getattr(src, "head", None)
        self._head = head() if head is not None else None

    def generation(self) -> int:
        return self._gen

    def head(self):
        return self._head

    def dim(self):
        return self._src.dim()

    def count(self):
        return self._src.count()

    def iter_vectors(self, chunk_rows: int = 65536):
        raise AssertionError("the reader rebuilt instead of reading the old generation")


def test_reader_at_the_old_generation_never_sees_new_tombstones(tmp_path, monkeypatch):
    from lookalike.vectors import cache as cache_mod

    src = MemorySource(dim=8)
    v = unit_rows(12, 8, seed=9)
    src.put(np.arange(1, 11), v[:10])
    writer = VectorCache.open(tmp_path / "c", src)
    frozen = _Frozen(src)  # a reader still at this generation
    gen, prev = src.put([5], v[10:11])  # image 5 re-embedded

    def stop_before_state(*args, **kwargs):
        raise KeyboardInterrupt("the writer is between its data files and state.json")

    monkeypatch.setattr(cache_mod.CacheState, "write", stop_before_state)
    with pytest.raises(KeyboardInterrupt):
        writer.apply(np.array([5]), v[10:11], np.empty(0, np.int64), gen, prev)
    monkeypatch.undo()
    reader = VectorCache.open(tmp_path / "c", frozen)
    assert sorted(reader.ids[reader.ids >= 0].tolist()) == list(range(1, 11))


# --- 6. readers during a commit in flight -----------------------------------------------
def test_reader_meeting_a_commit_in_flight_does_not_rebuild(tmp_path):
    src = MemorySource(dim=8)
    v = unit_rows(40, 8, seed=10)
    src.put(np.arange(1, 31), v[:30])
    writer = VectorSearch(tmp_path / "c", src, ann="off")
    reader = VectorSearch(tmp_path / "c", src, ann="off")
    writer.search(v[0], 1)
    assert reader.search(v[0], 1)[1][0, 0] == 1
    epoch = reader.info()["epoch"]
    with writer.committing():
        gen, prev = src.put(np.arange(31, 41), v[30:])  # committed, cache not yet applied
        _, ids = reader.search(v[0], 5)  # the last consistent state, not a rebuild
        assert ids[0, 0] == 1 and reader.info()["epoch"] == epoch
        writer.notify(np.arange(31, 41), v[30:], np.empty(0, np.int64), gen, prev)
    _, ids = reader.search(v[35], 1)
    assert ids[0, 0] == 36
    assert reader.info()["epoch"] == epoch  # re-mapped the appended rows, never rebuilt


_WRITER = """
import sys, time, numpy as np
from lookalike import Index
from lookalike.store import WriteBatch
v = np.load(sys.argv[2])
batch = WriteBatch(upserts=[(f"/new/{i}.jpg".encode(), -1, -1, None, x) for i, x in enumerate(v)])
with Index.open(sys.argv[1]) as idx:
    idx.search_vector(v[0], k=1)
    with idx._vectors.committing():
        result = idx._store.write(batch)
        print("committed", flush=True)
        time.sleep(1.0)  # the commit is in flight: in the store, not yet in the cache
        idx._vectors.on_commit(result)
"""


def test_a_new_reader_waits_for_a_commit_in_flight_instead_of_rebuilding(tmp_path):
    import subprocess
    import sys

    db = tmp_path / "v.db"
    v = unit_rows(30, 16, seed=11)
    with Index.open(db) as idx:
        idx.add_embeddings([f"/old/{i}.jpg" for i in range(20)], v[:20])
        idx.search_vector(v[0], k=1)
        epoch = idx._vectors.vector_search().info()["epoch"]
    np.save(tmp_path / "new.npy", v[20:])
    writer = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(db), str(tmp_path / "new.npy")],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert writer.stdout.readline().strip() == "committed"
        with Index.open(db) as idx:  # a fresh reader: no snapshot of its own yet
            hit = idx.search_vector(v[25], k=1)[0]
            assert (hit.path, round(hit.score, 4)) == ("/new/5.jpg", 1.0)
            vs = idx._vectors.vector_search()
            assert vs.info()["epoch"] == epoch and vs._cache.rebuilds == 0
    finally:
        assert writer.wait(timeout=60) == 0
