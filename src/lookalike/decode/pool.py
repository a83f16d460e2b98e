"""Decode many files in worker processes: each failure is one result, never a stuck run.

Design, and why:

- Workers are fresh interpreters (``python -c``, the equivalent of multiprocessing's
  *spawn*), never ``fork`` copies of a parent that holds torch threads, and they do not
  re-import the parent's ``__main__`` (which, for the CLI, would import the model code).
  They import only :mod:`lookalike.decode` (numpy + Pillow) and start in ~0.2 s.
- Each worker has its own socket pair and a short queue of tasks (at most
  :data:`_PREFETCH`); results come back in that worker's order, so when a worker dies the
  parent knows exactly which task it held (the head of its queue): that task gets one
  ``"decoder-crashed"`` or ``"decode-timeout"`` result, the rest are re-queued, a new worker
  starts and the run goes on.
- Time limit: the worker arms a kernel timer (``setitimer``) around each decode whose
  ``SIGALRM`` kills it even inside C code; the parent also kills a worker whose task is
  clearly overdue (in case the signal was blocked).
- Memory limit: ``RLIMIT_AS`` in the worker; Pillow's ``MemoryError`` becomes
  ``"too-large"``, and a kill by the kernel's OOM killer is a crash like any other.
- Bounded: tasks are pulled lazily from the input iterable and at most ``max_in_flight``
  are dispatched but not yet yielded, so a million tasks use the memory of a few.
- Pixels travel pickled over the socket (150 KB for 224x224x3): a fraction of the decode
  time, so shared memory would not pay for its complexity.

POSIX only (Linux, macOS). ``workers=0`` decodes in the calling process (no time or memory
limit), for tests and debugging.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import asdict
from multiprocessing.connection import wait
from typing import TYPE_CHECKING, Any

from .._cpu import usable_cores
from ..errors import ConfigError
from ._worker import _decode_one, _resolve, _Worker
from .model_input import check_preprocess
from .reasons import DecodeLimits
from .tasks import DecodeResult, DecodeTask, _as_tuple, _result

if TYPE_CHECKING:
    from ..setup import Preprocess

_PREFETCH = 2
"""Tasks queued per worker: one decoding, one waiting, so a worker never idles on the parent."""

_STARTUP_TIMEOUT_S = 60.0
_MAX_STARTUP_FAILURES = 3


def _default_workers() -> int:
    # Decoding and resizing are CPU-bound and the embedding model mostly waits on the GPU
    # (or runs in its own threads), so one worker per usable core keeps the model fed.
    return usable_cores()


class DecodePool:
    """Decode :class:`DecodeTask` s in worker processes with per-file time and memory limits.

    Every task yields exactly one :class:`DecodeResult`; a worker that crashes, is killed
    for memory or exceeds ``timeout_s`` costs only the file it was decoding.

    Args:
        pre: the model's preprocessing (pixels come back at ``pre.size``).
        limits: pixel, file-size and format limits.
        workers: worker processes; ``None``: one per usable CPU core; ``0``: decode in the
            calling process (no time or memory limit; for tests and debugging, and always
            on non-POSIX systems).
        timeout_s: wall-clock seconds one file may take (read + decode + resize); ``None``:
            no limit.
        memory_limit_bytes: address-space limit of each worker (``RLIMIT_AS``); ``None``:
            none.
        decode_fn: ``"module:function"`` used instead of
            :func:`~lookalike.decode.decode_path` (same arguments and keywords); the
            module is imported in each worker with the parent's ``sys.path``. For tests.
        draft: decode JPEGs at reduced DCT scale (never below what ``pre`` needs).

    Raises:
        ConfigError: a bad option value; from :meth:`map`, workers that cannot start.

    Example:
        >>> def task(key, path):
        ...     st = os.stat(path)
        ...     return DecodeTask(key, path, st.st_size, st.st_mtime_ns)
        >>> paths = [b"a.jpg", b"b.png"]
        >>> with DecodePool(Preprocess(), workers=2) as pool:  # doctest: +SKIP
        ...     for res in pool.map(task(i, p) for i, p in enumerate(paths)):
        ...         print(res.key, res.reason or res.pixels.shape)
        0 (224, 224, 3)
        1 truncated
    """

    def __init__(
        self,
        pre: Preprocess,
        limits: DecodeLimits = DecodeLimits(),  # noqa: B008  (frozen: safe as a default)
        workers: int | None = None,
        timeout_s: float | None = 60.0,
        memory_limit_bytes: int | None = 4 << 30,
        decode_fn: str | None = None,
        *,
        draft: bool = True,
    ) -> None:
        check_preprocess(pre)
        if workers is None:
            workers = _default_workers()
        if os.name != "posix":
            workers = 0  # worker processes rely on POSIX fds, signals and rlimits
        if workers < 0:
            raise ConfigError("workers must be 0 or more")
        if timeout_s is not None and not timeout_s > 0:
            raise ConfigError("the decode timeout must be positive")
        if memory_limit_bytes is not None and memory_limit_bytes < 1:
            raise ConfigError("the memory limit must be positive")
        if decode_fn is not None and ":" not in decode_fn:
            raise ConfigError(f"decode_fn must be 'module:function', got {decode_fn!r}")
        self.pre = pre
        self.limits = limits
        self.workers = workers
        self.timeout_s = timeout_s
        self.memory_limit_bytes = memory_limit_bytes
        self.decode_fn = decode_fn
        self.draft = draft
        self.heavy_modules_in_workers: set[str] = set()
        """Heavy modules (torch, torchvision, timm) found loaded in a worker: should stay empty."""
        self.restarts = 0
        """Workers replaced after a crash or timeout."""
        self._pool: list[_Worker] = []
        self._closed = False
        self._mapping = False
        self._startup_failures = 0

    # -- context manager

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.close()

    def close(self) -> None:
        """Stop the workers (politely, then by force after a second). Idempotent."""
        if self._closed:
            return
        self._closed = True
        pool, self._pool = self._pool, []
        for w in pool:
            with contextlib.suppress(OSError):
                w.conn.send(None)
        deadline = time.monotonic() + 1.0
        for w in pool:
            with contextlib.suppress(subprocess.TimeoutExpired):
                w.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            w.dispose()

    # -- mapping

    def map(
        self, tasks: Iterable[DecodeTask], max_in_flight: int | None = None
    ) -> Iterator[DecodeResult]:
        """Decode ``tasks``, yielding one result per task as each completes (any order).

        Args:
            tasks: read lazily, so it may be a generator over millions of files.
            max_in_flight: most tasks dispatched but not yet yielded; ``None``: two per
                worker.

        Returns:
            An iterator of :class:`DecodeResult`, one per task. One map at a time.

        Raises:
            ConfigError: (while iterating) worker processes cannot start at all.
        """
        if self._closed:
            raise RuntimeError("the decode pool is closed")
        if self._mapping:
            raise RuntimeError("the decode pool is already mapping")
        if max_in_flight is not None and max_in_flight < 1:
            raise ConfigError("max_in_flight must be at least 1")
        if self.workers == 0:
            return self._map_inline(tasks)
        return self._map_workers(tasks, max_in_flight or 2 * self.workers)

    def _map_inline(self, tasks: Iterable[DecodeTask]) -> Iterator[DecodeResult]:
        fn = _resolve(self.decode_fn)
        for task in tasks:
            yield _result(task, _decode_one(fn, self.pre, self.limits, self.draft, _as_tuple(task)))

    def _map_workers(self, tasks: Iterable[DecodeTask], limit: int) -> Iterator[DecodeResult]:
        self._mapping = True
        source = iter(tasks)
        requeued: deque[DecodeTask] = deque()
        exhausted = False
        per_worker = max(1, min(_PREFETCH, -(-limit // self.workers)))
        try:
            while len(self._pool) < self.workers:
                self._pool.append(self._spawn())
            while not self._closed:
                in_flight = sum(len(w.assigned) for w in self._pool)
                for w in self._pool:
                    while len(w.assigned) < per_worker and in_flight < limit:
                        if requeued:
                            task = requeued.popleft()
                        elif exhausted:
                            break
                        else:
                            try:
                                task = next(source)
                            except StopIteration:
                                exhausted = True
                                break
                        self._dispatch(w, task)
                        in_flight += 1
                if in_flight == 0 and exhausted and not requeued:
                    return
                yield from self._step(requeued)
        finally:
            self._mapping = False
            if not self._closed:
                # Stopped early: workers still hold tasks whose results nobody will read.
                for w in [w for w in self._pool if w.assigned]:
                    self._pool.remove(w)
                    w.dispose()

    def _dispatch(self, w: _Worker, task: DecodeTask) -> None:
        if not w.assigned:
            w.head_since = time.monotonic()
        w.assigned.append(task)
        # A dead worker's socket fails here; its death is handled when it reads as EOF.
        with contextlib.suppress(OSError):
            w.conn.send(_as_tuple(task))

    def _step(self, requeued: deque[DecodeTask]) -> list[DecodeResult]:
        """Wait for worker messages or a deadline; return the results that arrived."""
        watched = [w for w in self._pool if w.assigned or not w.ready]
        if not watched:
            return []
        now = time.monotonic()
        deadlines = [self._deadline(w) for w in watched]
        soonest = min((d for d in deadlines if d is not None), default=None)
        timeout = None if soonest is None else max(0.0, soonest - now) + 0.01
        try:
            ready = wait([w.conn for w in watched], timeout)
        except (OSError, ValueError):
            if self._closed:  # closed from another thread while waiting
                return []
            raise
        results: list[DecodeResult] = []
        by_conn = {id(w.conn): w for w in watched}
        for conn in ready:
            results += self._receive(by_conn[id(conn)], requeued)
        now = time.monotonic()
        for w, deadline in zip(watched, deadlines, strict=True):
            if id(w.conn) in {id(c) for c in ready} or deadline is None or now < deadline:
                continue
            if w in self._pool:  # overdue: stop it; its death is reported as a timeout
                w.timed_out = w.ready
                w.proc.kill()
                results += self._receive(w, requeued)
        return results

    def _deadline(self, w: _Worker) -> float | None:
        if not w.ready:
            return w.started + max(_STARTUP_TIMEOUT_S, self.timeout_s or 0.0)
        if self.timeout_s is None or not w.assigned:
            return None
        # The worker's own timer fires at timeout_s; this is the backstop.
        return w.head_since + self.timeout_s * 1.25 + 1.0

    def _receive(self, w: _Worker, requeued: deque[DecodeTask]) -> list[DecodeResult]:
        """Read every complete message from ``w``; on EOF, handle its death."""
        results: list[DecodeResult] = []
        try:
            while w.conn.poll():
                msg = w.conn.recv()
                if msg[0] == "ready":
                    w.ready = True
                    w.head_since = time.monotonic()
                    self._startup_failures = 0
                    self.heavy_modules_in_workers.update(msg[2])
                elif msg[0] == "fatal":
                    w.fatal = msg[1]
                else:
                    out = msg[1]
                    task = w.assigned.popleft()
                    if out[0] != task.key:
                        raise RuntimeError(f"decode worker answered {out[0]!r} for {task.key!r}")
                    w.head_since = time.monotonic()
                    results.append(_result(task, out))
        except (EOFError, OSError):
            death = self._on_death(w, requeued)
            if death is not None:
                results.append(death)
        return results

    def _on_death(self, w: _Worker, requeued: deque[DecodeTask]) -> DecodeResult | None:
        if self._closed or w not in self._pool:  # close() (maybe from another thread) reaps
            return None
        rc = w.reap()
        tail = w.fatal or w.stderr_tail()
        self._pool.remove(w)
        w.dispose()
        head = None
        if w.ready and w.assigned:
            head = w.assigned.popleft()
        requeued.extendleft(reversed(w.assigned))
        w.assigned.clear()
        if not w.ready:
            self._startup_failures += 1
            if self._startup_failures >= _MAX_STARTUP_FAILURES:
                raise ConfigError(
                    "decode worker processes cannot start"
                    + (f" ({tail})" if tail else f" (exit status {rc})")
                    + "; try workers=0 (--workers 0) or a larger memory limit"
                )
        self._pool.append(self._spawn())
        self.restarts += 1
        if head is None:
            return None
        if w.timed_out or rc == -signal.SIGALRM:
            reason = "decode-timeout"
            detail = f"decoding took longer than {self.timeout_s:g} s; the worker was stopped"
        else:
            reason = "decoder-crashed"
            if rc < 0:
                name = signal.Signals(-rc).name if -rc in signal.valid_signals() else str(-rc)
                detail = f"the decoder process was killed by {name}"
                if rc == -signal.SIGKILL:
                    detail += " (perhaps out of memory)"
            else:
                detail = f"the decoder process exited with status {rc}"
            if tail:
                detail += f": {tail}"
        return DecodeResult(head.key, head.path, None, None, False, reason, detail)

    def _spawn(self) -> _Worker:
        init: dict[str, Any] = {
            "pre": asdict(self.pre),
            "max_pixels": self.limits.max_pixels,
            "max_file_bytes": self.limits.max_file_bytes,
            "allowed_formats": sorted(self.limits.allowed_formats),
            "decode_fn": self.decode_fn,
            "memory_limit_bytes": self.memory_limit_bytes,
            "timeout_s": self.timeout_s,
            "draft": self.draft,
        }
        return _Worker.start(init)
