"""The engine's facade: :class:`Index` owns indexing and search; every adapter only calls
it. Its methods delegate; each capability lives in its own module of this package and
gets only what it needs: :mod:`.model` (setup and embedder), :mod:`.search` (commits and
vector search), :mod:`.update` (bringing it up to date, under :mod:`.lock`),
:mod:`.contents` (own vectors, removal, failures, info), :mod:`.images` (images by id),
:mod:`.text` (search by words); near-duplicates are in :mod:`lookalike.duplicates`."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..decode import DecodeLimits
from ..errors import ConfigError
from ..pipeline import Progress
from ..setup import EmbedderOptions, Preprocess, Setup
from ..store import Store, open_store
from ..types import FailedFile, Hit, IndexReport
from . import contents
from . import images as by_id
from .model import Model
from .search import Vectors, query_vector
from .text import TextSearch

if TYPE_CHECKING:
    from ..duplicates.api import IndexParts, ThresholdChoice
    from ..duplicates.types import Calibration, DuplicateGroup, DuplicateReport, MoveReport

Folders = str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | None


def default_db_path() -> Path:
    """``$LOOKALIKE_DB``, else ``index.db`` in the user's data directory (platformdirs)."""
    env = os.environ.get("LOOKALIKE_DB")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("lookalike")) / "index.db"


