"""What ``--move-to`` and ``--undo`` promise (#18), case by case: one file under two names
is never a copy to move, targets never collide, the index follows undo (SQLite and
PostgreSQL), any file name round-trips, a FIFO never blocks, undo twice says "already
back", an empty folder or a one-image index has no groups."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fakes import PixelEmbedder, photo
from PIL import Image

from lookalike import DestinationError, Index
from lookalike.duplicates import DuplicateGroup, DuplicateMember

E = np.eye(8, dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def copy_of(src: Path, dst: Path, quality: int = 90) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    with Image.open(src) as im:
        im.convert("RGB").save(dst, "JPEG", quality=quality)
    return dst


def pixel_index(db: Path, *folders: Path, **kw) -> Index:
    idx = Index.open(db, embedder=PixelEmbedder(), workers=0)
    if folders:
        idx.update(*folders, **kw)
    return idx


def cli(*args, rc=0, timeout=120):
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", "duplicates", *map(str, args)],
        capture_output=True,
        timeout=timeout,
    )
    out, err = p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    assert p.returncode == rc, (p.returncode, out, err)
    assert "Traceback" not in err
    return out, err


def web_client(idx: Index, **kw):
    """The web app over ``idx``, as the page talks to it (a bearer token)."""
    pytest.importorskip("starlette")
    from starlette.testclient import TestClient

    from lookalike.web import create_app
    from lookalike.web.security import Guard

    c = TestClient(create_app(idx, guard=Guard(token="t"), **kw), base_url="http://127.0.0.1:8765")
    c.headers["Authorization"] = "Bearer t"
    return c


# -- case 1: one file under two names ---------------------------------------------------


def test_a_link_and_the_file_it_names_are_never_copies(tmp_path):
    photos = tmp_path / "photos"
    real = photo(photos / "chelsea.png", 1)
    copy_of(real, photos / "chelsea_small.jpg")
    (photos / "a_cat_link.png").symlink_to("chelsea.png")
    os.link(real, photos / "hard_twin.png")  # a second name of the same inode
    with pixel_index(tmp_path / "i.db", photos, follow_links=True) as idx:
        assert idx.info()["images"] == 4
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        (g,) = groups
        names = [os.path.basename(m.path) for m in g.members]
        # One name of the file (the real one, not the link), and its real copy.
        assert names == ["chelsea.png", "chelsea_small.jpg"]
        report = idx.move_duplicates(groups, tmp_path / "dups")
        assert [os.path.basename(s) for s, _ in report.moved] == ["chelsea_small.jpg"]
        # Handed a group that pairs the link with its file, the mover refuses.
        link = str(photos / "a_cat_link.png")
        bad = DuplicateGroup(link, [DuplicateMember(link, 1.0), DuplicateMember(str(real), 1.0)], 1)
        report = idx.move_duplicates([bad], tmp_path / "dups")
        assert not report.moved and [p.reason for p in report.skipped] == ["same-file"]
    assert real.exists() and os.path.exists(link)


def test_the_web_review_never_moves_a_file_away_from_under_its_link(tmp_path):
    photos = tmp_path / "photos"
    real = photo(photos / "chelsea.png", 1)
    (photos / "a_cat_link.png").symlink_to("chelsea.png")
    with pixel_index(tmp_path / "web.db", photos, follow_links=True) as idx:
        c = web_client(idx, allow_moves=True)
        assert c.get("/api/duplicates?threshold=0.95").json()["groups"] == []
        ids = {os.path.basename(i["path"]): i["id"] for i in c.get("/api/images").json()["images"]}
        body = {"ids": [ids["chelsea.png"]], "threshold": 0.95, "confirm": True}
        assert c.post("/api/duplicates/move", json=body).status_code == 400
        assert c.get(f"/image/{ids['a_cat_link.png']}").status_code == 200
    assert real.exists()


# -- cases 2, 3, 8, 9: targets, the index and undo ---------------------------------------


def test_two_folders_with_one_name_both_move_and_undo_restores_the_index(tmp_path):
    # (#18, cases 3 and 8) a/photos and b/photos: both cat.jpg copies move (no "exists"),
    # a second run has nothing to move and writes no manifest; undo brings the rows back.
    a, b = tmp_path / "a" / "photos", tmp_path / "b" / "photos"
    orig = photo(a / "orig.png", 1)
    copy_of(orig, a / "cat.jpg", 92)
    copy_of(orig, b / "cat.jpg", 85)
    photo(b / "lone.png", 5)
    dest = tmp_path / "dups"
    with pixel_index(tmp_path / "i.db", a, b) as idx:  # two roots named "photos"
        rows = {p: r.hash for p, r in idx._store.files_under(os.fsencode(os.sep)).items()}
        report = idx.move_duplicates(idx.duplicates(threshold=0.98, calibrate=False), dest)
        assert sorted(s for s, _ in report.moved) == [str(a / "cat.jpg"), str(b / "cat.jpg")]
        assert not report.skipped and len({d for _, d in report.moved}) == 2
        again = idx.move_duplicates(idx.duplicates(threshold=0.98, calibrate=False), dest)
        assert not again.moved and not again.skipped and again.manifest is None
        assert len(list(dest.glob("lookalike-undo-*.json"))) == 1
        assert idx.info()["images"] == 2
        back = idx.undo_duplicate_moves(report.manifest)
        assert len(back.moved) == 2
        # Search, duplicates and info see the restored files without `lookalike index`.
        assert idx.info()["images"] == 4
        assert {p: r.hash for p, r in idx._store.files_under(os.fsencode(os.sep)).items()} == rows
        hits = idx.search(str(orig), k=3)
        assert {h.path for h in hits} >= {str(a / "cat.jpg"), str(b / "cat.jpg")}
        (g,) = idx.duplicates(threshold=0.98, calibrate=False)
        assert len(g.members) == 3
        # Undo twice: "already back", never "vanished"; the run's folders are gone.
        twice = idx.undo_duplicate_moves(report.manifest)
        assert not twice.moved and {p.reason for p in twice.skipped} == {"already-back"}
    assert sorted(p.name for p in dest.iterdir()) == sorted(
        Path(report.manifest).name.replace(".json", s) for s in (".journal", ".json")
    )


def test_undo_gives_the_rows_back_on_postgres(tmp_path, pg_url):
    photos = tmp_path / "photos"
    orig = photo(photos / "orig.png", 1)
    for q in (70, 80, 90):
        copy_of(orig, photos / f"copy{q}.jpg", q)
    with Index.open(pg_url, embedder=PixelEmbedder(), workers=0) as idx:
        idx.update(photos)
        before = {p: (r.size, r.mtime_ns, r.hash) for p, r in idx._store.files_under(b"/").items()}
        report = idx.move_duplicates(idx.duplicates(threshold=0.95), tmp_path / "dups")
        assert len(report.moved) == 3 and idx.info()["images"] == 1
        idx.undo_duplicate_moves(report.manifest)
        after = {p: (r.size, r.mtime_ns, r.hash) for p, r in idx._store.files_under(b"/").items()}
        assert after == before
        assert len(idx.duplicates(threshold=0.95)[0].members) == 4


def test_a_web_move_undone_from_the_command_line(tmp_path):
    photos = tmp_path / "photos"
    for k in range(3):
        orig = photo(photos / f"p{k}.png", k)
        copy_of(orig, photos / f"p{k}_copy.jpg")
    db = tmp_path / "web.db"
    with pixel_index(db, photos) as idx:
        c = web_client(idx, allow_moves=True)
        groups = c.get("/api/duplicates?threshold=0.98").json()["groups"]
        ids = [m["id"] for g in groups for m in g["members"] if not m["keep"]]
        body = {"ids": ids, "threshold": 0.98, "confirm": True}
        r = c.post("/api/duplicates/move", json=body).json()
        assert len(r["moved"]) == 3
        cli("--db", db, "--undo", r["manifest"])
        assert c.get("/api/images").json()["total"] == 6
        assert len(c.get("/api/duplicates?threshold=0.98").json()["groups"]) == 3


def test_an_empty_folder_and_a_one_image_index_have_no_groups(tmp_path):
    # (#18, case 9) Identical files elsewhere in the index made the empty folder's search
    # fail (IndexError); one image made calibration fail ("needs at least 2").
    photos, empty = tmp_path / "photos", tmp_path / "empty"
    orig = photo(photos / "a.png", 1)
    (photos / "twin.png").write_bytes(orig.read_bytes())
    empty.mkdir()
    with pixel_index(tmp_path / "i.db", photos, empty) as idx:
        assert idx.duplicates(folders=[empty]) == []
        assert idx.duplicates(threshold=0.9, folders=[empty]) == []
    out, _ = cli(empty, "--db", tmp_path / "i.db", "--threshold", "0.9")
    assert "among 0 images" in out
    photo(tmp_path / "one" / "x.png", 1)
    with pixel_index(tmp_path / "one.db", tmp_path / "one") as idx:
        report = idx.duplicate_report()
        assert report.groups == [] and report.threshold_source == "default"


# -- case 4: any file name -------------------------------------------------------------


def test_file_names_that_are_not_utf8_move_and_come_back(tmp_path):
    root = tmp_path / "photos"
    root.mkdir()
    names = [b"z\xe9.png", b"ok.png", b"\xff\xfe copy.png"]
    paths = [os.path.join(os.fsencode(root), n) for n in names]
    img = Image.new("RGB", (40, 30), (200, 30, 30))
    for i, p in enumerate(paths):
        img.resize((40 - 10 * i, 30 - 5 * i)).save(p, "PNG")
    vecs = np.stack([E[0], unit(E[0] + 0.1 * E[1]), unit(E[0] + 0.12 * E[2])])
    db = tmp_path / "i.db"
    with Index.open(db) as idx:
        idx.add_embeddings([os.fsdecode(p) for p in paths], vecs)
        idx._store.add_folders([os.fsencode(str(root))])
    data = {p: Path(os.fsdecode(p)).read_bytes() for p in paths}
    dest = tmp_path / "dups"
    out, _ = cli("--db", db, "--threshold", "0.95", "--move-to", dest)
    assert "2 files moved" in out
    assert not os.path.exists(paths[1]) and not os.path.exists(paths[2])
    (manifest,) = dest.glob("lookalike-undo-*.json")
    json.loads(manifest.read_text())  # valid JSON, names escaped
    out, _ = cli("--db", db, "--undo", manifest)
    assert "2 files moved" in out
    assert {p: Path(os.fsdecode(p)).read_bytes() for p in paths} == data
    with Index.open(db) as idx:
        assert idx.info()["images"] == 3


# -- case 5: a FIFO at an indexed path ---------------------------------------------------


@pytest.fixture
def fifo_library(tmp_path):
    root = tmp_path / "photos"
    paths = [str(photo(root / f"{n}.png", 1 + i)) for i, n in enumerate("abc")]
    db = tmp_path / "i.db"
    with Index.open(db) as idx:
        idx.add_embeddings(paths, np.stack([E[0], unit(E[0] + 0.1 * E[1]), E[4]]))
        idx._store.add_folders([os.fsencode(str(root))])
    os.unlink(paths[1])
    os.mkfifo(paths[1])  # rm b.png; mkfifo b.png
    yield db, paths
    with contextlib.suppress(OSError):  # release a reader an old build left blocked in open()
        os.close(os.open(paths[1], os.O_WRONLY | os.O_NONBLOCK))


def test_a_fifo_never_hangs_the_command(fifo_library, tmp_path):
    db, _paths = fifo_library
    out, _ = cli("--db", db, "--threshold", "0.95", "--json", timeout=60)
    assert len(json.loads(out)["groups"]) == 1
    out, _ = cli("--db", db, "--threshold", "0.95", "--move-to", tmp_path / "d", timeout=60)
    assert "not-a-regular-file" in out and "0 files moved" in out


def test_a_fifo_never_freezes_the_web_server(fifo_library):
    import threading

    db, _paths = fifo_library
    with Index.open(db) as idx:
        c = web_client(idx)
        answers = []
        t = threading.Thread(
            target=lambda: answers.append(c.get("/api/duplicates?threshold=0.95")), daemon=True
        )
        t.start()
        t.join(30)
        assert answers and answers[0].status_code == 200
        assert c.get("/api/info").status_code == 200


# -- case 7: the web trash inside an indexed folder ----------------------------------------


def test_the_web_trash_inside_an_indexed_folder_is_refused(tmp_path):
    photos = tmp_path / "photos"
    orig = photo(photos / "a.png", 1)
    copy_of(orig, photos / "a_copy.jpg")
    with pixel_index(photos / "web.db", photos) as idx:  # the index among the photos
        c = web_client(idx, allow_moves=True)
        ids = {os.path.basename(i["path"]): i["id"] for i in c.get("/api/images").json()["images"]}
        body = {"ids": [ids["a_copy.jpg"]], "threshold": 0.98, "confirm": True}
        r = c.post("/api/duplicates/move", json=body)
        assert r.status_code == 400 and "inside the indexed folder" in r.json()["error"]
    assert (photos / "a_copy.jpg").exists() and not (photos / "web.db.trash").exists()


def test_a_destination_inside_an_indexed_folder_is_a_usage_error(tmp_path):
    root = tmp_path / "photos"
    paths = [str(photo(root / f"{n}.png", 1 + i)) for i, n in enumerate("ab")]
    db = tmp_path / "i.db"
    with Index.open(db) as idx:
        idx.add_embeddings(paths, np.stack([E[0], E[0]]))
        idx._store.add_folders([os.fsencode(str(root))])
    _, err = cli("--db", db, "--threshold", "0.9", "--move-to", root / "dups", rc=2)
    assert "inside the indexed folder" in err
    assert not (root / "dups").exists()
    with Index.open(db) as idx, pytest.raises(DestinationError):
        idx.move_duplicates([], root / "dups")


# -- members are checked again just before they move ---------------------------------------


def test_a_member_replaced_by_another_file_of_the_same_size_and_time_stays(tmp_path):
    # Size and mtime alone would not see it: the inode (and the hash) do.
    photos = tmp_path / "photos"
    orig = photo(photos / "a.png", 1)
    copy = copy_of(orig, photos / "a_copy.jpg")
    with pixel_index(tmp_path / "i.db", photos) as idx:
        groups = idx.duplicates(threshold=0.98, calibrate=False)
        st = copy.stat()
        other = photos / ".other"
        other.write_bytes(b"x" * st.st_size)
        os.utime(other, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(other, copy)
        report = idx.move_duplicates(groups, tmp_path / "dups")
    assert not report.moved and [p.reason for p in report.skipped] == ["changed"]
    assert copy.read_bytes() == b"x" * st.st_size


def test_a_member_inside_the_destination_never_moves(tmp_path):
    dest = tmp_path / "dups"
    kept = photo(tmp_path / "photos" / "a.png", 1)
    inside = copy_of(kept, dest / "old" / "a.jpg")
    g = DuplicateGroup(
        str(kept), [DuplicateMember(str(kept), 1.0), DuplicateMember(str(inside), 0.99)], 0.99
    )
    from lookalike.duplicates import move_groups

    report = move_groups([g], dest, roots=[str(tmp_path / "photos")])
    assert not report.moved and [p.reason for p in report.skipped] == ["inside-destination"]
    assert inside.exists()


def test_a_manifest_from_before_journals_still_undoes(tmp_path):
    photos, dest = tmp_path / "photos", tmp_path / "dups"
    moved = photo(dest / "photos" / "a.png", 1)
    manifest = dest / "lookalike-undo-20250101-000000.json"
    source = photos / "a.png"
    manifest.write_text(
        json.dumps({"version": 1, "moves": [{"from": str(source), "to": str(moved)}]})
    )
    data = moved.read_bytes()
    with Index.open(tmp_path / "i.db") as idx:
        back = idx.undo_duplicate_moves(manifest)
        assert back.moved == [(str(moved), str(source))]
        assert source.read_bytes() == data and not moved.exists()
        again = idx.undo_duplicate_moves(manifest)
        assert [p.reason for p in again.skipped] == ["already-back"]


def test_a_journal_line_torn_by_a_crash_is_skipped_and_never_glues_to_the_next(tmp_path):
    photos = tmp_path / "photos"
    orig = photo(photos / "a.png", 1)
    copy = copy_of(orig, photos / "a_copy.jpg")
    with pixel_index(tmp_path / "i.db", photos) as idx:
        report = idx.move_duplicates(
            idx.duplicates(threshold=0.98, calibrate=False), tmp_path / "d"
        )
        journal = Path(report.manifest.replace(".json", ".journal"))
        with open(journal, "ab") as f:
            f.write(b'{"kind":"phase","n":0,"ph')  # a crash mid-write
        assert len(idx.undo_duplicate_moves(journal).moved) == 1
        assert copy.exists()
        twice = idx.undo_duplicate_moves(journal)  # its "undone" record was read back
        assert [p.reason for p in twice.skipped] == ["already-back"]
    last = json.loads(journal.read_bytes().splitlines()[-1])  # whole, not glued to the torn one
    assert last == {"kind": "phase", "n": 0, "phase": "undone"}
