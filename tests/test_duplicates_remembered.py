"""Verdicts of the second look remembered between runs (#19): a later run over the same
files takes them instead of reading the files again; a file changed in any way is looked at
again; the verdicts file, broken or replaced by something else, never fails or hangs a run.
Real photos, real files, the real second look; vectors given (every pair is a candidate)."""

from __future__ import annotations

import os
import random
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
import pytest

import lookalike.duplicates.remembered as remembered
import lookalike.duplicates.verify as verify
from lookalike import Index
from lookalike.decode import DecodeLimits
from lookalike.demo.samples import EDITS, load_originals
from lookalike.duplicates.remembered import FOLDER, NAME, Remembered
from lookalike.duplicates.verify import Verdict

NAMES = ["chelsea", "coffee", "astronaut", "rocket"]


@pytest.fixture(autouse=True)
def settled(monkeypatch):
    """Files written a moment ago are remembered here (the rule that a file whose times
    are within a few seconds of its read is not: its own test below)."""
    monkeypatch.setattr(remembered, "RACY_NS", 0)


def verdicts(db: Path) -> Path:
    return Path(f"{db}.cache") / FOLDER / NAME


@pytest.fixture(scope="module")
def photos():
    return load_originals(NAMES)


@pytest.fixture
def collection(tmp_path, photos):
    """Four photos and two edited copies as JPEG files, indexed with vectors that make
    every pair a candidate: the second look alone decides. Returns (db, folder)."""
    folder = tmp_path / "pics"
    folder.mkdir()
    images = dict(photos)
    images["chelsea_crop"] = EDITS["crop30"](photos["chelsea"], random.Random(0), photos["rocket"])
    images["coffee_small"] = EDITS["jpeg20"](photos["coffee"], random.Random(0), photos["rocket"])
    paths = []
    for name, im in images.items():
        path = folder / f"{name}.jpg"
        im.convert("RGB").save(path, quality=90)
        paths.append(str(path))
    rng = np.random.default_rng(0)
    base = rng.standard_normal(64)
    vectors = np.stack([base + 0.01 * rng.standard_normal(64) for _ in paths]).astype(np.float32)
    db = tmp_path / "pics.db"
    with Index.open(db) as idx:
        idx.add_embeddings(paths, vectors)
    return db, folder


def run(db: Path):
    with Index.open(db) as idx:
        return idx.duplicate_report(threshold=0.9, calibrate=False)


def groups(report) -> set[frozenset[str]]:
    return {frozenset(Path(m.path).name for m in g.members) for g in report.groups}


@pytest.fixture
def reads(monkeypatch):
    """Files the second look reads, by name."""
    seen: list[str] = []
    real = verify.look_at_file

    def counted(path, limits=None):
        seen.append(Path(os.fsdecode(path)).name)
        return real(path, limits)

    monkeypatch.setattr(verify, "look_at_file", counted)
    return seen


EXPECTED = {
    frozenset({"chelsea.jpg", "chelsea_crop.jpg"}),
    frozenset({"coffee.jpg", "coffee_small.jpg"}),
}


def test_a_second_run_takes_the_verdicts_it_remembered_and_reads_no_file(collection, reads):
    db, _ = collection
    first = run(db)
    assert groups(first) == EXPECTED
    assert first.looked == 15 and first.remembered == 0
    assert first.to_dict()["second_look"]["remembered"] == 0
    assert len(reads) == 6
    reads.clear()
    second = run(db)
    assert reads == []  # nothing read again
    assert second.looked == 15 and second.remembered == 15
    assert second.rejected == first.rejected
    assert second.to_dict()["groups"] == first.to_dict()["groups"]  # verified flags too
    assert second.to_dict()["second_look"]["remembered"] == 15


def test_a_file_changed_in_place_is_looked_at_again_even_with_its_size_and_time_kept(
    collection, photos, reads
):
    db, folder = collection
    assert groups(run(db)) == EXPECTED
    # The crop's file now holds another photo: same inode, same size (padded), its
    # modification time set back. Only its change time says so.
    target = folder / "chelsea_crop.jpg"
    st = os.stat(target)
    other = folder.parent / "other.jpg"
    photos["rocket"].convert("RGB").resize((200, 150)).save(other, quality=60)
    data = other.read_bytes()
    assert len(data) < st.st_size
    with open(target, "r+b") as f:
        f.write(data + b"\0" * (st.st_size - len(data)))
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    after = os.stat(target)
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )
    reads.clear()
    report = run(db)
    # The crop's five pairs were looked at again: it is a small copy of the rocket now.
    assert report.remembered == 10 and report.looked == 15
    assert "chelsea_crop.jpg" in reads
    assert groups(report) == {
        frozenset({"coffee.jpg", "coffee_small.jpg"}),
        frozenset({"rocket.jpg", "chelsea_crop.jpg"}),
    }


