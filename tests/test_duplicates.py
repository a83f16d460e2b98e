"""Duplicate groups (#9) on seeded vectors: the grouping invariants, the candidate search
against brute force, keep rules, folders, sorting. No model, no images."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lookalike import ConfigError, DuplicateGroup, Index
from lookalike.duplicates import DuplicateMember, parse_keep
from lookalike.duplicates.candidates import Pairs, similar_pairs
from lookalike.duplicates.grouping import build_groups
from lookalike.duplicates.keep import FileFacts, rank_key
from lookalike.duplicates.rows import ArrayRows
from lookalike.store import SQLiteStore, WriteBatch


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


def clustered(n: int, dim: int, seed: int = 0, copies: int = 200, noise: float = 0.25):
    """Clustered unit vectors with ``copies`` planted near-duplicate pairs (rows 2k, 2k+1)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((max(1, n // 40), dim))
    x = centres[rng.integers(0, len(centres), n)] + 0.8 * rng.standard_normal((n, dim))
    x = unit(x)
    for k in range(copies):
        x[2 * k + 1] = unit(x[2 * k] + noise * rng.standard_normal(dim) / np.sqrt(dim))
    return x


def brute_pairs(x: np.ndarray, t: float) -> set[tuple[int, int]]:
    s = x @ x.T
    i, j = np.nonzero(np.triu(s >= t, 1))
    return set(zip(i.tolist(), j.tolist(), strict=True))


def fill(db: Path, vectors: np.ndarray, folder: str = "/pics") -> list[str]:
    paths = [f"{folder}/img{i:05d}.jpg" for i in range(len(vectors))]
    with Index.open(db) as idx:
        idx.add_embeddings(paths, vectors)
    return paths


def test_candidate_search_equals_brute_force_flat_and_ivf():
    x = clustered(3000, 256, copies=300)
    truth = brute_pairs(x, 0.9)
    assert len(truth) >= 250  # the planted pairs, and a few natural ones
    flat, stats = similar_pairs(ArrayRows(x), 0.9, basis_dim=32, full_below=0)
    assert stats.method == "exact" and stats.basis_dim == 33  # the bound was used
    assert set(zip(flat.i.tolist(), flat.j.tolist(), strict=True)) == truth
    ivf, stats = similar_pairs(ArrayRows(x), 0.9, basis_dim=32, flat_limit=0, full_below=0)
    assert stats.method == "ivf" and stats.basis_dim == 33
    found = set(zip(ivf.i.tolist(), ivf.j.tolist(), strict=True))
    assert found <= truth  # exact re-check: never a false pair
    assert len(found) / len(truth) >= 0.97
    # Scores are the exact cosines.
    np.testing.assert_allclose(ivf.score, np.einsum("ij,ij->i", x[ivf.i], x[ivf.j]), atol=1e-5)


def test_bound_never_misses_a_pair_with_a_tiny_basis():
    # With p=4 the bound vectors are very loose, but a flat search over them, with no cap
    # on candidates per row, still finds exactly the brute-force pairs.
    x = clustered(800, 64, copies=100, noise=0.4)
    pairs, stats = similar_pairs(ArrayRows(x), 0.85, basis_dim=4, k=len(x), full_below=0)
    assert stats.candidates >= len(pairs)
    assert set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == brute_pairs(x, 0.85)


def test_cell_join_visiting_every_cell_misses_no_pair():
    # Above flat_limit the bound vectors go through the k-means cell join; when every row
    # visits every cell and no cap applies, the join is exact: the brute-force pairs.
    x = clustered(3000, 128, copies=200, noise=0.4)
    truth = brute_pairs(x, 0.85)
    pairs, stats = similar_pairs(
        ArrayRows(x), 0.85, basis_dim=8, flat_limit=0, full_below=0, k=len(x), nprobe=10**6
    )
    assert stats.method == "ivf" and stats.candidates > len(truth) >= 200
    assert set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == truth


def test_a_group_larger_than_k_is_searched_again():
    # 40 copies of one image: every one of them has more than k=16 passing neighbours, so
    # those few rows are searched again with max_k and the whole group is found.
    rng = np.random.default_rng(4)
    x = clustered(3000, 128, copies=0)
    base = x[0]
    for r in range(1, 40):
        x[r] = unit(base + 0.02 * rng.standard_normal(128) / np.sqrt(128))
    truth = brute_pairs(x, 0.99)
    assert len(truth) >= 40 * 39 // 2
    for flat_limit in (0, 20_000):  # the cell join and the exact blocks
        pairs, _ = similar_pairs(ArrayRows(x), 0.99, flat_limit=flat_limit, full_below=0, k=16)
        found = set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True))
        assert {(i, j) for i, j in truth if j < 40} <= found


def test_groups_never_chain(tmp_path):
    # a ~ b ~ c ~ d above the threshold, a ~ c and b ~ d below it: a group is a kept file
    # and its own copies, never a copy of a copy (a and d, three links apart, or any
    # member below the threshold to the kept file). The issue's ``min_score`` reports
    # that two copies of the kept file can be further apart than the threshold.
    e = np.eye(8, dtype=np.float32)
    a = e[0]
    b = unit(e[0] + 0.45 * e[1])
    c = unit(e[0] + 0.9 * e[1])
    d = unit(e[0] + 1.6 * e[1])
    far = e[5]
    x = np.stack([a, b, c, d, far])
    assert a @ b >= 0.9 and b @ c >= 0.9 and c @ d >= 0.9
    assert a @ c < 0.9 and b @ d < 0.9 and a @ d < 0.9
    paths = fill(tmp_path / "i.db", x)
    with Index.open(tmp_path / "i.db") as idx:
        groups = idx.duplicates(threshold=0.9, calibrate=False)
    assert groups
    vec = dict(zip(paths, x, strict=True))
    for g in groups:
        members = {m.path for m in g.members}
        assert not {paths[0], paths[3]} <= members
        for m in g.members:
            assert float(vec[g.keep] @ vec[m.path]) >= 0.9 - 1e-6
            assert m.score == pytest.approx(float(vec[g.keep] @ vec[m.path]), abs=1e-5)
        lowest = min(float(vec[p] @ vec[q]) for p in members for q in members)
        assert g.min_score == pytest.approx(lowest, abs=1e-5)
    assert sum(len(g.members) for g in groups) == len({m.path for g in groups for m in g.members})


def test_the_rules_favourite_is_never_a_member_it_is_not_kept_in(tmp_path):
    # (#18, case 6) The photo h has four copies; r (first by path, the rule's favourite)
    # is a harsh one that only h is similar to. A group keeps the rule's favourite among
    # all its members: r may not sit in h's group with h kept, and built around r it
    # would take h alone and split the copies. So h keeps its four copies and r, which
    # outranks h, stays out (#9 kept h in a group holding r).
    e = np.eye(8, dtype=np.float32)
    h = e[0]
    r = unit(e[0] + 0.45 * e[1])
    copies = [unit(e[0] + 0.4 * e[k]) for k in (2, 3, 4)]
    x = np.stack([r, h, *copies])
    assert all(float(v @ r) < 0.9 for v in copies) and all(float(v @ h) >= 0.9 for v in copies)
    paths = fill(tmp_path / "i.db", x)
    with Index.open(tmp_path / "i.db") as idx:
        (g,) = idx.duplicates(threshold=0.9, keep="path", calibrate=False)
    assert {m.path for m in g.members} == set(paths[1:])
    assert g.keep == paths[1]
    # When the favourite is a copy of every member, it is kept.
    y = np.stack([h, *copies])  # h is now first by path and the centre
    with Index.open(tmp_path / "j.db") as idx:
        idx.add_embeddings([f"/pics/z{i}.jpg" for i in range(len(y))], y)
        (g,) = idx.duplicates(threshold=0.9, keep="path", calibrate=False)
    assert g.keep == "/pics/z0.jpg" and len(g.members) == 4


def test_invariants_on_clustered_data(tmp_path):
    x = clustered(4000, 128, seed=3, copies=400, noise=0.5)
    # Triples too: rows 1000.. get two copies each, to exercise larger groups.
    rng = np.random.default_rng(9)
    for k in range(1000, 1300, 3):
        for d in (1, 2):
            x[k + d] = unit(x[k] + 0.3 * rng.standard_normal(128) / np.sqrt(128))
    paths = fill(tmp_path / "i.db", x)
    t = 0.92
    with Index.open(tmp_path / "i.db") as idx:
        report = idx.duplicate_report(threshold=t, calibrate=False)
    assert report.images == len(x) and report.threshold == t
    vec = dict(zip(paths, x, strict=True))
    seen: set[str] = set()
    for g in report.groups:
        assert isinstance(g, DuplicateGroup)
        assert g.members[0].path == g.keep and g.members[0].score == 1.0
        assert len(g.members) >= 2
        names = [m.path for m in g.members]
        assert not seen & set(names), "a file is in two groups"
        seen |= set(names)
        v = np.stack([vec[p] for p in names])
        sims = v @ v.T
        assert (sims[0] >= t - 1e-5).all(), "a member below the threshold to the kept file"
        assert g.min_score == pytest.approx(float(sims.min()), abs=1e-4)
        assert [m.score for m in g.members[1:]] == sorted(
            (m.score for m in g.members[1:]), reverse=True
        )
    # Every pair above the threshold has both files in some group (none left out alone).
    grouped = seen
    for i, j in brute_pairs(x, t):
        assert paths[i] in grouped or paths[j] in grouped
    # Sorted by size, then by min_score.
    keys = [(-len(g.members), -g.min_score) for g in report.groups]
    assert keys == sorted(keys)
    assert max(len(g.members) for g in report.groups) >= 3


def test_identical_files_always_grouped_whatever_the_threshold(tmp_path):
    db = tmp_path / "i.db"
    e = np.eye(16, dtype=np.float32)
    store = SQLiteStore(db)
    batch = WriteBatch()
    # Same content hash, but (as if from an older model run) quite different vectors.
    for k, (name, h, v) in enumerate(
        [("a.jpg", "h1", e[0]), ("b.jpg", "h1", e[1]), ("c.jpg", "h1", e[2]), ("d.jpg", "h2", e[3])]
    ):
        batch.upserts.append((os.fsencode(f"/p/{name}"), 100 + k, 0, h, v))
    store.write(batch)
    store.close()
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=1.0, calibrate=False)
    assert len(groups) == 1
    g = groups[0]
    assert sorted(m.path for m in g.members) == ["/p/a.jpg", "/p/b.jpg", "/p/c.jpg"]
    assert all(m.score == 1.0 for m in g.members)
    assert all(m.identical for m in g.others)


