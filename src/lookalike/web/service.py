"""What the web routes ask of the index, as plain JSON-ready dicts.

A thin layer over :class:`~lookalike.Index`: it adds ids and thumbnail URLs to hits,
remembers recent uploads (so an upload's results survive a reload), and serialises access
to the index, whose SQLite connection and vector cache are not meant for concurrent
threads. Only the engine searches; nothing here ranks or embeds.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import numpy as np

from ..errors import ConfigError, QueryError
from .files import Thumbnails, servable
from .uploads import UploadDecoder, UploadError

T = TypeVar("T")
_UPLOADS_KEPT = 64  # recent upload vectors (8 KB each at 2048-d) kept for reloads
MAX_K = 500
MAX_PAGE = 500
_FOLDERS_TTL = 5.0
#: Uploads being embedded at once (one decodes, the others wait for it); one more is a 503
#: at once. Each waiting upload holds one of the server's worker threads (40 in all, shared
#: by every route): unbounded, 40 slow uploads stopped every other request.
MAX_UPLOADS = 4


def _unsigned(path: str, query: str) -> str:
    return f"{path}?{query}" if query else path


def shown(path: str) -> str:
    """A path as valid UTF-8 text: undecodable bytes (surrogate escapes) as ``\\xNN``."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


class Library:
    """The index as the web app sees it.

    Args:
        index: an open :class:`~lookalike.Index` (owned by the caller).
        thumbs: the thumbnail cache.
        max_upload_pixels: decompression-bomb limit for uploaded images.
        allow_moves: the server was started with ``--allow-moves``.
        uploads: decodes uploads in a worker process (default: 20 s per upload).
        max_uploads: uploads embedded or waiting at once; one more is refused (503).
        sign: ``sign(path, query) -> URL`` for the image and thumbnail URLs in answers
            (:meth:`lookalike.web.security.Guard.signed`: an ``<img>`` sends no token).
    """

    def __init__(
        self,
        index: Any,
        thumbs: Thumbnails,
        *,
        max_upload_pixels: int = 50_000_000,
        allow_moves: bool = False,
        uploads: UploadDecoder | None = None,
        sign: Callable[[str, str], str] | None = None,
        max_uploads: int = MAX_UPLOADS,
    ) -> None:
        self.index = index
        self.thumbs = thumbs
        self.uploads = uploads or UploadDecoder()
        self.sign = sign or _unsigned
        self.max_upload_pixels = max_upload_pixels
        self.allow_moves = allow_moves
        self._lock = threading.Lock()
        # Embedding an upload (and the model's first load, seconds to a minute) runs under
        # its own lock, so the gallery and searches by id keep answering meanwhile. It
        # touches the database only to read (or, on a new index, record) the setup.
        self._embed_lock = threading.Lock()
        self.max_uploads = max_uploads
        self._upload_slots = threading.BoundedSemaphore(max_uploads)
        self._uploads: OrderedDict[str, tuple[np.ndarray, bytes | None]] = OrderedDict()
        self._folders: tuple[float, list[str]] = (float("-inf"), [])

    @property
    def lock(self) -> threading.Lock:
        """The lock serialising access to the index (hold it only around index calls)."""
        return self._lock

    def locked(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` with the index to itself."""
        with self._lock:
            return fn(*args, **kwargs)

    # -- reading ------------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        data = self.locked(self.index.info)
        failed = data.get("failed") or []
        data["failed_count"] = len(failed)
        data["failed"] = [{**f, "path": shown(f["path"])} for f in failed[:1000]]
        data["folders"] = [shown(f) for f in data.get("folders") or []]
        data["clip"] = self.is_clip(data)
        data["duplicates"] = hasattr(self.index, "duplicates")
        data["allow_moves"] = self.allow_moves and self._mover() is not None
        return data

    def is_clip(self, info: dict[str, Any] | None = None) -> bool:
        """Whether text queries work (the index holds CLIP vectors)."""
        if not hasattr(self.index, "search_text"):
            return False
        if hasattr(self.index, "is_clip"):
            return bool(self.locked(getattr, self.index, "is_clip"))
        info = info if info is not None else self.locked(self.index.info)
        return info.get("space") == "clip"

    def folders(self) -> list[str]:
        """The indexed folders, re-read at most every few seconds (each file request asks)."""
        now = time.monotonic()
        if now - self._folders[0] > _FOLDERS_TTL:
            self._folders = (now, list(self.locked(self.index.info).get("folders") or []))
        return self._folders[1]

    def thumb_url(self, image_id: int, path: str) -> str:
        version = self.thumbs.version(path)
        return self.sign(f"/thumb/{image_id}", f"v={version}" if version else "")

    def image_url(self, image_id: int) -> str:
        return self.sign(f"/image/{image_id}", "")

    def _image(self, image_id: int, path: str) -> dict[str, Any]:
        return {
            "id": image_id,
            "path": shown(path),
            "thumb": self.thumb_url(image_id, path),
            "image": self.image_url(image_id),
        }

    def images(self, offset: int, limit: int) -> dict[str, Any]:
        if offset < 0 or not 0 <= limit <= MAX_PAGE:
            raise ConfigError(f"offset must be >= 0 and limit within 0..{MAX_PAGE}")
        total, rows = self.locked(self.index.images, offset, limit)
        return {"total": total, "offset": offset, "images": [self._image(i, p) for i, p in rows]}

    def image(self, image_id: int) -> dict[str, Any] | None:
        path = self.locked(self.index.image_path, image_id)
        return self._image(image_id, path) if path is not None else None

    def file_of(self, image_id: int) -> str | None:
        """The real path to serve for ``image_id``, or ``None`` (see :func:`servable`)."""
        found = self.thumb_of(image_id)
        return found[0] if found is not None else None

    def thumb_of(self, image_id: int) -> tuple[str, str] | None:
        """``(real path, thumbnail version)`` for ``image_id``, or ``None`` if not servable."""
        path = self.locked(self.index.image_path, image_id)
        if path is None:
            return None
        real = servable(path, self.folders())
        version = self.thumbs.version(path) if real is not None else None
        return (real, version) if real is not None and version is not None else None

    def _results(self, hits: Sequence[Any]) -> list[dict[str, Any]]:
        return [
            {
                "rank": h.rank,
                "score": round(float(h.score), 6),
                "path": shown(h.path),
                "id": h.id,
                "thumb": self.thumb_url(h.id, h.path) if h.id is not None else None,
                "image": self.image_url(h.id) if h.id is not None else None,
            }
            for h in hits
        ]

    # -- searching ----------------------------------------------------------------------

    @staticmethod
    def _check_k(k: int) -> None:
        if not 1 <= k <= MAX_K:
            raise ConfigError(f"k must be within 1..{MAX_K}")

    def similar(self, image_id: int, k: int, folder: str | None) -> dict[str, Any]:
        self._check_k(k)
        query = self.image(image_id)
        if query is None:
            raise QueryError(f"no image with id {image_id}", "unknown-id")
        hits = self.locked(self.index.similar_to_id, image_id, k, folder=folder)
        return {"query": query, "results": self._results(hits)}

    def search_upload(self, data: bytes, k: int, folder: str | None) -> dict[str, Any]:
        """Embed uploaded bytes (in memory) and search; the vector is kept for reloads."""
        self._check_k(k)
        key = hashlib.sha256(data).hexdigest()[:24]
        if key not in self._uploads:
            vec, preview = self.embed_upload(data)
            self._remember(key, vec, preview)
        return self.search_upload_key(key, k, folder)

    def embed(self, data: bytes) -> np.ndarray:
        """The vector of uploaded bytes (loads the model on first use)."""
        return self.embed_upload(data)[0]

    def embed_upload(self, data: bytes) -> tuple[np.ndarray, bytes | None]:
        """The vector of uploaded bytes and their preview JPEG (``None`` if none could be
        made); both decoded in the upload worker process, never here.

        Raises:
            UploadError: 503, :attr:`max_uploads` uploads are already in hand.
        """
        if not self._upload_slots.acquire(blocking=False):
            raise UploadError(
                503, f"busy with {self.max_uploads} other uploads: try again in a moment"
            )
        try:
            return self._embed_upload(data)
        finally:
            self._upload_slots.release()

    def _embed_upload(self, data: bytes) -> tuple[np.ndarray, bytes | None]:
        previews: list[bytes | None] = []

        def decode(raw: bytes, pre: Any, limits: Any) -> np.ndarray:
            pixels, preview = self.uploads.decode(raw, pre, limits)
            previews.append(preview)
            return pixels

        with self._embed_lock:
            vec = self.index.embed_bytes(data, max_pixels=self.max_upload_pixels, decode=decode)
        return vec, (previews[0] if previews else None)

    def search_upload_key(self, key: str, k: int, folder: str | None) -> dict[str, Any]:
        self._check_k(k)
        entry = self._uploads.get(key)
        if entry is None:
            raise QueryError(
                "this upload is no longer on the server (it restarted): upload it again",
                "unknown-upload",
            )
        hits = self.locked(self.index.search_vector, entry[0], k, folder=folder)
        thumb = self.sign(f"/thumb/upload/{key}", "") if entry[1] else None
        query = {"upload": key, "thumb": thumb}
        return {"query": query, "results": self._results(hits)}

    def upload_thumb(self, key: str) -> bytes | None:
        entry = self._uploads.get(key)
        return entry[1] if entry is not None else None

    def _remember(self, key: str, vec: np.ndarray, thumb: bytes | None) -> None:
        with self._lock:
            self._uploads[key] = (vec, thumb)
            self._uploads.move_to_end(key)
            while len(self._uploads) > _UPLOADS_KEPT:
                self._uploads.popitem(last=False)

    def search_text(self, text: str, k: int, folder: str | None) -> dict[str, Any]:
        self._check_k(k)
        if not text.strip():
            raise ConfigError("the text is empty")
        if not self.is_clip():
            model = self.locked(self.index.info).get("model")
            raise ConfigError(
                f"not a CLIP index: it holds image-only vectors from {model}; build one with "
                "`lookalike index FOLDER --model clip:ViT-B-32-256/datacomp_s34b_b86k`"
            )
        hits = self.locked(self.index.search_text, text, k=k, folder=folder)
        return {"query": {"text": text}, "results": self._results(hits)}

    # -- duplicates ---------------------------------------------------------------------

    def duplicates(self, threshold: float | None) -> dict[str, Any]:
        if not hasattr(self.index, "duplicates"):
            raise ConfigError("this lookalike has no duplicate search")
        if threshold is not None and not 0.0 < threshold <= 1.0:
            raise ConfigError("threshold must be within (0, 1]")
        found = self.locked(self.find_duplicates, threshold)
        groups = list(getattr(found, "groups", found))
        used = getattr(found, "threshold", threshold)
        paths = [m.path for g in groups for m in g.members]
        ids = self.locked(self.index.image_ids, paths)
        out = []
        for g in groups:
            members = []
            for m in g.members:
                image_id = ids.get(m.path)
                members.append(
                    {
                        "path": shown(m.path),
                        "score": round(float(m.score), 6),
                        "id": image_id,
                        "thumb": self.thumb_url(image_id, m.path) if image_id else None,
                        "image": self.image_url(image_id) if image_id else None,
                        "size": getattr(m, "size", -1),
                        "width": getattr(m, "width", 0),
                        "height": getattr(m, "height", 0),
                        "keep": m.path == g.keep,
                        "verified": bool(getattr(m, "verified", False)),
                    }
                )
            out.append({"keep": shown(g.keep), "min_score": float(g.min_score), "members": members})
        return {
            "threshold": used,
            "threshold_source": getattr(found, "threshold_source", None),
            "groups": out,
            "allow_moves": self.allow_moves and self._mover() is not None,
        }

    def find_duplicates(self, threshold: float | None) -> Any:
        """The duplicate report (or group list); call with the lock held.

        The threshold comes from the same rule as ``lookalike duplicates``
        (:func:`lookalike.duplicates.api.duplicate_threshold`): given, else the recorded
        calibration, else a calibration made now and recorded, so the CLI and the review
        show the same groups on one index (#20).
        """
        report = getattr(self.index, "duplicate_report", None)
        if report is not None:
            return report(threshold)
        return self.index.duplicates(threshold=threshold)

    def _mover(self) -> Callable[..., Any] | None:
        return getattr(self.index, "move_duplicates", None)
