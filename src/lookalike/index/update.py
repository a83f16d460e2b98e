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
    """See :meth:`lookalike.Index.update` (``expected``: the preprocessing guessed before
    the model loads; ``opened``: the database file's identity when it was opened)."""
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
