"""Hostile review of the mover (#18, review): undo never moves a file the run did not put
in its own folder (a journal or manifest edited by hand), a file written to or replaced
while it moves keeps its new bytes, and two runs with opposite keep rules never move both
copies away."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from fakes import PixelEmbedder, photo
from PIL import Image

from lookalike import Index
from lookalike.duplicates import transfer

T = 0.98


def _library(tmp_path: Path) -> tuple[Path, Path, Index]:
    photos = tmp_path / "photos"
    orig = photo(photos / "a.png", 1)
    with Image.open(orig) as im:
        im.convert("RGB").save(photos / "a_copy.jpg", "JPEG", quality=90)
    idx = Index.open(tmp_path / "i.db", embedder=PixelEmbedder(), workers=0)
    idx.update(photos)
    return orig, photos / "a_copy.jpg", idx


def _plan(n: int, src: Path, dst: Path) -> bytes:
    """A plan record as someone editing the journal by hand would write it."""
    st = os.stat(dst)
    return (
        json.dumps(
            {
                "kind": "plan",
                "n": n,
                "src": base64.b64encode(os.fsencode(str(src))).decode(),
                "dst": base64.b64encode(os.fsencode(str(dst))).decode(),
                "path": str(src),
                "dev": st.st_dev,
                "ino": st.st_ino,
                "size": st.st_size,
                "mtime_ns": st.st_mtime_ns,
                "hash": hashlib.blake2b(dst.read_bytes(), digest_size=16).hexdigest(),
                "row": None,
            }
        )
        + "\n"
    ).encode()


def test_undo_never_touches_a_file_outside_the_runs_own_folder(tmp_path):
    orig, copy, idx = _library(tmp_path)
    kept_bytes = orig.read_bytes()
    precious = tmp_path / "home" / "precious.jpg"
    precious.parent.mkdir()
    precious.write_bytes(b"the user's own file")
    with idx:
        report = idx.move_duplicates(idx.duplicates(threshold=T, calibrate=False), tmp_path / "d")
        journal = report.manifest.replace(".json", ".journal")
        with open(journal, "ab") as f:
            f.write(_plan(50, orig, orig))  # "target" = the kept file itself
            f.write(_plan(51, tmp_path / "elsewhere" / "x.jpg", precious))  # outside DEST
        back = idx.undo_duplicate_moves(report.manifest)
    assert [(a, b) for a, b in back.moved] == [(report.moved[0][1], str(copy))]
    assert sorted(p.reason for p in back.skipped) == ["outside-run", "outside-run"]
    assert orig.read_bytes() == kept_bytes  # the old code removed it as a "second name"
    assert precious.read_bytes() == b"the user's own file"
    assert not (tmp_path / "elsewhere").exists()


def test_undo_of_a_journal_naming_another_folder_removes_no_folder_outside_it(tmp_path):
    _orig, copy, idx = _library(tmp_path)
    empty = tmp_path / "mine" / "empty"
    empty.mkdir(parents=True)
    with idx:
        report = idx.move_duplicates(idx.duplicates(threshold=T, calibrate=False), tmp_path / "d")
        journal = Path(report.manifest.replace(".json", ".journal"))
        lines = journal.read_bytes().splitlines()
        header = json.loads(lines[0])
        header["run"] = "../mine"
        journal.write_bytes(b"\n".join([json.dumps(header).encode(), *lines[1:]]) + b"\n")
        back = idx.undo_duplicate_moves(journal)
    assert [p.reason for p in back.skipped] == ["outside-run"] and not back.moved
    assert empty.is_dir()  # the old code removed empty folders beside DEST
    assert not copy.exists() and Path(report.moved[0][1]).exists()  # left as it was


def test_a_manifest_from_before_journals_never_moves_a_file_from_outside_its_folder(tmp_path):
    precious = tmp_path / "home" / "precious.jpg"
    photo(precious, 3)
    data = precious.read_bytes()
    (tmp_path / "d").mkdir()
    manifest = tmp_path / "d" / "lookalike-undo-20250101-000000.json"
    moves = [{"from": str(tmp_path / "photos" / "p.jpg"), "to": str(precious)}]
    manifest.write_text(json.dumps({"version": 1, "moves": moves}))
    with Index.open(tmp_path / "i.db") as idx:
        back = idx.undo_duplicate_moves(manifest)
    assert not back.moved and [p.reason for p in back.skipped] == ["outside-run"]
    assert precious.read_bytes() == data and not (tmp_path / "photos").exists()


@pytest.fixture
def hook():
    def set_hook(fn):
        transfer.STEP_HOOK = fn

    yield set_hook
    transfer.STEP_HOOK = None


@pytest.mark.skipif(not os.path.isdir("/dev/shm"), reason="needs /dev/shm (another device)")
def test_a_file_written_to_during_a_cross_device_move_keeps_its_new_bytes(tmp_path, hook):
    _orig, copy, idx = _library(tmp_path)
    dest = Path("/dev/shm") / f"lookalike-review-{os.getpid()}"
    if os.stat("/dev/shm").st_dev == os.stat(tmp_path).st_dev:
        pytest.skip("/dev/shm is on the same device here")

    def edit(name: str) -> None:
        if name == "placed":  # the copy is checked and in place; the source not yet gone
            with open(copy, "ab") as f:
                f.write(b"EDITED")

    hook(edit)
    try:
        with idx:
            report = idx.move_duplicates(idx.duplicates(threshold=T, calibrate=False), dest)
        assert not report.moved and [p.reason for p in report.skipped] == ["changed"]
        assert copy.read_bytes().endswith(b"EDITED")  # the old code removed it
        assert not any(n for _h, _d, n in os.walk(dest) if any(x.endswith(".jpg") for x in n))
    finally:
        import shutil

        shutil.rmtree(dest, ignore_errors=True)


def test_a_file_replaced_after_it_was_linked_is_never_removed(tmp_path, hook):
    _orig, copy, idx = _library(tmp_path)
    old = copy.read_bytes()

    def replace(name: str) -> None:
        if name == "linked":  # an editor saving: a new file renamed over the old name
            new = copy.with_name("saving.tmp")
            new.write_bytes(b"the newly saved photo")
            os.replace(new, copy)

    hook(replace)
    with idx:
        report = idx.move_duplicates(idx.duplicates(threshold=T, calibrate=False), tmp_path / "d")
        hook(None)
        assert not report.moved and [p.reason for p in report.skipped] == ["changed"]
        assert copy.read_bytes() == b"the newly saved photo"  # the old code unlinked it
        kept_at = [
            os.path.join(h, n)
            for h, _d, ns in os.walk(tmp_path / "d")
            for n in ns
            if n.endswith("jpg")
        ]
        assert [Path(p).read_bytes() for p in kept_at] == [old]  # the old bytes: in DEST
        undo = idx.undo_duplicate_moves(report.manifest)
    assert [p.reason for p in undo.skipped] == ["exists"]  # never over the new file
    assert copy.read_bytes() == b"the newly saved photo"


def test_two_runs_with_opposite_keep_rules_never_move_both_copies(tmp_path, hook):
    orig, copy, idx = _library(tmp_path)
    with idx, Index.open(tmp_path / "i.db", embedder=PixelEmbedder(), workers=0) as other:
        mine = idx.duplicates(threshold=T, calibrate=False, keep="size")
        theirs = other.duplicates(threshold=T, calibrate=False, keep="smallest")
        assert mine[0].keep != theirs[0].keep
        ran = []

        def other_run(name: str) -> None:
            if name == "manifest" and not ran:  # this run has checked its members
                ran.append(None)
                ran[0] = other.move_duplicates(theirs, tmp_path / "d2")

        hook(other_run)
        report = idx.move_duplicates(mine, tmp_path / "d1")
        hook(None)
    assert len(ran[0].moved) == 1 and not report.moved
    assert [p.reason for p in report.skipped] == ["kept-file-vanished"]
    assert orig.exists() or copy.exists()
