"""README promises of the CLI that had no test (issue #8), run in-process through click's
runner with the tiny random model (quality does not matter here; each call takes well
under a second once the model is compiled). The subprocess tests in test_cli.py cover what
needs a real process (signals, a terminal, a concurrent writer).

Expected errors are checked to be one ``lookalike: error:`` line, exit code 1, raised as
``SystemExit`` by the CLI's guard (an unexpected exception would reach the runner instead:
the traceback a user would see).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3

import pytest
import torch
from click.testing import CliRunner
from fakes import make_photos, photo

from lookalike.cli import main

TINY = "test_resnet.r160_in1k"


def assert_one_line_error(result, *words: str) -> None:
    assert result.exit_code == 1, (result.exit_code, result.stdout, result.stderr)
    assert isinstance(result.exception, SystemExit), result.exception  # not a traceback
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("lookalike: error: "), result.stderr
    assert "Traceback" not in result.output + result.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


@pytest.fixture
def cli(tmp_path, tiny_weights):
    """``cli(*args, rc=0, **env)``: run ``lookalike ARGS`` in-process; returns the result.

    The default environment names the tiny model, its weights and ``tmp_path/cli.db``;
    ``NAME=None`` unsets a variable.
    """
    base = {
        "LOOKALIKE_DB": str(tmp_path / "cli.db"),
        "LOOKALIKE_MODEL": TINY,
        "LOOKALIKE_WEIGHTS": str(tiny_weights),
    }

    def invoke(*args, rc: int | None = 0, **env):
        result = CliRunner().invoke(main, [str(a) for a in args], env={**base, **env})
        if rc == 1:
            assert_one_line_error(result)
        elif rc is not None:
            assert result.exit_code == rc, (result.exit_code, result.output, result.exception)
        return result

    return invoke


def index_json(cli, *args, **env) -> dict:
    return json.loads(cli("index", *args, "--workers", "0", "--json", **env).stdout)


def info_json(cli, *args, **env) -> dict:
    return json.loads(cli("info", "--json", *args, **env).stdout)


# --- remove, and the emptied-folder flow -----------------------------------------------------


def test_remove_counts_and_the_emptied_folder_flow(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    other = make_photos(tmp_path / "other", 2)
    assert index_json(cli, photos, other)["added"] == 5
    aside = tmp_path / "aside"
    aside.mkdir()
    for f in list(photos.iterdir()):
        shutil.move(f, aside / f.name)
    # An empty folder is never "everything was deleted": an error that names the way out.
    result = cli("index", photos, "--workers", "0", rc=1)
    assert "lookalike remove" in result.stderr
    assert info_json(cli)["images"] == 5
    # `remove` on purpose: the count, the folder gone from info, the others kept.
    result = cli("remove", photos)
    assert result.stdout.strip() == f"removed 3 images below {photos}"
    info = info_json(cli)
    assert info["images"] == 2 and info["folders"] == [str(other)]
    # A folder never indexed is an error naming the indexed ones (#20; was "removed 0").
    result = cli("remove", tmp_path / "never-indexed", rc=1)
    assert result.stderr.strip().endswith(
        f"is not indexed (no image below it); indexed folders: {other}"
    )
    # ... and the folder can be indexed again from scratch.
    make_photos(photos, 4)
    report = index_json(cli, photos)
    assert (report["added"], report["removed"], report["unchanged"]) == (4, 0, 0)
    assert info_json(cli)["folders"] == sorted([str(photos), str(other)])


# --- info ------------------------------------------------------------------------------------


def test_info_plain_text_and_check(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    (photos / "broken.jpg").write_bytes(b"not a picture")
    report = index_json(cli, photos)
    assert report["added"] == 3
    text = cli("info").stdout
    lines = text.splitlines()
    weights_hash = info_json(cli)["weights"]
    assert f"index:          {tmp_path / 'cli.db'}" in lines
    assert "images:         3" in lines
    assert f"model:          {TINY}" in lines
    assert any(ln.startswith(f"weights:        {weights_hash}") for ln in lines)
    assert "pooling:        avg" in lines
    assert "dimension:      96" in lines
    assert f"folders:        {photos}" in lines
    assert "failed files:   1" in lines
    assert any(ln.startswith(f"  {photos / 'broken.jpg'}: not-an-image") for ln in lines)
    assert not any(ln.startswith("integrity:") for ln in lines)  # only with --check
    assert "integrity:      ok" in cli("info", "--check").stdout.splitlines()
    assert info_json(cli, "--check")["integrity"] == "ok"
    assert "integrity" not in info_json(cli)


# --- search: --show, --exact, the failed-files line ---------------------------------------


def test_show_without_a_display_says_so_and_never_opens_a_window(cli, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    shown = []
    monkeypatch.setattr(plt, "show", lambda *a, **k: shown.append(1))
    photos = make_photos(tmp_path / "photos", 4)
    index_json(cli, photos)
    q = photos / "p0001.jpg"
    png = tmp_path / "grid.png"
    no_display = {"DISPLAY": None, "WAYLAND_DISPLAY": None}
    result = cli("search", q, "--show", "--plot", png, **no_display)
    assert result.stderr.strip() == f"lookalike: no display to show the grid on; wrote {png}"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert result.stdout.splitlines()[0].split() == ["rank", "score", "path"]
    result = cli("search", q, "--show", **no_display)
    assert result.stderr.strip().endswith("no display to show the grid on; use --plot FILE")
    assert shown == []


def test_exact_flag_reaches_the_engine(cli, tmp_path, monkeypatch):
    from lookalike.vectors.search import VectorSearch

    seen = []
    real = VectorSearch.search

    def spy(self, queries, k, **kw):
        seen.append(kw.get("exact"))
        return real(self, queries, k, **kw)

    monkeypatch.setattr(VectorSearch, "search", spy)
    photos = make_photos(tmp_path / "photos", 4)
    index_json(cli, photos)
    plain = json.loads(cli("search", photos / "p0000.jpg", "--json").stdout)
    exact = json.loads(cli("search", photos / "p0000.jpg", "--json", "--exact").stdout)
    assert seen == [False, True]
    assert plain == exact and len(exact["results"]) == 3


def test_search_in_a_folder_says_how_many_files_failed(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    (photos / "broken.jpg").write_bytes(b"")
    (photos / "bad.png").write_bytes(b"not a picture")
    q = photo(tmp_path / "q.jpg", 1)
    result = cli("search", q, photos, "--workers", "0")
    assert "(2 files could not be indexed; see `lookalike info`)" in result.stderr.splitlines()
    assert len(result.stdout.splitlines()) == 4  # header + the 3 good images
    result = cli("search", q, photos, "--json")
    assert len(json.loads(result.stdout)["results"]) == 3  # stdout stays one JSON object


def test_index_json_when_every_file_fails(cli, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not an image")
    (bad / "b.png").write_bytes(b"")
    result = cli("index", bad, "--json", "--workers", "0", rc=1)
    assert_one_line_error(result, "none of the 2 image files could be indexed")
    report = json.loads(result.stdout)  # exactly one object on stdout
    assert (report["added"], report["unchanged"]) == (0, 0)
    assert sorted((os.path.basename(f["path"]), f["reason"]) for f in report["failed"]) == [
        ("a.jpg", "not-an-image"),
        ("b.png", "empty"),
    ]


# --- where the index is, and which model -----------------------------------------------------


def test_db_flag_and_its_precedence_over_the_environment(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    flag_db, env_db = tmp_path / "flag.db", tmp_path / "env.db"
    assert index_json(cli, photos, "--db", flag_db, LOOKALIKE_DB=None)["added"] == 2
    assert flag_db.exists()
    assert index_json(cli, photos, "--db", flag_db, LOOKALIKE_DB=str(env_db))["unchanged"] == 2
    assert not env_db.exists()  # the flag wins over $LOOKALIKE_DB
    assert info_json(cli, "--db", flag_db, LOOKALIKE_DB=str(env_db))["images"] == 2
    assert cli("remove", photos, "--db", flag_db).stdout.startswith("removed 2 images")
    assert not env_db.exists() and not (tmp_path / "cli.db").exists()


@pytest.mark.parametrize("xdg", [True, False])
def test_default_location_is_the_user_data_dir(cli, tmp_path, xdg):
    photos = make_photos(tmp_path / "photos", 2)
    home = tmp_path / "home"
    env = {"LOOKALIKE_DB": None, "HOME": str(home), "XDG_DATA_HOME": None}
    if xdg:
        env["XDG_DATA_HOME"] = str(tmp_path / "xdg")
        expected = tmp_path / "xdg" / "lookalike" / "index.db"
    else:
        expected = home / ".local" / "share" / "lookalike" / "index.db"
    index_json(cli, photos, **env)
    assert expected.is_file()
    assert info_json(cli, **env)["db"] == str(expected)


def test_model_and_weights_from_the_environment_and_flags_over_them(cli, tmp_path, tiny_weights):
    photos = make_photos(tmp_path / "photos", 2)
    index_json(cli, photos)  # LOOKALIKE_MODEL and LOOKALIKE_WEIGHTS only
    info = info_json(cli)
    digest = hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert info["model"] == TINY and info["weights"] == f"sha256:{digest}"
    assert info["weights_path"] == str(tiny_weights)
    # A flag wins over the variable: a bogus $LOOKALIKE_MODEL is never looked at.
    db2 = tmp_path / "flags.db"
    env = {"LOOKALIKE_MODEL": "no_such_model_anywhere", "LOOKALIKE_WEIGHTS": "/nonexistent.pt"}
    index_json(cli, photos, "--db", db2, "--model", TINY, "--weights", tiny_weights, **env)
    assert info_json(cli, "--db", db2)["model"] == TINY
    # ... and each variable is really read: a bogus one fails on a new index.
    result = cli("index", photos, "--db", tmp_path / "m.db", rc=1, LOOKALIKE_MODEL="no_such_mod")
    assert "no_such_mod" in result.stderr
    result = cli("index", photos, "--db", tmp_path / "w.db", rc=1, LOOKALIKE_WEIGHTS="/none.pt")
    assert "/none.pt" in result.stderr


# --- index flags -----------------------------------------------------------------------------


def test_follow_links_and_include_hidden_flags(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    outside = make_photos(tmp_path / "outside", 3)
    (photos / "linked").symlink_to(outside, target_is_directory=True)
    photo(photos / ".hidden.jpg", 40)
    photo(photos / ".dir" / "x.jpg", 41)
    assert index_json(cli, photos, "--db", tmp_path / "a.db")["added"] == 2
    assert index_json(cli, photos, "--db", tmp_path / "b.db", "--follow-links")["added"] == 5
    assert index_json(cli, photos, "--db", tmp_path / "c.db", "--include-hidden")["added"] == 4
    both = index_json(cli, photos, "--db", tmp_path / "d.db", "--follow-links", "--include-hidden")
    assert both["added"] == 7


def test_max_pixels_flag(cli, tmp_path):
    photos = tmp_path / "photos"
    photo(photos / "big.jpg", 1, size=(64, 48))  # 3,072 pixels
    photo(photos / "small.png", 2, size=(20, 20))  # 400 pixels
    limited = index_json(cli, photos, "--db", tmp_path / "a.db", "--max-pixels", "1000")
    assert limited["added"] == 1
    assert [(os.path.basename(f["path"]), f["reason"]) for f in limited["failed"]] == [
        ("big.jpg", "too-large")
    ]
    assert index_json(cli, photos, "--db", tmp_path / "b.db")["added"] == 2


@pytest.mark.parametrize("workers", [0, 2])
def test_workers_flag(cli, tmp_path, monkeypatch, workers):
    import lookalike.pipeline as pipeline

    started = []

    class CountingPool(pipeline.DecodePool):
        def __init__(self, *a, **kw):
            started.append(kw.get("workers"))
            super().__init__(*a, **kw)

    monkeypatch.setattr(pipeline, "DecodePool", CountingPool)
    photos = make_photos(tmp_path / "photos", 3)
    result = cli("index", photos, "--json", "--workers", str(workers))
    assert json.loads(result.stdout)["added"] == 3 and started == [workers]


def test_crop_flag_is_recorded_and_enforced(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 3)
    assert index_json(cli, photos, "--crop", "center")["added"] == 3
    assert info_json(cli)["preprocessing"]["mode"] == "center"
    result = cli("search", photos / "p0000.jpg", "--crop", "none", rc=1)
    assert "crop" in result.stderr
    assert index_json(cli, photos, "--db", tmp_path / "r.db")["added"] == 3
    assert info_json(cli, "--db", tmp_path / "r.db")["preprocessing"]["mode"] == "resize"


def test_device_flag(cli, tmp_path):
    photos = make_photos(tmp_path / "photos", 2)
    assert index_json(cli, photos, "--device", "cpu")["added"] == 2
    p = photo(tmp_path / "q.jpg", 1)
    assert json.loads(cli("search", p, "--device", "cpu", "--json").stdout)["results"]
    if not torch.cuda.is_available():
        result = cli("search", p, "--device", "cuda", rc=1)
        assert "cuda" in result.stderr.lower()
    result = cli("index", photos, "--device", "tpu", rc=2)
    assert "tpu" in result.stderr


def test_a_photo_given_as_db_is_not_an_index(cli, tmp_path):
    """#20: ``--db photos/china.jpg`` said "index ... is damaged; move it aside and rebuild
    it with `lookalike index FOLDER --db photos/china.jpg`": an invitation to overwrite the
    photo. Now every command says it is not an index, and the folder is left as it was."""
    photos = make_photos(tmp_path / "photos", 2)
    target = photos / "p0000.jpg"
    before = target.read_bytes()
    expected = (
        f"lookalike: error: {target} is not a lookalike index (it is not a SQLite database); "
        "nothing was changed: give --db an index file, or a new file name to make one\n"
    )
    for args in (["info"], ["index", photos, "--workers", "0"], ["search", photos / "p0001.jpg"]):
        result = cli(*args, "--db", target, rc=1)
        assert result.stderr == expected, args
    assert target.read_bytes() == before
    assert sorted(os.listdir(photos)) == ["p0000.jpg", "p0001.jpg"]


# --- expected errors: one line, never a traceback --------------------------------------------


def _expected_error_cases(tmp_path, photos):
    """(name, args, env, words): every kind of expected error the CLI can meet."""
    schema_db = tmp_path / "schema.db"
    with sqlite3.connect(schema_db) as c:
        c.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
        c.execute("INSERT INTO meta VALUES ('schema_version', '99'), ('generation', '0')")
    junk_db = tmp_path / "junk.db"
    junk_db.write_bytes(b"this is not a database, " * 200)
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.jpg").write_bytes(b"not an image")
    not_image = tmp_path / "q.jpg"
    not_image.write_text("text")
    q = photos / "p0000.jpg"
    return [
        ("missing folder", ["index", tmp_path / "missing"], {}, ["does not exist"]),
        ("folder is a file", ["index", a_file], {}, ["is not a folder"]),
        ("nothing indexed", ["index", bad], {}, ["could be indexed"]),
        ("missing query", ["search", tmp_path / "nope.jpg"], {}, ["nope.jpg"]),
        ("query not an image", ["search", not_image], {}, ["q.jpg"]),
        (
            "unknown model",
            ["index", photos, "--db", tmp_path / "m.db"],
            {"LOOKALIKE_MODEL": "resnt50"},
            ["resnt50"],
        ),
        (
            "missing weights",
            ["index", photos, "--db", tmp_path / "w.db"],
            {"LOOKALIKE_WEIGHTS": str(tmp_path / "none.pt")},
            ["none.pt"],
        ),
        (
            "foreign weights",
            ["index", photos, "--db", tmp_path / "g.db"],
            {"LOOKALIKE_WEIGHTS": str(garbage)},
            ["garbage.safetensors"],
        ),
        ("setup mismatch", ["search", q, "--pool", "max"], {}, ["pool"]),
        ("schema too new", ["info", "--db", schema_db], {}, ["upgrade"]),
        ("corrupt index", ["info", "--db", junk_db], {}, ["junk.db"]),
        ("no folder for the index", ["info", "--db", a_file / "x.db"], {}, ["a_file"]),
    ]


CASES = [
    "missing folder",
    "folder is a file",
    "nothing indexed",
    "missing query",
    "query not an image",
    "unknown model",
    "missing weights",
    "foreign weights",
    "setup mismatch",
    "schema too new",
    "corrupt index",
    "no folder for the index",
]


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, tiny_weights):
    """A folder of photos and an index of it, shared by the error cases (read-only)."""
    tmp = tmp_path_factory.mktemp("errors")
    photos = make_photos(tmp / "photos", 3)
    env = {
        "LOOKALIKE_MODEL": TINY,
        "LOOKALIKE_WEIGHTS": str(tiny_weights),
        "HF_HUB_OFFLINE": "1",
        # the autouse fixture that sets this is per test; this one is per module
        "LOOKALIKE_CACHE": str(tmp_path_factory.getbasetemp() / "lookalike-cache"),
    }
    args = ["index", str(photos), "--db", str(tmp / "shared.db"), "--workers", "0"]
    assert CliRunner().invoke(main, args, env=env).exit_code == 0
    return tmp, photos


@pytest.mark.parametrize("case", CASES)
def test_expected_errors_print_one_line_without_traceback(cli, tmp_path, indexed, case):
    shared, photos = indexed
    cases = {c[0]: c[1:] for c in _expected_error_cases(tmp_path, photos)}
    assert sorted(cases) == sorted(CASES)
    args, env, words = cases[case]
    result = cli(*args, rc=None, LOOKALIKE_DB=str(shared / "shared.db"), **env)
    assert_one_line_error(result, *words)
