"""The glue between :class:`~lookalike.Index` and the duplicate search: which threshold,
calibrating it, and keeping the index in step with moved files. ``Index`` calls these
from thin entry points with :class:`IndexParts`: its store, cache folder, decode limits,
embedder, vector search and commit, and nothing else of the index."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..decode import DecodeLimits
from ..errors import ConfigError, LookalikeError
from ..paths import path_forms, resolved
from ..store import Store, WriteBatch
from ..store.base import folder_prefix
from .calibrate import DEFAULT_THRESHOLD, META_KEY, calibrate, setup_key
from .find import find_duplicates, identical_sets
from .journal import decode_path, decode_vector, encode_path, encode_row, readable
from .keep import DEFAULT_KEEP
from .move import move_groups
from .types import Calibration, DuplicateGroup, DuplicateReport, MoveReport
from .undo import undo_moves


@dataclass(frozen=True)
class IndexParts:
    """What the duplicate search needs of an index.

    Attributes:
        store: the index's store.
        cache_dir: ``<db>.cache/`` (the vector cache); ``None`` for a server store.
        limits: decode limits for the edited copies calibration embeds.
        get_embedder: the index's embedder, loaded on first call.
        vector_search: the :class:`~lookalike.vectors.VectorSearch` over the cache.
        commit: writes a :class:`~lookalike.store.WriteBatch` and keeps the cache in step.
    """

    store: Store
    cache_dir: Path | None
    limits: DecodeLimits
    get_embedder: Callable[[], Any]
    vector_search: Callable[[], Any]
    commit: Callable[[WriteBatch], None]


def _path_bytes(path: str | os.PathLike[str]) -> bytes:
    return resolved(path)  # the form the index stores paths in (#8)


def _lookup(store: Any, path: str) -> Any:
    for form in path_forms(path):
        found = store.lookup(form)
        if found is not None:
            return found
    return None


def _key(idx: IndexParts) -> str:
    return setup_key(idx.store.get_meta("setup"), idx.store.dim())


def recorded_calibration(idx: IndexParts) -> Calibration | None:
    """The index's calibration, if one was made for its current setup."""
    text = idx.store.get_meta(META_KEY)
    if not text:
        return None
    try:
        cal = Calibration.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None  # written by another version: calibrate again
    return cal if cal.setup == _key(idx) else None


