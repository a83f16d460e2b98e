"""Pages read closely: the second look's step for two images of text on paper.

On a photo, a caption is an edit; on a page, text that differs is what differs. Two
invoices of one template differ in a name, a date and a total: a few words among hundreds,
which at the second look's usual size (384 px, where a line of text is 5 px tall) still
correlate. So an image that looks like a page (:func:`looks_like_page`: blank paper and
ink on it) keeps a grey copy of up to :data:`PAGE_SIDE` pixels, and two pages are compared
there once aligned (:func:`page_differ`): each 8-px tile of either page that holds ink
must find its match in the other within :data:`SHIFT` pixels (a rescan's turn, a resize's
rounding), correlating at :data:`PAGE_NCC` at least. A copy of a page - rescanned, turned
a few degrees, re-saved, resized, photocopied - leaves at most :data:`PAGE_DIFFER` of its
inked tiles unmatched; another page of one template, with other words in a few fields,
leaves more (measured in #19, BENCHMARKS.md).
"""

from __future__ import annotations

import numpy as np

#: Longer side, in pixels, of a page's close copy (at most its own size).
PAGE_SIDE = 1024
#: Tile side, in pixels, of the close comparison.
TILE = 8
#: Grey level from which a flat tile is paper; flat: standard deviation below :data:`FLAT`.
PAPER = 170.0
FLAT = 4.0
#: A page: at least this share of its tiles blank paper ...
PAPER_SHARE = 0.25
#: ... and this share of its textured tiles ink on that paper (a tile holding paper and
#: strokes reaches the paper's level within its spread; a photo's texture under a white
#: sky, measured in #19, does not: 0.1-0.5 of its textured tiles).
INK_SHARE = 0.8
#: A tile holds ink when its standard deviation reaches this (a scan's noise on blank
#: paper stays under it; strokes of text are far above).
INK = 12.0
#: Tolerated misalignment, in pixels at the close size, and the correlation a tile must
#: reach within it.
SHIFT = 1
PAGE_NCC = 0.5
#: The share of inked tiles a copy of a page may leave unmatched.
PAGE_DIFFER = 0.0025
#: ... and once the two pages are aligned to the pixel on their own pixels (the second
#: look refines a geometry that leaves more than :data:`PAGE_DIFFER` unmatched): rescans,
#: re-saves, turns and crops of the pages measured in #19 then left none unmatched. So do
#: some distinct pages: a date or a total changed on a cropped scan of an invoice (review
#: of #19) leaves none once aligned, as two aligned scans of such invoices already did at
#: the usual bar. Tiles of 8 px do not see every changed character: a known limit.
PAGE_ALIGNED = 0.0005


def _tiles(img: np.ndarray) -> np.ndarray:
    ny, nx = img.shape[0] // TILE, img.shape[1] // TILE
    t = img[: ny * TILE, : nx * TILE].reshape(ny, TILE, nx, TILE).swapaxes(1, 2)
    return t.reshape(ny * nx, TILE * TILE)


def looks_like_page(grey: np.ndarray) -> bool:
    """Whether a grey ``uint8`` image is a page: blank paper, and ink on it."""
    if min(grey.shape) < 4 * TILE:
        return False
    t = _tiles(grey.astype(np.float32))
    mean, spread = t.mean(axis=1), t.std(axis=1)
    flat = spread < FLAT
    paper = flat & (mean >= PAPER)
    textured = ~flat
    if paper.mean() < PAPER_SHARE or not textured.any():
        return False
    level = float(np.median(mean[paper]))
    ink = textured & (mean + spread >= level - 30)
    return bool(ink.sum() >= INK_SHARE * textured.sum())


def page_differ(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    """Share of the inked tiles of two aligned pages that find no match within
    :data:`SHIFT` pixels.

    Args:
        a, b: float32 ``(h, w)`` grey pages on one grid (``b`` warped onto ``a``).
        inside: bool ``(h, w)``, where ``b`` has pixels (only tiles wholly inside count).
    """
    ta = _tiles(a)
    if len(ta) == 0:
        return 1.0
    keep = _tiles(inside.astype(np.float32)).min(axis=1) > 0
    ma, sa = ta.mean(axis=1), ta.std(axis=1)
    inked = keep & ((sa >= INK) | (_tiles(b).std(axis=1) >= INK))
    if not inked.any():
        return 0.0
    # Only the inked tiles are matched (a page's blank paper is most of it: 4-8 times
    # less work than every tile), each against ``b`` shifted as ``np.roll`` shifts it.
    which = np.flatnonzero(inked)
    nx = a.shape[1] // TILE
    rows = (which // nx)[:, None] * TILE + np.arange(TILE)
    cols = (which % nx)[:, None] * TILE + np.arange(TILE)
    ta, ma, sa = ta[which], ma[which], sa[which]
    best = np.full(len(which), -1.0, dtype=np.float32)
    h, w = b.shape
    for dy in range(-SHIFT, SHIFT + 1):
        for dx in range(-SHIFT, SHIFT + 1):
            tb = b[((rows - dy) % h)[:, :, None], ((cols - dx) % w)[:, None, :]]
            tb = tb.reshape(len(which), TILE * TILE)
            mb, sb = tb.mean(axis=1), tb.std(axis=1)
            ncc = ((ta - ma[:, None]) * (tb - mb[:, None])).mean(axis=1) / np.maximum(sa * sb, 1e-6)
            # Strokes against blank paper differ; a faint tile (the blurred edge of a
            # stroke next door, in a photocopy) against blank paper does not.
            low, high = np.minimum(sa, sb), np.maximum(sa, sb)
            blank = (high < INK) | ((low < FLAT) & (high < 2 * INK))
            score = np.where(blank, 1.0, np.where(low < FLAT, -1.0, ncc))
            best = np.maximum(best, score)
    return float((best < PAGE_NCC).sum() / len(which))
