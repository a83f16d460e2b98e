"""The mover, run in a fresh interpreter by ``test_duplicates_crash.py`` so that it can be
killed (SIGKILL) at one of its steps. A fresh interpreter, not ``os.fork``: a forked child
inherits the parent's locks and thread pools (OpenMP, OpenCV) in whatever state they were,
and once hung on such a lock forever (#19).

    python crash_child.py SPEC_JSON

SPEC: {"action": "move" | "undo", "db": ..., "dest": ..., "threshold": ...,
       "kill": {"at": N} | {"name": STEP} | {"unlinked_gone": PATH},
       "vanish": PATH (move only: deleted after listing, before moving),
       "moved": N (move only: how many files a complete move moves)}"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from fakes import PixelEmbedder

from lookalike import Index
from lookalike.duplicates import transfer


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _hook(kill: dict):
    seen = [0]

    def hook(name: str) -> None:
        seen[0] += 1
        if "at" in kill and seen[0] == kill["at"]:
            _die()
        if "name" in kill and name == kill["name"]:
            _die()
        if (
            "unlinked_gone" in kill
            and name == "unlinked"
            and not os.path.exists(kill["unlinked_gone"])
        ):
            _die()

    return hook


def _undo_file(dest: Path) -> Path | None:
    found = sorted(dest.glob("lookalike-undo-*.json")) or sorted(dest.glob("*.journal"))
    return found[0] if found else None


def main(spec: dict) -> None:
    transfer.STEP_HOOK = _hook(spec.get("kill", {}))
    with Index.open(spec["db"], embedder=PixelEmbedder(), workers=0) as idx:
        if spec["action"] == "move":
            groups = idx.duplicates(threshold=spec["threshold"], calibrate=False)
            if spec.get("vanish"):
                os.unlink(spec["vanish"])
            report = idx.move_duplicates(groups, spec["dest"])
            if "moved" in spec:
                assert len(report.moved) == spec["moved"], report
        elif spec["action"] == "undo":
            idx.undo_duplicate_moves(_undo_file(Path(spec["dest"])))
        else:
            raise SystemExit(f"unknown action {spec['action']!r}")


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