def test_identical_files_join_a_group_as_one(tmp_path):
    db = tmp_path / "i.db"
    e = np.eye(16, dtype=np.float32)
    near = unit(e[0] + 0.2 * e[1])
    store = SQLiteStore(db)
    batch = WriteBatch()
    for name, h, v in [("x.jpg", "hx", e[0]), ("y1.jpg", "hy", near), ("y2.jpg", "hy", near)]:
        batch.upserts.append((os.fsencode(f"/p/{name}"), 10, 0, h, v))
    store.write(batch)
    store.close()
    with Index.open(db) as idx:
        (g,) = idx.duplicates(threshold=0.9, keep="path", calibrate=False)
    assert [m.path for m in g.members] == ["/p/x.jpg", "/p/y1.jpg", "/p/y2.jpg"]
    assert g.members[1].score == g.members[2].score == pytest.approx(float(e[0] @ near), 1e-5)


def test_folders_restrict_the_search(tmp_path):
    e = np.eye(8, dtype=np.float32)
    db = tmp_path / "i.db"
    with Index.open(db) as idx:
        idx.add_embeddings(["/a/1.jpg", "/a/2.jpg"], np.stack([e[0], e[0]]))
        idx.add_embeddings(["/b/1.jpg", "/b/2.jpg"], np.stack([e[1], e[1]]))
        assert len(idx.duplicates(threshold=0.99, calibrate=False)) == 2
        only_b = idx.duplicate_report(threshold=0.99, folders=["/b"], calibrate=False)
        assert only_b.images == 2
        assert [g.keep for g in only_b.groups] == ["/b/1.jpg"]
        assert idx.duplicates(threshold=0.99, folders="/c", calibrate=False) == []


