"""Choosing the duplicate threshold on the collection's own images.

A sample of indexed images is decoded; each gets edited copies made in memory
(:mod:`~lookalike.duplicates.edits`), which are embedded with the index's model and
compared with the image's stored vector: the *positives*. The *negatives* are the
sample's nearest indexed images (byte-identical files excluded).

Existing copies in the collection are not distinct images, and counting them as
negatives would push the threshold up without end in a collection full of copies. So an
indexed image that scores at least as high with a sample as the weakest of the sample's
own copies is taken to be an existing copy, not a distinct image. The sample's own copies
are its edited copies (one edit away), pairs of them (two edits: two copies of one
original) and copies edited twice in a row (:data:`~lookalike.duplicates.edits.COMPOUND`:
a cropped export against a rotated one is that far apart). The price: distinct images
that look as alike as a twice-edited copy (burst shots) count as copies, which is also
what most people cleaning a collection want.

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
_GRID = np.round(np.arange(0.30, 1.0, 0.001), 3)


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
        distinct = np.sort(s.negatives[s.negatives < copies[0]])
        existing += len(s.negatives) - len(distinct)
        false += (len(distinct) - np.searchsorted(distinct, _GRID, side="left")) / 2.0
    pairs_per_image = copy_pairs_per_image(existing, len(samples))
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


def copy_pairs_per_image(existing_copies: int, samples: int) -> float:
    """Copy pairs per image the precision estimate assumes: one, or half the existing
    copies met per sampled image when the collection shows more (see the module doc)."""
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

    Raises:
        ConfigError: a bad target, or no sampled image could be read.
    """
    from ..decode import DecodeFailure, DecodeLimits, open_rgb, read_file

    if not (0.0 < target_precision < 1.0):
        raise ConfigError(f"target precision must be in (0, 1), got {target_precision}")
    limits = limits or DecodeLimits()
    rng = random.Random(seed)
    pre = embedder.setup.preprocess
    draft = (pre.size[0] * 2, pre.size[1] * 2)
    used: list[tuple[int, np.ndarray, list[str], list[str]]] = []
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
        used.append((image_id, vector, [name for name, _ in copies], [n for n, _ in twice]))
        images.extend(c for _, c in copies + twice)
    if len(used) < 2:
        raise ConfigError("calibration needs at least 2 readable indexed images")
    copy_vecs = _embed_copies(embedder, images)
    queries = np.stack([v for _, v, _, _ in used]).astype(np.float32)
    samples: list[Sample] = []
    at = 0
    for qi, (image_id, vector, names, twice_names) in enumerate(used):
        mine = copy_vecs[at : at + len(names)]
        scores = mine @ vector
        twice = copy_vecs[at + len(names) : at + len(names) + len(twice_names)] @ vector
        at += len(names) + len(twice_names)
        siblings = np.concatenate([(mine @ mine.T)[np.triu_indices(len(names), 1)], twice])
        exclude = np.asarray(sorted(same_content(image_id) | {image_id}), dtype=np.int64)
        nscores, nids = neighbours(queries[qi : qi + 1], exclude)
        negatives = nscores[0][nids[0] >= 0]
        positives = dict(zip(names, scores.tolist(), strict=True))
        twice_scores = dict(zip(twice_names, twice.tolist(), strict=True))
        samples.append(Sample(positives, negatives, siblings, twice_scores))
    t, precision, recall = choose_threshold(samples, target_precision)
    per_edit = {
        name: float(np.mean([(s.positives | s.twice)[name] >= t for s in samples]))
        for name in samples[0].positives | samples[0].twice
    }
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
    )
