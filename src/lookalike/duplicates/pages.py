"""Pages read closely: the second look's step for two images of text on paper.

On a photo, a caption is an edit; on a page, text that differs is what differs. Two
invoices of one template differ in a name, a date and a total: a few words among
hundreds, which at the second look's usual size (384 px, where a line of text is 5 px
tall) still correlate. So an image that looks like a page (:func:`looks_like_page`:
blank paper and ink on it; :func:`dense_page`: a spreadsheet's grid, small print, whose
blank cells show only at the close size) keeps a grey copy of up to :data:`PAGE_SIDE`
pixels, and two pages are compared there once aligned (:func:`page_differ`): each 8-px
tile of either page that holds ink must find its match in the other within :data:`SHIFT`
pixels (a rescan's turn, a resize's rounding), correlating at :data:`PAGE_NCC` at least.
A copy of a page - rescanned, turned a few degrees, re-saved, resized, photocopied -
leaves at most :data:`PAGE_DIFFER` of its inked tiles unmatched; another page of one
template, with other words in a few fields, leaves more (measured in #19,
BENCHMARKS.md). Tiles of 8 px do not see one changed character (a year's last digit
correlates at 0.5 with the one it replaced): two pages under the bar, aligned to the
pixel, have their glyph-sized windows compared too (:func:`glyph_outlier`).
"""

from __future__ import annotations

import math

import numpy as np

#: Longer side, in pixels, of a page's close copy (at most its own size).
PAGE_SIDE = 1024
#: Tile side, in pixels, of the close comparison.
TILE = 8
#: Grey level from which a flat tile is paper; flat: standard deviation below :data:`FLAT`.
PAPER = 170.0
FLAT = 4.0
#: A page: at least this share of its tiles blank paper (the ink share below is what
#: tells a page from a photo; 0.25 took a spreadsheet's grid for a picture, see
#: :data:`DENSE_PAPER`) ...
PAPER_SHARE = 0.10
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
#: the usual bar. Tiles of 8 px do not see every changed character: :func:`glyph_outlier`.
PAGE_ALIGNED = 0.0005
#: Two pages are read apart (``Verdict.text_differs``: a third image that passes for a
#: copy of both does not join them, see ``second_look``) when, aligned to the pixel, more
#: than this share of their inked tiles stays unmatched, or a glyph stands out by more
#: than :data:`GLYPH_APART`: clear of what copies measured, where a third image joins
#: them (#19, ninth pass: invoices of one template with another date and quantity
#: 0.0055, a crop of a spreadsheet 0.0027 - the grid's period misleads the alignment -,
#: one figure changed on a sheet 7.7-25, a shared copy of a sheet in small print 2.0-2.2).
PAGE_APART = 0.004
GLYPH_APART = 3.0


def _tiles(img: np.ndarray) -> np.ndarray:
    ny, nx = img.shape[0] // TILE, img.shape[1] // TILE
    t = img[: ny * TILE, : nx * TILE].reshape(ny, TILE, nx, TILE).swapaxes(1, 2)
    return t.reshape(ny * nx, TILE * TILE)


#: Paper is of one colour: a page's paper tiles do not hold two colours far apart
#: (:data:`PAPER_COLOURS`, distance in RGB, 0-255 a channel), both vivid (a spread of at
#: least :data:`VIVID` between their channels), on :data:`TWO_COLOURS` of the paper each
#: at least. White, cream, pink, canary or goldenrod paper, a page under tungsten light,
#: a grey or pale bar, a tinted band over half a page pass; a graphic's flat fields do
#: not (the scikit-image logo: orange and green, #19). (A bar on the paper's colour alone,
#: tried first, made pages on coloured paper pictures, and distinct ones copies; one on
#: any second colour, a white invoice with a canary band: review of #19.)
PAPER_COLOURS = 100.0
VIVID = 64.0
TWO_COLOURS = 0.1


