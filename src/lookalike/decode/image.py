"""Image bytes -> an upright RGB image (:func:`open_rgb`), or a :class:`DecodeFailure`.

Everything in :mod:`lookalike.decode` is plain numpy + Pillow (and ``pillow_heif`` when
installed, imported on the first HEIC file): decode worker processes import it and nothing
heavier.

The path from a file to pixels, and why each step is there:

1. :func:`~lookalike.decode.files.read_file` reads the bytes once, refusing anything that is
   not a regular file *before* opening it (a FIFO named ``photo.jpg`` would block forever)
   and noticing files that were deleted or rewritten since the scan.
2. :func:`open_rgb` (here) sniffs the bytes (the extension is ignored), opens them with an
   allowlist of Pillow plugins (EPS, which runs Ghostscript, is never opened), checks the
   pixel count before decoding, decodes JPEGs at reduced DCT scale when a small result is
   wanted, and normalises mode, alpha, bit depth and EXIF orientation to plain RGB
   (:func:`to_rgb`).
3. :func:`~lookalike.decode.model_input.to_model_input` resizes to the model's input size
   exactly as timm's eval transform (or a plain squash), giving ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import threading
import warnings
from collections.abc import Iterator

import numpy as np
from PIL import Image, ImageChops, ImageFile, UnidentifiedImageError

from .files import read_file
from .formats import _ensure_heif, _open_order, _opener_names, sniff_format
from .reasons import DecodeFailure, DecodeLimits

# --------------------------------------------------------------------------- opening

# Pillow's decompression-bomb limit, warning filters and LOAD_TRUNCATED_IMAGES are
# process-wide. Each decode sets them for its duration under this lock and puts them back,
# so no caller's settings leak in or out. In worker processes (one decode at a time) the
# lock is free; threads of one process decode one at a time.
_pillow_lock = threading.RLock()


@contextlib.contextmanager
def _pillow_settings(max_pixels: int) -> Iterator[None]:
    with _pillow_lock, warnings.catch_warnings():
        # The core never prints: Pillow's UserWarnings (bad EXIF, palette transparency)
        # are dropped; the bomb warning becomes an error.
        warnings.simplefilter("ignore")
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        old_max, old_truncated = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
        Image.MAX_IMAGE_PIXELS = max_pixels
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = old_max, old_truncated


def _pillow_failure(e: BaseException, kind: str | None, max_pixels: int) -> DecodeFailure:
    """Map an exception from Pillow's open/load/convert to a reason."""
    if isinstance(e, DecodeFailure):
        return e
    if isinstance(e, Image.DecompressionBombError | Image.DecompressionBombWarning):
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{found.group(1)} pixels" if found else "the image"
        return DecodeFailure(
            "too-large",
            f"{pixels} is over the {max_pixels}-pixel limit (a possible decompression bomb)",
        )
    if isinstance(e, MemoryError):
        return DecodeFailure("too-large", "out of memory while decoding")
    msg = str(e) or type(e).__name__
    if isinstance(e, UnidentifiedImageError):
        if kind is None:
            return DecodeFailure("not-an-image", "no image format recognises the content")
        return DecodeFailure("decode-error", f"looks like {kind} but its header is damaged")
    if "truncated" in msg.lower() or isinstance(e, EOFError):
        return DecodeFailure("truncated", msg)
    return DecodeFailure("decode-error", f"{type(e).__name__}: {msg}")


_TRANSPOSE = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    """The EXIF orientation (1..8), or 1 when absent or unreadable.

    Read directly rather than through ``ImageOps.exif_transpose``, which also rewrites the
    EXIF block and can raise on malformed metadata: a bad tag must not lose the image.
    """
    try:
        value = im.getexif().get(0x0112, 1)
        value = int(value)
    except Exception:
        return 1
    return value if value in _TRANSPOSE or value == 1 else 1


WHITE = (255, 255, 255)
"""The fixed background transparent pixels are composited on."""

_ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
_DEEP_MODES = frozenset({"I;16", "I;16B", "I;16L", "I;16N", "I", "F"})


