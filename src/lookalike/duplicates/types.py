"""What a duplicate search returns: groups of files, each with the file to keep."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class DuplicateMember:
    """One file of a :class:`DuplicateGroup`.

    Attributes:
        path: absolute path.
        score: cosine similarity to the kept file (1.0 for the kept file and for files
            byte-identical to it).
        size: bytes on disk when the group was built (-1 if the file could not be read).
        width: pixels (0 when unknown).
        height: pixels (0 when unknown).
        mtime: modification time, seconds since the epoch (0.0 when unknown).
        identical: byte-identical (same content hash) to the kept file.
        dev: device of the file when the group was built (0 when unknown).
        ino: inode of the file then (0 when unknown); with ``size`` and ``mtime_ns``, what
            the mover checks just before moving (the file must still be this one).
        mtime_ns: modification time in nanoseconds then (-1 when unknown).
        verified: the second look (:mod:`~lookalike.duplicates.verify`) confirmed that
            this file shows the kept file's picture; ``True`` for the kept file itself and
            for byte-identical files. ``False``: grouped on the cosine alone (the second
            look was turned off, could not read one of the two files, or one is too thin to
            compare: thinner than a tile).
    """

    path: str
    score: float
    size: int = -1
    width: int = 0
    height: int = 0
    mtime: float = 0.0
    identical: bool = False
    dev: int = 0
    ino: int = 0
    mtime_ns: int = -1
    verified: bool = False

    def to_dict(self) -> dict[str, Any]:
        """``{"path", "score", "verified"}``: the contract's member object."""
        return {"path": self.path, "score": self.score, "verified": self.verified}


@dataclass(frozen=True)
class DuplicateGroup:
    """A set of copies of one image; every member is at least the threshold similar to
    the kept file (groups never chain), and a file is in at most one group.

    Attributes:
        keep: absolute path of the file the keep rule chose.
        members: every file of the group, the kept file first (score 1.0), then by score
            descending.
        min_score: the lowest cosine between any two members.

    Example:
        >>> g = DuplicateGroup("/a.jpg", [DuplicateMember("/a.jpg", 1.0),
        ...                               DuplicateMember("/b.jpg", 0.97)], 0.97)
        >>> g.to_dict()["members"][1]
        {'path': '/b.jpg', 'score': 0.97, 'verified': False}
    """

    keep: str
    members: list[DuplicateMember]
    min_score: float

    @property
    def others(self) -> list[DuplicateMember]:
        """Every member except the kept file (what ``--move-to`` moves)."""
        return self.members[1:]

    def to_dict(self) -> dict[str, Any]:
        """``{"keep", "min_score", "members": [{"path", "score", "verified"}]}``, as
        ``--json`` prints."""
        return {
            "keep": self.keep,
            "min_score": self.min_score,
            "members": [m.to_dict() for m in self.members],
        }


#: Said of every precision measured with the second look's labels: it counts the look's
#: close calls as errors, but cannot see the look's own confident mistakes.
_TRUSTS = "; the precision trusts these labels, counting the close calls as errors"


