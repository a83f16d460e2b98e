"""A huge ``k`` is capped at the index size at every entry point (#20 item 6): before,
``search -k 1000000000`` padded a billion rows (400 s, 11.9 GB) and ``-k`` beyond 64 bits
was a traceback."""

from __future__ import annotations

import os
import resource
import subprocess
import sys
import time

import numpy as np
import pytest
from fakes import make_photos

from lookalike import Index
from lookalike.vectors import MemorySource, VectorSearch
from lookalike.vectors.exact import exact_search

HUGE = [10**9, 99999999999999999999]


@pytest.fixture
def small_index(tmp_path):
    folder = make_photos(tmp_path / "photos", 7)
    paths = sorted(str(p) for p in folder.iterdir())
    db = tmp_path / "x.db"
    vecs = np.random.default_rng(0).normal(size=(len(paths), 16)).astype(np.float32)
    with Index.open(db) as idx:
        idx.add_embeddings(paths, vecs)
    return db, paths, vecs


@pytest.mark.parametrize("k", HUGE)
def test_api_search_caps_k_at_the_index_size(small_index, k):
    db, paths, vecs = small_index
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.monotonic()
    with Index.open(db, create=False) as idx:
        assert len(idx.search(paths[0], k=k)) == 6  # never the query itself
        assert len(idx.search_vector(vecs[0], k=k)) == 7
        assert len(idx.search_vector(vecs[0], k=k, exact=True)) == 7
        assert len(idx.similar_to_id(1, k=k)) == 6
        assert len(idx.search_vector(vecs[0], k=k, folder=os.path.dirname(paths[0]))) == 7
    assert time.monotonic() - start < 10
    grown_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kib < 200_000  # a padded 10**9 rows would be gigabytes


@pytest.mark.parametrize("k", [0, -1, True, 2.5])
def test_api_search_rejects_a_k_that_is_not_a_count(small_index, k):
    from lookalike.errors import ConfigError

    db, _paths, vecs = small_index
    with Index.open(db, create=False) as idx, pytest.raises(ConfigError):
        idx.search_vector(vecs[0], k=k)


@pytest.mark.parametrize("k", HUGE)
def test_vector_search_caps_k(tmp_path, k):
    src = MemorySource()
    x = np.random.default_rng(1).normal(size=(5, 8)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    src.put(np.arange(1, 6), x)
    vs = VectorSearch(tmp_path / "c", src)
    _scores, ids = vs.search(x[0], k)
    assert ids.shape == (1, 5) and sorted(ids[0].tolist()) == [1, 2, 3, 4, 5]
    _scores, ids = vs.search(x[0], k, allow=np.array([2, 3]))
    assert ids.shape == (1, 5) and sorted(ids[0][:2].tolist()) == [2, 3]
    assert (ids[0][2:] == -1).all()
    vs.close()
    assert exact_search(x, np.arange(5), x[0], k)[1].shape == (1, 5)


@pytest.mark.parametrize("k", ["1000000000", "99999999999999999999"])
def test_cli_search_huge_k_prints_every_image_quickly(small_index, k):
    db, paths, _vecs = small_index
    start = time.monotonic()
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", "search", paths[0], "--db", str(db), "-k", k],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    assert "Traceback" not in p.stderr
    assert len([ln for ln in p.stdout.splitlines() if ln.strip()[:1].isdigit()]) == 6
    assert time.monotonic() - start < 60
