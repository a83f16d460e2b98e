"""Search by words (#10): the :class:`~lookalike.Index` entry points for CLIP indexes.
The query algebra is in :mod:`lookalike.query`, the text tower in
:mod:`lookalike.embed.clip_text`."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from .errors import ConfigError, QueryError
from .setup import DEFAULT_MODEL
from .types import Hit


class TextSearchMixin:
    """Part of :class:`~lookalike.Index`; expects ``_store``, ``_options``, ``setup``,
    ``location``, ``_get_embedder``, ``_effective_options``, ``_query_vector`` and
    ``search_vector``."""

    _store: Any
    _options: Any
    setup: Any
    location: Any
    _get_embedder: Any
    _effective_options: Any
    _query_vector: Any
    search_vector: Any

    @property
    def is_clip(self) -> bool:
        """Whether text queries work: the index holds (or, new, will hold) CLIP vectors."""
        setup = self.setup
        if setup is not None:
            return setup.space == "clip"
        from .embed.clip_names import is_clip_name

        return is_clip_name(self._options.model)

    def embed_text(self, text: str) -> np.ndarray:
        """The vector of ``text`` in a CLIP index's space: float32 ``(dim,)``, unit norm.

        Loads the text tower on first use (a compiled copy from the model cache when there
        is one).

        Raises:
            ConfigError: not a CLIP index (the message says how to build one); empty text.
        """
        if not text.strip():
            raise ConfigError("an empty text is not a query")
        vec = self._text_encoder().embed([text])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError(f"the model gave no usable vector for {text!r}", "bad-vector")
        return vec  # type: ignore[no-any-return]

    def search_text(
        self, text: str, k: int = 10, *, folder: str | os.PathLike[str] | None = None
    ) -> list[Hit]:
        """The ``k`` indexed images that best match ``text`` (a CLIP index only).

        Example:
            >>> hits = idx.search_text("a red bicycle", k=5)  # doctest: +SKIP
        """
        from .query import Query, Term

        return self.search_query(Query((Term("text", text),)), k, folder=folder)

    def search_query(
        self,
        query: Any,
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` images that best match a :class:`~lookalike.query.Query` of weighted
        texts and images, positive and negative (the rule is in :mod:`lookalike.query`).

        Image terms that are indexed files are never results themselves.

        Example:
            >>> from lookalike.query import Query
            >>> q = Query.build(text=["2:red", "bicycle"], negative=["night"])
            >>> hits = idx.search_query(q, k=10)  # doctest: +SKIP
        """
        from .query import SPREAD_SAMPLE, combine

        if any(t.kind == "text" for t in query.terms):
            self._text_encoder()  # refuses a non-CLIP index before any other work
        vectors, exclude = [], []
        for term in query.terms:
            if term.kind == "text":
                vectors.append(self.embed_text(term.value))
            else:
                vec, ids = self._query_vector(term.value)
                vectors.append(vec)
                exclude += ids
        sample = None
        if len(vectors) > 1:
            chunks = self._store.iter_vectors(SPREAD_SAMPLE)
            sample = next(iter(chunks), (None, None))[1]
            getattr(chunks, "close", lambda: None)()
        q = combine(
            np.stack(vectors),
            [t.weight for t in query.terms],
            [t.negative for t in query.terms],
            sample,
        )
        return self.search_vector(q, k, folder=folder, exact=exact, _exclude=exclude)

    def _text_encoder(self) -> Any:
        encoder = getattr(self, "_text", None)
        if encoder is None:
            from .embed.clip_names import not_clip_message
            from .embed.clip_text import load_text_encoder
            from .embed.model_cache import models_root

            if not self.is_clip:
                setup = self.setup
                model = setup.model if setup else self._options.model or DEFAULT_MODEL
                raise ConfigError(not_clip_message(self.location, model))
            setup = self.setup or self._get_embedder().setup
            encoder = load_text_encoder(models_root(), setup, self._effective_options())
            self._text = encoder
        return encoder
