"""The undo journal of one move run: what was planned, and how far each move got.

A run writes three things into the destination ``DEST``:

* ``DEST/<run>/``: the moved files, each under its whole absolute source path, so two
  targets can never collide (two indexed folders both named ``photos`` included);
* ``DEST/lookalike-undo-<run>.journal``: JSON Lines, appended and ``fsync``-ed record by
  record. Before anything moves it holds every planned move: the exact source path (as
  base64 of its bytes, so any file name round-trips), the file's identity (device, inode,
  size, mtime) and content hash, its target, and the index row to give back on undo.
  Then each phase of each move (``linked`` or ``copied`` + ``placed``, ``unlinked``,
  ``indexed``; ``undone`` on undo) is appended before the next begins. A torn last line
  (a crash mid-write) is ignored;
* ``DEST/lookalike-undo-<run>.json``: the manifest people read and ``--undo`` takes:
  ``{"version", "created", "destination", "journal", "complete", "moves": [{"from",
  "to"}]}``, written before the first move (the plan) and rewritten at the end (what
  moved). Undo trusts only the journal and the files themselves.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .transfer import Identity, fsync_dir, step

MANIFEST_PREFIX = "lookalike-undo-"
JOURNAL_SUFFIX = ".journal"
VERSION = 2


def encode_path(path: str) -> str:
    """A path as ASCII text that gives back its exact bytes (base64 of ``os.fsencode``)."""
    return base64.b64encode(os.fsencode(path)).decode("ascii")


def decode_path(text: str) -> str:
    return os.fsdecode(base64.b64decode(text))


def readable(path: str) -> str:
    """A path as valid UTF-8 text for people (undecodable bytes as ``\\xNN``)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def encode_row(size: int, mtime_ns: int, digest: str | None, vector: np.ndarray) -> dict[str, Any]:
    """An index row (without id) as JSON: the vector as base64 little-endian float32."""
    vec = np.ascontiguousarray(vector, dtype="<f4").reshape(-1)
    return {
        "size": int(size),
        "mtime_ns": int(mtime_ns),
        "hash": digest,
        "vector": base64.b64encode(vec.tobytes()).decode("ascii"),
    }


def decode_vector(row: dict[str, Any]) -> np.ndarray:
    """float32 ``(dim,)`` of a row written by :func:`encode_row`."""
    return np.frombuffer(base64.b64decode(row["vector"]), dtype="<f4").astype(np.float32)


@dataclass
class Planned:
    """One planned move, as the journal records it, with the phases it reached."""

    n: int
    source: str
    target: str
    identity: Identity
    digest: str
    row: dict[str, Any] | None = None
    phases: list[str] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        return {
            "kind": "plan",
            "n": self.n,
            "src": encode_path(self.source),
            "dst": encode_path(self.target),
            "path": readable(self.source),
            "dev": self.identity.dev,
            "ino": self.identity.ino,
            "size": self.identity.size,
            "mtime_ns": self.identity.mtime_ns,
            "hash": self.digest,
            "row": self.row,
        }

    @classmethod
    def from_record(cls, r: dict[str, Any]) -> Planned:
        ident = Identity(int(r["dev"]), int(r["ino"]), int(r["size"]), int(r["mtime_ns"]))
        return cls(
            int(r["n"]),
            decode_path(r["src"]),
            decode_path(r["dst"]),
            ident,
            str(r["hash"]),
            r.get("row"),
        )


def _line(record: dict[str, Any]) -> bytes:
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