def two_files(tmp_path: Path) -> tuple[Path, Path, Remembered, tuple[bytes, bytes] | None]:
    """Two small files, verdicts remembered beside them, and the pair's keys."""
    a, b = tmp_path / "a.jpg", tmp_path / "b.jpg"
    a.write_bytes(b"a" * 100)
    b.write_bytes(b"b" * 100)
    memory = Remembered.open(tmp_path)
    assert memory is not None
    return a, b, memory, memory.keys(str(a), str(b))


def test_a_verdict_is_not_remembered_when_a_file_changed_while_it_was_looked_at(tmp_path):
    a, b, memory, keys = two_files(tmp_path)
    assert keys is not None and memory.keys(str(b), str(a)) == keys  # either order
    with open(b, "ab") as f:  # changed during the look
        f.write(b"more")
    memory.put(keys, Verdict(True, 0.9, 1.0, 50, False, "orb", 0.0), str(a), str(b))
    assert memory.get(keys) is None
    memory.put(keys := memory.keys(str(a), str(b)), Verdict(False, 0.1), str(a), str(b))
    found = memory.get(keys)
    assert found is not None and found.copy is False and found.remembered
    memory.close()
    # One file under two names (a hard link) is not a pair to remember.
    os.link(a, tmp_path / "a2.jpg")
    assert Remembered.keys(str(a), str(tmp_path / "a2.jpg")) is None


def test_another_version_of_the_look_starts_afresh(collection, reads, monkeypatch):
    db, _ = collection
    run(db)
    monkeypatch.setattr(remembered, "_VERSION", "another look")
    reads.clear()
    report = run(db)
    assert report.remembered == 0 and len(reads) == 6
    assert groups(report) == EXPECTED


def test_a_corrupt_verdicts_file_is_made_again(collection):
    db, _ = collection
    path = verdicts(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"not a database, " * 400)
    report = run(db)
    assert groups(report) == EXPECTED and report.remembered == 0
    with sqlite3.connect(path) as con:
        assert con.execute("SELECT COUNT(*) FROM looks").fetchone()[0] == 15
    assert run(db).remembered == 15


def test_a_fifo_at_the_verdicts_name_is_left_alone_and_never_blocks(collection):
    db, _ = collection
    path = verdicts(db)
    path.parent.mkdir(parents=True, exist_ok=True)
    os.mkfifo(path)
    out: list = []
    t = threading.Thread(target=lambda: out.append(run(db)), daemon=True)
    t.start()
    t.join(120)
    assert not t.is_alive(), "the run hung on a FIFO"
    assert groups(out[0]) == EXPECTED and out[0].remembered == 0
    assert path.is_fifo()


def test_a_verdicts_file_held_by_another_process_does_not_fail_the_run(collection):
    db, _ = collection
    run(db)
    path = verdicts(db)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")  # holds the write lock throughout the run
    try:
        report = run(db)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert groups(report) == EXPECTED


def test_the_verdicts_kept_are_bounded(collection, monkeypatch):
    db, _ = collection
    monkeypatch.setattr(remembered, "MAX_ROWS", 4)
    run(db)
    with sqlite3.connect(verdicts(db)) as con:
        assert con.execute("SELECT COUNT(*) FROM looks").fetchone()[0] == 4
    assert run(db).remembered <= 4


def test_verdicts_someone_else_could_write_are_not_used(collection, reads):
    # A verdict read from the file decides what --move-to moves: a file or folder another
    # user may write could have two distinct files moved as copies.
    db, _ = collection
    run(db)
    path = verdicts(db)
    folder = path.parent
    assert path.stat().st_mode & 0o777 == 0o600 and folder.stat().st_mode & 0o777 == 0o700
    for target, mode in ((folder, 0o777), (path, 0o666)):
        before = target.stat().st_mode & 0o777
        target.chmod(mode)
        reads.clear()
        report = run(db)
        assert report.remembered == 0 and len(reads) == 6, target
        assert groups(report) == EXPECTED
        target.chmod(before)
    assert run(db).remembered == 15


