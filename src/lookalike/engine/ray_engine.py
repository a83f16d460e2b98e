"""``--engine ray``: lookalike's decoder and embedder on a Ray cluster, through Ray Data.

How a run goes, and why:

- The driver (this process) scans and plans as in a local run; only the files to embed go
  to Ray, as a manifest of ``(key, path, size, mtime_ns, known hashes)`` in Arrow tables of
  one batch each (``ray.data.from_arrow``). Ray never lists a directory: listing millions
  of small files through ``read_images`` takes hours (ray #40686).
- ``map_batches`` runs :class:`~lookalike.engine._ray_worker.EmbedActor` on an actor pool:
  each actor builds the index's embedder once and decodes with lookalike's own decoder in
  worker processes (same reasons for bad files, same limits). On a cluster with GPUs there
  is one actor per GPU (``num_gpus=1``); otherwise one per node. Actors ask for a fraction
  of a CPU (:data:`ACTOR_CPUS`): Ray's CPU count only schedules them, the actor's decode
  processes and the model's threads use the node's cores, and a whole CPU per actor can
  starve Ray Data's own tasks on a small node ("backpressured: ResourceBudget").
- Weights travel once: the weights file's bytes (a hub checkpoint's too) are put in Ray's
  object store by the driver and fetched by an actor only when its node has no compiled
  copy of the model yet (on one machine the driver's own copy is used).
- Results stream back (``iter_batches``) and the driver commits each batch through the
  same store write as a local run (:func:`lookalike.pipeline.run_update`): a killed run
  loses only the batches in flight. A worker that dies is restarted by Ray and its batch
  retried (Ray Data's actor defaults); a key that never comes back is reported as
  ``decoder-crashed`` and retried on the next run. Workers never write to the index.
- Paths must be readable at the same path on every worker (a shared filesystem): each
  actor first reads one file the driver can read, and the run stops with one clear line
  if it cannot.
"""

from __future__ import annotations

import logging
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..decode import DecodeResult
from ..errors import (
    ConfigError,
    EngineError,
    MissingDependencyError,
    ModelError,
    SourceUnavailableError,
)
from ._ray_worker import FATAL, EmbedActor

if TYPE_CHECKING:
    from ..decode import DecodeLimits, DecodeTask
    from ..setup import EmbedderOptions, Setup
    from .base import EngineBatch

ACTOR_CPUS = 0.5
"""Logical CPUs each actor asks Ray for (scheduling only; see the module docstring)."""

CHUNK_TASKS = 200_000
"""Files per Ray Data run: the manifest of a huge run is sent in parts, bounding the
driver's memory; each part starts its actors again (seconds, against minutes of work)."""

LOST = (
    "decoder-crashed",
    "no result came back from the Ray workers; retried on the next run",
)


def import_ray() -> Any:
    """``ray`` with Ray Data, or :class:`MissingDependencyError` naming the extra."""
    try:
        import ray
        import ray.data
    except ImportError as e:
        raise MissingDependencyError(
            f"--engine ray needs Ray Data ({e.name or 'ray'} is missing): "
            'pip install "lookalike[ray]"'
        ) from None
    return ray


@dataclass
class Layout:
    """How many actors, and what each asks Ray for."""

    actors: int
    num_gpus: float
    actors_per_node: int


@dataclass
class RunStats:
    """Timings of the last :meth:`RayEngine.run` (for benchmarks and curious users).

    Attributes:
        connect_seconds: ``ray.init`` (a new local cluster, or connecting to one).
        first_result_seconds: from the start of the run to the first batch back (actors
            started, models loaded, first batch embedded).
        seconds: the whole run on the cluster side.
        worker_seconds: actor time spent on batches, summed over actors.
        actors: actors in the pool; ``gpus``: GPUs they hold.
        actor_pids: the processes of the actors that returned batches.
    """

    connect_seconds: float = 0.0
    first_result_seconds: float = 0.0
    seconds: float = 0.0
    worker_seconds: float = 0.0
    actors: int = 0
    gpus: float = 0.0
    actor_pids: set[int] = field(default_factory=set)