def _deep_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit, 32-bit and float grey -> 8-bit grey, scaled by the data's range (not clipped).

    Non-negative integers are divided by the smallest ``2**n - 1`` (n >= 8) holding the
    maximum, so 12-bit data (0..4095) and full 16-bit photos (0..65535) both keep their
    brightness. Floats within 0..1 are multiplied by 255. Anything else (negative values,
    other float ranges) is stretched min..max to 0..255. NaN and infinities become 0.
    """
    a = np.asarray(im)
    if a.dtype.kind == "f":
        a = np.where(np.isfinite(a), a, 0).astype(np.float32, copy=False)
    lo, hi = (float(a.min()), float(a.max())) if a.size else (0.0, 0.0)
    if a.dtype.kind in "ui" and lo >= 0:
        top = max(255, (1 << int(hi).bit_length()) - 1)
        out = a.astype(np.float32) * np.float32(255.0 / top)
    elif a.dtype.kind == "f" and lo >= 0 and hi <= 1:
        out = a * np.float32(255.0)
    elif hi > lo:
        out = (a.astype(np.float32) - np.float32(lo)) * np.float32(255.0 / (hi - lo))
    else:
        out = np.zeros(a.shape, np.float32)
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8))


def to_rgb(img: Image.Image) -> Image.Image:
    """Any Pillow mode -> ``"RGB"``, without changing orientation or size.

    Transparency (an alpha band, or a ``transparency`` entry for ``P``/``L``/``RGB``) is
    composited on :data:`WHITE`; deep grey (``I;16*``, ``I``, ``F``) is scaled to 8 bits by
    its range; CMYK JPEGs written without Adobe's inverted convention are un-inverted.

    Args:
        img: a loaded image of any mode.

    Returns:
        An ``"RGB"`` image of the same size (``img`` itself when already RGB and opaque).

    Raises:
        ValueError: a mode Pillow cannot convert (rare: ``LAB`` without a profile).
    """
    mode = img.mode
    if mode in _DEEP_MODES:
        return _deep_to_8bit(img).convert("RGB")
    if mode in _ALPHA_MODES or (mode in ("P", "L", "1", "RGB") and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (*WHITE, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    if mode == "CMYK":
        # Pillow reads every CMYK JPEG with Adobe's inverted convention; files without an
        # Adobe APP14 marker store plain ink values, so undo the inversion for them.
        if img.format in ("JPEG", "MPO") and "adobe" not in img.info:
            img = ImageChops.invert(img)
        return img.convert("RGB")
    if mode == "RGB":
        return img
    return img.convert("RGB")


REDUCED = "lookalike.reduced"
"""Key of ``img.info`` that :func:`open_rgb` sets: ``True`` when a JPEG was decoded at a
reduced DCT scale (its pixels already differ from a full decode's)."""


def _draft(im: Image.Image, draft_to: tuple[int, int], orientation: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the result stays >= draft_to."""
    h, w = draft_to
    if orientation >= 5:  # stored sideways: the displayed height is the stored width
        h, w = w, h
    im.draft("RGB", (max(1, w), max(1, h)))


def open_rgb(
    data: bytes,
    *,
    limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
    draft_to: tuple[int, int] | None = None,
) -> Image.Image:
    """Decode image bytes to an upright RGB image.

    The format comes from the bytes (a PNG named ``.jpg`` decodes). Only
    ``limits.allowed_formats`` are opened; SVG, EPS, PDF and PSD are recognised and refused
    without handing them to any plugin. The pixel count is checked before decoding.
    Animated images give their first frame. Truncated data fails (Pillow's
    ``LOAD_TRUNCATED_IMAGES`` stays off).

    Args:
        data: the file's bytes.
        limits: pixel limit and allowed formats.
        draft_to: ``(height, width)`` the result must still cover; JPEGs are then decoded
            at the smallest DCT scale (1/1 .. 1/8) that keeps both sides at least this big.
            ``None`` decodes at full size.

    Returns:
        A loaded ``"RGB"`` image, EXIF orientation applied, transparency on white;
        ``img.info[REDUCED]`` says whether it was decoded at a reduced scale.

    Raises:
        DecodeFailure: ``empty``, ``not-an-image``, ``unsupported-format``, ``truncated``,
            ``too-large``, ``heif-plugin-missing`` or ``decode-error``.

    Example:
        >>> img = open_rgb(read_file("photo.jpg"), draft_to=(256, 256))  # doctest: +SKIP
        >>> img.mode
        'RGB'
    """
    if not data:
        raise DecodeFailure("empty", "zero bytes")
    kind = sniff_format(data)
    if kind == "HEIF" and "HEIF" in limits.allowed_formats:
        _ensure_heif()
    if kind == "AVIF" and "AVIF" in limits.allowed_formats and "AVIF" not in _opener_names():
        raise DecodeFailure(
            "unsupported-format", "AVIF needs a Pillow built with libavif: pip install -U pillow"
        )
    allowed = limits.allowed_formats
    if kind is not None and kind not in allowed and not (kind == "JPEG" and "MPO" in allowed):
        raise DecodeFailure("unsupported-format", f"{kind} files are not opened")
    formats = _open_order(limits.allowed_formats)
    with _pillow_settings(limits.max_pixels):
        try:
            im = Image.open(io.BytesIO(data), formats=formats)
        except Exception as e:
            raise _pillow_failure(e, kind, limits.max_pixels) from None
        try:
            w, h = im.size
            if w < 1 or h < 1:
                raise DecodeFailure("decode-error", f"the image has no pixels ({w}x{h})")
            if w * h > limits.max_pixels:
                raise DecodeFailure(
                    "too-large",
                    f"{w}x{h} = {w * h} pixels is over the {limits.max_pixels}-pixel limit",
                )
            if draft_to is not None and im.format in ("JPEG", "MPO"):
                _draft(im, draft_to, _orientation(im))
            im.load()
            orientation = _orientation(im)
            reduced = im.size != (w, h)
            rgb = to_rgb(im)
            if orientation != 1:
                rgb = rgb.transpose(_TRANSPOSE[orientation])
            rgb.info[REDUCED] = reduced
            return rgb
        except Exception as e:
            raise _pillow_failure(e, kind, limits.max_pixels) from None


def load_for_display(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    max_side: int = 512,
    limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
) -> Image.Image:
    """An upright RGB thumbnail for showing results.

    Args:
        path: the image file.
        max_side: the longer side of the result is at most this many pixels.
        limits: decode limits.

    Returns:
        An ``"RGB"`` image, aspect kept, neither side over ``max_side``.

    Raises:
        DecodeFailure: with a reason from :data:`REASONS`.
    """
    data = read_file(path, max_file_bytes=limits.max_file_bytes)
    img = open_rgb(data, limits=limits, draft_to=(max_side, max_side))
    if max(img.size) > max_side:
        img.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
    return img