def calibrate_index(
    idx: IndexParts, target_precision: float = 0.95, sample: int = 60, seed: int = 0
) -> Calibration:
    """Calibrate on the index's images, record the result in the index, return it."""
    from ..vectors import VectorCache

    if idx.cache_dir is None:
        raise ConfigError(
            "calibrating the duplicate threshold needs a SQLite index for now; "
            "pass --threshold (e.g. 0.85) on a PostgreSQL index"
        )
    embedder = idx.get_embedder()
    cache = VectorCache.open(idx.cache_dir, idx.store)
    try:
        ids = np.asarray(cache.ids)
        rows = np.flatnonzero(ids >= 0)
        rng = np.random.default_rng(seed)
        order = rng.permutation(rows)
        same: dict[int, set[int]] = {}
        for s in identical_sets(idx.store, np.sort(ids[rows])):
            for i in s.tolist():
                same[i] = set(s.tolist())

        def candidates() -> Any:
            for start in range(0, len(order), 64):
                part = np.sort(order[start : start + 64])
                vecs = cache.gather(part)
                paths = idx.store.paths_for(ids[part].tolist())
                for row, vec in zip(part.tolist(), vecs, strict=True):
                    path = paths.get(int(ids[row]))
                    if path is not None:
                        yield int(ids[row]), path, vec

        def neighbours(q: np.ndarray, exclude: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return idx.vector_search().search(q, 64, exclude=exclude)  # type: ignore[no-any-return]

        cal = calibrate(
            candidates(),
            embedder,
            neighbours,
            same_content=lambda i: same.get(i, set()),
            setup=_key(idx),
            target_precision=target_precision,
            sample=sample,
            seed=seed,
            limits=idx.limits,
            paths_of=lambda ids: idx.store.paths_for(ids),
            collection=len(rows),
        )
    finally:
        cache.close()
    idx.store.set_meta({META_KEY: json.dumps(cal.to_dict())})
    return cal


@dataclass(frozen=True)
class ThresholdChoice:
    """The duplicate threshold a search uses and where it comes from (one rule for the
    CLI, the web review and the API: :func:`duplicate_threshold`).

    Attributes:
        threshold: the cosine from which two images are copies.
        source: ``"given"`` (the caller's), ``"calibrated"`` (recorded in the index for
            its model, or calibrated just now) or ``"default"`` (no calibration possible
            or wanted: a PostgreSQL index, an empty one, or ``calibrate=False``).
        calibration: the index's calibration for its model, when there is one (also
            with a given threshold, to say what the calibrated one would be).
    """

    threshold: float
    source: str
    calibration: Calibration | None = None
    second_look: bool = True

    def sentence(self) -> str:
        """The header line of a report: the threshold used and where it came from (and,
        calibrated, what it was measured on)."""
        cal = self.calibration
        if self.source == "given":
            other = (
                f"; calibrated for this model: {_threshold(cal, self.second_look):.2f}"
                if cal
                else ""
            )
            return f"threshold {self.threshold:.2f} (given{other})"
        if self.source == "calibrated" and cal is not None:
            return f"threshold {cal.sentence(self.second_look)}"
        return f"threshold {self.threshold:.2f} (default; not calibrated for this model)"


def duplicate_threshold(
    idx: IndexParts,
    threshold: float | None = None,
    calibrate: bool | str = "auto",
    second_look: bool = True,
) -> ThresholdChoice:
    """The threshold a duplicate search on this index uses: ``threshold`` when given;
    else the calibration recorded for the index's model; else, with ``calibrate`` true or
    ``"auto"``, a calibration made now (loading the model) and recorded, so that every
    later caller (``lookalike duplicates``, the web review, the API) finds the same one;
    else :data:`DEFAULT_THRESHOLD`. A calibration recorded before the second look (#19,
    look-alikes counted as copies) is replaced the same way, and read until then. With
    the second look, the calibrated threshold is the cosine from which pairs are looked
    at; without it (``second_look=False``), the cosine-only one.

    Raises:
        ConfigError: a threshold outside (0, 1].
    """
    cal = recorded_calibration(idx)
    if threshold is not None:
        if not 0.0 < float(threshold) <= 1.0:
            raise ConfigError(f"threshold must be within (0, 1], got {threshold}")
        return ThresholdChoice(float(threshold), "given", cal, second_look)
    # Calibration searches the local vector cache; a server store (PostgreSQL) has none
    # yet, so it uses the default threshold there. Fewer than two images have no copies
    # to find: nothing to calibrate either.
    can = bool(idx.store.get_meta("setup")) and idx.store.count() > 1
    stale = cal is None or not cal.second_look
    if stale and can and idx.cache_dir is not None and calibrate in ("auto", True):
        cal = calibrate_index(idx)
    if cal is not None:
        return ThresholdChoice(_threshold(cal, second_look), "calibrated", cal, second_look)
    return ThresholdChoice(DEFAULT_THRESHOLD, "default", None, second_look)


def duplicate_report(
    idx: IndexParts,
    threshold: float | None = None,
    folders: str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None = None,
    keep: str | Sequence[str] = DEFAULT_KEEP,
    calibrate: bool | str = "auto",
    center: bool = False,
    verify: bool = True,
) -> DuplicateReport:
    """See :meth:`lookalike.Index.duplicate_report`. ``seconds`` counts a calibration
    made on the way."""
    import time

    start = time.perf_counter()
    choice = duplicate_threshold(idx, threshold, calibrate, verify)
    if isinstance(folders, str | os.PathLike):
        folders = [folders]
    wanted = [form for f in folders for form in path_forms(f)] if folders is not None else None
    report = find_duplicates(
        idx.store,
        idx.cache_dir,
        choice.threshold,
        folders=wanted,
        keep=keep,
        center=center,
        verify=verify,
        undecided_from=_threshold(choice.calibration, False),
        limits=idx.limits,
    )
    report.threshold_source = choice.source
    report.calibration = choice.calibration
    report.seconds = time.perf_counter() - start
    return report


def _threshold(cal: Calibration | None, verify: bool) -> float:
    """The calibrated threshold for the second look on or off (or the default)."""
    if cal is None:
        return DEFAULT_THRESHOLD
    if not verify and cal.threshold_unverified is not None:
        return cal.threshold_unverified
    return cal.threshold


def record_moves(idx: IndexParts, moved: list[tuple[str, str]]) -> None:
    """The index follows moved files: a move inside an indexed folder keeps the image's
    id and vector under the new path; a move out of every indexed folder forgets it."""
    roots = [folder_prefix(f) for f in idx.store.folders()]
    batch = WriteBatch()
    for src, dst in moved:
        found = _lookup(idx.store, src)
        if found is None:
            continue
        row, _ = found
        target = _path_bytes(dst)
        try:
            st = os.stat(target) if any(target.startswith(r) for r in roots) else None
        except OSError:  # gone again already: nothing to follow
            st = None
        if st is not None:
            batch.moves.append((row.id, target, st.st_size, st.st_mtime_ns))
        else:
            batch.deletes.append(row.id)
    if batch:
        idx.commit(batch)


class _IndexLink:
    """The mover's view of an index (see :class:`~lookalike.duplicates.move.IndexLink`):
    every store access under ``lock`` (the web server's library lock), nothing else."""

    def __init__(self, idx: IndexParts, lock: AbstractContextManager[Any] | None) -> None:
        self.idx = idx
        self.lock = lock if lock is not None else contextlib.nullcontext()
        self.setup = hashlib.sha256((idx.store.get_meta("setup") or "").encode()).hexdigest()

    def row(self, path: str) -> dict[str, Any] | None:
        with self.lock:
            found = _lookup(self.idx.store, path)
        if found is None:
            return None
        r, vector = found
        row = encode_row(r.size, r.mtime_ns, r.hash, vector)
        row.update(path=encode_path(os.fsdecode(r.path)), setup=self.setup[:16])
        return row

    def forget(self, path: str) -> None:
        with self.lock:
            found = _lookup(self.idx.store, path)
            if found is not None:
                self.idx.commit(WriteBatch(deletes=[found[0].id]))

    def restore(self, path: str, row: dict[str, Any]) -> None:
        if row.get("setup") != self.setup[:16]:
            return  # the index holds another model's vectors now: `lookalike index` re-embeds
        stored = os.fsencode(decode_path(row["path"])) if row.get("path") else _path_bytes(path)
        try:
            st = os.stat(path)
        except OSError:
            return
        with self.lock:
            found = self.idx.store.lookup(stored)
            if found is not None and (found[0].size, found[0].mtime_ns, found[0].hash) == (
                st.st_size,
                st.st_mtime_ns,
                row.get("hash"),
            ):
                return  # never forgotten (the crash came before) or restored already
            vec = decode_vector(row)
            upsert = (stored, st.st_size, st.st_mtime_ns, row.get("hash"), vec)
            self.idx.commit(WriteBatch(upserts=[upsert]))


def _locked(lock: AbstractContextManager[Any] | None, fn: Any, *args: Any) -> Any:
    with lock if lock is not None else contextlib.nullcontext():
        return fn(*args)


def _roots(idx: IndexParts, lock: AbstractContextManager[Any] | None) -> list[str]:
    return [os.fsdecode(f) for f in _locked(lock, idx.store.folders)]


def move_duplicates(
    idx: IndexParts,
    groups: Sequence[DuplicateGroup],
    destination: str | os.PathLike[str],
    dry_run: bool = False,
    lock: AbstractContextManager[Any] | None = None,
) -> MoveReport:
    """See :meth:`lookalike.Index.move_duplicates`.

    ``lock`` is held around each index access only (never while files are read), so a
    server's other requests go on while files move.
    """
    roots = _roots(idx, lock)
    try:
        return move_groups(
            groups, destination, roots=roots, dry_run=dry_run, index=_IndexLink(idx, lock)
        )
    except LookalikeError:
        raise
    except OSError as e:  # the destination or its journal cannot be written
        raise ConfigError(
            f"cannot move into {readable(os.fspath(destination))}: {e.strerror or e}"
        ) from None


def undo_move(
    idx: IndexParts,
    manifest: str | os.PathLike[str],
    dry_run: bool = False,
    lock: AbstractContextManager[Any] | None = None,
) -> MoveReport:
    """See :meth:`lookalike.Index.undo_duplicate_moves`."""
    try:
        return undo_moves(
            manifest,
            dry_run=dry_run,
            index=_IndexLink(idx, lock),
            on_moved=lambda moved: _locked(lock, record_moves, idx, moved),  # old manifests
        )
    except ValueError as e:  # not a manifest or journal
        raise ConfigError(str(e)) from None
    except OSError as e:  # the journal cannot be read or appended to
        raise ConfigError(
            f"cannot undo {readable(os.fspath(manifest))}: {e.strerror or e}"
        ) from None