class RayEngine:
    """Decode and embed on a Ray cluster; see the module docstring.

    Args:
        address: the cluster (``host:6379``, ``auto``: anything ``ray.init`` takes); ``None``:
            ``$RAY_ADDRESS``, else a local cluster started in this process. When this process
            is already connected (``ray.init`` was called), that connection is used.
        options: gives the index's effective embedder options.
        limits: decode limits.
        workers: decode processes per actor (``None``: the node's cores, shared among the
            actors on it).
        actors: actors in the pool (``None``: one per GPU, else one per node).
        batch_size: files per Ray batch, i.e. per commit (``None``: the embedder's batch).

    Raises:
        MissingDependencyError: Ray Data is not installed.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        *,
        options: Callable[[], EmbedderOptions],
        limits: DecodeLimits,
        workers: int | None = None,
        actors: int | None = None,
        batch_size: int | None = None,
    ) -> None:
        if actors is not None and actors < 1:
            raise ConfigError("actors must be at least 1")
        if batch_size is not None and batch_size < 1:
            raise ConfigError("batch size must be at least 1")
        self._ray = import_ray()
        self.address = address
        self._options = options
        self._limits = limits
        self._workers = workers
        self._actors = actors
        self._batch_size = batch_size
        self.stats = RunStats()

    # -- the run ---------------------------------------------------------------------------

    def run(
        self, tasks: Sequence[DecodeTask], get_embedder: Callable[[], Any]
    ) -> Iterator[EngineBatch]:
        """Embed ``tasks`` on the cluster; yield each batch of results as it comes back.

        Raises:
            SourceUnavailableError: a worker cannot read the files (no shared filesystem).
            ModelError: a worker cannot build the index's model.
            EngineError: Ray cannot start, connect or finish (committed batches stay).
        """
        if not tasks:
            return
        embedder = get_embedder()  # the setup is checked and recorded before any work
        opts = self._options()
        t0 = time.perf_counter()
        self.stats = RunStats()
        self._connect()
        self.stats.connect_seconds = time.perf_counter() - t0
        layout = self._layout(opts)
        self.stats.actors, self.stats.gpus = layout.actors, layout.num_gpus * layout.actors
        recipe = self._recipe(embedder, opts, layout, _probe(tasks))
        batch = self._batch_size or opts.batch_size or int(embedder.batch_size)
        by_key = {t.key: t for t in tasks}
        seen: set[int] = set()
        for start in range(0, len(tasks), CHUNK_TASKS):
            dataset = self._dataset(tasks[start : start + CHUNK_TASKS], recipe, layout, batch)
            for results in self._stream(dataset, by_key, seen):
                if not self.stats.first_result_seconds:
                    self.stats.first_result_seconds = time.perf_counter() - t0
                yield results
        self.stats.seconds = time.perf_counter() - t0
        lost = [t for t in tasks if t.key not in seen]
        if lost:
            yield [(DecodeResult(t.key, t.path, None, None, False, *LOST), None) for t in lost]

    def _stream(
        self, dataset: Any, by_key: dict[int, DecodeTask], seen: set[int]
    ) -> Iterator[EngineBatch]:
        from ray.exceptions import RayError

        batches = iter(dataset.iter_batches(batch_size=None, batch_format="numpy"))
        while True:
            try:
                out = next(batches, None)
            except RayError as e:
                raise EngineError(f"the Ray run failed: {_last_line(e)}") from e
            if out is None:
                return
            self.stats.worker_seconds += float(np.sum(out["busy"]))
            self.stats.actor_pids.update(int(p) for p in np.unique(out["pid"]))
            results = _results(out, by_key, seen)
            if results:
                yield results

    # -- set-up ----------------------------------------------------------------------------

    def _connect(self) -> None:
        ray = self._ray
        for name in ("ray", "ray.data"):
            logging.getLogger(name).setLevel(logging.ERROR)  # the core never prints
        if not ray.is_initialized():
            address = self.address or os.environ.get("RAY_ADDRESS") or None
            local = {} if address else {"include_dashboard": False}
            try:
                ray.init(address=address, log_to_driver=False, logging_level=logging.ERROR, **local)
            except Exception as e:
                where = f"the Ray cluster at {address}" if address else "a local Ray cluster"
                raise EngineError(f"cannot start or reach {where}: {_last_line(e)}") from e
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False

    def _layout(self, opts: EmbedderOptions) -> Layout:
        ray = self._ray
        gpus = int(ray.cluster_resources().get("GPU", 0))
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU")]
        if opts.device == "cuda" and not gpus:
            raise ConfigError("--device cuda, but the Ray cluster has no GPUs")
        if gpus and opts.device in ("auto", "cuda"):
            per_node = max(int(n["Resources"].get("GPU", 0)) for n in nodes) if nodes else 1
            return Layout(self._actors or gpus, 1.0, max(1, per_node))
        n = self._actors or max(1, len(nodes))
        return Layout(n, 0.0, -(-n // max(1, len(nodes))))

    def _recipe(
        self, embedder: Any, opts: EmbedderOptions, layout: Layout, probe: bytes | None
    ) -> dict[str, Any]:
        import lookalike

        setup: Setup = embedder.setup
        extra = dict(opts.extra)
        backend = getattr(embedder, "backend", None)
        if backend:  # the same backend as the driver's model, not the worker's default
            extra["backend"] = backend
        weights = opts.weights or _hub_file(setup)
        ref = [self._ray.put(Path(weights).read_bytes())] if weights else None
        return {
            "version": lookalike.__version__,
            "setup": setup.to_json(),
            "options": {
                "model": opts.model,
                "weights": None,
                "pool": opts.pool,
                "crop": opts.crop,
                "precision": opts.precision,
                "device": opts.device,
                "batch_size": opts.batch_size,
                "extra": extra,
            },
            "weights": ref,
            "weights_name": os.path.basename(weights) if weights else "",
            "limits": {
                "max_pixels": self._limits.max_pixels,
                "max_file_bytes": self._limits.max_file_bytes,
                "allowed_formats": sorted(self._limits.allowed_formats),
            },
            "workers": self._workers,
            "actors_per_node": layout.actors_per_node,
            "probe": probe,
        }

    def _dataset(
        self, tasks: Sequence[DecodeTask], recipe: dict[str, Any], layout: Layout, batch: int
    ) -> Any:
        import pyarrow as pa

        ray = self._ray
        tables = [_manifest(pa, tasks[i : i + batch]) for i in range(0, len(tasks), batch)]
        return ray.data.from_arrow(tables).map_batches(
            EmbedActor,
            fn_constructor_kwargs={"recipe": recipe},
            batch_size=batch,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=layout.actors),
            num_cpus=ACTOR_CPUS,
            num_gpus=layout.num_gpus or None,
        )


# ---------------------------------------------------------------------------- helpers


def _manifest(pa: Any, tasks: Sequence[DecodeTask]) -> Any:
    """One Arrow table (one Ray block, one batch) of the files to embed."""
    return pa.table(
        {
            "key": pa.array([t.key for t in tasks], pa.int64()),
            "path": pa.array([bytes(t.path) for t in tasks], pa.binary()),
            "size": pa.array([t.size for t in tasks], pa.int64()),
            "mtime_ns": pa.array([t.mtime_ns for t in tasks], pa.int64()),
            "known": pa.array([sorted(t.known_hashes) for t in tasks], pa.list_(pa.string())),
        }
    )


def _results(out: dict[str, np.ndarray], by_key: dict[int, DecodeTask], seen: set[int]) -> Any:
    """One output batch -> ``(DecodeResult, vector | None)`` per file not seen before."""
    results = []
    for i, key in enumerate(out["key"].tolist()):
        reason = str(out["reason"][i])
        if reason.startswith(FATAL):
            _raise_fatal(reason.partition(":")[2], str(out["detail"][i]))
        task = by_key.get(key)
        if task is None or key in seen:  # a retried batch that came back twice
            continue
        seen.add(key)
        digest = str(out["hash"][i]) or None
        reused = bool(out["reused"][i])
        res = DecodeResult(
            key, task.path, None, digest, reused, reason or None, str(out["detail"][i])
        )
        embedded = not reason and not reused
        results.append((res, np.asarray(out["vector"][i], np.float32) if embedded else None))
    return results


def _raise_fatal(kind: str, detail: str) -> None:
    if kind == "unreadable":
        raise SourceUnavailableError(
            f"a Ray worker cannot read {detail}; the folders to index must be readable at "
            "the same path on every Ray node (a shared filesystem)"
        )
    raise ModelError(f"a Ray worker cannot embed: {detail}")


def _probe(tasks: Sequence[DecodeTask]) -> bytes | None:
    """A file this process can read, for every worker to read first (None if none is)."""
    for t in tasks[:16]:
        try:
            fd = os.open(t.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError:
            continue
        try:
            if stat.S_ISREG(os.fstat(fd).st_mode):
                return bytes(t.path)
        finally:
            os.close(fd)
    return None


def _hub_file(setup: Setup) -> str | None:
    """The cached hub checkpoint of a ``hub:`` setup, to send to workers (timm models)."""
    if not setup.weights.startswith("hub:") or setup.model.startswith("clip"):
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for name in ("model.safetensors", "pytorch_model.bin"):
        found = try_to_load_from_cache(setup.weights[4:], name)
        if isinstance(found, str) and os.path.isfile(found):
            return found
    return None


def _last_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).splitlines() if ln.strip()]
    return lines[-1][:300] if lines else type(e).__name__
