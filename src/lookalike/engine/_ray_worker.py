"""What runs inside a Ray actor: lookalike's own decoder and embedder, one batch per call.

:class:`EmbedActor` is the callable class handed to ``Dataset.map_batches``. Ray builds it
once per actor; it builds the embedder of the index's :class:`~lookalike.setup.Setup`
(:func:`build_embedder`) and a :class:`~lookalike.decode.DecodePool`, so a file that
crashes or hangs the decoder costs that file (``decoder-crashed``, ``decode-timeout``), as
in a local run, never the actor. A batch in is the manifest's columns (``key``, ``path``,
``size``, ``mtime_ns``, ``known``); a batch out has one row per file (see
:data:`OUT_COLUMNS`). Nothing here writes to the index: the driver commits.

Problems that make every result wrong (the model cannot be built here, the files cannot be
read from this node) are not raised, which would have Ray restart the actor forever: they
come back in-band as a row with ``reason`` :data:`FATAL` and the driver stops the run with
that message.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from dataclasses import replace
from typing import Any

import numpy as np

FATAL = "__fatal__"
"""``reason`` of a row that reports a problem of the worker, not of a file."""

OUT_COLUMNS = ("key", "hash", "reused", "reason", "detail", "vector", "busy", "pid")
"""Output columns: ``key`` int64; ``hash``, ``reason``, ``detail`` str (``""`` for none);
``reused`` bool; ``vector`` float32 ``(n, dim)``, NaN rows where nothing was embedded;
``busy`` float64, this batch's worker seconds divided among its rows; ``pid`` int64, the
actor's process (for diagnostics)."""


def _as_setup(embedder: Any, setup: Any) -> Any:
    """Check that the worker's embedder is the index's setup (weights named as the driver).

    A hub checkpoint sent as a file is fingerprinted by its content here; the driver named
    it by its hub id, which is what the index records.
    """
    got = embedder.setup
    if got.weights != setup.weights and setup.weights.startswith("hub:"):
        got = replace(got, weights=setup.weights)
    problems = setup.differences(got)
    if problems:
        from ..errors import ModelError

        raise ModelError(f"the worker's model differs from the index's: {'; '.join(problems)}")
    embedder.setup = setup
    return embedder


def build_embedder(setup: Any, opts: Any, device: str, weights: Any = None) -> Any:
    """The embedder of ``setup`` on this worker, built as the driver builds its own.

    CPU: the compiled copy in this node's model cache (``$LOOKALIKE_CACHE``; on one machine
    that is the driver's, so the very model the driver saved), else built with timm from
    the weights and saved there for the node's next actor. GPU: built with timm on
    ``device``.

    Args:
        setup: the index's recorded setup.
        opts: the driver's effective options (backend forced to the driver's).
        device: ``"cpu"`` or ``"cuda"``.
        weights: ``(file name, fetch)``: ``fetch()`` gives the weights file's bytes (from
            Ray's object store, only when a model must be built); ``None``: the weights
            load as on the driver (hub cache, installed package).
    """
    from ..embed import load_embedder
    from ..embed.runtime.cache import models_root
    from ..embed.runtime.compiled import load_compiled, save_compiled

    root = models_root()
    if device == "cpu":
        # The entry's key pins the setup (weights fingerprint included): no file needed.
        found = load_compiled(root, setup, replace(opts, weights=None, device="cpu"))
        if found is not None:
            return found
    if weights is not None:
        folder = tempfile.mkdtemp(prefix="lookalike-weights-")
        path = os.path.join(folder, os.path.basename(weights[0]) or "weights")
        with open(path, "wb") as f:
            f.write(weights[1]())
        opts = replace(opts, weights=path)
    opts = replace(opts, device=device)
    if device == "cpu":
        from ..embed.runtime.compiled import choose_backend

        if choose_backend(opts) == "openvino":  # converted from fp32 in any case
            extra = {**opts.extra, "jit": False}
            live = load_embedder(replace(opts, precision="fp32", extra=extra))
            if save_compiled(root, _as_setup(live, setup), opts):
                found = load_compiled(root, setup, opts)
                if found is not None:
                    return found
        live = _as_setup(load_embedder(opts), setup)
        if save_compiled(root, live, opts):
            return load_compiled(root, setup, opts) or live
        return live
    return _as_setup(load_embedder(opts), setup)


