"""Duplicate groups (#9) over real files: moves with an undo manifest, dry runs, files that
vanish or change, never overwriting, the index following moves; JSON, CSV and HTML."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import Index
from lookalike.duplicates.report import report_csv, report_html, report_json

E = np.eye(8, dtype=np.float32)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


def photo(path: Path, size: tuple[int, int], colour: tuple[int, int, int]) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path, quality=90)
    return str(path)


@pytest.fixture
def library(tmp_path):
    """Two groups of copies (by their vectors) and one lone photo, in an indexed folder."""
    root = tmp_path / "photos"
    files = {
        "big": photo(root / "2020" / "big.jpg", (200, 150), (200, 30, 30)),
        "small": photo(root / "2021" / "small.jpg", (100, 75), (200, 30, 30)),
        "tiny": photo(root / "tiny.jpg", (40, 30), (200, 30, 30)),
        "sea": photo(root / "sea.jpg", (120, 90), (20, 30, 200)),
        "sea2": photo(root / "more" / "sea2.jpg", (60, 45), (20, 30, 200)),
        "lone": photo(root / "lone.jpg", (50, 50), (0, 200, 0)),
    }
    vecs = {
        "big": E[0],
        "small": unit(E[0] + 0.1 * E[1]),
        "tiny": unit(E[0] + 0.15 * E[2]),
        "sea": E[3],
        "sea2": unit(E[3] + 0.1 * E[4]),
        "lone": E[6],
    }
    db = tmp_path / "index.db"
    with Index.open(db) as idx:
        idx.add_embeddings([files[k] for k in files], np.stack([vecs[k] for k in files]))
        idx._store.add_folders([os.fsencode(str(root))])  # as `lookalike index` records it
    return db, root, files


def test_groups_and_keep_rule_on_real_files(library):
    db, _root, files = library
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        assert [len(g.members) for g in groups] == [3, 2]
        assert groups[0].keep == files["big"]  # most pixels
        assert groups[0].members[0].width == 200 and groups[0].members[0].height == 150
        assert groups[0].members[0].size == os.path.getsize(files["big"])
        assert groups[1].keep == files["sea"]
        smallest = idx.duplicates(threshold=0.95, keep="smallest", calibrate=False)
        assert smallest[0].keep == files["tiny"]


def test_move_writes_manifest_first_moves_and_updates_index(library, tmp_path, monkeypatch):
    db, _root, files = library
    dest = tmp_path / "dups"
    import lookalike.duplicates.move as move_mod

    real_transfer = move_mod.transfer
    seen_before_first_move = []

    def spy(src, dst, *args):
        journal = next(dest.glob("lookalike-undo-*.journal"))
        planned = journal.read_text().count('"kind":"plan"')
        seen_before_first_move.append((any(dest.glob("lookalike-undo-*.json")), planned))
        real_transfer(src, dst, *args)

    monkeypatch.setattr(move_mod, "transfer", spy)
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        report = idx.move_duplicates(groups, dest)
        # The manifest and every planned move were on disk before the first move.
        assert seen_before_first_move and seen_before_first_move[0] == (True, 3)
        assert len(report.moved) == 3 and not report.skipped
        (run,) = [p for p in dest.iterdir() if p.is_dir()]
        for src, dst in report.moved:
            assert not os.path.exists(src) and os.path.exists(dst)
            # The whole source path below the run folder: targets never collide.
            assert dst == str(run) + src
        assert os.path.exists(files["big"]) and os.path.exists(files["sea"])
        manifest = json.loads(Path(report.manifest).read_text())
        assert manifest["complete"] is True
        assert {(m["from"], m["to"]) for m in manifest["moves"]} == set(report.moved)
        # The index forgot the moved files (moved out of every indexed folder).
        assert idx.info()["images"] == 3
        assert idx.duplicates(threshold=0.95, calibrate=False) == []
        # Undo puts everything back and the index follows.
        back = idx.undo_duplicate_moves(report.manifest)
        assert len(back.moved) == 3
        assert idx.info()["images"] == 6
        assert [len(g.members) for g in idx.duplicates(threshold=0.95, calibrate=False)] == [3, 2]
    for path in files.values():
        assert os.path.exists(path)
    assert not run.exists()  # the run's folders, empty again, are gone


def test_dry_run_changes_nothing(library, tmp_path):
    db, root, _files = library
    dest = tmp_path / "dups"
    before = sorted(p for p in root.rglob("*"))
    with Index.open(db) as idx:
        gen = idx._store.generation()
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        report = idx.move_duplicates(groups, dest, dry_run=True)
        assert report.dry_run and len(report.moved) == 3 and report.manifest is None
        assert idx._store.generation() == gen
        assert idx.info()["images"] == 6
    assert not dest.exists()
    assert sorted(p for p in root.rglob("*")) == before


def test_vanished_or_changed_files_are_reported_not_fatal(library, tmp_path):
    db, _root, files = library
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        os.unlink(files["small"])  # gone between listing and moving
        with open(files["sea2"], "ab") as f:  # rewritten between listing and moving
            f.write(b"more bytes")
        report = idx.move_duplicates(groups, tmp_path / "dups")
    reasons = {p.path: p.reason for p in report.skipped}
    assert reasons == {files["small"]: "vanished", files["sea2"]: "changed"}
    assert [src for src, _ in report.moved] == [files["tiny"]]
    assert os.path.exists(files["sea2"])


def test_a_missing_kept_file_leaves_its_group_alone(library, tmp_path):
    db, _root, files = library
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        os.unlink(files["big"])
        report = idx.move_duplicates(groups, tmp_path / "dups")
    assert {p.reason for p in report.skipped} == {"kept-file-vanished"}
    assert os.path.exists(files["small"]) and os.path.exists(files["tiny"])


def test_never_overwrites(library, tmp_path, monkeypatch):
    # A file appears at every target after the plan is written, before the first move.
    db, _root, files = library
    dest = tmp_path / "dups"
    import lookalike.duplicates.transfer as transfer_mod

    def squat(name):
        if name == "manifest":
            manifest = json.loads(next(dest.glob("lookalike-undo-*.json")).read_text())
            for m in manifest["moves"]:
                os.makedirs(os.path.dirname(m["to"]), exist_ok=True)
                Path(m["to"]).write_bytes(b"precious")

    monkeypatch.setattr(transfer_mod, "STEP_HOOK", squat)
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        report = idx.move_duplicates(groups, dest)
        assert not report.moved and {p.reason for p in report.skipped} == {"exists"}
        targets = [p.detail for p in report.skipped]
        assert len(targets) == 3
        assert all(Path(t).read_bytes() == b"precious" for t in targets)
        assert all(os.path.exists(f) for f in files.values())
        assert idx.info()["images"] == 6
        monkeypatch.setattr(transfer_mod, "STEP_HOOK", None)
        # Undo never overwrites either: a new file at a source stays, the moved one waits.
        report = idx.move_duplicates(groups, dest)
        assert len(report.moved) == 3
        Path(files["tiny"]).write_bytes(b"new file")
        back = idx.undo_duplicate_moves(report.manifest)
    assert Path(files["tiny"]).read_bytes() == b"new file"
    assert [(p.reason, p.detail) for p in back.skipped] == [("exists", files["tiny"])]
    assert len(back.moved) == 2


def test_a_destination_inside_an_indexed_folder_is_refused(library, tmp_path):
    # (#18, case 7) Files moved inside an indexed folder are indexed and moved again;
    # a destination holding an indexed folder is refused too, and so is one reached
    # through a link into an indexed folder.
    from lookalike import DestinationError

    db, root, files = library
    link = tmp_path / "link_into_photos"
    link.symlink_to(root / "more")
    with Index.open(db) as idx:
        groups = idx.duplicates(threshold=0.95, calibrate=False)
        for dest in (root / "dups", root, tmp_path, link / "dups", link):
            with pytest.raises(DestinationError):
                idx.move_duplicates(groups, dest)
            with pytest.raises(DestinationError):
                idx.move_duplicates(groups, dest, dry_run=True)
        assert idx.info()["images"] == 6
    assert all(os.path.exists(f) for f in files.values())
    assert not (root / "dups").exists()


def test_json_csv_html_shapes(library):
    db, _root, files = library
    with Index.open(db) as idx:
        report = idx.duplicate_report(threshold=0.95, calibrate=False)
    data = json.loads(report_json(report))
    assert set(data) - {"second_look"} == {"threshold", "images", "seconds", "groups"}
    assert data["threshold"] == 0.95 and data["images"] == 6
    assert isinstance(data["seconds"], float)
    g = data["groups"][0]
    assert set(g) == {"keep", "min_score", "members"}
    assert g["members"][0] == {"path": files["big"], "score": 1.0, "verified": True}
    assert all(set(m) == {"path", "score", "verified"} for m in g["members"])
    # Same colour, other sizes: the second look confirms every copy (#19).
    assert all(m["verified"] is True for g in data["groups"] for m in g["members"])
    assert all(os.path.isabs(m["path"]) for m in g["members"])
    rows = list(csv.DictReader(io.StringIO(report_csv(report.groups))))
    assert len(rows) == 5
    assert rows[0]["keep"] == "1" and rows[0]["path"] == files["big"]
    assert rows[0]["width"] == "200" and rows[1]["keep"] == "0" and rows[1]["verified"] == "1"
    page = report_html(report)
    assert page.count("<section class='group'") == 2
    assert page.count("data:image/jpeg;base64,") == 5  # thumbnails inline
    assert page.count("class='keep'") == 2 and "KEEP" in page
    assert "200x150" in page


def test_html_escapes_file_names(tmp_path):
    evil = photo(tmp_path / "<script>alert(1)<'x'>.jpg", (20, 20), (1, 2, 3))
    twin = photo(tmp_path / "a&b.jpg", (10, 10), (1, 2, 3))
    db = tmp_path / "i.db"
    with Index.open(db) as idx:
        idx.add_embeddings([evil, twin], np.stack([E[0], E[0]]))
        report = idx.duplicate_report(threshold=0.99, calibrate=False)
    page = report_html(report)
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;&#x27;x&#x27;&gt;.jpg" in page
    assert "a&amp;b.jpg" in page
