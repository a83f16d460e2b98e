"""The *decode* seam: an image file -> model input pixels ``(H, W, 3)`` uint8, or a reason.

No torch here, on purpose: decode worker processes import only this package, numpy and
Pillow, so they start in a fraction of a second.

- :mod:`~lookalike.decode.reasons`: the failure reasons (:data:`REASONS`,
  :class:`DecodeFailure`) and what one decode may cost (:class:`DecodeLimits`).
- :mod:`~lookalike.decode.files`: a file's bytes, read safely (:func:`read_file`), and their
  fingerprint (:func:`content_hash`).
- :mod:`~lookalike.decode.formats`: the format from the bytes (:func:`sniff_format`), which
  Pillow plugins may open it, the HEIF plugin.
- :mod:`~lookalike.decode.image`: bytes -> an upright RGB image (:func:`open_rgb`,
  :func:`to_rgb`, :func:`load_for_display`).
- :mod:`~lookalike.decode.model_input`: RGB -> model input (:func:`to_model_input`); one
  file in the calling process (:func:`decode_path`).
- :mod:`~lookalike.decode.pool`: many files in worker processes with time and memory limits
  (:class:`DecodePool`, fed :class:`DecodeTask` s from :mod:`~lookalike.decode.tasks`); a
  crashing or hanging decoder costs one file, not the run. The worker process itself is
  :mod:`lookalike.decode._worker`.

Example:
    >>> from lookalike.decode import DecodePool, DecodeTask
    >>> from lookalike.setup import Preprocess
    >>> with DecodePool(Preprocess(), workers=2) as pool:  # doctest: +SKIP
    ...     for res in pool.map([DecodeTask(0, b"a.jpg", 1234, 0)]):
    ...         print(res.key, res.reason or res.pixels.shape)
"""

from .files import content_hash, read_file
from .formats import sniff_format
from .image import WHITE, load_for_display, open_rgb, to_rgb
from .model_input import check_preprocess, decode_bytes, decode_path, scale_size, to_model_input
from .pool import DecodePool
from .reasons import DEFAULT_FORMATS, REASONS, TRANSIENT_REASONS, DecodeFailure, DecodeLimits
from .tasks import DecodeResult, DecodeTask

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
