"""SQLite store: transactions, generations, folder ranges, damage and schema checks."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from lookalike.errors import (
    IndexCorruptError,
    NotAnIndexError,
    SchemaTooNewError,
    StoreError,
    StoreWriteError,
)
from lookalike.store import SQLiteStore, WriteBatch


def unit(seed: int, dim: int = 8) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal(dim).astype(np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "i.db")
    yield s
    s.close()


def test_write_bumps_generation_and_reports_changes(store):
    assert store.generation() == 0
    r = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, "h1", unit(1))]))
    assert (r.previous_generation, r.generation) == (0, 1)
    assert r.added_ids.tolist() == [1] and r.added_vectors.shape == (1, 8)
    # a failure-only batch changes no vector: same generation
    r2 = store.write(WriteBatch(failures=[(b"/a/x.jpg", 0, 0, "empty", "")]))
    assert r2.generation == 1
    r3 = store.write(WriteBatch(deletes=[1]))
    assert r3.removed_ids.tolist() == [1] and r3.generation == 2
    assert store.count() == 0


def test_upsert_keeps_id_and_replaces_vector(store):
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, "h1", unit(1))]))
    r = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 5, 6, "h2", unit(2))]))
    assert r.added_ids.tolist() == [1]
    row, vec = store.lookup(b"/a/1.jpg")
    assert (row.size, row.mtime_ns, row.hash) == (5, 6, "h2")
    np.testing.assert_array_equal(vec, unit(2))


def test_dimension_is_enforced(store):
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 2, None, unit(1, 8))]))
    with pytest.raises(StoreError):
        store.write(WriteBatch(upserts=[(b"/a/2.jpg", 1, 2, None, unit(1, 4))]))
    assert store.count() == 1  # the failed batch left nothing behind


def test_folder_ranges_are_exact_with_like_metacharacters(store):
    paths = [b"/p/a%b/1.jpg", b"/p/a_b/2.jpg", b"/p/a\\b/3.jpg", b"/p/axb/4.jpg", b"/p/a%bc/5.jpg"]
    store.write(WriteBatch(upserts=[(p, 1, 1, None, unit(i)) for i, p in enumerate(paths)]))
    assert set(store.files_under(b"/p/a%b")) == {b"/p/a%b/1.jpg"}
    assert set(store.files_under(b"/p/a_b")) == {b"/p/a_b/2.jpg"}
    assert set(store.files_under(b"/p/a\\b")) == {b"/p/a\\b/3.jpg"}
    assert len(store.ids_under([b"/p"])) == 5


def test_non_utf8_paths_round_trip(store):
    p = b"/p/caf\xe9.jpg"
    store.write(WriteBatch(upserts=[(p, 1, 1, None, unit(1))]))
    assert store.lookup(p)[0].path == p
    assert list(store.paths_for([1]).values()) == [p]


def test_move_keeps_vector_and_displaces_stale_destination(store):
    store.write(
        WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, "h", unit(1)), (b"/a/2.jpg", 1, 1, "g", unit(2))])
    )
    r = store.write(WriteBatch(moves=[(1, b"/a/2.jpg", 1, 9)]))
    assert r.removed_ids.tolist() == [2]
    row, vec = store.lookup(b"/a/2.jpg")
    assert row.id == 1
    np.testing.assert_array_equal(vec, unit(1))


def test_iter_vectors_streams_in_chunks(store):
    store.write(
        WriteBatch(upserts=[(f"/a/{i}.jpg".encode(), 1, 1, None, unit(i)) for i in range(10)])
    )
    chunks = list(store.iter_vectors(chunk_rows=4))
    assert [len(c[0]) for c in chunks] == [4, 4, 2]
    ids = np.concatenate([c[0] for c in chunks])
    assert ids.tolist() == sorted(ids.tolist())
    np.testing.assert_array_equal(chunks[0][1][0], unit(0))


def test_failed_commit_rolls_back(store, monkeypatch):
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, unit(1))]))
    bad = WriteBatch(upserts=[(b"/a/2.jpg", 1, 1, None, unit(2))], deletes=[1])
    # simulate disk full on the last statement of the batch
    real = store._db

    class Failing:
        def __init__(self, db):
            self.db = db

        def execute(self, sql, *a):
            if sql.startswith("UPDATE meta SET value"):
                raise sqlite3.OperationalError("database or disk is full")
            return self.db.execute(sql, *a)

        def executemany(self, *a):
            return self.db.executemany(*a)

    monkeypatch.setattr(store, "_db", Failing(real))
    with pytest.raises(StoreWriteError, match="disk is full"):
        store.write(bad)
    monkeypatch.setattr(store, "_db", real)
    assert store.count() == 1 and store.lookup(b"/a/2.jpg") is None
    assert store.generation() == 1
    assert store.integrity_check() == "ok"


def test_not_a_database_is_not_an_index_and_is_left_alone(tmp_path):
    """#20: a photo given as --db is "not an index", never "damaged: rebuild it there"."""
    p = tmp_path / "junk.db"
    p.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(NotAnIndexError, match="not a SQLite database") as err:
        SQLiteStore(p)
    assert "rebuild" not in str(err.value) and "nothing was changed" in str(err.value)
    assert p.read_bytes() == b"this is not sqlite" * 100
    assert sorted(x.name for x in tmp_path.iterdir()) == ["junk.db"]  # no -wal, no -shm


