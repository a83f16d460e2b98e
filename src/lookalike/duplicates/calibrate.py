"""Choosing the duplicate threshold on the collection's own images.

A sample of indexed images is decoded; each gets edited copies made in memory
(:mod:`~lookalike.duplicates.edits`), which are embedded with the index's model and
compared with the image's stored vector: the *positives*. The *negatives* are the
sample's nearest indexed images (byte-identical files excluded).

**With the second look (#19), measured, not assumed.** The second look
(:mod:`~lookalike.duplicates.verify`) checks each edited copy against its image (a copy it
turns down is not found, whatever its cosine) and labels the sample's
:data:`LABELLED` nearest indexed images (from cosine :data:`FLOOR`) as copies or
look-alikes. :func:`choose_verified` then picks the cosine from which pairs are looked
at: the precision of "cosine at least ``t`` and confirmed" counts as errors the labelled
copies the second look was least sure of (:data:`UNCERTAIN`), and the threshold goes as
low as finds more copies (one point of recall margin, as below), lower still while the
looks at pairs that are not copies stay cheap (:data:`CHEAP_LOOKS`, or
:data:`CHEAP_PER_IMAGE` of the images: copies people make, such as a watermark across the
picture, can score far below these edits, and a pair under the threshold is never looked
at), but not so low that the second look would be asked about more than
:data:`LOOKS_PER_IMAGE` pairs per image that are not copies (or :data:`MIN_LOOKS` in all),
as the samples' neighbours show them.
:func:`choose_threshold` picks the cosine-only threshold (``--no-verify``) against the
same labels: a look-alike is a distinct image however close its vector, which is what the
rule below got wrong. With labels, ``m`` below is the number of copy pairs per image the
labels show, not at least one (in a collection with few copies each distinct pair weighs
more), and a close call of the second look counts as half an error.

**Without labels (calibrations before #19).** Existing copies in the collection are not
distinct images, and counting them as negatives would push the threshold up without end
in a collection full of copies. So an indexed image that scores at least as high with a
sample as the weakest of the sample's own copies is taken to be an existing copy. The
sample's own copies are its edited copies (one edit away), pairs of them (two edits: two
copies of one original) and copies edited twice in a row
(:data:`~lookalike.duplicates.edits.COMPOUND`: a cropped export against a rotated one is
that far apart). The price, measured in #19: distinct look-alikes count as copies too
(letters of one layout score higher than their own rescans), which made this estimate
claim 99% precision where 5% was true. With labels, the labelled copies are the existing
copies and every other neighbour is a distinct image.

For a threshold ``t``, with ``R(t)`` the share of a sample's edited copies found and
``F(t)`` its distinct neighbours at or above ``t``, precision is estimated as
``m R / (m R + F / 2)``: each distinct pair is met from both of its ends (``F / 2`` pairs
per image), and ``m`` is the number of copy pairs per image: one (as if each image had one
copy) unless the collection shows more, i.e. half the existing copies found per sample
(each met from both ends too). A collection made of copies thus gets the lower threshold
its copies allow, and a collection of distinct images keeps the one-copy estimate.

The threshold is the lowest ``t`` from which precision stays at or above the target, not
below the weakest copy's score (lower would only add risk), raised further while that
costs at most one point of recall over all the sample's copies, two edits away included
(a margin for unseen images).
"""

from __future__ import annotations

import hashlib
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import ConfigError
from .edits import compound_copies, edited_copies
from .types import Calibration

META_KEY = "duplicates_calibration"
#: Used while an index has no calibration (cosine of ``avg``-pooled CNN features).
DEFAULT_THRESHOLD = 0.90
_NEIGHBOURS = 64
#: Nearest indexed images per sampled image that the second look labels.
LABELLED = 12
#: Lowest cosine worth a second look (the lowest candidate threshold calibration picks).
FLOOR = 0.30
#: A labelled copy whose agreement is below the bar plus this counts as an error.
UNCERTAIN = 0.05
#: The second look's budget a calibration plans for: pairs that are not copies (each
#: costs tens of milliseconds), at most this many per image or :data:`MIN_LOOKS` in all.
LOOKS_PER_IMAGE = 1.0
MIN_LOOKS = 2000
#: Looks at pairs that are not copies cheap enough to always spend when a lower threshold
#: finds more copies: this many (5-10 s at 10-20 ms a look), or this share of the images
#: (at a million images, 10,000 looks: 2-4 minutes, about what the vector search takes).
CHEAP_LOOKS = 500
CHEAP_PER_IMAGE = 0.01
_GRID = np.round(np.arange(FLOOR, 1.0, 0.001), 3)


