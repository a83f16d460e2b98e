"""Opening an index (:meth:`lookalike.Index.open`): where it lives, and the options asked
for, checked before any work.

- **Location**: ``path``, else ``$LOOKALIKE_DB``, else :func:`default_db_path`. A SQLite
  file keeps its derived caches in ``<path>.cache/`` beside it; a
  ``postgresql://USER@HOST[:PORT]/DBNAME`` URL opens a PostgreSQL + pgvector index, which
  searches its vectors in the server and keeps no cache (README, "PostgreSQL").
- **Model**: with no ``model``, an existing index keeps its recorded setup and a new one
  uses the default (:data:`lookalike.setup.DEFAULT_MODEL`, average pooling). ``weights``
  is a local ``.safetensors``/``.pth`` file instead of timm's hub cache; ``pool`` is
  ``avg``, ``gem``, ``max``, ``flatten`` or ``token``; ``crop`` is ``none`` (resize the
  whole image) or ``center`` (the model's eval crop); ``precision`` ``auto``, ``bf16`` or
  ``fp32``; ``device`` ``auto``, ``cpu``, ``cuda`` or ``mps``.
- **Backend** (how models run on the CPU): ``auto`` (OpenVINO when installed, else
  TorchScript), ``openvino`` or ``torch``; default ``$LOOKALIKE_BACKEND``, else ``auto``.
  The vectors agree either way: each compiled copy is checked against timm's forward pass
  when it is saved (:mod:`lookalike.embed.runtime.compiled`).
- **Approximate index**: ``ann="auto"`` builds it from ``ann_threshold`` vectors on;
  ``on`` and ``off`` force it.
- ``create=False`` (read-only commands) raises
  :class:`~lookalike.errors.IndexNotFoundError` instead of creating an empty index; an
  index built with another model, weights, pooling or crop raises
  :class:`~lookalike.errors.SetupMismatchError`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..setup import EmbedderOptions
from ..store import Store


def default_db_path() -> Path:
    """``$LOOKALIKE_DB``, else ``index.db`` in the user's data directory (platformdirs)."""
    env = os.environ.get("LOOKALIKE_DB")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lookalike")) / "index.db"


def embedder_options(
    *,
    model: str | None,
    weights: str | os.PathLike[str] | None,
    pool: str | None,
    crop: str | None,
    precision: str,
    device: str,
    backend: str | None,
    batch_size: int | None,
    ann: str,
) -> EmbedderOptions:
    """The options asked for; :class:`~lookalike.errors.ConfigError` for an unknown ``ann``
    mode or backend name, before any work."""
    if ann not in ("auto", "on", "off"):
        raise ConfigError(f"unknown ann mode {ann!r}; choose auto, on or off")
    options = EmbedderOptions(
        model=model,
        weights=os.fspath(Path(weights).expanduser()) if weights is not None else None,
        pool=pool,
        crop=crop,
        precision=precision,
        device=device,
        batch_size=batch_size,
        extra={"backend": backend} if backend is not None else {},
    )
    if backend is not None:
        from ..embed.runtime.compiled import requested_backend

        requested_backend(options)
    return options


def location(path: str | os.PathLike[str] | None, *, create: bool) -> str | os.PathLike[str]:
    """Where the index is (see the module docstring); with ``create`` false, an
    :class:`~lookalike.errors.IndexNotFoundError` when there is none."""
    where = path if path is not None else os.environ.get("LOOKALIKE_DB") or default_db_path()
    if not create:
        from .preflight import require_index

        require_index(where, named=path is not None or "LOOKALIKE_DB" in os.environ)
    return where


def cache_dir(store: Store) -> Path | None:
    """``<db>.cache/`` beside a SQLite file; ``None`` for a database server."""
    db_path = getattr(store, "path", None)
    return db_path.with_name(db_path.name + ".cache") if db_path else None


def open_index(
    cls: Any,
    path: str | os.PathLike[str] | None,
    options: EmbedderOptions,
    *,
    create: bool,
    workers: int | None,
    max_pixels: int | None,
    ann: str,
    ann_threshold: int,
    embedder: Any,
) -> Any:
    """:meth:`lookalike.Index.open` once its options are checked: open the store, build the
    facade ``cls`` over it and check the requested model against the recorded setup
    (``SetupMismatchError``). A first run that fails here removes what it created
    (:mod:`lookalike.index.fresh`)."""
    from ..decode import DecodeLimits
    from ..store import open_store
    from . import fresh as fresh_run

    where = location(path, create=create)
    fresh = fresh_run.new_paths(where) if create else []
    store = open_store(where, create=create)
    with fresh_run.discarded_on_failure(store, fresh):
        index = cls(
            store,
            options,
            cache_dir=cache_dir(store),
            workers=workers,
            decode_limits=DecodeLimits(max_pixels=max_pixels) if max_pixels else None,
            ann=ann,
            ann_threshold=ann_threshold,
            embedder=embedder,
        )
        index._model.check_requested()
    index._fresh = fresh
    index._opened = fresh_run.identity(getattr(store, "path", None))
    return index
