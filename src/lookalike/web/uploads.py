"""Uploaded query images: read into memory, never onto disk, decoded in a worker process.

Starlette's own form parser spools file parts over 1 MB to a temporary file; an upload is
a query, not a file to keep, so the multipart body is parsed here from memory (it is
already bounded by the body-size guard) and the image bytes go straight to the decoder.
Nothing in a request is ever treated as a URL to fetch.

The decoder is the indexing one, in the indexing one's worker process
(:class:`~lookalike.decode.DecodePool`: a fresh interpreter, a time limit armed around
each decode, a memory limit): an upload that crashes Pillow or decodes for minutes costs
that worker (a 422 for that upload, a new worker for the next), never the server. The
bytes travel to the worker over its socket, as the task's "path" (:func:`decode_upload`).
"""

from __future__ import annotations

import base64
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import numpy as np

from .security import BodyTooLarge

if TYPE_CHECKING:
    from ..decode import DecodeLimits, DecodePool
    from ..setup import Preprocess

FIELD = "image"


class UploadError(Exception):
    """The request carries no usable image part.

    Attributes:
        status: the HTTP status to answer with (4xx).
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def read_body(stream: AsyncIterator[bytes], limit: int) -> bytes:
    """The whole request body, refusing more than ``limit`` bytes while it streams."""
    body = bytearray()
    async for chunk in stream:
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge
    return bytes(body)


def image_part(content_type: str, body: bytes) -> bytes:
    """The bytes of the ``image`` field of a ``multipart/form-data`` body.

    Raises:
        UploadError: not multipart, malformed, or no non-empty ``image`` part.
    """
    from python_multipart.exceptions import FormParserError
    from python_multipart.multipart import MultipartParser, parse_options_header

    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or not options.get(b"boundary"):
        raise UploadError(415, f"send the image as multipart/form-data in the field {FIELD!r}")
    parts: list[tuple[dict[bytes, bytes], bytearray]] = []
    field_name = bytearray()
    field_value = bytearray()

    def on_part_begin() -> None:
        parts.append(({}, bytearray()))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field_name.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        field_value.extend(data[start:end])

    def on_header_end() -> None:
        parts[-1][0][bytes(field_name).lower()] = bytes(field_value)
        field_name.clear()
        field_value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1][1].extend(data[start:end])

    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
    }
    try:
        parser = MultipartParser(options[b"boundary"], callbacks)  # type: ignore[arg-type]
        parser.write(body)
        parser.finalize()
    except (FormParserError, ValueError) as e:
        raise UploadError(400, f"malformed multipart body: {e}") from None
    for headers, data in parts:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        if disposition.get(b"name") == FIELD.encode():
            if not data:
                raise UploadError(400, f"the {FIELD!r} field is empty")
            return bytes(data)
    raise UploadError(400, f"no {FIELD!r} field in the upload")


def decode_upload(
    path: bytes, pre: Preprocess, limits: DecodeLimits, *, draft: bool = True, **_: Any
) -> tuple[np.ndarray, str]:
    """The worker's half: uploaded bytes -> model input pixels and a preview.

    A ``decode_fn`` for :class:`~lookalike.decode.DecodePool`, run in its worker process:
    ``path`` carries the upload's bytes (an upload has no file), and the second value,
    where a file's content hash would go, carries the preview: the upload's JPEG
    thumbnail, base64 (``""`` when only the preview fails).

    Raises:
        DecodeFailure: the bytes are not a usable image (the pool reports the reason).
    """
    from ..decode import DecodeFailure, decode_bytes
    from .files import upload_thumbnail

    pixels = decode_bytes(path, pre, limits, draft=draft)
    try:
        preview = base64.b64encode(upload_thumbnail(path, limits)).decode("ascii")
    except DecodeFailure:
        preview = ""
    return pixels, preview


class UploadDecoder:
    """Decodes uploads one at a time in a worker process (started on first use, replaced
    after a crash or a timeout).

    Args:
        timeout_s: seconds one upload may take to decode.
        memory_limit_bytes: address-space limit of the worker.
        decode_fn: ``"module:function"`` instead of :func:`decode_upload` (tests: a
            decoder that crashes or hangs on purpose).
    """

    def __init__(
        self,
        *,
        timeout_s: float = 20.0,
        memory_limit_bytes: int = 4 << 30,
        decode_fn: str | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.decode_fn = decode_fn or f"{__name__}:decode_upload"
        self._lock = threading.Lock()
        self._pool: DecodePool | None = None
        self._setup: tuple[Preprocess, DecodeLimits] | None = None

    def decode(
        self, data: bytes, pre: Preprocess, limits: DecodeLimits
    ) -> tuple[np.ndarray, bytes | None]:
        """``(pixels, preview JPEG or None)`` of the uploaded ``data``.

        Raises:
            DecodeFailure: not a usable image, or the decoder crashed or ran out of time
                (``decoder-crashed``, ``decode-timeout``).
            UploadError: 503, no worker process can start here.
        """
        from ..decode import DecodeFailure, DecodeTask
        from ..errors import ConfigError

        with self._lock:
            pool = self._pool_for(pre, limits)
            try:
                (result,) = list(pool.map([DecodeTask(0, data, len(data), 0)]))
            except ConfigError as e:
                raise UploadError(503, f"cannot decode uploads on this server: {e}") from None
        if result.reason is not None or result.pixels is None:
            raise DecodeFailure(result.reason or "decode-error", result.detail)
        preview = base64.b64decode(result.hash) if result.hash else None
        return result.pixels, preview

    def _pool_for(self, pre: Preprocess, limits: DecodeLimits) -> DecodePool:
        from ..decode import DecodePool

        if self._pool is None or self._setup != (pre, limits):
            if self._pool is not None:
                self._pool.close()
            self._pool = DecodePool(
                pre,
                limits,
                workers=1,
                timeout_s=self.timeout_s,
                memory_limit_bytes=self.memory_limit_bytes,
                decode_fn=self.decode_fn,
            )
            self._setup = (pre, limits)
        return self._pool

    def close(self) -> None:
        """Stop the worker (a later upload starts a new one)."""
        with self._lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