def _paper_and_ink(grey: np.ndarray) -> tuple[float, float, float]:
    """The share of ``grey``'s tiles that are blank paper, of its textured tiles that are
    ink on that paper (0.0 when it has no paper or no texture), and of its tiles that are
    as bright as paper on average (blank or not)."""
    if min(grey.shape) < 4 * TILE:
        return 0.0, 0.0, 0.0
    t = _tiles(grey.astype(np.float32))
    mean, spread = t.mean(axis=1), t.std(axis=1)
    flat = spread < FLAT
    paper = flat & (mean >= PAPER)
    textured = ~flat
    bright = float((mean >= PAPER).mean())
    if not textured.any():
        return float(paper.mean()), 0.0, bright
    if paper.any():
        level = float(np.median(mean[paper]))
    else:
        # No blank tile at this size (a banded sheet's thumbnail: a line or a figure in
        # every tile): the paper is its commonest paper-bright grey.
        commonest = _paper_grey(grey)
        if commonest is None:
            return 0.0, 0.0, bright
        level = float(commonest)
    ink = textured & (mean + spread >= level - 30)
    return float(paper.mean()), float(ink.sum() / textured.sum()), bright


def looks_like_page(grey: np.ndarray) -> bool:
    """Whether a grey ``uint8`` image is a page: blank paper, and ink on it (and, in colour,
    :func:`one_paper`)."""
    return page_or_dense(grey)[0]


#: A dense page - a spreadsheet's grid, a table, small print - holds a line or a glyph in
#: nearly every 8-px tile at the usual size (512 px: 9-20% of its tiles blank, and as
#: little as 2-10% at some scales, where the grid's period lands a line in every tile,
#: #19), so a page needed a quarter of its tiles blank took it for a picture, and two
#: sheets of one template with other numbers in every cell were copies (precision 0.05,
#: claimed 1.00; a thumbnail of one, 640 px, was a copy of every other sheet: review of
#: #19). A page needs :data:`PAPER_SHARE` blank now; an image under it, all its texture
#: ink on paper (:func:`maybe_dense_page`, at least :data:`DENSE_PAPER` of it blank), is
#: asked again at its close size (its own, up to :data:`PAGE_SIDE`): a page when at least
#: :data:`CLOSE_PAPER_SHARE` of its tiles are blank there (or see :data:`BLANK_LINES`).
#: The 21 sample photos never are:
#: ink is 0.0-0.73 of their texture at either size.
DENSE_PAPER = 0.02
CLOSE_PAPER_SHARE = 0.10
#: ... or with its tiles this bright on average, blank or not (see :func:`page_or_dense`).
DENSE_BRIGHT = 0.8
#: At its close size, a dense page with fewer blank tiles than :data:`CLOSE_PAPER_SHARE`
#: (the grid's period lands a line in every tile: a 1,920-px sheet with 16-px rows, 5%
#: of them blank at 1,024 px; a banded sheet's 480-px thumbnail, none) is a page still
#: when its tiles are :data:`DENSE_BRIGHT` paper-bright, its texture ink on paper, and
#: at least :data:`BLANK_LINES` of its pixel rows (or columns) blank paper: the gaps
#: between lines of text, between a grid's rules (0.12-0.38 on the sheets of #19's
#: tenth pass). A washed-out texture, bright and inked all over (grass or gravel
#: overexposed, hazy: review of #19), has none: 0.00. A row is blank with
#: :data:`BLANK_LINE` of its pixels within :data:`LINE_GREY` of the paper's grey (a
#: banded row's light grey counts as paper).
BLANK_LINES = 0.05
BLANK_LINE = 0.9
LINE_GREY = 16


def maybe_dense_page(grey: np.ndarray) -> bool:
    """Whether ``grey`` (at the usual size), not a page by :func:`looks_like_page`, may be
    a dense one: its textured tiles ink on paper, with a little paper (see
    :data:`DENSE_PAPER`), or its tiles nearly all as bright as paper
    (:data:`DENSE_BRIGHT`)."""
    return page_or_dense(grey)[1]


def page_or_dense(grey: np.ndarray) -> tuple[bool, bool]:
    """:func:`looks_like_page` and :func:`maybe_dense_page` of ``grey``, its tiles read
    once."""
    paper, ink, bright = _paper_and_ink(grey)
    inky = ink >= INK_SHARE
    page = paper >= PAPER_SHARE and inky
    # (Or nearly no blank tile at all, but paper-bright nearly everywhere: a 2,560-px
    # screenshot of a sheet at 512 px, a line or a figure in every tile: review of #19.
    # The sample photos: 0.52 at most.)
    dense = not page and ((paper >= DENSE_PAPER and inky) or bright >= DENSE_BRIGHT)
    return page, dense


