"""The vector index seam: a rebuildable on-disk cache of the stored vectors, searched
exactly or through an approximate index (FAISS, imported only when needed).

* :class:`VectorSearch` - what the engine calls: ``search``, ``notify``, ``build_ann``.
* :class:`VectorCache` - ``vectors.f32`` / ``ids.i64`` / ``state.json`` next to the DB.
* :func:`exact_search` - brute-force top-k, the reference approximate search is judged by.
* :class:`VectorSource` - the protocol of the store the cache copies; :class:`MemorySource`
  implements it in memory for tests.
"""

from lookalike.vectors.ann import KINDS as ANN_KINDS
from lookalike.vectors.ann import AnnConfig
from lookalike.vectors.cache import VectorCache
from lookalike.vectors.exact import exact_search
from lookalike.vectors.search import VectorSearch
from lookalike.vectors.source import MemorySource, VectorSource

__all__ = [
    "ANN_KINDS",
    "AnnConfig",
    "MemorySource",
    "VectorCache",
    "VectorSearch",
    "VectorSource",
    "exact_search",
]
