"""Every odd file is either indexed correctly or listed in `failed` with its reason,
and the run goes on (RELIABILITY.md promise 1), through the real decode workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from fakes import PixelEmbedder, make_photos
from imagegen import write_cases

from lookalike import Index


@pytest.fixture
def messy(tmp_path):
    folder = tmp_path / "messy"
    cases = write_cases(folder)
    make_photos(folder / "good", 3)
    (folder / ".hidden.jpg").write_bytes((folder / "good" / "p0000.jpg").read_bytes())
    (folder / "._p0000.jpg").write_bytes(b"\x00\x05\x16\x07 AppleDouble")
    os.symlink(folder, folder / "loop")
    deep = folder
    for i in range(40):
        deep = deep / f"d{i}"
    make_photos(deep, 1)
    return folder, cases


def test_each_case_indexed_or_failed_with_reason(tmp_path, messy):
    folder, cases = messy
    with Index.open(tmp_path / "i.db", embedder=PixelEmbedder(), workers=1) as idx:
        report = idx.update(folder)
        failed = {f.path: f.reason for f in report.failed}
        for case in cases.values():
            path = os.fsdecode(case.path)
            if case.name == "directory_named_jpg":
                # a folder named like an image is walked, not read
                assert path not in failed and idx._store.lookup(case.path) is None
            elif case.reason is None:
                assert path not in failed, (case.name, failed.get(path))
                assert idx._store.lookup(case.path) is not None, case.name
            else:
                assert failed.get(path) == case.reason, case.name
        assert idx._store.lookup(os.fsencode(folder / ".hidden.jpg")) is None
        assert not any("._p0000" in p for p in failed)
        assert report.added == sum(1 for c in cases.values() if c.reason is None) + 3 + 1

        info_failed = {f["path"]: f["reason"] for f in idx.info()["failed"]}
        assert info_failed == failed

        again = idx.update(folder)
        assert again.embedded == 0
        assert {f.path: f.reason for f in again.failed} == failed


def test_colours_survive_decoding(tmp_path, messy):
    """Orientation, CMYK, animation and transparency cases land with the right colour."""
    folder, cases = messy
    with Index.open(tmp_path / "i.db", embedder=PixelEmbedder(side=8), workers=0) as idx:
        idx.update(folder)
        for case in cases.values():
            if case.color is None or case.reason is not None:
                continue
            if max(case.color) - min(case.color) < 64:
                continue  # grey centres to ~0 here; orientation is tested in test_decode
            _, vec = idx._store.lookup(case.path)
            expected = np.tile(np.asarray(case.color, np.float32) - 127.5, 64)
            expected /= np.linalg.norm(expected)
            assert float(vec @ expected) > 0.98, case.name


def test_cli_completes_with_exit_0_and_lists_failures(tmp_path, messy, tiny_weights):
    folder, _ = messy
    env = dict(os.environ, LOOKALIKE_DB=str(tmp_path / "c.db"))
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "lookalike",
            "index",
            str(folder),
            "--json",
            "--model",
            "test_resnet.r160_in1k",
            "--weights",
            str(tiny_weights),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    reasons = {f["reason"] for f in report["failed"]}
    assert {
        "empty",
        "not-an-image",
        "truncated",
        "too-large",
        "unsupported-format",
        "not-a-regular-file",
    } <= reasons
    assert report["added"] >= 20
