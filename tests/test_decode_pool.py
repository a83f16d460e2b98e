"""lookalike.decode.pool: one result per task, whatever the decoder does."""

from __future__ import annotations

import itertools
import os
import time
from pathlib import Path

import imagegen
import numpy as np
import pytest
from imagegen import BLUE, RED

from lookalike.decode import DecodePool, DecodeTask, content_hash, decode_path
from lookalike.errors import ConfigError
from lookalike.setup import Preprocess

PRE = Preprocess()
MARKERS = "imagegen:marker_decode"


def task(key: int, path: Path | bytes, **kw) -> DecodeTask:
    st = os.stat(path)
    return DecodeTask(key, os.fsencode(path), st.st_size, st.st_mtime_ns, **kw)


def good_images(folder: Path, n: int) -> list[Path]:
    paths = []
    for i in range(n):
        path = folder / f"good{i}.png"
        imagegen.solid((40 + i, 30), RED if i % 2 else BLUE).save(path)
        paths.append(path)
    return paths


def by_key(results) -> dict:
    results = list(results)
    keys = [r.key for r in results]
    assert len(keys) == len(set(keys)), "a task yielded more than one result"
    return {r.key: r for r in results}


def test_every_task_yields_exactly_one_result(tmp_path):
    cases = imagegen.write_cases(tmp_path)
    tasks = []
    for i, case in enumerate(cases.values()):
        st = os.lstat(case.path)
        tasks.append(DecodeTask(i, case.path, st.st_size, st.st_mtime_ns))
    with DecodePool(PRE, workers=2) as pool:
        got = by_key(pool.map(tasks))
        assert pool.heavy_modules_in_workers == set()  # workers never import torch
    assert got.keys() == {t.key for t in tasks}
    for t, case in zip(tasks, cases.values(), strict=True):
        r = got[t.key]
        assert r.path == case.path and r.reason == case.reason, (case.name, r.reason, r.detail)
        if case.reason is None:
            assert r.pixels.shape == (224, 224, 3) and r.pixels.dtype == np.uint8
            assert r.hash == content_hash(Path(os.fsdecode(case.path)).read_bytes())
        else:
            assert r.pixels is None and r.hash is None


def test_misbehaving_decoders_cost_one_file_each(tmp_path):
    good = good_images(tmp_path, 6)
    bad = {}
    for marker in ("crash", "segv", "hang", "hog"):
        bad[marker] = tmp_path / f"{marker}.png"
        imagegen.solid((8, 8), RED).save(bad[marker])
    paths = good[:3] + list(bad.values()) + good[3:]
    tasks = [task(i, p) for i, p in enumerate(paths)]
    t0 = time.monotonic()
    with DecodePool(
        PRE, workers=2, timeout_s=1.0, memory_limit_bytes=1 << 30, decode_fn=MARKERS
    ) as pool:
        got = by_key(pool.map(tasks))
        assert pool.restarts == 3  # crash, segv, hang; the hog got a MemoryError
    assert time.monotonic() - t0 < 15
    reasons = {os.path.basename(r.path): (r.reason, r.detail) for r in got.values()}
    assert reasons[b"crash.png"][0] == "decoder-crashed" and "status 3" in reasons[b"crash.png"][1]
    assert reasons[b"segv.png"][0] == "decoder-crashed" and "SIGSEGV" in reasons[b"segv.png"][1]
    assert reasons[b"hang.png"][0] == "decode-timeout"
    assert reasons[b"hog.png"][0] == "too-large"
    for p in good:
        assert reasons[os.path.basename(os.fsencode(p))] == (None, "")


