"""The engine end to end with a fake embedder: incremental runs, search, promises."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
from fakes import PixelEmbedder
from PIL import Image

from lookalike import Index
from lookalike.errors import (
    ConfigError,
    NothingIndexedError,
    SetupMismatchError,
    SourceUnavailableError,
)


def photo(path, seed, size=(64, 48)):
    """A smooth random colour image (distinct per seed)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (3, 4, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize(size, Image.BILINEAR)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "photos"
    for i in range(12):
        photo(d / f"img{i:02d}.png", i)
    photo(d / "sub" / "deep.png", 100)
    return d


def open_index(tmp_path, embedder=None, **kw):
    return Index.open(tmp_path / "idx.db", embedder=embedder or PixelEmbedder(), workers=0, **kw)


def test_first_run_then_unchanged_does_no_work(tmp_path, folder):
    emb = PixelEmbedder()
    with open_index(tmp_path, emb) as idx:
        r = idx.update(folder)
        assert (r.added, r.updated, r.removed, r.unchanged, r.failed) == (13, 0, 0, 0, [])
        assert r.embedded == emb.embedded == 13
        assert r.images_per_second > 0
        r2 = idx.update(folder)
        assert (r2.added, r2.unchanged, r2.embedded) == (0, 13, 0)
        assert emb.embedded == 13


def test_changed_deleted_renamed_copied(tmp_path, folder):
    emb = PixelEmbedder()
    with open_index(tmp_path, emb) as idx:
        idx.update(folder)
        before = idx._store.lookup(os.fsencode(folder / "img01.png"))
        photo(folder / "img00.png", 999)  # changed content
        os.utime(folder / "img00.png", ns=(1, 1))
        (folder / "img02.png").unlink()  # deleted
        os.rename(folder / "img01.png", folder / "renamed.png")  # renamed
        shutil.copy(folder / "img03.png", folder / "copy_of_3.png")  # identical copy
        emb.embedded = 0
        r = idx.update(folder)
        assert r.updated == 1 and emb.embedded == 1  # only the changed file is embedded
        assert r.reused == 2
        assert idx._store.lookup(os.fsencode(folder / "img02.png")) is None
        assert idx._store.lookup(os.fsencode(folder / "img01.png")) is None
        moved = idx._store.lookup(os.fsencode(folder / "renamed.png"))
        assert moved[0].id == before[0].id  # same record, vector reused
        np.testing.assert_array_equal(moved[1], before[1])
        assert idx._store.count() == 13


def test_touch_without_change_reuses_vector(tmp_path, folder):
    emb = PixelEmbedder()
    with open_index(tmp_path, emb) as idx:
        idx.update(folder)
        os.utime(folder / "img04.png", ns=(10**18, 10**18))
        emb.embedded = 0
        r = idx.update(folder)
        assert emb.embedded == 0 and r.reused == 1 and r.updated == 1


def test_identical_copy_ranks_first_and_query_is_never_its_own_result(tmp_path, folder):
    shutil.copy(folder / "img05.png", folder / "twin.png")
    with open_index(tmp_path) as idx:
        idx.update(folder)
        hits = idx.search(folder / "img05.png", k=5)
        assert hits[0].path == str(folder / "twin.png")
        assert hits[0].score >= 0.999
        assert str(folder / "img05.png") not in [h.path for h in hits]
        assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
        assert all(a.score >= b.score for a, b in itertools.pairwise(hits))


def test_search_equals_brute_force_reference(tmp_path, folder):
    with open_index(tmp_path) as idx:
        idx.update(folder)
        ids, vecs = next(idx._store.iter_vectors())
        paths = idx._store.paths_for(ids.tolist())
        q = np.random.default_rng(7).standard_normal(vecs.shape[1]).astype(np.float32)
        q /= np.linalg.norm(q)
        ref = np.argsort(-(vecs @ q))[:6]
        hits = idx.search_vector(q, k=6)
        assert [h.path for h in hits] == [os.fsdecode(paths[int(ids[i])]) for i in ref]
        np.testing.assert_allclose([h.score for h in hits], (vecs @ q)[ref], rtol=1e-5)


def test_query_outside_index_and_folder_filter(tmp_path, folder):
    outside = photo(tmp_path / "elsewhere" / "q.png", 3)  # same pixels as img03
    with open_index(tmp_path) as idx:
        idx.update(folder)
        hits = idx.search(outside, k=3)
        assert hits[0].path == str(folder / "img03.png") and hits[0].score >= 0.999
        sub = idx.search(outside, k=3, folder=folder / "sub")
        assert [h.path for h in sub] == [str(folder / "sub" / "deep.png")]


def test_missing_folder_is_an_error_and_deletes_nothing(tmp_path, folder):
    with open_index(tmp_path) as idx:
        idx.update(folder)
        moved = tmp_path / "unmounted"
        os.rename(folder, moved)
        with pytest.raises(SourceUnavailableError, match="does not exist"):
            idx.update(folder)
        folder.mkdir()  # an empty mount point
        with pytest.raises(SourceUnavailableError, match="empty"):
            idx.update(folder)
        assert idx._store.count() == 13


def test_every_file_failing_is_its_own_error(tmp_path):
    d = tmp_path / "bad"
    d.mkdir()
    (d / "a.jpg").write_bytes(b"not an image")
    (d / "b.png").write_bytes(b"")
    with open_index(tmp_path) as idx:
        with pytest.raises(NothingIndexedError) as err:
            idx.update(d)
        assert {f.reason for f in err.value.report.failed} == {"not-an-image", "empty"}


def test_failures_are_recorded_and_shown_in_info(tmp_path, folder):
    (folder / "broken.jpg").write_bytes(b"plain text, not an image")
    with open_index(tmp_path) as idx:
        r = idx.update(folder)
        assert [(os.path.basename(f.path), f.reason) for f in r.failed] == [
            ("broken.jpg", "not-an-image")
        ]
        info = idx.info()
        assert [os.path.basename(f["path"]) for f in info["failed"]] == ["broken.jpg"]
        # unchanged broken file: reported again, not retried; fixed file: indexed, failure cleared
        assert len(idx.update(folder).failed) == 1
        photo(folder / "broken.jpg", 5)
        os.utime(folder / "broken.jpg", ns=(7, 7))
        r3 = idx.update(folder)
        assert r3.failed == [] and idx.info()["failed"] == []


def test_setup_mismatch_is_a_clear_error(tmp_path, folder):
    with open_index(tmp_path) as idx:
        idx.update(folder)
    with pytest.raises(SetupMismatchError, match="model"):
        open_index(tmp_path, PixelEmbedder(model="other-model"))
    with pytest.raises(SetupMismatchError, match="dim"):
        open_index(tmp_path, PixelEmbedder(side=8))


def test_add_embeddings_and_search_vector(tmp_path):
    rng = np.random.default_rng(0)
    v = rng.standard_normal((50, 32)).astype(np.float32)
    with Index.open(tmp_path / "v.db") as idx:
        idx.add_embeddings([f"/data/{i}.jpg" for i in range(50)], v * 3)
        hits = idx.search_vector(v[7], k=3)
        assert hits[0].path == "/data/7.jpg" and hits[0].score == pytest.approx(1.0, abs=1e-5)
        with pytest.raises(ConfigError):
            idx.add_embeddings(["/x.jpg"], np.zeros((1, 32)))
        with pytest.raises(ConfigError):
            idx.search_vector(v[0][:10])


def test_open_add_and_search_never_import_torch(tmp_path):
    code = (
        "import sys, numpy as np\n"
        "from lookalike import Index\n"
        f"idx = Index.open({str(tmp_path / 'n.db')!r}, model='resnet50')\n"
        "idx.add_embeddings(['/a.jpg', '/b.jpg'], np.eye(2, 8, dtype=np.float32))\n"
        "assert idx.search_vector(np.eye(1, 8)[0], k=1)[0].path == '/a.jpg'\n"
        "idx.close()\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "assert 'timm' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def brute_force_paths(idx, q, k, exclude=()):
    """Top ``k`` (path, score) over every stored vector, by numpy."""
    ids, vecs = next(idx._store.iter_vectors())
    scores = vecs @ (q / np.linalg.norm(q))
    keep = ~np.isin(ids, list(exclude))
    ids, scores = ids[keep], scores[keep]
    order = np.argsort(-scores, kind="stable")[:k]
    paths = idx._store.paths_for(ids[order].tolist())
    return [(os.fsdecode(paths[int(ids[i])]), float(scores[i])) for i in order]


def test_deleted_cache_is_rebuilt_in_sync(tmp_path, folder):
    with open_index(tmp_path) as idx:
        idx.update(folder)
    shutil.rmtree(tmp_path / "idx.db.cache")
    photo(folder / "new.png", 555)
    (folder / "img03.png").unlink()
    with open_index(tmp_path) as idx:
        idx.update(folder)
        assert idx._store.count() == 13
        # Everything, not only what changed since the cache went: the same ids and scores
        # as the store itself, for k below the count, including the newest image.
        new_vec = idx._store.lookup(os.fsencode(folder / "new.png"))[1]
        for q in (np.ones(16 * 16 * 3, np.float32), new_vec, -new_vec):
            hits = idx.search_vector(q, k=5)
            want = brute_force_paths(idx, q, 5)
            assert [h.path for h in hits] == [p for p, _ in want]
            np.testing.assert_allclose([h.score for h in hits], [s for _, s in want], atol=1e-5)
        assert idx.search_vector(new_vec, k=1)[0].path == str(folder / "new.png")


def test_changed_weights_file_is_detected_without_rehashing_an_unchanged_one(
    tmp_path, folder, tiny_weights, monkeypatch
):
    import lookalike.embed as embed

    w = tmp_path / "w.safetensors"
    shutil.copy(tiny_weights, w)
    fake = PixelEmbedder()
    fp = embed.weights_fingerprint(embed.EmbedderOptions(weights=str(w)))
    fake.setup = fake.setup.__class__(**{**fake.setup.__dict__, "weights": fp})
    Index.open(tmp_path / "w.db", embedder=fake, weights=w, workers=0).close()
    calls = []
    real = embed.weights_fingerprint
    monkeypatch.setattr(embed, "weights_fingerprint", lambda o: calls.append(1) or real(o))
    Index.open(tmp_path / "w.db", weights=w).close()
    assert calls == []  # same file, same size and mtime: not hashed again
    with open(w, "r+b") as f:  # same size, new content and mtime
        f.seek(-4, 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.raises(SetupMismatchError, match="weights"):
        Index.open(tmp_path / "w.db", weights=w)


def test_search_on_an_emptied_index_returns_nothing(tmp_path):
    with Index.open(tmp_path / "e.db") as idx:
        idx.add_embeddings(["/data/a.jpg"], np.ones((1, 8), np.float32))
        assert idx.remove("/data") == 1
        assert idx.search_vector(np.ones(8), k=3) == []


def test_remove_forgets_one_folder_counts_it_and_keeps_the_rest(tmp_path, folder):
    other = tmp_path / "other"
    for i in range(4):
        photo(other / f"o{i}.png", 200 + i)
    with open_index(tmp_path) as idx:
        idx.update(folder, other)
        assert idx.info()["folders"] == sorted([str(folder), str(other)])
        q = idx._store.lookup(os.fsencode(folder / "img00.png"))[1]  # a removed image
        assert idx.remove(folder) == 13
        info = idx.info()
        assert info["images"] == 4 and info["folders"] == [str(other)]
        # Not through the emptiness shortcut: the cache must have dropped the removed rows
        # (a stale row would take a slot of the k and be dropped, leaving fewer hits).
        hits = idx.search_vector(q, k=3)
        assert [(h.path, round(h.score, 5)) for h in hits] == [
            (p, round(s, 5)) for p, s in brute_force_paths(idx, q, 3)
        ]
        assert all(h.path.startswith(str(other) + os.sep) for h in hits)
        assert idx.remove(tmp_path / "never") == 0
    with open_index(tmp_path) as idx:  # and in a later process, from the cache on disk
        assert len(idx.search_vector(q, k=3)) == 3
        assert idx.search_vector(q, k=10, folder=folder) == []


@pytest.mark.parametrize(
    ("size", "mean", "pools"),
    [((24, 24), (0.5, 0.5, 0.5), 2), ((16, 16), (0.1, 0.2, 0.3), 1)],
)
def test_a_stale_preprocessing_guess_decodes_again(tmp_path, monkeypatch, size, mean, pools):
    """Decoding starts before the model loads, with the preprocessing an earlier run
    remembered; if the model turns out to want other pixels, the files are decoded again
    (a guess that differs only in normalisation gives the same pixels: no second pass)."""
    import dataclasses

    from fakes import make_photos

    import lookalike.pipeline as pipeline
    from lookalike.index.model import Model

    photos = make_photos(tmp_path / "p", 5)
    emb = PixelEmbedder()
    guess = dataclasses.replace(emb.setup.preprocess, size=size, mean=mean)
    monkeypatch.setattr(Model, "expected_preprocess", lambda self: guess)
    started = []

    class CountingPool(pipeline.DecodePool):
        def __init__(self, *a, **kw):
            started.append(a[0])
            super().__init__(*a, **kw)

    monkeypatch.setattr(pipeline, "DecodePool", CountingPool)
    with Index.open(tmp_path / "i.db", embedder=emb, workers=1) as idx:
        report = idx.update(photos)
        assert (report.added, report.failed) == (5, [])
        assert len(started) == pools
        for p in sorted(photos.iterdir()):
            (hit,) = idx.search_vector(idx.embed(p), k=1)  # embed decodes here, correctly
            assert hit.path == str(p) and hit.score == pytest.approx(1.0, abs=1e-5)