def setup_key(setup_json: str | None, dim: int | None) -> str:
    """A short fingerprint of what produced the vectors; a calibration belongs to one."""
    text = setup_json if setup_json else f"dim:{dim}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Sample:
    """Scores of one sampled image: its edited copies (``positives``), copies two edits
    apart (``siblings``: pairs of edited copies, and copies edited twice against the
    image) and its nearest indexed images (``negatives``, existing copies included)."""

    positives: dict[str, float]
    negatives: np.ndarray
    siblings: np.ndarray = field(default_factory=lambda: np.empty(0))
    #: Copies edited twice in a row, by ``"first+second"`` (their scores are in siblings).
    twice: dict[str, float] = field(default_factory=dict)
    #: The second look's verdict on each edited copy, by name (``None``: not looked at).
    confirmed: dict[str, bool] | None = None
    #: Per negative: 1 a copy, 0 a look-alike, -1 not looked at (``None``: no labels).
    labels: np.ndarray | None = None
    #: Per negative: labelled a copy, but only just (counted as an error).
    uncertain: np.ndarray | None = None


def choose_threshold(samples: Sequence[Sample], target: float) -> tuple[float, float, float]:
    """``(threshold, precision, recall)`` from the samples' scores (see the module doc)."""
    if not samples:
        raise ConfigError("no sampled image could be used for calibration")
    pos = np.concatenate([np.fromiter(s.positives.values(), float) for s in samples])
    per_image = np.array([len(s.positives) for s in samples], dtype=float)
    weights = np.repeat(1.0 / per_image, per_image.astype(int))
    # R(t) over the grid, by sorting once.
    pos_order = np.argsort(pos)
    pos_sorted, w_sorted = pos[pos_order], weights[pos_order]
    w_suffix = np.concatenate([np.cumsum(w_sorted[::-1])[::-1], [0.0]])
    found = w_suffix[np.searchsorted(pos_sorted, _GRID, side="left")]
    false = np.zeros(len(_GRID))
    reach = np.zeros(len(_GRID))  # share of every copy (one and two edits away) found
    existing = 0
    for s in samples:
        copies = np.sort(np.concatenate([np.fromiter(s.positives.values(), float), s.siblings]))
        reach += (len(copies) - np.searchsorted(copies, _GRID, side="left")) / len(copies)
        if s.labels is not None:  # the second look's labels: a look-alike is distinct
            distinct = np.sort(s.negatives[s.labels != 1])
        else:  # before #19: as close as the weakest copy counts as a copy
            distinct = np.sort(s.negatives[s.negatives < copies[0]])
        existing += len(s.negatives) - len(distinct)
        false += (len(distinct) - np.searchsorted(distinct, _GRID, side="left")) / 2.0
    labelled = any(s.labels is not None for s in samples)
    pairs_per_image = copy_pairs_per_image(existing, len(samples), measured=labelled)
    with np.errstate(invalid="ignore", divide="ignore"):
        true = pairs_per_image * found
        precision = np.where(true + false > 0, true / (true + false), 1.0)
    bad = np.flatnonzero(precision < target)
    start = bad[-1] + 1 if len(bad) else 0
    if start >= len(_GRID):
        start = len(_GRID) - 1
    weakest = np.floor(pos.min() * 1000) / 1000
    index = max(start, int(np.searchsorted(_GRID, weakest, side="right")) - 1)
    index = min(index, len(_GRID) - 1)
    # Then as high as costs at most one point of recall: a margin against distinct images
    # the sample did not meet, nearly free where the copies' scores leave a gap. Counted
    # on every copy, two edits away included: copies of one photo in a collection are
    # mostly that far from each other, and lose more than the edited copies show.
    keep = reach[index] - 0.01 * len(samples)
    while index + 1 < len(_GRID) and reach[index + 1] >= keep and found[index + 1] > 0:
        index += 1
    t = float(_GRID[index])
    recall = min(1.0, float(found[index] / len(samples)))
    return t, min(1.0, float(precision[index])), recall


