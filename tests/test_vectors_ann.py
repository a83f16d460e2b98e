"""The approximate index, judged by recall against exact search on seeded clustered data."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from lookalike.errors import MissingDependencyError
from lookalike.vectors import AnnConfig, MemorySource, VectorSearch

DIM = 128
N = 12_000


def clustered(n: int, dim: int = DIM, seed: int = 0, clusters: int = 300) -> np.ndarray:
    """float32 (n, dim) unit vectors: non-negative centres, structured spread, a little noise.

    Within-cluster variation lives in a few directions per cluster (as near-duplicate photos
    differ in a few ways), so a PCA keeps most of what ranks neighbours.
    """
    rng = np.random.default_rng(1000)  # centres and directions shared by every call
    centres = np.abs(rng.standard_normal((clusters, dim)))
    basis = rng.standard_normal((16, dim)) * np.linspace(1.0, 0.2, 16)[:, None]
    rng = np.random.default_rng(seed)
    x = centres[rng.integers(0, clusters, n)] + 0.5 * rng.standard_normal((n, 16)) @ basis
    x += 0.01 * rng.standard_normal((n, dim))
    x = np.maximum(x, 0).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def recall(got: np.ndarray, want: np.ndarray) -> float:
    return float(np.mean([len(set(g) & set(w)) / len(w) for g, w in zip(got, want, strict=True)]))


def make(tmp_path, kind="pca-ivf", pq_m=32, **kw):
    src = MemorySource()
    src.put(np.arange(1, N + 1), clustered(N))
    config = AnnConfig(kind=kind, pca_dim=64, train_rows=8000, tune_queries=50, pq_m=pq_m)
    vs = VectorSearch(tmp_path / "c", src, ann="on", ann_kind=kind, ann_config=config, **kw)
    return src, vs


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    src, vs = make(tmp_path_factory.mktemp("ann"))
    stats = vs.build_ann()
    return src, vs, stats


QUERIES = clustered(100, seed=123)


def test_build_stats_and_files(built):
    _src, vs, stats = built
    assert stats["built"] and stats["rows"] == N and stats["kind"] == "pca-ivf"
    assert stats["memory_bytes"] > 0 and stats["nprobe"] >= 1 and stats["pca_dim"] == 64
    assert (vs.directory / "ann.faiss").exists() and (vs.directory / "ann.json").exists()
    info = vs.info()
    assert info["ann"]["present"] and info["ann"]["rows"] == N


def test_ann_recall_at_10(built):
    _src, vs, stats = built
    _, want = vs.search(QUERIES, 10, exact=True)
    scores, got = vs.search(QUERIES, 10)
    assert recall(got, want) >= 0.95, stats
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_persisted_ann_reloads_identically(built):
    src, vs, _ = built
    again = VectorSearch(vs.directory, src, ann="on", ann_config=vs.ann_config)
    a, b = vs.search(QUERIES[:5], 10), again.search(QUERIES[:5], 10)
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[0], b[0])
    assert (
        again._keeper.ann is not None and again._keeper.ann.build_id == vs._keeper.ann.build_id
    )  # loaded, not built
    assert not again._keeper.ann.writable  # memory-mapped first (cold start) ...
    for q in QUERIES[:20]:
        again.search(q, 10)
    assert again._keeper.ann.writable  # ... read into memory once the process keeps searching
    np.testing.assert_array_equal(again.search(QUERIES[:20], 10)[1], vs.search(QUERIES[:20], 10)[1])


def test_adds_are_found_and_deletes_never_returned(tmp_path):
    src, vs = make(tmp_path)
    vs.build_ann()
    build_id = vs._keeper.ann.build_id
    new = clustered(50, seed=7)
    gen, prev = src.put(np.arange(50_001, 50_051), new)
    vs.notify(np.arange(50_001, 50_051), new, np.empty(0, np.int64), gen, prev)
    _scores, ids = vs.search(new, 1)
    assert (ids[:, 0] == np.arange(50_001, 50_051)).all()  # the delta is scanned exactly
    assert vs._keeper.ann.build_id == build_id  # 50 rows: no extension yet
    _, top = vs.search(QUERIES[:10], 10)
    gone = np.unique(top[top >= 0])
    gen, prev = src.put([], np.empty((0, DIM)), remove=gone)
    vs.notify(np.empty(0, np.int64), np.empty((0, DIM), np.float32), gone, gen, prev)
    _, after = vs.search(QUERIES[:10], 10)
    assert not np.isin(after, gone).any() and (after >= 0).all()
    _, want = vs.search(QUERIES[:10], 10, exact=True)
    assert recall(after, want) >= 0.8  # the next-best neighbours are further apart


def test_large_delta_extends_the_index(tmp_path):
    src, vs = make(tmp_path)
    vs.build_ann()
    more = clustered(2000, seed=9)
    ids = np.arange(60_001, 62_001)
    gen, prev = src.put(ids, more)
    vs.notify(ids, more, np.empty(0, np.int64), gen, prev)
    _, got = vs.search(more[:5], 1)
    assert (got[:, 0] == ids[:5]).all()
    assert vs._keeper.ann.rows == N + 2000  # > 10% appended: extended, same epoch


def test_compaction_forces_rebuild(tmp_path):
    src, vs = make(tmp_path)
    vs.build_ann()
    epoch, build_id = vs._keeper.ann.epoch, vs._keeper.ann.build_id
    gone = np.arange(1, 4001)
    gen, prev = src.put([], np.empty((0, DIM)), remove=gone)
    vs.notify(np.empty(0, np.int64), np.empty((0, DIM), np.float32), gone, gen, prev)
    assert vs.info()["epoch"] != epoch and vs.info()["tombstones"] == 0
    _, got = vs.search(QUERIES[:10], 10)
    assert vs._keeper.ann.epoch == vs.info()["epoch"] and vs._keeper.ann.build_id != build_id
    assert not np.isin(got, gone).any()


def test_allow_and_exclude_with_ann(built):
    _src, vs, _ = built
    allow = np.arange(1, N + 1, 2)
    old = vs.gather_limit
    vs.gather_limit = 100  # force the filtered ANN path
    try:
        _, got = vs.search(QUERIES[:20], 10, allow=allow, exclude=np.arange(1, 200))
    finally:
        vs.gather_limit = old
    assert np.isin(got, allow).all() and not np.isin(got, np.arange(1, 200)).any()
    _, want = vs.search(QUERIES[:20], 10, exact=True, allow=allow, exclude=np.arange(1, 200))
    assert recall(got, want) >= 0.9


def test_pca_ivfpq_recall_and_size(tmp_path, built):
    _, _flat, flat_stats = built
    _src, vs = make(tmp_path, kind="pca-ivfpq", pq_m=16)  # 4 dims per code byte, as PQ64 on 256
    stats = vs.build_ann()
    _, want = vs.search(QUERIES, 10, exact=True)
    _, got = vs.search(QUERIES, 10)
    r = recall(got, want)
    print(
        f"pca-ivfpq recall@10={r:.3f} bytes={stats['memory_bytes']} vs {flat_stats['memory_bytes']}"
    )
    assert r >= 0.9
    assert stats["memory_bytes"] < flat_stats["memory_bytes"] / 2


def test_missing_faiss_names_the_package(tmp_path, monkeypatch):
    _src, vs = make(tmp_path)
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss -> ImportError
    with pytest.raises(MissingDependencyError, match="pip install faiss-cpu"):
        vs.search(QUERIES[:1], 5)
    assert vs.search(QUERIES[:1], 5, exact=True)[1].shape == (1, 5)  # exact needs no faiss


def test_faiss_is_imported_lazily():
    code = "import sys, lookalike.vectors; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_exclude_only_with_ann(built):
    _src, vs, _ = built
    _, first = vs.search(QUERIES[:5], 10)
    drop = np.unique(first[:, :3])
    _, got = vs.search(QUERIES[:5], 10, exclude=drop)
    assert not np.isin(got, drop).any() and (got >= 0).all()
    _, want = vs.search(QUERIES[:5], 10, exact=True, exclude=drop)
    assert recall(got, want) >= 0.8


def test_auto_builds_on_first_search_above_threshold(tmp_path):
    src = MemorySource()
    src.put(np.arange(1, N + 1), clustered(N))
    config = AnnConfig(pca_dim=64, train_rows=8000, tune_queries=50)
    below = VectorSearch(tmp_path / "a", src, ann_threshold=50_000, ann_config=config)
    below.search(QUERIES[:2], 5)
    assert not (tmp_path / "a" / "ann.faiss").exists()
    assert below.build_ann()["built"] is False  # below the threshold: nothing to do
    above = VectorSearch(tmp_path / "b", src, ann_threshold=5_000, ann_config=config)
    above.search(QUERIES[:2], 5)
    assert (tmp_path / "b" / "ann.faiss").exists() and above.info()["ann"]["present"]