def test_a_file_rewritten_after_its_first_look_in_a_run_is_not_remembered_as_it_was(
    tmp_path, photos
):
    # Review (helper-25): the verifier keeps each file's prepared image for the run. A
    # file rewritten after it was first read (a sync client, an editor) is compared, in
    # the run's later pairs, from its old pixels; that verdict must not be remembered
    # under the file's new identity, where every later run would take it.
    x, y, z = (tmp_path / n for n in ("x.jpg", "y.jpg", "z.jpg"))
    photos["chelsea"].convert("RGB").save(x, quality=90)
    EDITS["crop30"](photos["chelsea"], random.Random(0), photos["rocket"]).convert("RGB").save(
        y, quality=90
    )
    photos["coffee"].convert("RGB").save(z, quality=90)
    memory = Remembered.open(tmp_path)
    assert memory is not None
    run1 = verify.Verifier(workers=1, memory=memory)
    assert run1.verdict(str(x), str(z)).copy is False  # x read (chelsea), kept for the run
    photos["rocket"].convert("RGB").save(x, quality=90)  # x rewritten: another photo
    run1.verdict(str(x), str(y))  # from x's old pixels: may say "copy" for this run...
    memory.close()
    truth = verify.Verifier(workers=1).verdict(str(x), str(y))
    assert truth.copy is False
    memory = Remembered.open(tmp_path)
    assert memory is not None
    later = verify.Verifier(workers=1, memory=memory).verdict(str(x), str(y))
    memory.close()
    assert later.copy == truth.copy  # ... but a later run must see the rocket


def test_a_verdicts_table_of_another_layout_is_made_again(collection):
    # (review of #19) A table with another layout under the current version was never
    # made again: every write failed, and no run remembered anything from then on.
    db, _ = collection
    run(db)
    path = verdicts(db)
    with sqlite3.connect(path) as con:
        con.execute("DROP TABLE looks")
        con.execute("CREATE TABLE looks (a BLOB, b BLOB, copy INTEGER, extra TEXT)")
    assert run(db).remembered == 0
    assert run(db).remembered == 15


def test_verdicts_of_a_run_of_another_version_at_the_same_time_are_not_taken(tmp_path, photos):
    # Review K1 (helper-26): run B (default limits) opens the verdicts file; run A (a
    # stricter --max-pixels: another version) opens it, drops B's table and labels the
    # file with its own version; B then writes its verdicts into A's table at its close.
    # A later strict run took B's "distinct" for a pair it cannot read (undecided, kept on
    # its cosine alone): its groups differed from a run without the file.
    from lookalike.decode import DecodeLimits

    os.chmod(tmp_path, 0o700)
    big, small = str(tmp_path / "big.png"), str(tmp_path / "small.jpg")
    photos["chelsea"].convert("RGB").resize((1800, 1200)).save(big)  # 2.16 MP
    photos["coffee"].convert("RGB").save(small, quality=90)
    loose, strict = DecodeLimits(), DecodeLimits(max_pixels=1_000_000)
    b_memory = Remembered.open(tmp_path, loose)  # run B starts
    a_memory = Remembered.open(tmp_path, strict)  # run A starts meanwhile
    assert a_memory is not None and b_memory is not None
    assert verify.Verifier(strict, memory=a_memory, workers=1).verdict(big, small).copy is None
    a_memory.close()
    assert verify.Verifier(loose, memory=b_memory, workers=1).verdict(big, small).copy is False
    b_memory.close()  # B's verdict written now
    later = Remembered.open(tmp_path, strict)
    verdict = verify.Verifier(strict, memory=later, workers=1).verdict(big, small)
    if later is not None:
        later.close()
    assert verdict.copy is None and not verdict.remembered  # what a strict look says


