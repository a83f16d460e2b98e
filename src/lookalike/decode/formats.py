"""Which format a file is, and which Pillow plugins may open it.

:func:`sniff_format` names the format from the bytes (the extension is ignored);
:func:`_open_order` turns :attr:`DecodeLimits.allowed_formats` into the plugins Pillow may
try; :func:`_ensure_heif` registers ``pillow_heif`` on the first HEIC file.
"""

from __future__ import annotations

import threading

from PIL import Image

from .reasons import _FORBIDDEN_FORMATS, DecodeFailure

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


# --------------------------------------------------------------------------- Pillow plugins

# The order plugins are tried in: the common ones first.
_FORMAT_ORDER = ("JPEG", "MPO", "PNG", "WEBP", "HEIF", "AVIF", "GIF", "TIFF", "BMP", "ICO", "PPM")

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
