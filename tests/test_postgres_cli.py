"""PostgreSQL from other processes: concurrent writers, and the real ``lookalike`` CLI.

Every test runs against a real server (``pg_server`` in conftest.py), in a fresh database.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from fakes import make_photos

from lookalike.store import open_store

TESTS = Path(__file__).resolve().parent
LITE0 = "tf_efficientnet_lite0.in1k"


def lookalike(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=300,
    )


def start(script: str, *args: str) -> subprocess.Popen:
    code = f"import sys; sys.path.insert(0, {str(TESTS)!r})\n" + textwrap.dedent(script)
    return subprocess.Popen(
        [sys.executable, "-c", code, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )


def finish(procs: list[subprocess.Popen]) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
        outs.append(out.decode())
    return outs


WRITER = """
    import numpy as np
    from lookalike import Index
    url, tag = sys.argv[1], sys.argv[2]
    rng = np.random.default_rng(abs(hash(tag)) % 1000)
    with Index.open(url) as idx:
        for b in range(40):
            paths = [f"/w/{tag}/{b}/{i}.jpg" for i in range(25)]
            idx.add_embeddings(paths, rng.standard_normal((25, 32)).astype(np.float32))
"""


def test_two_writers_on_one_database_lose_and_duplicate_nothing(pg_url):
    store = open_store(pg_url)
    g0 = store.generation()
    finish([start(WRITER, pg_url, tag) for tag in ("left", "right")])
    assert store.count() == 2000
    assert len(store.files_under(b"/w/left")) == len(store.files_under(b"/w/right")) == 1000
    ids = np.concatenate([i for i, _ in store.iter_vectors()])
    assert len(ids) == len(np.unique(ids)) == 2000
    assert store.generation() == g0 + 80  # one bump per commit, none lost to a race
    assert store.integrity_check() == "ok"
    store.close()


UPDATER = """
    from fakes import PixelEmbedder
    from lookalike import Index
    url, folder = sys.argv[1], sys.argv[2]
    with Index.open(url, embedder=PixelEmbedder(batch_size=2), workers=0) as idx:
        r = idx.update(folder)
    print(r.added + r.updated + r.unchanged)
"""


def test_two_index_runs_on_the_same_folder_agree(tmp_path, pg_url):
    photos = make_photos(tmp_path / "same", 24)
    make_photos(tmp_path / "other", 10)
    outs = finish(
        [
            start(UPDATER, pg_url, str(photos)),
            start(UPDATER, pg_url, str(photos)),
            start(UPDATER, pg_url, str(tmp_path / "other")),
        ]
    )
    assert [int(o) for o in outs] == [24, 24, 10]
    store = open_store(pg_url)
    files = store.files_under(os.fsencode(photos))
    assert sorted(files) == sorted(os.fsencode(p) for p in photos.iterdir())
    assert store.count() == 34 and store.all_failures() == []
    store.close()


@pytest.mark.slow  # two real indexing runs of 21 photos (~2 min on 2 busy cores)
def test_cli_exact_search_is_the_same_from_sqlite_and_postgres(
    tmp_path, pg_url, lite0_weights, sample_photo_dir
):
    model = ["--model", LITE0, "--weights", str(lite0_weights)]
    db = str(tmp_path / "photos.db")
    query = str(sample_photo_dir / "chelsea.png")
    results = []
    for args, env in (
        (["--db", db], None),
        ([], {"LOOKALIKE_DB": pg_url}),  # the environment variable takes a URL too
    ):
        done = lookalike("index", str(sample_photo_dir), *args, *model, "--json", env=env)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["added"] == len(list(sample_photo_dir.iterdir()))
        done = lookalike("search", query, *args, "--exact", "--json", "-k", "10", env=env)
        assert done.returncode == 0, done.stderr
        results.append(json.loads(done.stdout)["results"])
    sqlite, pg = results
    assert len(pg) == 10 and [r["path"] for r in sqlite] == [r["path"] for r in pg]
    np.testing.assert_allclose([r["score"] for r in sqlite], [r["score"] for r in pg], atol=1e-5)
    # the default (non-exact) path agrees too, through --db this time
    done = lookalike("search", query, "--db", pg_url, "--json", env={"LOOKALIKE_DB": ""})
    assert [r["path"] for r in json.loads(done.stdout)["results"]] == [r["path"] for r in pg]


def test_cli_masks_the_password_and_fails_in_one_line(pg_url):
    secret = "Zebra-9-secret"
    url = pg_url.replace("postgres:@", f"postgres:{secret}@", 1)
    open_store(url).close()  # an index, still empty (read-only commands create none)
    done = lookalike("info", "--db", url, "--json", "--check")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert secret not in done.stdout + done.stderr and info["db"].startswith("postgresql://")
    assert info["integrity"] == "ok" and info["images"] == 0
    missing = url.replace("/lookalike_test_", "/nope_", 1)
    done = lookalike("info", "--db", missing)
    assert done.returncode == 1
    assert done.stderr.startswith("lookalike: error: cannot connect to postgresql://postgres:***@")
    assert len(done.stderr.strip().splitlines()) == 1 and secret not in done.stderr
    done = lookalike("remove", "/nowhere", "--db", url)
    assert done.returncode == 1 and "/nowhere is not indexed" in done.stderr  # #20 item 12


@pytest.mark.parametrize("url", ["postgresql://nobody@127.0.0.1:1/photos?connect_timeout=2"])
def test_cli_says_which_server_did_not_answer(url):
    done = lookalike("info", "--db", url)
    assert done.returncode == 1 and "127.0.0.1:1/photos" in done.stderr
    assert "Traceback" not in done.stderr


def test_read_only_commands_on_an_empty_database_say_so_and_create_nothing(pg_url, tmp_path):
    import psycopg
    from PIL import Image

    from lookalike import Index
    from lookalike.errors import IndexNotFoundError

    def tables() -> list:
        with psycopg.connect(pg_url) as db:
            sql = "SELECT to_regclass('lookalike_images'), to_regclass('lookalike_meta')"
            return list(db.execute(sql).fetchone())

    with pytest.raises(IndexNotFoundError, match="no index at"):
        Index.open(pg_url, create=False)
    query = tmp_path / "q.jpg"
    Image.new("RGB", (32, 32), (200, 30, 30)).save(query)
    for args in (("info",), ("search", str(query)), ("remove", "/nowhere"), ("duplicates",)):
        p = lookalike(*args, "--db", pg_url)
        assert p.returncode != 0, args
        assert "no index at" in p.stderr and "Traceback" not in p.stderr, (args, p.stderr)
    assert tables() == [None, None]  # nothing was created by any of them
    with Index.open(pg_url) as idx:  # the default (create=True) sets the database up
        idx.add_embeddings(["/a/1.jpg"], np.ones((1, 8), np.float32) / 8**0.5)
    with Index.open(pg_url, create=False) as idx:
        assert idx.info()["images"] == 1
    p = lookalike("info", "--json", "--db", pg_url)
    assert p.returncode == 0 and json.loads(p.stdout)["images"] == 1
