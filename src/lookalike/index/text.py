"""Search by words (#10) in a CLIP index. The query algebra is in :mod:`lookalike.query`,
the text tower in :mod:`lookalike.embed.clip.text`.

:class:`TextSearch` needs the store (a sample of vectors for mixed queries), the index's
:class:`~lookalike.index.model.Model`, how an image term becomes a vector, and the
vector search.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import ConfigError, QueryError
from ..setup import DEFAULT_MODEL
from ..store import Store
from ..types import Hit
from .model import Model
from .search import Vectors


class TextSearch:
    """Text and mixed queries over one index.

    Args:
        store: the index's store.
        model: the index's model (its setup says whether it is CLIP).
        vectors: the vector search.
        image_vector: an image term's vector and the ids it is stored under.
    """

    def __init__(
        self,
        store: Store,
        model: Model,
        vectors: Vectors,
        image_vector: Callable[[str], tuple[np.ndarray, list[int]]],
    ) -> None:
        self._store = store
        self._model = model
        self._vectors = vectors
        self._image_vector = image_vector
        self.encoder: Any = None

    @property
    def is_clip(self) -> bool:
        """See :attr:`lookalike.Index.is_clip`."""
        setup = self._model.setup
        if setup is not None:
            return setup.space == "clip"
        from ..embed.clip.names import is_clip_name

        return is_clip_name(self._model.options.model)

    def embed_text(self, text: str) -> np.ndarray:
        """See :meth:`lookalike.Index.embed_text`. Loads the text tower on first use (a
        compiled copy from the model cache when there is one)."""
        if not text.strip():
            raise ConfigError("an empty text is not a query")
        vec = self.text_encoder().embed([text])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError(f"the model gave no usable vector for {text!r}", "bad-vector")
        return vec  # type: ignore[no-any-return]

    def search_query(
        self, query: Any, k: int, *, folder: str | os.PathLike[str] | None, exact: bool
    ) -> list[Hit]:
        """See :meth:`lookalike.Index.search_query`. Image terms that are indexed files are
        never results themselves."""
        from ..query import SPREAD_SAMPLE, combine

        if any(t.kind == "text" for t in query.terms):
            self.text_encoder()  # refuses a non-CLIP index before any other work
        vectors, exclude = [], []
        for term in query.terms:
            if term.kind == "text":
                vectors.append(self.embed_text(term.value))
            else:
                vec, ids = self._image_vector(term.value)
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
        return self._vectors.search(q, k, folder=folder, exact=exact, exclude=exclude)

    def search_text(self, text: str, k: int, folder: str | os.PathLike[str] | None) -> list[Hit]:
        """See :meth:`lookalike.Index.search_text`."""
        from ..query import Query, Term

        return self.search_query(Query((Term("text", text),)), k, folder=folder, exact=False)

    def text_encoder(self) -> Any:
        """The text tower, loaded on first use; refuses an index that is not CLIP."""
        if self.encoder is None:
            from ..embed.clip.names import not_clip_message
            from ..embed.clip.text import load_text_encoder
            from ..embed.runtime.cache import models_root

            model = self._model
            if not self.is_clip:
                setup = model.setup
                name = setup.model if setup else model.options.model or DEFAULT_MODEL
                raise ConfigError(not_clip_message(model.location, name))
            setup = model.setup or model.get_embedder().setup
            self.encoder = load_text_encoder(models_root(), setup, model.effective_options())
        return self.encoder
