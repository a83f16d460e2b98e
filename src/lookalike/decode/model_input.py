"""RGB image -> model input pixels ``(H, W, 3)`` uint8, and the one-call entry points.

:func:`to_model_input` resizes as timm's eval transform (or a plain squash);
:func:`decode_bytes` and :func:`decode_path` run the whole path from bytes or a file.
"""

from __future__ import annotations

import math
import os
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .files import content_hash, read_file
from .image import REDUCED, open_rgb, to_rgb
from .reasons import DecodeFailure, DecodeLimits

if TYPE_CHECKING:
    from ..setup import Preprocess

_RESAMPLE = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}

# Above this many pixels the resize-then-crop intermediate of "center" (only reached by
# extreme aspect ratios such as 10000x2) is replaced by one resample of the crop box.
_MAX_INTERMEDIATE_PIXELS = 16_000_000


def check_preprocess(pre: Preprocess) -> None:
    """Raise :class:`~lookalike.ConfigError` if ``pre`` cannot be applied."""
    if pre.mode not in ("resize", "center"):
        raise ConfigError(f"unknown preprocess mode {pre.mode!r}; use 'resize' or 'center'")
    if pre.interpolation not in _RESAMPLE:
        raise ConfigError(
            f"unknown interpolation {pre.interpolation!r}; choose one of {', '.join(_RESAMPLE)}"
        )
    h, w = pre.size
    if h < 1 or w < 1:
        raise ConfigError(f"input size must be positive, got {pre.size}")
    if pre.mode == "center" and not pre.crop_pct > 0:
        raise ConfigError("crop_pct must be positive")


def scale_size(pre: Preprocess) -> tuple[int, int]:
    """``(height, width)`` before the crop: ``size`` for ``"resize"``, else
    ``floor(size / crop_pct)`` per side, as timm's ``transforms_imagenet_eval``."""
    if pre.mode == "center":
        return (math.floor(pre.size[0] / pre.crop_pct), math.floor(pre.size[1] / pre.crop_pct))
    return pre.size


def _center_resize_size(w: int, h: int, scale: tuple[int, int]) -> tuple[int, int]:
    """(new_w, new_h) of timm's eval resize, with torchvision's integer arithmetic."""
    sh, sw = scale
    if sh == sw:
        # torchvision Resize(int): shorter side -> s, longer side truncated.
        short, long_ = (w, h) if w <= h else (h, w)
        new_short, new_long = sh, int(sh * long_ / short)
        return (new_short, new_long) if w <= h else (new_long, new_short)
    # timm ResizeKeepRatio(longest=0): the side needing the least scaling reaches its target.
    ratio_h, ratio_w = h / sh, w / sw
    ratio = max(ratio_h, ratio_w) * 0.0 + min(ratio_h, ratio_w) * 1.0
    return round(w / ratio), round(h / ratio)