def test_uncalibrated_index_uses_the_default_threshold(tmp_path):
    fill(tmp_path / "i.db", np.eye(4, dtype=np.float32))
    with Index.open(tmp_path / "i.db") as idx:
        report = idx.duplicate_report()  # no model recorded: nothing to calibrate with
        assert report.threshold_source == "default"
        assert report.threshold == pytest.approx(0.90)
        assert idx.duplicate_calibration() is None
        with pytest.raises(ConfigError):
            idx.duplicates(threshold=1.5)
        with pytest.raises(ConfigError, match="unknown keep criterion"):
            idx.duplicates(threshold=0.9, keep="biggest")


def test_keep_rules():
    assert parse_keep("resolution, size ,oldest") == ("resolution", "size", "oldest")
    with pytest.raises(ConfigError):
        parse_keep("")
    files = [
        FileFacts("/z/small.jpg", size=10, mtime=5.0, width=100, height=100),
        FileFacts("/a/big_new.jpg", size=50, mtime=9.0, width=400, height=300),
        FileFacts("/a/big_old_small_file.jpg", size=20, mtime=1.0, width=400, height=300),
        FileFacts("/gone.jpg"),  # unreadable: ranks last on every criterion
    ]

    def best(rule: str) -> str:
        return min(files, key=rank_key(parse_keep(rule))).path

    assert best("resolution,size") == "/a/big_new.jpg"
    assert best("resolution,oldest") == "/a/big_old_small_file.jpg"
    assert best("oldest") == "/a/big_old_small_file.jpg"
    assert best("newest") == "/a/big_new.jpg"
    assert best("smallest") == "/z/small.jpg"
    assert best("shortest-path") == "/gone.jpg"
    assert best("path") == "/a/big_new.jpg"
    assert sorted(files, key=rank_key(("size",)))[-1].path == "/gone.jpg"


