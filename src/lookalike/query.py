"""Queries made of words and pictures: ``cat + 2:red - dog``, an image plus words, ...

A :class:`Query` is a set of weighted terms, each a text or an image file, each positive
or negative. On a CLIP index its vector is::

    q = normalize( sum_pos w * v(term) - sum_neg w * v(term) )

where ``v(term)`` is the term's unit vector (text tower or image tower) divided by its
*spread* over the indexed images: the standard deviation of ``cos(term, image)`` over a
sample of the index (:data:`SPREAD_SAMPLE` vectors). Why: CLIP's text and image vectors sit
in two cones (the "modality gap"). A text term's cosines with photos spread over ~0.1
(0.15-0.35), an image term's over ~0.5 (0.3-0.9), so a plain sum of unit vectors (rclip's
rule) lets any image term drown every text term. Divided by its spread, each term moves
the ranking by the same amount per unit of weight: ``w`` is then what it says, the term's
share of the ranking. The score of an image under ``q`` is, up to one positive factor and
a constant, ``sum ± w * z(term, image)`` with ``z`` the term's standardised cosine.

A query of one term is that term's unit vector (the spread divides it away). Indexes with
fewer than :data:`MIN_SPREAD_SAMPLE` vectors have no usable spread: every term counts with
spread 1 there (a plain weighted sum of unit vectors).

Weights: a term written ``W:term`` (``2:red``, ``0.5:dog``) has weight ``W`` (a positive
number); any other text, including one with a colon (``C:/photos/x.jpg``, ``10:30 am``
needs ``1:10:30 am``), has weight 1.

Example:
    >>> q = Query.build(text=["cat", "2:red"], negative=["dog"])
    >>> [(t.kind, t.value, t.weight, t.negative) for t in q.terms]
    [('text', 'cat', 1.0, False), ('text', 'red', 2.0, False), ('text', 'dog', 1.0, True)]
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import ConfigError

SPREAD_SAMPLE = 4096
MIN_SPREAD_SAMPLE = 16
# A spread this small means the term tells nothing about the indexed images.
MIN_SPREAD = 1e-4


def parse_weight(term: str) -> tuple[float, str]:
    """``"2:red"`` -> ``(2.0, "red")``; text without a numeric ``W:`` prefix -> ``(1.0, text)``.

    Raises:
        ConfigError: a weight that is not positive and finite, or nothing after it.
    """
    head, sep, rest = term.partition(":")
    if sep:
        try:
            weight = float(head)
        except ValueError:
            return 1.0, term
        if not (math.isfinite(weight) and weight > 0):
            raise ConfigError(f"weight of {term!r} must be a positive number")
        if not rest.strip():
            raise ConfigError(f"{term!r} has a weight but no text or image after it")
        return weight, rest
    return 1.0, term


@dataclass(frozen=True)
class Term:
    """One part of a query.

    Attributes:
        kind: ``"text"`` or ``"image"`` (a file path).
        value: the text, or the image's path as given.
        weight: how much it counts (> 0).
        negative: ``True`` for a term to move away from (``--not``).
    """

    kind: str
    value: str
    weight: float = 1.0
    negative: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {self.kind: self.value, "weight": self.weight}


@dataclass(frozen=True)
class Query:
    """Weighted positive and negative terms; see the module docstring for the vector.

    Attributes:
        terms: at least one positive term.
    """

    terms: tuple[Term, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if not any(not t.negative for t in self.terms):
            raise ConfigError("a query needs at least one positive term (text or image)")
        for t in self.terms:
            if t.kind not in ("text", "image"):
                raise ConfigError(f"unknown query term kind {t.kind!r}")
            if not (math.isfinite(t.weight) and t.weight > 0):
                raise ConfigError(f"weight of {t.value!r} must be a positive number")
            if not t.value.strip():
                raise ConfigError("an empty text is not a query term")

    @classmethod
    def build(
        cls,
        *,
        text: Iterable[str] = (),
        image: str | os.PathLike[str] | None = None,
        negative: Iterable[str] = (),
        is_image: Callable[[str], bool] | None = None,
    ) -> Query:
        """A query from the CLI's pieces: ``--text`` terms, the image, ``--not`` terms.

        Args:
            text: texts, each optionally ``W:text``.
            image: an image file (weight 1), or ``None``.
            negative: texts or image paths, each optionally ``W:term``.
            is_image: says whether a negative term is an image path; default: it names an
                existing file.

        Raises:
            ConfigError: no positive term, a bad weight, an empty text.
        """
        check = is_image or os.path.isfile
        terms = [Term("text", v, w) for w, v in map(parse_weight, text)]
        if image is not None:
            terms.insert(0, Term("image", os.fspath(image)))
        for w, v in map(parse_weight, negative):
            terms.append(Term("image" if check(v) else "text", v, w, negative=True))
        return cls(tuple(terms))

    @property
    def texts(self) -> list[Term]:
        return [t for t in self.terms if t.kind == "text" and not t.negative]

    @property
    def images(self) -> list[Term]:
        return [t for t in self.terms if t.kind == "image" and not t.negative]

    @property
    def negatives(self) -> list[Term]:
        return [t for t in self.terms if t.negative]

    def describe(self) -> dict[str, Any]:
        """The ``"query"`` object of ``search --json``: ``{"text", "not", "image"}``.

        ``text``: ``[{"text", "weight"}]``; ``not``: ``[{"text" or "image", "weight"}]``;
        ``image``: the first positive image's path, or ``None``; ``images`` lists them all
        when there are several.
        """
        images = self.images
        out: dict[str, Any] = {
            "text": [t.to_dict() for t in self.texts],
            "not": [t.to_dict() for t in self.negatives],
            "image": images[0].value if images else None,
        }
        if len(images) > 1:
            out["images"] = [t.to_dict() for t in images]
        return out

    def label(self) -> str:
        """One line for people: ``red bicycle + 2×sunset − dog``."""
        parts = []
        for t in self.terms:
            shown = os.path.basename(t.value) if t.kind == "image" else t.value
            w = "" if t.weight == 1 else f"{t.weight:g}×"
            parts.append(("− " if t.negative else "+ ") + w + shown)
        text = " ".join(parts)
        return text[2:] if text.startswith("+ ") else text


def term_spreads(term_vectors: np.ndarray, sample: np.ndarray | None) -> np.ndarray:
    """Per term, the standard deviation of its cosine with the sampled index vectors.

    Args:
        term_vectors: (t, dim) float unit rows.
        sample: (s, dim) float unit rows from the index, or ``None``.

    Returns:
        (t,) float64; all ones when ``sample`` has fewer than :data:`MIN_SPREAD_SAMPLE` rows.
    """
    t = np.asarray(term_vectors, np.float64)
    if sample is None or len(sample) < MIN_SPREAD_SAMPLE:
        return np.ones(len(t))
    cos = np.asarray(sample, np.float64) @ t.T
    return np.maximum(cos.std(axis=0), MIN_SPREAD)


def combine(
    term_vectors: np.ndarray,
    weights: Sequence[float],
    negative: Sequence[bool],
    sample: np.ndarray | None,
) -> np.ndarray:
    """The query vector: ``normalize(sum ± w * unit(v) / spread)``.

    Args:
        term_vectors: (t, dim) float, one row per term (normalised here).
        weights: (t,) positive weights.
        negative: (t,) whether each term is subtracted.
        sample: (s, dim) index vectors for the spreads, or ``None``.

    Returns:
        (dim,) float32 unit vector.

    Raises:
        ConfigError: the terms cancel out (e.g. ``red`` and ``--not red``).
    """
    v = np.asarray(term_vectors, np.float64)
    if v.ndim != 2 or len(v) != len(weights) or len(v) != len(negative):
        raise ValueError(f"term vectors {v.shape} do not match {len(weights)} weights")
    v = v / np.linalg.norm(v, axis=1, keepdims=True)
    signs = np.where(np.asarray(negative, bool), -1.0, 1.0)
    coef = signs * np.asarray(weights, np.float64) / term_spreads(v, sample)
    q = coef @ v
    norm = float(np.linalg.norm(q))
    if not math.isfinite(norm) or norm < 1e-6:
        raise ConfigError("the query's terms cancel each other out; nothing to search for")
    return (q / norm).astype(np.float32)
