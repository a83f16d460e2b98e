"""A second, finer look at a candidate pair: the same capture, edited, or two look-alikes?

Global CNN vectors place distinct images of one kind very close together: letters in one
layout, tiles of one texture, objects shot on one table (cosines of 0.9-0.99, above many
real copies). The vectors *propose* pairs; this look *disposes*, on the pixels:

1. **Same framing first.** Both images are brought to one size (and mirrored) and
   compared as they are: a re-saved, resized, recoloured, captioned or mirrored copy is
   settled here, without any feature matching.
2. **Else geometry.** Local features (OpenCV ORB) of both images, the second one also
   mirrored, are matched under a homography (``USAC_MAGSAC``, OpenCV's robust estimator).
   Crops, turns and rescales are found here. (SIFT was measured too: on the copy set it
   found 4 more of 1,911 copy pairs than ORB, at 5-10 times the cost.)
3. **Then content, aligned.** The second image is warped onto the first with that
   geometry and both are compared in 8-pixel tiles over their overlap, at the smaller
   image's own size at most: a textured tile agrees when its normalised
   cross-correlation reaches :data:`NCC` (brightness, contrast and grey edits do not
   change it). Geometry alone is not enough - two letters of one layout share their
   letterhead and line positions (dozens of inliers) - but once aligned their body text
   differs tile after tile; two objects shot on one table agree on the table and differ
   in one large patch in the middle, where a caption's disagreement is thin lines.
4. **Pages are read closely.** On a photo a caption is an edit; on a page of text, text
   that differs is what differs. Two forms of one template filled in differently, two
   invoices with another customer or total, differ in a few words: as little as a caption
   on a copy (the reviews of #19: 48 such forms became one group). So when both images
   are pages - at least :data:`DOC_PAPER` of the tiles blank paper in both, and at least
   :data:`DOC_INK` of the textured tiles ink on that paper; a dense page, a spreadsheet's
   grid or small print, at its close size (:func:`~lookalike.duplicates.pages.dense_page`)
   - they are compared again on
   close copies of up to 1,024 pixels (:mod:`~lookalike.duplicates.pages`), where a
   rescan, a turn of a few degrees, a resize or a photocopy leaves at most
   :data:`~lookalike.duplicates.pages.PAGE_DIFFER` of the inked tiles unmatched and
   another word does not (a single changed character can stay under it). A pair over
   that bar is aligned again on the close copies' own pixels (OpenCV's ECC: the
   features, found at 512 px, can land a pixel or two off there) and then may leave at
   most :data:`~lookalike.duplicates.pages.PAGE_ALIGNED` unmatched. Two pages that meet
   their bar are aligned to the pixel and their glyphs compared
   (:func:`~lookalike.duplicates.pages.glyph_outlier`): a copy's differences spread over
   the page, another character, date or amount stands out in one place by more than
   :data:`~lookalike.duplicates.pages.GLYPH_RATIO`. Without close copies, at most
   :data:`DOC_DIFFER` of the textured tiles may differ outright.

A pair is a copy when at least :data:`MIN_AGREE` of the textured tiles agree, no
connected patch of disagreeing tiles is larger than :data:`MAX_BLOB` of them, two pages
differ outright in at most :data:`DOC_DIFFER` of them, and (for a
geometry found by features) the overlap covers at least :data:`MIN_COVER` of one image.
Nearly flat images (a solid colour, a smooth texture) are judged by their tiles'
brightness instead. The values were chosen on the look-alike and copy sets of
``tests/lookalikes.py`` (see BENCHMARKS.md, #19). Files are read with the project's own
decoder and limits (regular files only, the pixel limit checked before decoding, JPEGs
decoded at a reduced scale); a file that cannot be read leaves the pair undecided
(``None``), never a copy.
"""

from __future__ import annotations

import functools
import hashlib
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .pages import (
    GLYPH_APART,
    GLYPH_RATIO,
    PAGE_ALIGNED,
    PAGE_APART,
    PAGE_DIFFER,
    PAGE_SIDE,
    dense_page,
    glyph_outlier,
    one_paper,
    page_differ,
    page_or_dense,
)

#: Longer side, in pixels, both images are brought to for features (small ones enlarged).
SIDE = 512
#: Longer side of the aligned comparison (at most the smaller image's own), and its tiles.
COMPARE = 384
TILE = 8
#: Tiles whose standard deviation (grey levels) is below this are flat.
FLAT = 4.0
#: A textured tile agrees when its normalised cross-correlation reaches this.
NCC = 0.6
#: With fewer textured tiles than this, flat tiles count too (by brightness, within this).
MIN_TEXTURED = 12
FLAT_TOL = 14.0
FLAT_WEIGHT = 0.25
#: Gains (contrast) a brightness edit makes, fitted when flat tiles decide.
GAIN = (1 / 3, 3.0)
#: A copy: at least this share of informative tiles agree ...
MIN_AGREE = 0.6
#: ... no connected patch of disagreeing tiles larger than this share ...
MAX_BLOB = 0.10
#: ... and the overlap covers this share of one of the images (geometry found by features).
#: Two crops of one photo overlap by 0.52 and more; so do two mosaics sharing one photo's
#: quarter with the rest flat (0.51-0.58, called copies: a known limit, #19): the overlap
#: cannot tell them apart, nor can the flat tiles' brightness (a colour edit changes it
#: as much).
MIN_COVER = 0.5
#: Pages (step 4): at least this share of the tiles is blank paper (flat, at least
#: :data:`PAPER` grey) in both images ...
DOC_PAPER = 0.25
PAPER = 170.0
#: ... and this share of the textured tiles is ink on it (bright enough, with its
#: spread, to hold that paper: text, lines), in both. Photos with a white sky: 0.1-0.5.
DOC_INK = 0.8
#: Two pages differ outright in a tile whose correlation is below this; a copy of a page
#: has at most :data:`DOC_DIFFER` of its textured tiles so. Measured in #19 (review's
#: forms, 4 or 8 of 15 fields filled in differently): distinct forms from 0.022 up,
#: letters from 0.13; rescans and re-saves 0.002-0.023, a few badly aligned rescans up to
#: 0.06 (those join their group only through a third copy, or not).
DOC_NCC = 0.3
DOC_DIFFER = 0.02
#: Fewest homography inliers worth aligning on.
MIN_INLIERS = 10
#: ORB features per image.
FEATURES = 1000
#: Thinner images (pixels, at the size features are found at) have no ORB features.
_ORB_MIN = 64
#: Bytes of prepared images kept (a settled photo ~0.3 MB with its features, a page up
#: to 1.5 MB): ~1,700 photos. In the most-similar-first order a run budget needs, 18,979
#: candidate pairs of 10,000 mosaics prepared 32,587 images with 256 kept, 20,842 with
#: 1,024 (#19).
CACHE_BYTES = 512 << 20
#: Threads looking at pairs at once, at most (OpenCV runs each look on one thread).
MAX_WORKERS = 8


