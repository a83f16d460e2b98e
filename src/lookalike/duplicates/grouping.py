"""Similar pairs -> groups that never chain, one group per file, the best file kept.

Byte-identical files (same content hash) are first merged into one node: they always end
up in the same group, whatever the threshold. Then each group is built around the file it
keeps: a node may take only its copies that the keep rule ranks *below* it, so the kept
file is the rule's favourite among all members, and every member is at least
``threshold`` similar to the kept file itself (no A~B~C chains). Greedily, the node with
the most such copies not yet in a group goes first (the keep rule breaks ties), which keeps
the copies of one photo together: a rule's favourite that is a harsh edit (a rotated copy
saved larger) takes the copies close to it, and the original, which it outranks, still
gathers the others instead of losing them to a group where a worse copy would be kept.

Two paths that are one file (same device and inode: a followed link, a bind mount, two
casings on a case-insensitive disk) are not copies of each other: :func:`one_name_per_file`
keeps one name per file before grouping.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .candidates import Pairs


@dataclass
class RawGroup:
    """A group by position: ``members[0]`` is kept; ``scores`` are cosines to it."""

    members: list[int]
    scores: list[float]
    identical: list[bool]
    min_score: float = 1.0


def _representatives(n: int, identical_sets: Sequence[np.ndarray]) -> np.ndarray:
    rep = np.arange(n, dtype=np.int64)
    for s in identical_sets:
        s = np.asarray(s, dtype=np.int64)
        if len(s) > 1:
            rep[s] = s.min()
    return rep


def build_groups(
    n: int,
    pairs: Pairs,
    identical_sets: Sequence[np.ndarray],
    rank: Callable[[int], Any],
    vectors: Callable[[np.ndarray], np.ndarray],
) -> list[RawGroup]:
    """Groups of positions ``0..n-1``.

    Args:
        n: how many positions there are.
        pairs: similar pairs (``i < j``) with cosines >= the threshold.
        identical_sets: arrays of positions with the same content hash (size >= 2).
        rank: sort key of a position; the smallest key is the file to keep.
        vectors: float32 ``(m, dim)`` unit vectors of sorted positions (for ``min_score``).

    Returns:
        Groups, unsorted.
    """
    rep = _representatives(n, identical_sets)
    files: dict[int, list[int]] = {}
    for s in identical_sets:
        if len(s) > 1:
            files[int(rep[int(s[0])])] = sorted(int(p) for p in s)
    a, b = rep[pairs.i], rep[pairs.j]
    keep = a != b
    a, b, s = a[keep], b[keep], pairs.score[keep]
    # Adjacency of nodes, best score per node pair.
    adj: dict[int, dict[int, float]] = {}
    for x, y, v in zip(a.tolist(), b.tolist(), s.tolist(), strict=True):
        for u, w in ((x, y), (y, x)):
            row = adj.setdefault(u, {})
            if v > row.get(w, -2.0):
                row[w] = v
    nodes = set(adj) | set(files)

    def node_files(node: int) -> list[int]:
        return files.get(node, [node])

    best: dict[int, int] = {}
    for node in nodes:
        best[node] = min(node_files(node), key=rank)
    keys = {node: rank(best[node]) for node in nodes}
    # A node may take only the copies the keep rule ranks below it: its own favourite
    # stays the favourite of the whole group.
    below = {node: [w for w in adj.get(node, {}) if keys[w] > keys[node]] for node in nodes}
    # Greedy cover: the node with the most such copies not yet in a group first (counts
    # refreshed lazily as groups take nodes), the keep rule breaking ties.
    heap = [(-len(below[node]), keys[node], node) for node in nodes]
    heapq.heapify(heap)
    assigned: set[int] = set()
    groups: list[RawGroup] = []
    while heap:
        count, key, c = heapq.heappop(heap)
        if c in assigned:
            continue
        takers = [w for w in below[c] if w not in assigned]
        if len(takers) < -count:  # some were taken meanwhile: back in at the true count
            heapq.heappush(heap, (-len(takers), key, c))
            continue
        if not takers and len(node_files(c)) < 2:
            continue
        assigned.add(c)
        assigned.update(takers)
        kept = best[c]
        members = [kept] + [f for f in node_files(c) if f != kept]
        scores = [1.0] * len(members)
        identical = [False] + [True] * (len(members) - 1)
        for w in sorted(takers, key=lambda w: (-adj[c][w], keys[w])):
            for f in sorted(node_files(w), key=rank):
                members.append(f)
                scores.append(float(adj[c][w]))
                identical.append(False)
        group = RawGroup(members, scores, identical)
        group.min_score = _min_score([c, *takers], vectors) if takers else 1.0
        groups.append(group)
    return groups


def one_name_per_file(facts: Mapping[int, Any], rank: Callable[[int], Any]) -> set[int]:
    """Positions whose file another position names too, all but one per file.

    Args:
        facts: position -> facts with ``dev``, ``ino`` (0: unknown) and ``link``.
        rank: the keep rule's sort key of a position.

    Returns:
        The positions to leave out: per ``(dev, ino)``, every name but one, the one kept
        being a real name rather than a symbolic link, then the keep rule's favourite.
    """
    names: dict[tuple[int, int], list[int]] = {}
    for pos, f in facts.items():
        if f.ino:
            names.setdefault((f.dev, f.ino), []).append(pos)
    extra: set[int] = set()
    for same in names.values():
        if len(same) > 1:
            keep = min(same, key=lambda p: (bool(facts[p].link), rank(p)))
            extra.update(p for p in same if p != keep)
    return extra


def _min_score(nodes: list[int], vectors: Callable[[np.ndarray], np.ndarray]) -> float:
    """Lowest cosine between any two nodes (identical files share one vector: cosine 1)."""
    pos = np.array(sorted(nodes), dtype=np.int64)
    vecs = vectors(pos)
    lowest = 1.0
    for start in range(0, len(vecs), 1024):
        block = vecs[start : start + 1024] @ vecs.T
        lowest = min(lowest, float(block.min()))
    return float(min(1.0, max(-1.0, lowest)))


def sort_groups(groups: list[Any]) -> list[Any]:
    """Largest groups first, then the most certain (highest ``min_score``), then by path."""
    return sorted(groups, key=lambda g: (-len(g.members), -g.min_score, g.keep))
