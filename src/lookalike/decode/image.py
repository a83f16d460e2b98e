"""One image file -> RGB pixels for the model, or a :class:`DecodeFailure` with a reason code.

Everything here is plain numpy + Pillow (and ``pillow_heif`` when installed, imported on
the first HEIC file): decode worker processes import this module and nothing heavier.

The path from a file to pixels, and why each step is there:

1. :func:`read_file` reads the bytes once, refusing anything that is not a regular file
   *before* opening it (a FIFO named ``photo.jpg`` would block forever) and noticing files
   that were deleted or rewritten since the scan.
2. :func:`open_rgb` sniffs the bytes (the extension is ignored), opens them with an
   allowlist of Pillow plugins (EPS, which runs Ghostscript, is never opened), checks the
   pixel count before decoding, decodes JPEGs at reduced DCT scale when a small result is
   wanted, and normalises mode, alpha, bit depth and EXIF orientation to plain RGB.
3. :func:`to_model_input` resizes to the model's input size exactly as timm's eval
   transform (or a plain squash), giving ``(H, W, 3)`` uint8.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import math
import os
import re
import stat
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageChops, ImageFile, UnidentifiedImageError

from ..errors import ConfigError

if TYPE_CHECKING:
    from ..setup import Preprocess

REASONS: dict[str, str] = {
    "empty": "the file has zero bytes (perhaps still being written)",
    "not-an-image": "the content is not an image (whatever its extension says)",
    "unsupported-format": "an image format lookalike does not open (SVG, EPS, PDF, PSD, ...)",
    "truncated": "the image data ends early (an incomplete download or copy)",
    "too-large": "over the pixel or file-size limit (a possible decompression bomb), "
    "or out of memory while decoding",
    "decode-error": "the image is damaged or uses a feature the decoder does not support",
    "not-a-regular-file": "a directory, FIFO, socket or device: never opened",
    "vanished": "deleted or moved between listing and reading",
    "changed": "modified between listing and reading",
    "permission-denied": "the file cannot be read with the current permissions",
    "read-error": "the operating system reported an error while reading the file",
    "heif-plugin-missing": 'HEIC/HEIF images need pillow-heif: pip install "lookalike[heif]"',
    "decoder-crashed": "the decoder process died (a crash, or killed for using too much memory)",
    "decode-timeout": "decoding took longer than the time limit",
}
"""Every reason code a decode can fail with, and a one-line description of it."""

TRANSIENT_REASONS: frozenset[str] = frozenset(
    {
        # The file is probably mid-write: its next state is what counts.
        "empty",
        "vanished",
        "changed",
        # Fixed outside the file (chmod, a remount, `pip install`) without touching its
        # size or mtime, so an unchanged file must still be retried; each retry is cheap.
        "permission-denied",
        "read-error",
        "heif-plugin-missing",
        # The machine, not the file, may be at fault (OOM killer, a loaded machine).
        # A file that really hangs the decoder costs one timeout per run; a crash costs
        # one worker restart.
        "decoder-crashed",
        "decode-timeout",
    }
)
"""Reasons retried on the next run even if the file's size and mtime are unchanged."""