@functools.cache
def _cv2() -> Any:
    try:
        import cv2
    except ImportError as e:  # pragma: no cover - the extra is missing
        from ..errors import ConfigError

        raise ConfigError(
            "the second look at duplicate pairs needs OpenCV: pip install "
            "'lookalike[verify]' (opencv-python-headless), or pass --no-verify"
        ) from e
    # No OpenCV thread pool: the looks run on their own threads, one per core
    # (:class:`Verifier`), and each look is small. (It also leaves no pool lock for a
    # forked child to inherit: the crash test's forked mover once hung on a lock, cause
    # not established, #19; that test no longer forks.)
    cv2.setNumThreads(1)
    return cv2


@dataclass
class Look:
    """One image prepared for comparison.

    Attributes:
        grey: uint8 ``(h, w)``, the longer side :data:`SIDE` pixels; after
            :meth:`settle`, only the size it is compared at (:data:`COMPARE` at most).
        native: the longer side of the image as decoded (a small image is enlarged to
            ``SIDE`` for features, but compared at its own size at most).
        shape: ``(h, w)`` of the :data:`SIDE` frame: geometries and feature points are in
            its pixels.
        features: ``(side, mirrored) -> (points float32 (n, 2), ORB descriptors)``, found
            at that size (points in the ``shape`` frame), made on use.
        sizes: ``longer side -> grey`` at that size, made on use.
        page: when the image looks like a page (:mod:`~lookalike.duplicates.pages`), its
            grey at up to :data:`~lookalike.duplicates.pages.PAGE_SIDE` pixels.
        order: a digest of the prepared pixels (:func:`prepare`): which of two images a
            :class:`Verifier` maps onto the other, so that a pair's verdict depends on
            the two images alone.
        coloured: laid out like a page, but on fields of several colours, not one paper (a
            logo, :func:`~lookalike.duplicates.pages.one_paper`): never judged as a page.
        read_as: the file's identity when these pixels were read (set by a
            :class:`Verifier` that remembers verdicts; ``None``: unknown, or the file
            changed while it was read).
    """

    grey: np.ndarray
    native: int
    page: np.ndarray | None = None
    features: dict[tuple[int, bool], tuple[np.ndarray, Any]] = field(default_factory=dict)
    sizes: dict[int, np.ndarray] = field(default_factory=dict)
    shape: tuple[int, int] = (0, 0)
    order: bytes = b""
    coloured: bool = False
    read_as: bytes | None = None

    def __post_init__(self) -> None:
        if self.shape == (0, 0):
            self.shape = (int(self.grey.shape[0]), int(self.grey.shape[1]))

    def at(self, side: int) -> np.ndarray:
        """``grey`` with its longer side ``side`` pixels."""
        if side == max(self.grey.shape):
            return self.grey
        if side not in self.sizes:
            self.sizes[side] = _resize_to(self.grey, side)
        return self.sizes[side]

    def settle(self) -> Look:
        """Find the features every look at this image needs (:data:`SIDE`, mirrored or
        not), then keep the grey only at the sizes still needed: the one it is compared at
        (:data:`COMPARE` at most), half :data:`SIDE` (features of a blurred copy, found on
        use) and 64 px (flatness). About half the memory, so twice as many photos stay in
        the :class:`Verifier`'s cache (10,000 mosaics: 10,122 images prepared with 1,000
        kept, 6,031 with 2,000, #19). Pages keep their grey whole (resized twice, 512 ->
        384 -> a small partner's size, a page's thin strokes moved its agreement by up to
        0.14 and two distinct forms became copies: review, #19). Returns itself."""
        if self.page is not None or max(self.grey.shape) != max(self.shape):
            return self  # a page, or settled already
        for mirrored in (False, True):
            _features(self, SIDE, mirrored)
        keep = min(COMPARE, self.native, max(self.shape))
        small = self.at(max(4 * TILE, keep))
        self.sizes = {side: self.at(side) for side in (SIDE // 2, 64)}
        self.grey = small
        return self


@dataclass(frozen=True)
class Verdict:
    """What the second look saw.

    Attributes:
        copy: the same capture (``None``: undecided, a file could not be read or an image
            is too thin to compare).
        agree: share of informative tiles that agree once aligned (0 without geometry).
        cover: share of the smaller image the overlap covers.
        inliers: matched features consistent with the geometry (0: same framing used).
        mirrored: the second image is a mirror image of the first.
        how: ``"framing"``, ``"orb"``, ``"none"`` (no geometry), ``"unreadable"`` or
            ``"too thin"`` (an image thinner than a tile once compared: undecided).
        blob: the largest patch of disagreeing tiles (see :class:`Agreement`).
        glyphs: when two pages were aligned to the pixel and their glyphs compared, how far
            the most different one stood out (:func:`~lookalike.duplicates.pages.glyph_outlier`);
            ``None`` otherwise.
        text_differs: not a copy, and two pages that the look aligned to the pixel on their
            own pixels and found their text different (:attr:`Agreement.apart`): read
            closely and told apart, whatever a third image says.
        remembered: made by an earlier run for these two files, not looked at again
            (:mod:`~lookalike.duplicates.remembered`; not part of the verdict's value).
    """

    copy: bool | None
    agree: float = 0.0
    cover: float = 0.0
    inliers: int = 0
    mirrored: bool = False
    how: str = "none"
    blob: float = 1.0
    glyphs: float | None = None
    text_differs: bool = False
    remembered: bool = field(default=False, compare=False)


def _resize_to(img: np.ndarray, side: int) -> np.ndarray:
    cv2 = _cv2()
    h, w = img.shape[:2]
    s = side / max(h, w)
    size = (max(1, round(w * s)), max(1, round(h * s)))
    inter = cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR
    return cv2.resize(img, size, interpolation=inter)  # type: ignore[no-any-return]


def _grey(rgb: Any) -> np.ndarray:
    if hasattr(rgb, "convert"):
        # Pillow converts neither LAB nor La ("L with premultiplied alpha") to L directly.
        if rgb.mode == "LAB":
            rgb = rgb.convert("RGB")
        elif rgb.mode == "La":
            rgb = rgb.getchannel("L")
        arr = np.asarray(rgb.convert("L"))
    else:
        arr = np.asarray(rgb)
    if arr.ndim == 3:
        if arr.shape[2] < 3:  # grey, and maybe its alpha
            arr = arr[..., 0]
        else:
            arr = (arr[..., :3] @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    return np.ascontiguousarray(arr, dtype=np.uint8)


def _colour(rgb: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """``rgb`` (a Pillow image or an array) as ``(h, w, 3)`` uint8 of ``shape``; ``None``
    when it has no colour."""
    if hasattr(rgb, "convert"):
        if rgb.mode in ("1", "L", "LA", "La", "I", "I;16", "F"):
            return None
        arr = np.asarray(rgb.convert("RGB"))
    else:
        arr = np.asarray(rgb)
        if arr.ndim != 3 or arr.shape[2] < 3:
            return None
        arr = np.ascontiguousarray(arr[..., :3], dtype=np.uint8)
    cv2 = _cv2()
    return cv2.resize(arr, (shape[1], shape[0]), interpolation=cv2.INTER_AREA)  # type: ignore[no-any-return]


def prepare(rgb: Any) -> Look:
    """A :class:`Look` at an RGB Pillow image or ``(h, w, 3)`` uint8 array; a page also
    keeps a close copy (:mod:`~lookalike.duplicates.pages`)."""
    arr = _grey(rgb)
    grey = _resize_to(arr, SIDE)
    order = hashlib.blake2b(repr(grey.shape).encode(), digest_size=16, person=b"lookalike-look")
    order.update(grey.tobytes())
    look = Look(grey, max(arr.shape[:2]), order=order.digest())
    close: np.ndarray | None = None
    page, dense = page_or_dense(look.grey)
    if not page:
        if not dense:
            return look
        # Asked at its close size as decoded (JPEG drafts of sheets up to 4,000 px wide
        # were pages already; decoding again would cost every bright photo).
        close = _resize_to(arr, min(PAGE_SIDE, max(arr.shape[:2])))
        if not dense_page(close):
            return look
    # A dense page's paper is asked where it shows: at its close size.
    seen = look.grey if close is None else close
    colour = _colour(rgb, seen.shape)
    if colour is None or one_paper(seen, colour):
        look.page = (
            close if close is not None else _resize_to(arr, min(PAGE_SIDE, max(arr.shape[:2])))
        )
    else:
        look.coloured = True
    return look


def look_at_file(path: str | bytes, limits: Any = None) -> Look | None:
    """Read and prepare one file with the project's decoder; ``None`` when it cannot."""
    from ..decode import DecodeFailure, DecodeLimits, open_rgb, read_file
    from ..decode.image import REDUCED

    limits = limits or DecodeLimits()
    try:
        data = read_file(path, max_file_bytes=limits.max_file_bytes)
        first = open_rgb(data, limits=limits, draft_to=(SIDE, SIDE))
        look = prepare(first)
        # A page is read closer: decoded again, larger, when the first decode was reduced
        # (a JPEG's draft) below the close size; not a PNG, nor a page already whole
        # (decoding a 6000x8000 page twice cost 1 s and 200 MB more). The decoder says
        # so: reading the size from the header here, outside its limits, let Pillow's
        # own pixel limit raise on a 179 MP page the index had accepted (review, #19).
        if look.page is not None and first.info.get(REDUCED) and max(first.size) < PAGE_SIDE:
            look = prepare(open_rgb(data, limits=limits, draft_to=(PAGE_SIDE, PAGE_SIDE)))
        return look.settle()
    except (DecodeFailure, OSError, ValueError):
        return None


# ------------------------------------------------------------------ aligned content
def _tiles(img: np.ndarray, ny: int, nx: int) -> np.ndarray:
    return img[: ny * TILE, : nx * TILE].reshape(ny, TILE, nx, TILE).swapaxes(1, 2)


@dataclass(frozen=True)
class Agreement:
    """How two aligned images compare, tile by tile.

    Attributes:
        share: share of the informative tiles that agree (textured tiles alone when there
            are at least :data:`MIN_TEXTURED`; otherwise flat tiles count a quarter each).
        blob: the largest connected patch of disagreeing textured tiles, as a share of the
            informative tiles (another object in the middle; not a caption's thin lines).
        tiles: informative tiles compared.
        differ: when both images are pages (see the module docstring), the share of
            textured tiles that differ outright; ``None`` otherwise.
        bar: the most ``differ`` a copy may have (:data:`DOC_DIFFER` at the usual size,
            :data:`~lookalike.duplicates.pages.PAGE_DIFFER` when the pages' close copies
            were compared).
        glyphs: when two pages' close copies met that bar, how far their most different
            glyph stands out (:func:`~lookalike.duplicates.pages.glyph_outlier`; a copy:
            at most :data:`~lookalike.duplicates.pages.GLYPH_RATIO`); ``None`` otherwise.
        apart: two pages aligned to the pixel on their own pixels whose text differs:
            inked tiles left unmatched past
            :data:`~lookalike.duplicates.pages.PAGE_APART`, or a glyph past
            :data:`~lookalike.duplicates.pages.GLYPH_APART` (see :attr:`Verdict.text_differs`).
    """

    share: float
    blob: float
    tiles: int
    differ: float | None = None
    bar: float = DOC_DIFFER
    glyphs: float | None = None
    apart: bool = False

    @property
    def copy(self) -> bool:
        page_ok = self.differ is None or self.differ <= self.bar
        page_ok = page_ok and (self.glyphs is None or self.glyphs <= GLYPH_RATIO)
        return self.share >= MIN_AGREE and self.blob <= MAX_BLOB and self.tiles > 0 and page_ok


def agreement(a: np.ndarray, b: np.ndarray, mask: np.ndarray, pages: bool = False) -> Agreement:
    """Compare aligned ``a`` and ``b`` tile by tile (see :class:`Agreement`).

    Args:
        a, b: float32 ``(h, w)`` grey images on one grid.
        mask: bool ``(h, w)``, where ``b`` has pixels.
        pages: both images were found pages at their own size (:func:`prepare`): their
            share of blank paper is not asked again here (see :func:`_page_differ`).
    """
    ny, nx = a.shape[0] // TILE, a.shape[1] // TILE
    if ny == 0 or nx == 0:  # thinner than a tile (a banner, a strip): nothing to compare
        return Agreement(0.0, 1.0, 0)
    covered = _tiles(mask, ny, nx).reshape(ny * nx, -1).mean(axis=1) >= 0.95
    if not covered.any():
        return Agreement(0.0, 1.0, 0)
    ta = _tiles(a, ny, nx).reshape(ny * nx, -1)[covered]
    tb = _tiles(b, ny, nx).reshape(ny * nx, -1)[covered]
    ma, mb = ta.mean(axis=1), tb.mean(axis=1)
    sa, sb = ta.std(axis=1), tb.std(axis=1)
    flat = (sa < FLAT) & (sb < FLAT)
    ncc = ((ta - ma[:, None]) * (tb - mb[:, None])).mean(axis=1) / np.maximum(sa * sb, 1e-6)
    agree = (sa >= FLAT) & (sb >= FLAT) & (ncc >= NCC)  # a tile textured in one only: differs
    if (~flat).sum() >= MIN_TEXTURED:
        # Enough texture to judge by: flat tiles are left out (blank paper agrees on every
        # letter, a smooth sky on every photo of the sky).
        weight = np.where(flat, 0.0, 1.0)
    else:
        # Little texture (a flat image, a smooth tile): flat tiles decide, by brightness
        # (after the edit's gain and offset, when the brightness varies enough to fit one).
        # A gain out of :data:`GAIN` (0 against a flat image, below 0 an inverted ramp)
        # is no edit: then the two compare as they are.
        gain, offset = 1.0, 0.0
        if mb.std() > 2 * FLAT_TOL:
            design = np.stack([mb, np.ones_like(mb)], axis=1)
            (fit, shift), *_ = np.linalg.lstsq(design, ma, rcond=None)
            if GAIN[0] <= fit <= GAIN[1]:
                gain, offset = fit, shift
        agree |= flat & (np.abs(ma - (gain * mb + offset)) <= FLAT_TOL)
        weight = np.where(flat, FLAT_WEIGHT, 1.0)
    share = float((agree * weight).sum() / weight.sum())
    grid = np.zeros(ny * nx, np.uint8)
    grid[np.flatnonzero(covered)] = ~agree & ~flat
    # Disagreeing tiles one tile apart vertically are one patch (a column of values on
    # every other line of a form is one region that differs, not twenty small ones; a
    # caption's lines stay apart); only tiles that disagree count towards its size.
    cv2 = _cv2()
    grid2 = grid.reshape(ny, nx)
    closed = cv2.morphologyEx(grid2, cv2.MORPH_CLOSE, np.ones((3, 1), np.uint8))
    count, labels = cv2.connectedComponents(closed, connectivity=4)
    sizes = np.bincount(labels.ravel(), weights=grid2.ravel().astype(float), minlength=count)
    biggest = sizes[1:].max() if count > 1 else 0
    differ = _page_differ(ma, mb, sa, sb, ncc, flat, pages)
    return Agreement(share, float(biggest) / len(ta), len(ta), differ)


def _page_differ(
    ma: np.ndarray, mb: np.ndarray, sa: np.ndarray, sb: np.ndarray, ncc: np.ndarray,
    flat: np.ndarray, pages: bool = False,
) -> float | None:  # fmt: skip
    """Share of the textured tiles that differ outright when both images are pages
    (module docstring, step 4), from the tiles' means, spreads and correlations; ``None``
    when they are not pages.

    With ``pages`` (both found pages at their own size), the share of blank paper is not
    asked again: a dense page, two columns of 12-px print, has too little of it left in
    8-px tiles at 384 px, was judged as a photo, and another amount in one line was a
    caption's worth (review of #19). Its ink on paper still is: pages taken for pages at
    512 px that are pictures here (a white sky with wires, a whiteboard: review of #19,
    seventh pass; their turned and phone copies were lost when they were read closely)
    stay pictures."""
    paper = flat & (ma >= PAPER) & (mb >= PAPER)
    textured = ~flat
    if pages and textured.any() and not paper.any():
        # Pages at their own size with no blank tile left here: a dense page (a sheet
        # with banded rows, 384 px: a grid line, a band's edge or a figure in every tile;
        # judged as a photo, sheets of one template were copies: review of #19).
        return float((textured & (ncc < DOC_NCC)).sum() / textured.sum())
    if not paper.any() or not textured.any() or (paper.mean() < DOC_PAPER and not pages):
        return None
    level = min(float(np.median(ma[paper])), float(np.median(mb[paper])))
    # Ink on paper: a tile holding paper and strokes reaches the paper's level within
    # its spread (a photo's texture under a white sky does not).
    ink = textured & (ma + sa >= level - 30) & (mb + sb >= level - 30)
    if ink.sum() < DOC_INK * textured.sum():
        return None
    return float((textured & (ncc < DOC_NCC)).sum() / textured.sum())


def _scale(side_from: tuple[int, ...], side_to: tuple[int, ...]) -> np.ndarray:
    """Pixel coordinates of ``side_from`` -> those of ``side_to`` (a resize of it), pixel
    centres kept: ``x' = s (x + 1/2) - 1/2``, each axis its own ``s``. (Without the half
    pixel and with one ``s`` for both axes, a geometry that turns the image over, a mirror,
    landed a fraction of a pixel off at the comparison's size: enough for a page's thin
    strokes to differ outright, and a mirrored page was no copy, #19.)"""
    sx = side_to[1] / side_from[1]
    sy = side_to[0] / side_from[0]  # each side rounded on its own
    return np.array([[sx, 0.0, (sx - 1) / 2], [0.0, sy, (sy - 1) / 2], [0.0, 0.0, 1.0]])


def _compare(a: Look, b: Look, h: np.ndarray, refine: bool = True) -> tuple[Agreement, float]:
    """``(agreement, cover)`` once ``b`` is warped onto ``a`` by ``h`` (``b.grey`` ->
    ``a.grey`` pixel coordinates), at the smaller image's own size at most (detail one of
    them never had cannot agree)."""
    cv2 = _cv2()
    side = max(4 * TILE, min(COMPARE, a.native, b.native))
    small_a, small_b = a.at(side), b.at(side)
    m = _scale(a.shape, small_a.shape) @ h @ np.linalg.inv(_scale(b.shape, small_b.shape))
    size = (small_a.shape[1], small_a.shape[0])
    warped = cv2.warpPerspective(small_b, m, size, flags=cv2.INTER_LINEAR)
    inside = cv2.warpPerspective(
        np.full(small_b.shape, 255, np.uint8), m, size, flags=cv2.INTER_NEAREST
    )
    mask = cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0
    hb, wb = small_b.shape
    corners = np.array([[0, 0], [wb, 0], [wb, hb], [0, hb]], np.float32).reshape(-1, 1, 2)
    projected = cv2.perspectiveTransform(corners, m).reshape(-1, 2)
    area_b = abs(float(cv2.contourArea(projected)))
    overlap = float(mask.sum())
    cover = max(overlap / mask.size, overlap / area_b if area_b > 0 else 0.0)
    pages = a.page is not None and b.page is not None
    found = agreement(small_a.astype(np.float32), warped.astype(np.float32), mask, pages)
    near = found.share >= MIN_AGREE and found.blob <= MAX_BLOB  # else distinct anyway
    if a.coloured or b.coloured:
        # Fields of several colours are no paper: a logo is a picture, not a page (its
        # tiles' grey passed for one at the usual size too: a logo's copy, turned and
        # mirrored, differed there in 4.6% of them, over DOC_DIFFER, #19).
        found = replace(found, differ=None)
    if found.differ is not None and a.page is not None and b.page is not None and near:
        differ, bar, glyphs, apart = _close(a.page, b.page, a.shape, b.shape, h, refine)
        found = replace(found, differ=differ, bar=bar, glyphs=glyphs, apart=apart)
    return found, min(1.0, cover)


def _close(
    pa: np.ndarray,
    pb: np.ndarray,
    ga: tuple[int, ...],
    gb: tuple[int, ...],
    h: np.ndarray,
    refine: bool = True,
) -> tuple[float, float, float | None, bool]:
    """:func:`~lookalike.duplicates.pages.page_differ` of two pages' close copies (``pa``,
    ``pb``; ``h`` maps ``gb``'s pixels onto ``ga``'s), at the smaller one's size; the
    bar a copy meets: :data:`~lookalike.duplicates.pages.PAGE_DIFFER` as the features
    align them, :data:`~lookalike.duplicates.pages.PAGE_ALIGNED` once refined (a pair
    over the first bar is refined only when ``refine``: one geometry of each try, see
    :func:`compare_looks`); and, when they meet it,
    :func:`~lookalike.duplicates.pages.glyph_outlier` on the pages aligned to the pixel
    (refined whatever ``refine`` says: every geometry that meets the bar pays it);
    ``None`` when they do not; and whether, aligned to the pixel, their text differs
    (:attr:`Agreement.apart`)."""
    side = min(max(pa.shape), max(pb.shape))
    pa, pb = _resize_to(pa, side), _resize_to(pb, side)
    m = _scale(ga, pa.shape) @ h @ np.linalg.inv(_scale(gb, pb.shape))
    fa = pa.astype(np.float32)
    warped, inside = _warp_page(pb, m, pa.shape)
    differ = page_differ(fa, warped, inside)
    if differ <= PAGE_DIFFER:
        # Met as the features align them: aligned to the pixel for the glyphs (a
        # refinement that fails leaves the features' alignment).
        refined = _refine(fa, warped, inside, m)
        if refined is not None:
            warped, inside = _warp_page(pb, refined, pa.shape)
        glyphs = _glyphs(fa, pb, warped, inside, refined)
        return differ, PAGE_DIFFER, glyphs, refined is not None and glyphs > GLYPH_APART
    if not refine:
        return differ, PAGE_DIFFER, None, False
    # Over the bar: the geometry, fitted to features at 512 px, may land a pixel or two
    # off at this size (a page cropped 3% at its margins: 8% of its inked tiles unmatched,
    # 0 once refined; rescans of forms: 0.4-3.7%, then 0, #19). Refined here on the pixels
    # themselves (OpenCV's ECC, a few iterations from the features' geometry); a
    # refinement that does not converge or moves the page far is no better geometry.
    # Aligned to the pixel, a copy leaves no inked tile unmatched, and the bar is that
    # (PAGE_ALIGNED): refined at the usual bar, an invoice with another date became a
    # copy of a rescan of another invoice (0.0018 unmatched, #19). A changed character
    # can still leave none: the glyphs are compared then (pages.glyph_outlier).
    refined = _refine(fa, warped, inside, m)
    if refined is None:
        return differ, PAGE_DIFFER, None, False
    warped, inside = _warp_page(pb, refined, pa.shape)
    aligned = page_differ(fa, warped, inside)
    if aligned > PAGE_ALIGNED:
        return differ, PAGE_DIFFER, None, PAGE_APART < aligned <= differ
    glyphs = _glyphs(fa, pb, warped, inside, refined)
    return aligned, PAGE_ALIGNED, glyphs, glyphs > GLYPH_APART


def _glyphs(
    fa: np.ndarray, pb: np.ndarray, warped: np.ndarray, inside: np.ndarray, m: np.ndarray | None
) -> float:
    """:func:`~lookalike.duplicates.pages.glyph_outlier` of ``fa`` and ``warped`` (``pb``
    warped by ``m``, refined at half the size); when that passes for a copy's, again
    with the alignment refined at the close size itself (:func:`_refine_fine`), which
    decides. Half the size left two scans of one page up to 3 px apart along a line of
    small print (a 660-px page is 330 px there): a copy's glyphs differed there as much
    as another date does, so the page's 99th percentile hid a changed date, or a date
    and a quantity (scanned invoices, small re-saves of them, #19). A pair already over
    the bar is not refined further (most look-alike pages: the cost)."""
    glyphs = glyph_outlier(fa, warped, inside)
    if glyphs > GLYPH_RATIO or m is None:
        return glyphs
    finer = _refine_fine(fa, warped, inside, m)
    if finer is None:
        return glyphs
    warped, inside = _warp_page(pb, finer, fa.shape, cubic=True)
    return glyph_outlier(fa, warped, inside)


def _warp_page(
    pb: np.ndarray, m: np.ndarray, shape: tuple[int, ...], cubic: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """``pb`` warped by ``m`` onto a page of ``shape`` (float32), and where it has pixels.

    Bilinear, or bicubic to confirm a pair's glyphs once aligned at the close size
    (:func:`_glyphs`). Bilinear interpolation blurs each pixel by how far it falls
    between two (nothing at a whole-pixel shift, a [0.5, 0.5] average at half a pixel):
    a page turned a degree came back blurred in bands, and there a copy's glyphs differed
    as much as a changed character (#19, seventh pass: one-character changes on scanned
    receipts, handwriting, a landscape page; an invoice re-saved small against another
    with its date and quantity changed). Bicubic keeps strokes sharp, and so shows a
    misalignment of a fraction of a pixel that bilinear blurs away: used everywhere, it
    lost exact 90-degree turns whose half-size alignment was that far off, and a rescan
    of a form against its small re-save (review of #19, seventh pass). Only the final,
    finest alignment is compared so.
    """
    cv2 = _cv2()
    size = (shape[1], shape[0])
    flags = cv2.INTER_CUBIC if cubic else cv2.INTER_LINEAR
    warped = cv2.warpPerspective(pb, m, size, flags=flags)
    inside = cv2.warpPerspective(np.full(pb.shape, 255, np.uint8), m, size)
    return warped.astype(np.float32), cv2.erode(inside, np.ones((3, 3), np.uint8)) > 0


#: The close geometry's refinement: ECC iterations fitted at half the close size (then,
#: to confirm a pair's glyphs, :data:`ECC_FINE_ITERATIONS` at the close size itself: see
#: :func:`_glyphs`), and the most it may move a corner of the page (pixels at the close
#: size): more is another alignment.
ECC_ITERATIONS = 10
ECC_FINE_ITERATIONS = 10
ECC_MOVE = 12.0


def _refine(a: np.ndarray, warped: np.ndarray, inside: np.ndarray, m: np.ndarray) -> Any:
    """``m`` (a page's pixels onto ``a``'s) corrected so that ``warped`` (that page warped
    by ``m``) lines up with ``a`` pixel for pixel: OpenCV's ECC (enhanced correlation
    coefficient) fitted at half the size on the pixels where both are; ``None`` when it
    fails or moves the page more than :data:`ECC_MOVE` pixels."""
    cv2 = _cv2()

    def half(img: np.ndarray) -> np.ndarray:
        size = (max(1, img.shape[1] // 2), max(1, img.shape[0] // 2))
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA)  # type: ignore[no-any-return]

    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_ITERATIONS, 1e-4)
    try:
        _, w = cv2.findTransformECC(
            half(a), half(warped), np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY,
            criteria, half(inside.astype(np.uint8)), 3,
        )  # fmt: skip
        # Half-size pixels -> the close size's, pixel centres kept (see _scale).
        to_full = np.array([[2.0, 0.0, 0.5], [0.0, 2.0, 0.5], [0.0, 0.0, 1.0]])
        correction = np.linalg.inv(to_full @ w.astype(np.float64) @ np.linalg.inv(to_full))
    except (cv2.error, np.linalg.LinAlgError):  # no convergence, a singular fit
        return None
    return _corrected(a.shape, correction, m)


def _refine_fine(a: np.ndarray, warped: np.ndarray, inside: np.ndarray, m: np.ndarray) -> Any:
    """As :func:`_refine`, at the close size itself and for :data:`ECC_FINE_ITERATIONS`
    iterations (``warped`` is aligned within a pixel or so already)."""
    cv2 = _cv2()
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, ECC_FINE_ITERATIONS, 1e-5)
    try:
        _, w = cv2.findTransformECC(
            a, warped, np.eye(3, dtype=np.float32), cv2.MOTION_HOMOGRAPHY, criteria,
            inside.astype(np.uint8), 3,
        )  # fmt: skip
        correction = np.linalg.inv(w.astype(np.float64))
    except (cv2.error, np.linalg.LinAlgError):
        return None
    return _corrected(a.shape, correction, m)


def _corrected(shape: tuple[int, ...], correction: np.ndarray, m: np.ndarray) -> Any:
    """``correction @ m``; ``None`` when the correction moves a corner of a page of
    ``shape`` more than :data:`ECC_MOVE` pixels (or nowhere finite)."""
    cv2 = _cv2()
    hh, ww = shape[:2]
    corners = np.array([[0, 0], [ww, 0], [ww, hh], [0, hh]], np.float64).reshape(-1, 1, 2)
    moved = cv2.perspectiveTransform(corners, correction) - corners
    if not np.isfinite(moved).all() or float(np.abs(moved).max()) > ECC_MOVE:
        return None
    return correction @ m


# ------------------------------------------------------------------ geometry
_LOCAL = threading.local()


def _orb() -> Any:
    """This thread's ORB detector (OpenCV objects are not shared between threads)."""
    if not hasattr(_LOCAL, "orb"):
        _LOCAL.orb = _cv2().ORB_create(nfeatures=FEATURES, fastThreshold=5)
    return _LOCAL.orb


def _features(look: Look, side: int, mirrored: bool) -> tuple[np.ndarray, Any]:
    """ORB points (in ``look.grey``'s pixels) and descriptors, found at ``side``."""
    key = (side, mirrored)
    if key not in look.features:
        img = look.at(side)
        img = np.ascontiguousarray(img[:, ::-1]) if mirrored else img
        # ORB finds nothing within its border (31 px) and OpenCV fails on an image only a
        # few pixels thin (its pyramid shrinks a side to 0): no features then.
        kps, desc = _orb().detectAndCompute(img, None) if min(img.shape) >= _ORB_MIN else ((), None)
        pts = np.array([k.pt for k in kps], np.float32).reshape(-1, 2)
        if mirrored:
            pts[:, 0] = img.shape[1] - 1 - pts[:, 0]
        pts *= max(look.shape) / max(img.shape)
        look.features[key] = (pts, desc)
    return look.features[key]


def _homography(a: Look, b: Look, mirrored: bool) -> tuple[np.ndarray | None, int]:
    """The homography taking ``b``'s pixels onto ``a``'s, and its inlier count (see
    :func:`_geometries`)."""
    found = [(h, n) for kind, h, n in _geometries(a, b, mirrored) if kind == "homography"]
    return found[0] if found else (None, 0)


def _geometries(a: Look, b: Look, mirrored: bool) -> list[tuple[str, np.ndarray, int]]:
    """Geometries taking ``b``'s pixels onto ``a``'s, as ``(kind, matrix, inliers)``: a
    ``"homography"``, and an ``"affine"`` map fitted to the same matches, for pages (an
    edit crops, turns and scales: no perspective; where features crowd in one part of a
    page, the homography's perspective terms can tilt the rest by a pixel or two, and a
    page's thin strokes then differ: a rescanned form agreed at 0.43 through its
    homography, 0.96 through the affine map, #19; on photos the affine map found 3% more
    copy pairs, and one pair of distinct brick tiles a period apart). Homographies come
    first. Tried again at half the size when no homography is found (a blurred copy keeps
    its coarse corners). (Matching at the smaller image's own size, and blurring the
    sharper image of a pair to the other's sharpness before comparing, were measured and
    lost more copies than they found.)"""
    found = _geometries_at(a, b, mirrored, SIDE)
    if not any(kind == "homography" for kind, _, _ in found):
        found += _geometries_at(a, b, mirrored, SIDE // 2)
    return sorted(found, key=lambda g: g[0] != "homography")  # stable


def _geometries_at(
    a: Look, b: Look, mirrored: bool, side: int
) -> list[tuple[str, np.ndarray, int]]:
    cv2 = _cv2()
    pa, da = _features(a, side, False)
    pb, db = _features(b, side, mirrored)
    if da is None or db is None or len(da) < MIN_INLIERS or len(db) < MIN_INLIERS:
        return []
    good = _matches(db, da)
    if len(good) < MIN_INLIERS:
        return []
    src = pb[[g.queryIdx for g in good]]
    dst = pa[[g.trainIdx for g in good]]
    # MAGSAC often finds no model that turns the image over (a mirror: its determinant is
    # negative; 0 inliers for a photo and its exact mirror image, #19): a mirrored pair
    # is fitted from the mirrored image's own coordinates, the mirror composed back in.
    flip = _mirror(b.shape[1]) if mirrored else np.eye(3)
    src = cv2.perspectiveTransform(src.reshape(-1, 1, 2), flip).reshape(-1, 2)
    out = []
    h, inliers = cv2.findHomography(src, dst, cv2.USAC_MAGSAC, 4.0)
    m, affine_inliers = cv2.estimateAffine2D(
        src, dst, method=cv2.USAC_MAGSAC, ransacReprojThreshold=4.0
    )
    fits = [("homography", h, inliers)]
    if m is not None:
        fits.append(("affine", np.vstack([m, [0.0, 0.0, 1.0]]), affine_inliers))
    for kind, model, mask in fits:
        count = int(mask.sum()) if mask is not None else 0
        if model is None or count < MIN_INLIERS:
            continue
        model = model @ flip
        if _plausible(model, b.shape, mirrored):
            out.append((kind, model, count))
    return out


def _matches(query: Any, train: Any) -> list[Any]:
    """Matches of ``query``'s descriptors among ``train``'s that pass Lowe's ratio test."""
    cv2 = _cv2()
    pairs = cv2.BFMatcher(cv2.NORM_HAMMING).knnMatch(query, train, k=2)
    return [p[0] for p in pairs if len(p) == 2 and p[0].distance < 0.8 * p[1].distance]


def _plausible(h: np.ndarray, shape: tuple[int, ...], mirrored: bool) -> bool:
    """A geometry an edit can make: orientation kept (reversed for a mirror image), scale
    within 1/8-8, little perspective (a folded warp is a coincidence of matches)."""
    det = float(np.linalg.det(h[:2, :2])) * (-1 if mirrored else 1)
    if not (1 / 64 <= det <= 64):
        return False
    hh, ww = shape
    return abs(h[2, 0]) * ww + abs(h[2, 1]) * hh < 0.5


def _mirror(width: int) -> np.ndarray:
    """The mirror image, left to right, of an image ``width`` pixels wide."""
    return np.array([[-1.0, 0, width - 1], [0, 1, 0], [0, 0, 1]])


def _framing(a: Look, b: Look, mirrored: bool) -> np.ndarray:
    """The geometry of "same picture, other size" (optionally mirrored)."""
    ha, wa = a.shape
    hb, wb = b.shape
    flip = _mirror(wb) if mirrored else np.eye(3)
    return np.diag([wa / wb, ha / hb, 1.0]) @ flip  # type: ignore[no-any-return]


def compare_looks(a: Look, b: Look) -> Verdict:
    """Whether ``a`` and ``b`` show the same capture (see the module docstring)."""
    ha, wa = a.shape
    hb, wb = b.shape
    best = Verdict(False, how="none")
    tries: list[tuple[str, bool]] = []
    # One aspect ratio: try them as they are. So too two images of one flat colour (no
    # geometry to find; the colour decides), whatever their shapes.
    flat = float(a.at(64).std()) < FLAT and float(b.at(64).std()) < FLAT
    if abs(np.log((wa / ha) / (wb / hb))) < 0.08 or flat:
        tries += [("framing", False), ("framing", True)]
    tries += [("orb", False), ("orb", True)]
    compared = thin = False
    glyphs: float | None = None  # the most different glyph any geometry found
    apart = False  # any geometry read the two pages' text apart
    for how, mirrored in tries:
        if how == "framing":
            geometries = [("framing", _framing(a, b, mirrored), 0)]
        else:
            geometries = _geometries(a, b, mirrored)
        page = False
        for kind, h, inliers in geometries:
            if kind == "affine" and not page:
                continue  # pages only (see _geometries)
            # Pages are refined from one geometry (50-90 ms each): the affine map where
            # there is one (the closer start for a page, see _geometries).
            refine = kind == "affine" or not any(g[0] == "affine" for g in geometries)
            verdict, thin, page = _judge(a, b, h, how, mirrored, inliers, thin, refine)
            compared = True
            if verdict.glyphs is not None:
                glyphs = max(glyphs or 0.0, verdict.glyphs)
            apart = apart or verdict.text_differs
            if verdict.copy:
                # (Two pages whose glyphs differ under one geometry go on to the next: a
                # homography refined a pixel off made a table's rescan differ at 2.03, its
                # affine map confirmed it at 1.55, review of #19.)
                return verdict
            if verdict.agree > best.agree:
                best = verdict
    if compared and thin and best.agree == 0.0:
        # An image thinner than a tile at the comparison size (a 4000x40 banner) has no
        # tile to judge by: the look cannot decide, it does not say "distinct".
        return Verdict(None, how="too thin")
    return replace(best, glyphs=glyphs, text_differs=apart)


def _judge(
    a: Look,
    b: Look,
    h: np.ndarray,
    how: str,
    mirrored: bool,
    inliers: int,
    thin: bool,
    refine: bool = True,
) -> tuple[Verdict, bool, bool]:
    """The verdict of one geometry, whether an image was too thin to compare yet, and
    whether both are pages (module docstring, step 4)."""
    found, cover = _compare(a, b, h, refine)
    thin = thin or _too_thin(a, b)
    copy = found.copy and (how == "framing" or cover >= MIN_COVER)
    verdict = Verdict(
        copy, found.share, cover, inliers, mirrored, how, found.blob, found.glyphs,
        text_differs=not copy and found.apart,
    )  # fmt: skip
    return verdict, thin, found.differ is not None


def _too_thin(a: Look, b: Look) -> bool:
    """Whether either image, at the aligned comparison's size, is thinner than a tile."""
    side = max(4 * TILE, min(COMPARE, a.native, b.native))
    return min(a.at(side).shape) < TILE or min(b.at(side).shape) < TILE


class Verifier:
    """Second looks at pairs of files, each file read and prepared once while it stays in
    a cache of :data:`CACHE_BYTES` (least recently used out first). Safe to call from
    several threads: a file two threads need at once is read once.

    Args:
        limits: decode limits (``None``: the defaults).
        load: path -> :class:`Look` or ``None`` (default: :func:`look_at_file`).
        cache_bytes: the cache's bound.
        memory: verdicts remembered between runs
            (:class:`~lookalike.duplicates.remembered.Remembered`): a pair whose two files
            are as they were is not looked at again, and each new verdict is remembered.
        workers: threads that look at pairs at once (:meth:`many`,
            :func:`~lookalike.duplicates.second_look.second_look`); ``None``: one per usable
            core, at most :data:`MAX_WORKERS`.
    """

    def __init__(
        self,
        limits: Any = None,
        load: Callable[[str | bytes], Look | None] | None = None,
        cache_bytes: int = CACHE_BYTES,
        workers: int | None = None,
        memory: Any = None,
    ) -> None:
        from .._cpu import usable_cores

        self.workers = max(1, workers if workers is not None else min(usable_cores(), MAX_WORKERS))
        self._load = load or (lambda p: look_at_file(p, limits))
        self._cache: OrderedDict[str | bytes, tuple[Look | None, int]] = OrderedDict()
        self._bytes = 0
        self._limit = cache_bytes
        self._lock = threading.Lock()
        self._loading: dict[str | bytes, threading.Event] = {}
        self.memory = memory
        self.looked = 0
        self.prepared = 0

    def _put(self, path: str | bytes, look: Look | None) -> None:
        old = self._cache.pop(path, None)
        if old is not None:
            self._bytes -= old[1]
        size = _nbytes(look) + len(path) + 128  # the key and its entry
        self._cache[path] = (look, size)
        self._bytes += size
        self._evict()

    def _evict(self) -> None:
        while self._bytes > self._limit and len(self._cache) > 1:
            _, (_, gone) = self._cache.popitem(last=False)
            self._bytes -= gone

    def look(self, path: str | bytes) -> Look | None:
        """``path`` prepared (``None``: it cannot be read). An error other than an
        unreadable file is raised to every caller that asks, never remembered."""
        while True:
            with self._lock:
                if path in self._cache:
                    self._cache.move_to_end(path)
                    return self._cache[path][0]
                busy = self._loading.get(path)
                if busy is None:
                    done = self._loading[path] = threading.Event()
                    break
            busy.wait()  # another thread reads it: then take it from the cache, or read
        try:
            # A verdict is remembered under the identity the files had when their pixels
            # were read, not when the pair came up: a file rewritten after its first
            # read in a run is compared from the old pixels for the rest of the run (a
            # sync client, an editor; review of #19).
            memory = self.memory
            before = memory.identity(path) if memory is not None else None
            found = self._load(path)
            if found is not None and before is not None and memory.identity(path) == before:
                found.read_as = before
            with self._lock:
                self.prepared += 1
                self._put(path, found)
            return found
        finally:
            with self._lock:
                self._loading.pop(path, None)
            done.set()

    def verdict(self, a: str | bytes, b: str | bytes) -> Verdict:
        """The second look at the pair ``a``, ``b``: the same whichever order it is asked
        in, whatever the files are called. (:func:`compare_looks` is not symmetric: it
        maps the second image onto the first, and a borderline pair - a photo turned 10
        degrees against its mirror image - can be a copy one way only. Asked in index
        order by the run and as (sample, neighbour) by the calibration, one pair could be
        labelled a copy and judged distinct; put in path order, renaming a file changed
        its verdict (review, #19). The images' own pixels decide the order:
        :attr:`Look.order`.) A verdict remembered for these two files as they are
        (:attr:`memory`) is taken as it is."""
        keys = self.memory.keys(a, b) if self.memory is not None else None
        if keys is not None:
            found = self.memory.get(keys)
            if found is not None:
                with self._lock:
                    self.looked += 1
                return found  # type: ignore[no-any-return]
        la, lb = self.look(a), self.look(b)
        if la is None or lb is None:
            return Verdict(None, how="unreadable")
        if lb.order < la.order:
            a, b, la, lb = b, a, lb, la
        verdict = compare_looks(la, lb)
        with self._lock:
            self.looked += 1
            # Features and sizes are made on use: count them once the look has them.
            for path, look in ((a, la), (b, lb)):
                held = self._cache.get(path)
                if held is not None and held[0] is look:  # not one read again since
                    size = _nbytes(look) + len(path) + 128
                    self._bytes += size - held[1]
                    self._cache[path] = (look, size)
            self._evict()
        read = sorted((la.read_as or b"", lb.read_as or b""))  # the pixels compared
        if keys is not None and tuple(read) == keys:
            self.memory.put(keys, verdict, a, b)
        return verdict

    def many(self, pairs: Sequence[tuple[str | bytes, str | bytes]]) -> list[Verdict]:
        """The verdicts of ``pairs``, in order, looked at on :attr:`workers` threads."""
        if self.workers <= 1 or len(pairs) <= 1:
            return [self.verdict(a, b) for a, b in pairs]
        with ThreadPoolExecutor(min(self.workers, len(pairs))) as pool:
            return list(pool.map(lambda p: self.verdict(*p), pairs))


def _nbytes(look: Look | None) -> int:
    """Memory a prepared image holds (its arrays; a few hundred bytes of bookkeeping)."""
    if look is None:
        return 256
    if not isinstance(look, Look):
        raise TypeError(f"a loader returned {type(look).__name__}, not a Look")
    size = look.grey.nbytes + 512
    size += look.page.nbytes if look.page is not None else 0
    size += sum(a.nbytes for a in list(look.sizes.values()))
    for pts, desc in list(look.features.values()):
        size += pts.nbytes + (desc.nbytes if desc is not None else 0)
    return size