@dataclass(frozen=True)
class Calibration:
    """The threshold chosen on edited copies of the index's own images.

    Two kinds exist. ``method="second-look"`` (#19): the second look
    (:mod:`~lookalike.duplicates.verify`) confirmed each edited copy and labelled each
    sampled image's nearest indexed images as copies or look-alikes; ``threshold`` is the
    cosine from which pairs are *candidates* for that look, and ``threshold_unverified``
    the cosine-only threshold (``--no-verify``), both measured against those labels.
    ``method="weakest-copy"``: recorded before #19, with neighbours counted as existing
    copies when they scored as high as a sample's weakest edited copy (look-alikes were
    invisible to its precision); still readable, replaced on the next calibration.

    Attributes:
        threshold: cosine from which two images count as copies (with the second look:
            from which they are looked at).
        precision: pair precision estimated at ``threshold`` (copies vs. distinct images).
        recall: fraction of the edited copies found at ``threshold``.
        target_precision: the precision asked for.
        images: indexed images sampled.
        copies: edited copies made and embedded.
        negatives: nearest indexed images compared (64 per sampled image).
        setup: the setup fingerprint the calibration belongs to (model, weights, pooling,
            preprocessing); another setup ignores it.
        per_edit: recall at ``threshold`` per kind of edit (``"a+b"``: two in a row).
        created: seconds since the epoch.
        recall_two_edits: fraction found of the copies two edits away from each other
            (pairs of edited copies, copies edited twice): how copies of one photo already
            in a collection usually relate. ``None`` in calibrations made before it.
        method: ``"second-look"`` or ``"weakest-copy"`` (see above).
        looked: nearest indexed images the second look labelled.
        looked_copies: of those, the ones it found to be copies.
        uncertain: labelled copies whose agreement was within a hair of the bar; the
            precision estimate counts them as errors.
        threshold_unverified: the cosine-only threshold (``None``: weakest-copy records).
        precision_unverified: its precision against the second look's labels.
        recall_unverified: its recall of the edited copies.
    """

    threshold: float
    precision: float
    recall: float
    target_precision: float
    images: int
    copies: int
    negatives: int
    setup: str
    per_edit: dict[str, float] = field(default_factory=dict)
    created: float = 0.0
    recall_two_edits: float | None = None
    method: str = "weakest-copy"
    looked: int = 0
    looked_copies: int = 0
    uncertain: int = 0
    threshold_unverified: float | None = None
    precision_unverified: float | None = None
    recall_unverified: float | None = None

    @property
    def second_look(self) -> bool:
        """Made with the second look (and meant for it)."""
        return self.method == "second-look"

    def sentence(self, second_look: bool = True) -> str:
        """What the threshold means and what it was measured on, e.g. ``"0.45: 99%
        precision on edited copies of your images, recall 0.95, 0.90 two edits apart,
        with a second look at each pair (measured on 60 images, 720 copies, and their
        480 nearest indexed images, which the second look labelled: 12 copies, 468
        look-alikes); without the second look 0.93"``.

        Args:
            second_look: describe the threshold used with the second look (``False``:
                the cosine-only one, as ``--no-verify`` uses it).
        """
        if not self.second_look:
            two = (
                ""
                if self.recall_two_edits is None
                else f", {self.recall_two_edits:.2f} two edits apart"
            )
            return (
                f"{self.threshold:.2f}: {self.precision:.0%} precision on edited copies of "
                f"your images, recall {self.recall:.2f}{two} ({self.images} images, "
                f"{self.copies} copies)"
            )
        measured = (
            f"(measured on {self.images} images, {self.copies} copies, and their "
            f"{self.looked} nearest indexed images, which the second look labelled: "
            f"{self.looked_copies} copies, {self.looked - self.looked_copies} look-alikes"
            f"{_TRUSTS})"
        )
        if not second_look:
            return (
                f"{self.threshold_unverified:.2f} without a second look: "
                f"{self.precision_unverified or 0:.0%} precision, recall "
                f"{self.recall_unverified or 0:.2f} {measured}"
            )
        two = f", {self.recall_two_edits:.2f} two edits apart" if self.recall_two_edits else ""
        return (
            f"{self.threshold:.2f}: {self.precision:.0%} precision on edited copies of your "
            f"images, recall {self.recall:.2f}{two}, with a second look at each pair "
            f"{measured}; without the second look {self.threshold_unverified:.2f}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "precision": self.precision,
            "recall": self.recall,
            "target_precision": self.target_precision,
            "images": self.images,
            "copies": self.copies,
            "negatives": self.negatives,
            "setup": self.setup,
            "per_edit": dict(self.per_edit),
            "created": self.created,
            "recall_two_edits": self.recall_two_edits,
            "method": self.method,
            "looked": self.looked,
            "looked_copies": self.looked_copies,
            "uncertain": self.uncertain,
            "threshold_unverified": self.threshold_unverified,
            "precision_unverified": self.precision_unverified,
            "recall_unverified": self.recall_unverified,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Calibration:
        def opt(key: str) -> float | None:
            return None if d.get(key) is None else float(d[key])

        return cls(
            threshold=float(d["threshold"]),
            precision=float(d["precision"]),
            recall=float(d["recall"]),
            target_precision=float(d["target_precision"]),
            images=int(d["images"]),
            copies=int(d["copies"]),
            negatives=int(d.get("negatives", 0)),
            setup=str(d["setup"]),
            per_edit={str(k): float(v) for k, v in dict(d.get("per_edit", {})).items()},
            created=float(d.get("created", 0.0)),
            recall_two_edits=opt("recall_two_edits"),
            method=str(d.get("method", "weakest-copy")),
            looked=int(d.get("looked", 0)),
            looked_copies=int(d.get("looked_copies", 0)),
            uncertain=int(d.get("uncertain", 0)),
            threshold_unverified=opt("threshold_unverified"),
            precision_unverified=opt("precision_unverified"),
            recall_unverified=opt("recall_unverified"),
        )


@dataclass
class DuplicateReport:
    """One duplicate search: its groups and how they were found.

    Attributes:
        threshold: the cosine threshold used.
        images: images looked at (after any folder restriction).
        seconds: wall time of the search.
        groups: the groups, largest first, then by ``min_score`` descending.
        threshold_source: ``"given"``, ``"calibrated"`` or ``"default"``.
        calibration: the calibration behind the threshold, when there is one.
        candidate_pairs: pairs re-checked exactly after the approximate stage.
        method: ``"exact"`` or ``"ivf"`` (how candidate pairs were searched).
        second_look: candidate pairs were given the second look before grouping.
        looked: pairs the second look decided.
        rejected: of those, pairs it found to be distinct images (look-alikes).
        undecided: pairs it could not decide (a file missing or unreadable, an image
            thinner than a tile).
        passed_over: pairs not looked at (not grouped): both images had had enough pairs
            turned down, or the run's budget of turned-down pairs was spent.
        look_budget_spent: the run's budget of turned-down pairs was spent (every pair
            after it was passed over).
        inferred: pairs kept (verified) because both images are confirmed copies of a
            third one.
        look_seconds: wall time of the second look (part of ``seconds``).
        remembered: of the pairs decided (``looked``), those whose verdict an earlier
            run had made for the same two files (:mod:`~lookalike.duplicates.remembered`):
            not looked at again.
    """

    threshold: float
    images: int
    seconds: float
    groups: list[DuplicateGroup]
    threshold_source: str = "default"
    calibration: Calibration | None = None
    candidate_pairs: int = 0
    method: str = "exact"
    second_look: bool = False
    looked: int = 0
    rejected: int = 0
    undecided: int = 0
    passed_over: int = 0
    inferred: int = 0
    look_seconds: float = 0.0
    look_budget_spent: bool = False
    remembered: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The ``duplicates --json`` object: ``{"threshold", "images", "seconds", "groups"}``,
        and ``"second_look"`` when it ran: what it looked at, and the pairs it passed over
        (not grouped)."""
        out: dict[str, Any] = {
            "threshold": self.threshold,
            "images": self.images,
            "seconds": round(self.seconds, 4),
            "groups": [g.to_dict() for g in self.groups],
        }
        if self.second_look:
            out["second_look"] = {
                "looked": self.looked,
                "rejected": self.rejected,
                "undecided": self.undecided,
                "inferred": self.inferred,
                "passed_over": self.passed_over,
                "budget_spent": self.look_budget_spent,
                "remembered": self.remembered,
            }
        return out


@dataclass(frozen=True)
class MoveProblem:
    """A file ``--move-to`` did not move, and why (``vanished``, ``changed``, ``exists``...)."""

    path: str
    reason: str
    detail: str = ""


@dataclass
class MoveReport:
    """What :func:`~lookalike.duplicates.move_duplicates` did (or would do, on a dry run).

    Attributes:
        moved: ``(source, destination)`` pairs, absolute paths.
        skipped: files left in place, with the reason.
        manifest: the undo manifest written (``None`` on a dry run or when nothing moved).
        dry_run: nothing was changed.
    """

    moved: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[MoveProblem] = field(default_factory=list)
    manifest: str | None = None
    dry_run: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "moved": [{"from": a, "to": b} for a, b in self.moved],
            "skipped": [
                {"path": p.path, "reason": p.reason, "detail": p.detail} for p in self.skipped
            ],
            "manifest": self.manifest,
            "dry_run": self.dry_run,
        }