def to_model_input(img: Image.Image, pre: Preprocess, *, box: bool = False) -> np.ndarray:
    """Resize an RGB image to the model's input, as ``pre`` says.

    ``"resize"`` squashes the whole image to ``pre.size`` ignoring aspect (Keras
    ``load_img(target_size=...)``). ``"center"`` is timm's eval transform
    (``create_transform(**resolve_data_config({}, model=m))``): the shorter side to
    ``floor(size / crop_pct)`` keeping aspect (torchvision ``Resize(int)`` arithmetic; timm's
    ``ResizeKeepRatio`` for non-square sizes), then torchvision's ``CenterCrop`` (offsets
    ``round((side - crop) / 2)``, half to even; zero padding if smaller). The output matches
    timm's pixels exactly, except for extreme aspect ratios (an intermediate image over 16
    megapixels, e.g. 10000x2) where one resample of the crop box replaces it (values then
    differ slightly).

    Args:
        img: an image (converted to RGB if it is not).
        pre: size, mode, crop_pct and interpolation.
        box: for ``"center"``, resample only the region the crop keeps, straight to the
            output size (~30% less work on a big image). The same arithmetic, but values
            may differ from timm's by 1 on a few pixels (float rounding in the filter
            weights): used for JPEGs decoded at reduced scale, which differ more already.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous, ``(H, W) == pre.size``.

    Raises:
        ConfigError: an unknown mode or interpolation.

    Example:
        >>> from lookalike.setup import Preprocess
        >>> to_model_input(Image.new("RGB", (640, 480)), Preprocess()).shape
        (224, 224, 3)
    """
    check_preprocess(pre)
    if img.mode != "RGB":
        img = to_rgb(img)
    resample = _RESAMPLE[pre.interpolation]
    ch, cw = pre.size
    if pre.mode == "resize":
        out = img if img.size == (cw, ch) else img.resize((cw, ch), resample)
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
    w, h = img.size
    nw, nh = _center_resize_size(w, h, scale_size(pre))
    if nw >= cw and nh >= ch and (box or nw * nh > _MAX_INTERMEDIATE_PIXELS):
        top, left = round((nh - ch) / 2.0), round((nw - cw) / 2.0)
        sx, sy = w / nw, h / nh
        region = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        out = img.resize((cw, ch), resample, box=region)
        return np.ascontiguousarray(np.asarray(out, dtype=np.uint8))
    resized = img if (nw, nh) == (w, h) else img.resize((nw, nh), resample)
    arr = np.asarray(resized, dtype=np.uint8)
    if nw < cw or nh < ch:  # torchvision pads with zeros before cropping
        pt, pl = max(0, (ch - nh) // 2), max(0, (cw - nw) // 2)
        pb, pr = max(0, (ch - nh + 1) // 2), max(0, (cw - nw + 1) // 2)
        arr = np.pad(arr, ((pt, pb), (pl, pr), (0, 0)))
        nh, nw = arr.shape[:2]
    top, left = round((nh - ch) / 2.0), round((nw - cw) / 2.0)
    return np.ascontiguousarray(arr[top : top + ch, left : left + cw])


# --------------------------------------------------------------------------- entry points


def decode_bytes(
    data: bytes,
    pre: Preprocess,
    limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
    *,
    draft: bool = True,
) -> np.ndarray:
    """Image bytes -> model input pixels.

    Args:
        data: the file's bytes.
        pre: the model's preprocessing.
        limits: decode limits.
        draft: decode JPEGs at reduced DCT scale (never below what ``pre`` needs).

    Returns:
        ``(H, W, 3)`` uint8 with ``(H, W) == pre.size``.

    Raises:
        DecodeFailure: see :func:`open_rgb`.
    """
    img = open_rgb(data, limits=limits, draft_to=scale_size(pre) if draft else None)
    try:
        return to_model_input(img, pre, box=bool(img.info.get(REDUCED)))
    except MemoryError:
        raise DecodeFailure("too-large", "out of memory while resizing") from None


def decode_path(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    pre: Preprocess,
    limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
    expect_size: int | None = None,
    expect_mtime_ns: int | None = None,
    *,
    known_hashes: frozenset[str] = frozenset(),
    draft: bool = True,
) -> tuple[np.ndarray | None, str]:
    """Read and decode one file into model input pixels.

    Args:
        path: the image file (bytes for names that are not valid UTF-8).
        pre: the model's preprocessing.
        limits: decode limits.
        expect_size: the scan's size; a mismatch fails with ``"changed"``.
        expect_mtime_ns: the scan's mtime; a mismatch fails with ``"changed"``.
        known_hashes: content hashes that already have a vector; a file whose hash is one
            of them is not decoded and ``None`` is returned for its pixels.
        draft: decode JPEGs at reduced DCT scale (fast for big photos).

    Returns:
        ``(pixels, hash)``: pixels ``(H, W, 3)`` uint8 with ``(H, W) == pre.size`` (``None``
        only when the hash is in ``known_hashes``) and :func:`content_hash` of the file.

    Raises:
        DecodeFailure: with a reason from :data:`REASONS`.

    Example:
        >>> from lookalike.setup import Preprocess
        >>> pixels, digest = decode_path(b"photo.jpg", Preprocess())  # doctest: +SKIP
        >>> pixels.shape, pixels.dtype
        ((224, 224, 3), dtype('uint8'))
    """
    data = read_file(path, expect_size, expect_mtime_ns, max_file_bytes=limits.max_file_bytes)
    digest = content_hash(data)
    if digest in known_hashes:
        return None, digest
    return decode_bytes(data, pre, limits, draft=draft), digest
