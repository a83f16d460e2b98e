"""What an index holds, written and read directly: your own vectors, forgetting a folder,
the failed files, and the summary ``lookalike info`` prints. Each function needs the store
(and, to write, the vector side that keeps the cache in step)."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import ConfigError, NotIndexedError
from ..paths import path_forms, printable, resolved
from ..setup import Setup
from ..store import Store, WriteBatch
from ..types import FailedFile
from .search import Vectors

if TYPE_CHECKING:
    from ..duplicates.types import Calibration


def add_embeddings(
    store: Store,
    index_vectors: Vectors,
    paths: Sequence[str | os.PathLike[str]],
    vectors: np.ndarray,
) -> None:
    """Store your own ``vectors`` (n, dim) for ``paths`` (n) in one transaction.

    Vectors are normalised; non-finite or zero rows are rejected. Paths need not exist
    (existing files record their size and mtime, so a later update keeps them).
    """
    vecs = np.asarray(vectors, dtype=np.float32)
    if vecs.ndim != 2 or vecs.shape[0] != len(paths):
        raise ConfigError(
            f"vectors must be (len(paths), dim); got {vecs.shape} for {len(paths)} paths"
        )
    norms = np.linalg.norm(vecs, axis=1, keepdims=True)
    bad = ~np.isfinite(norms[:, 0]) | (norms[:, 0] == 0)
    if bad.any():
        raise ConfigError(f"{int(bad.sum())} vectors are zero or not finite")
    dim = store.dim()
    if dim is not None and vecs.shape[1] != dim:
        raise ConfigError(f"vectors have dimension {vecs.shape[1]}; the index holds {dim}")
    vecs = vecs / norms
    batch = WriteBatch()
    last = {resolved(p): i for i, p in enumerate(paths)}  # a path twice: its last
    for b, i in last.items():
        try:
            st = os.stat(b)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            size, mtime = -1, -1
        batch.upserts.append((b, size, mtime, None, vecs[i]))
    index_vectors.commit(batch)


def remove(
    store: Store,
    index_vectors: Vectors,
    folder: str | os.PathLike[str],
    missing_ok: bool = True,
) -> int:
    """See :meth:`lookalike.Index.remove`."""
    forms = path_forms(folder)
    ids = store.ids_under(forms)
    if ids.size == 0:  # an indexed image file: forget it alone
        found = [store.lookup(form) for form in forms]
        ids = np.unique(np.array([f[0].id for f in found if f is not None], np.int64))
    if ids.size == 0 and not missing_ok:
        recorded = store.folders()
        if not any(_below(f, form) for f in recorded for form in forms):
            tops = [os.fsdecode(f) for f in top_folders(recorded)]
            where = (
                "indexed folders: "
                + ", ".join(printable(t) for t in tops[:10])
                + (" ..." if len(tops) > 10 else "")
                if tops
                else "the index holds no folder"
            )
            raise NotIndexedError(
                f"{printable(os.fsdecode(forms[-1]))} is not indexed (no image below it); {where}",
                tops,
            )
    index_vectors.commit(WriteBatch(deletes=[int(i) for i in ids]))
    for form in forms:
        store.remove_folder(form)  # type: ignore[attr-defined]
    return int(ids.size)


def _below(path: bytes, folder: bytes) -> bool:
    """``path`` is ``folder`` or inside it."""
    return path == folder or path.startswith(folder.rstrip(b"/") + b"/")


def top_folders(folders: Sequence[bytes]) -> list[bytes]:
    """The indexed folders that are inside no other indexed folder, sorted."""
    ordered = sorted(set(folders))
    tops: list[bytes] = []
    for f in ordered:
        if not any(_below(f, t) for t in tops):
            tops.append(f)
    return tops


def failures(store: Store) -> list[FailedFile]:
    """See :meth:`lookalike.Index.failures`."""
    return [FailedFile(os.fsdecode(f.path), f.reason, f.detail) for f in store.all_failures()]


def info(
    store: Store, setup: Setup | None, location: str, calibration: Calibration | None
) -> dict[str, Any]:
    """See :meth:`lookalike.Index.info`."""
    out: dict[str, Any] = {
        "db": location,
        "images": store.count(),
        "dim": store.dim(),
        "model": setup.model if setup else None,
        "weights": setup.weights if setup else None,
        "weights_path": store.get_meta("weights_path"),
        "pooling": setup.pool if setup else None,
        "preprocessing": json.loads(setup.to_json())["preprocess"] if setup else None,
        # "clip": text queries work (#10); "clip" then names the library, tag, tokenizer.
        "space": setup.space if setup else None,
        "clip": json.loads(setup.to_json()).get("clip") if setup else None,
        "folders": [os.fsdecode(f) for f in store.folders()],
        "failed": [
            {"path": f.path, "reason": f.reason, "detail": f.detail} for f in failures(store)
        ],
        "generation": store.generation(),
    }
    out["duplicate_threshold"] = (  # when calibrated (#9)
        dict(calibration.to_dict(), sentence=calibration.sentence())
        if calibration is not None
        else None
    )
    return out