def test_a_decoder_that_blocks_the_timer_is_stopped_by_the_parent(tmp_path):
    stubborn = tmp_path / "stubborn.png"
    imagegen.solid((8, 8), RED).save(stubborn)
    tasks = [task(0, stubborn), *(task(i + 1, p) for i, p in enumerate(good_images(tmp_path, 2)))]
    t0 = time.monotonic()
    with DecodePool(PRE, workers=1, timeout_s=0.5, decode_fn=MARKERS) as pool:
        got = by_key(pool.map(tasks))
    assert got[0].reason == "decode-timeout"
    assert got[1].reason is None and got[2].reason is None
    assert time.monotonic() - t0 < 10


def test_known_hash_is_reused_without_pixels(tmp_path):
    a, b = good_images(tmp_path, 2)
    known = frozenset({content_hash(a.read_bytes())})
    with DecodePool(PRE, workers=1) as pool:
        got = by_key(pool.map([task(0, a, known_hashes=known), task(1, b, known_hashes=known)]))
    assert got[0].reused and got[0].pixels is None and got[0].hash in known and got[0].ok
    assert not got[1].reused and got[1].pixels is not None


def test_in_process_mode_gives_the_same_pixels(tmp_path):
    paths = good_images(tmp_path, 3)
    name = os.fsencode(tmp_path) + b"/caf\xe9.jpg"
    with open(name, "wb") as f:
        f.write(imagegen.jpeg_bytes(imagegen.solid((16, 16), RED), quality=95))
    tasks = [task(i, p) for i, p in enumerate([*paths, name])]
    with DecodePool(PRE, workers=0) as inline, DecodePool(PRE, workers=2) as pool:
        a, b = by_key(inline.map(tasks)), by_key(pool.map(tasks))
    for key in a:
        assert a[key].reason is None and b[key].reason is None
        assert np.array_equal(a[key].pixels, b[key].pixels)
    assert a[3].path == name and np.array_equal(a[3].pixels, decode_path(name, PRE)[0])


def test_changed_since_the_scan(tmp_path):
    (path,) = good_images(tmp_path, 1)
    st = path.stat()
    with DecodePool(PRE, workers=1) as pool:
        (r,) = pool.map([DecodeTask(7, os.fsencode(path), st.st_size + 5, st.st_mtime_ns)])
    assert (r.key, r.reason) == (7, "changed")


def test_tasks_are_read_lazily_and_in_flight_stays_bounded(tmp_path):
    (path,) = good_images(tmp_path, 1)
    pulled = 0

    def endless():
        nonlocal pulled
        for i in itertools.count():
            pulled += 1
            yield task(i, path)

    with DecodePool(PRE, workers=2) as pool:
        results = pool.map(endless(), max_in_flight=3)
        first = [next(results) for _ in range(10)]
        assert pulled <= 10 + 3
        results.close()  # stopping early leaves the pool usable
        (again,) = pool.map([task(99, path)])
    assert all(r.reason is None for r in first) and again.key == 99


def test_workers_that_cannot_start_are_a_clear_error(tmp_path):
    (path,) = good_images(tmp_path, 1)
    pool = DecodePool(PRE, workers=1, decode_fn="no_such_module_xyz:fn")
    with pool, pytest.raises(ConfigError, match="cannot start"):
        list(pool.map([task(0, path)]))


def test_options_are_checked_and_close_is_final(tmp_path):
    with pytest.raises(ConfigError):
        DecodePool(PRE, workers=-1)
    with pytest.raises(ConfigError):
        DecodePool(PRE, timeout_s=0)
    with pytest.raises(ConfigError):
        DecodePool(PRE, decode_fn="no-colon")
    with pytest.raises(ConfigError):
        DecodePool(Preprocess(mode="squash"))
    pool = DecodePool(PRE, workers=1)
    pool.close()
    pool.close()
    with pytest.raises(RuntimeError):
        pool.map([])


def test_default_worker_count_is_the_usable_cores():
    pool = DecodePool(PRE)
    try:
        assert pool.workers >= 1
        if hasattr(os, "sched_getaffinity"):
            assert pool.workers == len(os.sched_getaffinity(0))
    finally:
        pool.close()
