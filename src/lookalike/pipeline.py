"""Bring the store up to date with folders: scan, diff, decode, embed, commit.

Data flows one way: paths -> decoded pixels (worker processes) -> vectors (the embedder,
in this process) -> one SQLite transaction per batch. A kill at any moment loses at most
the batch in flight; the next run sees those files as new and resumes.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .decode import TRANSIENT_REASONS, DecodeLimits, DecodePool, DecodeResult, DecodeTask
from .errors import NothingIndexedError, SourceUnavailableError
from .scan import ScanResult, resolve_root, scan
from .setup import Preprocess
from .store.base import FileRow, Store, WriteBatch, WriteResult, folder_prefix
from .types import FailedFile, IndexReport

COMMIT_EVERY_RESULTS = 256  # commit failures/moves at least this often when nothing embeds


@dataclass(frozen=True)
class Progress:
    """Passed to ``on_progress`` after each commit: ``done`` of ``total`` files to process."""

    done: int
    total: int
    embedded: int
    failed: int
    seconds: float


@dataclass
class _Plan:
    tasks: list[tuple[int, bytes, int, int, FileRow | None]] = field(default_factory=list)
    gone: dict[int, FileRow] = field(default_factory=dict)
    clear_failures: list[bytes] = field(default_factory=list)
    failures: list[tuple[bytes, int, int, str, str]] = field(default_factory=list)
    # Reuse sources whose row this run may re-embed or delete (e.g. the original renamed,
    # an edit saved under its old name): their vector as planned, read before it changes.
    shared: set[int] = field(default_factory=set)
    saved: dict[int, np.ndarray] = field(default_factory=dict)

    def preserve(self, store: Store, image_id: int) -> None:
        """Keep the stored vector of ``image_id`` before this run changes or deletes it, if
        another file may still reuse it (called before the change enters a batch)."""
        if image_id in self.shared and image_id not in self.saved:
            self.saved.update(store.vectors_for([image_id]))


def _decoding(pre: Preprocess) -> tuple:
    """What of a preprocessing the decoded pixels depend on (not mean and std)."""
    return (pre.size, pre.mode, pre.crop_pct, pre.interpolation)


def _under_any(path: bytes, folders: list[bytes]) -> bool:
    return any(path.startswith(folder_prefix(f)) for f in folders)


def _plan(store: Store, scans: list[ScanResult], report: IndexReport) -> _Plan:
    plan = _Plan()
    # Overlapping roots (a and a/b) list some files twice: each path is planned once (#8).
    handled: set[bytes] = set()
    gone_paths: dict[bytes, int] = {}
    stale_failures: list[bytes] = []
    for result in scans:
        existing = store.files_under(result.root)
        failures = store.failures_under(result.root)
        if result.alias is not None:  # rows stored under the unresolved folder (before #8)
            for path, old_row in store.files_under(result.alias).items():
                existing.setdefault(path, old_row)
            for path, failure in store.failures_under(result.alias).items():
                failures.setdefault(path, failure)
        if not result.files and not result.problems and existing:
            raise SourceUnavailableError(
                f"folder {os.fsdecode(result.root)} is empty but the index holds "
                f"{len(existing)} images from it; if its disk is mounted and the images are "
                f"really gone, run `lookalike remove {os.fsdecode(result.root)}`"
            )
        seen: set[bytes] = set()
        for f in result.files:
            seen.add(f.path)
            row = existing.pop(f.path, None)
            if f.path in handled:
                continue
            handled.add(f.path)
            if f.path in gone_paths:  # an earlier root skipped it (hidden): it is here
                plan.gone.pop(gone_paths.pop(f.path), None)
            if row is not None and row.size == f.size and row.mtime_ns == f.mtime_ns:
                report.unchanged += 1
                if f.path in failures:
                    plan.clear_failures.append(f.path)
                continue
            old = failures.get(f.path)
            if (
                row is None
                and old is not None
                and (old.size, old.mtime_ns) == (f.size, f.mtime_ns)
                and old.reason not in TRANSIENT_REASONS
            ):
                # Failed before and untouched since: report again, do not retry.
                report.failed.append(FailedFile(os.fsdecode(f.path), old.reason, old.detail))
                continue
            plan.tasks.append((len(plan.tasks), f.path, f.size, f.mtime_ns, row))
        for p in result.problems:
            seen.add(p.path)
            if p.path in handled:
                continue
            handled.add(p.path)
            report.failed.append(FailedFile(os.fsdecode(p.path), p.reason, p.detail))
            plan.failures.append((p.path, 0, 0, p.reason, p.detail))
        for path, row in existing.items():
            if path not in handled and not _under_any(path, result.unseen):
                plan.gone[row.id] = row
                gone_paths[path] = row.id
        stale_failures.extend(p for p in failures if p not in seen)
    plan.clear_failures.extend(p for p in dict.fromkeys(stale_failures) if p not in handled)
    return plan


class _Prefetch:
    """Drain the decode pool from a thread, so workers never wait while the model runs.

    The thread starts at construction: decoding begins while the model is still loading.
    """

    _DONE = object()

    def __init__(self, results: Iterable[DecodeResult], depth: int) -> None:
        self._q: queue.Queue = queue.Queue(maxsize=depth)
        self._stop = threading.Event()
        self._results = results
        self._thread = threading.Thread(target=self._pump, name="lookalike-decode", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        try:
            for r in self._results:
                while not self._stop.is_set():
                    try:
                        self._q.put(r, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if self._stop.is_set():
                    return
            self._q.put(self._DONE)
        except BaseException as e:  # re-raised in the consumer
            self._q.put(e)

    def __iter__(self) -> Iterator[DecodeResult]:
        while True:
            item = self._q.get()
            if item is self._DONE:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def run_update(
    store: Store,
    folders: list[str | os.PathLike[str] | bytes],
    *,
    get_embedder: Callable[[], object],
    preprocess: Preprocess | None = None,
    decode_limits: DecodeLimits,
    workers: int | None,
    on_commit: Callable[[WriteResult], None],
    commit_guard: Callable[[], AbstractContextManager[object]] | None = None,
    on_progress: Callable[[Progress], None] | None = None,
    follow_links: bool = False,
    include_hidden: bool = False,
    engine: Any = None,
) -> IndexReport:
    """Scan ``folders`` and make the store match them. See :meth:`lookalike.Index.update`.

    ``preprocess`` is the preprocessing the model is expected to have (the index's recorded
    one, or a new index's remembered one): decoding then starts in the workers while
    ``get_embedder()`` loads the model. If the loaded model's differs, decoding starts over.
    ``commit_guard()`` is entered around each store commit and its ``on_commit``.

    ``engine`` (:class:`lookalike.engine.Engine`, e.g. Ray) decodes and embeds the planned
    files elsewhere instead; its results are committed here exactly as local ones.
    """
    t0 = time.perf_counter()
    report = IndexReport()
    # Every folder is checked before anything is written: a missing one changes nothing.
    # The same folder given twice (``d`` and ``d/``, or through a link) is scanned once.
    roots: dict[bytes, str | os.PathLike[str] | bytes] = {}
    for folder in folders:
        roots.setdefault(resolve_root(folder), folder)
    scans = [
        scan(f, follow_links=follow_links, include_hidden=include_hidden) for f in roots.values()
    ]
    store.add_folders([s.root for s in scans])
    plan = _plan(store, scans, report)
    total = len(plan.tasks)
    batch = WriteBatch(failures=list(plan.failures), clear_failures=list(plan.clear_failures))

    def commit() -> None:
        nonlocal batch
        if batch:
            with commit_guard() if commit_guard is not None else nullcontext():
                on_commit(store.write(batch))
        batch = WriteBatch()

    if plan.tasks:
        embedder: Any = None
        if preprocess is None:
            embedder = get_embedder()
            preprocess = embedder.setup.preprocess
        sizes = [t[2] for t in plan.tasks if t[4] is None]
        by_size = store.hashes_for_sizes(sizes) if sizes else {}
        known: dict[int, dict[str, int]] = {}
        decode_tasks = []
        for key, path, size, mtime_ns, row in plan.tasks:
            candidates = dict(by_size.get(size, {})) if row is None else {}
            if row is not None and row.hash:
                candidates[row.hash] = row.id  # touched, not changed: keep the vector
            known[key] = candidates
            if row is None:
                plan.shared.update(candidates.values())
            decode_tasks.append(DecodeTask(key, path, size, mtime_ns, frozenset(candidates)))
        pending: list[tuple[tuple, DecodeResult]] = []
        done = 0
        since_commit = 0

        def flush(given: list[np.ndarray] | None = None) -> None:
            nonlocal pending
            if not pending:
                return
            te = time.perf_counter()
            vectors = given  # embedded by the engine's workers, else here:
            if vectors is None:
                vectors = embedder.embed_pixels(
                    np.stack([r.pixels for _, r in pending if r.pixels is not None])
                )
                report.embed_seconds += time.perf_counter() - te
            for (task, res), vec in zip(pending, vectors, strict=True):
                _, path, size, mtime_ns, row = task
                if not np.all(np.isfinite(vec)):
                    _fail(task, "bad-vector", "the model gave a non-finite or zero vector")
                    continue
                if row is not None:
                    plan.preserve(store, row.id)
                batch.upserts.append((path, size, mtime_ns, res.hash, vec))
                batch.clear_failures.append(path)
                report.embedded += 1
                if row is None:
                    report.added += 1
                else:
                    report.updated += 1
            pending = []

        def _fail(task: tuple, reason: str, detail: str) -> None:
            _, path, size, mtime_ns, row = task
            report.failed.append(FailedFile(os.fsdecode(path), reason, detail))
            batch.failures.append((path, size, mtime_ns, reason, detail))
            if row is not None and reason not in TRANSIENT_REASONS:
                plan.preserve(store, row.id)
                batch.deletes.append(row.id)  # its vector no longer describes the file
                report.removed += 1

        tasks_by_key = {t[0]: t for t in plan.tasks}
        te = time.perf_counter()
        for results in engine.run(decode_tasks, get_embedder) if engine is not None else ():
            # The engine's batches: each file decoded and embedded on its workers.
            given = []
            for res, vec in results:
                done += 1
                task = tasks_by_key[res.key]
                if res.reason is not None:
                    _fail(task, res.reason, res.detail)
                elif res.reused and res.hash is not None:
                    _reuse(store, batch, report, plan, task, known[res.key].get(res.hash), res.hash)
                else:
                    pending.append((task, res))
                    given.append(vec)
            flush(given)
            commit()
            report.embed_seconds = time.perf_counter() - te  # the cluster's wall time
            if on_progress:
                elapsed = time.perf_counter() - t0
                on_progress(Progress(done, total, report.embedded, len(report.failed), elapsed))
        depth = 128
        while engine is None:  # the local engine: decode pool here, model in this process
            with DecodePool(preprocess, decode_limits, workers=workers) as pool:
                prefetch = _Prefetch(pool.map(decode_tasks, max_in_flight=depth), depth)
                try:
                    if embedder is None:
                        embedder = get_embedder()  # overlaps with decoding in the workers
                    if _decoding(embedder.setup.preprocess) != _decoding(preprocess):
                        # The guess (a new index's remembered setup) was stale: nothing was
                        # consumed yet, so decode again with the model's preprocessing.
                        preprocess = embedder.setup.preprocess
                        continue
                    batch_size = embedder.batch_size
                    for res in prefetch:
                        task = tasks_by_key[res.key]
                        done += 1
                        since_commit += 1
                        if res.reason is not None:
                            _fail(task, res.reason, res.detail)
                        elif res.reused and res.hash is not None:
                            source = known[res.key].get(res.hash)
                            _reuse(store, batch, report, plan, task, source, res.hash)
                        else:
                            pending.append((task, res))
                            if len(pending) < batch_size and since_commit < COMMIT_EVERY_RESULTS:
                                continue
                        if len(pending) >= batch_size or since_commit >= COMMIT_EVERY_RESULTS:
                            flush()
                            commit()
                            since_commit = 0
                            if on_progress:
                                elapsed = time.perf_counter() - t0
                                on_progress(
                                    Progress(
                                        done, total, report.embedded, len(report.failed), elapsed
                                    )
                                )
                finally:
                    prefetch.close()
                flush()
            break
    batch.deletes.extend(plan.gone)
    report.removed += len(plan.gone)
    commit()
    report.seconds = time.perf_counter() - t0
    if report.embed_seconds > 0:
        report.images_per_second = report.embedded / report.embed_seconds
    if on_progress:
        on_progress(Progress(total, total, report.embedded, len(report.failed), report.seconds))
    succeeded = report.added + report.updated + report.unchanged
    if total and not succeeded and report.failed:
        raise NothingIndexedError(
            f"none of the {len(report.failed)} image files could be indexed "
            f"(first: {report.failed[0].path}: {report.failed[0].reason})",
            report,
        )
    return report


def _reuse(
    store: Store,
    batch: WriteBatch,
    report: IndexReport,
    plan: _Plan,
    task: tuple,
    source: int | None,
    content_hash: str,
) -> None:
    """A file whose content hash matches a stored image: reuse that vector, embed nothing."""
    _, path, size, mtime_ns, row = task
    report.reused += 1
    batch.clear_failures.append(path)
    if row is not None and source == row.id:  # touched or rewritten with the same bytes
        batch.moves.append((row.id, path, size, mtime_ns))
        report.updated += 1
        return
    report.added += 1
    if row is not None:  # its row is replaced or gives way to the move below
        plan.preserve(store, row.id)
    if source is not None and source in plan.gone:  # renamed or moved: keep id and vector
        plan.gone.pop(source)
        batch.moves.append((source, path, size, mtime_ns))
        report.removed += 1
        return
    # The source's vector as it was when its hash matched: if this run re-embedded or
    # deleted the source since, the copy ``preserve`` kept (#8), never its new vector.
    vectors: dict[int, np.ndarray] = {}
    if source is not None:
        saved = plan.saved.get(source)
        vectors = {source: saved} if saved is not None else store.vectors_for([source])
    if source in vectors:  # an identical copy of an image still in place
        batch.upserts.append((path, size, mtime_ns, content_hash, vectors[source]))
    else:  # vanished between planning and now: nothing to copy; next run embeds it
        report.added -= 1
        report.failed.append(FailedFile(os.fsdecode(path), "changed", "retry on the next run"))
