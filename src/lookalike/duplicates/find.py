"""The duplicate search over an index's store and vector cache."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError
from .calibrate import look_budget
from .candidates import Pairs, Transform, fit_transform, similar_pairs
from .grouping import RawGroup, build_groups, one_name_per_file, sort_groups
from .keep import DEFAULT_KEEP, FileFacts, file_facts, parse_keep, rank_key
from .remembered import Remembered
from .rows import ArrayRows, CacheRows, Rows
from .second_look import LookedPairs, second_look
from .types import DuplicateGroup, DuplicateMember, DuplicateReport
from .verify import Verifier


def identical_sets(store: Any, ids: np.ndarray) -> list[np.ndarray]:
    """Image ids grouped by content hash, sets of two or more, among ``ids`` (sorted)."""
    if len(ids) == 0:  # nothing to look at (an empty folder): no set either
        return []
    fetch = getattr(store, "duplicate_hashes", None)
    if fetch is not None:
        pairs = fetch()  # [(id, hash)] of every hash held by two or more images
    else:  # a store without the query: read every row once
        pairs = [
            (row.id, row.hash)
            for row in store.files_under(os.fsencode(os.sep)).values()
            if row.hash
        ]
    by_hash: dict[str, list[int]] = {}
    for image_id, digest in pairs:
        by_hash.setdefault(digest, []).append(int(image_id))
    out = []
    for members in by_hash.values():
        arr = np.asarray(sorted(members), dtype=np.int64)
        if len(ids):
            pos = np.minimum(np.searchsorted(ids, arr), len(ids) - 1)
            arr = arr[ids[pos] == arr]
        if len(arr) > 1:
            out.append(arr)
    return out


class _Source:
    """The rows to search: live cache rows (optionally of some folders), by image id."""

    def __init__(self, store: Any, cache_dir: Path | None, allow: np.ndarray | None) -> None:
        self.cache: Any = None
        if cache_dir is not None:
            from ..vectors import VectorCache

            self.cache = VectorCache.open(cache_dir, store)
            ids = np.asarray(self.cache.ids)
            rows = np.flatnonzero(ids >= 0)
            live = ids[rows]
            if allow is not None:
                pos = np.minimum(np.searchsorted(allow, live), max(0, len(allow) - 1))
                ok = allow[pos] == live if len(allow) else np.zeros(len(live), bool)
                rows, live = rows[ok], live[ok]
            self.rows: Rows = CacheRows(self.cache, rows)
            self.ids = live
        else:  # no cache folder (e.g. a server store): read the vectors into memory
            id_parts, vec_parts = [], []
            for ids_chunk, vecs in store.iter_vectors():
                if allow is not None:
                    keep = np.isin(ids_chunk, allow)
                    ids_chunk, vecs = ids_chunk[keep], vecs[keep]
                id_parts.append(ids_chunk)
                vec_parts.append(vecs)
            dim = store.dim() or 0
            self.ids = np.concatenate(id_parts) if id_parts else np.empty(0, np.int64)
            matrix = np.concatenate(vec_parts) if vec_parts else np.empty((0, dim), np.float32)
            self.rows = ArrayRows(matrix)
        self.order = np.argsort(self.ids, kind="stable")
        self.sorted_ids = self.ids[self.order]

    def positions(self, image_ids: np.ndarray) -> np.ndarray:
        pos = np.searchsorted(self.sorted_ids, image_ids)
        return self.order[pos]  # type: ignore[no-any-return]

    def close(self) -> None:
        if self.cache is not None:
            self.cache.close()


@dataclass(frozen=True)
class _Look:
    verifier: Verifier
    undecided_from: float


def find_duplicates(
    store: Any,
    cache_dir: Path | None,
    threshold: float,
    *,
    folders: Sequence[bytes] | None = None,
    keep: str | Sequence[str] = DEFAULT_KEEP,
    center: bool = False,
    facts: dict[str, FileFacts] | None = None,
    verify: bool = True,
    undecided_from: float | None = None,
    limits: Any = None,
) -> DuplicateReport:
    """Every group of copies among the stored images.

    Args:
        store: the index's store.
        cache_dir: its vector cache folder (``None``: vectors are read into memory).
        threshold: cosine from which two images are candidate copies, in (0, 1].
        folders: only images below these folders (absolute, ``os.fsencode`` form).
        keep: the keep rule (see :mod:`lookalike.duplicates.keep`).
        center: mean-centre the vectors before comparing.
        facts: known file facts by path (tests); others are read from the files.
        verify: give every candidate pair the second look
            (:mod:`~lookalike.duplicates.second_look`) before grouping; ``False`` groups
            on the cosine alone.
        undecided_from: cosine from which a pair the second look cannot decide (a file
            missing or unreadable) is kept; default: ``threshold``.
        limits: decode limits for the second look.

    Raises:
        ConfigError: a threshold outside (0, 1] or a bad keep rule.
    """
    t0 = time.perf_counter()
    if not (0.0 < threshold <= 1.0):
        raise ConfigError(f"threshold must be in (0, 1], got {threshold}")
    rule = parse_keep(keep)
    allow = store.ids_under(list(folders)) if folders is not None else None
    source = _Source(store, cache_dir, allow)
    try:
        n = source.rows.n
        same = [source.positions(s) for s in identical_sets(store, source.sorted_ids)]
        transform = fit_transform(source.rows, center)
        pairs, stats = similar_pairs(source.rows, threshold, transform=transform)
        look = None
        if verify:
            # Verdicts of earlier runs, beside the vector cache (a server store: none).
            memory = Remembered.open(cache_dir, limits) if cache_dir is not None else None
            look = _Look(Verifier(limits, memory=memory), max(threshold, undecided_from or 0.0))
        groups, looked = _assemble(store, source, pairs, same, rule, facts or {}, transform, look)
    finally:
        source.close()
        if look is not None and look.verifier.memory is not None:
            look.verifier.memory.close()
    report = DuplicateReport(
        threshold=float(threshold),
        images=n,
        seconds=time.perf_counter() - t0,
        groups=groups,
        candidate_pairs=stats.candidates,
        method=stats.method,
        second_look=verify,
    )
    if looked is not None:
        report.looked, report.rejected = looked.looked, looked.rejected
        report.undecided, report.passed_over = looked.undecided, looked.passed_over
        report.inferred = looked.inferred
        report.look_budget_spent = looked.budget_spent
        report.look_seconds = looked.seconds
        report.remembered = looked.remembered
    return report


def _assemble(
    store: Any,
    source: _Source,
    pairs: Pairs,
    same: list[np.ndarray],
    rule: Sequence[str],
    known: dict[str, FileFacts],
    transform: Transform,
    look: _Look | None,
) -> tuple[list[DuplicateGroup], LookedPairs | None]:
    involved = np.unique(np.concatenate([pairs.i, pairs.j, *same]))
    if len(involved) == 0:
        return [], None
    paths = store.paths_for(source.ids[involved].tolist())
    by_pos: dict[int, FileFacts] = {}
    for pos in involved.tolist():
        raw = paths.get(int(source.ids[pos]))
        if raw is None:  # deleted by a concurrent writer since the cache was read
            by_pos[pos] = FileFacts("")
            continue
        path = os.fsdecode(raw)
        by_pos[pos] = known.get(path) or file_facts(path)
    key = rank_key(rule)
    gone = {p for p, f in by_pos.items() if not f.path}
    gone |= one_name_per_file(by_pos, lambda pos: key(by_pos[pos]))  # one file, two paths
    if gone:
        keep = ~(np.isin(pairs.i, list(gone)) | np.isin(pairs.j, list(gone)))
        pairs = Pairs(pairs.i[keep], pairs.j[keep], pairs.score[keep])
        same = [s[~np.isin(s, list(gone))] for s in same]
        same = [s for s in same if len(s) > 1]
    node = np.arange(source.rows.n, dtype=np.int64)  # byte-identical files: one node
    for s in same:
        node[s] = s.min()
    looked = None
    if look is not None:
        looked = second_look(
            pairs,
            lambda pos: by_pos[pos].path,
            node=node,
            verifier=look.verifier,
            undecided_from=look.undecided_from,
            max_rejects=look_budget(source.rows.n),
        )
        pairs = looked.pairs
    raw_groups = build_groups(
        source.rows.n,
        pairs,
        same,
        rank=lambda pos: key(by_pos[pos]),
        vectors=lambda pos: transform(source.rows.gather(pos)),
    )
    verified = looked.verified if looked is not None else set()
    groups = [_group(g, by_pos, node, verified) for g in raw_groups]
    return sort_groups(groups), looked


def _group(
    g: RawGroup, facts: dict[int, FileFacts], node: np.ndarray, verified: set[tuple[int, int]]
) -> DuplicateGroup:
    members = []
    kept = int(node[g.members[0]])
    for k, (pos, score, same) in enumerate(zip(g.members, g.scores, g.identical, strict=True)):
        f = facts[pos]
        other = int(node[pos])
        pair = (min(kept, other), max(kept, other))
        members.append(
            DuplicateMember(
                path=f.path,
                score=round(float(score), 6),
                size=f.size,
                width=f.width,
                height=f.height,
                mtime=f.mtime,
                identical=same,
                dev=f.dev,
                ino=f.ino,
                mtime_ns=f.mtime_ns,
                verified=k == 0 or same or other == kept or pair in verified,
            )
        )
    return DuplicateGroup(members[0].path, members, round(float(g.min_score), 6))
