"""PostgreSQL + pgvector through the Index API: same results as SQLite, search in the
server (HNSW and exact, folder filters), passwords never shown, privileges, failures.

Every test runs against a real server (``pg_server`` in conftest.py), in a fresh database.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
from fakes import PixelEmbedder, make_photos, photo

from lookalike import Index
from lookalike.errors import MissingDependencyError, SetupMismatchError, StoreError
from lookalike.store import WriteBatch, open_store


def with_password(url: str, password: str) -> str:
    return url.replace("postgres:@", f"postgres:{password}@", 1)


def clustered(n: int, dim: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors in tight, well separated clusters (for duplicates and small sets)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.5 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


class PhotoLike:
    """Vectors shaped like image embeddings (bench/bench_million.py's generator, small):
    a low-rank latent space with a power-law spectrum, "scenes" of similar images,
    isotropic noise, ReLU. Queries are fresh images of the same scenes.
    """

    def __init__(self, n: int, dim: int = 256, latent: int = 64, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        scale = np.arange(1, latent + 1, dtype=np.float32) ** -0.5
        self.mix = rng.standard_normal((latent, dim)).astype(np.float32) * scale[:, None]
        self.scenes = rng.standard_normal((max(1, n // 50), latent)).astype(np.float32)
        self.base = 0.3 * rng.gamma(1.0, 1.0, dim).astype(np.float32)
        self.rng = rng

    def rows(self, m: int) -> np.ndarray:
        rng = self.rng
        z = self.scenes[rng.integers(0, len(self.scenes), m)]
        z = z + 0.35 * rng.standard_normal(z.shape).astype(np.float32)
        x = z @ self.mix + self.base
        x += 0.3 * rng.standard_normal(x.shape).astype(np.float32)
        x = np.maximum(x, 0)
        return x / np.linalg.norm(x, axis=1, keepdims=True)


def open_pair(tmp_path, pg_url, **kw):
    sqlite = Index.open(tmp_path / "i.db", embedder=PixelEmbedder(), workers=0, **kw)
    pg = Index.open(pg_url, embedder=PixelEmbedder(), workers=0, **kw)
    return sqlite, pg


def test_index_api_gives_the_same_answers_as_sqlite(tmp_path, pg_url):
    photos = make_photos(tmp_path / "photos", 12)
    make_photos(photos / "sub", 3)
    (photos / "broken.jpg").write_bytes(b"not an image")
    sqlite, pg = open_pair(tmp_path, pg_url)
    with sqlite, pg:
        reports = [idx.update(photos).to_dict() for idx in (sqlite, pg)]
        for r in reports:
            r.pop("seconds"), r.pop("images_per_second")
        assert reports[0] == reports[1] and reports[1]["added"] == 15
        assert [f["reason"] for f in reports[1]["failed"]] == ["not-an-image"]
        # unchanged tree: nothing to do; one file changed: re-embedded
        assert pg.update(photos).unchanged == 15
        photo(photos / "p0003.jpg", 99)
        assert pg.update(photos).updated == sqlite.update(photos).updated == 1
        query = photos / "p0005.jpg"
        for kw in ({}, {"exact": True}, {"folder": photos / "sub"}):
            a, b = sqlite.search(query, k=5, **kw), pg.search(query, k=5, **kw)
            assert [h.path for h in a] == [h.path for h in b], kw
            np.testing.assert_allclose([h.score for h in a], [h.score for h in b], atol=1e-5)
            assert str(query) not in [h.path for h in b]  # never its own result
        extra = np.random.default_rng(1).standard_normal((4, 16 * 16 * 3)).astype(np.float32)
        for idx in (sqlite, pg):
            idx.add_embeddings([tmp_path / f"ext/{i}.jpg" for i in range(4)], extra)
        hits = pg.search_vector(extra[2], k=1)
        assert hits[0].path == str(tmp_path / "ext/2.jpg") and hits[0].score == pytest.approx(1)
        infos = [idx.info() for idx in (sqlite, pg)]
        assert infos[1]["db"].startswith("postgresql://") and infos[0]["db"].endswith("i.db")
        for i in infos:
            i.pop("db")
        assert infos[0] == infos[1] and infos[1]["images"] == 19
        assert sqlite.remove(photos) == pg.remove(photos) == 15
        assert pg.info()["images"] == 4 and pg.check() == "ok"


def test_setup_is_recorded_and_a_mismatch_is_refused(pg_url):
    with Index.open(pg_url, embedder=PixelEmbedder()) as idx:
        assert idx.setup.model == "fake-pixels"
    with pytest.raises(SetupMismatchError, match="postgresql://postgres@"):
        Index.open(pg_url, embedder=PixelEmbedder(model="another"))
    with pytest.raises(SetupMismatchError):
        Index.open(pg_url, embedder=PixelEmbedder(side=8))


def test_hnsw_search_finds_what_exact_search_finds_and_filters_still_return_k(tmp_path, pg_url):
    n = 3000
    data = PhotoLike(n)
    vecs = data.rows(n)
    paths = [tmp_path / f"f{i % 10}" / f"{i}.jpg" for i in range(n)]
    with Index.open(pg_url, ann_threshold=2000) as idx:
        idx.add_embeddings(paths, vecs)
        store = idx._store
        assert not store.has_ann()
        queries = data.rows(30)
        exact = [idx.search_vector(v, 10, exact=True) for v in queries]
        assert store.has_ann() is False  # exact never builds
        approx = [idx.search_vector(v, 10) for v in queries]
        assert store.has_ann()  # the first approximate search above the threshold built it
        plan = store._conn().execute(
            "EXPLAIN SELECT id FROM lookalike_images ORDER BY (embedding::halfvec(256)) <=> "
            "%s::vector::halfvec(256) LIMIT 10",
            (str(queries[0].tolist()),),
        )
        assert "lookalike_images_hnsw" in "".join(r[0] for r in plan)
        recall = np.mean(
            [
                len({h.path for h in a} & {h.path for h in e}) / 10
                for a, e in zip(approx, exact, strict=True)
            ]
        )
        assert recall >= 0.95
        for a, e in zip(approx, exact, strict=True):  # scores are exact fp32 either way
            common = {h.path: h.score for h in e}
            for h in a:
                if h.path in common:
                    assert h.score == pytest.approx(common[h.path], abs=1e-5)
        # A folder holding 10% of the rows: still k results, all from it, as exact finds.
        folder = tmp_path / "f3"
        for v in queries[:10]:
            got = idx.search_vector(v, 10, folder=folder)
            want = idx.search_vector(v, 10, folder=folder, exact=True)
            assert len(got) == 10 and all(h.path.startswith(f"{folder}{os.sep}") for h in got)
            assert len({h.path for h in got} & {h.path for h in want}) >= 9
        # A folder of 3 images: the graph walk cannot fill k; the exact fallback gives all 3.
        idx.add_embeddings([tmp_path / "tiny" / f"{i}.jpg" for i in range(3)], data.rows(3))
        assert len(idx.search_vector(queries[0], 10, folder=tmp_path / "tiny")) == 3


def test_update_builds_the_hnsw_index_above_the_threshold_and_off_never_does(tmp_path, pg_url):
    photos = make_photos(tmp_path / "photos", 6)
    with Index.open(pg_url, embedder=PixelEmbedder(), workers=0, ann="off") as idx:
        idx.update(photos)
        assert len(idx.search(photos / "p0001.jpg", k=3)) == 3
        assert not idx._store.has_ann()
    with Index.open(pg_url, embedder=PixelEmbedder(), workers=0, ann_threshold=5) as idx:
        idx.update(photos)
        assert idx._store.has_ann()
        assert [h.path for h in idx.search(photos / "p0001.jpg", k=3)] == [
            h.path for h in idx.search(photos / "p0001.jpg", k=3, exact=True)
        ]


def test_password_is_never_shown(pg_url, monkeypatch):
    secret = "s3cr3t-Pa55"
    url = with_password(pg_url, secret)
    with Index.open(url, embedder=PixelEmbedder()) as idx:
        shown = idx.info()["db"]
        assert secret not in shown and "postgres:***@" in shown
    with pytest.raises(SetupMismatchError) as err:
        Index.open(url, embedder=PixelEmbedder(model="another"))
    assert secret not in str(err.value) and "***" in str(err.value)
    # errors: a database that does not exist, a server that does not answer
    missing = url.replace("/lookalike_test_", "/no_such_db_", 1)
    with pytest.raises(StoreError, match="cannot connect") as err:
        Index.open(missing)
    assert secret not in str(err.value)
    with pytest.raises(StoreError) as err:
        open_store(f"postgresql://ann:{secret}@127.0.0.1:1/photos?connect_timeout=2")
    assert secret not in str(err.value) and "ann:***@127.0.0.1:1/photos" in str(err.value)
    query_form = pg_url.replace("?", f"?password={secret}&", 1)
    with Index.open(query_form, embedder=PixelEmbedder()) as idx:
        assert secret not in idx.info()["db"] and "password=***" in idx.info()["db"]
    monkeypatch.setenv("PGPASSWORD", secret)
    with pytest.raises(StoreError) as err:
        open_store(f"postgresql://ann@127.0.0.1:1/{secret}")  # even where it has no business
    assert secret not in str(err.value)


def test_missing_driver_names_the_extra(monkeypatch, pg_url):
    import sys

    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg -> ImportError
    with pytest.raises(MissingDependencyError, match=r"lookalike\[postgres\]"):
        Index.open(pg_url)


def test_a_dropped_connection_rolls_back_its_batch_and_the_next_call_reconnects(
    pg_url, monkeypatch
):
    from lookalike.errors import StoreWriteError
    from lookalike.store import _pg_sql

    store = open_store(pg_url)
    v = np.eye(4, dtype=np.float32)
    store.write(WriteBatch(upserts=[(b"/a/0.jpg", 1, 1, None, v[0])]))
    g = store.generation()
    # The batch's last statement kills its own connection, after its upserts ran.
    monkeypatch.setattr(
        _pg_sql, "CLEAR_FAILURES", "SELECT pg_terminate_backend(pg_backend_pid()), %s::bytea[]"
    )
    batch = WriteBatch(
        upserts=[(b"/a/1.jpg", 1, 1, None, v[1]), (b"/a/2.jpg", 1, 1, None, v[2])],
        deletes=[1],
        clear_failures=[b"/a/1.jpg"],
    )
    with pytest.raises(StoreWriteError, match="rolled back"):
        store.write(batch)
    monkeypatch.undo()
    assert store.count() == 1 and store.generation() == g  # reconnected; nothing landed
    store.write(batch)  # the run resumes
    assert sorted(store.files_under(b"/a")) == [b"/a/1.jpg", b"/a/2.jpg"]
    store.close()


def test_generation_id_changes_with_every_vector_commit(pg_url):
    store = open_store(pg_url)
    g0, id0 = store.head()
    assert id0 and len(id0) == 32
    r = store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, np.ones(4, np.float32) / 2)]))
    assert (r.previous_generation_id, r.generation) == (id0, g0 + 1)
    assert store.head() == (g0 + 1, r.generation_id) and r.generation_id != id0
    r2 = store.write(WriteBatch(failures=[(b"/a/x.jpg", 0, 0, "empty", "")]))
    assert r2.generation_id == r.generation_id  # no vector changed
    # the net effect: replaced then deleted in one batch is removed, not added
    (image_id,) = r.added_ids.tolist()
    r3 = store.write(
        WriteBatch(
            upserts=[(b"/a/1.jpg", 2, 2, None, np.ones(4, np.float32) / 2)], deletes=[image_id]
        )
    )
    assert r3.added_ids.tolist() == [] and r3.removed_ids.tolist() == [image_id]
    store.close()


def test_check_reports_damage_and_foreign_tables_are_refused(pg_url):
    store = open_store(pg_url)
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, np.ones(4, np.float32) / 2)]))
    assert store.integrity_check() == "ok"
    store._conn().execute(
        "INSERT INTO lookalike_images(path, size, mtime_ns, embedding, indexed_at) "
        "VALUES ('\\x2f622e6a7067', 1, 1, '[1,2,3]', 0)"
    )
    assert "dimension 4" in store.integrity_check()
    store._conn().execute("DROP TABLE lookalike_failures")
    store._conn().execute("CREATE TABLE lookalike_failures (name text)")
    store.close()
    with pytest.raises(StoreError, match="cannot use"):
        open_store(pg_url)


def test_privileges_needed_are_spelled_out(pg_url, pg_server):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS lookalike_plain")
        admin.execute("CREATE ROLE lookalike_plain LOGIN")
    plain = pg_url.replace("postgres:@", "lookalike_plain:@", 1)
    with pytest.raises(StoreError, match="CREATE EXTENSION vector"):
        open_store(plain)  # pgvector is not a trusted extension: a superuser installs it
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("CREATE EXTENSION vector")
        admin.execute("GRANT CREATE ON SCHEMA public TO lookalike_plain")
    store = open_store(plain)  # then CREATE on the schema is all the user needs
    store.write(WriteBatch(upserts=[(b"/a/1.jpg", 1, 1, None, np.ones(4, np.float32) / 2)]))
    assert store.count() == 1
    store.close()
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP OWNED BY lookalike_plain CASCADE")
        admin.execute("DROP ROLE lookalike_plain")


def test_a_user_with_select_only_can_read_an_index(pg_url):
    import psycopg

    x = clustered(50, 16)
    with Index.open(pg_url) as idx:
        idx.add_embeddings([f"/p/{i}.jpg" for i in range(50)], x)
    with psycopg.connect(pg_url, autocommit=True) as admin:
        admin.execute("DROP ROLE IF EXISTS lookalike_reader")
        admin.execute("CREATE ROLE lookalike_reader LOGIN")
        admin.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO lookalike_reader")
    reader = pg_url.replace("postgres:@", "lookalike_reader:@", 1)
    try:
        with Index.open(reader, create=False) as idx:  # nothing to create or write
            assert idx.info()["images"] == 50
            hits = idx.search_vector(x[7], k=3)
            assert hits[0].path == "/p/7.jpg"
        # Writing is refused by the server, cleanly.
        with pytest.raises(StoreError), Index.open(reader) as idx:
            idx.add_embeddings(["/p/new.jpg"], x[:1])
    finally:
        with psycopg.connect(pg_url, autocommit=True) as admin:
            admin.execute("DROP OWNED BY lookalike_reader CASCADE")
            admin.execute("DROP ROLE lookalike_reader")


def test_duplicates_are_the_same_from_sqlite_and_postgres(tmp_path, pg_url):
    rng = np.random.default_rng(3)
    base = clustered(30, seed=3)
    near = base[:5] + 0.01 * rng.standard_normal((5, 64)).astype(np.float32)
    vecs = np.concatenate([base, near])
    paths = [tmp_path / f"d/{i}.jpg" for i in range(35)]
    groups = []
    for location in (tmp_path / "i.db", pg_url):
        with Index.open(location) as idx:
            idx.add_embeddings(paths, vecs)
            found = idx.duplicates(threshold=0.95, calibrate=False)
            groups.append(sorted(sorted([g.keep, *(m.path for m in g.others)]) for g in found))
    assert groups[0] == groups[1] and len(groups[1]) >= 5
