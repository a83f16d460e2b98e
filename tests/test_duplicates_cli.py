"""``lookalike duplicates`` (#9) run as a subprocess, the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from lookalike import Index

E = np.eye(8, dtype=np.float32)


def run(args, env=None, rc=0):
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", "duplicates", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == rc, (p.returncode, p.stdout, p.stderr)
    return p


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


@pytest.fixture
def db(tmp_path) -> tuple[Path, dict[str, str]]:
    root = tmp_path / "photos"
    root.mkdir()
    files = {}
    for name, size in [("a", (90, 60)), ("a_copy", (45, 30)), ("b", (30, 30)), ("c", (30, 30))]:
        files[name] = str(root / f"{name}.jpg")
        Image.new("RGB", size, (10, 120, 200)).save(files[name])
    vecs = [E[0], unit(E[0] + 0.1 * E[1]), E[3], E[5]]
    path = tmp_path / "i.db"
    with Index.open(path) as idx:
        idx.add_embeddings(list(files.values()), np.stack(vecs))
        idx._store.add_folders([os.fsencode(str(root))])
    return path, files


def test_help_names_the_keep_criteria_and_readme_documents_the_command():
    p = run(["--help"])
    for word in ("--threshold", "--keep", "--move-to", "--dry-run", "--csv", "--html"):
        assert word in p.stdout
    for criterion in ("resolution", "size", "oldest", "newest", "shortest-path"):
        assert criterion in p.stdout
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    assert "lookalike duplicates" in readme


def test_json_is_exactly_one_object_and_files_are_written(db, tmp_path):
    path, files = db
    csv_file, html_file = tmp_path / "d.csv", tmp_path / "d.html"
    outputs = ["--csv", str(csv_file), "--html", str(html_file)]
    p = run(["--db", str(path), "--threshold", "0.95", "--json", *outputs])
    data = json.loads(p.stdout)  # the whole of stdout is one JSON object
    assert set(data) - {"second_look"} == {"threshold", "images", "seconds", "groups"}
    assert data["threshold"] == 0.95 and data["images"] == 4
    (g,) = data["groups"]
    assert g["keep"] == files["a"]
    assert g["members"] == [
        {"path": files["a"], "score": 1.0, "verified": True},
        {
            "path": files["a_copy"],
            "score": pytest.approx(float(E[0] @ unit(E[0] + 0.1 * E[1]))),
            "verified": True,  # one colour, half the size: the second look agrees (#19)
        },
    ]
    assert csv_file.read_text().splitlines()[0].startswith("group,keep,path,score")
    assert "data:image/jpeg;base64," in html_file.read_text()


def test_text_output_and_dry_run_then_move_and_undo(db, tmp_path):
    path, files = db
    dest = tmp_path / "moved"
    p = run(["--db", str(path), "--threshold", "0.95", "--move-to", str(dest), "--dry-run"])
    assert "default" not in p.stdout.splitlines()[0]  # a given threshold
    assert "1 group: 1 duplicate of 1 kept file, among 4 images" in p.stdout
    assert "keep" in p.stdout and files["a_copy"] in p.stdout
    assert "would move" in p.stdout
    assert not dest.exists() and os.path.exists(files["a_copy"])
    p = run(["--db", str(path), "--threshold", "0.95", "--move-to", str(dest)])
    assert "1 files moved" in p.stdout
    (manifest,) = dest.glob("lookalike-undo-*.json")
    assert not os.path.exists(files["a_copy"])
    (moved,) = dest.rglob("a_copy.jpg")  # below the run folder, under its whole path
    assert str(moved).endswith(files["a_copy"])
    p = run(["--db", str(path), "--threshold", "0.95", "--json"])
    assert json.loads(p.stdout)["groups"] == []  # the index followed the move
    run(["--db", str(path), "--undo", str(manifest)])
    assert os.path.exists(files["a_copy"])


def test_usage_and_expected_errors(db):
    path, _ = db
    p = run(["--db", str(path), "--dry-run"], rc=2)
    assert "--move-to" in p.stderr
    p = run(["--db", str(path), "--threshold", "1.5"], rc=2)
    p = run(["--db", str(path), "--keep", "prettiest"], rc=2)  # a usage error (#20)
    assert "Invalid value for '--keep': unknown keep criterion" in p.stderr
    assert "Traceback" not in p.stderr


@pytest.mark.slow  # builds and compiles a model: ~1 min on a busy 2-core machine
def test_folder_is_indexed_first_and_identical_files_grouped(tmp_path, tiny_weights):
    from fakes import make_photos

    photos = make_photos(tmp_path / "photos", 6)
    shutil.copy(photos / "p0003.jpg", photos / "twin_of_3.jpg")
    env = dict(os.environ)
    env.update(HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf"))
    args = ["--db", str(tmp_path / "i.db"), "--model", "test_resnet.r160_in1k"]
    args += ["--weights", str(tiny_weights)]
    p = run([str(photos), *args, "--threshold", "1.0", "--json"], env)
    data = json.loads(p.stdout)
    assert data["images"] == 7
    (g,) = data["groups"]
    assert sorted(m["path"] for m in g["members"]) == sorted(
        [str(photos / "p0003.jpg"), str(photos / "twin_of_3.jpg")]
    )
    assert all(m["score"] == 1.0 for m in g["members"]) and g["min_score"] == 1.0
