"""Images by id, for adapters that must never take a path from a user (the web UI):
the :class:`~lookalike.Index` methods, kept here so ``index.py`` stays a thin facade."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .decode import DecodeFailure
from .errors import ConfigError, QueryError
from .paths import resolved
from .types import Hit


class ImagesByIdMixin:
    """Part of :class:`~lookalike.Index`; expects ``_store``, ``_decode_limits``,
    ``_get_embedder`` and ``search_vector``."""

    _store: Any
    _decode_limits: Any
    _get_embedder: Any
    search_vector: Any

    def images(self, offset: int = 0, limit: int = 100) -> tuple[int, list[tuple[int, str]]]:
        """The total image count and ``(id, path)`` of up to ``limit`` images in path order."""
        if offset < 0 or limit < 0:
            raise ConfigError("offset and limit must not be negative")
        rows = self._store.page(offset, limit)
        return self._store.count(), [(i, os.fsdecode(p)) for i, p in rows]

    def image_path(self, image_id: int) -> str | None:
        """The path of the image with this id, or ``None`` if there is none."""
        path = self._store.paths_for([int(image_id)]).get(int(image_id))
        return os.fsdecode(path) if path is not None else None

    def image_ids(self, paths: Sequence[str]) -> dict[str, int]:
        """The ids of those ``paths`` that are indexed."""
        out: dict[str, int] = {}
        for p in paths:
            found = self._store.lookup(resolved(p))
            if found is not None:
                out[p] = found[0].id
        return out

    def similar_to_id(
        self,
        image_id: int,
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` images most similar to the stored image ``image_id`` (never itself).

        Raises:
            QueryError: no image has this id.
        """
        vec = self._store.vectors_for([int(image_id)]).get(int(image_id))
        if vec is None:
            raise QueryError(f"no image with id {image_id} in the index", "unknown-id")
        return self.search_vector(vec, k, folder=folder, exact=exact, _exclude=[int(image_id)])

    def embed_bytes(self, data: bytes, *, max_pixels: int | None = None) -> np.ndarray:
        """The vector of an image given as bytes (an upload), decoded in memory.

        Args:
            data: the image file's bytes; never written anywhere.
            max_pixels: a stricter decompression-bomb limit than the index's.

        Raises:
            QueryError: the bytes are not a usable image; ``reason`` says why.
        """
        from dataclasses import replace

        from .decode import decode_bytes

        limits = self._decode_limits
        if max_pixels is not None:
            limits = replace(limits, max_pixels=min(max_pixels, limits.max_pixels))
        embedder = self._get_embedder()
        try:
            pixels = decode_bytes(data, embedder.setup.preprocess, limits)
        except DecodeFailure as e:
            raise QueryError(f"cannot read the image: {e.detail or e.reason}", e.reason) from None
        vec = embedder.embed_pixels(pixels[None])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError("the model gave no usable vector for the image", "bad-vector")
        return vec
