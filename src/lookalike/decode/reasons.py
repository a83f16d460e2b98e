"""What a decode may fail with (:data:`REASONS`, :class:`DecodeFailure`) and what it may cost.

:class:`DecodeLimits` bounds one decode: pixels, file size and the Pillow formats that may be
opened (:data:`DEFAULT_FORMATS`; the formats whose plugins run external programs are never
allowed).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ConfigError

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