class EmbedActor:
    """The ``map_batches`` callable class: decode + embed one batch of the manifest.

    Args:
        recipe: from the driver (``RayEngine._recipe``): the setup and options as
            JSON-able values, decode limits, decode workers, the weights (a one-element
            list holding an ``ObjectRef``, so Ray does not fetch it unasked), the file
            every worker must be able to read, lookalike's version.
    """

    def __init__(self, recipe: dict[str, Any]) -> None:
        self._fatal: tuple[str, str] | None = None
        self._pool: Any = None
        self._embedder: Any = None
        try:
            self._start(recipe)
        except Exception as e:  # reported in-band: see the module docstring
            kind = "model" if self._fatal is None else self._fatal[0]
            self._fatal = (kind, f"{type(e).__name__}: {e}")

    def _start(self, recipe: dict[str, Any]) -> None:
        import lookalike

        from .._cpu import usable_cores
        from ..decode import DecodeLimits, DecodePool
        from ..setup import EmbedderOptions, Setup

        if recipe["version"] != lookalike.__version__:
            self._fatal = (
                "model",
                f"lookalike {lookalike.__version__} on this worker, {recipe['version']} on the "
                "driver; install the same version everywhere",
            )
            return
        probe = recipe["probe"]
        if probe is not None:
            try:  # non-blocking: a FIFO swapped in for the file cannot hang the actor
                fd = os.open(probe, os.O_RDONLY | os.O_NONBLOCK)
                try:
                    os.read(fd, 1)
                finally:
                    os.close(fd)
            except OSError as e:
                self._fatal = ("unreadable", f"{os.fsdecode(probe)}: {e.strerror or e}")
                return
        setup = Setup.from_json(recipe["setup"])
        opts = EmbedderOptions(**recipe["options"])
        import ray

        ref = recipe["weights"]
        weights = (recipe["weights_name"], lambda: ray.get(ref[0])) if ref else None

        device = "cuda" if ray.get_gpu_ids() else "cpu"
        self._embedder = build_embedder(setup, opts, device, weights)
        cores = max(1, usable_cores() // max(1, int(recipe["actors_per_node"])))
        if "torch" in sys.modules:  # Ray sets OMP_NUM_THREADS=1 for fractional-CPU actors
            sys.modules["torch"].set_num_threads(cores)
        limits = DecodeLimits(**recipe["limits"])
        workers = recipe["workers"] if recipe["workers"] is not None else cores
        self._pool = DecodePool(setup.preprocess, limits, workers=workers)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Decode and embed one batch; one output row per input row, in any order."""
        t0 = time.perf_counter()
        n = len(batch["key"])
        keys = batch["key"].astype(np.int64)
        if self._fatal is not None:
            return _rows(
                keys,
                reason=[f"{FATAL}:{self._fatal[0]}"] * n,
                detail=[self._fatal[1]] * n,
                dim=1,
                busy=0.0,
            )
        from ..decode import DecodeTask
        from ..pipeline import _Prefetch

        tasks = [
            DecodeTask(int(k), bytes(p), int(s), int(m), frozenset(str(h) for h in known))
            for k, p, s, m, known in zip(
                keys, batch["path"], batch["size"], batch["mtime_ns"], batch["known"], strict=True
            )
        ]
        dim = self._embedder.setup.dim
        out_keys, hashes, reused, reasons, details = [], [], [], [], []
        vectors: list[np.ndarray] = []
        pending: list[tuple[int, np.ndarray]] = []
        nan = np.full(dim, np.nan, np.float32)

        def embed() -> None:
            got = self._embedder.embed_pixels(np.stack([p for _, p in pending]))
            for (row, _), vec in zip(pending, got, strict=True):
                vectors[row] = np.asarray(vec, np.float32)
            pending.clear()

        # Decoding goes on in the pool's processes while the model runs here.
        prefetch = _Prefetch(self._pool.map(tasks, max_in_flight=len(tasks)), len(tasks))
        try:
            for res in prefetch:
                out_keys.append(res.key)
                hashes.append(res.hash or "")
                reused.append(bool(res.reused))
                reasons.append(res.reason or "")
                details.append(res.detail or "")
                vectors.append(nan)
                if res.pixels is not None:
                    pending.append((len(vectors) - 1, res.pixels))
                    if len(pending) >= self._embedder.batch_size:
                        embed()
        finally:
            prefetch.close()
        if pending:
            embed()
        busy = (time.perf_counter() - t0) / max(1, n)
        return {
            "key": np.asarray(out_keys, np.int64),
            "hash": np.asarray(hashes, object),
            "reused": np.asarray(reused, bool),
            "reason": np.asarray(reasons, object),
            "detail": np.asarray(details, object),
            "vector": np.stack(vectors) if vectors else np.empty((0, dim), np.float32),
            "busy": np.full(len(out_keys), busy),
            "pid": np.full(len(out_keys), os.getpid(), np.int64),
        }

    def __del__(self) -> None:
        if self._pool is not None:
            self._pool.close()


def _rows(
    keys: np.ndarray, *, reason: list[str], detail: list[str], dim: int, busy: float
) -> dict[str, np.ndarray]:
    n = len(keys)
    return {
        "key": keys,
        "hash": np.asarray([""] * n, object),
        "reused": np.zeros(n, bool),
        "reason": np.asarray(reason, object),
        "detail": np.asarray(detail, object),
        "vector": np.full((n, dim), np.nan, np.float32),
        "busy": np.full(n, busy),
        "pid": np.full(n, os.getpid(), np.int64),
    }
