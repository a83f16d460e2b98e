"""Which candidate pairs get the second look (:mod:`~lookalike.duplicates.verify`), and
what becomes of them, before any group is built.

The vectors propose pairs at or above the threshold; each is looked at, most similar
first, and kept only when the second look confirms a copy. A pair the second look cannot
decide (a file missing or unreadable: an index of vectors only, a file deleted since) is
kept on its cosine alone when that reaches ``undecided_from`` (the cosine-only threshold),
and reported as not verified.

Two candidates that the second look confirmed as copies of one same image are copies of
each other (they show that image's picture): such a pair is kept too, marked verified,
even when its own look turned it down (two edits on top of each other: a caption on one,
a crop on the other) or never happened. It is still a candidate pair (its cosine reaches
the threshold), so a group never holds a member below the threshold to its kept file.
The keep rule may keep any member of a group (#18), not the original every copy was
checked against: without this, copies of one photo split into several groups.

Cost is bounded per image: once an image has had :data:`REJECTS_PER_IMAGE` of its pairs
turned down (a letter among hundreds of letters in its layout), its remaining pairs are
not looked at, unless the other image still has looks left. So a collection of look-alikes
costs at most that many looks per image, and a real group of copies is looked at whole.
And in all: once ``max_rejects`` pairs were turned down (the calibration's budget, one per
image or 2,000: its estimate from 60 samples can be off, 18,036 look-alikes turned down in
a 10,000-image collection where it planned 10,000, #19), the remaining pairs are passed
over too. Pairs are taken one connected set of images after another (their prepared
images stay in the cache), most similar first within each; when that budget can run
out, the most similar pairs come first whatever their set (copies score highest). (Each
image's nearest candidates first, alone or in turns with the most similar, were measured
and not kept: BENCHMARKS.md, #19 eighth pass.)

Looks run on ``workers`` threads (OpenCV and NumPy let go of Python's lock while they
work), ahead of the order above; each pair's outcome is applied in that order, so the
budgets decide exactly as on one thread (a pair looked at ahead whose images ran out of
budget meanwhile is passed over, its look wasted), and the result does not depend on
how many threads ran.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .candidates import Pairs
from .verify import Verifier

#: Pairs an image may have turned down before its remaining pairs are passed over.
REJECTS_PER_IMAGE = 24


@dataclass
class LookedPairs:
    """The candidate pairs after the second look.

    Attributes:
        pairs: the pairs kept (copies, and undecided pairs above ``undecided_from``).
        verified: ``(a, b)`` keys (``a < b``, group nodes) the second look confirmed.
        looked: pairs looked at.
        rejected: pairs the second look found to be distinct images.
        undecided: pairs it could not decide (a file unreadable).
        passed_over: pairs not looked at (both images over their budget, or
            ``max_rejects`` reached).
        budget_spent: ``max_rejects`` was reached and the pairs after it passed over.
        inferred: pairs kept because both images were confirmed copies of a third one.
        remembered: of the pairs looked at, those whose verdict an earlier run had made
            (:attr:`~lookalike.duplicates.verify.Verdict.remembered`).
        seconds: wall time.
    """

    pairs: Pairs
    verified: set[tuple[int, int]] = field(default_factory=set)
    looked: int = 0
    rejected: int = 0
    undecided: int = 0
    passed_over: int = 0
    budget_spent: bool = False
    inferred: int = 0
    remembered: int = 0
    seconds: float = 0.0


def second_look(
    pairs: Pairs,
    path_of: Callable[[int], str],
    *,
    node: np.ndarray,
    undecided_from: float,
    verifier: Verifier,
    budget: int = REJECTS_PER_IMAGE,
    max_rejects: int | None = None,
    workers: int | None = None,
) -> LookedPairs:
    """Look at every candidate pair (see the module docstring).

    Args:
        pairs: candidate pairs by position, with their cosines.
        path_of: position -> file path.
        node: int64 ``(n,)``: each position's group node (byte-identical files share one;
            their pairs are kept as they are, the grouping merges them).
        undecided_from: cosine from which a pair the second look cannot decide is kept.
        verifier: the second look (holds a cache of prepared images).
        budget: rejections per image before its pairs are passed over.
        max_rejects: rejections in all before every remaining pair is passed over
            (``None``: no such bound).
        workers: threads looking at pairs (default: the verifier's; the result does not
            depend on it).
    """
    t0 = time.perf_counter()
    out = LookedPairs(Pairs.empty())
    if len(pairs) == 0:
        return out
    keep = np.zeros(len(pairs), dtype=bool)
    rejects: dict[int, int] = {}
    told_apart: set[tuple[int, int]] = set()
    # When the run's budget can be spent before every pair is looked at, the most similar
    # pairs come first whatever their connected set (copies score highest: 10,000 mosaics,
    # budget 10,000, recall 0.41 in connected-set order); else one set after another.
    spendable = max_rejects is not None and len(pairs) > max_rejects
    order = np.argsort(-pairs.score, kind="stable") if spendable else _order(pairs, node)
    order_list = order.tolist()

    def tired() -> bool:
        return max_rejects is not None and out.rejected >= max_rejects

    def due(k: int) -> bool:
        """Whether pair ``k`` is looked at, as things stand (only ever turns False)."""
        a, b = int(node[pairs.i[k]]), int(node[pairs.j[k]])
        return not tired() and (rejects.get(a, 0) < budget or rejects.get(b, 0) < budget)

    def look(k: int) -> Any:
        return verifier.verdict(path_of(int(pairs.i[k])), path_of(int(pairs.j[k])))

    workers = verifier.workers if workers is None else max(1, workers)
    ahead: dict[int, Future[Any]] = {}
    window, submitted = 4 * workers, 0
    pool = ThreadPoolExecutor(workers, thread_name_prefix="second-look") if workers > 1 else None
    try:
        for at, k in enumerate(order_list):
            a, b = int(node[pairs.i[k]]), int(node[pairs.j[k]])
            if a == b:
                keep[k] = True
                continue
            if pool is not None:  # keep up to `window` looks running ahead, in order
                submitted = max(submitted, at)
                while submitted < len(order_list) and len(ahead) < window:
                    nxt = order_list[submitted]
                    submitted += 1
                    if node[pairs.i[nxt]] != node[pairs.j[nxt]] and due(nxt):
                        ahead[nxt] = pool.submit(look, nxt)
            running = ahead.pop(k, None)
            if not due(k):
                out.budget_spent |= tired()
                out.passed_over += 1
                if running is not None:
                    running.cancel()
                continue
            verdict = running.result() if running is not None else look(k)
            if verdict.copy is None:
                out.undecided += 1
                keep[k] = float(pairs.score[k]) >= undecided_from
                continue
            out.looked += 1
            out.remembered += verdict.remembered
            if verdict.copy:
                keep[k] = True
                out.verified.add((min(a, b), max(a, b)))
            else:
                if verdict.text_differs:
                    told_apart.add((min(a, b), max(a, b)))
                out.rejected += 1
                rejects[a] = rejects.get(a, 0) + 1
                rejects[b] = rejects.get(b, 0) + 1
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)
    out.inferred = _through_a_third(pairs, node, keep, out.verified, told_apart)
    out.pairs = Pairs(pairs.i[keep], pairs.j[keep], pairs.score[keep])
    out.seconds = time.perf_counter() - t0
    return out


def _through_a_third(
    pairs: Pairs,
    node: np.ndarray,
    keep: np.ndarray,
    verified: set[tuple[int, int]],
    told_apart: set[tuple[int, int]] | None = None,
) -> int:
    """Keep (and mark verified) each candidate pair not kept whose two images are both
    confirmed copies of one same image; returns how many (``keep``, ``verified`` updated).

    Not a pair in ``told_apart``: two pages whose own look aligned them to the pixel and
    found their text different (:attr:`~lookalike.duplicates.verify.Verdict.text_differs`).
    A third image too small or soft to read that text - a spreadsheet re-saved at 60% as
    JPEG 50 - passes for a copy of both; it says nothing of what the close look saw (two
    sheets one number apart were one group through their shared copy, #19)."""
    copies: dict[int, set[int]] = {}
    for a, b in verified:
        copies.setdefault(a, set()).add(b)
        copies.setdefault(b, set()).add(a)
    added = []
    for k in np.flatnonzero(~keep).tolist():
        a, b = int(node[pairs.i[k]]), int(node[pairs.j[k]])
        if told_apart and (min(a, b), max(a, b)) in told_apart:
            continue
        if a != b and copies.get(a, set()) & copies.get(b, set()):
            keep[k] = True
            added.append((min(a, b), max(a, b)))
    verified.update(added)  # after the loop: one step through a third, never a chain
    return len(added)


def _order(pairs: Pairs, node: np.ndarray) -> np.ndarray:
    """Pair indices: one connected set of images after another (their prepared images stay
    in the verifier's cache while they are needed), most similar first within each."""
    parent = np.arange(len(node), dtype=np.int64)

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    for a, b in zip(node[pairs.i].tolist(), node[pairs.j].tolist(), strict=True):
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    part = np.array([root(int(a)) for a in node[pairs.i].tolist()], dtype=np.int64)
    return np.lexsort((-pairs.score, part))  # type: ignore[no-any-return]
