"""The *engine* seam: where decoding and embedding run for :meth:`lookalike.Index.update`.

``"local"`` (the default) is this process: decode worker processes feed the model here
(:func:`lookalike.pipeline.run_update`). ``"ray"`` runs the same decoder and the same
embedder on a Ray cluster (:mod:`lookalike.engine.ray_engine`). Either way the driver
scans, plans and commits: only the files to embed leave it, and only vectors (or a
failure reason per file) come back, one batch at a time, each committed as it arrives.

An engine is any object with :meth:`Engine.run`; :func:`make_engine` builds one by name.

Example:
    >>> from lookalike import Index
    >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
    ...     idx.update("/mnt/photos", engine="ray", ray_address="head:6379")
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .base import ENGINES, Engine, EngineBatch

if TYPE_CHECKING:
    from ..decode import DecodeLimits
    from ..setup import EmbedderOptions

__all__ = ["ENGINES", "Engine", "EngineBatch", "make_engine"]


def make_engine(
    engine: str | Engine | None,
    *,
    ray_address: str | None = None,
    options: Callable[[], EmbedderOptions],
    limits: DecodeLimits,
    workers: int | None = None,
) -> Engine | None:
    """The engine named ``engine``, or ``None`` for the local one.

    Args:
        engine: ``"local"``, ``"ray"``, ``None`` (local) or an :class:`Engine` object.
        ray_address: for ``"ray"``: the cluster to connect to; ``None``: ``$RAY_ADDRESS``,
            else a local cluster started in this process.
        options: gives the index's effective embedder options (called after the model
            loaded, when the setup is recorded).
        limits: decode limits (pixels, file size, formats), the same as the local run's.
        workers: decode worker processes per Ray actor (``None``: the node's cores).

    Raises:
        ConfigError: an unknown engine name, or ``ray_address`` without ``"ray"``.
        MissingDependencyError: ``"ray"`` without Ray installed (``lookalike[ray]``).
    """
    if engine is None or engine == "local":
        if ray_address is not None:
            raise ConfigError("--ray-address needs --engine ray")
        return None
    if isinstance(engine, str):
        if engine != "ray":
            raise ConfigError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")
        from .ray_engine import RayEngine

        return RayEngine(ray_address, options=options, limits=limits, workers=workers)
    if not isinstance(engine, Engine):
        raise ConfigError(f"engine must be 'local', 'ray' or an Engine, not {engine!r}")
    return engine
