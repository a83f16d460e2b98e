"""Arguments are checked before any work, and one index has one updater at a time (issue 7).

The CLI runs as a subprocess, as a user runs it. Where a test must show that no model was
loaded, the environment names a model whose weights are not available offline
(``resnet50.tv_in1k`` with an empty hub cache): loading it would fail with another message.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from fakes import make_photos

from lookalike import Index
from lookalike.errors import IndexBusyError, IndexNotFoundError
from lookalike.index.lock import update_lock

TINY = "test_resnet.r160_in1k"


def run(args, env, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start(args, env, tmp_path, name):
    """A CLI run in the background; its stdout and stderr go to files."""
    out = open(tmp_path / f"{name}.out", "w")  # noqa: SIM115 - closed by finish()
    err = open(tmp_path / f"{name}.err", "w")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "lookalike", *args], env=env, stdout=out, stderr=err, text=True
    )
    proc.files = (out, err)  # type: ignore[attr-defined]
    return proc


def finish(proc, tmp_path, name, timeout=300):
    rc = proc.wait(timeout=timeout)
    for f in proc.files:
        f.close()
    return rc, (tmp_path / f"{name}.out").read_text(), (tmp_path / f"{name}.err").read_text()


@pytest.fixture
def env(tmp_path, tiny_weights):
    e = dict(os.environ)
    e.update(
        LOOKALIKE_DB=str(tmp_path / "cli.db"),
        LOOKALIKE_MODEL=TINY,
        LOOKALIKE_WEIGHTS=str(tiny_weights),
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
    )
    return e


@pytest.fixture
def no_model_env(tmp_path):
    """A model that cannot load here: any command that loads it fails with a weights error."""
    e = dict(os.environ)
    e.pop("LOOKALIKE_WEIGHTS", None)
    e.update(
        LOOKALIKE_DB=str(tmp_path / "cli.db"),
        LOOKALIKE_MODEL="resnet50.tv_in1k",
        HF_HUB_OFFLINE="1",
        HF_HOME=str(tmp_path / "hf"),
    )
    return e


@pytest.fixture
def photos(tmp_path):
    return make_photos(tmp_path / "photos", 12)


# --- empty arguments ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["search", "Q", ""],
        ["search", "", "FOLDER"],
        ["search", " ", "FOLDER"],
        ["index", ""],
        ["index", "FOLDER", ""],
        ["remove", ""],
    ],
)
def test_an_empty_folder_or_query_is_a_usage_error(args, no_model_env, photos, tmp_path):
    args = [
        str(photos / "p0001.jpg") if a == "Q" else str(photos) if a == "FOLDER" else a for a in args
    ]
    p = run(args, {**no_model_env}, timeout=60)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert "is empty" in p.stderr
    assert not (tmp_path / "cli.db").exists()  # the current folder was never indexed


def test_the_library_refuses_an_empty_folder_too(tmp_path):
    from lookalike.errors import ConfigError

    with Index.open(tmp_path / "i.db") as idx, pytest.raises(ConfigError, match="empty"):
        idx.update("")


# --- the query and the folders before any work ------------------------------------------------


def test_a_missing_query_is_reported_before_indexing_or_loading(no_model_env, photos, tmp_path):
    p = run(["search", str(tmp_path / "missing.jpg"), str(photos)], no_model_env, timeout=60)
    assert p.returncode == 1
    assert "missing.jpg does not exist" in p.stderr
    assert "weights" not in p.stderr  # the model was not loaded
    assert not (tmp_path / "cli.db").exists()  # nothing was indexed


def test_an_undecodable_query_is_reported_before_indexing(no_model_env, photos, tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image at all")
    p = run(["search", str(bad), str(photos)], no_model_env, timeout=60)
    assert p.returncode == 1
    assert "cannot read query" in p.stderr and "notes.jpg" in p.stderr
    assert not (tmp_path / "cli.db").exists()


def test_a_folder_query_and_a_missing_folder_are_reported_before_loading(
    no_model_env, photos, tmp_path
):
    p = run(["search", str(photos), str(photos)], no_model_env, timeout=60)
    assert p.returncode == 1 and "is a folder, not an image" in p.stderr
    p = run(["index", str(tmp_path / "nowhere")], no_model_env, timeout=60)
    assert p.returncode == 1 and "nowhere does not exist" in p.stderr
    p = run(["search", str(photos / "p0001.jpg"), str(tmp_path / "nowhere")], no_model_env)
    assert p.returncode == 1 and "nowhere does not exist" in p.stderr
    assert "weights" not in p.stderr
    assert not (tmp_path / "cli.db").exists()


# --- read-only commands on a missing index -------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["info", "--db", "{typo}/path.db"],
        ["info", "--json", "--db", "{typo}/path.db"],
        ["search", "{query}", "--db", "{typo}/x.db"],
        ["remove", "{photos}", "--db", "{typo}/x.db"],
        ["duplicates", "--db", "{typo}/x.db"],
        ["duplicates", "--json", "--db", "{typo}/x.db"],
    ],
)
def test_read_only_commands_on_a_missing_index_create_nothing(args, no_model_env, photos, tmp_path):
    typo = tmp_path / "typo"
    values = {"typo": str(typo), "query": str(photos / "p0001.jpg"), "photos": str(photos)}
    p = run([a.format(**values) for a in args], no_model_env, timeout=60)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert f"no index at {typo}" in p.stderr
    assert "lookalike index FOLDER" in p.stderr  # how to make one
    assert "weights" not in p.stderr  # no model was loaded
    assert not typo.exists()


def test_info_on_the_default_index_when_there_is_none(no_model_env, tmp_path):
    env = {**no_model_env, "LOOKALIKE_DB": str(tmp_path / "data" / "index.db")}
    p = run(["info"], env, timeout=60)
    assert p.returncode == 1 and "no index at" in p.stderr
    assert not (tmp_path / "data").exists()


def test_open_without_create_raises_and_creates_nothing(tmp_path):
    with pytest.raises(IndexNotFoundError, match="no index at"):
        Index.open(tmp_path / "none" / "x.db", create=False)
    assert not (tmp_path / "none").exists()
    with Index.open(tmp_path / "x.db") as idx:
        idx.add_embeddings(["a.jpg"], [[1.0, 0.0]])
    with Index.open(tmp_path / "x.db", create=False) as idx:
        assert idx.info()["images"] == 1


# --- one updater at a time ---------------------------------------------------------------------


def test_a_second_indexer_waits_for_the_first_then_does_only_what_is_left(env, photos, tmp_path):
    db = tmp_path / "cli.db"
    with update_lock(db):  # this test process is "the first run"
        proc = start(["index", str(photos), "--json"], env, tmp_path, "second")
        deadline = time.monotonic() + 120
        while "waiting" not in (tmp_path / "second.err").read_text():
            assert proc.poll() is None, "the second run did not wait"
            assert time.monotonic() < deadline, "no waiting message"
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None  # still waiting while the lock is held
    rc, out, err = finish(proc, tmp_path, "second")
    assert rc == 0, err
    assert f"pid {os.getpid()}" in err  # names who it waited for
    assert json.loads(out)["added"] == 12


def test_no_wait_refuses_with_one_clear_line(env, photos, tmp_path):
    with update_lock(tmp_path / "cli.db"):
        p = run(["index", str(photos), "--no-wait"], env, timeout=120)
    assert p.returncode == 1
    assert "another lookalike" in p.stderr and "is updating the index" in p.stderr
    assert "Traceback" not in p.stderr
    with Index.open(tmp_path / "cli.db") as idx:
        assert idx.info()["images"] == 0
        with update_lock(tmp_path / "cli.db"), pytest.raises(IndexBusyError):
            idx.update(photos, wait=False)


def test_two_indexers_at_once_embed_each_image_once(env, photos, tmp_path):
    a = start(["index", str(photos), "--json"], env, tmp_path, "a")
    b = start(["index", str(photos), "--json"], env, tmp_path, "b")
    reports = []
    for proc, name in ((a, "a"), (b, "b")):
        rc, out, err = finish(proc, tmp_path, name)
        assert rc == 0, err
        reports.append(json.loads(out))
    assert sum(r["embedded"] for r in reports) == 12
    assert sorted(r["added"] for r in reports) == [0, 12]


def test_a_killed_holder_leaves_no_stuck_lock(tmp_path):
    db = tmp_path / "x.db"
    code = (
        "import sys, time\n"
        "from lookalike.index.lock import update_lock\n"
        f"with update_lock({str(db)!r}):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(600)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(IndexBusyError, match=f"pid {holder.pid}"), update_lock(db, wait=False):
            pass
    finally:
        holder.kill()  # SIGKILL: no cleanup runs in the holder
        holder.wait()
    with update_lock(db, wait=False):  # the kernel released it
        pass


# --- what the progress bar is told ---------------------------------------------------------


def test_update_says_when_the_model_loads(tmp_path, tiny_weights, photos):
    stages: list[str] = []
    with Index.open(tmp_path / "i.db", model=TINY, weights=tiny_weights) as idx:
        idx.update(photos, on_stage=stages.append)
        assert stages in (
            ["loading-model", "embedding"],  # compiled by an earlier test
            ["loading-model", "compiling-model", "embedding"],
        )
        stages.clear()
        (photos / "p0001.jpg").unlink()
        idx.update(photos, on_stage=stages.append)  # nothing to embed: no model needed
    assert "loading-model" not in stages
