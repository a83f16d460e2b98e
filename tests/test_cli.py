"""The real CLI, run as a subprocess the way a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
from fakes import make_photos, photo

TINY = "test_resnet.r160_in1k"


def run(args, env, check_rc=0, timeout=300):
    p = subprocess.run(
        [sys.executable, "-m", "lookalike", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check_rc is not None:
        assert p.returncode == check_rc, (p.returncode, p.stdout, p.stderr)
    return p


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
def photos(tmp_path):
    d = make_photos(tmp_path / "photos", 12)
    shutil.copy(d / "p0003.jpg", d / "twin_of_3.jpg")
    return d


def test_help_for_every_command_and_readme_mentions_each():
    with open(os.path.join(os.path.dirname(__file__), "..", "README.md")) as f:
        readme = f.read()
    from lookalike.cli import main

    commands = sorted(main.commands)
    # Every command module must be registered (none silently skipped as "not built yet").
    assert {"index", "search", "info", "remove", "demo", "duplicates", "serve"} <= set(commands)
    for cmd in commands:
        p = subprocess.run(
            [sys.executable, "-m", "lookalike", cmd, "--help"], capture_output=True, text=True
        )
        assert p.returncode == 0 and "Usage:" in p.stdout
        assert f"lookalike {cmd}" in readme


def test_index_search_info_json_contracts(env, photos, tmp_path):
    p = run(["index", str(photos), "--json"], env)
    report = json.loads(p.stdout)
    assert set(report) >= {
        "added",
        "updated",
        "removed",
        "unchanged",
        "failed",
        "seconds",
        "images_per_second",
    }
    assert report["added"] == 13 and report["failed"] == []
    assert isinstance(report["seconds"], float) and report["images_per_second"] > 0

    again = json.loads(run(["index", str(photos), "--json"], env).stdout)
    assert (again["added"], again["unchanged"]) == (0, 13)

    q = photos / "p0003.jpg"
    out = json.loads(run(["search", str(q), "--json", "-k", "5"], env).stdout)
    assert out["query"] == str(q)
    assert [r["rank"] for r in out["results"]] == [1, 2, 3, 4, 5]
    assert out["results"][0]["path"] == str(photos / "twin_of_3.jpg")
    assert out["results"][0]["score"] >= 0.999
    assert str(q) not in [r["path"] for r in out["results"]]
    scores = [r["score"] for r in out["results"]]
    assert scores == sorted(scores, reverse=True)
    assert all(os.path.isabs(r["path"]) for r in out["results"])

    info = json.loads(run(["info", "--json"], env).stdout)
    assert info["images"] == 13 and info["model"] == TINY
    assert info["weights"].startswith("sha256:") and info["pooling"] == "avg"
    assert info["preprocessing"]["mode"] == "resize" and info["dim"] > 0
    assert info["folders"] == [str(photos)]


def test_table_and_plot(env, photos, tmp_path):
    from PIL import Image

    png = tmp_path / "grid.png"
    p = run(["search", str(photos / "p0001.jpg"), str(photos), "--plot", str(png), "-k", "4"], env)
    lines = p.stdout.strip().splitlines()
    assert lines[0].split() == ["rank", "score", "path"] and len(lines) == 5
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        assert im.width >= 800


def test_search_with_folder_updates_it_first_and_restricts(env, photos, tmp_path):
    other = make_photos(tmp_path / "other", 3)
    run(["index", str(other)], env)
    q = photo(tmp_path / "q.jpg", 3)
    out = json.loads(run(["search", str(q), str(photos), "--json"], env).stdout)
    assert len(out["results"]) == 10
    assert all(r["path"].startswith(str(photos) + os.sep) for r in out["results"])


def test_usage_errors_exit_2_and_expected_errors_exit_1_in_one_line(env, tmp_path):
    p = run(["search"], env, check_rc=2)
    assert "Usage" in p.stderr
    p = run(["index", str(tmp_path / "missing")], env, check_rc=1)
    assert p.stderr.count("\n") == 1 and "Traceback" not in p.stderr
    assert "does not exist" in p.stderr


def test_offline_without_weights_is_one_clear_line(env, photos):
    del env["LOOKALIKE_WEIGHTS"]
    env["LOOKALIKE_MODEL"] = "resnet50.tv_in1k"
    p = run(["index", str(photos)], env, check_rc=1)
    assert "Traceback" not in p.stderr and p.stderr.count("\n") == 1
    assert "resnet50.tv_in1k" in p.stderr and "--weights" in p.stderr


def test_model_mismatch_is_an_error(env, photos):
    run(["index", str(photos)], env)
    p = run(["search", str(photos / "p0001.jpg"), "--pool", "max"], env, check_rc=1)
    assert "pool" in p.stderr and "Traceback" not in p.stderr


@pytest.mark.slow
def test_kill_9_then_resume(env, tmp_path, resnet50_weights):
    env.update(LOOKALIKE_MODEL="resnet50", LOOKALIKE_WEIGHTS=str(resnet50_weights))
    photos = make_photos(tmp_path / "many", 160, size=(96, 96))
    db = env["LOOKALIKE_DB"]
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(photos),
            "--batch-size",
            "4",
            "--precision",
            "fp32",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.time() + 240
    count = 0
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
        try:
            with sqlite3.connect(db, timeout=1) as c:
                count = c.execute("SELECT count(*) FROM images").fetchone()[0]
        except sqlite3.Error:
            continue
        if count >= 8:
            break
    assert proc.poll() is None, "indexing finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        partial = c.execute("SELECT count(*) FROM images").fetchone()[0]
    assert 8 <= partial < 160
    report = json.loads(run(["index", str(photos), "--json"], env).stdout)
    assert report["unchanged"] == partial and report["added"] == 160 - partial
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert c.execute("SELECT count(*), count(DISTINCT path) FROM images").fetchone() == (
            160,
            160,
        )


# A real `lookalike index` whose n-th batch stops inside its SQLite transaction (rows
# written, COMMIT not yet run) until the test says so: a search is then certain to overlap
# a write. Files: argv[1] appears when the batch is held, argv[2] releases it.
HELD_WRITER = r"""
import contextlib, os, sys, time
from lookalike.store import sqlite as s