def choose_verified(
    samples: Sequence[Sample], target: float, images: int = 0
) -> tuple[float, float, float]:
    """``(threshold, precision, recall)`` of "cosine at least ``t`` and confirmed by the
    second look", from samples with labels (see the module doc).

    Args:
        samples: the sampled images' scores and labels.
        target: the precision to reach.
        images: images in the collection: the threshold is also kept high enough that
            the second look would be asked about at most ``max(MIN_LOOKS,
            LOOKS_PER_IMAGE x images)`` pairs that are not copies (as the samples'
            neighbours show them); 0: no such bound.
    """
    if not samples:
        raise ConfigError("no sampled image could be used for calibration")
    found = np.zeros(len(_GRID))  # share of each sample's single-edit copies found
    reach = np.zeros(len(_GRID))  # ... of all its copies, twice-edited included
    false = np.zeros(len(_GRID))
    others = np.zeros(len(_GRID))  # neighbours per sample that are not labelled copies
    existing = 0
    for s in samples:
        rest = np.sort(s.negatives if s.labels is None else s.negatives[s.labels != 1])
        others += len(rest) - np.searchsorted(rest, _GRID)
        ok = s.confirmed or {}
        single = np.sort([v for k, v in s.positives.items() if ok.get(k)])
        found += (len(single) - np.searchsorted(single, _GRID)) / max(1, len(s.positives))
        # Reach counts pairs of copies too (two edits apart): the file a group keeps may
        # be any of them (#18), and it needs its own candidate pair with each member.
        every = np.sort(
            np.r_[[v for k, v in (s.positives | s.twice).items() if ok.get(k)], s.siblings]
        )
        total = len(s.positives) + len(s.twice) + len(s.siblings)
        reach += (len(every) - np.searchsorted(every, _GRID)) / max(1, total)
        if s.labels is not None:
            existing += int((s.labels == 1).sum())
            unsure = s.uncertain if s.uncertain is not None else np.zeros(len(s.labels), bool)
            risky = np.sort(s.negatives[(s.labels == 1) & unsure])
            # A close call is as likely wrong as right: half an error, met from both ends.
            false += (len(risky) - np.searchsorted(risky, _GRID)) / 4.0
    pairs_per_image = copy_pairs_per_image(existing, len(samples), measured=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        true = pairs_per_image * found
        precision = np.where(true + false > 0, true / (true + false), 1.0)
    bad = np.flatnonzero(precision < target)
    lowest = index = min(int(bad[-1]) + 1 if len(bad) else 0, len(_GRID) - 1)
    # As high as costs at most one point of recall over every copy: fewer pairs to look
    # at, nearly free where the copies' cosines leave a gap.
    keep = reach[index] - 0.01 * len(samples)
    while index + 1 < len(_GRID) and reach[index + 1] >= keep and found[index + 1] > 0:
        index += 1
    if images:  # the cost: each pair that is not a copy is met from both of its ends
        looks = images * others / len(samples) / 2.0
        # The edits above are milder than some copies people make (a watermark across
        # the picture: measured in #19, those copies score far lower), and a pair below
        # the threshold is never looked at: while the looks stay cheap, go lower.
        cheap = np.flatnonzero(looks <= max(CHEAP_LOOKS, CHEAP_PER_IMAGE * images))
        if len(cheap):
            index = min(index, max(lowest, int(cheap[0])))
        within = np.flatnonzero(looks <= look_budget(images))
        if len(within):
            index = max(index, int(within[0]))
    recall = min(1.0, float(found[index] / len(samples)))
    return float(_GRID[index]), min(1.0, float(precision[index])), recall


def look_budget(images: int) -> int:
    """Pairs that are not copies the second look may turn down in one run over ``images``
    images: :data:`LOOKS_PER_IMAGE` per image, or :data:`MIN_LOOKS` in all. The calibration
    plans within it; a run stops looking there (the plan is an estimate)."""
    return int(max(MIN_LOOKS, LOOKS_PER_IMAGE * images))


def copy_pairs_per_image(existing_copies: int, samples: int, measured: bool = False) -> float:
    """Copy pairs per image the precision estimate assumes: half the existing copies met
    per sampled image (each pair is met from both ends). Without the second look's labels
    (``measured`` false, the rule before #19) at least one: existing copies were guessed
    then; with them, as counted (at least one in the whole sample): a collection with few
    copies finds few, and each distinct pair weighs more against them."""
    if measured:
        return max(1, existing_copies) / max(1, samples) / 2.0
    return max(1.0, existing_copies / max(1, samples) / 2.0)


def _embed_copies(embedder: Any, images: list[Any]) -> np.ndarray:
    from ..decode import to_model_input

    pre = embedder.setup.preprocess
    out = []
    step = max(1, int(getattr(embedder, "batch_size", 16) or 16))
    for start in range(0, len(images), step):
        pixels = np.stack([to_model_input(im, pre) for im in images[start : start + step]])
        out.append(np.asarray(embedder.embed_pixels(pixels), dtype=np.float32))
    vecs = np.concatenate(out)
    return vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)  # type: ignore[no-any-return]


