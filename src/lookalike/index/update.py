"""Bringing an index up to date with its folders: the update lock, the engine, the
pipeline (:mod:`lookalike.pipeline`), and the approximate index once the store is large.

:func:`update_index` needs the store, the index's model and vector side, and the decode
settings; see :meth:`lookalike.Index.update` for the rest.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

from ..decode import DecodeLimits
from ..errors import ConfigError
from ..pipeline import Progress, run_update
from ..setup import Preprocess
from ..store import Store
from ..types import IndexReport
from .model import Model
from .search import Vectors


def update_index(
    store: Store,
    model: Model,
    vectors: Vectors,
    limits: DecodeLimits,
    workers: int | None,
    folders: Sequence[str | os.PathLike[str]],
    *,
    engine: str | Any,
    ray_address: str | None,
    wait: bool,
    on_wait: Callable[[str], None] | None,
    on_stage: Callable[[str], None] | None,
    on_progress: Callable[[Progress], None] | None,
    follow_links: bool,
    include_hidden: bool,
    expected: Callable[[], Preprocess | None],
    opened: tuple[int, int] | None = None,
) -> IndexReport:
    """Bring the index up to date with ``folders`` (recursively): :meth:`lookalike.Index.update`.

    New and changed images are embedded; unchanged ones (same size and mtime) are skipped;
    deleted ones are removed; renamed, moved or copied files reuse the vector of identical
    content. One bad file never stops the run: it is listed in ``report.failed`` with a
    reason.

    Args:
        engine: where decoding and embedding run: ``"local"`` (this machine), ``"ray"`` (a
            Ray cluster; the paths must be readable on every node; see
            :mod:`lookalike.engine.ray_engine`), or a :class:`lookalike.engine.Engine`.
        ray_address: the Ray cluster; default ``$RAY_ADDRESS``, else a local cluster.
        wait: when another process is updating this index (it holds ``<db>.lock``,
            :mod:`lookalike.index.lock`), wait for it, then do what is left; ``False``:
            raise :class:`~lookalike.errors.IndexBusyError`.
        on_wait: called with one sentence (who holds the lock) before waiting.
        on_stage: called with ``"loading-model"`` before the model loads, then
            ``"compiling-model"`` when it has no compiled copy yet (a model's first run
            builds and compiles it), and ``"embedding"`` once it is ready.
        expected: the preprocessing guessed before the model loads (decoding starts early;
            a wrong guess decodes again).
        opened: the database file's identity when it was opened (a run whose new index
            was removed meanwhile stops instead of writing to a deleted file).

    Raises:
        SourceUnavailableError: a folder is missing, unreadable or looks unmounted; nothing
            is changed.
        IndexBusyError: another process is updating the index and ``wait`` is false.
        NothingIndexedError: every image file failed.
        MissingDependencyError: ``engine="ray"`` without ``lookalike[ray]``.
        EngineError: the Ray cluster cannot be reached or failed (committed batches stay).
    """
    if not folders:
        raise ConfigError("name at least one folder to index")
    if any(not os.fspath(f) for f in folders):  # "" would silently mean the cwd
        raise ConfigError("a folder name is empty (the current folder is '.')")
    from ..engine import make_engine
    from .fresh import check_still_there
    from .lock import update_lock

    runner = make_engine(
        engine,
        ray_address=ray_address,
        options=model.effective_options,
        limits=limits,
        workers=workers,
    )
    with update_lock(getattr(store, "path", None), wait=wait, on_wait=on_wait):
        check_still_there(getattr(store, "path", None), opened)
        report = run_update(
            store,
            list(folders),
            get_embedder=model.embedder_getter(on_stage),
            preprocess=expected(),
            decode_limits=limits,
            workers=workers,
            on_commit=vectors.on_commit,
            commit_guard=vectors.committing,
            on_progress=on_progress,
            follow_links=follow_links,
            include_hidden=include_hidden,
            engine=runner,
        )
    vectors.build_ann_if_due()
    return report
