"""The engine: :class:`Index` owns indexing and search; every adapter only calls it."""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .decode import DecodeFailure, DecodeLimits
from .errors import ConfigError, QueryError
from .index_duplicates import DuplicatesMixin
from .index_ids import ImagesByIdMixin
from .index_setup import SetupMixin
from .index_text import TextSearchMixin
from .paths import path_forms, resolved
from .pipeline import Progress, run_update
from .setup import EmbedderOptions
from .store import Store, WriteBatch, WriteResult, open_store
from .types import FailedFile, Hit, IndexReport

if TYPE_CHECKING:
    pass


def default_db_path() -> Path:
    """``$LOOKALIKE_DB``, else ``index.db`` in the user's data directory (platformdirs)."""
    env = os.environ.get("LOOKALIKE_DB")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lookalike")) / "index.db"


def _as_path_bytes(path: str | os.PathLike[str] | bytes) -> bytes:
    """Absolute, links resolved: the form ``update`` stores paths in (#8, see paths.py)."""
    return resolved(path)


class Index(SetupMixin, ImagesByIdMixin, DuplicatesMixin, TextSearchMixin):
    """A persistent, incremental image-similarity index.

    Open one with :meth:`Index.open`. The model loads lazily, only when an image must be
    embedded: opening, :meth:`add_embeddings` and :meth:`search_vector` never need it.

    Example:
        >>> from lookalike import Index
        >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
        ...     report = idx.update("~/Pictures")
        ...     for hit in idx.search("query.jpg", k=10):
        ...         print(hit.rank, f"{hit.score:.3f}", hit.path)
    """

    def __init__(
        self,
        store: Store,
        options: EmbedderOptions,
        *,
        cache_dir: Path | None,
        decode_limits: DecodeLimits | None = None,
        workers: int | None = None,
        ann: str = "auto",
        ann_threshold: int = 100_000,
        embedder: Any = None,
    ) -> None:
        self._store = store
        self._options = options
        self._cache_dir = cache_dir
        self._decode_limits = decode_limits or DecodeLimits()
        self._workers = workers
        self._ann = ann
        self._ann_threshold = ann_threshold
        self._embedder = embedder
        self._vectors: Any = None
        if embedder is not None:
            self._check_setup(embedder.setup)

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        model: str | None = None,
        weights: str | os.PathLike[str] | None = None,
        pool: str | None = None,
        crop: str | None = None,
        precision: str = "auto",
        device: str = "auto",
        backend: str | None = None,
        batch_size: int | None = None,
        workers: int | None = None,
        max_pixels: int | None = None,
        ann: str = "auto",
        ann_threshold: int = 100_000,
        embedder: Any = None,
        create: bool = True,
    ) -> Index:
        """Open (or create) the index at ``path``.

        With no ``model``, an existing index keeps its recorded setup and a new one uses
        the default (the seed's ResNet50, ``resnet50.tv_in1k``, average pooling).

        Args:
            path: the SQLite file; default :func:`default_db_path`. Derived caches go in
                ``<path>.cache/`` beside it. A ``postgresql://USER@HOST[:PORT]/DBNAME`` URL
                (also as ``$LOOKALIKE_DB``) opens a PostgreSQL + pgvector index instead, which
                searches its vectors in the server (README, "PostgreSQL").
            model: any timm model name.
            weights: a local ``.safetensors``/``.pth`` file instead of timm's hub cache.
            pool: ``avg``, ``gem``, ``max``, ``flatten`` or ``token``.
            crop: ``none`` (resize the whole image) or ``center`` (the model's eval crop).
            precision: ``auto``, ``bf16`` or ``fp32``.
            device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
            backend: how models run on the CPU: ``auto`` (OpenVINO when installed, else
                TorchScript), ``openvino`` or ``torch``; default ``$LOOKALIKE_BACKEND``, else
                ``auto``. The vectors agree either way: each compiled copy is checked against
                timm's forward pass when it is saved.
            batch_size: images per forward pass.
            workers: decode worker processes (default: one per core).
            max_pixels: decompression-bomb limit in pixels.
            ann: ``auto`` (approximate index above ``ann_threshold`` vectors), ``on``, ``off``.
            ann_threshold: vector count from which ``auto`` builds the approximate index.
            embedder: an object with ``setup``, ``batch_size``, ``embed_pixels`` to use
                instead of a timm model (tests, other backends).
            create: create the index when there is none; ``False`` for read-only use.

        Raises:
            SetupMismatchError: the index was built with another model/weights/pooling/crop.
            IndexNotFoundError: ``create`` is false and there is no index (nothing created).
            StoreError: the file cannot be used.
        """
        location = path if path is not None else os.environ.get("LOOKALIKE_DB") or default_db_path()
        if ann not in ("auto", "on", "off"):
            raise ConfigError(f"unknown ann mode {ann!r}; choose auto, on or off")
        options = EmbedderOptions(
            model=model,
            weights=os.fspath(Path(weights).expanduser()) if weights is not None else None,
            pool=pool,
            crop=crop,
            precision=precision,
            device=device,
            batch_size=batch_size,
            extra={"backend": backend} if backend is not None else {},
        )
        if backend is not None:
            from .embed.compiled import requested_backend

            requested_backend(options)  # ConfigError for an unknown name, before any work
        limits = DecodeLimits(max_pixels=max_pixels) if max_pixels else DecodeLimits()
        if not create:
            from .preflight import require_index

            require_index(location, named=path is not None or "LOOKALIKE_DB" in os.environ)
        store = open_store(location, create=create)
        db_path = getattr(store, "path", None)  # a database server keeps no cache beside it
        try:
            index = cls(
                store,
                options,
                cache_dir=db_path.with_name(db_path.name + ".cache") if db_path else None,
                decode_limits=limits,
                workers=workers,
                ann=ann,
                ann_threshold=ann_threshold,
                embedder=embedder,
            )
            index._check_requested()
        except BaseException:
            store.close()
            raise
        return index

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the database and caches. The index stays usable on disk."""
        if self._vectors is not None:
            self._vectors.close()
            self._vectors = None
        self._store.close()

    # -- vectors -------------------------------------------------------------------------

    def _vector_search(self) -> Any:
        if self._vectors is None:
            from .vectors import VectorSearch

            self._vectors = VectorSearch(
                self._cache_dir,  # type: ignore[arg-type]
                self._store,
                ann=self._ann,
                ann_threshold=self._ann_threshold,
            )
        return self._vectors

    def _on_commit(self, result: WriteResult) -> None:
        if result.generation == result.previous_generation:
            return
        if self._cache_dir is not None:  # keep the derived cache in step, commit by commit
            self._vector_search().notify(
                result.added_ids,
                result.added_vectors,
                result.removed_ids,
                result.generation,
                result.previous_generation,
                generation_id=getattr(result, "generation_id", None),
                previous_generation_id=getattr(result, "previous_generation_id", None),
            )

    def _committing(self) -> contextlib.AbstractContextManager[object]:
        """Held around each store commit and its cache update: readers meeting the commit
        in flight keep their last consistent snapshot instead of rebuilding the cache."""
        if self._cache_dir is None:
            return contextlib.nullcontext()
        return self._vector_search().committing()

    def _commit(self, batch: WriteBatch) -> None:
        with self._committing():
            self._on_commit(self._store.write(batch))

    # -- the public operations ------------------------------------------------------------

    @property
    def warnings(self) -> list[str]:
        """Things the user should know that do not stop work (e.g. an index on NFS)."""
        return list(getattr(self._store, "warnings", []))

    @property
    def path(self) -> Path:
        return Path(getattr(self._store, "path", ""))

    @property
    def location(self) -> str:
        """Where the index lives: its file, or its PostgreSQL URL without the password."""
        return getattr(self._store, "location", None) or str(self.path)

    def update(
        self,
        *folders: str | os.PathLike[str],
        on_progress: Callable[[Progress], None] | None = None,
        follow_links: bool = False,
        include_hidden: bool = False,
        engine: str | Any = "local",
        ray_address: str | None = None,
        wait: bool = True,
        on_wait: Callable[[str], None] | None = None,
        on_stage: Callable[[str], None] | None = None,
    ) -> IndexReport:
        """Bring the index up to date with ``folders`` (recursively), incrementally.

        New and changed images are embedded; unchanged ones (same size and mtime) are
        skipped; deleted ones are removed; renamed, moved or copied files reuse the vector
        of identical content. One bad file never stops the run: it is listed in
        ``report.failed`` with a reason.

        Args:
            engine: where decoding and embedding run: ``"local"`` (this machine) or
                ``"ray"`` (a Ray cluster; the paths must be readable on every node; see
                :mod:`lookalike.engine.ray_engine`), or a :class:`lookalike.engine.Engine`.
            ray_address: the Ray cluster; default ``$RAY_ADDRESS``, else a local cluster.
            wait: when another process is updating this index (it holds ``<db>.lock``,
                :mod:`lookalike.index_lock`), wait for it, then do what is left; ``False``:
                raise :class:`~lookalike.errors.IndexBusyError`.
            on_wait: called with one sentence (who holds the lock) before waiting.
            on_stage: called with ``"loading-model"`` before the model loads (the first
                run of a model compiles it) and ``"embedding"`` once it is ready.

        Raises:
            SourceUnavailableError: a folder is missing, unreadable or looks unmounted;
                nothing is changed.
            IndexBusyError: another process is updating the index and ``wait`` is false.
            NothingIndexedError: every image file failed.
            MissingDependencyError: ``engine="ray"`` without ``lookalike[ray]``.
            EngineError: the Ray cluster cannot be reached or failed (committed batches stay).

        Example:
            >>> report = idx.update("~/Pictures")  # doctest: +SKIP
            >>> report.added, report.unchanged, [f.reason for f in report.failed]  # doctest: +SKIP
        """
        if not folders:
            raise ConfigError("name at least one folder to index")
        if any(not os.fspath(f) for f in folders):  # "" would silently mean the cwd
            raise ConfigError("a folder name is empty (the current folder is '.')")
        from .engine import make_engine

        runner = make_engine(
            engine,
            ray_address=ray_address,
            options=self._effective_options,
            limits=self._decode_limits,
            workers=self._workers,
        )
        with self._update_lock(wait, on_wait):
            report = run_update(
                self._store,
                list(folders),
                get_embedder=self._embedder_getter(on_stage),
                preprocess=self._expected_preprocess(),
                decode_limits=self._decode_limits,
                workers=self._workers,
                on_commit=self._on_commit,
                commit_guard=self._committing,
                on_progress=on_progress,
                follow_links=follow_links,
                include_hidden=include_hidden,
                engine=runner,
            )
        if self._ann != "off" and self._store.count() >= self._ann_threshold:
            if getattr(self._store, "searches_vectors", False):
                self._store.build_ann()  # type: ignore[attr-defined]
            else:
                self._vector_search().build_ann()
        return report

    def _update_lock(self, wait: bool, on_wait: Callable[[str], None] | None) -> Any:
        """The OS lock that keeps a second updater of this SQLite file from redoing the work."""
        db_path = getattr(self._store, "path", None)
        if db_path is None:  # a database server: no file beside it to lock
            import contextlib

            return contextlib.nullcontext()
        from .index_lock import update_lock

        return update_lock(db_path, wait=wait, on_wait=on_wait)

    def _embedder_getter(self, on_stage: Callable[[str], None] | None) -> Callable[[], Any]:
        """``_get_embedder``, telling ``on_stage`` when a model starts and ends loading."""
        if on_stage is None:
            return self._get_embedder
        told: list[str] = []

        def get() -> Any:
            if self._embedder is None and not told:
                told.append("loading-model")
                on_stage("loading-model")
            embedder = self._get_embedder()
            if "embedding" not in told:
                told.append("embedding")
                on_stage("embedding")
            return embedder

        return get

    def embed(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The vector of one image file: float32 ``(dim,)``, unit norm. Loads the model.

        Raises:
            QueryError: the file cannot be read or decoded.
        """
        from .decode import decode_path

        embedder = self._get_embedder()
        try:
            pixels, _ = decode_path(
                _as_path_bytes(path), embedder.setup.preprocess, self._decode_limits
            )
        except DecodeFailure as e:
            raise QueryError(
                f"cannot read {os.fspath(path)}: {e.detail or e.reason}", e.reason
            ) from None
        assert pixels is not None  # no known hashes were given: always decoded
        vec = embedder.embed_pixels(pixels[None])[0]
        if not np.all(np.isfinite(vec)):
            raise QueryError(f"the model gave no usable vector for {os.fspath(path)}", "bad-vector")
        return vec

    def _query_vector(self, query: str | os.PathLike[str]) -> tuple[np.ndarray, list[int]]:
        """The query's vector (stored when up to date, else embedded) and ids to exclude:
        every stored row the query file is, through links or not (#8)."""
        forms = path_forms(query)
        try:
            st = os.stat(forms[0])
        except OSError as e:
            raise QueryError(f"cannot read query {os.fsdecode(forms[-1])}: {e.strerror}") from None
        vec, exclude = None, []
        for form in forms:
            found = self._store.lookup(form)
            if found is not None:
                row, stored = found
                exclude.append(row.id)
                if vec is None and (row.size, row.mtime_ns) == (st.st_size, st.st_mtime_ns):
                    vec = stored
        if vec is None:
            vec = self.embed(os.fsdecode(forms[0]))
        return vec, exclude

    def search(
        self,
        query: str | os.PathLike[str],
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` indexed images most similar to the image file ``query``.

        The query file itself is never its own result (identical copies are). Its stored
        vector is reused when it is indexed and unchanged; otherwise it is embedded.

        Args:
            query: an image file, inside the index or not.
            k: how many results.
            folder: only return images below this folder.
            exact: skip the approximate index and compare against every vector.

        Example:
            >>> hits = idx.search("q.jpg", k=3)  # doctest: +SKIP
            >>> [(h.rank, round(h.score, 3), h.path) for h in hits]  # doctest: +SKIP
        """
        vec, exclude = self._query_vector(query)
        return self.search_vector(vec, k, folder=folder, exact=exact, _exclude=exclude)

    def search_vector(
        self,
        vector: np.ndarray,
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
        _exclude: Sequence[int] = (),
    ) -> list[Hit]:
        """The ``k`` stored images whose vectors are most similar to ``vector``.

        Args:
            vector: float ``(dim,)``; normalised here, so any non-zero scale works.
            k: how many results.
            folder: only return images below this folder.
            exact: compare against every vector instead of the approximate index.
        """
        if k < 1:
            raise ConfigError("k must be at least 1")
        q = np.asarray(vector, dtype=np.float32).reshape(-1)
        dim = self._store.dim()
        if dim is None or self._store.is_empty():
            return []
        if q.shape[0] != dim:
            raise ConfigError(f"query vector has dimension {q.shape[0]}; the index holds {dim}")
        norm = float(np.linalg.norm(q))
        if not np.isfinite(norm) or norm == 0:
            raise ConfigError("query vector is zero or not finite")
        q = q / norm
        if getattr(self._store, "searches_vectors", False):  # searched in the server
            found = self._store.search(  # type: ignore[attr-defined]
                q,
                k,
                exact=exact,
                folders=path_forms(folder) if folder is not None else [],
                exclude=[int(i) for i in _exclude],
                ann=self._ann,
                ann_threshold=self._ann_threshold,
            )
            scores, ids = found[0][None], found[1][None]
        else:
            allow = None
            if folder is not None:
                allow = self._store.ids_under(path_forms(folder))
                if allow.size == 0:
                    return []
            excl = np.asarray(list(_exclude), dtype=np.int64) if _exclude else None
            scores, ids = self._vector_search().search(
                q[None], k, exact=exact, allow=allow, exclude=excl
            )
        paths = self._store.paths_for([int(i) for i in ids[0] if i >= 0])
        hits: list[Hit] = []
        for score, image_id in zip(scores[0], ids[0], strict=True):
            path = paths.get(int(image_id))
            if path is None:  # padding, or deleted since the cache was read
                continue
            hits.append(Hit(len(hits) + 1, float(score), os.fsdecode(path), int(image_id)))
        return hits

    def add_embeddings(self, paths: Sequence[str | os.PathLike[str]], vectors: np.ndarray) -> None:
        """Store your own vectors: ``paths`` (n) with float ``vectors`` (n, dim), one transaction.

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
        dim = self._store.dim()
        if dim is not None and vecs.shape[1] != dim:
            raise ConfigError(f"vectors have dimension {vecs.shape[1]}; the index holds {dim}")
        vecs = vecs / norms
        batch = WriteBatch()
        last = {_as_path_bytes(p): i for i, p in enumerate(paths)}  # a path twice: its last
        for b, i in last.items():
            try:
                st = os.stat(b)
                size, mtime = st.st_size, st.st_mtime_ns
            except OSError:
                size, mtime = -1, -1
            batch.upserts.append((b, size, mtime, None, vecs[i]))
        self._commit(batch)

    def remove(self, folder: str | os.PathLike[str]) -> int:
        """Forget every image below ``folder`` (the files are untouched). Returns the count."""
        forms = path_forms(folder)
        ids = self._store.ids_under(forms)
        self._commit(WriteBatch(deletes=[int(i) for i in ids]))
        for form in forms:
            self._store.remove_folder(form)  # type: ignore[attr-defined]
        return int(ids.size)

    def failures(self) -> list[FailedFile]:
        """Every file that failed in the latest runs, with its reason."""
        return [
            FailedFile(os.fsdecode(f.path), f.reason, f.detail) for f in self._store.all_failures()
        ]

    def check(self) -> str:
        """SQLite's full ``integrity_check`` of the index: ``"ok"`` or the problems found."""
        return self._store.integrity_check()  # type: ignore[attr-defined]

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built (the data of ``lookalike info``)."""
        setup = self.setup
        out: dict[str, Any] = {
            "db": self.location,
            "images": self._store.count(),
            "dim": self._store.dim(),
            "model": setup.model if setup else None,
            "weights": setup.weights if setup else None,
            "weights_path": self._store.get_meta("weights_path"),
            "pooling": setup.pool if setup else None,
            "preprocessing": json.loads(setup.to_json())["preprocess"] if setup else None,
            # "clip": text queries work (#10); "clip" then names the library, tag, tokenizer.
            "space": setup.space if setup else None,
            "clip": json.loads(setup.to_json()).get("clip") if setup else None,
            "folders": [os.fsdecode(f) for f in self._store.folders()],
            "failed": [
                {"path": f.path, "reason": f.reason, "detail": f.detail} for f in self.failures()
            ],
            "generation": self._store.generation(),
        }
        from .duplicates.api import recorded_calibration

        cal = recorded_calibration(self)  # the duplicate threshold, when calibrated (#9)
        out["duplicate_threshold"] = (
            dict(cal.to_dict(), sentence=cal.sentence()) if cal is not None else None
        )
        return out


__all__ = ["Index", "default_db_path"]
