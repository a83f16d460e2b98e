"""The engine's facade: :class:`Index`. Each method delegates to one capability module of
this package, which gets only what it needs (ARCHITECTURE.md, ``index/``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..decode import DecodeLimits
from ..pipeline import Progress
from ..setup import EmbedderOptions, Setup
from ..store import Store
from ..types import FailedFile, Hit, IndexReport
from . import contents, opening
from . import fresh as fresh_run
from . import images as by_id
from .copies import Copies, Folders
from .model import Model
from .search import Vectors, query_vector
from .text import TextSearch

if TYPE_CHECKING:
    from ..duplicates.api import ThresholdChoice
    from ..duplicates.types import Calibration, DuplicateGroup, DuplicateReport, MoveReport

PathLike = str | os.PathLike[str]


class Index:
    """A persistent, incremental image-similarity index; the model loads only when an image
    must be embedded.

    Example:
        >>> from lookalike import Index
        >>> with Index.open("photos.db") as idx:  # doctest: +SKIP
        ...     report = idx.update("~/Pictures")
        ...     hits = idx.search("query.jpg", k=10)
    """

    def __init__(
        self, store: Store, options: EmbedderOptions, *, cache_dir: Path | None,
        decode_limits: DecodeLimits | None = None, workers: int | None = None,
        ann: str = "auto", ann_threshold: int = 100_000, embedder: Any = None,
    ) -> None:  # fmt: skip
        self._store = store
        self._fresh: list[Path] = []  # files a failed first run removes (index/fresh.py)
        self._opened: tuple[int, int] | None = None  # the database file it opened
        self._decode_limits = limits = decode_limits or DecodeLimits()
        self._workers = workers
        self._vectors = vectors = Vectors(store, cache_dir, ann=ann, ann_threshold=ann_threshold)
        self._model = model = Model(store, options, self.location, embedder)
        image_vector = partial(query_vector, store, embed=self.embed)
        self._text_search = TextSearch(store, model, vectors, image_vector)
        self._copies = Copies(store, vectors, limits, model.get_embedder)

    @classmethod
    def open(
        cls, path: PathLike | None = None, *, model: str | None = None,
        weights: PathLike | None = None, pool: str | None = None, crop: str | None = None,
        precision: str = "auto", device: str = "auto", backend: str | None = None,
        batch_size: int | None = None, workers: int | None = None, max_pixels: int | None = None,
        ann: str = "auto", ann_threshold: int = 100_000, embedder: Any = None, create: bool = True,
    ) -> Index:  # fmt: skip
        """Open (or create, unless ``create`` is false) the index at ``path``, a SQLite file or
        a PostgreSQL URL (every option, the errors: :mod:`lookalike.index.opening`).

        Example:
            >>> idx = Index.open("photos.db", model="clip")  # doctest: +SKIP
        """
        options = opening.embedder_options(
            model=model, weights=weights, pool=pool, crop=crop, precision=precision,
            device=device, backend=backend, batch_size=batch_size, ann=ann,
        )  # fmt: skip
        return opening.open_index(
            cls, path, options, create=create, workers=workers, max_pixels=max_pixels, ann=ann,
            ann_threshold=ann_threshold, embedder=embedder,
        )  # fmt: skip

    def __enter__(self) -> Index:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        failed = exc_type is not None
        fresh_run.close_and_discard(self._store, self.close, self._fresh, failed=failed)

    def close(self) -> None:
        """Release the database and caches. The index stays usable on disk."""
        self._vectors.close()
        self._store.close()

    @property
    def setup(self) -> Setup | None:
        """The recorded setup, or ``None`` while nothing has been embedded."""
        return self._model.setup

    @property
    def warnings(self) -> list[str]:
        """Things the user should know that do not stop work (e.g. an index on NFS)."""
        return list(getattr(self._store, "warnings", []))

    @property
    def path(self) -> Path:  # the SQLite file ("" for a database server)
        return Path(getattr(self._store, "path", ""))

    @property
    def location(self) -> str:
        """Where the index lives: its file, or its PostgreSQL URL without the password."""
        return getattr(self._store, "location", None) or str(self.path)

    def update(
        self, *folders: PathLike, on_progress: Callable[[Progress], None] | None = None,
        follow_links: bool = False, include_hidden: bool = False, engine: str | Any = "local",
        ray_address: str | None = None, wait: bool = True,
        on_wait: Callable[[str], None] | None = None, on_stage: Callable[[str], None] | None = None,
    ) -> IndexReport:  # fmt: skip
        """Bring the index up to date with ``folders``, incrementally (the rules, engines and
        callbacks, the errors: :mod:`lookalike.index.update`); one bad file never stops it.

        Example:
            >>> report = idx.update("~/Pictures")  # doctest: +SKIP
            >>> report.added, report.unchanged, report.failed  # doctest: +SKIP
        """
        from .update import update_index

        return update_index(
            self._store, self._model, self._vectors, self._decode_limits, self._workers,
            folders, engine=engine, ray_address=ray_address, wait=wait, on_wait=on_wait,
            on_stage=on_stage, on_progress=on_progress, follow_links=follow_links,
            include_hidden=include_hidden, expected=self._model.expected_preprocess,
            opened=self._opened,
        )  # fmt: skip

    def embed(self, path: PathLike) -> np.ndarray:
        """The unit vector of one image file, float32 ``(dim,)``; ``QueryError`` if unreadable."""
        return self._model.embed_file(path, self._decode_limits)

    def search(
        self, query: PathLike, k: int = 10, *, folder: PathLike | None = None, exact: bool = False
    ) -> list[Hit]:
        """The ``k`` indexed images most similar to the image file ``query`` (never itself),
        below ``folder``; ``exact`` skips the approximate index.

        Example:
            >>> [(h.rank, h.score, h.path) for h in idx.search("q.jpg", k=3)]  # doctest: +SKIP
        """
        vec, exclude = query_vector(self._store, query, self.embed)
        return self.search_vector(vec, k, folder=folder, exact=exact, _exclude=exclude)

    def search_vector(
        self, vector: np.ndarray, k: int = 10, *, folder: PathLike | None = None,
        exact: bool = False, _exclude: Sequence[int] = (),
    ) -> list[Hit]:  # fmt: skip
        """The ``k`` stored images most similar to ``vector`` (any non-zero scale)."""
        return self._vectors.search(vector, k, folder=folder, exact=exact, exclude=_exclude)

    def add_embeddings(self, paths: Sequence[PathLike], vectors: np.ndarray) -> None:
        """Store your own ``vectors`` (n, dim) for ``paths`` (n), in one transaction."""
        contents.add_embeddings(self._store, self._vectors, paths, vectors)

    def remove(self, folder: PathLike, *, missing_ok: bool = True) -> int:
        """Forget every image below ``folder`` (or that one indexed image; the files are
        untouched) and return the count; ``NotIndexedError`` when nothing is there and
        ``missing_ok`` is false."""
        return contents.remove(self._store, self._vectors, folder, missing_ok)

    def failures(self) -> list[FailedFile]:
        """Every file that failed in the latest runs, with its reason."""
        return contents.failures(self._store)

    def check(self) -> str:
        """SQLite's full ``integrity_check`` of the index: ``"ok"`` or the problems found."""
        return self._store.integrity_check()  # type: ignore[attr-defined]

    def info(self) -> dict[str, Any]:
        """What the index holds and how it was built (the data of ``lookalike info``)."""
        return contents.info(self._store, self.setup, self.location, self._copies.calibration())

    # -- images by id (the web UI never takes a path from a user)
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
        self, image_id: int, k: int = 10, *, folder: PathLike | None = None, exact: bool = False
    ) -> list[Hit]:
        """The ``k`` images most similar to the stored image ``image_id`` (never itself)."""
        return by_id.similar_to_id(self._store, self._vectors, image_id, k, folder, exact)

    def embed_bytes(
        self, data: bytes, *, max_pixels: int | None = None, decode: Any = None
    ) -> np.ndarray:
        """The unit vector of an image given as bytes (an upload), decoded in memory; see
        :meth:`lookalike.index.model.Model.embed_bytes` for ``decode``."""
        return self._model.embed_bytes(data, self._decode_limits, max_pixels, decode)

    # -- search by words (a CLIP index)
    @property
    def is_clip(self) -> bool:
        """Whether text queries work: the index holds (or, new, will hold) CLIP vectors."""
        return self._text_search.is_clip

    def embed_text(self, text: str) -> np.ndarray:
        """The unit vector of ``text`` in a CLIP index's space (``ConfigError`` otherwise)."""
        return self._text_search.embed_text(text)

    def search_text(self, text: str, k: int = 10, *, folder: PathLike | None = None) -> list[Hit]:
        """The ``k`` indexed images that best match ``text`` (a CLIP index only)."""
        return self._text_search.search_text(text, k, folder)

    def search_query(
        self, query: Any, k: int = 10, *, folder: PathLike | None = None, exact: bool = False
    ) -> list[Hit]:
        """The ``k`` images that best match a :class:`~lookalike.query.Query` of weighted
        texts and images, positive and negative (the rule is in :mod:`lookalike.query`)."""
        return self._text_search.search_query(query, k, folder=folder, exact=exact)

    # -- near-duplicates (the work and its rules are in lookalike.duplicates; README)
    def duplicates(
        self, threshold: float | None = None, folders: Folders = None,
        keep: str | Sequence[str] = "resolution,size,oldest", *, calibrate: bool | str = "auto",
        verify: bool = True,
    ) -> list[DuplicateGroup]:  # fmt: skip
        """The groups of copies, largest first (arguments: :meth:`duplicate_report`).

        Example:
            >>> [g.keep for g in idx.duplicates(keep="resolution,oldest")]  # doctest: +SKIP
        """
        return self._copies.report(threshold, folders, keep, calibrate, verify).groups

    def duplicate_report(
        self, threshold: float | None = None, folders: Folders = None,
        keep: str | Sequence[str] = "resolution,size,oldest", *, calibrate: bool | str = "auto",
        verify: bool = True,
    ) -> DuplicateReport:  # fmt: skip
        """The groups with the threshold used (default: :meth:`duplicate_threshold`'s), the
        image count and the time; ``keep``: which file stays, criteria in order (README);
        ``verify=False`` skips the second look at each candidate pair."""
        return self._copies.report(threshold, folders, keep, calibrate, verify)

    def calibrate_duplicates(
        self, target_precision: float = 0.95, *, sample: int = 60, seed: int = 0
    ) -> Calibration:
        """Choose the duplicate threshold on edited copies of ``sample`` indexed images and
        record it for the index's model (:mod:`lookalike.duplicates.calibrate`)."""
        return self._copies.calibrate(target_precision, sample, seed)

    def duplicate_threshold(
        self, threshold: float | None = None, *, calibrate: bool | str = "auto",
        verify: bool = True,
    ) -> ThresholdChoice:  # fmt: skip
        """The duplicate threshold :meth:`duplicate_report` uses and where it comes from:
        given, else recorded for the model, else calibrated now (``calibrate``), else 0.90
        (with ``verify``: the cosine from which pairs get the second look)."""
        return self._copies.threshold(threshold, calibrate, verify)

    def duplicate_calibration(self) -> Calibration | None:
        """The calibration recorded for this index's model, or ``None``."""
        return self._copies.calibration()

    def move_duplicates(
        self, groups: Sequence[DuplicateGroup], destination: PathLike, *, dry_run: bool = False,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:  # fmt: skip
        """Move every non-kept member of ``groups`` into ``destination/<run>/`` under its whole
        path, journaled, never deleting or overwriting (:mod:`lookalike.duplicates.move`);
        ``DestinationError`` for a destination inside (or holding) an indexed folder."""
        return self._copies.move(groups, destination, dry_run, lock)

    def undo_duplicate_moves(
        self, manifest: PathLike, *, dry_run: bool = False,
        lock: AbstractContextManager[Any] | None = None,
    ) -> MoveReport:  # fmt: skip
        """Move the files of a move run back to their exact sources, after any crash,
        never over an existing file; the index gets their rows back."""
        return self._copies.undo(manifest, dry_run, lock)

    def apply_moves(self, moved: Sequence[tuple[str, str]]) -> None:
        """Tell the index that files moved, as ``(from, to)`` paths (kept inside an indexed
        folder, forgotten outside every one)."""
        self._copies.record_moves(moved)
