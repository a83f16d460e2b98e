"""Uploaded query images: read into memory, never onto disk.

Starlette's own form parser spools file parts over 1 MB to a temporary file; an upload is
a query, not a file to keep, so the multipart body is parsed here from memory (it is
already bounded by the body-size guard) and the image bytes go straight to the decoder.
Nothing in a request is ever treated as a URL to fetch.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from .security import BodyTooLarge

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