def test_group_to_dict_is_the_contract():
    # #19 added "verified" to each member (what the second look decided); the rest is #9's.
    g = DuplicateGroup(
        "/k.jpg",
        [DuplicateMember("/k.jpg", 1.0, size=3, verified=True), DuplicateMember("/c.jpg", 0.95)],
        0.95,
    )
    assert g.to_dict() == {
        "keep": "/k.jpg",
        "min_score": 0.95,
        "members": [
            {"path": "/k.jpg", "score": 1.0, "verified": True},
            {"path": "/c.jpg", "score": 0.95, "verified": False},
        ],
    }


def test_many_groups_larger_than_k_are_found_whole_on_the_exact_path():
    # 3 groups of 60 near-identical rows among 1,500: 180 rows have more than k = 16
    # passing neighbours, more than 1% of the rows; every pair must still be found.
    rng = np.random.default_rng(5)
    x = rng.standard_normal((1500, 64)).astype(np.float32)
    for g in range(3):
        base = rng.standard_normal(64).astype(np.float32)
        x[g * 60 : g * 60 + 60] = base + 0.01 * rng.standard_normal((60, 64)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    truth = brute_pairs(x, 0.98)
    assert len(truth) == 3 * 60 * 59 // 2
    for full_below in (2_000, 0):  # full vectors, and the projected bound
        pairs, _ = similar_pairs(ArrayRows(x), 0.98, basis_dim=16, full_below=full_below)
        assert set(zip(pairs.i.tolist(), pairs.j.tolist(), strict=True)) == truth


def test_identical_vectors_pair_at_threshold_one():
    x = np.repeat(unit(np.arange(1, 33, dtype=np.float32))[None], 5, axis=0)
    pairs, _ = similar_pairs(ArrayRows(x), 1.0)
    assert len(pairs) == 10 and (pairs.score <= 1.0).all()


def test_group_centres_are_chosen_by_copies_still_ungrouped():
    # Positions rank by number (0 is the keep rule's favourite). A node takes only copies
    # it outranks. 0 takes 1-4. 5 outranked 1, 2, 3 and 8 (four, like 0) but has only 8
    # left; 7 has 8 and 9 left, so 7 goes next and keeps both. Ranked by the counts
    # before any group was made, 5 would go first, take 8 and leave 7 with 9 alone.
    edges = [(0, 1), (0, 2), (0, 3), (0, 4), (5, 1), (5, 2), (5, 3), (5, 8), (7, 8), (7, 9)]
    i = np.array([a for a, b in edges], np.int64)
    j = np.array([b for a, b in edges], np.int64)
    pairs = Pairs(i, j, np.full(len(edges), 0.95, np.float32))
    vecs = np.ones((10, 4), np.float32) / 2
    groups = build_groups(10, pairs, [], rank=lambda p: p, vectors=lambda pos: vecs[pos])
    members = sorted(sorted(g.members) for g in groups)
    assert members == [[0, 1, 2, 3, 4], [7, 8, 9]]
    assert all(g.members[0] == min(g.members) for g in groups)  # the favourite is kept