def dense_page(close: np.ndarray) -> bool:
    """Whether ``close`` (a :func:`maybe_dense_page` image at its close size) is a page:
    see :data:`CLOSE_PAPER_SHARE` and :data:`BLANK_LINES`."""
    paper, ink, bright = _paper_and_ink(close)
    if ink < INK_SHARE:
        return False
    return paper >= CLOSE_PAPER_SHARE or (
        bright >= DENSE_BRIGHT and _blank_lines(close) >= BLANK_LINES
    )


def _paper_grey(grey: np.ndarray) -> int | None:
    """The commonest grey level of ``grey`` (uint8) at :data:`PAPER` or brighter; ``None``
    when no pixel is that bright."""
    counts = np.bincount(grey.ravel(), minlength=256)[int(PAPER) :]
    return int(PAPER) + int(np.argmax(counts)) if counts.any() else None


def _blank_lines(grey: np.ndarray) -> float:
    """The share of ``grey``'s pixel rows, or of its columns if more, that are blank paper
    (:data:`BLANK_LINE` of their pixels within :data:`LINE_GREY` of :func:`_paper_grey`)."""
    level = _paper_grey(grey)
    if level is None:
        return 0.0
    near = np.abs(grey.astype(np.int16) - level) <= LINE_GREY
    rows = float((near.mean(axis=1) >= BLANK_LINE).mean())
    return max(rows, float((near.mean(axis=0) >= BLANK_LINE).mean()))


def one_paper(grey: np.ndarray, rgb: np.ndarray) -> bool:
    """Whether the paper of a page (:func:`looks_like_page` of ``grey``) is of one colour
    in ``rgb`` (the same image, ``(h, w, 3)`` uint8): see :data:`PAPER_COLOURS`."""
    t = _tiles(grey.astype(np.float32))
    paper = (t.std(axis=1) < FLAT) & (t.mean(axis=1) >= PAPER)
    if not paper.any():
        paper = t.mean(axis=1) >= PAPER  # a dense page with no blank tile: its bright ones
    if not paper.any():
        return False
    colour = np.stack([_tiles(rgb[..., c].astype(np.float32)).mean(axis=1) for c in range(3)])
    colour = colour[:, paper]
    vivid = colour[:, colour.max(axis=0) - colour.min(axis=0) >= VIVID]
    if vivid.shape[1] < 2 * TWO_COLOURS * colour.shape[1]:
        return True
    far = np.linalg.norm(vivid - np.median(vivid, axis=1, keepdims=True), axis=0) > PAPER_COLOURS
    near = vivid.shape[1] - far.sum()
    return bool(min(far.sum(), near) < TWO_COLOURS * colour.shape[1])


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


#: Glyphs compared (:func:`glyph_outlier`): windows of this side, every half side, on a
#: page whose close copy is :data:`PAGE_SIDE` pixels long (a line of 16-px text on an A4
#: page there: glyphs 10-11 px tall); on a smaller close copy, in proportion.
GLYPH_WINDOW = 10
#: Blurs (Gaussian sigmas, pixels) one page may get to look as soft as the other: a
#: photocopy, a re-save at half the size, a sharpened scan.
GLYPH_BLURS = (0.0, 0.6, 1.0, 1.5, 2.0)
#: The pages' edge (pixels) left out: a scan's shift and turn bring paper in there.
GLYPH_MARGIN = 8
#: A window differs when its ink differs by at least this (pixels of full ink: the
#: smallest changed character measured in #19, "J" -> "I" at 16 px, 5.0) ...
GLYPH_INK = 3.0
#: ... and by this many times the 99th percentile of the page's windows (how much a copy's
#: windows differ: a rescan's, a photocopy's, a re-save's; measured in #19).
GLYPH_RATIO = 2.0


def _inkness(img: np.ndarray, where: np.ndarray) -> np.ndarray:
    """``img`` as ink: 0 on its paper, 1 at its darkest ink (the 99.7th percentile of
    depth under the paper). The paper's level is taken around each pixel (the brightest
    within 15 px at the full close size, smoothed): a stain, a phone's uneven light or a
    scan's shading is paper, not ink (review of #19: a light stain over text made
    rescans distinct)."""
    import cv2

    side = max(9, round(15 * max(img.shape) / PAGE_SIDE) | 1)
    paper = cv2.dilate(img, np.ones((side, side), np.uint8))
    paper = cv2.GaussianBlur(paper, (0, 0), side / 2)
    depth = paper - img
    ink = float(np.percentile(depth[where], 99.7))
    return np.clip(depth / max(ink, 1.0), 0.0, 1.0).astype(np.float32)  # type: ignore[no-any-return]