def calibrate(
    candidates: Sequence[tuple[int, bytes, np.ndarray]],
    embedder: Any,
    neighbours: Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]],
    *,
    same_content: Callable[[int], set[int]],
    setup: str,
    target_precision: float = 0.95,
    sample: int = 60,
    seed: int = 0,
    limits: Any = None,
    paths_of: Callable[[list[int]], dict[int, bytes]] | None = None,
    collection: int = 0,
) -> Calibration:
    """Calibrate the threshold on up to ``sample`` of ``candidates``.

    Args:
        candidates: ``(image id, path, stored vector)`` in random order; unreadable files
            are skipped and the next one taken.
        embedder: the index's embedder (``setup.preprocess``, ``embed_pixels``).
        neighbours: ``(queries (m, dim), exclude ids) -> (scores, ids)``, ``_NEIGHBOURS``
            nearest stored images per query.
        same_content: ids byte-identical to an image (not distinct images).
        setup: :func:`setup_key` of the index.
        target_precision: the precision to reach, in (0, 1).
        sample: how many images to sample.
        seed: seed of the edits.
        limits: decode limits.
        paths_of: image ids -> their paths, for the second look at the neighbours;
            ``None`` calibrates without the second look (the weakest-copy rule).
        collection: images in the index (bounds the second look's cost, see
            :func:`choose_verified`).

    Raises:
        ConfigError: a bad target, or no sampled image could be read.
    """
    from ..decode import DecodeFailure, DecodeLimits, open_rgb, read_file
    from .verify import Verifier, compare_looks, prepare

    if not (0.0 < target_precision < 1.0):
        raise ConfigError(f"target precision must be in (0, 1), got {target_precision}")
    limits = limits or DecodeLimits()
    rng = random.Random(seed)
    pre = embedder.setup.preprocess
    draft = (pre.size[0] * 2, pre.size[1] * 2)
    looking = paths_of is not None
    verifier = Verifier(limits)
    used: list[tuple[int, bytes, np.ndarray, list[str], list[str], dict[str, bool]]] = []
    images: list[Any] = []
    for image_id, path, vector in candidates:
        if len(used) >= sample:
            break
        try:
            data = read_file(path, max_file_bytes=limits.max_file_bytes)
            im = open_rgb(data, limits=limits, draft_to=draft)
        except (DecodeFailure, OSError):
            continue
        copies = edited_copies(im, rng)
        twice = compound_copies(im, rng)
        confirmed: dict[str, bool] = {}
        if looking:  # the second look at each copy, against the image it was made from
            # (Not remembered for the labelling below: that reads the file as a run
            # does, so a label never depends on what the cache still held.)
            look = prepare(im)
            confirmed = {n: bool(compare_looks(look, prepare(c)).copy) for n, c in copies + twice}
        once, two = [n for n, _ in copies], [n for n, _ in twice]
        used.append((image_id, path, vector, once, two, confirmed))
        images.extend(c for _, c in copies + twice)
    if len(used) < 2:
        raise ConfigError("calibration needs at least 2 readable indexed images")
    copy_vecs = _embed_copies(embedder, images)
    queries = np.stack([u[2] for u in used]).astype(np.float32)
    samples: list[Sample] = []
    at = 0
    for qi, (image_id, path, vector, names, twice_names, confirmed) in enumerate(used):
        mine = copy_vecs[at : at + len(names)]
        scores = mine @ vector
        twice = copy_vecs[at + len(names) : at + len(names) + len(twice_names)] @ vector
        at += len(names) + len(twice_names)
        siblings = np.concatenate([(mine @ mine.T)[np.triu_indices(len(names), 1)], twice])
        exclude = np.asarray(sorted(same_content(image_id) | {image_id}), dtype=np.int64)
        nscores, nids = neighbours(queries[qi : qi + 1], exclude)
        valid = nids[0] >= 0
        negatives, ids = nscores[0][valid], nids[0][valid]
        positives = dict(zip(names, scores.tolist(), strict=True))
        twice_scores = dict(zip(twice_names, twice.tolist(), strict=True))
        found = Sample(positives, negatives, siblings, twice_scores)
        if paths_of is not None:
            found.confirmed = confirmed
            found.labels, found.uncertain = _label(verifier, path, negatives, ids, paths_of)
        samples.append(found)
    t, precision, recall = choose_threshold(samples, target_precision)
    extra: dict[str, Any] = {}
    if looking:
        extra = {
            "method": "second-look",
            "threshold_unverified": t,
            "precision_unverified": round(precision, 4),
            "recall_unverified": round(recall, 4),
        }
        t, precision, recall = choose_verified(samples, target_precision, collection)
        labels = np.concatenate([s.labels for s in samples if s.labels is not None])
        unsure = np.concatenate([s.uncertain for s in samples if s.uncertain is not None])
        extra |= {
            "looked": int((labels >= 0).sum()),
            "looked_copies": int((labels == 1).sum()),
            "uncertain": int(unsure.sum()),
        }

    def found_at(s: Sample, name: str) -> bool:
        ok = s.confirmed is None or not looking or s.confirmed.get(name, False)
        return bool((s.positives | s.twice)[name] >= t and ok)

    per_edit = {
        name: float(np.mean([found_at(s, name) for s in samples]))
        for name in samples[0].positives | samples[0].twice
    }
    if looking:  # two edits apart: the twice-edited copies, confirmed
        two_edits = float(np.mean([found_at(s, n) for s in samples for n in s.twice]))
    else:
        two_edits = float(np.mean([np.mean(s.siblings >= t) for s in samples if len(s.siblings)]))
    return Calibration(
        threshold=t,
        precision=round(precision, 4),
        recall=round(recall, 4),
        target_precision=target_precision,
        images=len(samples),
        copies=sum(len(s.positives) for s in samples),
        negatives=int(sum(len(s.negatives) for s in samples)),
        setup=setup,
        per_edit={k: round(v, 4) for k, v in per_edit.items()},
        created=time.time(),
        recall_two_edits=round(two_edits, 4),
        **extra,
    )


def _label(
    verifier: Any,
    path: bytes,
    scores: np.ndarray,
    ids: np.ndarray,
    paths_of: Callable[[list[int]], dict[int, bytes]],
) -> tuple[np.ndarray, np.ndarray]:
    """The second look's labels of one sample's nearest indexed images: 1 a copy, 0 a
    look-alike, -1 not looked at (beyond :data:`LABELLED`, below :data:`FLOOR`, or
    unreadable); and which copies were close calls."""
    from .verify import MIN_AGREE

    labels = np.full(len(scores), -1, dtype=np.int8)
    uncertain = np.zeros(len(scores), dtype=bool)
    chosen = [k for k in np.argsort(-scores)[:LABELLED].tolist() if scores[k] >= FLOOR]
    paths = paths_of([int(ids[k]) for k in chosen]) if chosen else {}
    todo = [(k, paths[int(ids[k])]) for k in chosen if int(ids[k]) in paths]
    for (k, _), verdict in zip(todo, verifier.many([(path, o) for _, o in todo]), strict=True):
        if verdict.copy is None:
            continue
        labels[k] = int(verdict.copy)
        uncertain[k] = bool(verdict.copy) and verdict.agree < MIN_AGREE + UNCERTAIN
    return labels, uncertain