held, release, nth = sys.argv[1], sys.argv[2], int(sys.argv[3])
real_tx, real_write = s.SQLiteStore._transaction, s.SQLiteStore.write
state = {"writes": 0, "hold": False}

@contextlib.contextmanager
def tx(self):
    with real_tx(self) as db:
        yield db
        if state["hold"]:  # the batch's rows are in; its COMMIT comes after this
            state["hold"] = False
            open(held, "w").close()
            while not os.path.exists(release):
                time.sleep(0.02)

def write(self, batch):
    state["writes"] += 1
    state["hold"] = state["writes"] == nth
    return real_write(self, batch)

s.SQLiteStore._transaction = tx
s.SQLiteStore.write = write
from lookalike.cli import main
main(sys.argv[4:], prog_name="lookalike")
"""


def start_held_writer(env, tmp_path, folder, nth=2, batch_size=2):
    """Start indexing ``folder``; return (process, held file, release file) once the
    ``nth`` batch is held open inside its transaction."""
    held, release = tmp_path / "held", tmp_path / "release"
    args = ["index", str(folder), "--batch-size", str(batch_size), "--workers", "0"]
    proc = subprocess.Popen(
        [sys.executable, "-c", HELD_WRITER, str(held), str(release), str(nth), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 240
    while not held.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, "the writer never reached its held batch"
        time.sleep(0.05)
    return proc, held, release


def committed_rows(db):
    """(id, path, vector) of every committed row, read as another reader would."""
    import numpy as np

    with sqlite3.connect(db, timeout=5) as c:
        rows = c.execute("SELECT id, path, vector FROM images ORDER BY id").fetchall()
    return {os.fsdecode(bytes(p)): np.frombuffer(v, np.float32) for _, p, v in rows}


def assert_consistent(results, rows, query, k):
    """``results`` are the top ``k`` of ``rows`` (path -> vector) for the stored ``query``."""
    import numpy as np

    q = rows[query]
    truth = {p: float(v @ q) / float(np.linalg.norm(q)) for p, v in rows.items() if p != query}
    assert len(results) == min(k, len(truth)), (results, sorted(truth))
    assert all(r["path"] in truth for r in results), "a result from no committed state"
    for r in results:
        assert abs(r["score"] - truth[r["path"]]) < 1e-4
    kth = results[-1]["score"]
    better = {p for p, s in truth.items() if s > kth + 1e-4}
    assert better <= {r["path"] for r in results}, "a committed image is missing"


@pytest.mark.slow
def test_search_while_indexing_writes(env, tmp_path):
    """A search while another process holds a batch open mid-transaction: no "locked"
    error, and exactly the top k of what was committed (never the uncommitted rows)."""
    first = make_photos(tmp_path / "first", 4)
    run(["index", str(first), "--workers", "0"], env)
    more = tmp_path / "more"
    for i in range(10):
        photo(more / f"m{i:02d}.jpg", 100 + i)
    db = env["LOOKALIKE_DB"]
    q = str(first / "p0000.jpg")
    proc, _, release = start_held_writer(env, tmp_path, more, nth=2, batch_size=2)
    try:
        rows = committed_rows(db)
        # The first batch of `more` is in, the second held (a backend may round the
        # batch size up to its compiled batch: 8 for OpenVINO).
        assert 4 < len(rows) < 14
        p = run(["search", q, "--json", "-k", "5"], env, timeout=120)
        assert "locked" not in p.stderr and "busy" not in p.stderr
        assert proc.poll() is None  # the writer was still holding its batch
        assert_consistent(json.loads(p.stdout)["results"], rows, q, 5)
    finally:
        release.touch()
        _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    rows = committed_rows(db)
    assert len(rows) == 14
    p = run(["search", q, "--json", "-k", "5"], env)
    assert_consistent(json.loads(p.stdout)["results"], rows, q, 5)


def test_ctrl_c_exits_130_and_keeps_committed_batches(env, tmp_path):
    folder = tmp_path / "many"
    for i in range(10):
        photo(folder / f"m{i:02d}.jpg", 200 + i)
    proc, _, release = start_held_writer(env, tmp_path, folder, nth=2, batch_size=2)
    try:
        os.kill(proc.pid, signal.SIGINT)  # what Ctrl-C sends, in the middle of a batch
        _, err = proc.communicate(timeout=60)
    finally:
        release.touch()
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert err.strip().splitlines() == ["lookalike: interrupted; committed batches are kept"]
    db = env["LOOKALIKE_DB"]
    with sqlite3.connect(db) as c:
        assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        kept = c.execute("SELECT count(*) FROM images").fetchone()[0]
    assert 0 < kept < 10  # the first batch only: the held one was rolled back
    report = json.loads(run(["index", str(folder), "--json", "--workers", "0"], env).stdout)
    assert (report["unchanged"], report["added"]) == (kept, 10 - kept)


def test_terminal_gets_a_progress_bar_then_a_summary(env, tmp_path):
    import pty

    photos = make_photos(tmp_path / "bar", 40)
    pid, fd = pty.fork()
    if pid == 0:  # child: stdout and stderr are the terminal
        os.execve(
            sys.executable,
            [sys.executable, "-m", "lookalike", "index", str(photos), "--batch-size", "4"],
            env,
        )
    chunks = []
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:
            break
        if not data:
            break
        chunks.append(data)
    _, status = os.waitpid(pid, 0)
    text = b"".join(chunks).decode("utf-8", "replace")
    assert os.waitstatus_to_exitcode(status) == 0, text
    assert "indexing" in text and "img/s" in text and "/40" in text  # bar: count, rate
    assert "40 added, 0 updated, 0 removed, 0 unchanged, 0 failed" in text


def test_backend_flag(env, photos, tmp_path):
    env = {**env, "LOOKALIKE_CACHE": str(tmp_path / "models-root")}
    env.pop("LOOKALIKE_BACKEND", None)
    p = run(["index", str(photos), "--backend", "nope"], env, check_rc=2)
    assert "nope" in p.stderr
    run(["index", str(photos), "--backend", "torch", "--json"], env)
    metas = [json.loads(m.read_text()) for m in (tmp_path / "models-root").rglob("meta.json")]
    assert [m["backend"] for m in metas] == ["torch"]
    p = run(["search", str(photos / "p0003.jpg"), "--backend", "torch", "--json"], env)
    assert json.loads(p.stdout)["results"][0]["path"].endswith("twin_of_3.jpg")


def test_backend_option_of_the_api(tmp_path):
    from lookalike import Index
    from lookalike.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown backend"):
        Index.open(tmp_path / "i.db", backend="tensorrt")
