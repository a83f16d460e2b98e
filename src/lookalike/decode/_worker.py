"""One decode worker process: the child's main loop, and the parent's handle on it.

The child (:func:`_worker_main`) is a fresh interpreter started with ``python -c``
(:data:`_BOOT`); it imports :mod:`lookalike.decode` (numpy + Pillow) and nothing heavier,
then decodes tasks from its socket until told to stop. The parent keeps a :class:`_Worker`
per child: the process, its socket, its stderr and the tasks it holds, in order.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import IO, TYPE_CHECKING, Any

import numpy as np

from .model_input import decode_path
from .reasons import DecodeFailure, DecodeLimits
from .tasks import DecodeTask

if TYPE_CHECKING:
    from ..setup import Preprocess

_HEAVY_MODULES = ("torch", "torchvision", "timm")

# Run by each worker interpreter. The parent's sys.path arrives first, so lookalike (and a
# test's decode_fn module) import exactly as in the parent.
_BOOT = (
    "import sys\n"
    "from multiprocessing.connection import Connection\n"
    "conn = Connection(int(sys.argv[1]))\n"
    "sys.path[:] = conn.recv()\n"
    "from lookalike.decode._worker import _worker_main\n"
    "_worker_main(conn)\n"
)


DecodeFn = Callable[..., "tuple[np.ndarray | None, str]"]


def _resolve(spec: str | None) -> DecodeFn:
    if spec is None:
        return decode_path
    module, _, name = spec.partition(":")
    return getattr(importlib.import_module(module), name)  # type: ignore[no-any-return]


def _decode_one(
    fn: DecodeFn,
    pre: Preprocess,
    limits: DecodeLimits,
    draft: bool,
    task: tuple[int, bytes, int, int, frozenset[str]],
) -> tuple[int, np.ndarray | None, str | None, bool, str | None, str]:
    """Run one task; every outcome becomes ``(key, pixels, hash, reused, reason, detail)``."""
    key, path, size, mtime_ns, known = task
    try:
        pixels, digest = fn(
            path,
            pre,
            limits,
            expect_size=size,
            expect_mtime_ns=mtime_ns,
            known_hashes=known,
            draft=draft,
        )
    except DecodeFailure as e:
        return key, None, None, False, e.reason, e.detail
    except MemoryError:
        return key, None, None, False, "too-large", "out of memory while decoding"
    except Exception as e:
        return key, None, None, False, "decode-error", f"{type(e).__name__}: {e}"
    if pixels is None:
        if digest in known:
            return key, None, digest, True, None, ""
        return key, None, None, False, "decode-error", "the decoder returned no pixels"
    want = (*pre.size, 3)
    if not isinstance(pixels, np.ndarray) or pixels.dtype != np.uint8 or pixels.shape != want:
        got = getattr(pixels, "shape", None), getattr(pixels, "dtype", type(pixels).__name__)
        return key, None, None, False, "decode-error", f"decoder gave {got}, expected {want} uint8"
    return key, np.ascontiguousarray(pixels), digest, False, None, ""


# --------------------------------------------------------------------------- in the worker


def _set_memory_limit(limit: int) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    with contextlib.suppress(ValueError, OSError):  # not enforceable everywhere (macOS)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _worker_main(conn: Connection) -> None:
    """Body of a worker process: decode tasks from ``conn`` until ``None`` or EOF."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when to stop
    signal.signal(signal.SIGALRM, signal.SIG_DFL)  # the per-task timer kills the process
    try:
        from ..setup import Preprocess

        init = conn.recv()
        pre = Preprocess(**init["pre"])
        limits = DecodeLimits(
            init["max_pixels"], init["max_file_bytes"], frozenset(init["allowed_formats"])
        )
        fn = _resolve(init["decode_fn"])
        if init["memory_limit_bytes"]:
            _set_memory_limit(init["memory_limit_bytes"])
    except Exception as e:
        with contextlib.suppress(OSError):
            conn.send(("fatal", f"{type(e).__name__}: {e}"))
        return
    timeout, draft = init["timeout_s"], init["draft"]
    conn.send(("ready", os.getpid(), [m for m in _HEAVY_MODULES if m in sys.modules]))
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        if task is None:
            return
        if timeout:
            signal.setitimer(signal.ITIMER_REAL, timeout)
        try:
            out = _decode_one(fn, pre, limits, draft, task)
        finally:
            if timeout:
                signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            conn.send(("result", out))
        except OSError:  # the parent is gone
            return


# --------------------------------------------------------------------------- in the parent


class _Worker:
    """The parent's handle on one worker process and the tasks it holds, in order."""

    def __init__(self, proc: subprocess.Popen[bytes], conn: Connection, stderr: IO[bytes]):
        self.proc = proc
        self.conn = conn
        self.stderr = stderr
        self.assigned: deque[DecodeTask] = deque()
        self.ready = False
        self.started = time.monotonic()
        self.head_since = self.started
        self.timed_out = False
        self.fatal = ""

    def stderr_tail(self) -> str:
        """The most telling line the worker wrote to stderr, or ''."""
        try:
            self.stderr.seek(0, os.SEEK_END)
            end = self.stderr.tell()
            self.stderr.seek(max(0, end - 4000))
            text = self.stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""
        lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
        fatal = [ln for ln in lines if ln.startswith("Fatal Python error")]
        line = fatal[-1] if fatal else (lines[-1] if lines else "")
        return line[:200]

    def reap(self) -> int:
        """Wait for the (dying) process and return its exit status."""
        try:
            return self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()

    def dispose(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.wait(timeout=5)
        self.conn.close()
        self.stderr.close()

    @classmethod
    def start(cls, init: dict[str, Any]) -> _Worker:
        """Start a worker process and send it the parent's ``sys.path`` and ``init``."""
        parent_sock, child_sock = socket.socketpair()
        stderr = tempfile.TemporaryFile()  # noqa: SIM115  (closed by _Worker.dispose)
        env = dict(os.environ)
        # Workers need no BLAS or OpenMP threads (each reserves address space under RLIMIT_AS).
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        try:
            proc = subprocess.Popen(
                [sys.executable, "-X", "faulthandler", "-c", _BOOT, str(child_sock.fileno())],
                pass_fds=(child_sock.fileno(),),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env=env,
                start_new_session=True,  # Ctrl-C reaches the parent only; it stops workers
            )
        except BaseException:
            parent_sock.close()
            stderr.close()
            raise
        finally:
            child_sock.close()
        conn = Connection(parent_sock.detach())
        with contextlib.suppress(OSError):
            conn.send(list(sys.path))
            conn.send(init)
        return cls(proc, conn, stderr)
