"""Moving duplicates survives any crash (#18): the mover is killed (SIGKILL) at every
step (journal writes, link or cross-device copy + fsync + place, unlink, index update),
then undo puts every byte back at its own path and the index equals what it was. Two
indexed folders share a base name (``a/photos``, ``b/photos``) and one lives on another
file system (``/dev/shm``), so both the link and the copy paths are killed at each step.

Also: one folder under two paths (a bind mount, in a private mount namespace made with
``unshare -m``) is never grouped with itself nor moved away from under itself."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fakes import PixelEmbedder, photo
from PIL import Image

from lookalike import Index

pytestmark = pytest.mark.skipif(os.name != "posix", reason="needs SIGKILL (POSIX)")

T = 0.98


def _library(a: Path, b: Path) -> None:
    """An original and two edited copies named ``cat.jpg`` in two ``photos`` folders; a
    second original with a copy; one lone photo."""
    src = photo(a / "orig.png", 1, (64, 48))
    with Image.open(src) as im:
        im.convert("RGB").save(a / "cat.jpg", quality=92)
        b.mkdir(parents=True, exist_ok=True)
        im.convert("RGB").save(b / "cat.jpg", quality=85)
    dog = photo(b / "dog.png", 7, (64, 48))
    (a / "sub").mkdir()
    with Image.open(dog) as im:
        im.convert("RGB").save(a / "sub" / "dog.jpg", quality=90)
    photo(a / "lone.png", 3, (64, 48))


def _files(*roots: Path) -> dict[str, bytes]:
    out = {}
    for root in roots:
        for here, _dirs, names in os.walk(root):
            for name in names:
                path = os.path.join(here, name)
                with open(path, "rb") as f:
                    out[path] = f.read()
    return out


def _rows(idx: Index) -> dict[bytes, tuple]:
    store = idx._store
    out = {}
    for path, row in store.files_under(os.fsencode(os.sep)).items():
        _, vec = store.lookup(path)
        out[path] = (row.size, row.mtime_ns, row.hash, np.asarray(vec).tobytes())
    return out


def _open(db: Path) -> Index:
    return Index.open(db, embedder=PixelEmbedder(), workers=0)


CHILD = Path(__file__).with_name("crash_child.py")


def _killed_at(n: int, action: str, db: Path, dest: Path, **spec) -> bool:
    """Run the mover (``action``: "move" or "undo") in a fresh interpreter that SIGKILLs
    itself at its ``n``-th step, or where ``spec["kill"]`` says; True when it was killed
    (False: it finished first)."""
    spec = {
        "action": action,
        "db": str(db),
        "dest": str(dest),
        "threshold": T,
        "kill": {"at": n},
        **spec,
    }
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(spec)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    if p.returncode == -signal.SIGKILL:
        return True
    assert p.returncode == 0, f"the child failed at step {n}: {p.stderr}"
    return False


def _undo_file(dest: Path) -> Path | None:
    found = sorted(dest.glob("lookalike-undo-*.json")) or sorted(dest.glob("*.journal"))
    return found[0] if found else None


@pytest.fixture
def two_roots(tmp_path):
    shm = Path("/dev/shm")
    if not shm.is_dir() or os.stat(shm).st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("needs /dev/shm on another file system than the temporary folder")
    other = Path(tempfile.mkdtemp(dir=shm, prefix="lookalike-crash-"))
    yield tmp_path / "a" / "photos", other / "b" / "photos"
    shutil.rmtree(other, ignore_errors=True)


def test_kill_the_mover_at_every_step_then_undo(tmp_path, two_roots):
    a, b = two_roots
    _library(a, b)
    db, dest = tmp_path / "i.db", tmp_path / "dups"
    with _open(db) as idx:
        idx.update(a, b)  # two roots named "photos"
        groups = idx.duplicates(threshold=T, calibrate=False)
        before_rows = _rows(idx)
    assert sorted(len(g.members) for g in groups) == [2, 3]  # cat x3 (two roots), dog x2
    before = _files(a.parent, b.parent)
    # A snapshot of the whole state (files, index, cache), restored before each run.
    snap = tmp_path / "snap"
    for path in (a.parent, b.parent):
        shutil.copytree(path, snap / path.relative_to("/"), copy_function=shutil.copy2)
    for path in tmp_path.glob("i.db*"):
        (shutil.copytree if path.is_dir() else shutil.copy2)(path, snap / path.name)

    def restore() -> None:
        for path in (a.parent, b.parent, dest):
            shutil.rmtree(path, ignore_errors=True)
        for path in (a.parent, b.parent):
            shutil.copytree(snap / path.relative_to("/"), path, copy_function=shutil.copy2)
        for path in tmp_path.glob("i.db*"):
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        for path in snap.glob("i.db*"):
            (shutil.copytree if path.is_dir() else shutil.copy2)(path, tmp_path / path.name)

    def move() -> None:
        with _open(db) as idx:
            report = idx.move_duplicates(idx.duplicates(threshold=T, calibrate=False), dest)
        assert len(report.moved) == 3, report

    def undo() -> None:
        with _open(db) as idx:
            idx.undo_duplicate_moves(_undo_file(dest))

    def check(n: int) -> None:
        assert _files(a.parent, b.parent) == before, f"files differ after a kill at step {n}"
        left = {p.name for p in dest.iterdir()} if dest.exists() else set()
        assert all(name.startswith("lookalike-undo-") for name in left), (n, left)
        with _open(db) as idx:
            assert _rows(idx) == before_rows, f"index differs after a kill at step {n}"

    steps = 0
    while True:
        steps += 1
        restore()
        killed = _killed_at(steps, "move", db, dest, moved=3)
        if not killed:
            break
        manifest = _undo_file(dest)
        if manifest is not None:
            with _open(db) as idx:
                report = idx.undo_duplicate_moves(manifest)
                reasons = {p.reason for p in report.skipped}
                assert reasons <= {"never-moved", "already-back"}, (steps, report.skipped)
                # Undo is idempotent: a second one finds everything back.
                again = idx.undo_duplicate_moves(manifest)
                assert not again.moved
                assert {p.reason for p in again.skipped} <= {"never-moved", "already-back"}
        check(steps)
    assert steps > 20  # journal x2, manifest, then every phase of 3 moves (link and copy)
    # A complete move, then undo killed at every one of its own steps, then undo again.
    undo_steps = 0
    while True:
        undo_steps += 1
        restore()
        move()
        if not _killed_at(undo_steps, "undo", db, dest):
            check(undo_steps)
            break
        undo()
        check(undo_steps)
    assert undo_steps > 6
    with _open(db) as idx:  # the index and its cache answer as before
        again = idx.duplicates(threshold=T, calibrate=False)
        assert [[m.path for m in g.members] for g in again] == [
            [m.path for m in g.members] for g in groups
        ]


def test_a_crash_between_listing_and_moving_never_mixes_two_roots_of_one_name(tmp_path, two_roots):
    # (#18, case 2) A's cat.jpg vanishes after listing; the mover is killed right after
    # moving B's cat.jpg. Undo puts B's file back at B's path and nothing at A's.
    a, b = two_roots
    _library(a, b)
    db, dest = tmp_path / "i.db", tmp_path / "dups"
    with _open(db) as idx:
        idx.update(a, b)  # two roots named "photos"
        groups = idx.duplicates(threshold=T, calibrate=False)
    b_cat = (b / "cat.jpg").read_bytes()
    assert sorted(len(g.members) for g in groups) == [2, 3]  # the listing holds A's cat.jpg
    # The child lists the groups, then A's cat.jpg vanishes; it is killed once B's is moved.
    kill = {"unlinked_gone": str(b / "cat.jpg")}
    assert _killed_at(0, "move", db, dest, kill=kill, vanish=str(a / "cat.jpg"))
    with _open(db) as idx:
        report = idx.undo_duplicate_moves(_undo_file(dest))
    back = [dst for _, dst in report.moved]
    assert str(b / "cat.jpg") in back and str(a / "cat.jpg") not in back
    assert (b / "cat.jpg").read_bytes() == b_cat
    assert not (a / "cat.jpg").exists()


def test_the_index_forgets_each_file_as_it_moves(tmp_path, two_roots):
    # (#18, case 2) Killed after the first move's index step: that file is gone from the
    # index at once, the others are still there and still in place.
    a, b = two_roots
    _library(a, b)
    db, dest = tmp_path / "i.db", tmp_path / "dups"
    with _open(db) as idx:
        idx.update(a, b)  # two roots named "photos"
        images = idx.info()["images"]

    assert _killed_at(0, "move", db, dest, kill={"name": "index"})
    with _open(db) as idx:
        assert idx.info()["images"] == images - 1
        total, rows = idx.images(0, 100)
        assert total == images - 1
        assert all(os.path.exists(p) for _, p in rows)  # no file that has moved away
        hits = idx.search(str(a / "orig.png"), k=20)
        assert hits and all(os.path.exists(h.path) for h in hits)


BIND_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import numpy as np
    from lookalike import Index
    from lookalike.duplicates import DuplicateGroup, DuplicateMember
    from lookalike.duplicates.move import move_groups

    a, b, db, dest = sys.argv[1:5]
    with Index.open(db) as idx:
        paths = [os.path.join(a, "x.png"), os.path.join(b, "x.png")]
        idx.add_embeddings(paths, np.stack([np.eye(8, dtype=np.float32)[0]] * 2))
        idx._store.add_folders([os.fsencode(a), os.fsencode(b)])
        groups = idx.duplicates(threshold=0.9, calibrate=False)
        assert groups == [], groups  # one file under two paths is not a copy
        # Even handed a group that pairs them, the mover leaves it alone.
        g = DuplicateGroup(paths[0], [DuplicateMember(paths[0], 1.0),
                                      DuplicateMember(paths[1], 1.0)], 1.0)
        report = idx.move_duplicates([g], dest)
        assert not report.moved, report
        assert [p.reason for p in report.skipped] == ["same-file"], report.skipped
    assert os.path.exists(paths[0]) and os.path.exists(paths[1])
    print("ok")
    """
)


def test_one_folder_under_two_paths_is_never_moved_away_from_under_itself(tmp_path):
    # (#18, case 1) A bind mount shows one folder at two paths.
    if shutil.which("unshare") is None or os.geteuid() != 0:
        pytest.skip("needs unshare and root for a private bind mount")
    probe = subprocess.run(["unshare", "-m", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare -m is not allowed here: {probe.stderr.decode().strip()}")
    a, b = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    a.mkdir(parents=True)
    b.mkdir(parents=True)
    photo(a / "x.png", 1)
    script = tmp_path / "bind.py"
    script.write_text(BIND_SCRIPT)
    dest = tmp_path / "dups"
    cmd = (
        f"mount --make-rprivate / && mount --bind {a} {b} && "
        f"{sys.executable} {script} {a} {b} {tmp_path / 'i.db'} {dest}"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.run(
        ["unshare", "-m", "sh", "-c", cmd], capture_output=True, text=True, env=env, timeout=120
    )
    assert p.returncode == 0 and "ok" in p.stdout, (p.stdout, p.stderr)
    assert (a / "x.png").exists() and not list(dest.rglob("x.png"))
