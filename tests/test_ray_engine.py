"""``--engine ray`` (#13) against a real local Ray cluster: one per session, 2 CPUs.

The cluster is started once (``ray_cluster``) with the session's model cache and an offline,
empty hub cache in its environment, so its workers see what the tests' own processes see.
Every test runs lookalike's real decoder and embedder inside Ray actors; nothing is mocked.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import LITE0, TINY_MODEL
from fakes import make_photos
from imagegen import write_cases
from PIL import Image

from lookalike import Index, MissingDependencyError, SourceUnavailableError
from lookalike.decode import DecodeLimits, DecodeTask

ray = pytest.importorskip("ray")


@pytest.fixture(scope="session")
def ray_cluster(tmp_path_factory):
    """A local Ray cluster (2 CPUs, no dashboard) for the session; yields its GCS address."""
    base = tmp_path_factory.getbasetemp()
    (base / "empty-hub-cache").mkdir(exist_ok=True)
    env = {
        # The same folders as conftest's autouse ``offline_hub``: workers inherit them.
        "LOOKALIKE_CACHE": str(base / "lookalike-cache"),
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_CACHE": str(base / "empty-hub-cache"),
    }
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        context = ray.init(
            num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR
        )
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    yield context.address_info["address"]
    ray.shutdown()


def _vectors(db: Path) -> dict[str, np.ndarray]:
    with Index.open(db) as idx:
        store = idx._store
        paths = {}
        for ids, vecs in store.iter_vectors():
            names = store.paths_for([int(i) for i in ids])
            for i, v in zip(ids, vecs, strict=True):
                paths[os.fsdecode(names[int(i)])] = np.asarray(v, np.float64)
    return paths


def _photo_folder(folder: Path, photos: dict[str, np.ndarray]) -> Path:
    """The sample photos as JPEGs, and three edited copies of seven of them."""
    folder.mkdir()
    for i, (name, arr) in enumerate(photos.items()):
        im = Image.fromarray(arr)
        im.save(folder / f"{name}.jpg", quality=90)
        if i % 3 == 0:
            w, h = im.size
            im.resize((w // 2, h // 2)).save(folder / f"{name}_small.jpg", quality=75)
            im.crop((w // 10, h // 10, w - w // 10, h - h // 10)).save(folder / f"{name}_crop.jpg")
            im.transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(folder / f"{name}_flip.jpg")
    return folder


def test_ray_vectors_and_top10_equal_the_local_run(
    ray_cluster, tmp_path, lite0_weights, sample_photos
):
    folder = _photo_folder(tmp_path / "photos", sample_photos)
    n = len(list(folder.iterdir()))
    reports = {}
    for engine in ("local", "ray"):
        with Index.open(tmp_path / f"{engine}.db", model=LITE0, weights=lite0_weights) as idx:
            reports[engine] = idx.update(folder, engine=engine)
    for report in reports.values():
        assert (report.added, report.embedded, report.failed) == (n, n, [])
    local, remote = _vectors(tmp_path / "local.db"), _vectors(tmp_path / "ray.db")
    assert sorted(local) == sorted(remote) and len(local) == n
    cosines = [float(local[p] @ remote[p]) for p in local]
    assert min(cosines) >= 0.9999, min(cosines)
    # Trained weights: different photos are far apart, so equal top-10s mean something.
    assert float(local[str(folder / "chelsea.jpg")] @ local[str(folder / "coffee.jpg")]) < 0.9
    for query in ("chelsea.jpg", "astronaut.jpg", "coffee_small.jpg"):
        hits = {}
        for engine in ("local", "ray"):
            with Index.open(tmp_path / f"{engine}.db") as idx:
                hits[engine] = idx.search(folder / query, k=10)
        assert [h.path for h in hits["local"]] == [h.path for h in hits["ray"]]
        assert np.allclose(
            [h.score for h in hits["local"]], [h.score for h in hits["ray"]], atol=1e-4
        )


def test_bad_files_are_reported_from_the_workers_with_the_local_reasons(
    ray_cluster, tmp_path, tiny_weights
):
    folder = tmp_path / "cases"
    cases = write_cases(folder)
    make_photos(folder / "good", 4)
    failed = {}
    for engine in ("local", "ray"):
        with Index.open(tmp_path / f"{engine}.db", model=TINY_MODEL, weights=tiny_weights) as idx:
            report = idx.update(folder, engine=engine)
            failed[engine] = {f.path: f.reason for f in report.failed}
            stored = {f.path: f.reason for f in idx.failures()}
            assert stored == failed[engine]
    assert failed["ray"] == failed["local"]
    # Decoded in the workers (not caught by the driver's scan, as the FIFO and the socket).
    for case in ("zero_bytes", "text_named_jpg", "truncated_jpeg", "bomb_png", "svg", "eps"):
        assert failed["ray"][os.fsdecode(cases[case].path)] == cases[case].reason


def test_a_worker_that_cannot_read_the_files_stops_the_run_with_one_clear_line(
    ray_cluster, tmp_path, tiny_weights
):
    from lookalike.engine.ray_engine import RayEngine

    photo = make_photos(tmp_path / "photos", 1) / "p0000.jpg"
    # /proc/self/fd/N opens the file here, where N is open; in a Ray worker it names
    # nothing: a path the driver reads and the workers cannot, as without a shared disk.
    fd = os.open(photo, os.O_RDONLY)
    num = os.dup2(fd, 777)
    os.close(fd)
    try:
        path = f"/proc/self/fd/{num}".encode()
        st = os.stat(path)
        with Index.open(tmp_path / "x.db", model=TINY_MODEL, weights=tiny_weights) as idx:
            engine = RayEngine(options=idx._model.effective_options, limits=DecodeLimits())
            task = DecodeTask(0, path, st.st_size, st.st_mtime_ns)
            with pytest.raises(SourceUnavailableError) as err:
                list(engine.run([task], idx._model.get_embedder))
    finally:
        os.close(num)
    message = str(err.value)
    assert "/proc/self/fd/777" in message and "shared filesystem" in message
    assert "\n" not in message


def _actor_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_a_worker_killed_mid_batch_loses_nothing(ray_cluster, tmp_path, tiny_weights):
    from lookalike.engine.ray_engine import RayEngine

    folder = make_photos(tmp_path / "photos", 48, size=(1600, 1200))
    killed: list[int] = []
    with Index.open(tmp_path / "k.db", model=TINY_MODEL, weights=tiny_weights) as idx:
        engine = RayEngine(
            options=idx._model.effective_options, limits=DecodeLimits(), batch_size=4
        )

        def on_progress(p):
            # After the first commit the actor is busy with the next batches: kill it.
            if not killed and p.done < p.total:
                for pid in engine.stats.actor_pids:
                    os.kill(pid, signal.SIGKILL)
                    killed.append(pid)

        report = idx.update(folder, engine=engine, on_progress=on_progress)
        assert killed and not any(_actor_alive(p) for p in killed)
        assert engine.stats.actor_pids - set(killed), "no restarted actor finished the run"
        # Every file exactly once: embedded, or reported (and retried on the next run).
        assert report.added + len(report.failed) == 48
        assert {f.reason for f in report.failed} <= {"decoder-crashed"}
        assert idx.info()["images"] == report.added
        again = idx.update(folder)
        assert again.added == len(report.failed) and idx.info()["images"] == 48


def _count(db: Path) -> int:
    try:
        con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return int(con.execute("SELECT count(*) FROM images").fetchone()[0])
        finally:
            con.close()
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_a_killed_driver_run_resumes_and_indexes_everything_once(
    ray_cluster, tmp_path, tiny_weights
):
    folder = make_photos(tmp_path / "photos", 120, size=(320, 240))
    db = tmp_path / "r.db"
    cmd = [sys.executable, "-m", "lookalike", "index", str(folder), "--engine", "ray"]
    cmd += ["--ray-address", ray_cluster, "--db", str(db), "--model", TINY_MODEL]
    cmd += ["--weights", str(tiny_weights), "--batch-size", "2", "--json"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while _count(db) == 0 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    first = _count(db)
    assert 0 < first < 120, f"the kill came too late to test a resume ({first} committed)"
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)  # exactly one JSON object on stdout
    assert report["added"] == 120 - first and report["failed"] == []
    con = sqlite3.connect(db)
    paths = [r[0] for r in con.execute("SELECT path FROM images")]
    assert len(paths) == len(set(paths)) == 120
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()


def test_cli_flags_and_their_errors(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lookalike.cli import main
    from lookalike.engine import make_engine

    out = CliRunner().invoke(main, ["index", "--help"]).output
    assert "--engine [local|ray]" in out and "--ray-address ADDR" in out
    folder = make_photos(tmp_path / "photos", 1)
    res = CliRunner().invoke(
        main, ["index", str(folder), "--db", str(tmp_path / "x.db"), "--ray-address", "a:1"]
    )
    assert res.exit_code == 1 and "--ray-address needs --engine ray" in res.output
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(MissingDependencyError, match=r"lookalike\[ray\]"):
        make_engine("ray", options=lambda: None, limits=DecodeLimits())


@pytest.mark.slow
def test_ray_results_commit_into_a_postgres_index_as_into_sqlite(
    ray_cluster, tmp_path, tiny_weights, pg_url
):
    folder = make_photos(tmp_path / "photos", 16)
    (folder / "broken.jpg").write_bytes(b"not an image at all")
    with Index.open(tmp_path / "local.db", model=TINY_MODEL, weights=tiny_weights) as local:
        local.update(folder)
        with Index.open(pg_url, model=TINY_MODEL, weights=tiny_weights) as pg:
            report = pg.update(folder, engine="ray")
            assert report.added == 16 and [f.reason for f in pg.failures()] == ["not-an-image"]
            assert pg.info()["images"] == 16
            for p in sorted(folder.glob("p*.jpg")):
                a = local._store.lookup(os.fsencode(p))[1]
                b = pg._store.lookup(os.fsencode(p))[1]
                assert float(np.dot(a, b)) >= 0.9999
            assert pg.update(folder, engine="ray").unchanged == 16