class DecodeFailure(Exception):
    """A file cannot become pixels.

    Attributes:
        reason: one of :data:`REASONS`.
        detail: a human sentence with the specifics, e.g. ``"image file is truncated"``.

    Example:
        >>> DecodeFailure("truncated", "image file is truncated").reason
        'truncated'
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


DEFAULT_FORMATS: frozenset[str] = frozenset(
    {"JPEG", "MPO", "PNG", "GIF", "WEBP", "BMP", "TIFF", "HEIF", "AVIF", "ICO", "PPM"}
)
"""Pillow format names opened by default."""

# Formats whose Pillow plugin runs an external program (EPS: Ghostscript; WMF: the
# platform's metafile renderer). They cannot be allowed even on request.
_FORBIDDEN_FORMATS = frozenset({"EPS", "WMF"})

# The order plugins are tried in: the common ones first.
_FORMAT_ORDER = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "TIFF", "BMP", "ICO", "PPM")


@dataclass(frozen=True)
class DecodeLimits:
    """Bounds on what one decode may cost.

    Attributes:
        max_pixels: images with more pixels (width x height, before any reduced-scale JPEG
            decode) fail with ``"too-large"``. The default lets 50- and 100-megapixel
            photos through and stops decompression bombs; it also replaces Pillow's own
            limit (89 megapixels warns, 179 fails) during lookalike's decodes.
        max_file_bytes: larger files fail with ``"too-large"`` without being read.
        allowed_formats: Pillow format names that may be opened; anything else fails with
            ``"unsupported-format"``. ``EPS`` and ``WMF`` are refused (they run external
            programs).
    """

    max_pixels: int = 180_000_000
    max_file_bytes: int = 1 << 30
    allowed_formats: frozenset[str] = field(default=DEFAULT_FORMATS)

    def __post_init__(self) -> None:
        formats = frozenset(f.upper() for f in self.allowed_formats)
        object.__setattr__(self, "allowed_formats", formats)
        if self.max_pixels < 1:
            raise ConfigError("max_pixels must be at least 1")
        if self.max_file_bytes < 1:
            raise ConfigError("max_file_bytes must be at least 1")
        bad = formats & _FORBIDDEN_FORMATS
        if bad:
            raise ConfigError(
                f"format {', '.join(sorted(bad))} cannot be allowed: its decoder runs an "
                "external program"
            )


# --------------------------------------------------------------------------- reading


def content_hash(data: bytes | bytearray | memoryview) -> str:
    """The content fingerprint used to recognise renamed, moved and copied files.

    Args:
        data: the file's bytes.

    Returns:
        32 lowercase hex characters (BLAKE2b, 16-byte digest).

    Example:
        >>> content_hash(b"")
        'cae66941d9efbd404e4d88758ea67670'
    """
    return hashlib.blake2b(data, digest_size=16).hexdigest()


_KIND_OF_MODE = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
)


def _not_regular(mode: int) -> DecodeFailure:
    kind = next((name for test, name in _KIND_OF_MODE if test(mode)), "not a regular file")
    return DecodeFailure("not-a-regular-file", f"{kind}; not opened")


def _os_failure(e: OSError) -> DecodeFailure:
    """Map an OS error from stat/open/read to a reason."""
    msg = e.strerror or str(e)
    if isinstance(e, FileNotFoundError | NotADirectoryError):
        return DecodeFailure("vanished", f"no longer there ({msg})")
    if isinstance(e, PermissionError):
        return DecodeFailure("permission-denied", msg)
    if isinstance(e, IsADirectoryError) or e.errno in (errno.ENXIO, errno.ENODEV):
        return DecodeFailure("not-a-regular-file", f"{msg}; not opened")
    return DecodeFailure("read-error", msg)


def read_file(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    expect_size: int | None = None,
    expect_mtime_ns: int | None = None,
    *,
    max_file_bytes: int | None = 1 << 30,
) -> bytes:
    """Read a whole image file, refusing anything that is not a plain, stable file.

    The file is ``stat``-ed first and opened only if it is a regular file (symlinks are
    followed: whether to follow them is the scanner's decision). It is opened with
    ``O_NONBLOCK`` and ``fstat``-ed again, so a FIFO swapped in after the first check
    cannot block the call. Size and mtime are compared with the scan's values and checked
    again after reading.

    Args:
        path: the file; bytes for names that are not valid UTF-8.
        expect_size: size in bytes from the scan; a different size is ``"changed"``.
        expect_mtime_ns: ``st_mtime_ns`` from the scan; a different one is ``"changed"``.
        max_file_bytes: larger files are ``"too-large"`` without being read; ``None``: no cap.

    Returns:
        The file's bytes.

    Raises:
        DecodeFailure: ``not-a-regular-file``, ``vanished``, ``changed``,
            ``permission-denied``, ``read-error``, ``empty`` or ``too-large``.

    Example:
        >>> read_file("photo.jpg")  # doctest: +SKIP
        b'\\xff\\xd8\\xff...'
    """
    try:
        st = os.stat(path)
    except OSError as e:
        raise _os_failure(e) from None
    if not stat.S_ISREG(st.st_mode):
        raise _not_regular(st.st_mode)
    if (expect_size is not None and st.st_size != expect_size) or (
        expect_mtime_ns is not None and st.st_mtime_ns != expect_mtime_ns
    ):
        raise DecodeFailure("changed", "size or modification time differs from the scan")
    if max_file_bytes is not None and st.st_size > max_file_bytes:
        raise DecodeFailure(
            "too-large", f"{st.st_size} bytes is over the {max_file_bytes}-byte file limit"
        )
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _os_failure(e) from None
    try:
        before = os.fstat(fd)
        if not stat.S_ISREG(before.st_mode):
            raise _not_regular(before.st_mode)
        if (before.st_dev, before.st_ino, before.st_size, before.st_mtime_ns) != (
            st.st_dev,
            st.st_ino,
            st.st_size,
            st.st_mtime_ns,
        ):
            raise DecodeFailure("changed", "the file was replaced while being opened")
        size = before.st_size
        if size == 0:
            raise DecodeFailure("empty", "zero bytes")
        # Asking for one byte more than expected shows a file that is still growing.
        parts = []
        got = 0
        while got <= size:
            chunk = os.read(fd, size + 1 - got)
            if not chunk:
                break
            parts.append(chunk)
            got += len(chunk)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        after = os.fstat(fd)
        if len(data) != size or (after.st_size, after.st_mtime_ns) != (size, before.st_mtime_ns):
            raise DecodeFailure("changed", "the file changed while being read")
        return data
    except OSError as e:
        raise _os_failure(e) from None
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- sniffing

_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})


def _ftyp_brands(data: bytes) -> list[bytes]:
    """Major and compatible brands of an ISO base media file (HEIF, AVIF, MP4), else []."""
    if len(data) < 16 or data[4:8] != b"ftyp":
        return []
    box = int.from_bytes(data[:4], "big")
    box = min(max(box, 16), len(data), 256)
    brands = [data[8:12]]
    brands += [data[i : i + 4] for i in range(16, box - 3, 4)]
    return brands


def sniff_format(data: bytes) -> str | None:
    """Name the format from the first bytes, ignoring the file name.

    Args:
        data: the file's bytes (at least the first 1 KiB).

    Returns:
        A Pillow format name (``"JPEG"``, ``"PNG"``, ``"HEIF"``, ``"AVIF"``, ...), or a
        label for a format Pillow is never asked to open (``"PDF"``, ``"EPS"``, ``"SVG"``,
        ``"PSD"``, ``"XCF"``, ``"JPEG2000"``, ``"JPEG XL"``), or ``None`` when unknown.
    """
    head = data[:16]
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head[:6] in (b"GIF87a", b"GIF89a"):
        return "GIF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if head[:2] == b"BM":
        return "BMP"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if head[:2] in (b"P1", b"P2", b"P3", b"P4", b"P5", b"P6", b"P7", b"Pf", b"PF"):
        return "PPM"
    brands = _ftyp_brands(data)
    if brands:
        # The major brand decides; mif1/msf1 (generic HEIF) defer to the compatible list.
        major = brands[0]
        if major in _AVIF_BRANDS:
            return "AVIF"
        if major in _HEIF_BRANDS and major not in (b"mif1", b"msf1"):
            return "HEIF"
        if any(b in _AVIF_BRANDS for b in brands):
            return "AVIF"
        if any(b in _HEIF_BRANDS for b in brands):
            return "HEIF"
        if b"jxl " in brands:
            return "JPEG XL"
        return None
    if head.startswith(b"%PDF"):
        return "PDF"
    if head.startswith((b"%!PS", b"\xc5\xd0\xd3\xc6")):
        return "EPS"
    if head.startswith(b"8BPS"):
        return "PSD"
    if head.startswith(b"gimp xcf"):
        return "XCF"
    if head.startswith((b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\xff\x4f\xff\x51")):
        return "JPEG2000"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    text = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    if text.startswith(b"<svg") or (
        text.startswith((b"<?xml", b"<!doctype svg")) and b"<svg" in text
    ):
        return "SVG"
    return None


# --------------------------------------------------------------------------- HEIF plugin

_heif_lock = threading.Lock()


def _ensure_heif() -> None:
    """Register pillow_heif's opener (once), or fail naming the extra to install."""
    try:
        import pillow_heif
    except ImportError:
        raise DecodeFailure(
            "heif-plugin-missing",
            "HEIC/HEIF needs the pillow-heif package: pip install 'lookalike[heif]'",
        ) from None
    with _heif_lock:
        if "HEIF" not in Image.OPEN:
            pillow_heif.register_heif_opener()


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


def _draft(im: Image.Image, draft_to: tuple[int, int], orientation: int) -> None:
    """Let libjpeg decode at 1/2, 1/4 or 1/8 scale while the result stays >= draft_to."""
    h, w = draft_to
    if orientation >= 5:  # stored sideways: the displayed height is the stored width
        h, w = w, h
    im.draft("RGB", (max(1, w), max(1, h)))


def open_rgb(
    data: bytes,
    *,
    limits: DecodeLimits = DecodeLimits(),
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
        A loaded ``"RGB"`` image, EXIF orientation applied, transparency on white.

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
            rgb = to_rgb(im)
            if orientation != 1:
                rgb = rgb.transpose(_TRANSPOSE[orientation])
            return rgb
        except Exception as e:
            raise _pillow_failure(e, kind, limits.max_pixels) from None


_opened_plugins = threading.Event()


def _opener_names() -> set[str]:
    if not _opened_plugins.is_set():
        Image.init()  # imports plugin modules only; nothing is opened
        _opened_plugins.set()
    return set(Image.OPEN)


def _open_order(allowed: frozenset[str]) -> tuple[str, ...]:
    available = _opener_names()
    ordered = [f for f in _FORMAT_ORDER if f in allowed]
    ordered += sorted(allowed.difference(_FORMAT_ORDER))
    return tuple(f for f in ordered if f in available and f not in _FORBIDDEN_FORMATS)


# --------------------------------------------------------------------------- model input

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


def to_model_input(img: Image.Image, pre: Preprocess) -> np.ndarray:
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
    if nw >= cw and nh >= ch and nw * nh > _MAX_INTERMEDIATE_PIXELS:
        top, left = round((nh - ch) / 2.0), round((nw - cw) / 2.0)
        sx, sy = w / nw, h / nh
        box = (left * sx, top * sy, (left + cw) * sx, (top + ch) * sy)
        out = img.resize((cw, ch), resample, box=box)
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
    limits: DecodeLimits = DecodeLimits(),
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
        return to_model_input(img, pre)
    except MemoryError:
        raise DecodeFailure("too-large", "out of memory while resizing") from None


def decode_path(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    pre: Preprocess,
    limits: DecodeLimits = DecodeLimits(),
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


def load_for_display(
    path: str | bytes | os.PathLike[str] | os.PathLike[bytes],
    max_side: int = 512,
    limits: DecodeLimits = DecodeLimits(),
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