def test_another_programs_sqlite_database_is_not_touched(tmp_path):
    """#20: a SQLite file with other tables is refused before anything is written to it
    (before: our four tables were created beside the other program's, WAL mode switched on)."""
    p = tmp_path / "notes.db"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE notes(body TEXT)")
    db.execute("INSERT INTO notes VALUES ('keep me')")
    db.commit()
    db.close()
    before = p.read_bytes()
    with pytest.raises(NotAnIndexError, match="other tables: notes"):
        SQLiteStore(p)
    assert p.read_bytes() == before


def test_a_damaged_index_still_says_rebuild(tmp_path):
    s = SQLiteStore(tmp_path / "i.db")
    s.write(WriteBatch(upserts=[(b"/a/%d.jpg" % i, 1, 2, "h", unit(i)) for i in range(300)]))
    s.close()
    p = tmp_path / "i.db"
    data = bytearray(p.read_bytes())
    data[4096:8192] = b"\xff" * 4096  # page 2 trashed; the header still says SQLite
    p.write_bytes(bytes(data))
    with pytest.raises(IndexCorruptError, match="rebuild") as err:
        SQLiteStore(p)
    assert not isinstance(err.value, NotAnIndexError)


def test_newer_schema_asks_for_upgrade(tmp_path):
    s = SQLiteStore(tmp_path / "i.db")
    s.set_meta({"schema_version": "99"})
    s.close()
    with pytest.raises(SchemaTooNewError, match="upgrade"):
        SQLiteStore(tmp_path / "i.db")


def test_network_filesystem_is_detected(tmp_path):
    from lookalike.store.sqlite import filesystem_type

    mounts = tmp_path / "mounts"
    mounts.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {tmp_path}/nfs nfs4 rw 0 0\n")
    assert filesystem_type(tmp_path / "nfs" / "sub" / "i.db", str(mounts)) == "nfs4"
    assert filesystem_type(tmp_path / "local.db", str(mounts)) == "ext4"


def test_network_filesystem_warns(tmp_path, monkeypatch):
    import lookalike.store.sqlite as sq

    monkeypatch.setattr(sq, "filesystem_type", lambda path: "nfs")
    s = SQLiteStore(tmp_path / "i.db")
    assert "network filesystem" in s.warnings[0]
    s.close()


def test_is_empty_follows_writes(store):
    assert store.is_empty()
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, unit(1))]))
    assert not store.is_empty()
    store.write(WriteBatch(deletes=[1]))
    assert store.is_empty()