def glyph_outlier(a: np.ndarray, b: np.ndarray, inside: np.ndarray) -> float:
    """How far the most different glyph-sized window of two aligned pages stands out from
    the differences of the rest: its ink difference over the page's 99th percentile (0.0
    when it is under :data:`GLYPH_INK`).

    A copy's differences - noise, a re-save's blocks, a photocopy's thicker strokes, a
    rescan's resampling - spread over the whole page; another character, date or amount is
    one place. Both pages are read as ink on their own paper, the sharper one blurred to
    the softer one's look (:data:`GLYPH_BLURS`), and each window's difference taken at
    its best shift within a pixel.

    Args:
        a, b: float32 ``(h, w)`` grey pages aligned to the pixel (``b`` warped onto ``a``).
        inside: bool ``(h, w)``, where ``b`` has pixels.
    """
    import cv2

    scale = max(a.shape) / PAGE_SIDE
    side = max(5, round(GLYPH_WINDOW * scale))
    area = side * side
    # Where ``b`` ends (a crop, a turn's corner) the blurs below mix its edge with what
    # is past it while ``a`` goes on: windows within their reach compare that, not glyphs
    # (a 5% crop of a handwritten page: 1.53, then 2.67 once aligned to a fraction of a
    # pixel, #19 review). Such windows are left out.
    reach = 2 * math.ceil(3 * (max(GLYPH_BLURS) + 0.7 * scale)) + 1
    inner = cv2.erode(inside.astype(np.uint8), np.ones((reach, reach), np.uint8)) > 0
    m = GLYPH_MARGIN
    inner[:m], inner[-m:], inner[:, :m], inner[:, -m:] = False, False, False, False
    if inner.sum() < area:
        return 0.0
    ink_a, ink_b = _inkness(a, inner), _inkness(b, inner)

    def blur(img: np.ndarray, sigma: float) -> np.ndarray:
        return cv2.GaussianBlur(img, (0, 0), sigma) if sigma else img  # type: ignore[no-any-return]

    best: tuple[float, np.ndarray, np.ndarray] | None = None
    for sigma in GLYPH_BLURS:
        for x, y in [(blur(ink_a, sigma), ink_b)] + (
            [(ink_a, blur(ink_b, sigma))] if sigma else []
        ):
            err = float(np.square(x - y)[inner].mean())
            if best is None or err < best[0]:
                best = (err, x, y)
    assert best is not None
    # A little softer still: what is left of a resize's aliasing and the scan's noise.
    x, y = blur(best[1], 0.7 * scale), blur(best[2], 0.7 * scale)

    def box(img: np.ndarray) -> np.ndarray:
        out = cv2.boxFilter(img, -1, (side, side), normalize=False, borderType=cv2.BORDER_CONSTANT)
        return out  # type: ignore[no-any-return]

    whole = box(inner.astype(np.float32)) >= area - 0.5
    # Windows with ink in both pages (3% of a window's pixels, a stroke's worth): a glyph
    # for a glyph. Ink on one page's blank paper (a speck of dust, a staple hole, a
    # stain) is page_differ's to count, within its bar (review of #19: a 3-px speck
    # mid-page and a staple hole made rescans distinct). Their difference in pixels of
    # full ink of a 10-px window.
    inked = whole & (np.minimum(box(x), box(y)) >= 0.03 * area)
    diff: np.ndarray | None = None
    for dy in (-1, 0, 1):
        for dx in (-1, 0, 1):
            d = box(np.abs(x - np.roll(y, (dy, dx), axis=(0, 1))))
            diff = d if diff is None else np.minimum(diff, d)
    assert diff is not None
    s = max(2, side // 2)
    values = diff[::s, ::s][inked[::s, ::s]] * (GLYPH_WINDOW * GLYPH_WINDOW / area)
    if len(values) == 0 or float(values.max()) < GLYPH_INK:
        return 0.0
    return float(values.max() / max(float(np.percentile(values, 99)), 0.5))