class Index:
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
        self._fresh: list[Path] = []  # files a failed first run removes (see .fresh)
        self._opened: tuple[int, int] | None = None  # the database file it opened
        self._decode_limits = decode_limits or DecodeLimits()
        self._workers = workers
        self._vectors = Vectors(store, cache_dir, ann=ann, ann_threshold=ann_threshold)
        self._model = Model(store, options, self.location, embedder)
        self._text_search = TextSearch(store, self._model, self._vectors, self._query_vector)

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
            from ..embed.compiled import requested_backend

            requested_backend(options)  # ConfigError for an unknown name, before any work
        limits = DecodeLimits(max_pixels=max_pixels) if max_pixels else DecodeLimits()
        if not create:
            from .preflight import require_index

            require_index(location, named=path is not None or "LOOKALIKE_DB" in os.environ)
        from .fresh import claimed, discard, identity, new_paths, nothing_recorded

        fresh = new_paths(location) if create else []
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
            index._model.check_requested()
        except BaseException:
            # A bad --model or --weights leaves no empty index behind (unless another run
            # has started using it meanwhile).
            with claimed(db_path if fresh else None) as ours:
                doomed = ours and nothing_recorded(store)
                store.close()
                if doomed:
                    discard(fresh)
            raise
        index._fresh = fresh
        index._opened = identity(db_path)
        return index

    def __enter__(self) -> Index:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        from .fresh import claimed, discard, nothing_recorded

        # A first run that failed before recording anything (no model hub, ...) removes
        # the new index it made: no "images: 0, model: (none yet)" left behind (#20);
        # never while another run holds its update lock (it is using it).
        failed_first = exc_type is not None and bool(self._fresh)
        with claimed(getattr(self._store, "path", None) if failed_first else None) as ours:
            doomed = ours and nothing_recorded(self._store)
            self.close()
            if doomed:
                discard(self._fresh)

    def close(self) -> None:
        """Release the database and caches. The index stays usable on disk."""
        self._vectors.close()
        self._store.close()

    # -- the parts, for tests and benchmarks that look inside -----------------------------

    @property
    def _embedder(self) -> Any:
        return self._model.embedder

    @property
    def _text(self) -> Any:
        return self._text_search.encoder

    def _vector_search(self) -> Any:
        return self._vectors.vector_search()

    def _get_embedder(self) -> Any:
        return self._model.get_embedder()

    def _effective_options(self) -> EmbedderOptions:
        return self._model.effective_options()

    def _expected_preprocess(self) -> Preprocess | None:
        return self._model.expected_preprocess()

    def _query_vector(self, query: str | os.PathLike[str]) -> tuple[np.ndarray, list[int]]:
        return query_vector(self._store, query, self.embed)

    def _parts(self) -> IndexParts:
        from ..duplicates.api import IndexParts

        v = self._vectors
        return IndexParts(
            self._store,
            v.cache_dir,
            self._decode_limits,
            self._get_embedder,
            v.vector_search,
            v.commit,
        )

    # -- the public operations ------------------------------------------------------------

    @property
    def setup(self) -> Setup | None:
        """The recorded setup, or ``None`` while nothing has been embedded."""
        return self._model.setup

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
                :mod:`lookalike.index.lock`), wait for it, then do what is left; ``False``:
                raise :class:`~lookalike.errors.IndexBusyError`.
            on_wait: called with one sentence (who holds the lock) before waiting.
            on_stage: called with ``"loading-model"`` before the model loads, then
                ``"compiling-model"`` when it has no compiled copy yet (a model's first
                run builds and compiles it), and ``"embedding"`` once it is ready.

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
        from .update import update_index

        return update_index(
            self._store,
            self._model,
            self._vectors,
            self._decode_limits,
            self._workers,
            folders,
            engine=engine,
            ray_address=ray_address,
            wait=wait,
            on_wait=on_wait,
            on_stage=on_stage,
            on_progress=on_progress,
            follow_links=follow_links,
            include_hidden=include_hidden,
            expected=self._expected_preprocess,
            opened=self._opened,
        )

    def embed(self, path: str | os.PathLike[str]) -> np.ndarray:
        """The vector of one image file: float32 ``(dim,)``, unit norm. Loads the model.

        Raises:
            QueryError: the file cannot be read or decoded.
        """
        return self._model.embed_file(path, self._decode_limits)

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
        return self._vectors.search(vector, k, folder=folder, exact=exact, exclude=_exclude)

    def add_embeddings(self, paths: Sequence[str | os.PathLike[str]], vectors: np.ndarray) -> None:
        """Store your own vectors: ``paths`` (n) with float ``vectors`` (n, dim), one transaction.

        Vectors are normalised; non-finite or zero rows are rejected. Paths need not exist
        (existing files record their size and mtime, so a later update keeps them).
        """
        contents.add_embeddings(self._store, self._vectors, paths, vectors)

    def remove(self, folder: str | os.PathLike[str], *, missing_ok: bool = True) -> int:
        """Forget every image below ``folder`` (the files are untouched). Returns the count.
        ``folder`` may also name one indexed image: that one is forgotten.

        Raises:
            NotIndexedError: ``missing_ok`` is false and nothing below ``folder`` is
                indexed (nor is it an indexed folder); its message names the indexed ones.
        """
        return contents.remove(self._store, self._vectors, folder, missing_ok)

    def failures(self) -> list[FailedFile]:
        """Every file that failed in the latest runs, with its reason."""
        return contents.failures(self._store)

    def check(self) -> str:
        """SQLite's full ``integrity_check`` of the index: ``"ok"`` or the problems found."""
        return self._store.integrity_check()  # type: ignore[attr-defined]

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built (the data of ``lookalike info``)."""
        from ..duplicates.api import recorded_calibration

        calibration = recorded_calibration(self._parts())
        return contents.info(self._store, self.setup, self.location, calibration)

    # -- images by id (the web UI never takes a path from a user) ------------------------

    def images(self, offset: int = 0, limit: int = 100) -> tuple[int, list[tuple[int, str]]]:
        """The total image count and ``(id, path)`` of up to ``limit`` images in path order."""
        return by_id.images(self._store, offset, limit)

    def image_path(self, image_id: int) -> str | None:
        """The path of the image with this id, or ``None`` if there is none."""
        return by_id.image_path(self._store, image_id)

    def image_ids(self, paths: Sequence[str]) -> dict[str, int]:
        """The ids of those ``paths`` that are indexed."""
        return by_id.image_ids(self._store, paths)

    def similar_to_id(
        self,
        image_id: int,
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` images most similar to the stored image ``image_id`` (never itself).

        Raises:
            QueryError: no image has this id.
        """
        return by_id.similar_to_id(
            self._store, self._vectors, image_id, k, folder=folder, exact=exact
        )

    def embed_bytes(
        self, data: bytes, *, max_pixels: int | None = None, decode: Any = None
    ) -> np.ndarray:
        """The vector of an image given as bytes (an upload), decoded in memory.

        Args:
            data: the image file's bytes; never written anywhere.
            max_pixels: a stricter decompression-bomb limit than the index's.
            decode: ``decode(data, preprocess, limits) -> (H, W, 3) uint8`` used instead of
                :func:`~lookalike.decode.decode_bytes` (same contract, raising
                :class:`~lookalike.decode.DecodeFailure`): the web server decodes uploads
                in a worker process with a time limit.

        Raises:
            QueryError: the bytes are not a usable image; ``reason`` says why.
        """
        return self._model.embed_bytes(data, self._decode_limits, max_pixels, decode)

    # -- search by words (a CLIP index, #10) ----------------------------------------------

    @property
    def is_clip(self) -> bool:
        """Whether text queries work: the index holds (or, new, will hold) CLIP vectors."""
        return self._text_search.is_clip

    def embed_text(self, text: str) -> np.ndarray:
        """The vector of ``text`` in a CLIP index's space: float32 ``(dim,)``, unit norm.

        Loads the text tower on first use (a compiled copy from the model cache when there
        is one).

        Raises:
            ConfigError: not a CLIP index (the message says how to build one); empty text.
        """
        return self._text_search.embed_text(text)

    def search_text(
        self, text: str, k: int = 10, *, folder: str | os.PathLike[str] | None = None
    ) -> list[Hit]:
        """The ``k`` indexed images that best match ``text`` (a CLIP index only).

        Example:
            >>> hits = idx.search_text("a red bicycle", k=5)  # doctest: +SKIP
        """
        from ..query import Query, Term

        return self.search_query(Query((Term("text", text),)), k, folder=folder)

    def search_query(
        self,
        query: Any,
        k: int = 10,
        *,
        folder: str | os.PathLike[str] | None = None,
        exact: bool = False,
    ) -> list[Hit]:
        """The ``k`` images that best match a :class:`~lookalike.query.Query` of weighted
        texts and images, positive and negative (the rule is in :mod:`lookalike.query`).

        Image terms that are indexed files are never results themselves.

        Example:
            >>> from lookalike.query import Query
            >>> q = Query.build(text=["2:red", "bicycle"], negative=["night"])
            >>> hits = idx.search_query(q, k=10)  # doctest: +SKIP
        """
        return self._text_search.search_query(query, k, folder=folder, exact=exact)

    # -- near-duplicates (#9; the work is in lookalike.duplicates) -----------------------

    def duplicates(
        self,
        threshold: float | None = None,
        folders: Folders = None,
        keep: str | Sequence[str] = "resolution,size,oldest",
        *,
        calibrate: bool | str = "auto",
    ) -> list[DuplicateGroup]:
        """Every group of copies among the indexed images, largest groups first.

        Every member of a group is at least ``threshold`` similar to the kept file (groups
        never chain); a file is in at most one group; byte-identical files are always
        grouped. See :meth:`duplicate_report` for the arguments.

        Example:
            >>> for g in idx.duplicates(keep="resolution,oldest"):  # doctest: +SKIP
            ...     print(g.keep, [(m.path, round(m.score, 3)) for m in g.others])
        """
        return self.duplicate_report(threshold, folders, keep, calibrate=calibrate).groups

    def duplicate_report(
        self,
        threshold: float | None = None,
        folders: Folders = None,
        keep: str | Sequence[str] = "resolution,size,oldest",
        *,
        calibrate: bool | str = "auto",
    ) -> DuplicateReport:
        """The duplicate groups with the threshold used, the image count and the time taken.

        Args:
            threshold: cosine from which two images are copies; default: the one
                :meth:`duplicate_threshold` chooses (one rule for every caller).
            folders: only images below these folders.
            keep: which file stays: criteria tried in order (``resolution``, ``size``,
                ``smallest``, ``oldest``, ``newest``, ``shortest-path``, ``longest-path``,
                ``path``), e.g. ``"resolution,size,oldest"``.
            calibrate: ``"auto"`` calibrates once (loading the model) when no threshold is
                given and the index has none for its model; ``False`` never does.

        Raises:
            ConfigError: a threshold outside (0, 1] or an unknown keep criterion.
        """
        from ..duplicates.api import duplicate_report

        return duplicate_report(self._parts(), threshold, folders, keep, calibrate)

    def calibrate_duplicates(
        self, target_precision: float = 0.95, *, sample: int = 60, seed: int = 0
    ) -> Calibration:
        """Choose the duplicate threshold on edited copies of this index's images and
        record it in the index (for its model) as the default of :meth:`duplicates`.

        Loads the model. ``sample`` indexed images each get edited copies made in memory
        (crop, resize, JPEG, colour, flip, rotation, text, two of these in a row); the
        threshold is the lowest reaching ``target_precision`` against the samples' nearest
        distinct images (see :mod:`lookalike.duplicates.calibrate`).

        Example:
            >>> idx.calibrate_duplicates().sentence()  # doctest: +SKIP
            '0.62: 96% precision on edited copies of your images, recall 0.99, 0.96 two ...'
        """
        from ..duplicates.api import calibrate_index

        return calibrate_index(self._parts(), target_precision, sample, seed)

    def duplicate_threshold(
        self, threshold: float | None = None, *, calibrate: bool | str = "auto"
    ) -> ThresholdChoice:
        """The duplicate threshold :meth:`duplicate_report` uses, and where it comes from:
        ``threshold`` when given; else the calibration recorded for the index's model;
        else (``calibrate`` ``"auto"``/true, a SQLite index with images) one made now and
        recorded, so the CLI, the web review and the API all use the same one; else 0.90.

        Example:
            >>> idx.duplicate_threshold().sentence()  # doctest: +SKIP
            'threshold 0.54: 100% precision on edited copies of your images, ...'
        """
        from ..duplicates.api import duplicate_threshold

        return duplicate_threshold(self._parts(), threshold, calibrate)

    def duplicate_calibration(self) -> Calibration | None:
        """The calibration recorded for this index's model, or ``None``."""
        from ..duplicates.api import recorded_calibration

        return recorded_calibration(self._parts())

    def move_duplicates(
        self,
        groups: Sequence[DuplicateGroup],
        destination: str | os.PathLike[str],
        *,
        dry_run: bool = False,
    ) -> MoveReport:
        """Move every non-kept member of ``groups`` below ``destination``; delete nothing.

        Paths stay relative to their indexed folder; an existing target is never
        replaced; an undo manifest is written in ``destination`` before the first move;
        a file that vanished or changed since listing is reported in ``skipped``. The
        index follows: moved images keep their vectors when the target is inside an
        indexed folder and are forgotten otherwise. ``dry_run`` changes nothing.
        """
        from ..duplicates.api import move_duplicates

        return move_duplicates(self._parts(), groups, destination, dry_run)

    def undo_duplicate_moves(
        self, manifest: str | os.PathLike[str], *, dry_run: bool = False
    ) -> MoveReport:
        """Move the files an undo manifest lists back (never overwriting)."""
        from ..duplicates.api import undo_move

        return undo_move(self._parts(), manifest, dry_run)

    def apply_moves(self, moved: Sequence[tuple[str, str]]) -> None:
        """Tell the index that files moved, as ``(from, to)`` paths: an image moved inside
        an indexed folder keeps its vector under the new path; one moved out of every
        indexed folder is forgotten. (:meth:`move_duplicates` does this itself.)"""
        from ..duplicates.api import record_moves

        record_moves(self._parts(), list(moved))
