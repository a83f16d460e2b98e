"""Plain result types shared by the engine and its adapters."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Hit:
    """One search result.

    Attributes:
        rank: 1 for the best match.
        score: cosine similarity to the query, in [-1, 1].
        path: absolute path of the matching image.
        id: the image's id in the index (what the web UI addresses images by); ``None``
            when unknown. Not part of equality, nor of :meth:`to_dict` (the CLI's JSON).
    """

    rank: int
    score: float
    path: str
    id: int | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"rank": self.rank, "score": self.score, "path": self.path}


@dataclass(frozen=True)
class FailedFile:
    """A file that could not be indexed.

    Attributes:
        path: the file's path.
        reason: a short code (see :data:`lookalike.decode.REASONS`), e.g. ``"truncated"``.
        detail: a human sentence with specifics; may be empty.
    """

    path: str
    reason: str
    detail: str = ""

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "reason": self.reason}


@dataclass
class IndexReport:
    """What one :meth:`lookalike.Index.update` run did.

    ``images_per_second`` is images embedded divided by the seconds spent embedding them
    (decoding overlaps with embedding). ``reused`` counts files that got an existing vector
    through their content hash (renamed, moved or copied files) instead of being embedded.
    """

    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: list[FailedFile] = field(default_factory=list)
    seconds: float = 0.0
    images_per_second: float = 0.0
    embedded: int = 0
    reused: int = 0
    embed_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of ``lookalike index --json`` (contract keys first)."""
        return {
            "added": self.added,
            "updated": self.updated,
            "removed": self.removed,
            "unchanged": self.unchanged,
            "failed": [f.to_dict() for f in self.failed],
            "seconds": round(self.seconds, 4),
            "images_per_second": round(self.images_per_second, 3),
            "embedded": self.embedded,
            "reused": self.reused,
        }


def as_plain(obj: Any) -> Any:
    """A dataclass as plain dicts/lists, for JSON."""
    return asdict(obj)
