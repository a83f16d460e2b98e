"""A failed first run leaves no index behind, and a --db in a folder that does not exist
is refused unless --create-dirs (#20 item 10). Before, a bad --model, a missing --weights
or a machine with no model hub each left an empty ``index.db`` ("images: 0, model: (none
yet)"), and ``--db nodir/sub/x.db`` created the folders silently."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from fakes import make_photos

from lookalike import Index
from lookalike.cli import main

TINY = "test_resnet.r160_in1k"


def cli(*args: str):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 3)


@pytest.mark.parametrize(
    "model_args, says",
    [
        (["--model", "resnet5O"], "no timm model named 'resnet5O'"),
        (["--model", TINY, "--weights", "/nonexistent.safetensors"], "does not exist"),
        ([], "cannot be downloaded"),  # the default ResNet50, offline, empty hub cache
    ],
)
@pytest.mark.parametrize("command", ["index", "search"])
def test_a_failed_first_run_leaves_nothing(tmp_path, photos, model_args, says, command):
    where = tmp_path / "idx"
    where.mkdir()
    args = [str(photos)] if command == "index" else [str(photos / "p0000.jpg"), str(photos)]
    r = cli(command, *args, "--db", str(where / "x.db"), *model_args)
    assert r.exit_code == 1 and says in r.output, r.output
    assert sorted(p.name for p in where.iterdir()) == []


def test_a_failed_run_on_an_existing_index_keeps_it(tmp_path, photos):
    db = tmp_path / "x.db"
    with Index.open(db) as idx:
        idx.add_embeddings([photos / "p0000.jpg"], np.ones((1, 4), np.float32))
    r = cli("index", str(photos), "--db", str(db), "--model", "resnet5O")
    assert r.exit_code == 1
    with Index.open(db, create=False) as idx:
        assert idx.info()["images"] == 1


def test_api_new_index_is_removed_only_when_its_first_use_fails(tmp_path):
    with pytest.raises(RuntimeError), Index.open(tmp_path / "a.db"):
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with Index.open(tmp_path / "b.db"):
        pass  # no failure: the new (empty) index stays, as before
    assert (tmp_path / "b.db").exists()


def test_db_in_a_missing_folder_is_refused_unless_create_dirs(tmp_path, photos):
    db = tmp_path / "nodir" / "sub" / "x.db"
    r = CliRunner().invoke(main, ["index", str(photos), "--db", str(db), "--model", "resnet5O"])
    assert r.exit_code == 2
    assert f"the folder {db.parent} does not exist; create it, or add --create-dirs" in r.output
    assert not (tmp_path / "nodir").exists()
    r = CliRunner(env={"LOOKALIKE_DB": str(db)}).invoke(
        main, ["search", str(photos / "p0000.jpg"), str(photos)]
    )
    assert r.exit_code == 2 and not (tmp_path / "nodir").exists()
    r = cli("info", "--db", str(db))  # read-only: "no index", as before
    assert r.exit_code == 1 and "no index" in r.output


def test_create_dirs_makes_the_folder(tmp_path, photos, tiny_weights):
    db = tmp_path / "nodir" / "sub" / "x.db"
    r = cli(
        "index", str(photos), "--db", str(db), "--create-dirs",
        "--model", TINY, "--weights", str(tiny_weights), "--backend", "torch",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert db.exists()
