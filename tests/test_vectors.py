"""Exact search and the vector cache, on small seeded data, against a numpy reference."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lookalike.errors import ConfigError
from lookalike.vectors import MemorySource, VectorCache, VectorSearch, exact_search
from lookalike.vectors import cache as cache_mod


def clustered(n: int, dim: int, seed: int = 0, clusters: int = 50) -> np.ndarray:
    """float32 (n, dim) unit vectors around a few non-negative centres."""
    rng = np.random.default_rng(seed)
    centres = np.abs(rng.standard_normal((clusters, dim)))
    x = centres[rng.integers(0, clusters, n)] + 0.4 * rng.standard_normal((n, dim))
    x = np.maximum(x, 0).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def brute(matrix, ids, q, k, allowed=None):
    """Reference: full score matrix, every (id, score) pair sorted by numpy."""
    keep = ids >= 0
    if allowed is not None:
        keep &= np.isin(ids, list(allowed))
    scores = q @ matrix[keep].T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(scores, order, 1), ids[keep][order]


def assert_same(got, want, atol=1e-5):
    """``want`` may hold one column more than compared: then a last result tied with the
    next candidate (outside the window) is a tie too, not a mismatch."""
    gs, gi = got
    ws, wi = want
    n = min(ws.shape[1], gs.shape[1])
    np.testing.assert_allclose(gs[:, :n], ws[:, :n], atol=atol)
    for g, w, s in zip(gi, wi, ws, strict=True):  # ids equal except within score ties
        untied = np.r_[np.diff(s) < -1e-6, True] & np.r_[True, np.diff(s) < -1e-6]
        assert (g[:n][untied[:n]] == w[:n][untied[:n]]).all()


def source_arrays(src: MemorySource):
    parts = list(src.iter_vectors())
    if not parts:
        return np.empty((0, src.dim() or 1), np.float32), np.empty(0, np.int64)
    return np.concatenate([p[1] for p in parts]), np.concatenate([p[0] for p in parts])


# --- exact search -------------------------------------------------------------------------
@pytest.mark.parametrize("chunk_rows", [None, 7, 256])
@pytest.mark.parametrize("nq", [1, 5])
def test_exact_matches_brute_force(chunk_rows, nq):
    x = clustered(1500, 64, seed=1)
    ids = np.arange(1500, dtype=np.int64) * 3 + 11
    q = clustered(nq, 64, seed=2)
    got = exact_search(x, ids, q, 10, chunk_rows=chunk_rows)
    assert got[0].shape == (nq, 10) and got[0].dtype == np.float32
    assert got[1].dtype == np.int64
    assert (np.diff(got[0], axis=1) <= 0).all()
    assert_same(got, brute(x, ids, q, 10))


def test_exact_pads_when_k_exceeds_rows():
    x = clustered(5, 16)
    scores, ids = exact_search(x, np.arange(5), x[0], k=8)
    assert (ids[0, :5] >= 0).all() and (ids[0, 5:] == -1).all()
    assert np.isneginf(scores[0, 5:]).all() and np.isfinite(scores[0, :5]).all()


def test_exact_allow_and_exclude():
    x = clustered(600, 32, seed=3)
    ids = np.arange(600, dtype=np.int64)
    q = x[:3]
    allow = np.arange(0, 600, 7, dtype=np.int64)
    got = exact_search(x, ids, q, 5, allow=allow, exclude={0, 7, 14}, chunk_rows=50)
    assert np.isin(got[1], allow).all()
    assert not np.isin(got[1], [0, 7, 14]).any()
    assert_same(got, brute(x, ids, q, 5, allowed=set(allow.tolist()) - {0, 7, 14}))


def test_exact_never_returns_tombstones():
    x = clustered(300, 32, seed=4)
    ids = np.arange(300, dtype=np.int64)
    ids[::2] = -1
    _scores, got = exact_search(x, ids, x[:4], 200, chunk_rows=64)
    assert set(got[got >= 0].tolist()) <= set(range(1, 300, 2))
    assert (got[:, 150:] == -1).all()  # only 150 live rows


def test_exact_release_called_per_chunk():
    x = clustered(100, 8)
    seen = []
    exact_search(
        x, np.arange(100), x[0], 3, chunk_rows=30, release=lambda a, b: seen.append((a, b))
    )
    assert seen == [(0, 30), (30, 60), (60, 90), (90, 100)]


@pytest.mark.parametrize(
    "q, k",
    [
        (np.zeros((2, 9), np.float32), 3),
        (np.zeros(8, np.float32), 0),
        (np.full(8, np.nan, np.float32), 1),
        (np.zeros((1, 2, 8), np.float32), 1),
    ],
)
def test_exact_rejects_bad_input(q, k):
    with pytest.raises(ConfigError):
        exact_search(clustered(10, 8), np.arange(10), q, k)


# --- the cache -----------------------------------------------------------------------------
@pytest.fixture()
def filled():
    src = MemorySource()
    x = clustered(2000, 64, seed=5)
    src.put(np.arange(1, 2001), x)
    return src, x


def test_empty_source_gives_no_columns(tmp_path):
    # k is capped at the stored vectors (#20): nothing stored, nothing padded.
    vs = VectorSearch(tmp_path / "c", MemorySource())
    scores, ids = vs.search(np.ones(16, np.float32), 4)
    assert ids.shape == (1, 0) and scores.shape == (1, 0)
    assert vs.info()["rows"] == 0


def test_open_writes_files_and_maps_them(tmp_path, filled):
    src, x = filled
    c = VectorCache.open(tmp_path / "c", src)
    state = json.loads((tmp_path / "c" / "state.json").read_text())
    assert state["generation"] == src.generation() and state["rows"] == 2000 and state["dim"] == 64
    assert (tmp_path / "c" / "vectors.f32").stat().st_size == 2000 * 64 * 4
    assert c.matrix.shape == (2000, 64) and not c.matrix.flags.writeable
    np.testing.assert_array_equal(c.matrix, x)
    epoch = c.epoch
    again = VectorCache.open(tmp_path / "c", src)  # matching generation: mapped, not rebuilt
    assert again.epoch == epoch


def test_generation_mismatch_rebuilds(tmp_path, filled):
    src, x = filled
    vs = VectorSearch(tmp_path / "c", src, ann="off")
    vs.search(x[0], 3)
    epoch = vs.info()["epoch"]
    new = clustered(1, 64, seed=99)
    src.put([5000], new)  # committed without notify: the cache must not be trusted
    scores, ids = vs.search(new[0], 1)
    assert ids[0, 0] == 5000 and scores[0, 0] == pytest.approx(1.0, abs=1e-5)
    assert vs.info()["epoch"] != epoch


def test_apply_add_update_delete_matches_brute_force(tmp_path):
    rng = np.random.default_rng(7)
    src = MemorySource(dim=48)
    vs = VectorSearch(tmp_path / "c", src, ann="off")
    pool = clustered(3000, 48, seed=8)
    next_id, statuses = 1, []
    for step in range(12):
        existing = np.array(sorted(src._vectors), dtype=np.int64)
        new_ids = np.arange(next_id, next_id + rng.integers(20, 200))
        next_id = int(new_ids[-1]) + 1
        updated = (
            rng.choice(existing, min(len(existing), 15), replace=False) if len(existing) else []
        )
        removed = rng.choice(existing, min(len(existing), 25), replace=False) if step % 3 else []
        removed = np.setdiff1d(removed, updated)
        added = np.r_[new_ids, updated].astype(np.int64)
        vecs = pool[rng.integers(0, len(pool), len(added))]
        gen, prev = src.put(added, vecs, remove=removed)
        vs.notify(added, vecs, np.asarray(removed, np.int64), gen, prev)
        statuses.append(vs._cache.info()["generation"] == gen)
        matrix, ids = source_arrays(src)
        q = pool[rng.integers(0, len(pool), 3)]
        assert_same(vs.search(q, 10, exact=True), brute(matrix, ids, q, 11))
    assert all(statuses)


def test_notify_after_missed_commit_is_stale_then_rebuilt(tmp_path, filled):
    src, x = filled
    vs = VectorSearch(tmp_path / "c", src, ann="off")
    vs.search(x[0], 1)
    src.put([9001], x[:1])  # a commit nobody told the cache about
    v = clustered(1, 64, seed=42)
    gen, prev = src.put([9002], v)
    assert vs._cache.apply(np.array([9002]), v, np.empty(0), gen, prev) == "stale"
    assert vs.search(v[0], 1)[1][0, 0] == 9002  # rebuilt from the source on the next search
    assert 9001 in vs._cache.ids


def test_crash_between_commit_and_state_rebuilds(tmp_path, filled, monkeypatch):
    src, _x = filled
    c = VectorCache.open(tmp_path / "c", src)
    epoch = c.epoch
    v = clustered(3, 64, seed=77)
    gen, prev = src.put([7001, 7002, 1], v, remove=[2])

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed after the data files, before state.json")

    monkeypatch.setattr(cache_mod.CacheState, "write", crash)
    with pytest.raises(KeyboardInterrupt):
        c.apply(np.array([7001, 7002, 1]), v, np.array([2]), gen, prev)
    monkeypatch.undo()
    reopened = VectorCache.open(tmp_path / "c", src)
    assert reopened.epoch != epoch and reopened.generation == gen
    matrix, ids = source_arrays(src)
    got = exact_search(reopened.matrix, reopened.ids, v, 5)
    assert_same(got, brute(matrix, ids, v, 5))


def test_torn_state_rebuilds(tmp_path, filled):
    src, _ = filled
    c = VectorCache.open(tmp_path / "c", src)
    (tmp_path / "c" / "state.json").write_text('{"format": 1, "generat')
    assert VectorCache.open(tmp_path / "c", src).epoch != c.epoch
    (tmp_path / "c" / "vectors.f32").write_bytes(b"short")
    (tmp_path / "c" / "state.json").write_text(
        json.dumps(
            {"format": 1, "generation": src.generation(), "rows": 2000, "dim": 64, "epoch": "x"}
        )
    )
    assert VectorCache.open(tmp_path / "c", src).matrix.shape == (2000, 64)


def test_compaction_when_tombstones_pass_30_percent(tmp_path, filled):
    src, x = filled
    c = VectorCache.open(tmp_path / "c", src)
    epoch = c.epoch
    gone = np.arange(1, 501)
    gen, prev = src.put([], np.empty((0, 64)), remove=gone)
    assert c.apply(np.empty(0), np.empty((0, 64)), gone, gen, prev) == "applied"
    assert c.tombstones == 500 and c.epoch == epoch
    gone = np.arange(501, 701)
    gen, prev = src.put([], np.empty((0, 64)), remove=gone)
    assert c.apply(np.empty(0), np.empty((0, 64)), gone, gen, prev) == "compacted"
    assert c.tombstones == 0 and c.rows == 1300 and c.epoch != epoch
    np.testing.assert_array_equal(c.ids, np.arange(701, 2001))
    np.testing.assert_array_equal(c.matrix, x[700:])


def test_reader_keeps_its_snapshot_while_a_writer_appends(tmp_path, filled):
    src, _x = filled
    reader = VectorCache.open(tmp_path / "c", src)
    writer = VectorCache.open(tmp_path / "c", src)
    v = clustered(10, 64, seed=3)
    gen, prev = src.put(np.arange(3001, 3011), v)
    assert writer.apply(np.arange(3001, 3011), v, np.empty(0), gen, prev) == "applied"
    assert reader.rows == 2000  # its own snapshot until it syncs
    assert reader.ensure_current() and reader.rows == 2010
    assert reader.epoch == writer.epoch  # re-mapped, not rebuilt


def test_allow_small_and_large_match_brute_force(tmp_path, filled):
    src, x = filled
    vs = VectorSearch(tmp_path / "c", src, ann="off")
    ids = np.arange(1, 2001)
    q = x[[3, 500]]
    for allow in (np.arange(1, 2001, 10), np.arange(1, 1800)):
        got = vs.search(q, 7, allow=allow, exclude=np.array([4, 501]))
        assert_same(got, brute(x, ids, q, 7, allowed=set(allow.tolist()) - {4, 501}))
    assert (vs.search(q, 3, allow=np.array([99999]))[1] == -1).all()


def test_release_keeps_results(tmp_path, filled):
    src, x = filled
    c = VectorCache.open(tmp_path / "c", src)
    c.release(0, c.rows)  # pages dropped from the process come back from the page cache
    rows = np.array([0, 1, 2, 10, 11, 500, 1999])  # runs of consecutive rows: one read each
    np.testing.assert_array_equal(c.gather(rows), x[rows])
    np.testing.assert_array_equal(c.gather(np.array([7, 3])), x[[7, 3]])
    with pytest.raises(IndexError):
        c.gather(np.array([2000]))
