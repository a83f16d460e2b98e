"""Table, JSON and the grid picture."""

from __future__ import annotations

import json

import pytest
from fakes import make_photos
from PIL import Image

from lookalike.present import hits_json, hits_table
from lookalike.present.grid import plot_grid
from lookalike.types import Hit


@pytest.mark.parametrize("k", [1, 10])
def test_grid_is_a_png_with_query_and_k_results(tmp_path, k):
    photos = make_photos(tmp_path / "p", k + 1)
    files = sorted(photos.iterdir())
    hits = [Hit(i + 1, 1.0 - i / 100, str(f)) for i, f in enumerate(files[1:])]
    out = tmp_path / "grid.png"
    tiles = plot_grid(str(files[0]), hits, out)
    assert tiles == k + 1
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width >= 800


def test_grid_survives_an_unreadable_result(tmp_path):
    photos = make_photos(tmp_path / "p", 2)
    files = sorted(photos.iterdir())
    gone = Hit(2, 0.5, str(tmp_path / "deleted.jpg"))
    tiles = plot_grid(str(files[0]), [Hit(1, 0.9, str(files[1])), gone], tmp_path / "g.png")
    assert tiles == 2


def test_json_and_table_shapes():
    hits = [Hit(1, 0.9, "/a/1.jpg"), Hit(2, 0.5, "/a/caf\udce9.jpg")]
    data = json.loads(hits_json("/q.jpg", hits))
    assert data == {
        "query": "/q.jpg",
        "results": [
            {"rank": 1, "score": 0.9, "path": "/a/1.jpg"},
            {"rank": 2, "score": 0.5, "path": "/a/caf\\xe9.jpg"},
        ],
    }
    lines = hits_table(hits).splitlines()
    assert lines[0].split() == ["rank", "score", "path"] and "0.900" in lines[1]
    assert hits_table([]) == "no results"