class Journal:
    """An open journal: appends records, each batch flushed and synced before returning."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd = os.open(path, os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0))
        end = os.lseek(self._fd, 0, os.SEEK_END)
        if end and os.pread(self._fd, 1, end - 1) != b"\n":
            os.write(self._fd, b"\n")  # after a line torn by a crash: start a fresh one

    def append(self, *records: dict[str, Any]) -> None:
        data = b"".join(_line(r) for r in records)
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
        step("journal")

    def phase(self, n: int, name: str, detail: str = "") -> None:
        record: dict[str, Any] = {"kind": "phase", "n": n, "phase": name}
        if detail:
            record["detail"] = readable(detail)
        self.append(record)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)


@dataclass
class Run:
    """Where one move run writes: its folder, journal and manifest."""

    destination: str
    name: str

    @property
    def folder(self) -> str:
        return os.path.join(self.destination, self.name)

    @property
    def journal(self) -> str:
        return os.path.join(self.destination, f"{MANIFEST_PREFIX}{self.name}{JOURNAL_SUFFIX}")

    @property
    def manifest(self) -> str:
        return os.path.join(self.destination, f"{MANIFEST_PREFIX}{self.name}.json")

    def target(self, source: str) -> str:
        """The target of ``source``: its whole absolute path below the run folder."""
        _drive, rest = os.path.splitdrive(os.path.abspath(source))
        return os.path.join(self.folder, rest.lstrip(os.sep))


def start_run(destination: str) -> tuple[Run, Journal]:
    """Create a new run folder and its journal (with its header) in ``destination``.

    Names come from the time; the folder is made with ``mkdir`` and the journal with
    ``O_EXCL``, so a run never shares either with another.
    """
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for k in range(10_000):
        run = Run(destination, stamp if k == 0 else f"{stamp}-{k}")
        if os.path.lexists(run.manifest):
            continue
        try:
            os.mkdir(run.folder)
        except FileExistsError:
            continue
        try:
            fd = os.open(run.journal, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            os.rmdir(run.folder)
            continue
        os.close(fd)
        fsync_dir(destination)
        journal = Journal(run.journal)
        journal.append(
            {
                "kind": "header",
                "version": VERSION,
                "created": time.time(),
                "destination": encode_path(destination),
                "run": run.name,
            }
        )
        return run, journal
    raise FileExistsError(f"no free run name in {destination}")


def write_manifest(run: Run, moves: list[tuple[str, str]], *, complete: bool) -> None:
    """The readable manifest: first written exclusively, later replaced atomically."""
    data = {
        "version": VERSION,
        "created": time.time(),
        "destination": run.destination,
        "journal": os.path.basename(run.journal),
        "complete": complete,
        "moves": [{"from": a, "to": b} for a, b in moves],
    }
    # ensure_ascii: undecodable bytes (surrogate escapes) are written as \\udcXX escapes,
    # which Python reads back exactly; the journal holds the bytes anyway.
    text = json.dumps(data, indent=1, ensure_ascii=True)
    if not complete:
        with open(run.manifest, "x", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    else:
        tmp = run.manifest + ".tmp"
        with open(tmp, "w", encoding="ascii") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, run.manifest)
    fsync_dir(run.destination)


def journal_for(manifest: str) -> str | None:
    """The journal a manifest names (``None``: a manifest from before journals)."""
    if manifest.endswith(JOURNAL_SUFFIX):
        return manifest
    with open(manifest, encoding="utf-8") as f:
        data = json.load(f)
    name = data.get("journal") if isinstance(data, dict) else None
    if not name:
        return None
    return os.path.join(os.path.dirname(os.path.abspath(manifest)), os.path.basename(name))


def read_journal(path: str) -> tuple[Run, list[Planned]]:
    """The run and its planned moves, each with the phases it reached."""
    header: dict[str, Any] | None = None
    plans: dict[int, Planned] = {}
    with open(path, "rb") as f:
        lines = f.read().split(b"\n")
    for raw in lines:
        if not raw.strip():
            continue
        try:
            r = json.loads(raw)
        except ValueError:
            continue  # a torn last line: the crash came mid-write
        kind = r.get("kind")
        if kind == "header":
            header = r
        elif kind == "plan":
            p = Planned.from_record(r)
            plans[p.n] = p
        elif kind == "phase" and int(r["n"]) in plans:
            plans[int(r["n"])].phases.append(str(r["phase"]))
    if header is None:
        raise ValueError(f"{path} is not a lookalike undo journal")
    recorded = decode_path(header["destination"])
    # The journal lives in the destination: if that folder was renamed or moved since,
    # its run folder (and every target) moved with it.
    here = os.path.dirname(os.path.abspath(path))
    if here != recorded:
        for p in plans.values():
            if p.target.startswith(recorded.rstrip(os.sep) + os.sep):
                p.target = here + p.target[len(recorded.rstrip(os.sep)) :]
    run = Run(here, str(header["run"]))
    return run, [plans[n] for n in sorted(plans)]