def test_verdicts_are_remembered_under_a_group_writable_umask(tmp_path, photos):
    # Review K3 (helper-26): under umask 002 (Ubuntu's, Fedora's and Debian's default for
    # a user with a private group) the index's cache folder is made 0775, and the verdicts
    # file was refused as one "another user may write": no run remembered anything.
    old = os.umask(0o002)
    try:
        folder = tmp_path / "pics"
        folder.mkdir()
        paths = []
        for name in ("chelsea", "coffee"):
            path = folder / f"{name}.jpg"
            photos[name].convert("RGB").save(path, quality=90)
            paths.append(str(path))
        db = tmp_path / "pics.db"
        with Index.open(db) as idx:
            idx.add_embeddings(paths, np.array([[1, 0], [0.99, 0.141]], dtype=np.float32))
        assert run(db).remembered == 0
        assert run(db).remembered == 1
    finally:
        os.umask(old)


def test_a_file_written_within_the_file_systems_tick_is_not_remembered(
    collection, reads, monkeypatch
):
    # Review of #19 (helper-26): on a file system whose times are coarse (a second, FAT's
    # two), a file rewritten in place at its size within that tick keeps its whole
    # identity, and a verdict on its old pixels would be taken for the new ones. A file
    # whose times are within a few seconds of its read is not remembered (git's rule).
    db, _ = collection
    monkeypatch.setattr(remembered, "RACY_NS", 3_000_000_000)
    run(db)  # the files were all written a moment ago
    reads.clear()
    report = run(db)
    assert report.remembered == 0 and len(reads) == 6
    assert groups(report) == EXPECTED
    # Once their times are older than that, they are; so are files whose modification
    # time lies in the future (a camera's clock, kept by `cp -p`: not a write now; the
    # third review of #19: such files were never remembered).
    future = time.time() + 10 * 24 * 3600
    for path in sorted(Path(db).parent.glob("pics/*.jpg"))[:3]:
        os.utime(path, (future, future))
    time.sleep(3.1)
    run(db)
    assert run(db).remembered == 15


def test_the_version_is_that_of_the_code_running(monkeypatch):
    # Review of #19 (helper-26): the version was a digest of the source files on disk,
    # read at the first open: a server started before an upgrade labelled its old code's
    # verdicts with the new version. It digests the code as loaded now.
    base = remembered.version()
    monkeypatch.setattr(remembered, "_VERSION", None)
    monkeypatch.setattr(verify, "MIN_AGREE", 0.99)
    assert remembered.version() != base
    monkeypatch.setattr(remembered, "_VERSION", None)
    monkeypatch.setattr(verify, "MIN_AGREE", verify.MIN_AGREE)
    assert remembered.version(None) != remembered.version(DecodeLimits(max_pixels=1_000_000))


def test_version_digest_covers_properties_defaults_and_tables():
    """Review of #19 (helper-27, review/l1_version_misses.py): a property's code, a
    function's defaults and a dict constant decide verdicts (Agreement.copy, _compare's
    refine, image._TRANSPOSE); changing one must change the digest."""
    import types as _types

    from lookalike.duplicates.remembered import _module_digest

    def make(rule: str, default: bool, table: dict) -> _types.ModuleType:
        m = _types.ModuleType("lookalike_l1_probe")
        exec(
            f"class A:\n    @property\n    def copy(self):\n        return {rule}\n"
            f"def f(x, refine={default}):\n    return x\nTABLE = {table!r}\n",
            m.__dict__,
        )
        return m

    base = _module_digest(make("self.s >= 0.6", True, {2: 1}))
    assert _module_digest(make("self.s > 0.99", True, {2: 1})) != base
    assert _module_digest(make("self.s >= 0.6", False, {2: 1})) != base
    assert _module_digest(make("self.s >= 0.6", True, {2: 3})) != base


# Ninth pass of #19: a verdict's `text_differs` (two pages read apart) decides whether a
# third image may join them; remembered without it, a later run would join two distinct
# pages that the first run kept apart.
def test_a_remembered_verdict_keeps_what_it_read(tmp_path):
    a, b, memory, keys = two_files(tmp_path)
    assert keys is not None
    told = Verdict(False, 0.95, 1.0, 0, False, "framing", 0.01, 7.5, text_differs=True)
    memory.put(keys, told, str(a), str(b))
    memory.close()
    again = Remembered.open(tmp_path)
    assert again is not None
    found = again.get(again.keys(str(a), str(b)))
    again.close()
    assert found is not None and found.remembered
    assert found == told and found.text_differs and found.glyphs == 7.5
