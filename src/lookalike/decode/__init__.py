"""The *decode* seam: an image file -> model input pixels ``(H, W, 3)`` uint8, or a reason.

No torch here, on purpose: decode worker processes import only this package, numpy and
Pillow, so they start in a fraction of a second.

- :mod:`lookalike.decode.image`: one file in the calling process (:func:`decode_path`).
- :mod:`lookalike.decode.pool`: many files in worker processes with time and memory limits
  (:class:`DecodePool`); a crashing or hanging decoder costs one file, not the run.

Example:
    >>> from lookalike.decode import DecodePool, DecodeTask
    >>> from lookalike.setup import Preprocess
    >>> with DecodePool(Preprocess(), workers=2) as pool:  # doctest: +SKIP
    ...     for res in pool.map([DecodeTask(0, b"a.jpg", 1234, 0)]):
    ...         print(res.key, res.reason or res.pixels.shape)
"""

from .image import (
    DEFAULT_FORMATS,
    REASONS,
    TRANSIENT_REASONS,
    WHITE,
    DecodeFailure,
    DecodeLimits,
    check_preprocess,
    content_hash,
    decode_bytes,
    decode_path,
    load_for_display,
    open_rgb,
    read_file,
    scale_size,
    sniff_format,
    to_model_input,
    to_rgb,
)
from .pool import DecodePool, DecodeResult, DecodeTask

__all__ = [
    "DEFAULT_FORMATS",
    "REASONS",
    "TRANSIENT_REASONS",
    "WHITE",
    "DecodeFailure",
    "DecodeLimits",
    "DecodePool",
    "DecodeResult",
    "DecodeTask",
    "check_preprocess",
    "content_hash",
    "decode_bytes",
    "decode_path",
    "load_for_display",
    "open_rgb",
    "read_file",
    "scale_size",
    "sniff_format",
    "to_model_input",
    "to_rgb",
]
